"""``POST /v1/meetings/{id}/links``: signed read links for the meetings page.

The page calls the API with ``Authorization: Bearer <key>``, but its event
stream (``EventSource``), audio player and download links cannot carry that
header; they use these URLs instead (see :mod:`web.access.read_links` for what
a link grants and why links rather than a cookie).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from web.access.read_links import LINK_PARAM, ReadLinks
from web.meetings.context import api, job_or_404, principal


@api
async def create_links(request: Request) -> Response:
    """Links to the meeting's ``events``, ``audio``, ``transcript`` and ``summary``,
    valid for :data:`~web.access.read_links.LINK_TTL_S` seconds; 404 like the
    meeting itself for a caller who may not see it."""
    _, job = await job_or_404(request)
    links: ReadLinks = request.app.state.read_links
    token, expires_at = links.sign(job.id, principal(request).owner)
    base = f"/v1/meetings/{job.id}"
    urls = {
        name: f"{base}/{name}?{LINK_PARAM}={token}"
        for name in ("events", "audio", "transcript", "summary")
    }
    return JSONResponse(
        {"object": "meeting.links", "id": job.id, "expires_at": expires_at, "urls": urls}
    )


def routes() -> list[BaseRoute]:
    return [Route("/v1/meetings/{id}/links", create_links, methods=["POST"])]
