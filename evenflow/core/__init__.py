"""The plain objects both planes share: backends with live counters, pools, errors.

Nothing here imports asyncio or socket, so every rule is unit-testable with plain objects.
"""
