"""HTTP/2: from clients (downstream.py) and to backends (upstream.py)."""
