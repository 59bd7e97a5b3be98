"""State shared by replicas through Redis (``VOICE_REDIS_URL``).

Nothing here is imported unless that setting is set: :func:`redis_cluster` imports
the Redis implementations (and redis-py, from the ``cluster`` extra) on first use.
The protocols they implement, and the in-memory defaults, are in
:mod:`web.access.shared`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voice.settings import Settings
    from web.cluster.replica import RedisCluster


def redis_cluster(settings: Settings) -> RedisCluster:
    """This replica's part in the cluster at ``settings.redis_url`` (not yet connected)."""
    from web.cluster.replica import RedisCluster

    return RedisCluster(settings)
