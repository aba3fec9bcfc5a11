"""The compiled route table of one HTTP listener: routes in order, the first that matches wins.

The control plane compiles it once per config (it travels in the snapshot); the data plane calls
`match` per request, then `pick_pool` on the route it got. Compiling raises ValueError, naming the
route, for what the config model could not catch; matching and picking never raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from evenflow.config.model import HttpListener, Route
from evenflow.core.request import RequestHead
from evenflow.policies.headers import CompiledRewrite, compile_rewrite
from evenflow.routing.matchers import Predicate, compile_match

if TYPE_CHECKING:
    from evenflow.observability.stats import RequestStats


class CompiledRoute:
    """One route, ready to test and to pick a pool; `test` is None when every request matches.

    A split route keeps its smooth weighted round-robin state here, so it belongs to one table
    and one event loop; a reload builds a new table and the sequence starts over.
    """

    __slots__ = (
        "name",
        "index",
        "test",
        "is_split",
        "pools",
        "request_rewrite",
        "response_rewrite",
        "single_pool",
        "_branches",
        "_weights",
        "_current",
        "_total",
        "series",
    )

    def __init__(self, route: Route, index: int) -> None:
        self.name = route.name if route.name is not None else f"route-{index}"
        self.index = index
        try:
            self.test: Predicate | None = compile_match(route.match)
            self.request_rewrite: CompiledRewrite | None = compile_rewrite(route.request_headers)
            self.response_rewrite: CompiledRewrite | None = compile_rewrite(route.response_headers)
        except ValueError as exc:
            raise ValueError(f"route {self.name!r} (routes[{index}]): {exc}") from None
        self.is_split = route.split is not None
        if route.split is not None:
            # Weight 0 means "never", so such branches are left out of the rotation entirely.
            live = [(b.pool, b.weight) for b in route.split if b.weight > 0]
        elif route.pool is not None:
            live = [(route.pool, 1)]
        else:
            live = []
        if not live:
            raise ValueError(f"route {self.name!r} (routes[{index}]): no pool with a weight > 0")
        self._branches = tuple(pool for pool, _ in live)
        self._weights = tuple(weight for _, weight in live)
        self._current = [0] * len(live)
        self._total = sum(self._weights)
        # the pool when there is only one (no split): read directly on the hot path
        self.single_pool = self._branches[0] if len(live) == 1 else None
        self.pools = tuple(dict.fromkeys(self._branches))  # distinct, in config order
        # the data plane's metric series of this route, by backend (see observability/stats)
        self.series: dict[object, RequestStats] = {}

    def pick_pool(self) -> str:
        """The pool for the next request; for a split it is also the branch label for logs.

        Split routes use nginx's smooth weighted round-robin: every cycle of sum(weights) picks
        gives each branch exactly its weight, spread out (95/5 gives 95 and 5 in every 100).
        """
        pool = self.single_pool
        if pool is not None:
            return pool
        current = self._current
        weights = self._weights
        best = 0
        for i in range(len(weights)):
            current[i] += weights[i]
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self._branches[best]

    def __repr__(self) -> str:
        return f"<CompiledRoute {self.name} → {', '.join(self.pools)}>"


class RouteTable:
    """A listener's routes in order; `match` returns the first that matches, None for a 404."""

    __slots__ = ("routes", "_entries")

    def __init__(self, routes: Sequence[CompiledRoute]) -> None:
        self.routes = tuple(routes)
        # (test, route) pairs: one tuple unpack per route is the cheapest loop Python offers.
        self._entries = tuple((route.test, route) for route in self.routes)

    def match(self, req: RequestHead) -> CompiledRoute | None:
        """The first route whose conditions `req` meets, or None (the proxy answers 404)."""
        for test, route in self._entries:
            if test is None or test(req):
                return route
        return None


def compile_routes(routes: Sequence[Route], catch_all_pool: str | None = None) -> RouteTable:
    """Compile `routes` in order, then a catch-all route to `catch_all_pool` if given."""
    compiled = [CompiledRoute(route, i) for i, route in enumerate(routes)]
    if catch_all_pool is not None:
        catch_all = Route.model_validate({"pool": catch_all_pool})
        compiled.append(CompiledRoute(catch_all, len(compiled)))
    return RouteTable(compiled)


def compile_listener(listener: HttpListener) -> RouteTable:
    """The route table of `listener`: its routes, then its `pool:` as the catch-all."""
    return compile_routes(listener.routes, listener.pool)
