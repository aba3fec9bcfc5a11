"""The admin HTTP API: pool and backend state, operator actions (drain, enable, disable,
weight, add, remove), reload, liveness and readiness, and the OpenAPI document describing them.

aiohttp serves it on the data plane's event loop, so every handler makes one quick controller
call and answers; nothing here blocks or logs per request. `server.py` owns the socket and the
bearer-token check, `api.py` the endpoints, `openapi.py` and `schemas.py` their
description, `loop_lag.py` the timer behind /live.
"""
