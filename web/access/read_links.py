"""Short-lived signed read links for one meeting's streams and files.

A browser cannot put an ``Authorization`` header on an ``EventSource``, an
``<audio src>`` or a download link. Rather than a cookie (ambient authority
for every route, and CSRF to defend), a caller holding an API key asks for
*read links*: URLs of one meeting's ``events``, ``audio``, ``transcript`` and
``summary`` carrying ``?link=<token>``. The token is an HMAC (SHA-256, key
drawn at start-up, so a restart voids every link) over the expiry, the meeting
id and the owner; it grants ``GET``/``HEAD`` on those four paths of that one
meeting, as that owner, until it expires (:data:`LINK_TTL_S`). It never holds
the API key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

LINK_TTL_S = 3600
"""How long a read link works (s): long enough to listen to a meeting."""
LINK_PARAM = "link"
READ_PATH = re.compile(r"^/v1/meetings/([0-9A-Za-z_-]{1,64})/(events|audio|transcript|summary)$")
"""The paths a read link opens (group 1: the meeting id)."""
_ANONYMOUS = "-"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ReadLinks:
    """Signs and checks read-link tokens. ``clock`` returns Unix seconds (injected
    for tests)."""

    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._clock = clock

    def _mac(self, expires_at: int, meeting_id: str, owner: str) -> bytes:
        message = f"{expires_at}\n{meeting_id}\n{owner}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def sign(self, meeting_id: str, owner: str | None) -> tuple[str, int]:
        """A token for ``meeting_id`` as ``owner`` (None: anonymous) and its expiry
        (Unix s)."""
        expires_at = int(self._clock()) + LINK_TTL_S
        who = owner if owner is not None else _ANONYMOUS
        mac = self._mac(expires_at, meeting_id, who)
        return f"{expires_at}.{_b64(who.encode())}.{_b64(mac)}", expires_at

    def verify(self, token: str, meeting_id: str) -> str | None:
        """The owner the token was signed for (``""`` for anonymous) when it is
        genuine, unexpired and for ``meeting_id``; else None."""
        parts = token.split(".")
        if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()) or len(token) > 512:
            return None
        try:
            who = _unb64(parts[1]).decode("utf-8")
            mac = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        expires_at = int(parts[0])
        if not hmac.compare_digest(mac, self._mac(expires_at, meeting_id, who)):
            return None
        if expires_at < self._clock():
            return None
        return "" if who == _ANONYMOUS else who


def read_path_meeting(method: str, path: str) -> str | None:
    """The meeting id when ``method path`` is one a read link may open."""
    if method not in ("GET", "HEAD"):
        return None
    match = READ_PATH.match(path)
    return match.group(1) if match else None
