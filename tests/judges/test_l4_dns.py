"""Judge: dig through an evenflow udp listener (per_datagram) to two authoritative DNS servers."""

from __future__ import annotations

import contextlib
import re
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from l4_judge_support import ScriptPeer, free_port, run, running_evenflow, script, tool

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]

# A tiny authoritative server for evenflow.test, written with dnspython: `who.evenflow.test A`
# answers the address given on the command line, so an answer says which server gave it.
DNS_SERVER = r"""
import socket, sys
import dns.flags, dns.message, dns.name, dns.rcode, dns.rdataclass, dns.rdatatype, dns.rrset

ADDRESS = sys.argv[1]
ZONE = dns.name.from_text("evenflow.test.")
WHO = dns.name.from_text("who.evenflow.test.")

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print("listening 127.0.0.1:%d" % sock.getsockname()[1], flush=True)
while True:
    wire, sender = sock.recvfrom(65535)
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        continue
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    if question.name == WHO and question.rdtype == dns.rdatatype.A:
        response.answer.append(
            dns.rrset.from_text(WHO, 60, dns.rdataclass.IN, dns.rdatatype.A, ADDRESS)
        )
    elif not question.name.is_subdomain(ZONE):
        response.set_rcode(dns.rcode.REFUSED)
    elif question.name != WHO:
        response.set_rcode(dns.rcode.NXDOMAIN)
    sock.sendto(response.to_wire(), sender)
"""

SERVERS = {"a": "10.53.0.1", "b": "10.53.0.2"}
QUERIES = 20


@contextlib.contextmanager
def dns_servers(workdir: Path) -> Iterator[dict[str, ScriptPeer]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(script(DNS_SERVER, [address], workdir, f"dns-{name}"))
            for name, address in SERVERS.items()
        }


def dig(port: int, *query: str) -> str:
    done = run(
        [tool("dig"), "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *query], timeout=10
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def udp_config(peers: dict[str, ScriptPeer], per_datagram: bool) -> dict[str, Any]:
    listener = {"name": "l4", "bind": "", "protocol": "udp", "pool": "dns"}
    return {
        "listeners": [{**listener, "per_datagram": per_datagram}],
        "pools": {"dns": {"backends": [peer.address for peer in peers.values()]}},
        "access_log": {"path": "off"},
    }


def test_dig_through_udp_listener_gets_answers_from_both_servers(tmp_path: Path) -> None:
    # every query from the same address and port: one client, as a stub resolver would be
    source = f"127.0.0.1#{free_port(socket.SOCK_DGRAM)}"
    with dns_servers(tmp_path) as peers, running_evenflow(udp_config(peers, True), tmp_path) as ef:
        full = dig(ef.port(), "-b", source, "who.evenflow.test", "A")
        short = [
            dig(ef.port(), "-b", source, "+short", "who.evenflow.test", "A").strip()
            for _ in range(QUERIES)
        ]
        missing = dig(ef.port(), "-b", source, "nope.evenflow.test", "A")
    # a whole answer, as dig judges it: NOERROR, authoritative, one A record for the name
    assert "status: NOERROR" in full, full
    assert re.search(r"flags: qr aa", full), full
    assert re.search(r"^who\.evenflow\.test\.\s+60\s+IN\s+A\s+10\.53\.0\.[12]$", full, re.M), full
    assert "status: NXDOMAIN" in missing, missing
    # every query answered correctly, and balanced over both servers datagram by datagram
    assert set(short) <= set(SERVERS.values()), short
    assert Counter(short) == {address: QUERIES // 2 for address in SERVERS.values()}, short


def test_without_per_datagram_one_client_stays_on_one_server(tmp_path: Path) -> None:
    source = f"127.0.0.1#{free_port(socket.SOCK_DGRAM)}"
    with dns_servers(tmp_path) as peers, running_evenflow(udp_config(peers, False), tmp_path) as ef:
        short = [
            dig(ef.port(), "-b", source, "+short", "who.evenflow.test", "A").strip()
            for _ in range(6)
        ]
    assert len(set(short)) == 1 and short[0] in SERVERS.values(), short
