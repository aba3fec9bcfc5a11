"""Reading a config file: YAML (JSON is valid YAML) → ${ENV} substitution → validated model.

Loading has no side effects. Every problem comes back at once, each with its path, so that
`evenflow check` can print them all and a reload can refuse a bad file and keep serving.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evenflow.config.checks import raw_reference_problems, semantic_problems
from evenflow.config.model import Config

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BOUNDS = {  # pydantic's error type -> (operator, key of the bound in the error's ctx)
    "greater_than_equal": (">=", "ge"),
    "less_than_equal": ("<=", "le"),
    "greater_than": (">", "gt"),
    "less_than": ("<", "lt"),
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML would keep the last one
    silently, and a second `web:` pool must not quietly replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys written beside it
            key = self.construct_object(key_node, deep=deep)
            try:
                is_dup = key in seen
            except TypeError:  # unhashable: SafeLoader itself reports it below
                continue
            if is_dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class ConfigError(Exception):
    """A config that cannot be used; `problems` lists (path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [
            f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"
            for path, message in self.problems
        ]


class Loaded:
    """A validated config and the warnings it produced."""

    def __init__(self, config: Config, warnings: list[tuple[str, str]]) -> None:
        self.config = config
        self.warnings = warnings


def load_file(path: str | Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read, substitute and validate the file at `path`; ConfigError lists every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, [("", "is not UTF-8 text")]) from None
    return load_text(text, source, environ)


def load_text(
    text: str, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Loaded:
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [(where, f"not valid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "must be a mapping with listeners and pools")])
    return load_data(data, source, environ)


def load_data(
    data: dict[str, Any], source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Loaded:
    env = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    data = _substitute(data, env, "", problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [(format_loc(e["loc"]), _message(e)) for e in exc.errors()]
        # a file with a typo may also route to a missing pool: say both at once
        seen = set(problems)
        problems += [p for p in raw_reference_problems(data) if p not in seen]
        raise ConfigError(source, problems) from None
    errors, warnings = semantic_problems(config)
    if errors:
        raise ConfigError(source, errors)
    return Loaded(config, warnings)


def _substitute(
    value: Any, env: Mapping[str, str], path: str, problems: list[tuple[str, str]]
) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append((path, f"environment variable {name} is not set"))
                return ""
            return env[name]

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, _join(path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


_LISTENER_TAGS = ("http", "tcp", "udp")


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('pools', 'web', 'backends', 1, 'weight') → 'pools.web.backends[1].weight'."""
    path = ""
    if len(loc) >= 3 and loc[0] == "listeners" and loc[2] in _LISTENER_TAGS:
        loc = loc[:2] + loc[3:]  # the listener kind pydantic chose: the user wrote no such key
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "tagged-union[")):
            continue  # pydantic's internal validator names say nothing to a user
        else:
            path = _join(path, part)
    return path


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see `evenflow schema`)"
    if error["type"] == "missing":
        return "required"
    if error["type"] in _BOUNDS:
        # CONFIG.md's form: "pools.web.backends[1].weight: must be >= 0"
        operator, key = _BOUNDS[error["type"]]
        return f"must be {operator} {error['ctx'][key]}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message
