"""The client side's per-listener state without a socket: the request ids it makes up."""

from __future__ import annotations

import re

from evenflow.config.load import load_data
from evenflow.proxy.http1.downstream import HttpListenerContext
from evenflow.runtime.controller import Controller


def listener_context() -> HttpListenerContext:
    config = load_data(
        {
            "listeners": [{"name": "public", "bind": "127.0.0.1:8080", "pool": "web"}],
            "pools": {"web": {"backends": ["10.0.0.1:8000"]}},
        }
    ).config
    return HttpListenerContext("public", Controller(config), loop=None, access_log=None)  # type: ignore[arg-type]


def test_request_ids_are_a_random_prefix_and_a_counter_in_hex() -> None:
    ctx = listener_context()
    ids = [ctx.next_request_id() for _ in range(0x10101)]  # past 0xff, 0xfff, 0xffff
    prefix = ids[0].removesuffix(b"1")
    assert re.fullmatch(rb"[0-9a-f]{12}-", prefix)
    assert ids == [prefix + b"%x" % counter for counter in range(1, 0x10102)]
    assert listener_context().next_request_id() != ids[0]  # another listener, another prefix
