"""The configuration schema: every field with its meaning, unit and default.

This module is the contract of ../shared/design/CONFIG.md in code. Models are frozen and refuse
unknown keys, so a typo is an error, never a silently ignored setting. Rules that span several
fields (a route naming a pool that does not exist) live in `config/checks.py`, so that each
error can carry its own path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from evenflow.config.affinity import HashKeySpec, Sticky
from evenflow.config.base import Address, Model, Shorthand
from evenflow.config.health import Health
from evenflow.config.http2 import Http2
from evenflow.config.l4 import TcpListener, UdpListener
from evenflow.config.tls import ListenerTls, PoolTls
from evenflow.config.units import Duration, Size

ALGORITHMS = (
    "round_robin",
    "weighted_round_robin",
    "least_conn",
    "power_of_two",
    "random",
    "ip_hash",
    "consistent_hash",
    "maglev",
)
Algorithm = Literal[
    "round_robin",
    "weighted_round_robin",
    "least_conn",
    "power_of_two",
    "random",
    "ip_hash",
    "consistent_hash",
    "maglev",
]
HASHING_ALGORITHMS = frozenset(("ip_hash", "consistent_hash", "maglev"))


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, BeforeValidator(lambda v: _check_regex(v) if isinstance(v, str) else v)]


# RFC 9110 §5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: CR, LF and NUL would end or split the header line (request smuggling); the other
# controls, HTAB aside, are not field-vchar either.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Body framing and hop-by-hop headers are the proxy's to write (RFC 9112 §6, RFC 9110 §7.6.1): a
# rewrite of them could make evenflow and a backend disagree on where a message ends.
PROXY_OWNED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def check_header_name(name: str) -> str:
    """`name` if it is a valid header name (a token), else ValueError."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"header name {name!r} is not a valid token (RFC 9110 §5.6.2)")
    return name


def check_rewritable_name(name: str) -> str:
    """`name` if a rewrite may touch it: a token the proxy does not own, else ValueError."""
    check_header_name(name)
    if name.lower() in PROXY_OWNED_HEADERS:
        raise ValueError(
            f"header {name!r} cannot be rewritten: evenflow manages framing and hop-by-hop headers"
        )
    return name


def check_header_value(name: str, value: str) -> str:
    """`value` if it may be sent as a header value (latin-1, no controls), else ValueError."""
    if _BAD_VALUE_CHAR.search(value):
        raise ValueError(
            f"header {name!r}: value {value!r} contains a control character (CR, LF, NUL, ...)"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            f"header {name!r}: value {value!r} has characters outside latin-1"
        ) from None
    return value


# --- listeners --------------------------------------------------------------------------------


class ListenerTimeouts(Model):
    header: Duration = Field(
        10.0,
        gt=0,
        description="Longest time a client may take to send a request's headers, counted from "
        "its first byte (slowloris protection); 408 after it. Default 10s.",
    )
    idle: Duration = Field(
        60.0,
        gt=0,
        description="How long a keep-alive client connection may sit idle between requests "
        "before evenflow closes it. Default 60s.",
    )
    body: Duration = Field(
        60.0,
        gt=0,
        description="Longest pause between two pieces of a request body the client is sending; "
        "after it the request is aborted (408 if no response started). Default 60s.",
    )
    send: Duration = Field(
        60.0,
        gt=0,
        description="Longest time a client may leave its response unread: evenflow's buffer "
        "to it full and no write accepted by its socket (which takes more only once about a "
        "third of its buffer is free, so a very slow reader counts as reading that often, as "
        "with nginx's send_timeout). After it the response is cut off with a reset, the backend "
        "freed, and an HTTP/2 stream reset with CANCEL. Default 60s.",
    )


class ListenerLimits(Model):
    max_connections: int = Field(
        10000,
        ge=1,
        description="Client connections served at once on this listener; past it, new "
        "connections wait (accepted, not read) until one closes, and past twice the limit "
        "they get a 503. Default 10000.",
    )
    max_header_bytes: Size = Field(
        65536,
        ge=1024,
        description="Largest request line plus headers, in bytes; 431 past it. Default 64KiB.",
    )
    max_body_bytes: Size | None = Field(
        None,
        description="Largest request body, in bytes; 413 past it. Default: no limit (bodies are "
        "streamed, so a large body never costs memory).",
    )


class ValueMatch(Model):
    """How one header, query parameter or cookie value must look. Exactly one field is set."""

    exact: str | None = Field(None, description="The value must equal this, byte for byte.")
    regex: Regex | None = Field(
        None, description="The value must match this regular expression (search, not fullmatch)."
    )
    present: bool | None = Field(
        None, description="true: the field must be present (any value); false: must be absent."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueMatch:
        given = [k for k in ("exact", "regex", "present") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact, regex or present")
        return self


def _value_match(value: Any) -> Any:
    # shorthand: `x-canary: "true"` means {exact: "true"}
    if isinstance(value, str):
        return {"exact": value}
    if isinstance(value, bool):
        return {"present": value}
    if not isinstance(value, dict | ValueMatch):
        raise ValueError(
            f"{value!r}: write the value as a quoted string, or as {{exact|regex|present: ...}}"
        )
    return value


MatchValue = Annotated[
    ValueMatch,
    BeforeValidator(_value_match),
    Shorthand({"type": ["string", "boolean"], "description": "string: exact; bool: present"}),
]


def _check_host_pattern(pattern: str) -> str:
    # The same rule routing/matchers.py compiles by: refused here so `check` catches it.
    host = pattern.lower().rstrip(".")
    rest = host[2:] if host.startswith("*.") else host
    if not rest or "*" in rest:
        raise ValueError(
            f"host {pattern!r}: a wildcard may only be a whole first label, as '*.example.com'"
        )
    return pattern


# A gRPC service or method name as it appears in the path "/package.Service/Method".
_GRPC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class GrpcMatch(Model):
    """A gRPC call: the path is /SERVICE/METHOD and the content-type is application/grpc*."""

    service: str = Field(
        description="Fully qualified service name, as in the .proto: users.v1.Users."
    )
    method: str | None = Field(
        None, description="Method name (GetUser); omitted means every method of the service."
    )

    @field_validator("service", "method")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _GRPC_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a gRPC name (letters, digits, _ and .)")
        return value


class Match(Model):
    """Conditions a request must meet, all of them, for the route to apply."""

    host: Annotated[list[str], Shorthand({"type": "string"})] | None = Field(
        None,
        description="Host names (from the Host header, without port, case-insensitive): exact, "
        "or a leading wildcard '*.example.com' matching any subdomain (not example.com itself).",
    )
    path_prefix: str | None = Field(None, description="The path starts with this.")
    path_exact: str | None = Field(None, description="The path equals this.")
    path_regex: Regex | None = Field(
        None, description="The path matches this regular expression (fullmatch)."
    )
    methods: list[str] | None = Field(None, description="Allowed methods, e.g. [GET, POST].")
    headers: dict[str, MatchValue] | None = Field(
        None,
        description="Header name → value: a string for an exact match, or {regex: ...}, "
        "{present: true|false}. Names are case-insensitive.",
    )
    query: dict[str, MatchValue] | None = Field(
        None, description="Query parameter name → value, as for headers."
    )
    cookies: dict[str, MatchValue] | None = Field(
        None, description="Cookie name → value, as for headers."
    )
    grpc: GrpcMatch | None = Field(
        None,
        description="A gRPC call to this service (and method): {service: NAME, method: NAME}.",
    )

    @field_validator("host", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _host_patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            _check_host_pattern(pattern)
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, ValueMatch] | None) -> dict[str, ValueMatch] | None:
        for name, want in (value or {}).items():
            check_header_name(name)
            if want.exact is not None:
                check_header_value(name, want.exact)
        return value

    @field_validator("methods")
    @classmethod
    def _upper_methods(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [m.upper() for m in value]

    @model_validator(mode="after")
    def _one_path_matcher(self) -> Match:
        paths = [k for k in ("path_prefix", "path_exact", "path_regex") if getattr(self, k)]
        if len(paths) > 1:
            raise ValueError(f"give at most one of path_prefix, path_exact, path_regex: {paths}")
        return self


class HeaderRewrite(Model):
    """Header changes, applied in order: remove, then set, then add; names are case-insensitive."""

    set: dict[str, str] = Field(
        default_factory=dict, description="Replace (or add) these headers with these values."
    )
    add: dict[str, str] = Field(
        default_factory=dict, description="Append these headers, keeping any existing ones."
    )
    remove: list[str] = Field(default_factory=list, description="Remove these headers.")

    @field_validator("set", "add")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        lowered: dict[str, str] = {}
        for name, text in value.items():
            check_rewritable_name(name)
            check_header_value(name, text)
            if name.lower() in lowered:
                other = lowered[name.lower()]
                raise ValueError(f"{other!r} and {name!r} name the same header (case-insensitive)")
            lowered[name.lower()] = name
        return value

    @field_validator("remove")
    @classmethod
    def _valid_names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_rewritable_name(name)
        return value


class SplitBranch(Model):
    pool: str = Field(description="Pool that receives this share of the route's requests.")
    weight: int = Field(ge=0, description="Relative share; 0 sends nothing to this branch.")


class Route(Model):
    name: str | None = Field(
        None, description="Name shown in logs and metrics. Default: route-<index>."
    )
    match: Match = Field(
        default_factory=Match, description="Conditions; omitted means every request matches."
    )
    pool: str | None = Field(None, description="Pool that serves the route (or use split).")
    split: list[SplitBranch] | None = Field(
        None, description="Weighted split across several pools, instead of pool."
    )
    request_headers: HeaderRewrite | None = Field(
        None, description="Changes to the request's headers before it is forwarded."
    )
    response_headers: HeaderRewrite | None = Field(
        None, description="Changes to the response's headers before the client gets it."
    )

    @model_validator(mode="after")
    def _pool_or_split(self) -> Route:
        if (self.pool is None) == (self.split is None):
            raise ValueError("give exactly one of pool or split")
        if self.split is not None and not any(b.weight > 0 for b in self.split):
            raise ValueError("split: at least one branch needs a weight > 0")
        return self


class HttpListener(Model):
    name: str = Field(description="Listener name, unique; shown in logs and metrics.")
    bind: Address = Field(description="Address to listen on.")
    protocol: Literal["http"] = Field("http", description="http: HTTP/1.1 request by request.")
    timeouts: ListenerTimeouts = Field(
        default_factory=ListenerTimeouts, description="Client-side timeouts (header, idle, body)."
    )
    limits: ListenerLimits = Field(
        default_factory=ListenerLimits,
        description="Bounds on client connections, request heads and request bodies.",
    )
    routes: list[Route] = Field(
        default_factory=list, description="Routes in order; the first that matches wins."
    )
    pool: str | None = Field(
        None, description="Shorthand for one catch-all route to this pool, after any routes."
    )
    tls: ListenerTls | None = Field(
        None,
        description="Terminate TLS on this listener (HTTPS; HTTP/2 offered by ALPN): "
        "certificates chosen by SNI, versions, ciphers, optional client certificates (mTLS). "
        "Off by default (cleartext HTTP).",
    )
    http2: Http2 = Field(
        default_factory=Http2,
        description="HTTP/2 from clients: h2c with prior knowledge (on by default), stream and "
        "window limits, flood limits.",
    )

    @model_validator(mode="after")
    def _has_a_route(self) -> HttpListener:
        if not self.routes and self.pool is None:
            raise ValueError("give routes, or pool for a single catch-all route")
        return self


def _listener_kind(value: Any) -> str:
    # `protocol` may be left out for http, the common case
    if isinstance(value, dict):
        return str(value.get("protocol", "http"))
    return str(getattr(value, "protocol", "http"))


Listener = Annotated[
    Annotated[HttpListener, Tag("http")]
    | Annotated[TcpListener, Tag("tcp")]
    | Annotated[UdpListener, Tag("udp")],
    Discriminator(_listener_kind),
]


# --- pools ------------------------------------------------------------------------------------


class BackendConfig(Model):
    address: Address = Field(description="Where the backend listens.")
    weight: int = Field(
        1, ge=0, description="Relative share of new traffic; 0 sends it none. Default 1."
    )


def _backend_shorthand(value: Any) -> Any:
    # "10.0.0.1:8000" is short for {address: 10.0.0.1:8000, weight: 1}
    if isinstance(value, str):
        return {"address": value}
    if not isinstance(value, dict | BackendConfig):
        raise ValueError(f"{value!r}: a backend is host:port or {{address: host:port, weight: N}}")
    return value


Backend = Annotated[
    BackendConfig,
    BeforeValidator(_backend_shorthand),
    Shorthand({"type": "string", "description": "host:port, short for {address: host:port}"}),
]


class PoolTimeouts(Model):
    connect: Duration = Field(2.0, description="Longest wait to connect to a backend. Default 2s.")
    response: Duration = Field(
        30.0,
        description="Longest wait for a backend's response head after the request was sent, "
        "and longest pause between two reads of its body; 504 if nothing was sent yet to the "
        "client. Default 30s.",
    )
    idle: Duration = Field(
        30.0,
        description="How long an idle keep-alive connection to a backend is kept for reuse. "
        "Keep it below the backend's own keep-alive timeout. Default 30s.",
    )


class Retries(Model):
    attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Most tries per request, the first included, each on another backend when "
        "one is left. A connect failure is retried for any method; a failure after the request "
        "was sent only for idempotent methods whose body evenflow still holds. Default 3.",
    )


class Pool(Model):
    algorithm: Algorithm = Field(
        "round_robin",
        description="How a backend is picked: round_robin (default), weighted_round_robin "
        "(smooth, as nginx), least_conn (fewest in-flight requests per weight), power_of_two "
        "(two random candidates, fewer in-flight wins), random, ip_hash (consistent hashing "
        "on the client address), consistent_hash (a ring with virtual nodes, on hash_key), "
        "maglev (Google's Maglev table, on hash_key).",
    )
    backends: list[Backend] = Field(min_length=1, description="The backends; at least one.")
    timeouts: PoolTimeouts = Field(
        default_factory=PoolTimeouts, description="Backend-side timeouts (connect, response, idle)."
    )
    retries: Retries = Field(
        default_factory=Retries, description="How a failed request is retried on another backend."
    )
    max_idle_connections: int = Field(
        128,
        ge=0,
        description="Idle keep-alive connections kept per backend for reuse. Default 128.",
    )
    health: Health = Field(
        default_factory=Health,
        description="Active probes, passive ejection, slow start and the panic threshold.",
    )
    hash_key: HashKeySpec | None = Field(
        None,
        description="What consistent_hash and maglev key on: header:NAME, cookie:NAME, "
        "query:NAME, path or client_ip. Default: the client address.",
    )
    hash_key_missing: Literal["client_ip", "round_robin"] = Field(
        "client_ip",
        description="When a request lacks the hash key: hash the client address instead "
        "(default), or spread such requests round-robin.",
    )
    virtual_nodes: int = Field(
        160,
        ge=1,
        le=10000,
        description="Ring points per unit of weight (consistent_hash, ip_hash), as nginx: a "
        "backend of weight w gets round(virtual_nodes x w) points, at least 1. Default 160.",
    )
    table_size: int = Field(
        65537,
        ge=7,
        le=1_000_003,
        description="Maglev lookup table size, a prime from 7 to 1000003 (building the table "
        "takes time in proportion, on every membership change). Default 65537.",
    )
    bounded_load: float | None = Field(
        None,
        ge=1.0,
        description="Bounded-load hashing: no backend takes more than this times the mean "
        "in-flight load; overflow goes to the next backend in the key's order (1.25 is "
        "usual). Off by default.",
    )
    ip_prefix: bool = Field(
        False,
        description="ip_hash: hash the client's /24 (IPv4) or /64 (IPv6) rather than its "
        "address, so a client moving within its network keeps its backend. Default false.",
    )
    sticky: Sticky | None = Field(
        None, description="Sticky sessions: a signed cookie or the source address."
    )
    tls: PoolTls | None = Field(
        None,
        description="Speak TLS to the backends: verified against a CA file or the system "
        "store, with SNI. Off by default (cleartext).",
    )
    protocol: Literal["http1", "h2"] = Field(
        "http1",
        description="What HTTP listeners speak to these backends: http1 (HTTP/1.1, default) or "
        "h2 (HTTP/2, streams multiplexed over one connection per backend; h2c with prior "
        "knowledge, or h2 over TLS when `tls` is set). gRPC backends need h2.",
    )
    send_proxy: Literal["v1", "v2"] | None = Field(
        None,
        description="Send a PROXY protocol header (v1 text or v2 binary) to backends on tcp "
        "and udp listeners, so they see the real client address. Off by default.",
    )

    @field_validator("table_size")
    @classmethod
    def _prime(cls, value: int) -> int:
        if value < 2 or any(value % d == 0 for d in range(2, int(value**0.5) + 1)):
            raise ValueError(f"{value} is not prime (Maglev needs a prime table size)")
        return value


# --- top level --------------------------------------------------------------------------------


class AccessLog(Model):
    path: str = Field(
        "stderr", description='File to append to, or "stderr" (default), "stdout", "off".'
    )
    format: Literal["json", "combined"] = Field(
        "json", description="json (one object per line, default) or combined (Apache style)."
    )


class Tracing(Model):
    enabled: bool = Field(
        True,
        description="Propagate W3C trace context: forward traceparent with evenflow's span "
        "(a new trace when the request has none). Default true.",
    )
    response_header: str | None = Field(
        None,
        description="Also answer the trace id to the client in this response header "
        "(e.g. x-trace-id). Off by default.",
    )

    @field_validator("response_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        return None if value is None else check_rewritable_name(value).lower()


class Admin(Model):
    bind: Address = Field(description="Address of the admin API, /metrics and the dashboard.")
    token_env: str | None = Field(
        None,
        description="Environment variable holding a bearer token; when set, every admin "
        "request must carry `Authorization: Bearer <token>` (401 otherwise).",
    )


class Metrics(Model):
    requests: bool = Field(
        True,
        description="Count every request in the series by listener, route, pool and backend: "
        "requests by status class, bytes, and the duration and time-to-first-byte histograms. "
        "false skips that work on every request (bench/run.py's evenflow-bare measures what it "
        "costs); the gauges of backends, health and connections stay. Default true.",
    )


class Config(Model):
    listeners: list[Listener] = Field(min_length=1, description="Where evenflow accepts clients.")
    pools: dict[str, Pool] = Field(min_length=1, description="Named sets of backends.")
    access_log: AccessLog = Field(
        default_factory=AccessLog, description="Where and how each request is logged."
    )
    admin: Admin | None = Field(None, description="The admin API and dashboard; off if omitted.")
    tracing: Tracing = Field(default_factory=Tracing, description="W3C trace context propagation.")
    metrics: Metrics = Field(
        default_factory=Metrics, description="What the data path counts for GET /metrics."
    )
    drain_timeout: Duration = Field(
        15.0,
        description="On SIGTERM or SIGINT, how long in-flight requests may take to finish "
        "before evenflow closes what is left and exits. Default 15s.",
    )
