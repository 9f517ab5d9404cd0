"""Storage tiers by partition age (P21): the planner on its own, then the acceptance on a real S3 server
(moto): after ``maintain`` old bronze partitions are warm and recent ones standard, queries, time travel and
an erasure answer as before, a second pass moves nothing, a compaction's new files are moved by the next
pass, and the costs add up to what the bucket holds. The clock is always injected (``TODAY``)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import CliResult, api_deps_for, make_event
from servers import MotoS3
from vhlake.errors import ConfigError
from vhlake.ingest.bronze import BronzeIngestor
from vhlake.lake.delta import Lake
from vhlake.lake.object_tiers import AzureTiers, GcsTiers, LocalTiers, S3Tiers, StoredObject, object_tiers
from vhlake.lake.tables import (
    AUDIT_LOG,
    BRONZE,
    GOLD,
    JOB_EVENTS,
    ML_PREDICTIONS,
    QUARANTINE,
    REJECTED,
    SILVER,
    STORAGE_TIER_MOVES,
    USER_FIRST_SEEN,
    TableDef,
)
from vhlake.lifecycle.costs import TierPrices, storage_costs
from vhlake.lifecycle.maintain import Retention, TableReport, Tiering, maintain
from vhlake.lifecycle.tiers import DataFile, TierAges, TierPolicy, partition_date, plan_moves
from vhlake.pipeline.runner import Pipeline
from vhlake.samples import SampleSpec, generate_lines, write_jsonl
from vhlake.settings import Settings

TODAY = date(2026, 12, 7)  # ten days after the sample feed's last day: its partitions are 10 to 39 days old
# What the S3 tests expect, written out: bronze warm before 2026-11-07 (older than 30 days); silver, with
# the test's shorter ages, warm before 2026-11-17 (20 days) and cold before 2026-11-07 (30 days).
BRONZE_WARM_BEFORE = date(2026, 11, 7)
SILVER_WARM_BEFORE = date(2026, 11, 17)
SILVER_COLD_BEFORE = date(2026, 11, 7)
POLICY = TierPolicy(silver=TierAges(warm_days=20, cold_days=30), min_object_bytes=0)  # moto's files are small
KEEP_ALL = Retention()  # 90 days and more: nothing of the feed expires
GB = 1024**3


# --- the planner, without a store ---------------------------------------------------------------------


def test_a_partition_goes_warm_then_cold_once_older_than_the_days_as_retention_counts_them() -> None:
    bronze, silver = TierPolicy().ages(BRONZE), TierPolicy().ages(SILVER)
    assert [bronze.tier_for(age) for age in (0, 30, 31, 400)] == ["hot", "hot", "warm", "warm"]
    assert [silver.tier_for(age) for age in (90, 91, 180, 181)] == ["hot", "warm", "warm", "cold"]
    assert TierAges(cold_days=10).tier_for(11) == "cold"  # straight from hot to cold
    # retention keeps a row while its date >= today - days: the same boundary
    assert Retention().tables()[0] == (BRONZE, 90)


def test_cold_before_warm_and_negative_ages_are_refused() -> None:
    with pytest.raises(ConfigError, match="cold after 10 days"):
        TierAges(warm_days=30, cold_days=10)
    with pytest.raises(ConfigError, match="0 days or more"):
        TierAges(warm_days=-1)


def test_the_layers_ages_reach_the_tables_and_the_rest_stays_hot() -> None:
    policy = TierPolicy()
    assert policy.ages(QUARANTINE) == policy.ages(REJECTED) == TierAges(warm_days=30)  # quarantine as bronze
    assert policy.ages(JOB_EVENTS) == TierAges(warm_days=90, cold_days=180)
    for table in (GOLD, USER_FIRST_SEEN, AUDIT_LOG, ML_PREDICTIONS, STORAGE_TIER_MOVES):
        assert policy.ages(table) == TierAges(), table.name


def test_a_partition_is_aged_by_its_date_or_its_months_last_day() -> None:
    assert partition_date(BRONZE, {"event_date": date(2026, 10, 3)}) == date(2026, 10, 3)
    assert partition_date(SILVER, {"marketplace": "x", "created_date": "2026-10-04"}) == date(2026, 10, 4)
    assert partition_date(GOLD, {"year": 2028, "month": 2}) == date(2028, 2, 29)
    assert partition_date(ML_PREDICTIONS, {}) is None  # not partitioned: stays hot


def stored(key: str, size: int, tier: Any = "hot", storage_class: str = "STANDARD") -> StoredObject:
    return StoredObject(key, size, tier, storage_class)


def test_the_plan_moves_each_file_to_its_partitions_tier_and_says_why_others_stay() -> None:
    old, recent = date(2026, 10, 1), date(2026, 12, 1)
    files = [
        DataFile("d=old/a.parquet", "d=old", old),  # hot, 67 days old: warm
        DataFile("d=old/b.parquet", "d=old", old),  # already warm: stays
        DataFile("d=old/c.parquet", "d=old", old),  # too small to move out of hot
        DataFile("d=old/d.parquet", "d=old", old),  # in a class vhlake does not manage
        DataFile("d=old/e.parquet", "d=old", old),  # not listed
        DataFile("d=old/f.parquet", "d=old", old),  # too large for the store's move
        DataFile("d=new/g.parquet", "d=new", recent),  # warm but recent: back to hot, however small
        DataFile("h.parquet", "", None),  # no date: never moves
    ]
    listed = {
        s.key: s
        for s in [
            stored("d=old/a.parquet", 500),
            stored("d=old/b.parquet", 500, "warm", "STANDARD_IA"),
            stored("d=old/c.parquet", 99),
            stored("d=old/d.parquet", 500, None, "DEEP_ARCHIVE"),
            stored("d=old/f.parquet", 2_000),
            stored("d=new/g.parquet", 1, "warm", "STANDARD_IA"),
            stored("h.parquet", 500),
        ]
    }
    plan = plan_moves(
        files,
        listed,
        TierAges(warm_days=30),
        today=TODAY,
        min_object_bytes=100,
        max_object_bytes=1_000,
    )
    assert [(m.path, m.from_tier, m.to_tier, m.size) for m in plan.moves] == [
        ("d=old/a.parquet", "hot", "warm", 500),
        ("d=new/g.parquet", "warm", "hot", 1),
    ]
    assert plan.held == {
        "smaller than 100 bytes: kept hot": 1,
        "in DEEP_ARCHIVE, a class vhlake does not manage": 1,
        "not found in the store": 1,
        "larger than 1,000 bytes, the store's largest in-place move": 1,
    }
    by_partition = plan.by_partition()
    assert [(p.partition, p.tier, p.files, p.bytes) for p in by_partition] == [
        ("d=new", "hot", 1, 1),
        ("d=old", "warm", 1, 500),
    ]


def test_empty_or_never_in_the_settings_means_no_such_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    from vhlake import bootstrap

    monkeypatch.setenv("VHLAKE_TIER_SILVER_COLD_DAYS", "")
    monkeypatch.setenv("VHLAKE_TIER_GOLD_WARM_DAYS", "45")
    monkeypatch.setenv("VHLAKE_TIER_BRONZE_COLD_DAYS", "never")
    policy = bootstrap.build_tier_policy(Settings())
    assert policy.silver == TierAges(warm_days=90, cold_days=None)
    assert policy.gold == TierAges(warm_days=45)
    assert policy.bronze == TierAges(warm_days=30)


def test_an_s3_lake_without_boto3_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now fails
    with pytest.raises(ConfigError, match=r"vhlake\[s3\]"):
        object_tiers("s3://bucket/lake", {})
    with pytest.raises(ConfigError, match="not known for memory://"):
        object_tiers("memory://lake", {})
    assert isinstance(object_tiers("/tmp/lake", {}), LocalTiers)  # a local disk needs no SDK


class FakeAzure:
    """Shaped like azure-storage-blob's BlobServiceClient where AzureTiers calls it (``get_container_client``
    then ``list_blobs(name_starts_with=)``; ``get_blob_client(container, name).set_standard_blob_tier``):
    what is checked is our side of the calls, keys and tier names; the service itself is untested."""

    def __init__(self, blobs: dict[str, tuple[int, str | None]]) -> None:
        self.blobs = blobs  # "container/name" -> (size, access tier)

    def get_container_client(self, container: str) -> Any:
        def list_blobs(name_starts_with: str) -> Iterator[Any]:
            for key, (size, tier) in sorted(self.blobs.items()):
                if key.startswith(f"{container}/{name_starts_with}"):
                    yield SimpleNamespace(name=key.split("/", 1)[1], size=size, blob_tier=tier)

        return SimpleNamespace(list_blobs=list_blobs)

    def get_blob_client(self, container: str, blob: str) -> Any:
        def set_standard_blob_tier(tier: str) -> None:
            size, _ = self.blobs[f"{container}/{blob}"]
            self.blobs[f"{container}/{blob}"] = (size, tier)

        return SimpleNamespace(set_standard_blob_tier=set_standard_blob_tier)


class FakeGcs:
    """Shaped like google-cloud-storage's Client where GcsTiers calls it (``list_blobs(bucket, prefix=)``,
    ``bucket(name).blob(name).update_storage_class(cls, if_generation_match=)``); the service is untested."""

    def __init__(self, blobs: dict[str, tuple[int, str, int]]) -> None:
        self.blobs = blobs  # "bucket/name" -> (size, storage class, generation)

    def list_blobs(self, bucket: str, prefix: str) -> Iterator[Any]:
        for key, (size, cls, generation) in sorted(self.blobs.items()):
            if key.startswith(f"{bucket}/{prefix}"):
                yield SimpleNamespace(
                    name=key.split("/", 1)[1], size=size, storage_class=cls, generation=generation
                )

    def bucket(self, bucket: str) -> Any:
        def blob(name: str) -> Any:
            def update_storage_class(cls: str, if_generation_match: int | None = None) -> None:
                size, _, generation = self.blobs[f"{bucket}/{name}"]
                assert if_generation_match == generation  # the object listed, not one replaced since
                self.blobs[f"{bucket}/{name}"] = (size, cls, generation + 1)

            return SimpleNamespace(update_storage_class=update_storage_class)

        return SimpleNamespace(blob=blob)


def test_the_azure_and_gcs_adapters_map_tiers_and_keys_as_their_sdks_name_them() -> None:
    azure = FakeAzure(
        {
            "lake/t/bronze/x/a.parquet": (10, "Hot"),
            "lake/t/bronze/x/b.parquet": (20, "Archive"),  # offline: not managed
            "lake/t/bronze/x/c.parquet": (30, None),  # the account's default, unreported: hot
            "lake/t/other/d.parquet": (40, "Cool"),
        }
    )
    tiers = AzureTiers(azure)
    uri = "abfss://lake@account.dfs.core.windows.net/t/bronze"
    assert [(o.key, o.tier, o.storage_class) for o in tiers.list(uri)] == [
        ("x/a.parquet", "hot", "Hot"),
        ("x/b.parquet", None, "Archive"),
        ("x/c.parquet", "hot", "Hot"),
    ]
    tiers.move(uri, "x/a.parquet", "cold")
    assert azure.blobs["lake/t/bronze/x/a.parquet"] == (10, "Cold")

    gcs = FakeGcs(
        {"bkt/lake/silver/s/a.parquet": (5, "STANDARD", 7), "bkt/lake/silver/s/b.parquet": (6, "ARCHIVE", 1)}
    )
    cloud = GcsTiers(gcs)
    listed = list(cloud.list("gs://bkt/lake/silver"))
    assert [(o.key, o.tier) for o in listed] == [("s/a.parquet", "hot"), ("s/b.parquet", None)]
    cloud.move("gs://bkt/lake/silver", "s/a.parquet", "warm")
    assert gcs.blobs["bkt/lake/silver/s/a.parquet"] == (5, "NEARLINE", 8)


# --- a local lake: one tier, reported only ------------------------------------------------------------


def small_lake(root: Path) -> Lake:
    lake = Lake(str(root / "lake"))
    feed = root / "events.jsonl"
    feed.write_text("".join(json.dumps(make_event(n)) + "\n" for n in range(20)) + "not json\n")
    BronzeIngestor(lake, source_system="test", batch_bytes=32 << 20).ingest_file(feed)
    return lake


def test_a_local_lake_costs_every_file_it_holds_as_hot(tmp_path: Path) -> None:
    lake = small_lake(tmp_path)
    costs = storage_costs(lake, LocalTiers(), TierPrices())
    on_disk = [p for p in (tmp_path / "lake").rglob("*") if p.is_file()]
    assert costs.bytes == sum(p.stat().st_size for p in on_disk) > 0
    assert costs.objects == len(on_disk)
    assert {row.tier for row in costs.rows} == {"hot"}
    assert {"bronze"} <= {row.layer for row in costs.rows}
    assert costs.monthly_usd == pytest.approx(costs.bytes / GB * 0.023) == costs.all_hot_monthly_usd


def test_maintain_on_a_local_lake_moves_nothing_and_says_so(
    tmp_path: Path, run_cli: Callable[..., CliResult]
) -> None:
    lake = small_lake(tmp_path)
    reports = maintain(lake, KEEP_ALL, today=TODAY, tiering=Tiering(TierPolicy(), LocalTiers()))
    assert sum(r.files_tiered for r in reports) == 0 and lake.open(STORAGE_TIER_MOVES) is None
    done = run_cli("--lake", lake.uri, "maintain")
    assert done.exit_code == 0, done.stderr
    assert "a local disk has one tier" in " ".join(done.stdout.split())
    costs = run_cli("--lake", lake.uri, "tables", "--costs")
    assert costs.exit_code == 0, costs.stderr
    total = sum(p.stat().st_size for p in (tmp_path / "lake").rglob("*") if p.is_file())
    assert f"{total:,} bytes" in costs.stdout


def test_the_costs_route_answers_admins_that_see_every_marketplace(tmp_path: Path) -> None:
    lake = small_lake(tmp_path)
    deps = api_deps_for(lake, tmp_path, clock=lambda: datetime(2026, 11, 27, 12, tzinfo=UTC))
    app = FastAPI()
    from vhlake.api.app import install_api

    install_api(app, deps)
    keys = {
        "admin": deps.keys.create("admin")[1],
        "restricted": deps.keys.create("admin", marketplaces=["shopee"])[1],
        "reader": deps.keys.create("read")[1],
    }
    client = TestClient(app)

    def costs(key: str) -> Any:
        return client.get("/v1/lifecycle/costs", headers={"Authorization": f"Bearer {keys[key]}"})

    answer = costs("admin")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["provider"] == "local" and body["bytes"] == sum(row["bytes"] for row in body["rows"]) > 0
    assert body["prices"] == {"hot": 0.023, "warm": 0.0125, "cold": 0.004}
    assert costs("restricted").status_code == 403
    assert costs("reader").status_code == 403
    deps.audit.close()
    deps.publisher.close()


# --- on a real S3 server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    server = MotoS3()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)  # what delta-rs's object store (and boto3's credentials) read
        yield server
    server.stop()


def s3_lake(s3: MotoS3, tmp_path: Path, bucket: str, spec: SampleSpec) -> Lake:
    """A lake on S3 from a generated feed, through the real ingest (one commit: a file per bronze
    partition) and pipeline."""
    lake = Lake(f"s3://{s3.create_bucket(bucket)}/lake")
    feed = tmp_path / f"{bucket}.jsonl"
    write_jsonl(generate_lines(spec), feed)
    BronzeIngestor(lake, source_system="test", batch_bytes=32 << 20).ingest_file(feed)
    Pipeline(lake).run()
    return lake


def tiering(s3: MotoS3) -> Tiering:
    return Tiering(POLICY, S3Tiers.connect({}, endpoint=s3.endpoint))


def bucket_objects(s3: MotoS3, bucket: str, prefix: str = "lake/") -> dict[str, tuple[int, str]]:
    """Every object under ``prefix`` as the bucket lists it: key -> (size, storage class)."""
    found = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item.get("StorageClass") or "STANDARD")
    return found


def current_classes(s3: MotoS3, lake: Lake, table: TableDef, column: str) -> dict[str, tuple[date, str]]:
    """Each file of the table's current version: its partition's date and its class, asked of the bucket."""
    delta = lake.open(table)
    assert delta is not None
    bucket, _, root = lake.table_uri(table).removeprefix("s3://").partition("/")
    actions = pa.table(delta.get_add_actions(flatten=True)).to_pylist()
    client = s3.client()
    return {
        row["path"]: (
            row[f"partition.{column}"],
            client.head_object(Bucket=bucket, Key=f"{root}/{row['path']}").get("StorageClass", "STANDARD"),
        )
        for row in actions
    }


ANSWERS = {
    "bronze": "SELECT event_date, count(*) AS n, count(DISTINCT event_id) AS ids FROM validation_events_bronze "
    "GROUP BY event_date ORDER BY event_date",
    "silver": "SELECT status, created_date, count(*) AS n, sum(total_rows) AS total FROM "
    "validation_results_silver GROUP BY status, created_date ORDER BY status, created_date",
    "gold": "SELECT date, marketplace, sum(total_validations) AS v, sum(failed_validations) AS f FROM "
    "marketplace_daily_metrics_gold GROUP BY date, marketplace ORDER BY date, marketplace",
}


def answers(lake: Lake) -> dict[str, list[dict[str, Any]]]:
    from vhlake.query.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(Lake(lake.uri))  # a fresh engine: nothing cached from before
    try:
        return {name: engine.execute(sql).to_pylist() for name, sql in ANSWERS.items()}
    finally:
        engine.close()


def moved(reports: list[TableReport]) -> dict[str, int]:
    return {r.table: r.files_tiered for r in reports if r.files_tiered}


@pytest.mark.slow
def test_old_partitions_move_to_cheaper_classes_and_every_answer_stays(s3: MotoS3, tmp_path: Path) -> None:
    lake = s3_lake(s3, tmp_path, "tiers-answers", SampleSpec(jobs=400, seed=21, bad_event_rate=0.01))
    before = answers(lake)
    bronze_version = lake.open(BRONZE).version()  # type: ignore[union-attr]
    silver_version = lake.open(SILVER).version()  # type: ignore[union-attr]
    bronze_then = (
        lake.dataset(BRONZE).to_table().sort_by([("event_id", "ascending"), ("source_offset", "ascending")])
    )
    silver_then = lake.dataset(SILVER).to_table().sort_by([("job_id", "ascending")])

    reports = maintain(lake, KEEP_ALL, today=TODAY, tiering=tiering(s3))
    assert not [r.skipped for r in reports if r.skipped]

    # bronze: old partitions warm, recent ones standard, every object of them (one file each)
    bronze_objects = {
        key: cls
        for key, (_, cls) in bucket_objects(
            s3, "tiers-answers", "lake/bronze/validation_events_bronze/"
        ).items()
        if "/event_date=" in key
    }
    by_day: dict[date, set[str]] = {}
    for key, cls in bronze_objects.items():
        day = date.fromisoformat(key.split("/event_date=")[1][:10])
        by_day.setdefault(day, set()).add(cls)
    old_days = {d for d in by_day if d < BRONZE_WARM_BEFORE}
    assert old_days and len(old_days) < len(by_day)
    assert all(by_day[d] == {"STANDARD_IA"} for d in old_days), by_day
    assert all(by_day[d] == {"STANDARD"} for d in set(by_day) - old_days), by_day

    # silver (the test's ages): cold, warm and hot by created_date
    silver = current_classes(s3, lake, SILVER, "created_date")
    expected = {
        path: "GLACIER_IR"
        if day < SILVER_COLD_BEFORE
        else "STANDARD_IA"
        if day < SILVER_WARM_BEFORE
        else "STANDARD"
        for path, (day, _) in silver.items()
    }
    assert {path: cls for path, (_, cls) in silver.items()} == expected
    assert set(expected.values()) == {"GLACIER_IR", "STANDARD_IA", "STANDARD"}

    # each move is in the report and the run history, per partition
    report = {r.table: r for r in reports}[BRONZE.name]
    assert report.files_tiered == len(old_days)
    assert {m.partition for m in report.tier_moves} == {f"event_date={d.isoformat()}" for d in old_days}
    history = lake.dataset(STORAGE_TIER_MOVES).to_table().to_pylist()
    bronze_rows = [row for row in history if row["table_name"] == BRONZE.name]
    assert {row["partition_date"] for row in bronze_rows} == old_days
    assert {(row["tier"], row["storage_class"]) for row in bronze_rows} == {("warm", "STANDARD_IA")}
    warm_bronze_bytes = sum(
        size
        for key, (size, cls) in bucket_objects(
            s3, "tiers-answers", "lake/bronze/validation_events_bronze/"
        ).items()
        if cls == "STANDARD_IA"
    )
    assert sum(row["bytes"] for row in bronze_rows) == report.bytes_tiered == warm_bronze_bytes
    assert {row["moved_date"] for row in history} == {TODAY}

    # queries and time travel read the moved files and answer as before
    assert answers(lake) == before
    assert (
        lake.dataset(BRONZE, version=bronze_version)
        .to_table()
        .sort_by([("event_id", "ascending"), ("source_offset", "ascending")])
        .equals(bronze_then)
    )
    assert (
        lake.dataset(SILVER, version=silver_version)
        .to_table()
        .sort_by([("job_id", "ascending")])
        .equals(silver_then)
    )

    # a second pass moves nothing and records nothing
    again = maintain(lake, KEEP_ALL, today=TODAY, tiering=tiering(s3))
    assert moved(again) == {}
    assert lake.dataset(STORAGE_TIER_MOVES).count_rows() == len(history)

    # late events in an old partition, a compaction, then maintain: no current file of an old partition hot
    late_day = date(2026, 11, 1)
    late = tmp_path / "late.jsonl"
    late.write_text(
        "".join(
            json.dumps(make_event(n, event_id=f"late-{n}", timestamp=f"{late_day.isoformat()}T12:00:00Z"))
            + "\n"
            for n in range(5)
        )
    )
    BronzeIngestor(lake, source_system="test", batch_bytes=32 << 20).ingest_file(late)
    compacted = lake.open(BRONZE).optimize.compact()  # type: ignore[union-attr]
    assert compacted["numFilesAdded"] >= 1
    fresh = [
        path
        for path, (day, cls) in current_classes(s3, lake, BRONZE, "event_date").items()
        if day == late_day and cls == "STANDARD"
    ]
    assert fresh  # the compaction wrote the late day's partition anew, in the default class
    after = maintain(lake, KEEP_ALL, today=TODAY, tiering=tiering(s3))
    assert moved(after)[BRONZE.name] >= len(fresh)
    bronze_now = current_classes(s3, lake, BRONZE, "event_date")
    assert {cls for day, cls in bronze_now.values() if day < BRONZE_WARM_BEFORE} == {"STANDARD_IA"}
    assert {cls for day, cls in bronze_now.values() if day >= BRONZE_WARM_BEFORE} == {"STANDARD"}
    silver_now = current_classes(s3, lake, SILVER, "created_date")
    assert "STANDARD" not in {cls for day, cls in silver_now.values() if day < SILVER_WARM_BEFORE}
    # what is still standard in the late day's folder is only what the compaction replaced (for vacuum)
    current = {f"lake/bronze/validation_events_bronze/{path}" for path in bronze_now}
    late_folder = {
        key: cls
        for key, (_, cls) in bucket_objects(
            s3, "tiers-answers", "lake/bronze/validation_events_bronze/"
        ).items()
        if f"/event_date={late_day.isoformat()}/" in key
    }
    assert {key for key, cls in late_folder.items() if cls == "STANDARD"}.isdisjoint(current)

    # the costs add up to what the bucket holds, per class, priced at the list prices
    costs = storage_costs(lake, S3Tiers.connect({}, endpoint=s3.endpoint), TierPrices())
    held = bucket_objects(s3, "tiers-answers")
    per_class: Counter[str] = Counter()
    for size, cls in held.values():
        per_class[cls] += size
    assert costs.bytes == sum(per_class.values()) and costs.objects == len(held)
    assert {row.storage_class: 0 for row in costs.rows} == dict.fromkeys(per_class, 0)
    assert (
        Counter({c: sum(r.bytes for r in costs.rows if r.storage_class == c) for c in per_class}) == per_class
    )
    prices = {"STANDARD": 0.023, "STANDARD_IA": 0.0125, "GLACIER_IR": 0.004}
    assert costs.monthly_usd == pytest.approx(sum(size / GB * prices[c] for c, size in per_class.items()))
    assert costs.all_hot_monthly_usd == pytest.approx(costs.bytes / GB * 0.023)
    assert costs.all_hot_monthly_usd > costs.monthly_usd
    assert {row.layer for row in costs.rows} >= {"bronze", "silver", "gold"}


def test_the_s3_store_is_reached_through_the_lakes_storage_options(s3: MotoS3) -> None:
    """The endpoint and credentials delta-rs gets in a lake's storage options reach boto3 too."""
    client = s3.client()
    bucket = s3.create_bucket("tiers-options")
    client.put_object(Bucket=bucket, Key="lake/bronze/t/event_date=2026-10-01/f.parquet", Body=b"x" * 10)
    options = {
        "AWS_ENDPOINT_URL": s3.endpoint,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
        "aws_region": "us-east-1",
    }
    store = object_tiers(f"s3://{bucket}/lake", options)
    listed = list(store.list(f"s3://{bucket}/lake/bronze/t"))
    assert [(o.key, o.size, o.tier) for o in listed] == [("event_date=2026-10-01/f.parquet", 10, "hot")]
    store.move(f"s3://{bucket}/lake/bronze/t", "event_date=2026-10-01/f.parquet", "cold")
    head = client.head_object(Bucket=bucket, Key="lake/bronze/t/event_date=2026-10-01/f.parquet")
    assert head["StorageClass"] == "GLACIER_IR" and head["ContentLength"] == 10


@pytest.mark.slow
def test_an_erasure_after_the_move_removes_what_it_removed_before(s3: MotoS3, tmp_path: Path) -> None:
    from vhlake.lifecycle.erasure import forget_user
    from vhlake.query.duckdb_engine import DuckDBEngine

    lake = s3_lake(s3, tmp_path, "tiers-forget", SampleSpec(jobs=300, seed=22))
    tables = {
        "validation_events_bronze": BRONZE,
        "validation_job_events": JOB_EVENTS,
        "validation_results_silver": SILVER,
    }

    def counts(user: str) -> dict[str, tuple[int, int]]:
        """Per table: the rows an erasure of ``user`` takes (the user's, and those of the user's jobs),
        and all rows."""
        engine = DuckDBEngine(Lake(lake.uri))
        jobs = (
            "SELECT job_id FROM validation_results_silver WHERE user_id = $u "
            "UNION SELECT job_id FROM validation_job_events WHERE user_id = $u"
        )
        try:
            return {
                name: (
                    engine.execute(
                        f"SELECT count(*) AS n FROM {name} WHERE user_id = $u OR job_id IN ({jobs})",
                        {"u": user},
                    )["n"][0].as_py(),
                    engine.execute(f"SELECT count(*) AS n FROM {name}")["n"][0].as_py(),
                )
                for name in tables
            }
        finally:
            engine.close()

    user = (
        DuckDBEngine(lake)
        .execute(
            "SELECT user_id FROM validation_results_silver WHERE created_date < $d ORDER BY user_id LIMIT 1",
            {"d": SILVER_COLD_BEFORE},
        )["user_id"][0]
        .as_py()
    )
    before = counts(user)
    assert all(mine > 0 for mine, _ in before.values())
    assert moved(maintain(lake, KEEP_ALL, today=TODAY, tiering=tiering(s3)))[BRONZE.name] > 0

    report = forget_user(lake, Pipeline(lake), user, requested_by="test")
    assert {name: report.rows[name] for name in tables} == {name: mine for name, (mine, _) in before.items()}
    assert counts(user) == {name: (0, total - mine) for name, (mine, total) in before.items()}

    # the files the erasure rewrote came back standard; the next pass moves them again
    again = maintain(lake, KEEP_ALL, today=TODAY, tiering=tiering(s3))
    assert moved(again).get(BRONZE.name, 0) > 0
    bronze = current_classes(s3, lake, BRONZE, "event_date")
    assert {cls for day, cls in bronze.values() if day < BRONZE_WARM_BEFORE} == {"STANDARD_IA"}


@pytest.mark.slow
def test_the_cli_moves_an_s3_lake_with_the_settings_and_bills_it(
    s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., CliResult]
) -> None:
    """Through the settings (``AWS_ENDPOINT`` reaches boto3 too): every bronze partition is older than the
    0 days set here whatever the date, as the feed ends three days before the clock the CLI reads."""
    monkeypatch.setenv("VHLAKE_TIER_BRONZE_WARM_DAYS", "0")
    monkeypatch.setenv("VHLAKE_TIER_MIN_OBJECT_BYTES", "0")
    monkeypatch.delenv("VHLAKE_LAKE_URI", raising=False)
    end = datetime.now(UTC) - timedelta(days=3)
    lake = s3_lake(s3, tmp_path, "tiers-cli", SampleSpec(jobs=100, seed=23, days=5, end=end))
    dry = run_cli("--lake", lake.uri, "maintain", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would move to another storage tier" in dry.stdout
    assert {cls for _, cls in bucket_objects(s3, "tiers-cli").values()} == {"STANDARD"}  # nothing moved

    done = run_cli("--lake", lake.uri, "maintain")
    assert done.exit_code == 0, done.stderr
    assert "moved to another storage tier" in done.stdout and "STANDARD_IA" in done.stdout
    bronze = current_classes(s3, lake, BRONZE, "event_date")
    assert bronze and {cls for _, cls in bronze.values()} == {"STANDARD_IA"}
    assert {row["table_name"] for row in lake.dataset(STORAGE_TIER_MOVES).to_table().to_pylist()} >= {
        BRONZE.name
    }

    costs = run_cli("--lake", lake.uri, "tables", "--costs")
    assert costs.exit_code == 0, costs.stderr
    total = sum(size for size, _ in bucket_objects(s3, "tiers-cli").values())
    assert f"{total:,} bytes" in costs.stdout and "STANDARD_IA" in costs.stdout


@pytest.mark.slow
def test_an_s3_lake_without_boto3_is_still_maintained_and_says_what_to_install(
    s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., CliResult]
) -> None:
    """A lake on S3 installed before the ``s3`` extra existed: retention, compaction and vacuum run as
    before; only the moves are left out, with the extra to install."""
    monkeypatch.setenv("VHLAKE_TIER_BRONZE_WARM_DAYS", "0")
    monkeypatch.delenv("VHLAKE_LAKE_URI", raising=False)
    end = datetime.now(UTC) - timedelta(days=3)
    lake = s3_lake(s3, tmp_path, "tiers-nosdk", SampleSpec(jobs=50, seed=29, days=3, end=end))
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "boto3", None)  # import boto3 fails while maintain runs
        done = run_cli("--lake", lake.uri, "maintain")
    assert done.exit_code == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "nothing moved" in said and "vhlake[s3]" in said and "VHLAKE_TIERING=false" in said
    assert BRONZE.name in said  # the tables' report is printed as before
    assert {cls for _, cls in bucket_objects(s3, "tiers-nosdk").values()} == {"STANDARD"}
