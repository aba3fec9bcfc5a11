"""What every test run reports first: whether evenflow runs compiled or as pure Python."""

from __future__ import annotations

from evenflow import native


def pytest_report_header() -> str:
    return f"evenflow data path: {native.status}"
