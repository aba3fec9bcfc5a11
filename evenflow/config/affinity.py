"""Affinity settings of a pool: what a hashing algorithm keys on, and sticky sessions.

`hash_key` names where the key comes from (`header:NAME`, `cookie:NAME`, `query:NAME`, `path`,
`client_ip`); `sticky` pins a client to a backend with a signed cookie (no table: every node
with the same secret honours it) or by source address.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from evenflow.config.base import Model
from evenflow.config.units import Duration

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class HashKey:
    """A parsed `hash_key`: `kind` is header, cookie, query, path or client_ip."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: str = "") -> None:
        self.kind = kind
        self.name = name

    @property
    def needs_request(self) -> bool:
        """Keys that only an HTTP request has (refused on tcp/udp listeners)."""
        return self.kind != "client_ip"

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


def parse_hash_key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(
            "write the hash key as header:NAME, cookie:NAME, query:NAME, path or client_ip"
        )
    text = value.strip()
    if text in ("path", "client_ip"):
        return text
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("header", "cookie", "query") or not name:
        raise ValueError(
            f"{value!r}: write header:NAME, cookie:NAME, query:NAME, path or client_ip"
        )
    if kind != "query" and not _TOKEN.fullmatch(name):
        raise ValueError(f"{value!r}: {name!r} is not a valid {kind} name")
    return f"{kind}:{name.lower() if kind == 'header' else name}"


HashKeySpec = Annotated[str, BeforeValidator(parse_hash_key)]


def hash_key_of(spec: str | None) -> HashKey | None:
    if spec is None:
        return None
    kind, _, name = spec.partition(":")
    return HashKey(kind, name)


class CookieSticky(Model):
    name: str = Field("EF_AFFINITY", description="Cookie name. Default EF_AFFINITY.")
    ttl: Duration | None = Field(
        None, description="Cookie lifetime (Max-Age); omitted: a session cookie."
    )
    path: str = Field("/", description="Cookie Path. Default /.")
    domain: str | None = Field(None, description="Cookie Domain; omitted: the request's host.")
    secure: bool = Field(False, description="Send the cookie over HTTPS only. Default false.")
    http_only: bool = Field(True, description="Hide the cookie from scripts. Default true.")
    same_site: Literal["Lax", "Strict", "None"] | None = Field(
        "Lax", description="SameSite attribute. Default Lax."
    )
    secret: str | None = Field(
        None,
        description="Secret that signs the cookie value (an HMAC of the backend's identity). "
        "Prefer secret_env. Without either, a random per-process secret is used and "
        "stickiness does not survive a restart or span nodes.",
    )
    secret_env: str | None = Field(
        None, description="Environment variable holding the secret (read at load time)."
    )
    draining: Literal["follow", "repin"] = Field(
        "follow",
        description="A pinned backend that is draining: follow keeps sending its existing "
        "sessions to it until its drain deadline; repin moves them at once. Default follow.",
    )

    @model_validator(mode="after")
    def _cookie_name(self) -> CookieSticky:
        if not _TOKEN.fullmatch(self.name):
            raise ValueError(f"cookie name {self.name!r} is not a valid token")
        if self.same_site == "None" and not self.secure:
            raise ValueError("same_site None needs secure: true (browsers refuse it otherwise)")
        return self


class SourceSticky(Model):
    ttl: Duration = Field(
        1800.0, description="How long an idle client address keeps its backend. Default 30m."
    )
    max_entries: int = Field(
        100000,
        ge=1,
        description="Client addresses remembered at most; the least recently seen are "
        "forgotten first. Default 100000.",
    )


class Sticky(Model):
    cookie: CookieSticky | None = Field(None, description="Pin clients with a signed cookie.")
    source_ip: SourceSticky | None = Field(
        None, description="Pin clients by source address (a bounded table with a TTL)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Sticky:
        if (self.cookie is None) == (self.source_ip is None):
            raise ValueError("give one of cookie or source_ip")
        return self
