"""Several writers on one lake on S3 (moto's server), without ``AWS_S3_ALLOW_UNSAFE_RENAME``: every
commit is a put-if-absent of its version's log file, so racing writers lose and overwrite nothing.

The bucket keeps object versions: a log file written twice would have two versions, so "no version
overwritten" is read from the store itself, not from what Delta reports.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from servers import MotoS3
from test_pipeline_properties import comparable
from vhlake.api.keys import RECHECK_S as KEYS_RECHECK_S
from vhlake.api.keys import KeyStore
from vhlake.errors import ConfigError
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake, safe_commit_options
from vhlake.lake.tables import BRONZE, TableDef
from vhlake.pipeline.runner import Pipeline
from vhlake.reconciliation.run import reconcile
from vhlake.samples import SampleSpec, generate_lines, write_jsonl

RACE = TableDef(
    name="racing_appends",
    layer="test",
    schema=pa.schema([("writer", pa.string()), ("seq", pa.int64())]),
    partition_by=(),
    description="one row per commit of a racing writer",
)
WRITERS, COMMITS_EACH = 4, 25


@pytest.fixture
def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """moto's S3 server with its access log, and the environment delta-rs (here and in child
    processes) reads to reach it; no unsafe-rename variable."""
    server = MotoS3(log=tmp_path / "moto.log")
    monkeypatch.delenv("AWS_S3_ALLOW_UNSAFE_RENAME", raising=False)
    monkeypatch.delenv("AWS_S3_LOCKING_PROVIDER", raising=False)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


def commit_many(uri: str, writer: str, start: Any) -> int:
    """One racing writer (a child process): ``COMMITS_EACH`` appends, each with its own application
    transaction, as fast as the store takes them. Returns how many it committed."""
    lake = Lake(uri)
    start.wait()
    return sum(
        lake.append_once(
            RACE,
            pa.table({"writer": [writer], "seq": [seq]}, schema=RACE.schema),
            app_id=f"racer-{writer}",
            version=seq,
        )
        for seq in range(1, COMMITS_EACH + 1)
    )


def log_versions(server: MotoS3, bucket: str, prefix: str) -> dict[int, int]:
    """Version number of each commit file under ``prefix`` -> how many object versions the store holds."""
    pages = server.client().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    held: Counter[int] = Counter()
    for page in pages:
        for version in page.get("Versions", []):
            name = version["Key"].rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                held[int(name[:-5])] += 1
    return dict(held)


def refused_commit_puts(log: Path) -> int:
    """PUTs of a commit file the store refused (412: the version already existed). The access log's
    request line may be wrapped in colour codes."""
    refused = re.compile(r"PUT \S*/_delta_log/\d{20}\.json .*\" 412 ")
    return sum(1 for line in log.read_text().splitlines() if refused.search(line))


@pytest.mark.slow
def test_a_hundred_racing_commits_lose_and_overwrite_nothing(moto: MotoS3, tmp_path: Path) -> None:
    bucket = moto.create_bucket("racing", versioned=True)
    uri = f"s3://{bucket}/lake"
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Manager().Event()
    with spawn.Pool(WRITERS) as pool:
        runs = [pool.apply_async(commit_many, (uri, f"w{n}", start)) for n in range(WRITERS)]
        start.set()
        committed = [run.get(timeout=240) for run in runs]
    assert committed == [COMMITS_EACH] * WRITERS  # every attempt committed, none given up

    table = Lake(uri).open(RACE)
    assert table is not None
    commits = log_versions(moto, bucket, "lake/test/racing_appends/_delta_log/")
    # version 0 creates the table (once, though every writer tried), then one commit per append, no gap
    assert sorted(commits) == list(range(1 + WRITERS * COMMITS_EACH))
    assert set(commits.values()) == {1}  # no log file was ever written twice
    assert table.version() == WRITERS * COMMITS_EACH
    assert Counter(e["operation"] for e in table.history()) == {"CREATE TABLE": 1, "WRITE": 100}
    txns: Counter[tuple[str, int]] = Counter()
    s3 = moto.client()
    for version in commits:
        key = f"lake/test/racing_appends/_delta_log/{version:020d}.json"
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines():
            action = json.loads(line)
            if "txn" in action:
                txns[(action["txn"]["appId"], action["txn"]["version"])] += 1
    expected = {(f"racer-w{n}", seq) for n in range(WRITERS) for seq in range(1, COMMITS_EACH + 1)}
    assert set(txns) == expected and set(txns.values()) == {1}  # each application transaction once
    data = pa.table(table.to_pyarrow_table())
    rows = Counter(zip(data["writer"].to_pylist(), data["seq"].to_pylist(), strict=True))
    assert rows == Counter({(f"w{n}", seq): 1 for n in range(WRITERS) for seq in range(1, COMMITS_EACH + 1)})
    assert refused_commit_puts(tmp_path / "moto.log") > 0  # the writers did race: the store refused some


@pytest.mark.slow
def test_two_ingest_processes_on_one_s3_lake_write_every_event_once(moto: MotoS3, tmp_path: Path) -> None:
    feeds = [tmp_path / f"feed-{n}.jsonl" for n in range(2)]
    for n, feed in enumerate(feeds):
        write_jsonl(generate_lines(SampleSpec(jobs=300, seed=20 + n)), feed)
    uri = f"s3://{moto.create_bucket('ingests', versioned=True)}/lake"
    env = {**os.environ, "VHLAKE_INGEST_BATCH_BYTES": str(16 * 1024)}  # many small commits each
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "vhlake", "--lake", uri, "ingest", str(feed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for feed in feeds
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=240)
        assert run.returncode == 0, stderr.decode()
    reference = Lake(str(tmp_path / "reference"))
    for feed in feeds:
        BronzeIngestor(reference, source_system="test", batch_bytes=16 * 1024).ingest_file(feed)
    commits = log_versions(moto, "ingests", "lake/bronze/validation_events_bronze/_delta_log/")
    assert len(commits) > 2 * 3 and set(commits.values()) == {1}
    assert sorted(commits) == list(range(len(commits)))
    assert events_by_id(Lake(uri)) == events_by_id(reference)
    assert_reconciled(Lake(uri), sources=2)


def assert_reconciled(lake: Lake, *, sources: int) -> None:
    """Every link balances on the S3 lake (the ledger written next to bronze, read back from S3)."""
    result = reconcile(lake, since=None, now=datetime.now(UTC))
    assert result.balanced, [link.describe() for link in result.imbalances]
    assert sum(link.kind == "source" for link in result.links) == sources


def events_by_id(lake: Lake) -> Counter[str]:
    delta = lake.open(BRONZE)
    assert delta is not None
    return Counter(pa.table(delta.to_pyarrow_table(columns=["event_id"]))["event_id"].to_pylist())


@pytest.mark.slow
def test_vhlake_maintain_racing_the_pipeline_on_s3_loses_nothing(moto: MotoS3, tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    write_jsonl(generate_lines(SampleSpec(jobs=400, seed=11, duplicate_rate=0.02)), feed)
    uri = f"s3://{moto.create_bucket('maintained', versioned=True)}/lake"
    lakes = [Lake(uri), Lake(str(tmp_path / "reference"))]
    for lake in lakes:
        BronzeIngestor(lake, source_system="test", batch_bytes=16 * 1024).ingest_file(feed)
    keep_all = {f"VHLAKE_RETENTION_{layer}_DAYS": "100000" for layer in ("BRONZE", "SILVER", "GOLD")}
    env = {**os.environ, **keep_all}  # nothing expires whatever today is: only the rewrites race
    stop, results = threading.Event(), []

    def maintain_in_a_loop() -> None:
        while not stop.is_set():
            done = subprocess.run(
                [sys.executable, "-m", "vhlake", "--lake", uri, "maintain"], env=env, capture_output=True
            )
            results.append((done.returncode, done.stderr.decode()))

    worker = threading.Thread(target=maintain_in_a_loop)
    worker.start()
    try:
        Pipeline(lakes[0], versions_per_batch=1).run()  # many small MERGEs next to the rewrites
    finally:
        stop.set()
        worker.join()
    assert results and all(code == 0 for code, _ in results), results
    Pipeline(lakes[1]).run()
    assert comparable(lakes[0]) == comparable(lakes[1])
    for table in ("silver/validation_results_silver", "bronze/validation_events_bronze"):
        commits = log_versions(moto, "maintained", f"lake/{table}/_delta_log/")
        assert set(commits.values()) == {1} and sorted(commits) == list(range(len(commits)))
    assert_reconciled(lakes[0], sources=1)


def test_s3_lakes_commit_with_conditional_put_and_refuse_turning_it_off() -> None:
    assert Lake("s3://bucket/lake").storage_options["conditional_put"] == "etag"
    assert Lake("s3a://bucket/lake", {"AWS_CONDITIONAL_PUT": "etag"}).storage_options == {
        "AWS_CONDITIONAL_PUT": "etag"
    }
    assert "conditional_put" not in Lake("/tmp/lake").storage_options
    assert safe_commit_options("gs://bucket/lake", {}) == {}
    with pytest.raises(ConfigError, match="need it set to etag"):
        Lake("s3://bucket/lake", {"aws_conditional_put": "disabled"})


def store_requests(log: Path, under: str) -> int:
    """Requests the store served for paths (or listing prefixes) under ``under``."""
    return sum(1 for line in log.read_text().splitlines() if under in line.replace("%2F", "/"))


def test_the_api_key_store_asks_s3_about_its_table_once_a_second_not_per_request(
    moto: MotoS3, tmp_path: Path
) -> None:
    uri = f"s3://{moto.create_bucket('keys')}/lake"
    _, key = KeyStore(Lake(uri)).create("read")
    served = KeyStore(Lake(uri))  # the API's store, in another process in production
    assert served.authenticate(key) is not None
    before = store_requests(tmp_path / "moto.log", "lake/ops/api_keys")
    for _ in range(50):
        assert served.authenticate(key) is not None
    asked = store_requests(tmp_path / "moto.log", "lake/ops/api_keys") - before
    assert asked < 10, f"{asked} requests to the store for 50 authentications within a second"

    other_id, other = KeyStore(Lake(uri)).create("read")  # created elsewhere: counts within RECHECK_S
    time.sleep(KEYS_RECHECK_S + 0.1)
    assert served.authenticate(other) is not None
    assert served.revoke(other_id)  # revoked through this store: refused at once
    assert served.authenticate(other) is None


def test_transaction_versions_are_read_from_the_new_commits_only(moto: MotoS3, tmp_path: Path) -> None:
    uri = f"s3://{moto.create_bucket('txns')}/lake"
    writer, reader = Lake(uri), Lake(uri)
    for seq in range(30):
        writer.append_once(
            RACE, pa.table({"writer": ["a"], "seq": [seq]}, schema=RACE.schema), app_id="a", version=seq
        )
    assert [reader.txn_version(RACE, app) for app in ("a", "b", "c")] == [29, None, None]
    writer.append_once(
        RACE, pa.table({"writer": ["b"], "seq": [1]}, schema=RACE.schema), app_id="b", version=7
    )
    writer.append(RACE, pa.table({"writer": ["plain"], "seq": [0]}, schema=RACE.schema))
    before = store_requests(tmp_path / "moto.log", "lake/test/racing_appends/_delta_log")
    answers = [reader.txn_version(RACE, app) for app in ("a", "b", "c")]
    asked = store_requests(tmp_path / "moto.log", "lake/test/racing_appends/_delta_log") - before
    assert answers == [Lake(uri).txn_version(RACE, app) for app in ("a", "b", "c")] == [29, 7, None]
    assert asked < 32, f"{asked} requests for three apps after two commits: a replay of the 32-commit log"
