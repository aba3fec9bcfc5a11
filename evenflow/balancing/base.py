"""The Balancer protocol every algorithm implements, and the registry of config words.

A balancer is built once for an exact list of usable backends (the control plane rebuilds it on
every membership, weight or health change) and then only picks. It never sees drain, health or
slow start: `core/pool.py` decides which backends are usable and at what effective weight.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from typing import ClassVar, Protocol, TypeVar

from evenflow.core.backend import BackendState


class Needs(enum.Enum):
    """What an algorithm keys on, so the config can refuse a wrong pairing at load time."""

    NONE = "none"  # works for any listener
    CLIENT_ADDR = "client_addr"  # needs the client address (fine on tcp/udp)
    REQUEST = "request"  # needs an HTTP request (header, cookie, query, path)


class PickContext:
    """What an algorithm may key on. One per connection, hash key updated per request."""

    __slots__ = ("client_ip", "hash_key")

    def __init__(self, client_ip: str = "", hash_key: bytes | None = None) -> None:
        self.client_ip = client_ip
        self.hash_key = hash_key  # the value the pool's hash_key extracted, if any


class Balancer(Protocol):
    name: ClassVar[str]
    needs: ClassVar[Needs]

    def __init__(self, backends: Sequence[BackendState]) -> None: ...

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        """A backend not in `avoid` if there is one, else one of `avoid`; None for no backends."""
        ...


REGISTRY: dict[str, type[Balancer]] = {}

B = TypeVar("B", bound=type[Balancer])


def register(cls: B) -> B:
    """Class decorator: make `cls` available under its config word `cls.name`."""
    if cls.name in REGISTRY:
        raise ValueError(f"balancer {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def algorithm_names() -> list[str]:
    """Every config word, for config validation and docs."""
    import evenflow.balancing  # noqa: F401  (importing the package registers every algorithm)

    return sorted(REGISTRY)


def build(name: str, backends: Sequence[BackendState]) -> Balancer:
    import evenflow.balancing  # noqa: F401

    return REGISTRY[name](backends)
