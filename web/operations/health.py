"""``GET /health`` (alive) and ``GET /ready`` (able to serve).

Ready means: the models are loaded (the lifespan has finished), the meeting
job queue runs, and the LLM endpoint answers ``GET <base_url>/models`` within
``ready_llm_timeout_s``. The LLM probe's result is kept ``ready_cache_s``
seconds, so frequent probes (a load balancer, a container health check) do not
turn into a stream of requests to the LLM; concurrent checks share one probe.
A replica of a cluster (``VOICE_REDIS_URL`` set) is also not ready while it is
full (every realtime session slot taken, or draining), so that a load balancer
sends new sessions to another replica; its ``capacity`` says how full.
Not ready answers 503 with the reasons.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipelines.services import Services


@dataclass(frozen=True)
class Probe:
    """One LLM probe result: ``ok``, and why not."""

    ok: bool
    reason: str | None = None


class LlmProbe:
    """Cached reachability of an OpenAI-compatible endpoint (``GET /models``).

    Times in seconds; ``clock`` is monotonic. :meth:`check` is safe to cancel
    (a cancelled probe is simply not cached).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = base_url.rstrip("/") + "/models"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._last: tuple[float, Probe] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Probe:
        async with self._lock:
            if self._last is not None and self._clock() - self._last[0] < self._cache_s:
                return self._last[1]
            result = await self._probe()
            self._last = (self._clock(), result)
            return result

    async def _probe(self) -> Probe:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(self.url, headers=self._headers)
        except httpx.TimeoutException:
            return Probe(False, f"LLM endpoint {self.url} did not answer in {self._timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Probe(False, f"LLM endpoint {self.url} unreachable ({type(exc).__name__})")
        if response.status_code in (401, 403):
            return Probe(False, f"LLM endpoint {self.url} refused the API key ({response.status_code})")
        if response.status_code >= 500:
            return Probe(False, f"LLM endpoint {self.url} answered {response.status_code}")
        return Probe(True)


def llm_probe(request: Request, services: Services) -> LlmProbe:
    """The app's probe (made on first use, for the LLM the services talk to)."""
    probe: LlmProbe | None = getattr(request.app.state, "llm_probe", None)
    if probe is None:
        settings = request.app.state.settings
        options = services.llm.options
        probe = request.app.state.llm_probe = LlmProbe(
            options.base_url,
            options.api_key,
            timeout_s=settings.ready_llm_timeout_s,
            cache_s=settings.ready_cache_s,
        )
    return probe


async def health(request: Request) -> Response:
    """Liveness: the process is up and serving."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 200 ``{"status": "ready", "checks": ...}`` or 503 with ``reasons``."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        body = {"status": "not_ready", "checks": {"models": "loading"},
                "reasons": ["the models are still loading"]}
        return JSONResponse(body, status_code=503)
    reasons: list[str] = []
    checks = {"models": "ok", "jobs": "ok", "llm": "ok"}
    capacity: dict[str, int | bool] | None = None
    if getattr(request.app.state, "meetings", None) is None:
        checks["jobs"] = "stopped"
        reasons.append("the meeting job queue is not running")
    if getattr(request.app.state, "cluster", None) is not None:
        live = request.app.state.live_sessions
        checks["capacity"] = "full" if live.full else "ok"
        capacity = {"sessions": len(live), "limit": live.limit, "draining": live.draining}
        if live.full:
            reasons.append(
                f"this server is full ({len(live)} of {live.limit} realtime sessions"
                f"{', draining' if live.draining else ''})"
            )
    probe = await llm_probe(request, services).check()
    if not probe.ok:
        checks["llm"] = "unreachable"
        reasons.append(probe.reason or "LLM endpoint not reachable")
    body = {"status": "ready" if not reasons else "not_ready", "checks": checks,
            **services.describe()}
    if capacity is not None:
        body["capacity"] = capacity
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=503 if reasons else 200)
