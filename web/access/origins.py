"""Which web pages may drive this server: ``Origin`` and ``Host`` checks, and CORS.

A browser attaches ``Origin`` to cross-origin requests and to every WebSocket
handshake; any page the user visits could otherwise post uploads or open
``/v1/realtime`` on a loopback server that has no keys. So:

* a request whose ``Origin`` is neither the server's own (the same host and
  port as its ``Host`` header) nor listed in ``allowed_origins`` is refused:
  HTTP ``403 origin_not_allowed`` (JSON), a WebSocket handshake denied with the
  same 403 before it is accepted. Requests without ``Origin`` (curl, the SDKs,
  servers) pass: they are not a browser acting for a page.
* with authentication off, the ``Host`` header must name a loopback address
  (``localhost``, ``127.0.0.0/8``, ``::1``): a DNS-rebinding page whose name
  now resolves to 127.0.0.1 still sends its own name, and is refused with
  ``403 host_not_allowed``. With keys on, a rebinding page holds no key.
* listed origins get CORS headers (Starlette's ``CORSMiddleware``, preflights
  included), so a browser client served from elsewhere works when configured.

:func:`install` puts both in front of the app; the checks run before
authentication (a preflight carries no key) and cover every path.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from voice.settings import Settings, SettingsError
from web.access.auth import is_loopback
from web.api_errors import error_response

ANY = "*"
EXPOSED_HEADERS = ["x-request-id", "location", "retry-after", "content-disposition"]
"""Response headers a cross-origin page may read."""
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def split_host(host: str, scheme: str) -> tuple[str, int] | None:
    """``(name, port)`` of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``),
    the port defaulting by ``scheme``; None when malformed."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None
    name = (parts.hostname or "").lower()
    if not name or parts.username is not None or parts.path:
        return None
    return name, port if port is not None else _DEFAULT_PORTS.get(scheme, 80)


def origin_address(origin: str) -> tuple[str, int] | None:
    """``(name, port)`` of an ``Origin`` header (``scheme://host[:port]``); None when
    opaque (``null``) or malformed."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https") or "/" in rest:
        return None
    return split_host(rest, scheme.lower())


class OriginPolicy:
    """The decision, without I/O. ``allowed``: normalised origins from settings (``*``
    = any); ``loopback_only``: authentication is off, so ``Host`` must be loopback."""

    def __init__(self, allowed: Iterable[str], *, loopback_only: bool) -> None:
        self.allowed = frozenset(o.rstrip("/").lower() for o in allowed)
        self.loopback_only = loopback_only

    def refusal(self, headers: Headers, scheme: str) -> tuple[str, str] | None:
        """``(code, message)`` when the request must be refused, else None."""
        host = headers.get("host")
        address = split_host(host, scheme) if host is not None else None
        if host is not None and address is None:
            return "host_not_allowed", "the Host header is malformed"
        if self.loopback_only and address is not None and not is_loopback(address[0]):
            return (
                "host_not_allowed",
                f"without API keys this server answers only to loopback names, not {address[0]!r}",
            )
        origin = headers.get("origin")
        if origin is None or self.allows(origin, address):
            return None
        return (
            "origin_not_allowed",
            f"requests from pages at {origin[:100]!r} are not allowed; "
            "list the origin in VOICE_ALLOWED_ORIGINS to allow it",
        )

    def allows(self, origin: str, host: tuple[str, int] | None) -> bool:
        """Whether a page at ``origin`` may call a server reached as ``host``."""
        if ANY in self.allowed or origin.rstrip("/").lower() in self.allowed:
            return True
        own = origin_address(origin)
        return own is not None and own == host


class OriginGuard:
    """ASGI middleware applying an :class:`OriginPolicy` to HTTP and WebSocket scopes."""

    def __init__(self, app: ASGIApp, *, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.policy.refusal(Headers(scope=scope), scope.get("scheme", "http"))
        if refused is None:
            await self.app(scope, receive, send)
            return
        response = error_response(403, *refused)
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:  # the server cannot send a body: closing before accept answers 403
            await websocket.close(code=1008)


def install(app: Starlette, settings: Settings, *, auth_on: bool) -> None:
    """Put CORS and then the origin/host check in front of ``app`` (call after the
    auth guard is added, so these run first). Raises :class:`SettingsError` for
    ``allowed_origins=*`` without API keys (any page could drive the server)."""
    allowed = list(settings.allowed_origins)
    if ANY in allowed and not auth_on:
        raise SettingsError(
            "VOICE_ALLOWED_ORIGINS=*: allowing every web page needs API keys "
            "(VOICE_API_KEYS or VOICE_API_KEYS_FILE); list the origins you use instead"
        )
    if allowed:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=allowed,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(OriginGuard, policy=OriginPolicy(allowed, loopback_only=not auth_on))
