"""The config contract (model.py), its cross-field rules (checks.py) and loading (load.py)."""
