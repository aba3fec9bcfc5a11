"""Numbers as the access log writes them, against what they were written as before: a
millisecond count as msgspec wrote the float (its shortest form), a count as its decimal
digits, each after its label, the first time and from what was kept after."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.observability.log_numbers import Number, millis


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond, as the log computed the float msgspec then wrote."""
    return int(seconds * 1e6 + 0.5) / 1000


@settings(max_examples=500, deadline=None)
@given(micros=st.integers(0, 10**15 - 1))
def test_milliseconds_are_written_as_msgspec_wrote_the_float(micros: int) -> None:
    seconds = micros / 1e6
    assert millis(seconds) == msgspec.json.encode(_ms(seconds))


@pytest.mark.parametrize(
    "seconds", [0.0, 1e-9, 0.0005, 0.001, 0.0125, 1.0, 86400.0, 1e9, 1e13, -0.0025]
)
def test_milliseconds_at_the_edges(seconds: float) -> None:
    assert json.loads(millis(seconds)) == _ms(seconds)


@settings(max_examples=300, deadline=None)
@given(number=st.integers(-(10**7), 10**13), seconds=st.floats(-1.0, 1e7))
def test_a_number_after_its_label_the_first_time_and_after(number: int, seconds: float) -> None:
    field = Number(b',"n":', after=b',"next":')
    for _ in range(2):
        assert b"".join(field.count(number)) == b',"n":%d' % number
        assert field.labelled(number) == b',"n":%d' % number
        high, fraction = field.millis(seconds)
        assert high.startswith(b',"n":') and fraction.endswith(b',"next":')
        written = high.removeprefix(b',"n":') + fraction.removesuffix(b',"next":')
        assert written == msgspec.json.encode(_ms(seconds))
