"""ip_hash: consistent hashing on the client address, on consistent_hash's ring.

Not a modulo of the address: adding a backend to n moves about 1/(n+1) of clients, not most of
them. The key is the address, or with `ip_prefix` its /24 (IPv4) or /64 (IPv6), so clients
behind one network (a NAT pool, a mobile carrier's rotating addresses) stay together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from typing import ClassVar

from evenflow.balancing.base import BalancerOptions, Needs, PickContext, register
from evenflow.balancing.consistent_hash import ConsistentHash
from evenflow.balancing.hashing import key_hash
from evenflow.core.backend import BackendState


def address_key(ip: str, prefix: bool) -> bytes:
    """The bytes hashed for client address `ip`: the address, or its /24 or /64 if `prefix`.

    IPv4 is keyed on its dotted-quad text, as sockets print it (no parse: the common case stays
    cheap), an IPv4-mapped IPv6 address (a dual-stack listener) as that IPv4 address, and
    IPv6 on its 16 packed bytes (8 for the /64), so every way of writing it keys the same.
    Text that is no address is keyed as it is.
    """
    if ip[:7].lower() == "::ffff:" and "." in ip:
        ip = ip[7:]
    if ":" not in ip:
        return (ip.rpartition(".")[0] if prefix else ip).encode()
    try:
        packed = ipaddress.IPv6Address(ip).packed
    except ValueError:
        return ip.encode()
    return packed[:8] if prefix else packed


@register
class IpHash(ConsistentHash):
    """The ring keyed on ctx.client_ip; no client address (a unix socket) spreads by weight."""

    name: ClassVar[str] = "ip_hash"
    needs: ClassVar[Needs] = Needs.CLIENT_ADDR

    __slots__ = ("_prefix",)

    def __init__(
        self, backends: Sequence[BackendState], options: BalancerOptions | None = None
    ) -> None:
        opts = options if options is not None else BalancerOptions()
        super().__init__(backends, opts)
        self._prefix = opts.ip_prefix

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        ip = ctx.client_ip
        if not ip:
            return self.spread(avoid)
        return self.pick_hash(key_hash(address_key(ip, self._prefix)), avoid)
