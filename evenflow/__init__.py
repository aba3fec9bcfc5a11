"""evenflow: a load balancer written in Python."""

from evenflow import native

__version__ = "0.1.0"

# before any other evenflow module: a compiled build whose sources changed must not be imported
native.activate()
