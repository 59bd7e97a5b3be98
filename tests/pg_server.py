"""A real PostgreSQL server for tests: ``initdb`` in a temporary folder, ``postgres``
on a free loopback port (its unix socket in that folder too), stopped afterwards.

PostgreSQL refuses to run as root; when the tests run as root (CI containers) the
server runs as the unprivileged ``nobody`` user through ``runuser``. The binaries
come from Debian's ``postgresql`` package (``scripts/setup.sh --test`` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port

USER = "voice"
"""The database superuser created by ``initdb`` (trust authentication on loopback)."""


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program (``initdb``, ``postgres``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    path = found[0] if found else shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed: run scripts/setup.sh --test"
            " (Debian: apt-get install postgresql)"
        )
    return path


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """One throwaway cluster; :attr:`url` names its ``postgres`` database."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="voice-pg-"))
        self.data = self.root / "data"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self, timeout_s: float = 60.0) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
        subprocess.run(
            _as_server_user([pg_bin("initdb"), "-D", str(self.data), "-U", USER,
                             "--auth=trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True, cwd=self.root,
        )
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 (owned by the process)
        self._proc = subprocess.Popen(
            _as_server_user([
                pg_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "max_connections=200",
            ]),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start: {self.log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text()[-2000:]
        return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # Fast shutdown (ends open sessions), sent to the postmaster itself: runuser
            # does not pass SIGINT on.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def fresh_database(self, name: str) -> str:
        """Create database ``name`` and return its URL (one per test keeps them apart)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
