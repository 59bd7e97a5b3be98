"""What sharing state through Redis costs a request: per-operation latency of the Redis
implementations (rate limit, client secret lookup, session lease take)
against the in-memory ones, on a loopback ``redis-server`` started here, in one run so
the two are compared under the same load.

    .venv/bin/python -m bench.cluster_state [--n 2000]

Writes ``bench/results/cluster_state.json`` (µs percentiles, ratios, machine, commit,
load average). Figures only; nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import percentiles, write_result
from tests.redis_server import RedisServer
from voice.settings import load_settings
from web.access.auth import Principal
from web.access.client_secret_store import ClientSecretStore
from web.access.rate_limit import RateLimiter
from web.cluster.connection import connect
from web.cluster.leases import RedisSessionLeases
from web.cluster.rate_limit import RedisRateLimiter
from web.cluster.secret_store import RedisSecretStore

OWNER = Principal(owner="name:bench", name="bench")


async def timed(n: int, op: Callable[[int], Awaitable[Any]]) -> dict[str, Any]:
    """``op(i)`` ``n`` times in sequence; µs per call."""
    for i in range(min(50, n)):  # warm-up: connections, scripts loaded
        await op(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await op(i)
        samples.append((time.perf_counter() - start) * 1e6)
    return percentiles(samples)


async def measure(url: str, n: int) -> dict[str, Any]:
    redis = connect(url)
    try:
        local_limit = RateLimiter(per_minute=10**9, burst=10**9)
        shared_limit = RedisRateLimiter(redis, per_minute=10**9, burst=10**9)
        local_secrets, shared_secrets = ClientSecretStore(), RedisSecretStore(redis)
        local_value, _ = local_secrets.mint(OWNER, 600, None)
        shared_value, _ = await shared_secrets.issue(OWNER, 600, None)
        leases = RedisSessionLeases(redis, "bench", limit=10**6, ttl_s=60)

        async def lease(i: int) -> None:
            await leases.acquire(f"s{i}")
            leases.release(f"s{i}")

        results = {
            "rate_limit_memory_us": await timed(n, lambda i: local_limit.acquire(f"k{i % 10}")),
            "rate_limit_redis_us": await timed(n, lambda i: shared_limit.acquire(f"k{i % 10}")),
            "secret_lookup_memory_us": await timed(n, lambda i: local_secrets.resolve(local_value)),
            "secret_lookup_redis_us": await timed(n, lambda i: shared_secrets.resolve(shared_value)),
            "lease_take_redis_us": await timed(n, lease),  # given back in the background
        }
        await leases.aclose()
    finally:
        await redis.aclose()
    for name in ("rate_limit", "secret_lookup"):
        memory, shared = results[f"{name}_memory_us"]["p50"], results[f"{name}_redis_us"]["p50"]
        results[f"{name}_p50_ratio_redis_to_memory"] = round(shared / max(memory, 0.1), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="calls per operation")
    args = parser.parse_args()
    load_before = os.getloadavg()
    load_settings()  # the same settings validation the server runs (fails early if broken)
    with RedisServer() as server:
        results = asyncio.run(measure(server.url, args.n))
    path = write_result(
        "cluster_state",
        results,
        method=f"{args.n} sequential calls per operation after 50 warm-up calls, one process, "
        "redis-server on loopback (no persistence), redis-py asyncio",
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
