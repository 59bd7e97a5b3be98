"""The Redis client of one replica, and the errors it raises as
:class:`~web.access.shared.SharedStateError`.

redis-py (asyncio) comes from the ``cluster`` extra; a missing install is a clear
start-up error. Every command is bounded by :data:`TIMEOUT_S`, so a Redis that
stops answering fails requests quickly instead of hanging them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from web.access.shared import SharedStateError

TIMEOUT_S = 2.0
"""Connect and read timeout of one Redis command (seconds)."""
PREFIX = "voice:"
"""Every key this server writes starts with it."""


def connect(url: str) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` (connects on first command)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise SharedStateError(
            "VOICE_REDIS_URL is set but redis-py is not installed: "
            "pip install 'voice-agent-server[cluster]'"
        ) from None
    return aioredis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        health_check_interval=30,
        decode_responses=False,
    )


@contextlib.contextmanager
def shared_errors(what: str) -> Iterator[None]:
    """Turn Redis and network failures inside into :class:`SharedStateError`
    (``what`` names the operation in the message)."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise SharedStateError(f"Redis {what} failed: {type(exc).__name__}: {exc}") from exc
