"""The web dashboard: static files (HTML, JS, CSS, and the pinned ECharts kept in static/vendor/ with its
licences), served at ``/`` and reading the ``/v1`` API with an API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` (after every other route, which keep precedence)."""
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="dashboard")
