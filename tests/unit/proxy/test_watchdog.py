"""The watchdog's arithmetic: how many check periods make up a timeout."""

from __future__ import annotations

import pytest

from evenflow.proxy.watchdog import periods


@pytest.mark.parametrize(
    ("timeout_s", "period_s", "expected"),
    [
        (10.0, 10.0, 1),
        (4.0, 3.0, 2),  # rounded up: one 3 s period would act before the 4 s timeout
        (60.0, 10.0, 6),
        (0.7, 0.1, 7),  # 0.7 / 0.1 is 6.999...: 7
        (2.1, 0.3, 7),  # 2.1 / 0.3 is 7.000...001: 7, not 8
        (0.05, 1.0, 1),  # at least one period
    ],
)
def test_periods_cover_the_timeout_and_no_more(
    timeout_s: float, period_s: float, expected: int
) -> None:
    assert periods(timeout_s, period_s) == expected
    assert expected * period_s >= timeout_s - 1e-9 or expected == 1
