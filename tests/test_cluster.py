"""Two replicas (A, B) of the real app sharing one real Redis (``redis-server`` on
loopback): rate limits, the session cap with expiring leases, a replica's /ready
when it is full, client secrets, and WebRTC hang-ups all hold across replicas.
Realtime sessions use the scripted LLM; each test uses an API key of its own, so
their rate-limit buckets do not mix."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from starlette.applications import Starlette

from pipelines.services import Services
from tests.api_helpers import api_settings, serve
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.redis_server import RedisServer
from tests.rtc_client import RtcCaller, eventually
from tests.servers import ServerThread
from web.access.live_sessions import LiveSessions
from web.cluster.replica import RedisCluster, replica_key
from web.realtime.rtc_peer import CallRegistry

BURST = 6
CLUSTER_SESSIONS = 3
REPLICA_SESSIONS = 2
LEASE_S = 3.0
KEYS = ["rate:sk-rate", "caps:sk-caps", "lease:sk-lease", "mint:sk-mint", "rtc:sk-rtc", "eve:sk-eve"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    redis: RedisServer, services: Services, llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerThread, ServerThread]]:
    def settings(name: str) -> Any:
        return api_settings(
            tmp_path_factory.mktemp(name),
            llm_base_url=llm.base_url,
            api_keys=KEYS,
            redis_url=redis.url,
            rate_limit_per_minute=1,  # refills one token a minute: none during the test
            rate_limit_burst=BURST,
            max_realtime_sessions=REPLICA_SESSIONS,
            cluster_max_sessions=CLUSTER_SESSIONS,
            session_lease_s=LEASE_S,
            webrtc_host_addresses=["127.0.0.1"],
        )

    with serve(settings("a"), services) as a, serve(settings("b"), services) as b:
        yield a, b


def app(server: ServerThread) -> Starlette:
    return cast(Starlette, server.server.config.app)


def live(server: ServerThread) -> LiveSessions:
    return cast(LiveSessions, app(server).state.live_sessions)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def open_session(server: ServerThread, key: str) -> tuple[Any, dict[str, Any]]:
    """A realtime WebSocket and its first event (``session.created`` or ``error``)."""
    ws = await websockets.connect(
        f"{server.ws_url}/v1/realtime", additional_headers=auth(key), max_size=None
    )
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 30))


async def test_a_burst_split_over_two_replicas_gets_exactly_one_429(
    replicas: tuple[ServerThread, ServerThread], http: httpx.AsyncClient
) -> None:
    a, b = replicas
    answers = []
    for i in range(BURST + 1):
        server = (a, b)[i % 2]
        answers.append(await http.get(f"{server.http_url}/v1/meetings", headers=auth("sk-rate")))
    assert [r.status_code for r in answers] == [200] * BURST + [429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    other = await http.get(f"{a.http_url}/v1/meetings", headers=auth("sk-eve"))
    assert other.status_code == 200  # each key has its own bucket


async def test_the_session_cap_holds_whichever_replica_a_session_reaches(
    replicas: tuple[ServerThread, ServerThread], http: httpx.AsyncClient
) -> None:
    a, b = replicas
    opened = []
    try:
        for server in (a, a, b):
            ws, first = await open_session(server, "sk-caps")
            assert first["type"] == "session.created", first
            opened.append(ws)
        # A is full: its /ready sends the load balancer elsewhere; B still has room.
        ready_a = await http.get(f"{a.http_url}/ready")
        assert ready_a.status_code == 503 and ready_a.json()["checks"]["capacity"] == "full"
        assert ready_a.json()["capacity"] == {"sessions": 2, "limit": 2, "draining": False}
        ready_b = await http.get(f"{b.http_url}/ready")
        assert ready_b.json()["checks"]["capacity"] == "ok", ready_b.json()
        # Session 4 is refused on B (the cluster's cap) and on A (its own capacity).
        for server, reason in ((b, "its servers already serve"), (a, "the server is at capacity")):
            ws, first = await open_session(server, "sk-caps")
            assert first["type"] == "error" and first["error"]["code"] == "session_limit_reached"
            assert reason in first["error"]["message"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        # One closes on A: its lease is given back and B admits the next.
        await opened.pop(0).close()
        await eventually(lambda: len(live(a)) == 1, 10)
        ws, first = await open_session(b, "sk-caps")
        assert first["type"] == "session.created", first
        opened.append(ws)
    finally:
        for ws in opened:
            await ws.close()
    await eventually(lambda: len(live(a)) + len(live(b)) == 0, 10)


async def test_a_killed_replica_s_leases_expire_and_a_live_one_s_do_not(
    replicas: tuple[ServerThread, ServerThread], redis: RedisServer
) -> None:
    a, b = replicas
    on_b, first = await open_session(b, "sk-lease")  # held across the whole test
    assert first["type"] == "session.created", first
    # A third replica takes every other place in the cluster, then dies without giving
    # them back: its heartbeat stops and its connection drops (what SIGKILL leaves).
    ghost = RedisCluster(app(a).state.settings)
    ghost_live = LiveSessions(CLUSTER_SESSIONS, ghost.leases)
    await ghost.start(ghost_live)
    for _ in range(CLUSTER_SESSIONS - 1):
        await ghost_live.open("websocket")
    await ghost.stop_tasks()
    await ghost._redis.aclose()
    try:
        ws, first = await open_session(a, "sk-lease")
        assert first["type"] == "error" and first["error"]["code"] == "session_limit_reached"
        assert "its servers already serve" in first["error"]["message"]  # the cluster's cap
        await ws.close()
        # Its capacity record, written after its last lease renewal with the same
        # lifetime, lapses within one lease lifetime; by then its places are free again.
        client = aioredis.Redis.from_url(redis.url)
        try:
            assert await client.exists(replica_key(ghost.replica)) == 1
            loop = asyncio.get_running_loop()
            started = loop.time()
            while await client.exists(replica_key(ghost.replica)):
                assert loop.time() - started < LEASE_S + 5, "the dead replica's record stayed"
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        on_a = [await open_session(a, "sk-lease") for _ in range(REPLICA_SESSIONS)]
        try:
            assert [first["type"] for _, first in on_a] == ["session.created"] * 2, on_a
            # B's session outlived a lease lifetime: renewed, it still counts, so with
            # A's two the cap of three is reached.
            ws, first = await open_session(b, "sk-lease")
            await ws.close()
            assert first["type"] == "error", first
            assert "its servers already serve" in first["error"]["message"]
        finally:
            for ws, _ in on_a:
                await ws.close()
    finally:
        await on_b.close()


async def test_a_client_secret_minted_on_a_opens_a_session_on_b(
    replicas: tuple[ServerThread, ServerThread], http: httpx.AsyncClient
) -> None:
    a, b = replicas
    minted = await http.post(
        f"{a.http_url}/v1/realtime/client_secrets",
        headers=auth("sk-mint"),
        json={"expires_after": {"anchor": "created_at", "seconds": 60},
              "session": {"type": "realtime", "instructions": "Speak like a pirate."}},
    )
    assert minted.status_code == 200, minted.text
    secret = minted.json()["value"]
    ws, first = await open_session(b, secret)
    try:
        assert first["type"] == "session.created", first
        assert first["session"]["instructions"] == "Speak like a pirate."
    finally:
        await ws.close()
    # On B too it opens realtime sessions only, and a made-up secret opens nothing.
    listing = await http.get(f"{b.http_url}/v1/meetings", headers=auth(secret))
    assert listing.status_code == 401
    ws, first = await open_session(b, "ek_" + "x" * 32)
    assert first["type"] == "error" and first["error"]["code"] == "invalid_api_key"
    await ws.close()


async def test_a_webrtc_hang_up_sent_to_b_ends_a_s_call(
    replicas: tuple[ServerThread, ServerThread], http: httpx.AsyncClient
) -> None:
    a, b = replicas

    def calls_a() -> CallRegistry:
        return cast(CallRegistry, app(a).state.webrtc_calls)

    caller = RtcCaller(a.http_url)
    try:
        answer = await http.post(
            f"{a.http_url}/v1/realtime/calls",
            content=await caller.offer(),
            headers={"content-type": "application/sdp", **auth("sk-rtc")},
        )
        assert answer.status_code == 201, answer.text
        await caller.accept(answer.text)
        caller.location = answer.headers["location"]
        await caller.wait_for("session.created", 20)
        call_id = caller.location.rsplit("/", 1)[-1]
        assert call_id in calls_a().ids()
        # Another key cannot end it, on either replica.
        for server in (b, a):
            denied = await http.post(f"{server.http_url}{caller.location}/hangup", headers=auth("sk-eve"))
            assert denied.status_code == 404
        assert call_id in calls_a().ids()
        # Its owner's hang-up sent to B ends it on A.
        hung = await http.post(f"{b.http_url}{caller.location}/hangup", headers=auth("sk-rtc"))
        assert hung.status_code == 200 and hung.json() == {"id": call_id, "status": "closed"}
        assert call_id not in calls_a().ids()
        await eventually(lambda: caller.channel.readyState == "closed", 10)
        again = await http.post(f"{b.http_url}{caller.location}/hangup", headers=auth("sk-rtc"))
        assert again.status_code == 404
    finally:
        await caller.close()


def test_without_cluster_settings_nothing_extra_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from voice.settings import load_settings\n"
        "from web.app import create_app\n"
        "from pipelines.meeting.blob_store import LocalBlobStore, blob_store\n"
        f"settings = load_settings(data_dir={str(tmp_path)!r}, cache_dir={str(tmp_path)!r})\n"
        "app = create_app(settings)\n"
        "assert app.state.cluster is None\n"
        "assert isinstance(blob_store(settings), LocalBlobStore)\n"
        "extra = sorted(m for m in ('redis', 'boto3', 'botocore', 'web.cluster') if m in sys.modules)\n"
        "print('extra:', extra)\n"
    )
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env_free
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "extra: []"


async def test_when_redis_fails_limits_fail_open_and_secrets_fail_closed(
    services: Services, llm: ScriptedLlmServer, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    own_redis = RedisServer()
    with own_redis:
        settings = api_settings(
            tmp_path, llm_base_url=llm.base_url, api_keys=KEYS, redis_url=own_redis.url,
            cluster_max_sessions=CLUSTER_SESSIONS,
        )
        with serve(settings, services) as c:
            minted = await http.post(
                f"{c.http_url}/v1/realtime/client_secrets", headers=auth("sk-mint"), json={}
            )
            assert minted.status_code == 200
            own_redis.stop()  # Redis goes away while C serves
            # API keys keep working: the rate limit and the session cap let them through.
            listing = await http.get(f"{c.http_url}/v1/meetings", headers=auth("sk-eve"))
            assert listing.status_code == 200
            ws, first = await open_session(c, "sk-eve")
            await ws.close()
            assert first["type"] == "session.created", first
            # Secrets cannot be checked or stored: refused with 503, never let through.
            ws, first = await open_session(c, minted.json()["value"])
            await ws.close()
            assert first["type"] == "error" and first["error"]["code"] == "shared_state_unavailable"
            again = await http.post(
                f"{c.http_url}/v1/realtime/client_secrets", headers=auth("sk-mint"), json={}
            )
            assert again.status_code == 503
            assert again.json()["error"]["code"] == "shared_state_unavailable"
