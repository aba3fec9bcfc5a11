"""The schemas of the admin API's request and response bodies, as OpenAPI 3.1 (JSON Schema).

Part of the document openapi.py serves. Keep them in step with the controller's `describe_*`
output and api.py's answers; a test compares them with what the API actually answers.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong, and where."}},
    },
    "Problem": {
        "type": "object",
        "required": ["path", "message"],
        "properties": {
            "path": {
                "type": "string",
                "description": "Where in the config file, as pools.web.backends[1].weight; "
                "empty for the file as a whole.",
            },
            "message": {"type": "string"},
        },
    },
    "ReloadRefused": {
        "type": "object",
        "required": ["error", "source", "problems"],
        "properties": {
            "error": {"type": "string", "const": "config refused; the running config is kept"},
            "source": {"type": "string", "description": "The config file read."},
            "problems": {"type": "array", "items": ref("Problem")},
        },
    },
    "Reloaded": {
        "type": "object",
        "required": ["status", "source", "listeners", "pools", "backends", "notes"],
        "properties": {
            "status": {"type": "string", "const": "reloaded"},
            "source": {"type": "string", "description": "The config file read."},
            "listeners": {"type": "integer"},
            "pools": {"type": "integer"},
            "backends": {"type": "integer", "description": "Backends listed in the file."},
            "notes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "What the reload could not apply, as a change of `admin:`.",
            },
        },
    },
    "Backend": {
        "type": "object",
        "required": [
            "address",
            "state",
            "health",
            "admin",
            "weight",
            "config_weight",
            "effective_weight",
            "active_connections",
            "in_flight",
            "requests_total",
            "failures_total",
            "ejected_for_s",
            "drain_deadline_in_s",
            "last_probe",
            "last_flip",
        ],
        "properties": {
            "address": {"type": "string", "examples": ["10.0.0.2:8000", "[::1]:8080"]},
            "state": {
                "type": "string",
                "enum": ["healthy", "unhealthy", "ejected", "draining", "disabled"],
                "description": "The one word to read; the most restrictive of health, passive "
                "ejection and the operator's choice.",
            },
            "health": {"type": "string", "enum": ["healthy", "unhealthy"]},
            "admin": {"type": "string", "enum": ["enabled", "draining", "disabled"]},
            "weight": {"type": "integer", "description": "In force: set at runtime or from file."},
            "config_weight": {"type": "integer", "description": "As the config file says."},
            "effective_weight": {
                "type": "number",
                "description": "What balancing uses now (lower while slow start ramps up).",
            },
            "active_connections": {"type": "integer", "description": "Open upstream connections."},
            "in_flight": {"type": "integer", "description": "Requests sent, not yet answered."},
            "requests_total": {"type": "integer"},
            "bytes_in": {"type": "integer", "description": "Bytes from the backend."},
            "bytes_out": {"type": "integer", "description": "Bytes to the backend."},
            "failures_total": {"type": "integer"},
            "ejected_for_s": {
                "type": "number",
                "description": "Seconds of passive ejection left (0: not ejected).",
            },
            "drain_deadline_in_s": {
                **_NULLABLE_NUMBER,
                "description": "Seconds until a drain closes what is left; null unless draining.",
            },
            "last_probe": {
                "type": "object",
                "properties": {
                    "result": {**_NULLABLE_STRING, "description": "ok, or why it failed."},
                    "at": {**_NULLABLE_NUMBER, "description": "Unix time."},
                },
            },
            "last_flip": {
                "type": "object",
                "properties": {
                    "reason": {**_NULLABLE_STRING, "examples": ["unhealthy: 3 probe failures"]},
                    "at": {**_NULLABLE_NUMBER, "description": "Unix time."},
                },
            },
        },
    },
    "Pool": {
        "type": "object",
        "required": ["name", "algorithm", "panic", "healthy", "usable", "backends"],
        "properties": {
            "name": {"type": "string"},
            "algorithm": {"type": "string"},
            "panic": {
                "type": "boolean",
                "description": "Too few healthy backends: balancing over all non-disabled ones.",
            },
            "healthy": {"type": "integer"},
            "usable": {"type": "integer", "description": "Backends new requests may go to."},
            "backends": {"type": "array", "items": ref("Backend")},
        },
    },
    "Hotspots": {
        "type": "object",
        "required": [
            "pool",
            "algorithm",
            "window_s",
            "requests",
            "backends",
            "sketch_window_s",
            "hash_key",
            "keys_total",
            "keys",
            "clients_total",
            "clients",
            "nat_suspects",
            "sticky",
        ],
        "properties": {
            "pool": {"type": "string"},
            "algorithm": {"type": "string"},
            "window_s": {
                "type": "number",
                "description": "Seconds the backend shares cover (about the last 60).",
            },
            "requests": {"type": "integer", "description": "Requests sent in that window."},
            "backends": {"type": "array", "items": ref("HotspotBackend")},
            "sketch_window_s": {
                "type": "number",
                "description": "Seconds the keys and clients cover (60 to 120 once running).",
            },
            "hash_key": {
                **_NULLABLE_STRING,
                "description": "What the pool hashes on, as configured; null: the client "
                "address or nothing.",
            },
            "keys_total": {"type": "integer", "description": "Hash keys counted."},
            "keys": {
                "type": "array",
                "items": ref("HotKey"),
                "description": "The 10 heaviest hash keys, heaviest first.",
            },
            "clients_total": {
                "type": "integer",
                "description": "Requests counted by client address (pools that key on it: "
                "ip_hash, source_ip stickiness, hashing on the client address).",
            },
            "clients": {
                "type": "array",
                "items": ref("HotClient"),
                "description": "The 10 heaviest client addresses, heaviest first.",
            },
            "nat_suspects": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Client addresses flagged nat_suspect.",
            },
            "sticky": {
                "oneOf": [{"type": "null"}, ref("StickyCounters")],
                "description": "null when the pool does not stick.",
            },
        },
    },
    "HotspotBackend": {
        "type": "object",
        "required": ["address", "state", "requests", "share", "expected_share"],
        "properties": {
            "address": {"type": "string"},
            "state": {"type": "string"},
            "requests": {"type": "integer", "description": "Sent to it in the window."},
            "share": {"type": "number", "description": "Its part of the pool's requests, 0-1."},
            "expected_share": {
                "type": "number",
                "description": "What it should get: its part of a hashing pool's table, else "
                "its effective weight over the usable backends'; 0 when not usable.",
            },
        },
    },
    "HotKey": {
        "type": "object",
        "required": ["key", "count", "share", "max_overestimate"],
        "properties": {
            "key": {
                "type": "string",
                "description": "The key's first 64 characters; a cookie or credential header "
                "as #<hash>, never its value.",
            },
            "count": {"type": "integer", "description": "Upper bound of the requests."},
            "share": {"type": "number", "description": "count / keys_total."},
            "max_overestimate": {
                "type": "integer",
                "description": "The true count is at least count minus this.",
            },
        },
    },
    "HotClient": {
        "type": "object",
        "required": ["address", "count", "share", "max_overestimate", "nat_suspect"],
        "properties": {
            "address": {"type": "string"},
            "count": {"type": "integer", "description": "Upper bound of the requests."},
            "share": {"type": "number", "description": "count / clients_total."},
            "max_overestimate": {"type": "integer"},
            "nat_suspect": {
                "type": "boolean",
                "description": "Likely many users behind one address: at least 50 requests and "
                "over 25% of clients_total (counted at their lower bound), with more than one "
                "client address seen.",
            },
        },
    },
    "StickyCounters": {
        "type": "object",
        "required": ["kind", "hits", "misses", "repins", "table_entries", "table_evicted"],
        "properties": {
            "kind": {"type": "string", "enum": ["cookie", "source_ip"]},
            "hits": {"type": "integer", "description": "Requests sent to their pinned backend."},
            "misses": {"type": "integer", "description": "Requests with no (valid) pin."},
            "repins": {
                "type": "integer",
                "description": "Requests whose pinned backend could not take them (down, "
                "disabled, drained past its deadline), pinned anew.",
            },
            "table_entries": {
                "type": ["integer", "null"],
                "description": "source_ip: addresses remembered; null for cookies.",
            },
            "table_evicted": {
                "type": ["integer", "null"],
                "description": "source_ip: addresses forgotten to keep the table's bound.",
            },
        },
    },
    "Flip": {
        "type": "object",
        "required": ["at", "pool", "backend", "state", "reason"],
        "properties": {
            "at": {"type": "number", "description": "Unix time."},
            "pool": {"type": "string"},
            "backend": {"type": "string", "description": "The backend's address."},
            "state": {
                "type": "string",
                "examples": ["unhealthy", "healthy", "ejected", "draining", "disabled"],
            },
            "reason": {"type": "string"},
        },
    },
    "DrainRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "deadline": {
                "type": "string",
                "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$",
                "examples": ["30s"],
                "description": "How long in-flight requests may take; then the connections "
                "left are closed. Default 30s.",
            }
        },
    },
    "WeightRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["weight"],
        "properties": {"weight": {"type": "integer", "minimum": 0, "maximum": 10000}},
    },
    "AddBackendRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["address"],
        "properties": {
            "address": {"type": "string", "examples": ["10.0.0.7:8000", "[::1]:8080"]},
            "weight": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 1},
        },
    },
    "Pools": {
        "type": "object",
        "required": ["pools"],
        "properties": {"pools": {"type": "array", "items": ref("Pool")}},
    },
    "Stats": {
        "type": "object",
        "required": ["window_s", "sample_s", "backends"],
        "properties": {
            "window_s": {"type": "number", "description": "Seconds the rates cover."},
            "sample_s": {"type": "number", "description": "Seconds between history points."},
            "backends": {
                "type": "object",
                "description": "Keyed pool/address.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["rps", "p50_ms", "p99_ms", "history_rps"],
                    "properties": {
                        "rps": {"type": "number"},
                        "p50_ms": {"type": ["number", "null"]},
                        "p99_ms": {"type": ["number", "null"]},
                        "history_rps": {"type": "array", "items": {"type": "number"}},
                    },
                },
            },
        },
    },
    "Flips": {
        "type": "object",
        "required": ["flips"],
        "properties": {"flips": {"type": "array", "items": ref("Flip")}},
    },
    "Live": {
        "type": "object",
        "required": ["status", "loop_lag_ms", "loop_lag_max_ms"],
        "properties": {
            "status": {"type": "string", "const": "alive"},
            "loop_lag_ms": {"type": "number", "description": "Last measurement."},
            "loop_lag_max_ms": {"type": "number", "description": "Worst, last minute."},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ready"}},
    },
    "NotReady": {
        "type": "object",
        "required": ["status", "problems"],
        "properties": {
            "status": {"type": "string", "const": "not ready"},
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "examples": [["pool web has no usable backend"]],
            },
        },
    },
}
