"""Reading a file: YAML errors with line and column, ${ENV} substitution, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evenflow.config.load import ConfigError, load_data, load_file, load_text

from .helpers import MINIMAL, config, load, problem, problems

GOOD_YAML = """\
listeners:
  - name: web
    bind: 127.0.0.1:8080
    routes:
      - {match: {path_prefix: /api/}, pool: api}
      - pool: web
pools:
  web:
    backends: [10.0.0.1:8000, {address: 10.0.0.2:8000, weight: 2}]
  api:
    algorithm: least_conn
    backends: [10.0.1.1:8000]
"""


def text_problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "test.yaml", {})
    return info.value.problems


# --- files ------------------------------------------------------------------------------------


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "evenflow.yaml"
    path.write_text(GOOD_YAML)
    loaded = load_file(path, environ={})
    assert [r.pool for r in loaded.config.listeners[0].routes] == ["api", "web"]
    assert loaded.config.pools["web"].backends[1].weight == 2
    assert loaded.warnings == []


def test_json_is_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "evenflow.json"
    path.write_text(json.dumps(MINIMAL))
    assert load_file(path, environ={}).config.listeners[0].name == "web"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.problems == [("", "cannot read: No such file or directory")]
    assert info.value.lines() == [f"{path}: cannot read: No such file or directory"]


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path)
    assert info.value.problems == [("", "cannot read: Is a directory")]


def test_file_not_in_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("listeners: [{name: caf\xe9}]\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.problems == [("", "is not UTF-8 text")]


def test_lines_put_the_source_and_path_before_each_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD_YAML.replace("weight: 2", "weight: -2"))
    with pytest.raises(ConfigError) as info:
        load_file(path, environ={})
    assert info.value.lines() == [f"{path}: pools.web.backends[1].weight: must be >= 0"]
    assert str(info.value) == f"{path}: pools.web.backends[1].weight: must be >= 0"


# --- YAML -------------------------------------------------------------------------------------


def test_invalid_yaml_gives_line_and_column() -> None:
    text = GOOD_YAML.replace("    bind: 127.0.0.1:8080", "    bind: 127.0.0.1:8080\n   oops: [")
    [(where, message)] = text_problems(text)
    assert where == "line 4, column 4"
    assert message.startswith("not valid YAML: ")


def test_tab_indentation_gives_line_and_column() -> None:
    assert text_problems("listeners:\n\t- name: web\n") == [
        ("line 2, column 1", "not valid YAML: found character '\\t' that cannot start any token")
    ]


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    text = GOOD_YAML + "  web:\n    backends: [10.0.9.9:8000]\n"
    assert text_problems(text) == [("line 13, column 3", "not valid YAML: duplicate key 'web'")]


def test_merge_keys_may_still_be_overridden() -> None:
    text = (
        GOOD_YAML.replace("  api:\n", "  api: &base\n")
        + "  api2:\n    <<: *base\n    algorithm: random\n"
    )
    pools = load_text(text, "test.yaml", {}).config.pools
    assert (pools["api2"].algorithm, pools["api2"].backends) == ("random", pools["api"].backends)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "hello\n", "42\n"])
def test_document_that_is_not_a_mapping(text: str) -> None:
    assert text_problems(text) == [("", "must be a mapping with listeners and pools")]


# --- ${ENV} -----------------------------------------------------------------------------------


def test_env_substitution() -> None:
    data = config(listener={"bind": "${HOST}:${PORT}", "name": "web-${PORT}"})
    listener = load(data, {"HOST": "127.0.0.1", "PORT": "9000"}).config.listeners[0]
    assert (listener.bind, listener.name) == ("127.0.0.1:9000", "web-9000")


def with_env_backend(address: str) -> dict[str, Any]:
    return config(pools={"web": {"backends": [address]}})


def test_env_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENFLOW_TEST_BACKEND", "10.9.9.9:8000")
    data = with_env_backend("${EVENFLOW_TEST_BACKEND}")
    assert problem(data, {}) == (  # an environment passed in is used instead
        "pools.web.backends[0]",
        "environment variable EVENFLOW_TEST_BACKEND is not set",
    )
    assert load_data(data).config.pools["web"].backends[0].address == "10.9.9.9:8000"


def test_missing_env_is_an_error_with_its_path() -> None:
    data = config(listener={"bind": "${HOST}:${PORT}"})
    assert problem(data, {"HOST": "127.0.0.1"}) == (
        "listeners[0].bind",
        "environment variable PORT is not set",
    )


def test_every_missing_env_is_reported() -> None:
    data = with_env_backend("${BACKEND_HOST}:${BACKEND_PORT}")
    data["listeners"][0]["name"] = "${LISTENER}"
    assert problems(data, {}) == [
        ("listeners[0].name", "environment variable LISTENER is not set"),
        ("pools.web.backends[0]", "environment variable BACKEND_HOST is not set"),
        ("pools.web.backends[0]", "environment variable BACKEND_PORT is not set"),
    ]


def test_substituted_value_is_validated_like_any_other() -> None:
    data = config(listener={"bind": "127.0.0.1:${PORT}"})
    assert problem(data, {"PORT": "eighty"}) == (
        "listeners[0].bind",
        "'127.0.0.1:eighty': port must be a number from 1 to 65535",
    )


def test_dollar_without_braces_is_left_alone() -> None:
    data = config(listener={"name": "web$PORT"})
    assert load(data, {"PORT": "1"}).config.listeners[0].name == "web$PORT"


def test_env_in_yaml_text() -> None:
    text = GOOD_YAML.replace("127.0.0.1:8080", '"${BIND}"')
    assert load_text(text, "t", {"BIND": "0.0.0.0:80"}).config.listeners[0].bind == "0.0.0.0:80"
