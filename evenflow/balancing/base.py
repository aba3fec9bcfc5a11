"""The Balancer protocol every algorithm implements, and the registry of config words.

A balancer is built once for an exact list of usable backends (the control plane rebuilds it on
every membership, weight or health change) and then only picks. It never sees drain, health or
slow start: `core/pool.py` decides which backends are usable and at what effective weight.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Collection, Sequence
from typing import ClassVar, Protocol, TypeVar, cast

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


def is_prime(n: int) -> bool:
    """Trial division: table sizes are checked once per build, and sqrt(65537) is 256."""
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


@dataclasses.dataclass(frozen=True, slots=True)
class BalancerOptions:
    """The pool settings hashing algorithms read; the others take none. Validated on creation,
    so a balancer never sees a bad value (config/ reports the user's mistake first)."""

    virtual_nodes: int = 160  # consistent_hash, ip_hash: ring points per unit of weight
    table_size: int = 65537  # maglev: lookup table slots; must be prime
    bounded_load: float | None = None  # c >= 1: no backend takes more than c x the mean load
    ip_prefix: bool = False  # ip_hash: key on the client's /24 (IPv4) or /64 (IPv6)

    def __post_init__(self) -> None:
        # the same bounds as config/model.py's Pool fields
        if not 1 <= self.virtual_nodes <= 10_000:
            raise ValueError(f"virtual_nodes must be 1..10000, not {self.virtual_nodes}")
        if not 7 <= self.table_size <= 1_000_003 or not is_prime(self.table_size):
            raise ValueError(f"table_size must be a prime from 7 to 1000003, not {self.table_size}")
        c = self.bounded_load
        if c is not None and not (math.isfinite(c) and c >= 1.0):
            raise ValueError(f"bounded_load must be >= 1.0, not {c}")


class Balancer(Protocol):
    name: ClassVar[str]
    needs: ClassVar[Needs]

    def __init__(self, backends: Sequence[BackendState]) -> None: ...

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        """A backend not in `avoid` if there is one, else one of `avoid`; None for no backends."""
        ...


class ConfigurableBalancer(Balancer, Protocol):
    """A balancer that reads pool settings: it sets `takes_options = True` and `build` hands it
    the pool's BalancerOptions. The others keep the one-argument constructor."""

    takes_options: ClassVar[bool]

    def __init__(
        self, backends: Sequence[BackendState], options: BalancerOptions | None = None
    ) -> None: ...


REGISTRY: dict[str, type[Balancer]] = {}

B = TypeVar("B", bound=type[Balancer])


def register(cls: B) -> B:
    """Make `cls` available under its config word `cls.name`.

    Called after the class statement in the modules mypyc compiles: mypyc makes a class with
    any other decorator a plain Python class, whose every pick is a generic call."""
    if cls.name in REGISTRY:
        raise ValueError(f"balancer {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def algorithm_names() -> list[str]:
    """Every config word, for config validation and docs."""
    import evenflow.balancing  # noqa: F401  (importing the package registers every algorithm)

    return sorted(REGISTRY)


def build(
    name: str, backends: Sequence[BackendState], options: BalancerOptions | None = None
) -> Balancer:
    """The balancer `name` for exactly these backends; `options` reach only algorithms that
    take them (None: the defaults)."""
    import evenflow.balancing  # noqa: F401

    cls = REGISTRY[name]
    if getattr(cls, "takes_options", False):
        return cast("type[ConfigurableBalancer]", cls)(backends, options)
    return cls(backends)
