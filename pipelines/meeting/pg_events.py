"""Job changes from every replica and worker, through PostgreSQL ``LISTEN``.

:class:`~pipelines.meeting.pg_store.PostgresJobStore` sends ``NOTIFY`` with a job's
id whenever the job changes; :func:`follow_job_changes` listens on its own
connection and publishes the job's snapshot (read back from the store, ``None``
once deleted) to this process's :class:`~pipelines.meeting.job_events.JobEvents`,
so a progress stream on server B follows a job that a worker runs elsewhere.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from pipelines.meeting.job_events import JobEvents
from pipelines.meeting.pg_store import JOB_CHANNEL, PostgresJobStore

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
"""Pause before listening again after the connection was lost (s)."""


async def follow_job_changes(
    store: PostgresJobStore, events: JobEvents, ready: asyncio.Event | None = None
) -> None:
    """Forever: publish each announced job change to ``events`` (only for jobs someone
    follows). Reconnects after :data:`RECONNECT_S` when the connection drops; sets
    ``ready`` once listening. Safe to cancel (the connection is closed)."""
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(store.url, autocommit=True)
            async with conn:
                await conn.execute(f"LISTEN {JOB_CHANNEL}")
                if ready is not None:
                    ready.set()
                async for note in conn.notifies():
                    if events.wanted(note.payload):
                        events.publish(note.payload, await store.get(note.payload))
        except psycopg.Error as exc:
            log.warning("job change listener lost its connection (%s); reconnecting", exc)
        await asyncio.sleep(RECONNECT_S)
