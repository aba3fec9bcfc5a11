"""The admin API described as an OpenAPI 3.1 document, written as data.

Served at /api/v1/openapi.json. A test checks that its paths and methods are exactly the routes
api.py registers, so the two cannot drift apart. The bodies' schemas are in schemas.py.
"""

from __future__ import annotations

from typing import Any

from evenflow.admin.schemas import SCHEMAS, ref


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answer(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _body(name: str, required: bool) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


_POOL = {"$ref": "#/components/parameters/pool"}
_ADDRESS = {"$ref": "#/components/parameters/address"}

# Answers every protected endpoint may give besides its own.
_COMMON = {"401": _answer("Unauthorized")}
_ON_BACKEND = {**_COMMON, "404": _answer("NotFound")}


def _backend_action(summary: str, description: str, operation_id: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": description,
            "parameters": [_POOL, _ADDRESS],
            "responses": {"200": _json(ref("Backend"), "The backend, changed."), **_ON_BACKEND},
        }
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "evenflow admin API",
        "version": "1",
        "description": "Pool and backend state, operator actions and reload. Every endpoint "
        "but /live and /ready needs `Authorization: Bearer <token>` when `admin.token_env` is "
        'set. Errors answer `{"error": "<sentence>"}`. In paths, `{address}` is host:port; '
        "percent-encode an IPv6 one, as %5B%3A%3A1%5D%3A8080 for [::1]:8080.",
    },
    "security": [{"bearer": []}],
    "paths": {
        "/live": {
            "get": {
                "operationId": "live",
                "summary": "Liveness: the event loop answers",
                "description": "Needs no token. Reports how late a 0.1s timer fired, last "
                "time and at worst over about the last minute: the delay every connection paid.",
                "security": [],
                "responses": {"200": _json(ref("Live"), "Alive.")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: config loaded, listeners bound, every pool usable",
                "description": "Needs no token (orchestrators' probes carry none).",
                "security": [],
                "responses": {
                    "200": _json(ref("Ready"), "Ready."),
                    "503": _json(ref("NotReady"), "Not ready, and why."),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                    **_COMMON,
                },
            }
        },
        "/api/v1/pools": {
            "get": {
                "operationId": "listPools",
                "summary": "Every pool with its backends' state",
                "responses": {"200": _json(ref("Pools"), "The pools."), **_COMMON},
            }
        },
        "/api/v1/pools/{pool}": {
            "get": {
                "operationId": "getPool",
                "summary": "One pool with its backends' state",
                "parameters": [_POOL],
                "responses": {"200": _json(ref("Pool"), "The pool."), **_ON_BACKEND},
            }
        },
        "/api/v1/pools/{pool}/hotspots": {
            "get": {
                "operationId": "getHotspots",
                "summary": "Where a pool's traffic concentrates",
                "description": "Each backend's share of the pool's requests over about the last "
                "minute beside the share it should get (a hashing pool's table, else weight); "
                "the heaviest hash keys and client addresses over the last one to two minutes, "
                "from bounded space-saving sketches (counts are upper bounds, each off by at "
                "most its max_overestimate); client addresses flagged as likely NAT hot spots "
                "(over 25% of the pool's requests, at least 50, while more than one client is "
                "seen); and sticky-session hits, misses and re-pins. Secret keys (cookies, "
                "Authorization) appear as a hash.",
                "parameters": [_POOL],
                "responses": {"200": _json(ref("Hotspots"), "The view."), **_ON_BACKEND},
            }
        },
        "/api/v1/pools/{pool}/backends": {
            "post": {
                "operationId": "addBackend",
                "summary": "Add a backend at runtime",
                "description": "It ramps up over the pool's slow start. A reload keeps only "
                "the backends the config file lists.",
                "parameters": [_POOL],
                "requestBody": _body("AddBackendRequest", required=True),
                "responses": {
                    "201": {
                        **_json(ref("Backend"), "Added."),
                        "headers": {
                            "Location": {
                                "description": "The new backend's URL.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "400": _answer("BadRequest"),
                    "409": _json(ref("Error"), "The pool has that backend already."),
                    **_ON_BACKEND,
                },
            }
        },
        "/api/v1/pools/{pool}/backends/{address}": {
            "get": {
                "operationId": "getBackend",
                "summary": "One backend's state",
                "parameters": [_POOL, _ADDRESS],
                "responses": {"200": _json(ref("Backend"), "The backend."), **_ON_BACKEND},
            },
            "delete": {
                "operationId": "removeBackend",
                "summary": "Drain a backend, then remove it",
                "description": "It is removed once its in-flight requests are done, or at the "
                "deadline; until then it reads `draining`, then GET answers 404. Enabling it "
                "before that cancels the removal.",
                "parameters": [_POOL, _ADDRESS],
                "requestBody": _body("DrainRequest", required=False),
                "responses": {
                    "202": _json(ref("Backend"), "Draining; removed when done."),
                    "400": _answer("BadRequest"),
                    **_ON_BACKEND,
                },
            },
        },
        "/api/v1/pools/{pool}/backends/{address}/drain": {
            "post": {
                "operationId": "drainBackend",
                "summary": "Drain a backend",
                "description": "No new requests or connections go to it; in-flight requests "
                "finish; keep-alive connections to it close after their current request; past "
                "the deadline the connections left are closed. It stays out until enabled.",
                "parameters": [_POOL, _ADDRESS],
                "requestBody": _body("DrainRequest", required=False),
                "responses": {
                    "200": _json(ref("Backend"), "Draining."),
                    "400": _answer("BadRequest"),
                    **_ON_BACKEND,
                },
            }
        },
        "/api/v1/pools/{pool}/backends/{address}/enable": _backend_action(
            "Put a backend back in rotation",
            "Ends a drain, a maintenance or a pending removal; it ramps up over slow start.",
            "enableBackend",
        ),
        "/api/v1/pools/{pool}/backends/{address}/disable": _backend_action(
            "Take a backend out for maintenance",
            "No traffic at all; in-flight requests finish, idle connections close.",
            "disableBackend",
        ),
        "/api/v1/pools/{pool}/backends/{address}/weight": {
            "put": {
                "operationId": "setWeight",
                "summary": "Set a backend's weight",
                "description": "Survives reloads while it differs from the file's weight.",
                "parameters": [_POOL, _ADDRESS],
                "requestBody": _body("WeightRequest", required=True),
                "responses": {
                    "200": _json(ref("Backend"), "The backend, with its new weight."),
                    "400": _answer("BadRequest"),
                    **_ON_BACKEND,
                },
            }
        },
        "/api/v1/reload": {
            "post": {
                "operationId": "reload",
                "summary": "Re-read the config file and switch to it",
                "description": "On any problem nothing changes and every problem is listed. "
                "Runtime state of backends that stay (drain, disable, weights set at runtime) "
                "survives.",
                "responses": {
                    "200": _json(ref("Reloaded"), "Switched."),
                    "400": _json(ref("ReloadRefused"), "Refused; the running config is kept."),
                    **_COMMON,
                },
            }
        },
        "/api/v1/flips": {
            "get": {
                "operationId": "listFlips",
                "summary": "Recent state changes of backends, newest last",
                "description": "Health flips, ejections and operator actions; the last 200.",
                "responses": {"200": _json(ref("Flips"), "The flips."), **_COMMON},
            }
        },
        "/api/v1/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Recent traffic per backend",
                "description": "Over about the last minute, per backend: requests per second, "
                "p50 and p99 latency from the duration histograms, and requests per second of "
                "each 5 s sample of the last 5 minutes (oldest first).",
                "responses": {
                    "200": _json(ref("Stats"), "Per backend, keyed pool/address."),
                    **_COMMON,
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics",
                "description": "The text exposition format; every name starts with evenflow_.",
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_COMMON,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in the environment variable `admin.token_env` names.",
            }
        },
        "parameters": {
            "pool": {
                "name": "pool",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The pool's name, as in the config.",
            },
            "address": {
                "name": "address",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "The backend's host:port; IPv6 as [::1]:8080, percent-encoded.",
                "examples": {
                    "ipv4": {"value": "10.0.0.2:8000"},
                    "ipv6": {"value": "%5B%3A%3A1%5D%3A8080"},
                },
            },
        },
        "responses": {
            "BadRequest": _json(
                ref("Error"), "Bad JSON, a missing or unknown field, or a bad value."
            ),
            "Unauthorized": {
                **_json(ref("Error"), "No bearer token, or a wrong one."),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            },
            "NotFound": _json(ref("Error"), "No such pool or backend."),
        },
        "schemas": SCHEMAS,
    },
}
