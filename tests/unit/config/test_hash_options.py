"""Hashing options of a pool: the Maglev table's bounds (build time grows with the size, and
the table is rebuilt on every membership change) and what virtual_nodes means."""

from __future__ import annotations

import pytest

from evenflow.balancing.base import BalancerOptions
from evenflow.config.model import Pool

from .helpers import load, problem, with_backends


@pytest.mark.parametrize("size", [7, 65537, 1_000_003])
def test_table_sizes_in_bounds_are_taken(size: int) -> None:
    pool = load(with_backends("10.0.0.1:8000", algorithm="maglev", table_size=size)).config
    assert pool.pools["web"].table_size == size
    assert BalancerOptions(table_size=size).table_size == size


@pytest.mark.parametrize(
    ("size", "says"),
    [
        (1_000_033, "must be <= 1000003"),  # prime, but past the bound
        (5, "must be >= 7"),
        (65536, "65536 is not prime"),
    ],
)
def test_table_sizes_out_of_bounds_are_refused_with_their_path(size: int, says: str) -> None:
    path, message = problem(with_backends("10.0.0.1:8000", algorithm="maglev", table_size=size))
    assert path == "pools.web.table_size"
    assert says in message
    with pytest.raises(ValueError, match="table_size must be a prime from 7 to 1000003"):
        BalancerOptions(table_size=size)


def test_virtual_nodes_are_documented_per_unit_of_weight() -> None:
    description = Pool.model_fields["virtual_nodes"].description or ""
    assert "per unit of weight" in description
    assert "table_size" in Pool.model_json_schema()["properties"]
    assert Pool.model_json_schema()["properties"]["table_size"]["maximum"] == 1_000_003
