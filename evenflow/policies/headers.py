"""Header rewrites a route applies to requests before forwarding and to responses before replying.

A `HeaderRewrite` from the config is compiled once into names as lowercase bytes and values as
latin-1 bytes; `apply` then builds the new header list in one pass. Names and values that could
corrupt a message (non-tokens, CR/LF/NUL, framing headers) are refused at compile time.
"""

from __future__ import annotations

from evenflow.config.model import HeaderRewrite, check_header_value, check_rewritable_name

Headers = list[tuple[bytes, bytes]]


class CompiledRewrite:
    """`remove`, then `set`, then `add`, over a header list; names compare case-insensitively.

    - remove: every line with that name goes.
    - set: every line with that name goes; one line with the new value takes the place of the
      first of them, or goes at the end when there was none (or when remove also named it).
    - add: appended at the end, after any set that went there, keeping existing lines.
    """

    __slots__ = ("_drop", "_in_place", "_set", "_add")

    def __init__(self, rewrite: HeaderRewrite) -> None:
        removed = frozenset(_name(name) for name in rewrite.remove)
        self._set = _pairs(rewrite.set)
        self._add = _pairs(rewrite.add)
        self._drop = removed | {key for key, _ in self._set}
        # A name that remove also gives has no first occurrence left to take the place of.
        self._in_place = {key: value for key, value in self._set if key not in removed}

    def apply(self, headers: Headers) -> Headers:
        """A new list: `headers` with this rewrite applied; `headers` itself is not changed."""
        drop = self._drop
        in_place = self._in_place
        out: Headers = []
        placed: set[bytes] = set()
        for name, value in headers:
            key = name.lower()
            if key not in drop:
                out.append((name, value))
            elif key in in_place and key not in placed:
                out.append((key, in_place[key]))
                placed.add(key)
        for key, value in self._set:
            if key not in placed:
                out.append((key, value))
        out.extend(self._add)
        return out


def compile_rewrite(rewrite: HeaderRewrite | None) -> CompiledRewrite | None:
    """The compiled rewrite, or None when there is nothing to change (the proxy then skips it)."""
    if rewrite is None or not (rewrite.set or rewrite.add or rewrite.remove):
        return None
    return CompiledRewrite(rewrite)


def _name(name: str) -> bytes:
    # A token is ASCII by definition, so this encode cannot fail once the check passed.
    return check_rewritable_name(name).lower().encode("ascii")


def _pairs(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    pairs: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for name, value in headers.items():
        key = _name(name)
        if key in seen:
            raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
        seen.add(key)
        pairs.append((key, check_header_value(name, value).encode("latin-1")))
    return tuple(pairs)
