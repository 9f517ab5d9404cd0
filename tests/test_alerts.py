"""SQL alerts against real receivers on loopback: an HTTP server capturing webhook and Slack posts and an
SMTP server (aiosmtpd) capturing e-mails; states survive a restart; bad files give one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from servers import free_port
from vhlake.alerts.config import load_config
from vhlake.alerts.runner import AlertRunner, validate
from vhlake.errors import ConfigError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ALERT_EVENTS, GOLD
from vhlake.query.duckdb_engine import DuckDBEngine
from vhlake.reconciliation.links import Equation, Link
from vhlake.reconciliation.run import Reconciliation, record


class Receiver:
    """A local HTTP server that records every POST body by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def mailbox() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, messages
    controller.stop()


def gold_day(lake: Lake, error_rates: dict[str, float]) -> None:
    """Replace gold with one row per marketplace for today at the given error rates (100 jobs each).
    Today is the real one, taken when called: the rules' SQL asks the engine for ``current_date()``."""
    day = datetime.now(UTC).date()
    rows = [
        {
            "date": day,
            "marketplace": m,
            "category": "moda",
            "total_validations": 100,
            "successful_validations": 100 - round(rate * 100),
            "failed_validations": round(rate * 100),
            "total_rows_processed": 1000,
            "avg_processing_time_ms": 1000.0,
            "p50_processing_time": 900.0,
            "p95_processing_time": 2000.0,
            "p99_processing_time": 3000.0,
            "unique_users": 5,
            "error_rate": rate,
            "year": day.year,
            "month": day.month,
            "updated_at": datetime.now(UTC),
        }
        for m, rate in error_rates.items()
    ]
    lake.replace_once(GOLD, pa.Table.from_pylist(rows, schema=GOLD.schema), app_id="test", version=0)


RULES = """
channels:
  hook: {{type: webhook, url: "{url}/hook", retries: 2, timeout_s: 2}}
  chat: {{type: slack, url: "{url}/slack"}}
  mail: {{type: email, smtp_host: 127.0.0.1, smtp_port: {smtp}, to: [ops@validahub.test]}}
  {extra}
alerts:
  - name: high_error_rate
    query: SELECT marketplace, error_rate FROM marketplace_daily_metrics_gold WHERE date = current_date()
    condition: {{column: error_rate, op: ">", threshold: 0.1}}
    key: marketplace
    schedule: every 5m
    cooldown: 1h
    severity: critical
    channels: [{channels}]
"""


def rules(
    tmp_path: Path, receiver: Receiver, smtp: int, *, extra: str = "", channels: str = "hook, chat, mail"
) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(RULES.format(url=receiver.url, smtp=smtp, extra=extra, channels=channels))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def runner(path: Path, lake: Lake, clock: Clock) -> AlertRunner:
    return AlertRunner(load_config(path), DuckDBEngine(lake), lake, clock=clock)


def test_one_notification_per_channel_then_quiet_then_resolved(
    tmp_path: Path, lake: Lake, receiver: Receiver, mailbox: tuple[int, list[Any]]
) -> None:
    smtp, mails = mailbox
    path, clock = rules(tmp_path, receiver, smtp), Clock()
    gold_day(lake, {"shopee": 0.15, "magalu": 0.05})

    (outcome,) = runner(path, lake, clock).run_all()
    assert [(n.event, n.key) for n in outcome.notifications] == [("triggered", "shopee")]
    assert [b["key"] for b in receiver.on("/hook")] == ["shopee"] and receiver.on("/hook")[0]["value"] == 0.15
    assert len(receiver.on("/slack")) == 1 and "shopee" in receiver.on("/slack")[0]["text"]
    assert len(mails) == 1 and "high_error_rate TRIGGERED for shopee" in mails[0].content.decode()

    clock.now += timedelta(minutes=30)  # still high, within the cooldown: nothing more
    restarted = runner(path, lake, clock)  # a new process: the state comes back from alert_events
    assert restarted.run_all()[0].notifications == []
    assert (len(receiver.posts), len(mails)) == (2, 1)

    gold_day(lake, {"shopee": 0.04, "magalu": 0.05})
    clock.now += timedelta(minutes=5)
    (recovered,) = restarted.run_all()
    assert [(n.event, n.key) for n in recovered.notifications] == [("resolved", "shopee")]
    assert [b["event"] for b in receiver.on("/hook")] == ["triggered", "resolved"]
    assert len(mails) == 2

    events = pa.table(lake.open(ALERT_EVENTS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    shopee = sorted((e for e in events if e["key"] == "shopee"), key=lambda e: e["evaluated_at"])
    assert [(e["state"], e["notification"]) for e in shopee] == [
        ("triggered", "triggered"),
        ("triggered", None),
        ("ok", "resolved"),
    ]


def test_still_triggered_after_the_cooldown_notifies_again(
    tmp_path: Path, lake: Lake, receiver: Receiver, mailbox: tuple[int, list[Any]]
) -> None:
    path, clock = rules(tmp_path, receiver, mailbox[0], channels="hook"), Clock()
    gold_day(lake, {"shopee": 0.3})
    alerts = runner(path, lake, clock)
    alerts.run_all()
    clock.now += timedelta(minutes=61)
    assert [n.event for n in alerts.run_all()[0].notifications] == ["still_triggered"]


def test_a_receiver_that_is_down_is_retried_and_recorded_while_others_get_theirs(
    tmp_path: Path, lake: Lake, receiver: Receiver, mailbox: tuple[int, list[Any]]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    extra = f'dead: {{type: webhook, url: "{down}", retries: 3, timeout_s: 1}}'
    path = rules(tmp_path, receiver, mailbox[0], extra=extra, channels="dead, hook, mail")
    gold_day(lake, {"shopee": 0.2})
    (outcome,) = runner(path, lake, Clock()).run_all()
    assert len(outcome.notifications) == 1
    assert len(receiver.on("/hook")) == 1 and len(mailbox[1]) == 1
    (event,) = pa.table(lake.open(ALERT_EVENTS).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    results = dict(event["channel_results"])
    assert results["hook"] == "ok" and results["mail"] == "ok"
    assert "Connection refused" in results["dead"]


def test_the_seed_rules_are_the_default_and_valid(lake: Lake) -> None:
    gold_day(lake, {"shopee": 0.2})
    config = load_config(None)
    assert [a.name for a in config.alerts] == [
        "high_error_rate",
        "processing_delays",
        "reconciliation_imbalance",
    ]
    assert validate(config, DuckDBEngine(lake)) == []
    (high, slow, imbalance) = AlertRunner(config, DuckDBEngine(lake), lake).run_all()
    assert [(n.key, n.event) for n in high.notifications] == [("shopee", "triggered")]
    assert slow.notifications == []
    assert imbalance.notifications == []  # no reconciliation yet


def _reconciled(lake: Lake, *, at: datetime, imbalanced: bool) -> None:
    link = Link("gold", "a group", {}, {"n": 1}, (Equation("n = 1", 1, 2 if imbalanced else 1),))
    record(lake, Reconciliation(f"run-{at.isoformat()}", at, None, 0, [link]))


def test_the_default_rules_fire_on_the_latest_reconciliation_only(lake: Lake) -> None:
    """The reconciliation rule reads the newest run (written with the real clock: the rule's SQL asks the
    engine for current_date())."""
    now = datetime.now(UTC)
    _reconciled(lake, at=now - timedelta(minutes=2), imbalanced=False)
    _reconciled(lake, at=now - timedelta(minutes=1), imbalanced=True)
    config = load_config(None)
    runner = AlertRunner(config, DuckDBEngine(lake), lake)
    outcome = next(o for o in runner.run_all() if o.rule == "reconciliation_imbalance")
    assert [n.event for n in outcome.notifications] == ["triggered"]
    _reconciled(lake, at=now, imbalanced=False)
    outcome = next(o for o in runner.run_all() if o.rule == "reconciliation_imbalance")
    assert [n.event for n in outcome.notifications] == ["resolved"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alerts: [\n  - name: x\n    query: [unclosed\n", "line"),
        (
            "alerts:\n  - name: fast\n    query: SELECT 1\n    condition: {column: a, op: '=>', threshold: 1}\n",
            "alert 'fast': condition.op",
        ),
        (
            "alerts:\n  - name: when\n    query: SELECT 1 AS a\n    condition: {column: a, op: '>', threshold: 1}\n    schedule: sometimes\n",
            "alert 'when': schedule",
        ),
        (
            "alerts:\n  - name: where\n    query: SELECT 1 AS a\n    condition: {column: a, op: '>', threshold: 1}\n    channels: [pager]\n",
            "unknown channel pager",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_rule(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_validate_names_the_rule_with_bad_sql_or_columns(tmp_path: Path, lake: Lake, run_cli: Any) -> None:
    gold_day(lake, {"shopee": 0.2})
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "alerts:\n"
        "  - name: broken_sql\n    query: SELEC nonsense\n    condition: {column: a, op: '>', threshold: 1}\n"
        "  - name: wrong_column\n    query: SELECT marketplace, error_rate FROM marketplace_daily_metrics_gold\n"
        "    condition: {column: rate, op: '>', threshold: 1}\n    key: marketplace\n"
    )
    result = run_cli("--lake", lake.uri, "alerts", "validate", "--config", str(path))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any("broken_sql" in line and "not a SELECT" in line for line in lines)
    assert any("wrong_column" in line and "'rate' is not a column" in line for line in lines)
    assert "Traceback" not in result.stderr


FRESHNESS_RULE = """
alerts:
  - name: marketplace_silent
    query: >-
      SELECT marketplace, timestampdiff(MINUTE, max(created_at), current_timestamp()) AS minutes_silent
      FROM validation_results_silver WHERE created_date >= date_sub(current_date(), 2) GROUP BY marketplace
    condition: {column: minutes_silent, op: ">", threshold: 30}
    key: marketplace
    schedule: every 1m
"""


def test_a_freshness_rule_flags_a_marketplace_gone_quiet(tmp_path: Path, lake: Lake) -> None:
    from conftest import make_event, write_lines
    from vhlake.ingest.bronze import BronzeIngestor
    from vhlake.pipeline.runner import Pipeline

    now = datetime.now(UTC)
    events = [
        make_event(1, marketplace="shopee", timestamp=(now - timedelta(minutes=5)).isoformat()),
        make_event(2, marketplace="magalu", timestamp=(now - timedelta(minutes=90)).isoformat()),
    ]
    BronzeIngestor(lake, source_system="t", batch_bytes=1 << 20).ingest_file(
        write_lines(tmp_path / "e.jsonl", events)
    )
    Pipeline(lake).run()
    path = tmp_path / "alerts.yaml"
    path.write_text(FRESHNESS_RULE)
    assert validate(load_config(path), DuckDBEngine(lake)) == []
    (outcome,) = runner(path, lake, Clock()).run_all()
    assert [(n.key, n.event) for n in outcome.notifications] == [("magalu", "triggered")]
