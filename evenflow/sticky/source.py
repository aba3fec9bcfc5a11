"""Source-address affinity: a bounded table of client address → backend, with a TTL.

The table is per pool and lives in the control plane's pool state, so it survives snapshot
rebuilds. It is bounded (least recently seen addresses are forgotten first) because a table
keyed on client addresses must never grow with the internet. For stickiness without any table
(and across nodes), use the ip_hash algorithm instead.
"""

from __future__ import annotations

from collections import OrderedDict

from evenflow.config.affinity import SourceSticky


class SourceAffinity:
    __slots__ = ("ttl_s", "max_entries", "_table", "evicted")

    def __init__(self, config: SourceSticky) -> None:
        self.ttl_s = config.ttl
        self.max_entries = config.max_entries
        self._table: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.evicted = 0  # entries forgotten to keep the bound (a metric)

    def pinned(self, client_ip: str, now: float) -> str | None:
        """The backend address `client_ip` is pinned to, or None (unknown or expired)."""
        entry = self._table.get(client_ip)
        if entry is None:
            return None
        address, expires = entry
        if expires < now:
            del self._table[client_ip]
            return None
        return address

    def pin(self, client_ip: str, address: str, now: float) -> None:
        table = self._table
        table[client_ip] = (address, now + self.ttl_s)
        table.move_to_end(client_ip)
        while len(table) > self.max_entries:
            table.popitem(last=False)
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._table)
