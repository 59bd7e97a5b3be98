"""Routes for transcriptions (filled in by its feature)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    """The HTTP routes of this feature, mounted by :func:`web.app.create_app`."""
    return []
