"""The thread that writes log lines to a pipe, FIFO, socket or terminal, whose reader may stop
reading: its own descriptor, a close that never waits, one writer per pipe for stdout and
stderr."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from evenflow.observability.log_writer import BackgroundWriter, shared_writer


def read_all(fd: int) -> bytes:
    """What the pipe holds until every write end is closed."""
    received = bytearray()
    while chunk := os.read(fd, 1 << 16):
        received += chunk
    return bytes(received)


@pytest.fixture
def pipe_writer() -> Iterator[tuple[int, BackgroundWriter]]:
    """A pipe's read end and a writer on its write end, which its owner has closed since: the
    number may be any file's next, and the writer's lines must not follow it there."""
    read_end, write_end = os.pipe()
    try:
        writer = BackgroundWriter(write_end)
        os.close(write_end)
        yield read_end, writer
    finally:
        os.close(read_end)


@pytest.mark.timeout(20)
def test_a_writer_writes_on_a_descriptor_of_its_own_and_closes_it_when_done(
    pipe_writer: tuple[int, BackgroundWriter],
) -> None:
    read_end, writer = pipe_writer
    assert writer.submit(b"one\n", 1, 100) and writer.submit(b"two\n", 1, 100)
    writer.close()
    # every line, then the end of the pipe: the writer closed its own descriptor
    assert read_all(read_end) == b"one\ntwo\n"
    assert writer.written == 2 and writer.lost == 0


@pytest.mark.timeout(20)
def test_close_never_waits_for_a_reader_that_stopped_and_the_lines_still_arrive(
    pipe_writer: tuple[int, BackgroundWriter],
) -> None:
    read_end, writer = pipe_writer
    batch = b"x" * 1023 + b"\n"
    for _ in range(200):  # 200 KiB: more than a pipe holds, nobody reading yet
        assert writer.submit(batch, 1, 1000)
    writer.close()  # returns (a reload on the loop), with the thread mid-write
    assert writer.submit(b"late\n", 1, 1000) is False  # closed: nothing more taken
    assert read_all(read_end) == batch * 200  # the reader comes back: all of it


@pytest.mark.timeout(20)
def test_stdout_and_stderr_writer_fails_quietly_where_its_warning_would_fail_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: every write fails (EPIPE)
    try:
        shared = shared_writer(write_end)
        own = BackgroundWriter(write_end)
        for writer in (shared, own):
            assert writer.submit(b"line\n", 1, 100)
            writer.close()
            assert writer.drain()
        assert shared.lost == own.lost == 1
        # only the access log's own writer says so: stderr's would write its warning to
        # itself, fail, and warn again
        assert len([r for r in caplog.records if "log write failed" in r.getMessage()]) == 1
    finally:
        os.close(write_end)


def test_two_descriptors_of_one_pipe_share_one_writer() -> None:
    # stdout and stderr as `2>&1 | tee`: two writers would cut into each other's lines
    read_end, write_end = os.pipe()
    other = os.dup(write_end)
    try:
        assert shared_writer(write_end) is shared_writer(other)
    finally:
        for fd in (read_end, write_end, other):
            os.close(fd)
