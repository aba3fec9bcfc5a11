"""Sticky sessions: keep a client on its backend by a signed cookie or by its address."""
