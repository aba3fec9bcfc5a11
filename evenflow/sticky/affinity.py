"""A pool's affinity at pick time: hash keys, sticky sessions, and the hot-spot counters.

`PoolAffinity` is built by the control plane with each snapshot for pools that hash or stick;
the long-lived parts (the source-address table, the sketches) come from `PoolTracking`, which
survives snapshots. The data plane asks it for a backend and learns whether stickiness hit,
missed or re-pinned, which the decision log reports.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Sequence

from evenflow.balancing.base import Balancer, PickContext
from evenflow.config.affinity import HashKey
from evenflow.config.model import Pool
from evenflow.core.backend import Admin, BackendState
from evenflow.core.request import RequestHead
from evenflow.observability.heavy_hitters import SpaceSaving
from evenflow.sticky.cookie import CookieAffinity
from evenflow.sticky.source import SourceAffinity

MAX_KEY_LABEL = 64  # characters of a key shown in the hot-key view
# keys whose values are secrets: shown as a truncated hash, never as they are
_SECRET_KEYS = frozenset(("authorization", "cookie", "proxy-authorization"))
# a key named like one of these is a secret too (query:token, header:x-api-key...)
_SECRET_WORDS = ("token", "secret", "key", "auth", "pass", "session", "sig")

_LABEL_KEY = os.urandom(16)

HIT = "hit"
MISS = "miss"
REPIN = "repin"


class PoolTracking:
    """Per-pool state that outlives snapshots: the source table and the heavy-hitter sketches."""

    __slots__ = ("source", "keys", "clients", "sticky_hits", "sticky_misses", "sticky_repins")

    def __init__(self, config: Pool) -> None:
        sticky = config.sticky
        self.source = (
            SourceAffinity(sticky.source_ip)
            if sticky is not None and sticky.source_ip is not None
            else None
        )
        self.keys = SpaceSaving(32)  # the heaviest hash keys
        self.clients = SpaceSaving(32)  # the heaviest client addresses (NAT hot spots)
        self.sticky_hits = 0
        self.sticky_misses = 0
        self.sticky_repins = 0


def key_extractor(spec: HashKey | None, missing: str) -> Callable[[RequestHead], bytes | None]:
    """The function that reads a request's hash key; a missing key falls back to the client
    address, or to None (the algorithm then spreads such requests)."""
    use_client = missing == "client_ip"
    kind = spec.kind if spec is not None else "client_ip"
    name = spec.name if spec is not None else ""
    if kind == "header":
        wanted = name.lower().encode("latin-1")

        def read(req: RequestHead) -> str | bytes | None:
            return req.header(wanted)
    elif kind == "cookie":

        def read(req: RequestHead) -> str | bytes | None:
            return req.cookie(name)
    elif kind == "query":

        def read(req: RequestHead) -> str | bytes | None:
            return req.query_param(name)
    elif kind == "path":

        def read(req: RequestHead) -> str | bytes | None:
            return req.path
    else:

        def read(req: RequestHead) -> str | bytes | None:
            return req.client_ip

    def extract(req: RequestHead) -> bytes | None:
        value = read(req)
        if value:
            return value.encode("latin-1", "replace") if isinstance(value, str) else value
        return req.client_ip.encode() if use_client else None

    return extract


class PoolAffinity:
    """How one pool picks when it hashes or sticks (one per snapshot)."""

    __slots__ = (
        "extract",
        "key_is_secret",
        "cookie",
        "draining_follows",
        "tracking",
        "usable",
        "by_address",
        "watch_clients",
    )

    def __init__(
        self,
        name: str,
        config: Pool,
        usable: Sequence[BackendState],
        members: Sequence[BackendState],
        tracking: PoolTracking,
        secret: bytes,
        hashing: bool,
    ) -> None:
        spec = None
        if config.hash_key is not None:
            kind, _, key_name = config.hash_key.partition(":")
            spec = HashKey(kind, key_name)
        self.extract = key_extractor(spec, config.hash_key_missing) if hashing else None
        self.key_is_secret = spec is not None and (
            spec.kind == "cookie"
            or spec.name.lower() in _SECRET_KEYS
            or any(word in spec.name.lower() for word in _SECRET_WORDS)
        )
        sticky = config.sticky
        self.cookie = (
            CookieAffinity(name, sticky.cookie, secret, members)
            if sticky is not None and sticky.cookie is not None
            else None
        )
        self.draining_follows = sticky is not None and (
            sticky.cookie is None or sticky.cookie.draining == "follow"
        )
        self.tracking = tracking
        self.usable = frozenset(map(id, usable))
        self.by_address = {b.address: b for b in members}
        # client addresses are what ip-based affinity keys on: a NAT concentrates them
        self.watch_clients = (
            config.algorithm == "ip_hash"
            or tracking.source is not None
            or (hashing and (spec is None or spec.kind == "client_ip"))
        )

    def pick(
        self,
        balancer: Balancer,
        ctx: PickContext,
        req: RequestHead | None,
        client_ip: str,
    ) -> tuple[BackendState | None, BackendState | None, str]:
        """(backend, the backend a cookie or table pinned, sticky outcome or "")."""
        tracking = self.tracking
        if self.watch_clients:
            tracking.clients.offer(client_ip)
        extract = self.extract
        if extract is not None and req is not None:
            key = extract(req)
            ctx.hash_key = key
            if key is not None:
                tracking.keys.offer(self._label(key))
        elif extract is not None:
            ctx.hash_key = client_ip.encode()
        pinned: BackendState | None = None
        if self.cookie is not None and req is not None:
            pinned = self.cookie.pinned(req.cookie(self.cookie.name))
        elif tracking.source is not None:
            address = tracking.source.pinned(client_ip, time.monotonic())
            pinned = self.by_address.get(address) if address is not None else None
        if self.cookie is None and tracking.source is None:
            return balancer.pick(ctx), None, ""
        if pinned is not None and self._may_keep(pinned):
            tracking.sticky_hits += 1
            backend: BackendState | None = pinned
            outcome = HIT
        else:
            backend = balancer.pick(ctx)
            if pinned is None:
                tracking.sticky_misses += 1
                outcome = MISS
            else:
                tracking.sticky_repins += 1
                outcome = REPIN
        if tracking.source is not None and backend is not None:
            tracking.source.pin(client_ip, backend.address, time.monotonic())
        return backend, pinned, outcome

    def _may_keep(self, backend: BackendState) -> bool:
        if id(backend) in self.usable:
            return True
        # a draining backend keeps its existing sessions until its deadline (HAProxy #2894)
        return (
            self.draining_follows
            and backend.admin is Admin.DRAINING
            and time.monotonic() < backend.drain_deadline
        )

    def _label(self, key: bytes) -> str:
        if self.key_is_secret:
            # keyed with a per-process secret: the label cannot be brute-forced offline
            return "#" + hmac.new(_LABEL_KEY, key, hashlib.blake2b).hexdigest()[:12]
        return key[:MAX_KEY_LABEL].decode("latin-1")
