// The dashboard: reads the /v1 API with the key given in the URL fragment (#key=...) or typed in.
// A module: what it declares is its own, so the key is in no global another script could read.

const state = { key: null, marketplaces: [], charts: {}, view: "overview" };
// for tests and the curious: the charts and what they show, never the key
window.vhlake = {
  charts: state.charts,
  get shown() { return state.shown; },
  get errors() { return state.errors; },
  get overview() { return state.overview; },
  get view() { return state.view; },
};
const TOP_ERROR_TYPES = 5; // the types whose daily trend is drawn
const ERROR_BARS = 10; // the types the ranked bar chart shows
const TABLE_ROWS = 15;
const SVG = "http://www.w3.org/2000/svg";

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

// -- every table downloads the data behind it as CSV: all rows (not only the TABLE_ROWS shown), the API's
// field names and unformatted values. A table opts in with one call from the function that fills it:
// keepForCsv(table, "what-when", columns, records); its "CSV" button appears with its first data.

const CSV_DATA = new WeakMap(); // table element -> { name, columns, records }
const FORMULA = /^[=+\-@\t\r]/; // what a spreadsheet would run as a formula

function csvCell(value) {
  // RFC 4180 quoting; text a spreadsheet would read as a formula gets a leading apostrophe (numbers,
  // negative ones included, are numbers and stay as they are)
  if (value == null || (typeof value === "number" && !Number.isFinite(value))) return "";
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  if (typeof value === "string" && FORMULA.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csvText(columns, records) {
  const lines = [columns, ...records.map((r) => columns.map((c) => r[c]))].map((cells) => cells.map(csvCell).join(","));
  return "\ufeff" + lines.join("\r\n") + "\r\n"; // the BOM: spreadsheets then read the UTF-8 names right
}

function keepForCsv(table, name, columns, records) {
  CSV_DATA.set(table, { name, columns, records });
  if (table.previousElementSibling && table.previousElementSibling.classList.contains("csv-bar")) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "csv";
  button.textContent = "CSV";
  button.title = "Download all of this table's rows as CSV";
  button.setAttribute("aria-label", `Download ${table.id.replaceAll("-", " ")} as CSV`);
  button.addEventListener("click", () => downloadCsv(table));
  const bar = document.createElement("div");
  bar.className = "csv-bar";
  bar.append(button);
  table.before(bar);
}

function downloadCsv(table) {
  const { name, columns, records } = CSV_DATA.get(table);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([csvText(columns, records)], { type: "text/csv;charset=utf-8" }));
  link.download = `vhlake-${name.replace(/[^\w.-]+/g, "_")}.csv`; // a category may hold any character
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

const stamp = (iso) => iso.slice(0, 16).replace(":", "-") + "Z"; // a time fit for a file name (no colon)

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
  keepForCsv($("categories"), `categories-${marketplace}-${start}_${end}`,
    ["category", "total_validations", "failed_validations", "error_rate", "total_rows_processed", "avg_processing_time_ms"], categories);
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
  keepForCsv($("error-types"), `error-types-${marketplace}${category ? "-" + category : ""}-${first}_${last}`,
    ["error_type", "occurrences", "jobs", "failed_jobs", "share_of_failed_jobs"], ranked);
  state.errors = { marketplace, category: category || null, start: first, end: last, error_types: ranked };
}

async function showRealtime() {
  const realtime = await api("stats/realtime");
  rows($("realtime").tBodies[0], realtime.data.marketplaces.map((m) => [
    [m.marketplace], [fmt.int(m.total_jobs), true], [fmt.int(m.failed_jobs), true], [fmt.int(m.running_jobs), true], [fmt.int(m.p95_processing_time), true],
  ]));
  keepForCsv($("realtime"), `last-${realtime.data.window_minutes}-minutes-to-${stamp(realtime.data.as_of)}`,
    ["marketplace", "total_jobs", "successful_jobs", "failed_jobs", "running_jobs", "rows_processed",
      "avg_processing_time_ms", "p95_processing_time", "last_job_at"], realtime.data.marketplaces);
}

async function showQuality() {
  try {
    const quality = await api("quality");
    rows($("quality").tBodies[0], quality.data.map((q) => [[q.metric], [q.dimension || ""], [q.latest_value.toFixed(2), true]]));
    keepForCsv($("quality"), `quality-${stamp(new Date().toISOString())}`,
      ["metric", "dimension", "latest_value", "measured_at", "batches"], quality.data);
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
  keepForCsv($("alerts"), `alerts-${stamp(new Date().toISOString())}`,
    ["rule", "key", "state", "value", "threshold", "severity", "evaluated_at", "last_notified_at"], alerts.data);
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
  await Promise.all([route(), showRealtime(), showQuality(), showAlerts()]);
  setInterval(() => Promise.all([showRealtime(), showAlerts()]).catch((e) => showError(e.message)), 15000);
}

function pickDates(marketplace) {
  const end = new Date(marketplace.last_date);
  const start = new Date(end.getTime() - 29 * 86400000);
  const first = new Date(marketplace.first_date);
  $("end").value = marketplace.last_date;
  $("start").value = (start < first ? first : start).toISOString().slice(0, 10);
}

// -- the page's state in the URL: ?view=overview&days=7[&end=...] or ?view=marketplace&marketplace=...&start=...&end=...

function urlState() {
  const params = new URLSearchParams(location.search);
  return {
    view: params.get("view") === "marketplace" ? "marketplace" : "overview",
    marketplace: params.get("marketplace"),
    start: params.get("start"),
    end: params.get("end"),
    days: params.get("days"),
  };
}

function writeUrl(push = false) {
  const params = new URLSearchParams({ view: state.view });
  if (state.view === "overview") {
    params.set("days", $("overview-days").value);
    if (state.overviewEnd) params.set("end", state.overviewEnd);
  } else {
    params.set("marketplace", $("marketplace").value);
    params.set("start", $("start").value);
    params.set("end", $("end").value);
  }
  const url = `${location.pathname}?${params}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function showView(view) {
  state.view = view;
  $("overview").hidden = view !== "overview";
  $("overview-range").hidden = view !== "overview";
  $("board").hidden = view !== "marketplace";
  $("filters").hidden = view !== "marketplace";
  for (const tab of ["overview", "marketplace"]) {
    if (tab === view) $(`tab-${tab}`).setAttribute("aria-current", "page");
    else $(`tab-${tab}`).removeAttribute("aria-current");
  }
}

async function route() {
  // show what the URL names (a shared link opens the same view, marketplace and range)
  const wanted = urlState();
  if (wanted.view === "overview") {
    if (["7", "14", "30"].includes(wanted.days)) $("overview-days").value = wanted.days;
    state.overviewEnd = /^\d{4}-\d{2}-\d{2}$/.test(wanted.end || "") ? wanted.end : null;
    showView("overview");
    writeUrl();
    return showOverview();
  }
  const chosen = state.marketplaces.find((m) => m.marketplace === wanted.marketplace) || state.marketplaces[0];
  $("marketplace").value = chosen.marketplace;
  if (wanted.start && wanted.end && wanted.start <= wanted.end) {
    $("start").value = wanted.start;
    $("end").value = wanted.end;
  } else {
    pickDates(chosen);
  }
  showView("marketplace");
  writeUrl();
  return showMarketplace();
}

const ARROW = (x) => (x > 0 ? "▲" : x < 0 ? "▼" : "=");
const signed = (x, text) => (x > 0 ? "+" + text : text);
const MEASURES = [
  // field, label, the value's format, the change shown (null without a previous period), is a rise bad
  { field: "validations", label: "Validations", format: fmt.int, upIsBad: false,
    change: (m) => (m.relative_change == null ? null : signed(m.change, (100 * m.relative_change).toFixed(1) + " %")) },
  { field: "error_rate", label: "Error rate", format: fmt.pct, upIsBad: true,
    change: (m) => (m.change == null ? null : signed(m.change, (100 * m.change).toFixed(1) + " pp")) },
  { field: "p95_processing_time", label: "p95 time", format: fmt.ms, upIsBad: true,
    change: (m) => (m.relative_change == null ? null : signed(m.change, (100 * m.relative_change).toFixed(1) + " %")) },
  { field: "active_sellers", label: "Active sellers", format: fmt.int, upIsBad: false,
    change: (m) => (m.change == null ? null : signed(m.change, fmt.int(m.change))) },
];

function card(data, overview) {
  const link = document.createElement("a");
  link.className = "card";
  link.dataset.marketplace = data.marketplace;
  const end = overview.end_date;
  const start = new Date(Date.parse(end) - 29 * 86400000).toISOString().slice(0, 10);
  link.href = `?${new URLSearchParams({ view: "marketplace", marketplace: data.marketplace, start, end })}`;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    $("marketplace").value = data.marketplace;
    $("start").value = start;
    $("end").value = end;
    $("error-category").value = "";
    showView("marketplace");
    writeUrl(true);
    showMarketplace().catch((error) => showError(error.message));
  });
  const title = document.createElement("h2");
  title.textContent = data.marketplace;
  const list = document.createElement("dl");
  for (const { field, label, format, upIsBad, change: changeOf } of MEASURES) {
    const measure = data[field];
    const term = document.createElement("dt");
    term.textContent = label;
    const value = document.createElement("dd");
    value.dataset.measure = field;
    const number = document.createElement("span");
    number.className = "value";
    number.textContent = format(measure.current);
    const change = document.createElement("span");
    change.className = "change " + (!measure.change ? "same" : (measure.change > 0) === upIsBad ? "worse" : "better");
    const shown = changeOf(measure);
    change.textContent = shown == null ? "– vs previous" : `${ARROW(measure.change)} ${shown}`;
    value.append(number, change);
    list.append(term, value);
  }
  link.append(title, list, sparkline(data.sparkline));
  return link;
}

function sparkline(points) {
  // the period's validations per day; today (partial) is a dashed segment to a hollow point, not a drop
  const width = 300;
  const height = 48;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "validations per day" + (points.some((p) => p.partial) ? ", today partial" : ""));
  const top = Math.max(1, ...points.map((p) => p.total_validations));
  const xy = points.map((p, i) => [
    points.length > 1 ? 4 + (i * (width - 8)) / (points.length - 1) : width / 2,
    height - 4 - ((height - 8) * p.total_validations) / top,
  ]);
  const complete = xy.filter((_, i) => !points[i].partial);
  const path = (cls, coords) => {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", coords.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    svg.appendChild(line);
  };
  if (complete.length) path("line", complete);
  const partial = points.findIndex((p) => p.partial);
  if (partial >= 0) {
    if (partial > 0) path("partial", [xy[partial - 1], xy[partial]]);
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("class", "partial-point");
    dot.setAttribute("cx", xy[partial][0].toFixed(1));
    dot.setAttribute("cy", xy[partial][1].toFixed(1));
    dot.setAttribute("r", "3");
    dot.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(dot);
  }
  return svg;
}

async function showOverview() {
  const days = $("overview-days").value;
  const answer = await api("overview", { days, ...(state.overviewEnd ? { end: state.overviewEnd } : {}) });
  const overview = answer.data;
  showFreshness(answer.freshness);
  const note = $("overview-note");
  note.replaceChildren(
    `${overview.start_date} to ${overview.end_date} against the ${days} days before` +
      (overview.partial_date ? ` (today, ${overview.partial_date}, is partial)` : "") +
      ". Largest error-rate increase first.",
  );
  if (!overview.marketplaces.length) {
    const newest = state.marketplaces.map((m) => m.last_date).sort().pop();
    if (newest) {
      const link = document.createElement("a");
      link.href = `?${new URLSearchParams({ view: "overview", days, end: newest })}`;
      link.textContent = `the ${days} days ending ${newest}`;
      note.append(` No validations in this period; the newest data is from ${newest}: show `, link, ".");
    }
  }
  $("overview-cards").replaceChildren(...overview.marketplaces.map((m) => card(m, overview)));
  state.overview = overview;
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
    writeUrl();
    showMarketplace().catch((error) => showError(error.message));
  });
  $("overview-days").addEventListener("change", () => {
    writeUrl();
    showOverview().catch((error) => showError(error.message));
  });
  for (const view of ["overview", "marketplace"]) {
    $(`tab-${view}`).addEventListener("click", (event) => {
      event.preventDefault();
      if (!state.marketplaces.length) return;
      showView(view);
      writeUrl(true);
      (view === "overview" ? showOverview() : showMarketplace()).catch((error) => showError(error.message));
    });
  }
  window.addEventListener("popstate", () => {
    if (state.marketplaces.length) route().catch((error) => showError(error.message));
  });
  $("marketplace").addEventListener("change", () => {
    const chosen = state.marketplaces.find((m) => m.marketplace === $("marketplace").value);
    if (chosen) pickDates(chosen);
    $("error-category").value = ""; // another marketplace's categories are others
    writeUrl();
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
  if (fromUrl) history.replaceState(null, "", location.pathname + location.search); // the key leaves the address bar, the view stays
  const key = fromUrl || sessionStorage.getItem("vhlake-key");
  if (key) useKey(key);
  else $("login").hidden = false;
});
