"""The record of one request in the access log (a msgspec Struct).

Its own module, and not compiled with the data path: mypyc would build the class without the
keywords msgspec reads at class creation (omit_defaults, gc), and lines would then carry every
absent field as null.
"""

from __future__ import annotations

import msgspec


class Line(msgspec.Struct, gc=False, omit_defaults=True):
    """One request's JSON record, in the order of its fields; None leaves a field out.

    time, listener, client, method, path, host, status, bytes_in, bytes_out, duration_ms,
    attempts, route, pool, backend; then, when they apply: split (the branch a split route
    took), algorithm, hash_key (a truncated hash, never the key itself: it may be a session
    cookie or a user id), sticky (hit, miss, repin), failures ("backend: reason" per failed
    attempt), connect_ms, ttfb_ms; then request_id and trace_id.

    A msgspec Struct, encoded by msgspec in C, a flush's lines in one call: it escapes what
    clients and backends chose and formats the numbers for a fraction of what Python's string
    formatting costs per request (bench/instructions.py). Not tracked by the garbage
    collector (gc=False): it holds only strings, numbers and a list of strings.
    """

    time: str
    listener: str
    client: str
    method: str
    path: str
    host: str
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    attempts: int
    route: str | None
    pool: str | None
    backend: str | None
    split: str | None = None
    algorithm: str | None = None
    hash_key: str | None = None
    sticky: str | None = None
    failures: list[str] | None = None
    connect_ms: float | None = None
    ttfb_ms: float | None = None
    request_id: str | None = None
    trace_id: str | None = None
