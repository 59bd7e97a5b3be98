"""ICE settings of WebRTC peers: which STUN/TURN servers and which host addresses.

By default no ICE server is used (aiortc would otherwise contact a public STUN
server) and aioice offers its default host candidates: every interface except
loopback. ``webrtc_host_addresses`` replaces those candidates, e.g. with
``["127.0.0.1"]`` for a machine reachable only on loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_AIOICE_HOST_ADDRESSES: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class IceOptions:
    """``ice_servers``: STUN/TURN URLs; ``host_addresses``: host candidates (empty = default)."""

    ice_servers: tuple[str, ...] = ()
    host_addresses: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> IceOptions:
        """Read ``webrtc_ice_servers`` / ``webrtc_host_addresses`` (absent = empty)."""
        return cls(
            tuple(getattr(settings, "webrtc_ice_servers", None) or ()),
            tuple(getattr(settings, "webrtc_host_addresses", None) or ()),
        )


def ice_server(url: str) -> RTCIceServer:
    """One server from a URL; TURN credentials may precede the host:
    ``turn:user:secret@turn.example.org:3478``."""
    scheme, _, rest = url.partition(":")
    if "@" not in rest:
        return RTCIceServer(urls=url)
    credentials, _, host = rest.rpartition("@")
    username, _, credential = credentials.partition(":")
    return RTCIceServer(urls=f"{scheme}:{host}", username=username, credential=credential)


def ice_configuration(urls: Sequence[str]) -> RTCConfiguration:
    """A peer configuration using exactly ``urls`` (none: host candidates only)."""
    return RTCConfiguration(iceServers=[ice_server(url) for url in urls])


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice offer exactly ``addresses`` as host candidates; no-op when empty.

    aioice has no per-connection option for this, so it replaces
    ``aioice.ice.get_host_addresses`` for the whole process (every peer made
    afterwards, in this server or a client in the same process). IPv4 and IPv6
    addresses are offered only when the connection asks for that family.
    """
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def default_host_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """What aioice itself would offer (its function, even after :func:`use_host_addresses`)."""
    return _AIOICE_HOST_ADDRESSES(use_ipv4, use_ipv6)
