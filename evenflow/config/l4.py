"""Layer 4 listeners: `protocol: tcp` (connections relayed as bytes, optionally routed on the
TLS ClientHello's server name) and `protocol: udp` (datagrams relayed per flow)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from evenflow.config.base import Address, Model
from evenflow.config.units import Duration

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SNI_PATTERN = re.compile(r"^(\*\.)?([a-z0-9-]+\.)*[a-z0-9-]+\.?$")


def parse_rate(value: Any) -> float:
    """`"100/s"` → 100.0 per second; `"30/m"` → 0.5."""
    if isinstance(value, str):
        match = _RATE.match(value)
        if match and float(match.group(1)) > 0:
            return float(match.group(1)) / _PER[match.group(2)]
    raise ValueError(f"{value!r} is not a rate: write it as 100/s, 30/m or 1000/h")


class L4Timeouts(Model):
    idle: Duration = Field(
        3600.0,
        description="A connection (tcp) or flow (udp) with no bytes either way for this long is "
        "closed. Default 1h for tcp; udp listeners default to 60s.",
    )
    handshake: Duration = Field(
        10.0,
        description="Longest wait for a PROXY header or a TLS ClientHello before routing. 10s.",
    )
    half_closed: Duration = Field(
        60.0,
        description="Once one side has closed its half (FIN) and the other has not, how long "
        "the connection may stay quiet before it is closed (HAProxy's client-fin/server-fin). "
        "Default 60s.",
    )


class TcpLimits(Model):
    max_connections: int = Field(
        10000,
        ge=1,
        description="Connections relayed at once; past it new ones wait (accepted, unread) "
        "until one closes, and past twice the limit they are refused. Default 10000.",
    )
    per_source_rate: str | None = Field(
        None,
        description="New connections allowed per source address, e.g. 100/s; beyond it they "
        "are refused (reset). Off by default.",
    )

    @field_validator("per_source_rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value


class AcceptProxy(Model):
    trusted: list[str] = Field(
        min_length=1,
        description="Source networks (CIDR) allowed to send a PROXY header; connections from "
        "anywhere else are closed.",
    )

    @field_validator("trusted")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network (write 10.0.0.0/8)") from None
        return value


class SniMatch(Model):
    sni: list[str] | None = Field(
        None,
        description="Server names from the TLS ClientHello: exact, or '*.example.com' for one "
        "label under example.com. Omitted: matches every connection.",
    )

    @field_validator("sni", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("sni")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not _SNI_PATTERN.match(name.lower()):
                raise ValueError(f"{name!r} is not a server name or *.domain pattern")
        return None if value is None else [n.lower().rstrip(".") for n in value]


class TcpRoute(Model):
    name: str | None = Field(None, description="Name shown in logs. Default: route-<index>.")
    match: SniMatch = Field(default_factory=SniMatch, description="What the ClientHello names.")
    pool: str = Field(description="Pool that gets the connection.")


class TcpListener(Model):
    name: str = Field(description="Listener name, unique; shown in logs and metrics.")
    bind: Address = Field(description="Address to listen on.")
    protocol: Literal["tcp"] = Field(description="tcp: connections relayed as bytes.")
    pool: str | None = Field(None, description="Pool that gets every connection.")
    routes: list[TcpRoute] = Field(
        default_factory=list,
        description="TLS passthrough: route on the ClientHello's server name (first match "
        "wins; a route without match takes connections with no or no matching name). TLS is "
        "not terminated.",
    )
    timeouts: L4Timeouts = Field(default_factory=L4Timeouts, description="Idle and handshake.")
    limits: TcpLimits = Field(default_factory=TcpLimits, description="Connection limits.")
    accept_proxy: AcceptProxy | None = Field(
        None, description="Expect a PROXY header (v1 or v2) from a trusted L4 tier in front."
    )

    @model_validator(mode="after")
    def _pool_or_routes(self) -> TcpListener:
        if (self.pool is None) == (not self.routes):
            raise ValueError("give pool, or routes (on SNI), not both")
        return self


class UdpLimits(Model):
    max_flows: int = Field(
        10000,
        ge=1,
        description="Client flows tracked at once; past it the oldest is dropped (and counted). "
        "Default 10000.",
    )


class UdpListener(Model):
    name: str = Field(description="Listener name, unique; shown in logs and metrics.")
    bind: Address = Field(description="Address to listen on.")
    protocol: Literal["udp"] = Field(description="udp: datagrams relayed per client flow.")
    pool: str = Field(description="Pool that gets the datagrams.")
    per_datagram: bool = Field(
        False,
        description="Balance every datagram on its own (DNS-style) instead of keeping a "
        "client's flow on one backend. Default false.",
    )
    timeouts: L4Timeouts = Field(
        default_factory=lambda: L4Timeouts.model_validate({"idle": "60s"}),
        description="A flow idle this long is forgotten. Default 60s.",
    )
    limits: UdpLimits = Field(default_factory=UdpLimits, description="Flow table bound.")
