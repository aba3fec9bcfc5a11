"""Durations, sizes and shares as a user writes them, and what each wrong spelling gets."""

from __future__ import annotations

from typing import Any

import pytest

from evenflow.config.units import parse_duration, parse_share, parse_size

from .helpers import config, load, problem

# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (" 10s ", 10.0)],
)
def test_duration_with_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["5", 5, 5.0, "5 sec", "-1s", "1d", "", "s", "1e3s", True, None])
def test_duration_without_a_known_unit_is_refused_with_its_path(value: Any) -> None:
    path, message = problem(config(listener={"timeouts": {"header": value}}))
    assert path == "listeners[0].timeouts.header"
    assert message == (f"{value!r} is not a duration: write it with a unit, as 250ms, 5s, 2m or 1h")


def test_bad_duration_in_a_pool_and_at_the_top_level() -> None:
    pools = {"web": {"backends": ["10.0.0.1:8000"], "timeouts": {"connect": "2 seconds"}}}
    assert problem(config(pools=pools))[0] == "pools.web.timeouts.connect"
    assert problem(config(drain_timeout="soon"))[0] == "drain_timeout"


def test_durations_reach_the_model_as_seconds() -> None:
    loaded = load(config(listener={"timeouts": {"header": "250ms", "idle": "2m"}}))
    timeouts = loaded.config.listeners[0].timeouts
    assert (timeouts.header, timeouts.idle, timeouts.body) == (0.25, 120.0, 60.0)


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("64KiB", 65536),
        ("64 KiB", 65536),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("10MB", 10_000_000),
        ("2KB", 2000),
        ("512B", 512),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
    ],
)
def test_size_in_bytes_or_with_a_unit(value: Any, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["64kib", "1.5MiB", "-1", -1, "0x10", "64 KiB B", "", True, 1.5])
def test_size_that_is_not_a_size_is_refused_with_its_path(value: Any) -> None:
    path, message = problem(config(listener={"limits": {"max_header_bytes": value}}))
    assert path == "listeners[0].limits.max_header_bytes"
    assert message == (f"{value!r} is not a size: write bytes as 65536 or with a unit, as 64KiB")


def test_size_below_its_minimum_says_the_bound() -> None:
    path, message = problem(config(listener={"limits": {"max_header_bytes": "512B"}}))
    assert (path, message) == ("listeners[0].limits.max_header_bytes", "must be >= 1024")


def test_sizes_reach_the_model_as_bytes() -> None:
    limits = {"max_header_bytes": "32KiB", "max_body_bytes": "1MB"}
    loaded = load(config(listener={"limits": limits}))
    got = loaded.config.listeners[0].limits
    assert (got.max_header_bytes, got.max_body_bytes) == (32768, 1_000_000)


# --- shares -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "share"), [("50%", 0.5), ("0%", 0.0), ("100%", 1.0), (" 12.5% ", 0.125), (0.25, 0.25)]
)
def test_share_as_a_percentage_or_a_fraction(value: Any, share: float) -> None:
    assert parse_share(value) == share


@pytest.mark.parametrize("value", ["150%", "-5%", "abc%", "%", "50", 1.5, -0.1, True, None])
def test_share_out_of_range_or_without_percent_is_refused(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_share(value)
    assert str(info.value) == f"{value!r} is not a share: write a percentage from 0% to 100%"
