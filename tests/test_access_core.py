"""Authentication, limits and draining without a server: key parsing and lookup,
token extraction, the bind rule, the rate limiter and client secrets on an
injected clock, session admission, and the job store's owner migration."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.meeting.sqlite_store import SqliteJobStore
from pipelines.meeting.store import JobState
from voice.settings import SettingsError, load_settings
from web.access import client_secret_store
from web.access.auth import KeyRing, bearer_token, check_bind, parse_key_lines, subprotocol_token
from web.access.client_secret_store import ClientSecretStore
from web.access.live_sessions import SHUTDOWN, LiveSessions, Refused
from web.access.rate_limit import RateLimiter
from web.api_errors import ApiError


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def test_keys_from_env_list_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\ncarol:sk-carol\n\n  sk-dave  \n")
    monkeypatch.setenv("VOICE_API_KEYS", "alice:sk-alice, sk-bob")
    monkeypatch.setenv("VOICE_API_KEYS_FILE", str(keys_file))
    settings = load_settings()
    assert settings.api_keys == ["alice:sk-alice", "sk-bob"]
    ring = KeyRing.from_settings(settings)
    assert len(ring) == 4 and ring.enabled
    alice, bob = ring.lookup("sk-alice"), ring.lookup("sk-bob")
    assert alice is not None and alice.owner == "name:alice"
    assert bob is not None and bob.owner is not None and bob.owner.startswith("sha256:")
    assert "sk-bob" not in bob.owner  # the owner id never contains the key
    assert ring.lookup("sk-dave") is not None and ring.lookup("sk-carol") is not None
    for wrong in ("sk-alic", "sk-alice ", "alice:sk-alice", "", "SK-ALICE"):
        assert ring.lookup(wrong) is None
    monkeypatch.setenv("VOICE_API_KEYS", '["json:sk-1", "sk-2"]')
    assert load_settings().api_keys == ["json:sk-1", "sk-2"]


def test_key_lines_and_missing_keys_file(tmp_path: Path) -> None:
    assert parse_key_lines(["a:b:c", "sk:with-colon", "weird key!"]) == [
        ("a", "b:c"),
        ("sk", "with-colon"),
        (None, "weird key!"),
    ]
    with pytest.raises(SettingsError, match="VOICE_API_KEYS_FILE"):
        load_settings(api_keys_file=tmp_path / "nope")


def test_tokens_from_header_and_subprotocol() -> None:
    assert bearer_token({"authorization": "Bearer sk-1"}) == "sk-1"
    assert bearer_token({"authorization": "bearer   sk-1 "}) == "sk-1"
    assert bearer_token({"authorization": "Basic abc"}) is None
    assert bearer_token({}) is None
    assert subprotocol_token(["realtime", "openai-insecure-api-key.ek_abc"]) == "ek_abc"
    assert subprotocol_token(["realtime", "openai-insecure-api-key."]) is None


def test_without_keys_only_loopback_may_be_bound() -> None:
    none = KeyRing([])
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(load_settings(host=host), none)
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(SettingsError, match="VOICE_HOST"):
            check_bind(load_settings(host=host), none)
    check_bind(load_settings(host="0.0.0.0"), KeyRing([(None, "sk-1")]))


def test_token_bucket_refills_at_the_set_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, now=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)  # one token a second
    assert limiter.take("b") == 0.0  # other keys have their own bucket
    clock.t += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.t += 0.5
    assert limiter.take("a") == 0.0
    clock.t += 100
    assert [limiter.take("a") for _ in range(4)][-1] > 0  # refills only up to the burst
    assert RateLimiter(0, 1, now=clock).take("a") == 0.0  # 0 = no limit


def test_client_secrets_expire() -> None:
    clock = FakeClock()
    store = ClientSecretStore(now=clock)
    owner = KeyRing([("alice", "sk-a")]).lookup("sk-a")
    assert owner is not None
    value, entry = store.mint(owner, 60, None)
    assert value.startswith("ek_") and entry.expires_at == clock.t + 60
    found = store.lookup(value)
    assert found is not None and found.owner == "name:alice" and found.via_client_secret
    assert store.lookup(value + "x") is None and store.lookup("sk-a") is None
    clock.t += 61
    assert store.lookup(value) is None


async def test_admission_limit_and_draining() -> None:
    live = LiveSessions(limit=2)
    first, second = live.admit("websocket"), live.admit("webrtc")
    with pytest.raises(Refused) as full:
        live.admit("websocket")
    assert full.value.ending.code == "session_limit_reached"
    assert full.value.ending.close_code == 1013 and full.value.ending.status == 429
    ended: list[str] = []

    class Idle:
        responding = False

    for slot in (first, second):
        slot.attach(Idle(), lambda e, s=slot: (ended.append(e.code), s.release()))  # type: ignore[arg-type]
    await asyncio.wait_for(live.drain(grace_s=5), 2)
    assert ended == ["server_shutting_down"] * 2 and len(live) == 0
    with pytest.raises(Refused) as draining:
        live.admit("websocket")
    assert draining.value.ending is SHUTDOWN and SHUTDOWN.close_code == 1012


async def test_old_job_database_gains_an_owner_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:  # the schema before owners existed
        conn.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL, kind TEXT NOT NULL, options TEXT NOT NULL, stage TEXT,"
            " progress REAL NOT NULL, error TEXT, error_code TEXT, filename TEXT, media_type TEXT,"
            " duration_s REAL, size_bytes INTEGER, attempts INTEGER NOT NULL, started_at REAL,"
            " finished_at REAL)"
        )
        conn.execute(
            "INSERT INTO jobs VALUES ('" + "a" * 32 + "', 'queued', 1, 1, 'meeting', '{}', NULL,"
            " 0, NULL, NULL, 'old.wav', NULL, NULL, NULL, 0, NULL, NULL)"
        )
    store = SqliteJobStore(path)
    await store.open()
    try:
        old = await store.get("a" * 32)
        assert old is not None and old.owner is None and old.state is JobState.QUEUED
        mine = await store.create(store.new("b" * 32, owner="name:alice"))
        assert (await store.get(mine.id)).owner == "name:alice"  # type: ignore[union-attr]
        assert [j.id for j in await store.list(owner="name:alice")] == ["b" * 32]
        assert len(await store.list()) == 2
    finally:
        await store.close()
    reopened = SqliteJobStore(path)  # opening again does not migrate twice
    await reopened.open()
    await reopened.close()


async def test_drain_ends_sessions_whose_turn_outlasts_the_grace() -> None:
    live = LiveSessions(limit=4)
    slot = live.admit("websocket")
    never = asyncio.Event()

    class Busy:
        responding = True

        async def responses_finished(self) -> None:
            await never.wait()

    ended: list[str] = []
    slot.attach(Busy(), lambda e: (ended.append(e.code), slot.release()))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(live.drain(grace_s=0.3), 5)
    assert 0.25 < loop.time() - start < 2
    assert ended == ["server_shutting_down"] and len(live) == 0


def test_serve_without_keys_refuses_a_public_address() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_")}
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert "VOICE_HOST=0.0.0.0" in done.stdout + done.stderr
    assert "VOICE_API_KEYS" in done.stdout + done.stderr


def test_one_key_cannot_hold_every_client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_secret_store, "MAX_PER_OWNER", 2)
    clock = FakeClock()
    store = ClientSecretStore(now=clock)
    ring = KeyRing([("alice", "sk-a"), ("bob", "sk-b")])
    alice, bob = ring.lookup("sk-a"), ring.lookup("sk-b")
    assert alice is not None and bob is not None
    store.mint(alice, 60, None)
    store.mint(alice, 60, None)
    with pytest.raises(ApiError) as refused:
        store.mint(alice, 60, None)
    assert refused.value.status == 429 and refused.value.code == "too_many_client_secrets"
    store.mint(bob, 60, None)
    clock.t += 61  # expired ones no longer count
    store.mint(alice, 60, None)


async def test_a_session_attached_after_the_drain_began_is_ended_too() -> None:
    live = LiveSessions(limit=2)
    slot = live.admit("webrtc")  # admitted, its session not yet made
    ended: list[str] = []

    class Idle:
        responding = False

    drain = asyncio.create_task(live.drain(grace_s=1))
    await asyncio.sleep(0.05)
    slot.attach(Idle(), lambda e: (ended.append(e.code), slot.release()))  # type: ignore[arg-type]
    await asyncio.wait_for(drain, 5)
    assert ended == ["server_shutting_down"] and len(live) == 0
