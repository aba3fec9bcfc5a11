"""Routing: which route, and so which pool, serves an HTTP request.

`matchers` turns a route's `match:` block into one predicate; `table` compiles a listener's routes
into a `RouteTable` once per config, which the data plane asks per request. Nothing here does I/O.
"""
