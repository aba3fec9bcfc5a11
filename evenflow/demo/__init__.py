"""Demo and test backends: the servers behind `evenflow demo`, the tests and the benchmarks.

Kept free of imports so that `python -m evenflow.demo.backend` runs its module only once.
"""
