"""The building blocks every config model shares: the frozen, strict base and address type."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from evenflow.core.address import split_host_port


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shorthand:
    """Annotated metadata: the JSON Schema also accepts the short form a BeforeValidator expands,
    so that an editor using `evenflow schema` does not flag `- 10.0.0.1:8000` as an error."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [self.schema, handler(core_schema)]}


def _check_address(value: str) -> str:
    split_host_port(value)
    return value


Address = Annotated[
    str,
    BeforeValidator(lambda v: v if not isinstance(v, str) else _check_address(v)),
    Field(description="host:port, or [ipv6]:port", examples=["127.0.0.1:8080", "[::1]:8080"]),
]
