"""The `health:` section of a pool: active probes, passive detection, slow start, panic.

Defaults follow what HAProxy and Envoy users expect: rise 2 / fall 3, probes every 5s (1s
while a flip is under way or the backend is down), passive ejection growing with each repeat
and capped, panic below 50% healthy. Nothing probes or ejects unless `active` / `passive` is
given.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from evenflow.config.base import Model
from evenflow.config.units import Duration, Share

_STATUS_RANGE = re.compile(r"^\s*([1-5]\d\d)\s*-\s*([1-5]\d\d)\s*$")


def _status_spec(value: Any) -> Any:
    # 200 → (200, 200); "200-399" → (200, 399)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 100 <= value <= 599:
            raise ValueError(f"{value} is not an HTTP status (100 to 599)")
        return (value, value)
    if isinstance(value, str):
        if value.strip().isdigit():
            return _status_spec(int(value))
        match = _STATUS_RANGE.match(value)
        if match and int(match.group(1)) <= int(match.group(2)):
            return (int(match.group(1)), int(match.group(2)))
    raise ValueError(f'{value!r}: write a status (200) or a range ("200-399")')


StatusSpec = Annotated[tuple[int, int], BeforeValidator(_status_spec)]


class HttpProbe(Model):
    method: Literal["GET", "HEAD", "OPTIONS"] = Field("GET", description="Request method.")
    path: str = Field("/", description="Request target, e.g. /healthz. Default /.")
    host: str | None = Field(
        None, description="Host header to send. Default: the backend's address."
    )
    expect_status: list[StatusSpec] = Field(
        default_factory=lambda: [(200, 399)],
        description='Statuses that pass: numbers and ranges, e.g. [200, "300-399"]. '
        "Default 200-399.",
    )
    body_contains: str | None = Field(
        None, description="If set, the response body (its first 64KiB) must contain this text."
    )

    @field_validator("path")
    @classmethod
    def _origin_form(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " \r\n\t"):
            raise ValueError(f"{value!r}: a probe path starts with / and has no spaces")
        return value


class TcpProbe(Model):
    """A connect probe: the backend passes when it accepts a TCP connection in time."""


class GrpcProbe(Model):
    """The standard gRPC health check (grpc.health.v1.Health/Check) over HTTP/2: h2c, or h2
    over TLS when the pool has `tls`. Passes when the answer is SERVING with grpc-status 0."""

    service: str = Field(
        "",
        description='Service to ask about, e.g. users.v1.Users. Default "": the server as a whole.',
    )
    authority: str | None = Field(
        None, description="The :authority to send. Default: the backend's address."
    )

    @field_validator("service")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if any(c in value for c in "/ \r\n\t"):
            raise ValueError(f"{value!r}: a gRPC service name has no slash or spaces")
        return value


class ActiveHealth(Model):
    http: HttpProbe | None = Field(None, description="Probe with an HTTP request.")
    tcp: TcpProbe | None = Field(None, description="Probe by connecting (the default kind).")
    grpc: GrpcProbe | None = Field(
        None, description="Probe with the gRPC health checking protocol (grpc.health.v1)."
    )
    interval: Duration = Field(5.0, description="Time between probes of a settled backend. 5s.")
    fast_interval: Duration = Field(
        1.0,
        description="Time between probes while a flip is under way or the backend is down, "
        "so it is confirmed dead or back sooner (HAProxy's fastinter/downinter). Default 1s.",
    )
    timeout: Duration = Field(1.0, description="Longest a probe may take. Default 1s.")
    jitter: Share = Field(
        0.1,
        description="Each interval varies randomly by up to this share, so probes of many "
        "backends do not land together. Default 10%.",
    )
    rise: int = Field(2, ge=1, le=100, description="Passes in a row to mark healthy. Default 2.")
    fall: int = Field(
        3, ge=1, le=100, description="Failures in a row to mark unhealthy. Default 3."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Probe this port instead of the backend's own."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ActiveHealth:
        kinds = [k for k in ("http", "tcp", "grpc") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"give one probe kind: http, tcp or grpc, not {' and '.join(kinds)}")
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        return self

    @property
    def kind(self) -> str:
        if self.http is not None:
            return "http"
        return "grpc" if self.grpc is not None else "tcp"


class PassiveHealth(Model):
    consecutive_failures: int = Field(
        5,
        ge=1,
        description="Failures in a row on real traffic (connect errors, resets, timeouts, and "
        "5xx responses when count_5xx) that eject a backend. Default 5.",
    )
    count_5xx: bool = Field(
        True,
        description="Count 5xx responses as failures; false counts only connection-level "
        "ones. Default true.",
    )
    ejection_time: Duration = Field(
        30.0,
        description="How long an ejected backend stays out; each repeated ejection multiplies "
        "it (2x, 3x...) up to max_ejection_time. Default 30s.",
    )
    max_ejection_time: Duration = Field(300.0, description="Cap on ejection time. Default 300s.")
    max_ejected_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="At most this share of the pool may be ejected at once, so passive "
        "detection never takes the whole fleet out. Default 50.",
    )


class Health(Model):
    active: ActiveHealth | None = Field(None, description="Active probes; none if omitted.")
    passive: PassiveHealth | None = Field(
        None, description="Ejection on failures seen in real traffic; none if omitted."
    )
    slow_start: Duration = Field(
        0.0,
        description="A backend that becomes healthy or is added ramps its weight from 10% to "
        "full over this long. Default 0s (off).",
    )
    panic_threshold: Share = Field(
        0.5,
        description="When fewer than this share of a pool's enabled backends are healthy, "
        "balance over all of them anyway (a shared failure is likelier than that many dead "
        "backends). 0% turns it off. Default 50%.",
    )
    initial_state: Literal["healthy", "unhealthy"] = Field(
        "healthy",
        description="A backend's state before its first probes settle (at start, on reload, "
        "when added): healthy serves at once while probes run. Default healthy.",
    )
