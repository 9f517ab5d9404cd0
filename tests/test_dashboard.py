"""The dashboard in a real browser (Debian's chromium driven by Playwright) on a demo lake: the KPI numbers
equal gold's, choosing another marketplace updates the tiles and the charts, the page runs under its
Content-Security-Policy without a violation, and the key is in no global. Screenshots go to
tests/artifacts/ (not committed)."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import uvicorn
from fastapi import FastAPI

from conftest import api_deps_for, build_analytics_lake, engagement_gold, plant_restatements, restated_days
from forecast_lake import TODAY, build_forecast_lake, expected_forecast, table_rows
from servers import free_port
from vhlake.api.app import ApiDeps, install_api
from vhlake.dashboard import STATIC, mount_dashboard
from vhlake.lake.delta import Lake
from vhlake.lake.tables import ERROR_TYPE_GOLD, GOLD, SILVER, USER_ENGAGEMENT_GOLD

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
STALE_BY = timedelta(days=40, hours=4)  # the injected clock: the feed stopped this long ago
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Lake]]:
    assert (STATIC / "vendor" / "echarts.min.js").exists(), "ECharts is kept in the repository"
    root = tmp_path_factory.mktemp("dashboard")
    with served_lake(build_analytics_lake(root, jobs=3_000, seed=3), root) as site:
        yield site


@contextmanager
def served_lake(lake: Lake, root: Path) -> Iterator[tuple[str, str, Lake]]:
    """The API and the dashboard over ``lake`` on a free port, with a read key, under a clock stopped
    STALE_BY after the lake's newest event."""
    now = newest_event(lake) + STALE_BY
    deps = api_deps_for(lake, root, clock=lambda: now)
    _, key = deps.keys.create("read")
    with served(deps) as url:
        yield url, key, lake


@contextmanager
def served(deps: ApiDeps) -> Iterator[str]:
    """The API and the dashboard over ``deps``, served on a free port until the block ends."""
    app = FastAPI()
    install_api(app, deps)
    mount_dashboard(app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        deps.audit.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), "install Debian's chromium (apt-get install chromium), as .ci/run does"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def newest_event(lake: Lake, marketplace: str | None = None) -> datetime:
    silver = pa.table(lake.open(SILVER).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    return max(  # type: ignore[no-any-return]
        j["completed_at"] or j["created_at"] for j in silver if marketplace in (None, j["marketplace"])
    )


def freshness_text(lake: Lake, marketplace: str) -> str:
    """What the page must say for ``marketplace`` under the injected clock (its lag is weeks: in days)."""
    newest = newest_event(lake, marketplace)
    lag_days = (newest_event(lake) + STALE_BY - newest).total_seconds() / 86400
    return f"data up to {newest:%Y-%m-%d %H:%M:%S} UTC ({lag_days:.1f} days behind now)"


def gold_total(lake: Lake, marketplace: str, start: str, end: str) -> int:
    gold = pa.table(lake.open(GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return sum(
        g["total_validations"] for g in gold if g["marketplace"] == marketplace and first <= g["date"] <= last
    )


CSP_WATCH = """window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(
  `${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


def wait_until(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Poll ``expression`` from outside the page: Playwright's wait_for_function evaluates a string in the
    page, which the policy (no 'unsafe-eval') rightly forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def shown(page: Any) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate("window.vhlake.shown")
    return value


def watched_page(browser: Any, *, height: int) -> tuple[Any, list[str]]:
    """A 1400 px wide page whose script errors are collected and whose policy violations are watched."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(CSP_WATCH)
    return page, errors


def test_kpis_equal_gold_and_follow_the_marketplace(site: tuple[str, str, Lake], browser: Any) -> None:
    url, key, lake = site
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = watched_page(browser, height=1000)
    page.goto(f"{url}/?view=marketplace#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown")
    first = shown(page)
    expected = gold_total(lake, first["marketplace"], first["start"], first["end"])
    assert expected > 0
    assert page.text_content('[data-kpi="validations"]') == f"{expected:,}"
    volume = page.evaluate("window.vhlake.charts['chart-volume'].getOption().series[0].data")
    assert sum(volume) == expected
    assert page.text_content("#freshness") == freshness_text(lake, first["marketplace"])
    assert key not in page.url  # the key does not stay in the address bar
    assert page.evaluate("typeof state") == "undefined"  # the app's state is not a global...
    assert key not in page.evaluate("JSON.stringify(window.vhlake, (k, v) => k === 'charts' ? undefined : v)")
    box = page.locator("#chart-volume").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a tooltip renders HTML
    wait_until(page, "document.querySelector('#chart-volume').innerText.includes('validations')")
    page.screenshot(path=str(ARTIFACTS / "dashboard-first.png"), full_page=True)

    options = page.eval_on_selector_all("#marketplace option", "els => els.map(e => e.value)")
    other = next(m for m in options if m != first["marketplace"])
    page.select_option("#marketplace", other)
    wait_until(page, f"window.vhlake.shown.marketplace === {other!r}")
    second = shown(page)
    expected_other = gold_total(lake, other, second["start"], second["end"])
    assert page.text_content('[data-kpi="validations"]') == f"{expected_other:,}"
    assert (
        sum(page.evaluate("window.vhlake.charts['chart-volume'].getOption().series[0].data"))
        == expected_other
    )
    assert page.text_content("#freshness") == freshness_text(lake, other)
    assert page.locator("#categories tbody tr").count() > 0
    assert page.locator("#alerts tbody tr").count() == 1  # no rule evaluated on this lake yet
    page.screenshot(path=str(ARTIFACTS / "dashboard-other-marketplace.png"), full_page=True)
    assert errors == []
    assert page.evaluate("window.__violations") == []  # everything ran under the policy


def test_without_a_key_the_page_asks_for_one(site: tuple[str, str, Lake], browser: Any) -> None:
    url, key, _ = site
    page = browser.new_page()
    page.goto(f"{url}/?view=marketplace")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#key", "vhk_bad_key")
    page.press("#key", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "invalid or revoked" in (page.text_content("#error") or "")
    page.fill("#key", key)
    page.press("#key", "Enter")
    wait_until(page, "window.vhlake.shown")
    assert page.text_content('[data-kpi="validations"]') != "–"


def error_types_of_gold(
    lake: Lake, marketplace: str, start: str, end: str, category: str | None
) -> list[Any]:
    """The panel's ranking summed in Python from error_type_daily_gold's rows: (type, occurrences, jobs,
    failed jobs), most occurrences first; a day's failed jobs are its jobs times its share."""
    rows = pa.table(lake.open(ERROR_TYPE_GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        if (
            r["marketplace"] == marketplace
            and first <= r["date"] <= last
            and category in (None, r["category"])
        ):
            total = totals[r["error_type"]]
            total[0] += r["occurrences"]
            total[1] += r["jobs"]
            total[2] += round(r["jobs"] * r["share_of_failed_jobs"])
    return sorted(([e, *t] for e, t in totals.items()), key=lambda t: (-t[1], t[0]))


def api_errors(url: str, key: str, marketplace: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(
        f"{url}/v1/marketplaces/{marketplace}/errors?{query}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def check_error_panel(page: Any, lake: Lake, url: str, key: str, category: str | None) -> None:
    """The bars, the table and the trend show what gold holds for the period, as the API gives it."""
    errors = page.evaluate("window.vhlake.errors")
    expected = error_types_of_gold(lake, errors["marketplace"], errors["start"], errors["end"], category)
    assert len(expected) >= 3, "the sample should report several error types"
    bars = page.evaluate("window.vhlake.charts['chart-error-types'].getOption()")
    assert bars["yAxis"][0]["data"] == [e[0] for e in expected[:10]]
    assert bars["series"][0]["data"] == [e[1] for e in expected[:10]]
    cells = page.eval_on_selector_all(
        "#error-types tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert cells == [
        [e, f"{occurrences:,}", f"{jobs:,}", f"{failed:,}", f"{100 * failed / jobs:.1f} %"]
        for e, occurrences, jobs, failed in expected[:15]
    ]
    days = (date.fromisoformat(errors["end"]) - date.fromisoformat(errors["start"])).days + 1
    params = {"days": days, "end": errors["end"], "top": 5} | ({"category": category} if category else {})
    answer = api_errors(url, key, errors["marketplace"], **params)
    assert errors["error_types"] == answer["error_types"]
    trend = page.evaluate("window.vhlake.charts['chart-error-trend'].getOption().series")
    assert [s["name"] for s in trend] == [e[0] for e in expected[:5]]
    for series in trend:
        shown_total = sum(series["data"])
        assert shown_total == sum(
            d["occurrences"] for d in answer["trend"] if d["error_type"] == series["name"]
        )
        assert shown_total == next(e[1] for e in expected if e[0] == series["name"])


def test_the_error_panel_ranks_gold_error_types_and_follows_the_category(
    site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, lake = site
    page, errors = watched_page(browser, height=1200)
    page.goto(f"{url}/?view=marketplace#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.errors")
    assert page.evaluate("window.vhlake.errors.marketplace") == shown(page)["marketplace"]
    check_error_panel(page, lake, url, key, None)

    categories = page.eval_on_selector_all("#error-category option", "els => els.map(e => e.value)")
    assert categories[0] == "" and len(categories) > 2
    category = categories[1]
    page.select_option("#error-category", category)
    wait_until(page, f"window.vhlake.errors.category === {category!r}")
    check_error_panel(page, lake, url, key, category)
    page.locator("section.errors").screenshot(path=str(ARTIFACTS / "dashboard-error-types.png"))
    assert errors == []
    assert page.evaluate("window.__violations") == []


def api_get(url: str, key: str, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{url}/v1/{path}?{query}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def card_numbers(page: Any) -> dict[str, dict[str, str]]:
    cards: dict[str, dict[str, str]] = page.eval_on_selector_all(
        ".card",
        """cards => Object.fromEntries(cards.map(c => [c.dataset.marketplace, Object.fromEntries(
            [...c.querySelectorAll("dd")].map(dd => [dd.dataset.measure, dd.querySelector(".value").textContent]))]))""",
    )
    return cards


def formatted(answer: dict[str, Any]) -> dict[str, str]:
    """The four numbers of a card as the page should write them, from the API's answer."""
    rate, p95 = answer["error_rate"]["current"], answer["p95_processing_time"]["current"]
    return {
        "validations": f"{round(answer['validations']['current']):,}",
        "error_rate": "–" if rate is None else f"{100 * rate:.1f} %",
        "p95_processing_time": "–" if p95 is None else f"{round(p95):,} ms",
        "active_sellers": f"{round(answer['active_sellers']['current']):,}",
    }


def test_the_overview_cards_equal_the_api_and_the_url_reopens_the_view(
    site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, lake = site
    last = max(m["last_date"] for m in api_get(url, key, "marketplaces"))
    page, errors = watched_page(browser, height=1000)
    page.goto(f"{url}/?view=overview&days=14&end={last}#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.overview")
    answer = api_get(url, key, "overview", days=14, end=last)
    assert len(answer["marketplaces"]) >= 2
    assert [c.get_attribute("data-marketplace") for c in page.query_selector_all(".card")] == [
        m["marketplace"] for m in answer["marketplaces"]
    ]
    assert card_numbers(page) == {m["marketplace"]: formatted(m) for m in answer["marketplaces"]}
    assert sum(m["validations"]["current"] for m in answer["marketplaces"]) == sum(
        gold_total(lake, m["marketplace"], answer["start_date"], answer["end_date"])
        for m in answer["marketplaces"]
    )
    assert key not in page.url and f"end={last}" in page.url and "days=14" in page.url
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    second = answer["marketplaces"][1]["marketplace"]
    page.click(f'.card[data-marketplace="{second}"]')
    wait_until(page, f"window.vhlake.shown && window.vhlake.shown.marketplace === {second!r}")
    assert page.is_hidden("#overview") and page.is_visible("#board")
    link = page.url
    assert f"marketplace={second}" in link and f"end={last}" in link
    again = browser.new_page(viewport={"width": 1400, "height": 1000})
    again.goto(f"{link}#key={key}")  # a new context: the key from the first tab's session is not there
    wait_until(again, "window.vhlake && window.vhlake.shown")
    assert shown(again)["marketplace"] == second
    assert (shown(again)["start"], shown(again)["end"]) == (shown(page)["start"], shown(page)["end"])
    assert again.is_hidden("#overview")
    page.go_back()
    wait_until(page, "window.vhlake.view === 'overview'")
    assert page.is_visible("#overview")
    assert errors == []
    assert page.evaluate("window.__violations") == []


def test_the_overview_fits_390_px_and_marks_today_partial(site: tuple[str, str, Lake], browser: Any) -> None:
    url, key, _ = site
    last = max(m["last_date"] for m in api_get(url, key, "marketplaces"))
    real = api_get(url, key, "overview", days=7, end=last)
    real["partial_date"] = real["end_date"]  # as if the period ended today: the last point is partial
    for card in real["marketplaces"]:
        card["sparkline"][-1]["partial"] = True
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.route(
        "**/v1/overview?*",
        lambda route: route.fulfill(
            json={"data": real, "freshness": {"newest_event_at": None, "lag_seconds": None}}
        ),
    )
    page.goto(f"{url}/?view=overview&days=7&end={last}#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.overview")
    cards = len(real["marketplaces"])
    assert page.locator(".card").count() == cards
    assert page.locator(".card svg polyline.partial").count() == cards  # dashed, not a drop
    assert page.locator(".card svg circle.partial-point").count() == cards
    assert "is partial" in (page.text_content("#overview-note") or "")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = [page.locator(".card").nth(i).bounding_box() for i in range(cards)]
    assert len({round(b["x"]) for b in boxes}) == 1  # one column
    assert all(b["x"] + b["width"] <= 390 for b in boxes)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview-390.png"), full_page=True)


def test_the_page_opens_on_the_overview_and_the_marketplace_view_fits_390_px(
    site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, _ = site
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{url}/#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.overview")
    assert page.evaluate("window.vhlake.view") == "overview" and "view=overview" in page.url
    assert page.is_visible("#overview") and page.is_hidden("#board")
    # the clock is 40 days past the data: the last 7 days are empty, and the page points at the newest data
    last = max(m["last_date"] for m in api_get(url, key, "marketplaces"))
    assert page.locator(".card").count() == 0
    assert f"end={last}" in (page.get_attribute("#overview-note a", "href") or "")
    page.click("#tab-marketplace")
    wait_until(page, "window.vhlake.shown")
    assert "view=marketplace" in page.url and page.is_visible("#board")
    wait_until(page, f"document.querySelectorAll('#board button.csv').length === {TABLES}")
    page.screenshot(path=str(ARTIFACTS / "dashboard-marketplace-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for button in page.locator(
        "#board button.csv"
    ).all():  # every table's CSV button is on screen, none cut off
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Lake]]:
    """The dashboard over a lake forecast and scored by the ML jobs, its clock at 15:00 on gold's last
    day: that day is today, partial."""
    root = tmp_path_factory.mktemp("forecast-dashboard")
    lake = build_forecast_lake(root)
    now = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=15)
    deps = api_deps_for(lake, root, clock=lambda: now)
    _, key = deps.keys.create("read")
    with served(deps) as url:
        yield url, key, lake


@pytest.fixture(scope="module")
def quality_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Lake]]:
    """A lake of its own with quarantined and rejected inputs (an XSS-looking one among them): the replay
    changes it. Keys: an unrestricted admin and a reader."""
    from test_quality_rejections import build_lake

    root = tmp_path_factory.mktemp("dashboard-quality")
    lake = build_lake(root)
    deps = api_deps_for(lake, root, clock=lambda: newest_event(lake) + STALE_BY)
    keys = {"admin": deps.keys.create("admin")[1], "reader": deps.keys.create("read")[1]}
    with served(deps) as url:
        yield url, keys, lake


def chart_option(page: Any, chart: str) -> dict[str, Any]:
    option: dict[str, Any] = page.evaluate(
        f"echarts.getInstanceByDom(document.getElementById({chart!r})).getOption()"
    )
    return option


def by_id(option: dict[str, Any], series_id: str) -> list[Any]:
    return next(s["data"] for s in option["series"] if s.get("id") == series_id)


def test_the_marketplace_charts_draw_the_forecast_band_the_anomalies_and_today_partial(
    live_site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, lake = live_site
    first = TODAY - timedelta(days=29)
    page, errors = watched_page(browser, height=1100)
    page.goto(f"{url}/?view=marketplace&marketplace=shopee&start={first}&end={TODAY}#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.predictions")
    volume = chart_option(page, "chart-volume")
    axis = volume["xAxis"][0]["data"]
    # the period's days, then the 7 forecast days after today (gold has nothing newer)
    assert axis[:30] == [str(first + timedelta(days=i)) for i in range(30)]
    assert axis[30:] == [str(TODAY + timedelta(days=i)) for i in range(1, 8)]
    forecast = {f["date"]: f for f in expected_forecast(lake, "shopee", first, TODAY + timedelta(days=7))}
    assert len(forecast) > 7  # the earlier run's week before today, and the later run's days
    lower, band, mean = (by_id(volume, s) for s in ("forecast-lower", "forecast-band", "forecast"))
    for i, day in enumerate(axis):
        if day not in forecast:
            assert lower[i] is None and mean[i] is None
            continue
        assert lower[i] == forecast[day]["lower_bound"]
        assert lower[i] + band[i] == pytest.approx(forecast[day]["upper_bound"].expected)
        assert mean[i] == forecast[day]["predicted_validations"]
    errors_option = chart_option(page, "chart-errors")
    rates = by_id(errors_option, "forecast")
    assert [rates[errors_option["xAxis"][0]["data"].index(d)] for d in forecast] == [
        f["predicted_error_rate"] for f in forecast.values()
    ]

    flagged = [
        a for a in table_rows(lake, "anomalies") if a["marketplace"] == "shopee" and a["job_id"] is None
    ]
    for chart, metric in (
        ("chart-volume", "validations"),
        ("chart-errors", "error_rate"),
        ("chart-times", "p95_processing_time"),
    ):
        expected = sorted(
            [str(a["date"]), a["observed"], a["z_score"]]
            for a in flagged
            if a["metric"] == metric and a["date"] >= first
        )
        assert expected, f"the planted {metric} anomaly should be flagged"
        assert sorted(by_id(chart_option(page, chart), "anomalies")) == expected

    today = axis.index(str(TODAY))
    bar = volume["series"][0]["data"][today]
    assert bar["partial"] is True and bar["itemStyle"]["opacity"] < 1
    assert bar["value"] == gold_total(lake, "shopee", str(TODAY), str(TODAY))  # a morning's jobs, not a drop
    assert all(isinstance(v, int) for v in volume["series"][0]["data"][:today])
    for chart, name in (("chart-errors", "error rate"), ("chart-times", "p95")):
        option = chart_option(page, chart)
        solid = next(
            s for s in option["series"] if s["name"] == name and not s.get("id", "").endswith(":partial")
        )
        dashed = by_id(option, f"{name}:partial")
        assert solid["data"][today] is None and solid["data"][today - 1] is not None
        assert [i for i, v in enumerate(dashed) if v is not None] == [today - 1, today]
    page.evaluate(
        f"window.vhlake.charts['chart-volume'].dispatchAction({{type: 'showTip', seriesIndex: 0, dataIndex: {today}}})"
    )
    wait_until(page, "document.querySelector('#chart-volume').innerText.includes('partial')")
    assert "forecast" in page.inner_text("#chart-volume")
    note = page.text_content("#predictions-note") or ""
    assert f"Today ({TODAY}) is partial" in note and "Red pins" in note
    page.screenshot(path=str(ARTIFACTS / "dashboard-forecast-anomalies.png"), full_page=True)
    assert errors == []


def rejection_cells(page: Any) -> list[list[str]]:
    cells: list[list[str]] = page.eval_on_selector_all(
        "#rejections tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )
    return cells


def test_the_quality_view_equals_the_tables_shows_examples_as_text_and_replays(
    quality_site: tuple[str, dict[str, str], Lake], browser: Any
) -> None:
    from test_quality_rejections import XSS, expected_days, newest_day

    url, keys, lake = quality_site
    end = newest_day(lake)
    page, errors = watched_page(browser, height=1100)
    page.goto(f"{url}/?view=quality&days=30&end={end}#key={keys['admin']}")
    wait_until(page, "window.vhlake && window.vhlake.quality")
    assert page.is_visible("#quality-view") and page.is_hidden("#board") and page.is_hidden("#overview")
    assert "view=quality" in page.url and f"end={end}" in page.url and keys["admin"] not in page.url
    expected = expected_days(lake, None)
    answer = api_get(url, keys["admin"], "quality/rejections", days=30, end=end)
    assert page.evaluate("window.vhlake.quality.reasons") == answer["reasons"]

    # the chart: one series per (source, reason), its bars per day equal the tables summed in Python
    option = page.evaluate("window.vhlake.charts['chart-rejections'].getOption()")
    dates = option["xAxis"][0]["data"]
    label = {"quarantine": "quarantined", "rejected": "rejected"}
    source_of = {shown: source for source, shown in label.items()}
    drawn: dict[tuple[str, str, str], int] = {}
    for series in option["series"]:
        shown_source, reason = series["name"].split(": ", 1)
        for day, value in zip(dates, series["data"], strict=True):
            if value:
                drawn[(day, source_of[shown_source], reason)] = value
    assert drawn == dict(expected) and {s["stack"] for s in option["series"]} == {"quarantine", "rejected"}

    # the table: a row per reason, most events first, examples as text (no element made of them)
    cells = rejection_cells(page)
    assert [row[:4] for row in cells] == [
        [label[r["source"]], r["reason"], f"{r['events']:,}", r["last_seen"].replace("T", " ")[:19]]
        for r in answer["reasons"]
    ]
    xss_row = next(row for row in cells if XSS in row[4])
    assert xss_row[1] == "unknown_event_type"
    assert (
        page.locator("#rejections img").count() == 0 and page.locator("#rejections td.example *").count() == 0
    )
    quarantine_reasons = [r["reason"] for r in answer["reasons"] if r["source"] == "quarantine"]
    assert page.locator("#rejections button.replay").count() == len(quarantine_reasons)
    page.screenshot(path=str(ARTIFACTS / "dashboard-quality.png"), full_page=True)
    name, rows = download_csv(page, "rejections")
    assert name == f"vhlake-rejections-{answer['start_date']}_{answer['end_date']}.csv"
    columns = ["source", "reason", "events", "last_seen", "example", "example_truncated"]
    assert rows[0] == columns and len(rows) == 1 + len(answer["reasons"])
    for row, reason in zip(rows[1:], answer["reasons"], strict=True):
        assert row[:3] == [reason["source"], reason["reason"], str(reason["events"])]
        assert row[4] == spreadsheet_safe(reason["example"])  # the example as received, never run

    page.click('#rejections tr[data-reason="known_marketplace"] button.replay')
    wait_until(page, "document.querySelector('#replay-status').textContent.includes('replayed out')")
    assert (
        page.text_content("#replay-status") == "2 events of known_marketplace replayed out of the quarantine."
    )
    assert page.evaluate("window.vhlake.quality.replayed") == {"reason": "known_marketplace", "replayed": 2}
    assert "known_marketplace" not in [row[1] for row in rejection_cells(page)]
    assert [row[1] for row in rejection_cells(page)] == [
        r["reason"] for r in api_get(url, keys["admin"], "quality/rejections", days=30, end=end)["reasons"]
    ]
    page.screenshot(path=str(ARTIFACTS / "dashboard-quality-replayed.png"), full_page=True)
    assert errors == []


# -- every table downloads the data behind it as CSV ---------------------------------------------------

TABLES = 6  # the marketplace view's: error types, engagement, categories, last hour, alerts, data quality
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """What a CSV cell must hold for ``text``: an apostrophe first when a spreadsheet would run it."""
    return "'" + text if text.startswith(FORMULA_START) else text


def download_csv(page: Any, table: str) -> tuple[str, list[list[str]]]:
    """Click ``table``'s CSV button and read the file: its name and its rows, header first."""
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download {table.replace('-', ' ')} as CSV").click()
    download = info.value
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\r\n")  # BOM, RFC 4180 line ends
    with io.StringIO(raw.decode("utf-8-sig"), newline="") as text:
        return download.suggested_filename, list(csv.reader(text))


def as_api(cell: str, like: Any) -> Any:
    """A CSV cell read back as the kind of the API's value ``like`` (an absent value is an empty cell)."""
    if cell == "":
        return None
    if isinstance(like, int | float) and not isinstance(like, bool):
        return float(cell)
    return cell


def check_csv_equals_api(rows: list[list[str]], columns: list[str], records: list[dict[str, Any]]) -> None:
    """Header, then every record, each value unformatted (text under the apostrophe rule)."""
    assert rows[0] == columns
    expected = [[spreadsheet_safe(r[c]) if isinstance(r[c], str) else r[c] for c in columns] for r in records]
    assert [
        [as_api(cell, r[c]) for cell, c in zip(row, columns, strict=True)]
        for row, r in zip(rows[1:], records, strict=True)
    ] == expected
    assert len(rows) == 1 + len(records)


def categories_of_gold(lake: Lake, marketplace: str, start: str, end: str) -> list[list[Any]]:
    """The categories table summed in Python from gold: category, validations, failed, rows processed,
    busiest first."""
    gold = pa.table(lake.open(GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for g in gold:
        if g["marketplace"] == marketplace and first <= g["date"] <= last:
            total = totals[g["category"]]
            total[0] += g["total_validations"]
            total[1] += g["failed_validations"]
            total[2] += g["total_rows_processed"]
    return sorted(([c, *t] for c, t in totals.items()), key=lambda t: (-t[1], t[0]))


CATEGORY_COLUMNS = [
    "category",
    "total_validations",
    "failed_validations",
    "error_rate",
    "total_rows_processed",
    "avg_processing_time_ms",
]
ERROR_TYPE_COLUMNS = ["error_type", "occurrences", "jobs", "failed_jobs", "share_of_failed_jobs"]


def test_every_table_downloads_all_its_rows_as_csv(site: tuple[str, str, Lake], browser: Any) -> None:
    url, key, lake = site
    page, errors = watched_page(browser, height=1400)
    page.goto(f"{url}/?view=marketplace#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.errors")
    wait_until(
        page,
        "document.querySelectorAll('#board button.csv').length === document.querySelectorAll('#board table').length",
    )
    assert page.locator("#board table").count() == TABLES
    m, start, end = (shown(page)[k] for k in ("marketplace", "start", "end"))

    name, rows = download_csv(page, "categories")
    assert name == f"vhlake-categories-{m}-{start}_{end}.csv"
    expected = categories_of_gold(lake, m, start, end)
    cut = page.eval_on_selector_all("#categories tbody tr", "trs => trs.map(tr => tr.cells[0].textContent)")
    assert len(cut) == 16 and cut[-1] == f"… {len(expected) - 15} more"  # the table shows 15 of them
    assert [[r[0], int(r[1]), int(r[2]), int(r[4])] for r in rows[1:]] == expected
    for row, (_, total, failed, _) in zip(rows[1:], expected, strict=True):
        assert float(row[3]) == pytest.approx(failed / total, rel=1e-12)  # a fraction, not "12.3 %"
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days + 1
    performance = api_get(url, key, f"marketplaces/{m}/performance", days=days, end=end)
    check_csv_equals_api(rows, CATEGORY_COLUMNS, performance["categories"])

    name, rows = download_csv(page, "error-types")
    errors_shown = page.evaluate("window.vhlake.errors")
    assert name == f"vhlake-error-types-{m}-{errors_shown['start']}_{errors_shown['end']}.csv"
    ranked = error_types_of_gold(lake, m, errors_shown["start"], errors_shown["end"], None)
    assert [[r[0], int(r[1]), int(r[2]), int(r[3])] for r in rows[1:]] == ranked
    answer = api_errors(url, key, m, days=days, end=end, top=5)
    check_csv_equals_api(rows, ERROR_TYPE_COLUMNS, answer["error_types"])

    _, rows = download_csv(page, "quality")
    columns = ["metric", "dimension", "latest_value", "measured_at", "batches"]
    check_csv_equals_api(rows, columns, api_get(url, key, "quality"))
    name, rows = download_csv(page, "alerts")
    assert name.startswith("vhlake-alerts-") and rows == [  # no rule evaluated: the header, no placeholder
        ["rule", "key", "state", "value", "threshold", "severity", "evaluated_at", "last_notified_at"]
    ]
    name, rows = download_csv(page, "realtime")
    as_of = api_get(url, key, "stats/realtime")["as_of"]
    assert name == f"vhlake-last-60-minutes-to-{as_of[:10]}T{as_of[11:13]}-{as_of[14:16]}Z.csv"
    assert len(rows) == 1 and rows[0][0] == "marketplace"  # the clock is weeks past the data: none
    page.locator("section.tables").screenshot(path=str(ARTIFACTS / "dashboard-csv-buttons.png"))
    assert errors == []
    assert page.evaluate("window.__violations") == []


def test_without_predictions_the_charts_are_as_before_with_a_note(
    site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, _ = site
    page, errors = watched_page(browser, height=1000)
    page.goto(f"{url}/?view=marketplace#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.predictions")
    for chart in ("chart-volume", "chart-errors", "chart-times"):
        ids = [s.get("id", "") for s in chart_option(page, chart)["series"]]
        assert not any(i.startswith(("forecast", "anomalies")) or i.endswith(":partial") for i in ids), chart
    assert "No forecast or anomaly scores" in (page.text_content("#predictions-note") or "")
    assert errors == []


def test_a_reader_sees_the_quality_view_without_replay_and_it_fits_390_px(
    quality_site: tuple[str, dict[str, str], Lake], browser: Any
) -> None:
    from test_quality_rejections import newest_day

    url, keys, lake = quality_site
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{url}/?view=overview#key={keys['reader']}")
    wait_until(page, "window.vhlake && window.vhlake.overview")
    page.click("#tab-quality")
    wait_until(page, "window.vhlake.quality")
    assert "view=quality" in page.url and page.is_visible("#chart-rejections")
    assert page.locator("#rejections tbody tr").count() > 0
    assert page.locator("#rejections button").count() == 0 and page.is_hidden("#replay-column")
    assert page.evaluate("window.vhlake.quality.can_replay") is False
    end = newest_day(lake)
    page.goto(f"{url}/?view=quality&days=30&end={end}")  # the key stays in the session
    wait_until(page, f"window.vhlake && window.vhlake.quality && window.vhlake.quality.end_date === {end!r}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "dashboard-quality-390.png"), full_page=True)


# Names a spreadsheet would run, or that break a naive CSV writer, put into the lake's events.
HOSTILE = {
    "categoria_01": '=HYPERLINK("http://evil.example/?x=1,2","click")\r\nnext',
    "categoria_02": 'commas, "quotes"\nand a newline',
    "missing_sku": '@SUM(1+1)*cmd|" /C calc"!A0',
    "invalid_price": '+"price", wrong\r',
}


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Lake]]:
    from vhlake.ingest.bronze import BronzeIngestor
    from vhlake.pipeline.runner import Pipeline
    from vhlake.samples import SampleSpec, generate_lines

    root = tmp_path_factory.mktemp("hostile")
    events = []
    for line in generate_lines(SampleSpec(jobs=800, seed=11))["line"].to_pylist():
        event = json.loads(line)
        event["category"] = HOSTILE.get(event["category"], event["category"])
        payload = event["payload"]
        if "error_types" in payload:
            payload["error_types"] = {HOSTILE.get(e, e): n for e, n in payload["error_types"].items()}
        events.append(json.dumps(event))
    feed = root / "events.jsonl"
    feed.write_text("\n".join(events) + "\n")
    lake = Lake(str(root / "lake"))
    BronzeIngestor(lake, source_system="test", batch_bytes=1 << 20).ingest_file(feed)
    Pipeline(lake).run()
    with served_lake(lake, root) as site:
        yield site


def test_hostile_names_download_as_their_text_and_never_as_formulas(
    hostile_site: tuple[str, str, Lake], browser: Any
) -> None:
    url, key, _ = hostile_site
    alert = {  # a negative value is a number, not a formula; a key that looks like one is text
        "rule": "=error_rate_jump",
        "key": "-1+2",
        "state": "triggered",
        "value": -0.25,
        "threshold": 0.1,
        "severity": "warning",
        "evaluated_at": "2026-11-27T10:00:00Z",
        "last_notified_at": None,
    }
    page, errors = watched_page(browser, height=1400)
    page.route(
        "**/v1/alerts*",
        lambda route: route.fulfill(
            json={"data": [alert], "freshness": {"newest_event_at": None, "lag_seconds": None}}
        ),
    )
    page.goto(f"{url}/?view=marketplace#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.errors")
    wait_until(page, f"document.querySelectorAll('#board button.csv').length === {TABLES}")

    _, rows = download_csv(page, "categories")
    categories = [r[0] for r in rows[1:]]
    for original in ("categoria_01", "categoria_02"):
        assert spreadsheet_safe(HOSTILE[original]) in categories
    assert "'" + HOSTILE["categoria_01"] in categories  # starts with "=": an apostrophe first
    assert HOSTILE["categoria_02"] in categories  # nothing to disarm: the text unchanged
    _, rows = download_csv(page, "error-types")
    error_types = {r[0] for r in rows[1:]}
    assert {"'" + HOSTILE["missing_sku"], "'" + HOSTILE["invalid_price"]} <= error_types
    _, rows = download_csv(page, "alerts")
    assert rows[1][:4] == ["'=error_rate_jump", "'-1+2", "triggered", "-0.25"]

    page.select_option("#error-category", HOSTILE["categoria_01"])
    wait_until(page, "window.vhlake.errors.category !== null")
    name, rows = download_csv(page, "error-types")
    assert re.fullmatch(r"vhlake-error-types-[\w.-]+\.csv", name)  # the category's text made file-safe
    assert len(rows) > 1
    assert errors == []
    assert page.evaluate("window.__violations") == []


# -- the engagement panel, over user_engagement_daily_gold computed from the lake's silver ---------------


@pytest.fixture(scope="module")
def engagement_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Lake, date]]:
    """A lake whose engagement gold the pipeline wrote (checked against its silver), its clock at 15:00 on silver's newest
    day: that day is today, partial."""
    root = tmp_path_factory.mktemp("engagement-dashboard")
    lake = build_analytics_lake(root, jobs=1_500, seed=7)
    silver = pa.table(lake.open(SILVER).to_pyarrow_table())  # type: ignore[union-attr]
    today: date = max(silver["created_date"].to_pylist())
    now = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=15)
    engagement_gold(lake)
    deps = api_deps_for(lake, root, clock=lambda: now)
    _, key = deps.keys.create("read")
    with served(deps) as url:
        yield url, key, lake, today


def engagement_of(lake: Lake, first: date, last: date) -> dict[str, list[dict[str, Any]]]:
    """The table's rows per marketplace in [first, last], oldest first, read with pyarrow."""
    table = pa.table(lake.open(USER_ENGAGEMENT_GOLD).to_pyarrow_table())  # type: ignore[union-attr]
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(table.to_pylist(), key=lambda r: r["date"]):
        if first <= r["date"] <= last:
            rows[r["marketplace"]].append(r)
    return rows


def whole(option: dict[str, Any], name: str) -> list[Any]:
    """A line as drawn in two parts (solid up to yesterday, dashed to today) put back together."""
    solid = next(
        s for s in option["series"] if s["name"] == name and not s.get("id", "").endswith(":partial")
    )
    dashed = by_id(option, f"{name}:partial")
    return [d if v is None else v for v, d in zip(solid["data"], dashed, strict=True)]


def test_the_engagement_panel_equals_the_table_with_today_partial(
    engagement_site: tuple[str, str, Lake, date], browser: Any
) -> None:
    url, key, lake, today = engagement_site
    first = today - timedelta(days=29)
    per_marketplace = engagement_of(lake, first, today)
    m = next(m for m, rows in sorted(per_marketplace.items()) if rows[-1]["date"] == today and len(rows) > 20)
    rows = per_marketplace[m]
    page, errors = watched_page(browser, height=1600)
    page.goto(f"{url}/?view=marketplace&marketplace={m}&start={first}&end={today}#key={key}")
    wait_until(
        page, f"window.vhlake && window.vhlake.engagement && window.vhlake.engagement.marketplace === {m!r}"
    )
    assert page.evaluate("window.vhlake.engagement.partial") == str(today)

    lines = chart_option(page, "chart-active-users")
    dates = [str(r["date"]) for r in rows]
    assert lines["xAxis"][0]["data"] == dates
    at = dates.index(str(today))
    for name, field in (
        ("that day", "active_users"),
        ("7 days", "active_users_7d"),
        ("28 days", "active_users_28d"),
    ):
        assert whole(lines, name) == [r[field] for r in rows], name
        dashed = by_id(lines, f"{name}:partial")
        assert [i for i, v in enumerate(dashed) if v is not None] == [at - 1, at]  # today dashed, not a drop
    bars = chart_option(page, "chart-new-users")
    for name, field in (("new", "new_users"), ("returning", "returning_users")):
        series = next(s for s in bars["series"] if s["name"] == name)
        assert series["stack"] == "users"
        values = [v["value"] if isinstance(v, dict) else v for v in series["data"]]
        assert values == [r[field] for r in rows], name
        assert series["data"][at]["partial"] is True and series["data"][at]["itemStyle"]["opacity"] < 1

    silver = pa.table(lake.open(SILVER).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    users = {
        j["user_id"]
        for j in silver
        if j["marketplace"] == m and first <= j["created_date"] <= today and j["user_id"] is not None
    }
    jobs = sum(r["jobs"] for r in rows)
    assert page.text_content('[data-kpi="active_users_7d"]') == f"{rows[-1]['active_users_7d']:,}"
    assert page.text_content('[data-kpi="active_users_28d"]') == f"{rows[-1]['active_users_28d']:,}"
    assert page.text_content('[data-kpi="new_users"]') == f"{sum(r['new_users'] for r in rows):,}"
    assert page.text_content('[data-kpi="jobs_per_active_user"]') == f"{jobs / len(users):.2f}"
    assert f"Today ({today}) is partial" in (page.text_content("#engagement-note") or "")

    cells = page.eval_on_selector_all(
        "#engagement tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )
    assert cells[0][:3] == [f"{today} (partial)", f"{rows[-1]['jobs']:,}", f"{rows[-1]['active_users']:,}"]
    assert [c[0] for c in cells[1:15]] == [str(r["date"]) for r in reversed(rows[:-1])][:14]
    name, csv_rows = download_csv(page, "engagement")
    assert name == f"vhlake-engagement-{m}-{first}_{today}.csv"
    columns = csv_rows[0]
    assert len(csv_rows) == 1 + len(rows)
    for row, r in zip(csv_rows[1:], rows, strict=True):
        assert [
            as_api(cell, r[c]) if c != "date" else cell for cell, c in zip(row, columns, strict=True)
        ] == [str(r["date"]) if c == "date" else r[c] for c in columns]
    page.locator("section.engagement").screenshot(path=str(ARTIFACTS / "dashboard-engagement.png"))

    page.set_viewport_size({"width": 390, "height": 844})
    wait_until(page, "document.documentElement.scrollWidth <= 390")
    box = page.locator("#chart-new-users").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.locator("section.engagement").screenshot(path=str(ARTIFACTS / "dashboard-engagement-390.png"))
    assert errors == []
    assert page.evaluate("window.__violations") == []


# -- restated days (gold_restatements): marked on the marketplace charts and the overview's sparklines ------

RESTATED_DAYS = (date(2026, 11, 20), date(2026, 11, 24))


@pytest.fixture(scope="module")
def restated_site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, Lake, list[dict[str, Any]]]]:
    """A lake of its own with restatements planted on two of shopee's days (and one of magalu's)."""
    root = tmp_path_factory.mktemp("restated-dashboard")
    lake = build_analytics_lake(root, jobs=2_000, seed=13)
    planted = plant_restatements(lake, "shopee", RESTATED_DAYS, "magalu")
    with served_lake(lake, root) as (url, key, _):
        yield url, key, lake, planted


def percent(x: float) -> str:
    """``fmt.pct``: JavaScript's toFixed(1) rounds the exact value half up (Python's format: half to even)."""
    return f"{Decimal(100 * x).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def restated_text(day: dict[str, Any]) -> str:
    """What the page must say of a restated day (from :func:`restated_days`)."""
    (previous, previous_failed), (new, new_failed) = day["previous"], day["new"]
    return (
        f"restated {day['restated_at']:%Y-%m-%d %H:%M} UTC: {previous:,} → {new:,} validations, "
        f"error rate {percent(previous_failed / previous)} → {percent(new_failed / new)}"
    )


def test_restated_days_are_marked_and_their_change_is_in_the_tooltip(
    restated_site: tuple[str, str, Lake, list[dict[str, Any]]], browser: Any
) -> None:
    url, key, lake, planted = restated_site
    gold = pa.table(lake.open(GOLD).to_pyarrow_table()).to_pylist()  # type: ignore[union-attr]
    expected = restated_days(gold, planted, "shopee")
    assert set(expected) == set(RESTATED_DAYS)
    page, errors = watched_page(browser, height=1100)
    page.goto(f"{url}/?view=marketplace&marketplace=shopee&start=2026-11-01&end=2026-11-27#key={key}")
    wait_until(page, "window.vhlake && window.vhlake.shown && window.vhlake.predictions")
    marked = {str(day): e["new"] for day, e in sorted(expected.items())}
    volume = chart_option(page, "chart-volume")
    assert by_id(volume, "restated") == [[day, total] for day, (total, _) in marked.items()]
    assert by_id(chart_option(page, "chart-errors"), "restated") == [
        [day, pytest.approx(failed / total)] for day, (total, failed) in marked.items()
    ]
    assert [p[0] for p in by_id(chart_option(page, "chart-times"), "restated")] == list(marked)
    for day in RESTATED_DAYS:  # every chart's tooltip on the day says how it moved
        index = volume["xAxis"][0]["data"].index(str(day))
        for chart in ("chart-volume", "chart-errors"):
            page.evaluate(
                f"window.vhlake.charts[{chart!r}].dispatchAction({{type: 'showTip', seriesIndex: 0, dataIndex: {index}}})"
            )
            wait_until(page, f"document.querySelector('#{chart}').innerText.includes('restated')")
            assert restated_text(expected[day]) in page.inner_text(f"#{chart}")
    assert restated_text(expected[RESTATED_DAYS[0]]).startswith(
        "restated 2026-11-29 04:30 UTC"
    )  # the later range
    note = page.text_content("#predictions-note") or ""
    assert "Amber diamonds: 2 days restated" in note
    page.screenshot(path=str(ARTIFACTS / "dashboard-restated.png"), full_page=True)

    page.goto(f"{url}/?view=overview&days=14&end=2026-11-27")  # the key stays in the session
    wait_until(
        page, "window.vhlake && window.vhlake.overview && window.vhlake.overview.end_date === '2026-11-27'"
    )
    titles = page.eval_on_selector_all(
        '.card[data-marketplace="shopee"] .restated-point title', "ts => ts.map(t => t.textContent)"
    )
    assert titles == [f"{day} {restated_text(e)}" for day, e in sorted(expected.items())]
    magalu = page.eval_on_selector_all('.card[data-marketplace="magalu"] .restated-point', "ps => ps.length")
    assert magalu == 1
    marks = page.eval_on_selector_all(".card .restated-point", "ps => ps.length")
    assert marks == 3  # shopee's two and magalu's one: no other card has a mark
    assert "restated" in (page.get_attribute('.card[data-marketplace="shopee"] svg', "aria-label") or "")
    assert "Amber dots" in (page.text_content("#overview-note") or "")
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview-restated.png"), full_page=True)
    assert errors == []
    assert page.evaluate("window.__violations") == []
