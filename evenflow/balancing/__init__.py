"""Balancing algorithms, one module each; importing the package registers them all."""

from evenflow.balancing import (  # noqa: F401
    consistent_hash,
    ip_hash,
    least_conn,
    maglev,
    power_of_two,
    random_pick,
    round_robin,
    weighted_round_robin,
)
