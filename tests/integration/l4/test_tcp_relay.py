"""A tcp listener relays bytes both ways, intact, and passes on half-closes, resets and pauses."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from l4_support import (
    Accepted,
    Evenflow,
    TcpBackend,
    blocking,
    closed_port,
    connect,
    echo,
    how_closed,
    recv_exactly,
    recv_until_eof,
    reset,
    round_trip,
    tcp_config,
)

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]

MiB = 1024 * 1024


async def test_bytes_relayed_both_ways(evenflow: StartEvenflow, tcp_backend: StartBackend) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> list[bytes]:
        with connect(ef.port()) as sock:
            # binary, every byte value, several sizes: nothing is parsed or altered
            return [round_trip(sock, bytes(range(256)) * n) for n in (1, 7, 300)]

    answers = await blocking(client)
    assert answers == [bytes(range(256)) * n for n in (1, 7, 300)]
    assert backend.count == 1


async def test_large_transfers_arrive_intact_both_ways(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    upload = os.urandom(32 * MiB)
    download = os.urandom(64 * MiB)

    def backend_side(conn: Accepted) -> None:
        digest = hashlib.sha256()
        while data := conn.sock.recv(256 * 1024):
            digest.update(data)
        conn.sock.sendall(digest.hexdigest().encode() + b"\n")
        conn.sock.sendall(download)
        conn.sock.shutdown(socket.SHUT_WR)

    backend = tcp_backend(backend_side)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> tuple[bytes, str]:
        with connect(ef.port()) as sock:
            sock.settimeout(30)
            sock.sendall(upload)
            sock.shutdown(socket.SHUT_WR)
            received = recv_until_eof(sock)
        line, _, rest = received.partition(b"\n")
        return line, hashlib.sha256(rest).hexdigest()

    seen_by_backend, downloaded = await blocking(client)
    assert seen_by_backend.decode() == hashlib.sha256(upload).hexdigest()
    assert downloaded == hashlib.sha256(download).hexdigest()


async def test_client_half_close_reaches_backend_which_can_still_answer(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    def count_then_answer(conn: Accepted) -> None:
        total = len(recv_until_eof(conn.sock))  # ends only when the client's FIN arrives
        conn.events.append("eof")
        time.sleep(0.2)  # answering a while after the EOF: the path back must still be open
        conn.sock.sendall(b"got %d bytes\n" % total)
        conn.sock.shutdown(socket.SHUT_WR)

    backend = tcp_backend(count_then_answer)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> bytes:
        with connect(ef.port()) as sock:
            sock.sendall(b"x" * 100_000)
            sock.shutdown(socket.SHUT_WR)
            return recv_until_eof(sock)

    assert await blocking(client) == b"got 100000 bytes\n"
    assert backend.accepted[0].events == ["eof"]


async def test_backend_half_close_reaches_client_which_can_still_send(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    def banner_then_listen(conn: Accepted) -> None:
        conn.sock.sendall(b"banner\n")
        conn.sock.shutdown(socket.SHUT_WR)
        conn.events.append(recv_until_eof(conn.sock).decode())

    backend = tcp_backend(banner_then_listen)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> bytes:
        with connect(ef.port()) as sock:
            received = recv_until_eof(sock)  # the backend's FIN arrives as EOF here
            time.sleep(0.2)
            sock.sendall(b"still talking")
            sock.shutdown(socket.SHUT_WR)
            return received

    assert await blocking(client) == b"banner\n"
    await blocking(backend.accepted[0].done.wait, 5)
    assert backend.accepted[0].events == ["still talking"]


async def test_backend_reset_reaches_client_as_reset(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    def answer_then_reset(conn: Accepted) -> None:
        conn.sock.recv(100)
        conn.sock.sendall(b"ok\n")
        time.sleep(0.2)
        reset(conn.sock)

    backend = tcp_backend(answer_then_reset)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> tuple[bytes, str]:
        with connect(ef.port()) as sock:
            sock.sendall(b"hi")
            answer = recv_exactly(sock, 3)
            return answer, how_closed(sock)

    assert await blocking(client) == (b"ok\n", "reset")


async def test_client_reset_reaches_backend_as_reset(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    def answer_then_wait(conn: Accepted) -> None:
        conn.sock.recv(100)
        conn.sock.sendall(b"ok\n")
        conn.events.append(how_closed(conn.sock))

    backend = tcp_backend(answer_then_wait)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))

    def client() -> None:
        sock = connect(ef.port())
        sock.sendall(b"hi")
        recv_exactly(sock, 3)
        reset(sock)

    await blocking(client)
    await blocking(backend.accepted[0].done.wait, 7)
    assert backend.accepted[0].events == ["reset"]


TOTAL = 200 * MiB
CHUNK = memoryview(os.urandom(MiB))
# What evenflow may hold for one stalled connection: the transport's high-water mark plus one
# read (256 KiB) and its copy, with room for the event loop's own bookkeeping. Far below the
# 200 MiB a proxy without backpressure would take in.
BUFFER_BOUND_BYTES = 4 * MiB


def send_all_of_it(sock: socket.socket, progress: Callable[[int], None]) -> None:
    sock.settimeout(60)
    for _ in range(TOTAL // len(CHUNK)):
        sock.sendall(CHUNK)
        progress(len(CHUNK))
    sock.shutdown(socket.SHUT_WR)


def read_all_of_it(sock: socket.socket) -> str:
    sock.settimeout(60)
    digest = hashlib.sha256()
    received = 0
    while data := sock.recv(1024 * 1024):
        digest.update(data)
        received += len(data)
    assert received == TOTAL
    return digest.hexdigest()


def expected_digest() -> str:
    digest = hashlib.sha256()
    for _ in range(TOTAL // len(CHUNK)):
        digest.update(CHUNK)
    return digest.hexdigest()


async def wait_stalled(progress: Callable[[], int], quiet_s: float = 0.5) -> int:
    """The sender's progress once it has not moved for `quiet_s` (its sends block)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sender never stalled: {progress()} bytes sent")


@pytest.fixture
def traced() -> Iterator[None]:
    """Python's allocations traced: evenflow runs in this process, so its buffers are seen."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


async def test_backpressure_client_not_reading_keeps_evenflow_buffers_bounded(
    evenflow: StartEvenflow, tcp_backend: StartBackend, traced: None
) -> None:
    def blast(conn: Accepted) -> None:
        def progress(n: int) -> None:
            conn.backend.progress += n

        send_all_of_it(conn.sock, progress)

    backend = tcp_backend(blast)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))
    sock = await blocking(connect, ef.port())
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        stalled_at = await wait_stalled(lambda: backend.progress)
        _, peak = tracemalloc.get_traced_memory()
        # kernel buffers (a few MiB per socket) take what evenflow stops reading
        assert stalled_at < TOTAL // 4, f"the backend sent {stalled_at} bytes unhindered"
        assert peak - baseline < BUFFER_BOUND_BYTES, (
            f"evenflow grew by {(peak - baseline) / MiB:.1f} MiB while its client did not read"
        )
        digest = await blocking(read_all_of_it, sock)  # resumes: everything still arrives
    finally:
        sock.close()
    assert digest == expected_digest()


async def test_backpressure_backend_not_reading_keeps_evenflow_buffers_bounded(
    evenflow: StartEvenflow, tcp_backend: StartBackend, traced: None
) -> None:
    start_reading = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_reader(conn: Accepted) -> None:
        asyncio.run_coroutine_threadsafe(start_reading.wait(), loop).result(30)
        conn.events.append(read_all_of_it(conn.sock))

    backend = tcp_backend(slow_reader)
    ef = await evenflow(tcp_config({"p": {"backends": [backend.address]}}, pool="p"))
    sent = [0]

    def progress(n: int) -> None:
        sent[0] += n

    sock = await blocking(connect, ef.port())
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sending = asyncio.ensure_future(blocking(send_all_of_it, sock, progress))
        stalled_at = await wait_stalled(lambda: sent[0])
        _, peak = tracemalloc.get_traced_memory()
        assert stalled_at < TOTAL // 4, f"the client sent {stalled_at} bytes unhindered"
        assert peak - baseline < BUFFER_BOUND_BYTES, (
            f"evenflow grew by {(peak - baseline) / MiB:.1f} MiB while its backend did not read"
        )
        start_reading.set()
        await asyncio.wait_for(sending, 60)
        await blocking(backend.accepted[0].done.wait, 60)
    finally:
        sock.close()
    assert backend.accepted[0].events == [expected_digest()]


async def test_idle_connection_closed_after_idle_timeout(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}},
            pool="p",
            timeouts={"idle": "1s", "handshake": "1s"},
        )
    )

    def busy_then_idle() -> tuple[str, float, float]:
        with connect(ef.port()) as sock:
            started = time.monotonic()
            # 2.5 s of traffic every 0.3 s: a busy connection is not idle, however long it lives
            while time.monotonic() - started < 2.5:
                round_trip(sock, b"ping")
                time.sleep(0.3)
            busy_for = time.monotonic() - started
            quiet = time.monotonic()
            end = how_closed(sock, timeout_s=5)
            return end, busy_for, time.monotonic() - quiet

    end, busy_for, idle_for = await blocking(busy_then_idle)
    assert busy_for >= 2.5
    assert end == "eof"
    # the watchdog checks once per period (here 1 s): it acts between 1 and 2 periods late
    assert 0.9 <= idle_for <= 2.6
    await blocking(backend.accepted[0].done.wait, 3)
    assert backend.accepted[0].events == ["eof"]  # the backend's side was closed too


async def test_connect_failure_retried_on_another_backend(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    dead = f"127.0.0.1:{closed_port()}"
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [dead, backend.address], "retries": {"attempts": 2}}}, pool="p"
        )
    )

    def client() -> bytes:
        with connect(ef.port()) as sock:
            return round_trip(sock, b"hello")

    answers = [await blocking(client) for _ in range(4)]
    assert answers == [b"hello"] * 4
    assert backend.count == 4
    lines = await ef.wait_log(4)
    assert [line["close"] for line in lines] == ["client"] * 4
    assert {line["backend"] for line in lines} == {backend.address}
    # connections that were first sent to the dead backend went on to the live one
    attempts = [line["attempts"] for line in lines]
    assert set(attempts) <= {1, 2} and sum(attempts) > 4, attempts
