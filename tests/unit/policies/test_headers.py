"""Header rewrites: remove, set and add semantics, and what is refused before it reaches a wire."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from evenflow.config.load import ConfigError, load_data
from evenflow.config.model import HeaderRewrite
from evenflow.policies.headers import CompiledRewrite, compile_rewrite

Headers = list[tuple[bytes, bytes]]


def rewrite(**fields: Any) -> CompiledRewrite:
    compiled = compile_rewrite(HeaderRewrite.model_validate(fields))
    assert compiled is not None
    return compiled


def unchecked(**fields: Any) -> HeaderRewrite:
    # What a caller that skipped validation would hand over: compile must still refuse it.
    return HeaderRewrite.model_construct(
        set=fields.get("set", {}), add=fields.get("add", {}), remove=fields.get("remove", [])
    )


# --- remove -----------------------------------------------------------------------------------


def test_remove_drops_every_line_case_insensitively() -> None:
    headers: Headers = [
        (b"host", b"a"),
        (b"x-internal", b"1"),
        (b"accept", b"*/*"),
        (b"X-Internal", b"2"),
        (b"X-INTERNAL", b"3"),
    ]
    out = rewrite(remove=["X-Internal"]).apply(headers)
    assert out == [(b"host", b"a"), (b"accept", b"*/*")]


def test_remove_of_an_absent_header_changes_nothing() -> None:
    headers: Headers = [(b"host", b"a"), (b"Accept", b"*/*")]
    assert rewrite(remove=["x-internal"]).apply(headers) == headers


# --- set --------------------------------------------------------------------------------------


def test_set_replaces_all_values_at_the_first_position() -> None:
    headers: Headers = [
        (b"host", b"a"),
        (b"x-route", b"one"),
        (b"accept", b"*/*"),
        (b"X-Route", b"two"),
    ]
    out = rewrite(set={"X-Route": "api"}).apply(headers)
    assert out == [(b"host", b"a"), (b"x-route", b"api"), (b"accept", b"*/*")]


def test_set_of_an_absent_header_appends_it() -> None:
    headers: Headers = [(b"host", b"a")]
    out = rewrite(set={"x-served-by": "evenflow", "x-b": "2"}).apply(headers)
    assert out == [(b"host", b"a"), (b"x-served-by", b"evenflow"), (b"x-b", b"2")]


def test_set_keeps_other_headers_in_order_and_case() -> None:
    headers: Headers = [(b"Server", b"x"), (b"x-a", b"1"), (b"Date", b"d")]
    out = rewrite(set={"x-a": "2"}).apply(headers)
    assert out == [(b"Server", b"x"), (b"x-a", b"2"), (b"Date", b"d")]


def test_set_value_is_latin1() -> None:
    out = rewrite(set={"x-name": "café"}).apply([])
    assert out == [(b"x-name", b"caf\xe9")]


# --- add --------------------------------------------------------------------------------------


def test_add_appends_and_keeps_existing_values() -> None:
    headers: Headers = [(b"via", b"1.1 edge"), (b"host", b"a")]
    out = rewrite(add={"Via": "1.1 evenflow"}).apply(headers)
    assert out == [(b"via", b"1.1 edge"), (b"host", b"a"), (b"via", b"1.1 evenflow")]


# --- together ---------------------------------------------------------------------------------


def test_remove_then_set_then_add() -> None:
    headers: Headers = [(b"x-a", b"old"), (b"x-b", b"old"), (b"x-c", b"old"), (b"host", b"h")]
    out = rewrite(
        remove=["x-a", "x-c"],
        set={"x-b": "new", "x-c": "again"},
        add={"x-b": "more"},
    ).apply(headers)
    assert out == [
        (b"x-b", b"new"),  # set: in place of the first x-b
        (b"host", b"h"),
        (b"x-c", b"again"),  # removed first, so set appends it
        (b"x-b", b"more"),  # add comes last, next to what set kept
    ]


def test_apply_returns_a_new_list_and_is_repeatable() -> None:
    headers: Headers = [(b"x-a", b"1"), (b"x-b", b"1")]
    original = list(headers)
    compiled = rewrite(set={"x-a": "2"}, remove=["x-b"], add={"x-c": "3"})
    first = compiled.apply(headers)
    assert headers == original
    assert first is not headers
    assert compiled.apply(headers) == first == [(b"x-a", b"2"), (b"x-c", b"3")]


def test_empty_rewrite_compiles_to_none() -> None:
    assert compile_rewrite(None) is None
    assert compile_rewrite(HeaderRewrite.model_validate({})) is None
    assert compile_rewrite(HeaderRewrite.model_validate({"set": {}, "remove": []})) is None


# --- refused ----------------------------------------------------------------------------------


BAD_NAMES = ["x route", "x:route", "", "x-rôute", "x\r\nevil", ":authority", "x(y)"]
BAD_VALUES = ["a\r\nx-evil: 1", "a\rb", "a\nb", "a\x00b", "a\x1bb", "日本"]
PROXY_OWNED = ["Content-Length", "transfer-encoding", "connection", "upgrade", "te"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("field", ["set", "add"])
def test_bad_names_are_refused(field: str, name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid token"):
        HeaderRewrite.model_validate({field: {name: "v"}})
    with pytest.raises(ValueError, match="not a valid token"):
        CompiledRewrite(unchecked(**{field: {name: "v"}}))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_in_remove_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid token"):
        HeaderRewrite.model_validate({"remove": [name]})
    with pytest.raises(ValueError, match="not a valid token"):
        CompiledRewrite(unchecked(remove=[name]))


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("field", ["set", "add"])
def test_bad_values_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match="x-a"):
        HeaderRewrite.model_validate({field: {"x-a": value}})
    with pytest.raises(ValueError, match="x-a"):
        CompiledRewrite(unchecked(**{field: {"x-a": value}}))


def test_tab_and_obs_text_values_are_allowed() -> None:
    out = rewrite(set={"x-a": "a\tb", "x-b": "ÿ"}).apply([])
    assert out == [(b"x-a", b"a\tb"), (b"x-b", b"\xff")]


@pytest.mark.parametrize("name", PROXY_OWNED)
@pytest.mark.parametrize("field", ["set", "add", "remove"])
def test_framing_and_hop_by_hop_headers_are_refused(field: str, name: str) -> None:
    given: Any = [name] if field == "remove" else {name: "1"}
    with pytest.raises(ValidationError, match="cannot be rewritten"):
        HeaderRewrite.model_validate({field: given})
    with pytest.raises(ValueError, match="cannot be rewritten"):
        CompiledRewrite(unchecked(**{field: given}))


def test_set_twice_under_different_case_is_refused() -> None:
    with pytest.raises(ValidationError, match="same header"):
        HeaderRewrite.model_validate({"set": {"X-A": "1", "x-a": "2"}})
    with pytest.raises(ValueError, match="given twice"):
        CompiledRewrite(unchecked(set={"X-A": "1", "x-a": "2"}))


def test_bad_rewrite_is_reported_with_its_path() -> None:
    data = {
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:8080",
                "routes": [{"pool": "web", "response_headers": {"set": {"x-a": "1\r\nx-b: 2"}}}],
            }
        ],
        "pools": {"web": {"backends": ["127.0.0.1:9000"]}},
    }
    with pytest.raises(ConfigError) as info:
        load_data(data)
    [(path, message)] = info.value.problems
    assert path == "listeners[0].routes[0].response_headers.set"
    assert message.startswith("header 'x-a': value '1\\r\\nx-b: 2' contains a control character")
