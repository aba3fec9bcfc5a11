"""Request and response filters a route applies: header rewrites, and later JWT and rate limits.

Each policy is compiled once from its config model and then applied per request with no I/O.
"""
