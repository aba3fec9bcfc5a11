"""`evenflow schema`: the JSON Schema editors use. Every field described; shorthands accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from evenflow.config.model import Config

SCHEMA = Config.model_json_schema()


def properties(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, property schema) for every property of every object, nested ones included."""
    for name, prop in schema.get("properties", {}).items():
        yield f"{where}.{name}", prop
        yield from properties(prop, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from properties(schema[key], f"{where}[{key}]")
    for option in schema.get("anyOf", []):
        yield from properties(option, where)


def all_properties() -> list[tuple[str, dict[str, Any]]]:
    found = list(properties(SCHEMA, "Config"))
    for name, model in SCHEMA["$defs"].items():
        found += properties(model, name)
    return found


def test_schema_is_json() -> None:
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA
    assert set(SCHEMA["required"]) == {"listeners", "pools"}


def test_every_field_of_every_model_is_described() -> None:
    found = all_properties()
    assert len(found) > 40  # the walk reached the nested models
    undescribed = [path for path, prop in found if not prop.get("description")]
    assert undescribed == []


def test_every_model_is_in_the_schema() -> None:
    for model in ("HttpListener", "Route", "Match", "ValueMatch", "Pool", "BackendConfig"):
        assert model in SCHEMA["$defs"]


def options(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return prop.get("anyOf", [prop])


def test_backend_shorthand_string_is_in_the_schema() -> None:
    items = SCHEMA["$defs"]["Pool"]["properties"]["backends"]["items"]
    assert {"type": "string"}.items() <= options(items)[0].items()
    assert {"$ref": "#/$defs/BackendConfig"} in options(items)


def test_value_match_shorthands_are_in_the_schema() -> None:
    headers = SCHEMA["$defs"]["Match"]["properties"]["headers"]
    [mapping] = [o for o in options(headers) if o.get("type") == "object"]
    value = mapping["additionalProperties"]
    assert options(value)[0]["type"] == ["string", "boolean"]
    assert {"$ref": "#/$defs/ValueMatch"} in options(value)


def test_host_as_a_string_is_in_the_schema() -> None:
    host = SCHEMA["$defs"]["Match"]["properties"]["host"]
    assert {"type": "string"} in options(host)


def test_durations_are_strings_with_a_unit() -> None:
    connect = SCHEMA["$defs"]["PoolTimeouts"]["properties"]["connect"]
    assert connect["type"] == "string"
    assert connect["pattern"] == r"^\d+(\.\d+)?(ms|s|m|h)$"
