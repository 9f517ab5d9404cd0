// The dashboard: reads the /v1 API with the key given in the URL fragment (#key=...) or typed in.
// A module: what it declares is its own, so the key is in no global another script could read.

const state = { key: null, marketplaces: [], charts: {} };
// for tests and the curious: the charts and what they show, never the key
window.vhlake = {
  charts: state.charts,
  get shown() { return state.shown; },
  get errors() { return state.errors; },
};
const TOP_ERROR_TYPES = 5; // the types whose daily trend is drawn
const ERROR_BARS = 10; // the types the ranked bar chart shows
const TABLE_ROWS = 15;

const $ = (id) => document.getElementById(id);
const fmt = {
  int: (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US")),
  pct: (x) => (x == null ? "–" : (100 * x).toFixed(1) + " %"),
  ms: (x) => (x == null ? "–" : Math.round(x).toLocaleString("en-US") + " ms"),
};

async function api(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(`/v1/${path}${query ? "?" + query : ""}`, {
    headers: { Authorization: `Bearer ${state.key}` },
  });
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.detail && typeof body.detail === "string" ? body.detail : body.title);
    error.status = response.status;
    throw error;
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function showFreshness(freshness) {
  if (!freshness || !freshness.newest_event_at) {
    $("freshness").textContent = "no data yet";
    return;
  }
  const lag = freshness.lag_seconds;
  const behind =
    lag < 120 ? `${Math.round(lag)} s`
    : lag < 7200 ? `${Math.round(lag / 60)} min`
    : lag < 172800 ? `${(lag / 3600).toFixed(1)} h`
    : `${(lag / 86400).toFixed(1)} days`; // a feed stopped for weeks reads in days, not in hundreds of hours
  $("freshness").textContent = `data up to ${freshness.newest_event_at.replace("T", " ").slice(0, 19)} UTC (${behind} behind now)`;
}

function chart(id) {
  if (!state.charts[id]) state.charts[id] = echarts.init($(id));
  return state.charts[id];
}

function rows(tbody, values) {
  tbody.replaceChildren(
    ...values.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach(([text, numeric]) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (numeric) td.className = "num";
        tr.appendChild(td);
      });
      return tr;
    }),
  );
}

function movingAverage(values, span) {
  return values.map((_, i) => {
    const window = values.slice(Math.max(0, i - span + 1), i + 1).filter((v) => v != null);
    return window.length ? window.reduce((a, b) => a + b, 0) / window.length : null;
  });
}

function weightedByDay(daily, field) {
  // per day, the category values weighted by their finished jobs (percentiles do not add up exactly)
  const days = new Map();
  for (const d of daily) {
    if (d[field] == null) continue;
    const weight = d.successful_validations + d.failed_validations;
    const acc = days.get(d.date) || [0, 0];
    days.set(d.date, [acc[0] + d[field] * weight, acc[1] + weight]);
  }
  return (day) => {
    const acc = days.get(day);
    return acc && acc[1] ? acc[0] / acc[1] : null;
  };
}

async function showMarketplace() {
  const marketplace = $("marketplace").value;
  const start = $("start").value;
  const end = $("end").value;
  const days = Math.max(1, Math.round((new Date(end) - new Date(start)) / 86400000) + 1);
  showError("");
  const [metrics, performance] = await Promise.all([
    api(`marketplaces/${encodeURIComponent(marketplace)}/metrics`, { start, end, limit: 50000 }),
    api(`marketplaces/${encodeURIComponent(marketplace)}/performance`, { days, end }),
    showErrorTypes(marketplace, days, end),
  ]);
  const summary = metrics.data.summary;
  document.querySelector('[data-kpi="validations"]').textContent = fmt.int(summary.total_validations);
  document.querySelector('[data-kpi="error_rate"]').textContent = fmt.pct(summary.error_rate);
  document.querySelector('[data-kpi="rows"]').textContent = fmt.int(summary.total_rows_processed);
  document.querySelector('[data-kpi="p95"]').textContent = fmt.ms(summary.typical_p95_processing_time);
  showFreshness(metrics.freshness);

  const series = performance.data.daily.filter((d) => d.date >= start && d.date <= end);
  const dates = series.map((d) => d.date);
  chart("chart-volume").setOption({
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value" },
    series: [{ name: "validations", type: "bar", data: series.map((d) => d.total_validations) }],
  }, true);
  const errorRates = series.map((d) => d.error_rate);
  chart("chart-errors").setOption({
    tooltip: { trigger: "axis", valueFormatter: (v) => fmt.pct(v) },
    legend: {},
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value", axisLabel: { formatter: (v) => (100 * v).toFixed(0) + "%" } },
    series: [
      { name: "error rate", type: "line", data: errorRates },
      { name: "7-day average", type: "line", smooth: true, data: movingAverage(errorRates, 7) },
    ],
  }, true);
  const perDay = ["p50_processing_time", "p95_processing_time", "p99_processing_time"].map((f) => weightedByDay(metrics.data.daily, f));
  chart("chart-times").setOption({
    tooltip: { trigger: "axis" },
    legend: {},
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value" },
    series: ["p50", "p95", "p99"].map((name, i) => ({ name, type: "line", data: dates.map((d) => perDay[i](d)) })),
  }, true);
  const categories = performance.data.categories;
  const top = categories.slice(0, TABLE_ROWS).map((c) => [
    [c.category], [fmt.int(c.total_validations), true], [fmt.pct(c.error_rate), true], [fmt.int(c.avg_processing_time_ms), true],
  ]);
  if (categories.length > TABLE_ROWS) top.push([[`… ${categories.length - TABLE_ROWS} more`], [""], [""], [""]]);
  rows($("categories").tBodies[0], top);
  offerCategories(categories.map((c) => c.category));
  state.shown = { marketplace, start, end, days, validations: summary.total_validations };
}

function offerCategories(categories) {
  // the error panel's filter: the period's categories, keeping the chosen one while it is among them
  const select = $("error-category");
  const chosen = select.value;
  select.replaceChildren(new Option("All categories", ""), ...categories.map((c) => new Option(c, c)));
  select.value = categories.includes(chosen) ? chosen : "";
}

function daysBetween(first, last) {
  const days = [];
  for (let t = Date.parse(first); t <= Date.parse(last); t += 86400000) days.push(new Date(t).toISOString().slice(0, 10));
  return days;
}

async function showErrorTypes(marketplace, days, end) {
  const category = $("error-category").value;
  const params = { days, end, top: TOP_ERROR_TYPES, ...(category ? { category } : {}) };
  const answer = await api(`marketplaces/${encodeURIComponent(marketplace)}/errors`, params);
  const { error_types: ranked, trend, start_date: first, end_date: last } = answer.data;
  const bars = ranked.slice(0, ERROR_BARS);
  chart("chart-error-types").setOption({
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { containLabel: true, left: 8, right: 24 },
    xAxis: { type: "value" },
    yAxis: { type: "category", inverse: true, data: bars.map((e) => e.error_type) },
    series: [{ name: "occurrences", type: "bar", data: bars.map((e) => e.occurrences) }],
  }, true);
  const dates = daysBetween(first, last);
  const perDay = new Map(trend.map((d) => [`${d.date}|${d.error_type}`, d.occurrences]));
  chart("chart-error-trend").setOption({
    tooltip: { trigger: "axis" },
    legend: {},
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value" },
    series: ranked.slice(0, TOP_ERROR_TYPES).map((e) => ({
      name: e.error_type, type: "line", showSymbol: false, data: dates.map((d) => perDay.get(`${d}|${e.error_type}`) || 0),
    })),
  }, true);
  const table = ranked.slice(0, TABLE_ROWS).map((e) => [
    [e.error_type], [fmt.int(e.occurrences), true], [fmt.int(e.jobs), true], [fmt.int(e.failed_jobs), true], [fmt.pct(e.share_of_failed_jobs), true],
  ]);
  if (ranked.length > TABLE_ROWS) table.push([[`… ${ranked.length - TABLE_ROWS} more`], [""], [""], [""], [""]]);
  if (!ranked.length) table.push([["(no error reported in this period)"], [""], [""], [""], [""]]);
  rows($("error-types").tBodies[0], table);
  state.errors = { marketplace, category: category || null, start: first, end: last, error_types: ranked };
}

async function showRealtime() {
  const realtime = await api("stats/realtime");
  rows($("realtime").tBodies[0], realtime.data.marketplaces.map((m) => [
    [m.marketplace], [fmt.int(m.total_jobs), true], [fmt.int(m.failed_jobs), true], [fmt.int(m.running_jobs), true], [fmt.int(m.p95_processing_time), true],
  ]));
}

async function showQuality() {
  try {
    const quality = await api("quality");
    rows($("quality").tBodies[0], quality.data.map((q) => [[q.metric], [q.dimension || ""], [q.latest_value.toFixed(2), true]]));
  } catch (error) {
    if (error.status !== 403) throw error; // a marketplace key may not read lake-wide measures
    rows($("quality").tBodies[0], [[["(not visible with this key)"], [""], [""]]]);
  }
}

async function showAlerts() {
  const alerts = await api("alerts");
  const shown = alerts.data.length ? alerts.data : [{ rule: "no alert evaluated yet", key: "", state: "", value: null }];
  rows($("alerts").tBodies[0], shown.map((a) => [
    [a.rule], [a.key], [a.state === "triggered" ? "⚠ triggered" : a.state], [a.value == null ? "" : a.value.toFixed(3), true],
  ]));
}

async function start() {
  const listed = await api("marketplaces");
  state.marketplaces = listed.data;
  if (!state.marketplaces.length) {
    showError("No data in gold yet: run the pipeline (vhlake pipeline run, or vhlake serve).");
    return;
  }
  $("marketplace").replaceChildren(...state.marketplaces.map((m) => new Option(m.marketplace, m.marketplace)));
  pickDates(state.marketplaces[0]);
  await Promise.all([showMarketplace(), showRealtime(), showQuality(), showAlerts()]);
  setInterval(() => Promise.all([showRealtime(), showAlerts()]).catch((e) => showError(e.message)), 15000);
}

function pickDates(marketplace) {
  const end = new Date(marketplace.last_date);
  const start = new Date(end.getTime() - 29 * 86400000);
  const first = new Date(marketplace.first_date);
  $("end").value = marketplace.last_date;
  $("start").value = (start < first ? first : start).toISOString().slice(0, 10);
}

function useKey(key) {
  state.key = key;
  sessionStorage.setItem("vhlake-key", key);
  $("login").hidden = true;
  start().catch((error) => {
    showError(error.message);
    if (error.status === 401) $("login").hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (typeof echarts === "undefined") {
    showError("The charting library is missing: vhlake/dashboard/static/vendor/echarts.min.js did not load (reinstall vhlake).");
    return;
  }
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    showMarketplace().catch((error) => showError(error.message));
  });
  $("marketplace").addEventListener("change", () => {
    const chosen = state.marketplaces.find((m) => m.marketplace === $("marketplace").value);
    if (chosen) pickDates(chosen);
    $("error-category").value = ""; // another marketplace's categories are others
    showMarketplace().catch((error) => showError(error.message));
  });
  $("error-category").addEventListener("change", () => {
    if (!state.shown) return;
    const { marketplace, days, end } = state.shown;
    showErrorTypes(marketplace, days, end).catch((error) => showError(error.message));
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey($("key").value.trim());
  });
  window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromUrl) history.replaceState(null, "", location.pathname); // keep the key out of the address bar
  const key = fromUrl || sessionStorage.getItem("vhlake-key");
  if (key) useKey(key);
  else $("login").hidden = false;
});
