"""API keys: who a request is, from its bearer token.

Keys come from settings (``api_keys`` and the lines of ``api_keys_file``), each
``key`` or ``name:key``. Only SHA-256 digests of keys are kept in memory, and a
presented token is compared with every digest in constant time. A key's
:attr:`Principal.owner` (its name, else a digest prefix; never the key) is what
meeting jobs are stored under. With no keys configured authentication is off:
every request is the anonymous principal, and the server only binds to loopback
(:func:`check_bind`).

A client may present its token as ``Authorization: Bearer <token>`` or, on the
WebSocket (browsers cannot set headers there), as the subprotocol
``openai-insecure-api-key.<token>`` next to ``realtime``, as OpenAI's clients do.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voice.settings import Settings, SettingsError

KEY_SUBPROTOCOL = "openai-insecure-api-key."
_NAME_RE = re.compile(r"^([A-Za-z0-9_.-]{1,64}):(.+)$")
LOOPBACK_HOSTS = frozenset({"localhost"})


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``owner`` identifies a key (None when auth is off: the
    anonymous user, who sees everything). ``session`` is the session config a
    client secret carries (applied to the realtime sessions it opens)."""

    owner: str | None
    name: str
    via_client_secret: bool = False
    session: Any = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.owner is None

    def may_see(self, owner: str | None) -> bool:
        """Whether a resource stored under ``owner`` is visible to this principal."""
        return self.owner is None or self.owner == owner


ANONYMOUS = Principal(owner=None, name="anonymous")


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_key_lines(lines: Iterable[str]) -> list[tuple[str | None, str]]:
    """``(name, key)`` pairs from ``key`` / ``name:key`` lines; blanks and ``#`` comments skipped."""
    pairs: list[tuple[str | None, str]] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _NAME_RE.match(line)
        pairs.append((match.group(1), match.group(2).strip()) if match else (None, line))
    return pairs


class KeyRing:
    """The configured keys, as digests. Empty = authentication off."""

    def __init__(self, pairs: Iterable[tuple[str | None, str]]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for name, key in pairs:
            if not key:
                continue
            hashed = digest(key)
            owner = f"name:{name}" if name else f"sha256:{hashed.hex()[:24]}"
            self._entries.append((hashed, Principal(owner=owner, name=name or owner)))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Keys from ``api_keys`` and ``api_keys_file`` (read here, at start-up; blocking).
        Raises :class:`SettingsError` when the file cannot be read."""
        lines = list(settings.api_keys)
        if settings.api_keys_file is not None:
            try:
                lines += settings.api_keys_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"VOICE_API_KEYS_FILE: cannot read it: {exc}") from None
        return cls(parse_key_lines(lines))

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``; compares against every key in constant time."""
        presented = digest(token)
        found: Principal | None = None
        for hashed, principal in self._entries:
            if hmac.compare_digest(presented, hashed):
                found = principal
        return found


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def subprotocol_token(offered: Iterable[str]) -> str | None:
    """The token in an ``openai-insecure-api-key.<token>`` WebSocket subprotocol, if any."""
    for protocol in offered:
        if protocol.startswith(KEY_SUBPROTOCOL) and len(protocol) > len(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, keys: KeyRing) -> None:
    """Refuse to serve a non-loopback address without keys (:class:`SettingsError`)."""
    if not keys.enabled and not is_loopback(settings.host):
        raise SettingsError(
            f"VOICE_HOST={settings.host}: without API keys the server only listens on "
            "loopback (127.0.0.1, ::1, localhost). Set VOICE_API_KEYS or VOICE_API_KEYS_FILE "
            "to serve other machines, or bind to 127.0.0.1."
        )
