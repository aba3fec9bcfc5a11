"""evenflow: a load balancer written in Python."""

__version__ = "0.1.0"
