"""The OpenAPI document against the routes actually served and the answers actually given."""

from __future__ import annotations

import re
from typing import Any

import pytest
from admin_support import Start, backend_url, base_config

from evenflow.admin.openapi import OPENAPI
from evenflow.admin.server import AdminServer
from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(20)


METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = OPENAPI
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_openapi_describes_exactly_the_routes_served(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    admin: AdminServer = run.server.admin
    served = {
        (route.method, route.resource.canonical)
        for route in admin.app.router.routes()
        if route.resource is not None
        # the dashboard's page and files are not API
        and route.resource.canonical not in ("/", "/static")
    }
    documented = {
        (method.upper(), path)
        for path, operations in OPENAPI["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert served == documented
    answer = await run.admin.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == OPENAPI
    assert answer.json()["openapi"].startswith("3.1")


def test_openapi_document_is_consistent() -> None:
    for ref in _refs(OPENAPI):
        _resolve(ref)
    ids = []
    for path, operations in OPENAPI["paths"].items():
        template = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            params = [
                _resolve(p["$ref"]) if "$ref" in p else p for p in operation.get("parameters", [])
            ]
            assert {p["name"] for p in params if p["in"] == "path"} == template, (method, path)
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            if operation.get("security") != []:
                assert "401" in responses, (method, path)
    assert len(ids) == len(set(ids))
    assert OPENAPI["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_openapi_schemas_name_what_the_api_answers(
    evenflow: Start, backends: dict[str, DemoBackend]
) -> None:
    run = await evenflow(base_config(backends))
    schemas = OPENAPI["components"]["schemas"]
    await run.admin.post(backend_url("web", backends["a"].address, "disable"))
    pool = (await run.admin.get("/api/v1/pools/web")).json()
    flip = (await run.admin.get("/api/v1/flips")).json()["flips"][0]
    live = (await run.admin.get("/live")).json()
    for name, answer in [
        ("Pool", pool),
        ("Backend", pool["backends"][0]),
        ("Flip", flip),
        ("Live", live),
    ]:
        schema = schemas[name]
        assert set(schema["required"]) <= set(answer), name
        undocumented = set(answer) - set(schema["properties"])
        assert not undocumented, f"{name}: describe {undocumented} in evenflow/admin/schemas.py"
    states = schemas["Backend"]["properties"]["state"]["enum"]
    assert {b["state"] for b in pool["backends"]} <= set(states)
