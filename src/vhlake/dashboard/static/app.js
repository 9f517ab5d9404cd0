// The dashboard: reads the /v1 API with the key given in the URL fragment (#key=...) or typed in.
// A module: what it declares is its own, so the key is in no global another script could read.

const state = { key: null, marketplaces: [], charts: {}, view: "overview" };
// for tests and the curious: the charts and what they show, never the key
window.vhlake = {
  charts: state.charts,
  get shown() { return state.shown; },
  get errors() { return state.errors; },
  get overview() { return state.overview; },
  get predictions() { return state.predictions; },
  get engagement() { return state.engagement; },
  get view() { return state.view; },
};
const TOP_ERROR_TYPES = 5; // the types whose daily trend is drawn
const ERROR_BARS = 10; // the types the ranked bar chart shows
const TABLE_ROWS = 15;
const SVG = "http://www.w3.org/2000/svg";
const VIEWS = ["overview", "marketplace", "quality"];

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
  const [metrics, performance, , predictions] = await Promise.all([
    api(`marketplaces/${encodeURIComponent(marketplace)}/metrics`, { start, end, limit: 50000 }),
    api(`marketplaces/${encodeURIComponent(marketplace)}/performance`, { days, end }),
    showErrorTypes(marketplace, days, end),
    fetchPredictions(marketplace, days, end),
    showEngagement(marketplace, days, end),
  ]);
  const summary = metrics.data.summary;
  document.querySelector('[data-kpi="validations"]').textContent = fmt.int(summary.total_validations);
  document.querySelector('[data-kpi="error_rate"]').textContent = fmt.pct(summary.error_rate);
  document.querySelector('[data-kpi="rows"]').textContent = fmt.int(summary.total_rows_processed);
  document.querySelector('[data-kpi="p95"]').textContent = fmt.ms(summary.typical_p95_processing_time);
  showFreshness(metrics.freshness);

  const series = performance.data.daily.filter((d) => d.date >= start && d.date <= end);
  const dates = series.map((d) => d.date);
  const overlay = predictionOverlay(predictions, dates, series);
  chart("chart-volume").setOption(withPredictions("validations", {
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value" },
    series: [{ name: "validations", type: "bar", data: series.map((d) => d.total_validations) }],
  }, overlay, fmt.int), true);
  const errorRates = series.map((d) => d.error_rate);
  chart("chart-errors").setOption(withPredictions("error_rate", {
    tooltip: { trigger: "axis", valueFormatter: (v) => fmt.pct(v) },
    legend: {},
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value", axisLabel: { formatter: (v) => (100 * v).toFixed(0) + "%" } },
    series: [
      { name: "error rate", type: "line", data: errorRates },
      { name: "7-day average", type: "line", smooth: true, data: movingAverage(errorRates, 7) },
    ],
  }, overlay, fmt.pct), true);
  const perDay = ["p50_processing_time", "p95_processing_time", "p99_processing_time"].map((f) => weightedByDay(metrics.data.daily, f));
  chart("chart-times").setOption(withPredictions("p95_processing_time", {
    tooltip: { trigger: "axis" },
    legend: {},
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value" },
    series: ["p50", "p95", "p99"].map((name, i) => ({ name, type: "line", data: dates.map((d) => perDay[i](d)) })),
  }, overlay, fmt.ms), true);
  describePredictions(predictions, overlay);
  state.predictions = predictions;
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

// -- the engagement panel: user_engagement_daily_gold's days. Its 7- and 28-day counts are distinct users
// over each day's window: the KPIs take the last day's, never a sum over days.

const ENGAGEMENT_COLUMNS = ["date", "jobs", "active_users", "active_users_7d", "active_users_28d", "new_users",
  "returning_users", "jobs_per_active_user"];
const perUser = (x) => (x == null ? "–" : x.toFixed(2));

async function showEngagement(marketplace, days, end) {
  // a failure (a warehouse without the table yet) empties the panel with a note; the rest of the view stays
  let data;
  try {
    data = (await api(`marketplaces/${encodeURIComponent(marketplace)}/engagement`, { days, end })).data;
  } catch (error) {
    data = { marketplace, unavailable: error.message, daily: [], partial_date: null, summary: {} };
  }
  const { daily, summary } = data;
  const kpi = (name, text) => { document.querySelector(`[data-kpi="${name}"]`).textContent = text; };
  kpi("active_users_7d", fmt.int(summary.active_users_7d));
  kpi("active_users_28d", fmt.int(summary.active_users_28d));
  kpi("new_users", fmt.int(summary.new_users));
  kpi("jobs_per_active_user", perUser(summary.jobs_per_active_user));
  const dates = daily.map((d) => d.date);
  const at = dates.indexOf(data.partial_date);
  const partial = at < 0 ? null : data.partial_date;
  chart("chart-active-users").setOption({
    tooltip: { trigger: "axis", confine: true, formatter: partialTooltip(partial, fmt.int) },
    legend: {},
    grid: { containLabel: true, left: 8, right: 16, top: 40 },
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value", minInterval: 1 },
    series: [["that day", "active_users"], ["7 days", "active_users_7d"], ["28 days", "active_users_28d"]]
      .flatMap(([name, field]) => partialSeries({ name, type: "line", data: daily.map((d) => d[field]) }, at)),
  }, true);
  chart("chart-new-users").setOption({
    tooltip: { trigger: "axis", confine: true, axisPointer: { type: "shadow" }, formatter: partialTooltip(partial, fmt.int) },
    legend: {},
    grid: { containLabel: true, left: 8, right: 16, top: 40 },
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value", minInterval: 1 },
    series: [["new", "new_users"], ["returning", "returning_users"]]
      .flatMap(([name, field]) => partialSeries({ name, type: "bar", stack: "users", data: daily.map((d) => d[field]) }, at)),
  }, true);
  describeEngagement(data, partial);
  listEngagement(data, end);
  state.engagement = { ...data, partial };
}

function partialTooltip(partial, format) {
  // each series once: the dashed copy of a line (today's segment) only on today
  const escape = echarts.format.encodeHTML;
  return (params) => {
    const day = params[0].axisValue;
    const lines = [escape(day) + (day === partial ? " · partial (today, still growing)" : "")];
    for (const p of params) {
      const value = p.value != null && typeof p.value === "object" ? p.value.value : p.value;
      if (value == null || (String(p.seriesId).endsWith(":partial") && day !== partial)) continue;
      lines.push(`${p.marker}${escape(p.seriesName)}: ${format(value)}`);
    }
    return lines.join("<br>");
  };
}

function describeEngagement(data, partial) {
  const { summary } = data;
  const parts = [];
  if (data.unavailable) parts.push(`Engagement unavailable: ${data.unavailable}.`);
  else if (!data.daily.length) parts.push("No engagement rows for this period (the pipeline writes user_engagement_daily_gold).");
  else {
    parts.push(`7- and 28-day active users of ${summary.last_date}, the period's last day with jobs; ` +
      `${fmt.int(summary.active_users)} distinct active users over the period, ${fmt.int(summary.jobs)} jobs.`);
  }
  if (partial) parts.push(`Today (${partial}) is partial: lighter bars, dashed lines.`);
  $("engagement-note").textContent = parts.join(" ");
}

function listEngagement(data, end) {
  // newest first, TABLE_ROWS of them; the CSV has every day, oldest first, as the API gives them
  const newest = [...data.daily].reverse();
  const table = newest.slice(0, TABLE_ROWS).map((d) => [
    [d.date === data.partial_date ? `${d.date} (partial)` : d.date], [fmt.int(d.jobs), true], [fmt.int(d.active_users), true],
    [fmt.int(d.active_users_7d), true], [fmt.int(d.active_users_28d), true], [fmt.int(d.new_users), true],
    [fmt.int(d.returning_users), true], [perUser(d.jobs_per_active_user), true],
  ]);
  const blank = Array(7).fill([""]);
  if (newest.length > TABLE_ROWS) table.push([[`… ${newest.length - TABLE_ROWS} earlier days`], ...blank]);
  if (!newest.length) table.push([["(no engagement rows in this period)"], ...blank]);
  rows($("engagement").tBodies[0], table);
  const first = data.start_date || "";
  keepForCsv($("engagement"), `engagement-${data.marketplace}-${first}_${data.end_date || end}`, ENGAGEMENT_COLUMNS, data.daily);
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
    view: VIEWS.includes(params.get("view")) ? params.get("view") : "overview",
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
  } else if (state.view === "quality") {
    qualityUrl(params);
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
  $("quality-view").hidden = view !== "quality";
  for (const tab of VIEWS) {
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
  if (wanted.view === "quality") {
    qualityFromUrl(wanted);
    showView("quality");
    writeUrl();
    return showQualityView();
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
  const restated = points.filter((p) => p.restated_at).length;
  svg.setAttribute("aria-label", "validations per day" + (points.some((p) => p.partial) ? ", today partial" : "") +
    (restated ? `, ${restated} restated day${restated === 1 ? "" : "s"}` : ""));
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
  points.forEach((p, i) => {
    if (!p.restated_at) return;
    const mark = document.createElementNS(SVG, "circle");
    mark.setAttribute("class", "restated-point");
    mark.setAttribute("cx", xy[i][0].toFixed(1));
    mark.setAttribute("cy", xy[i][1].toFixed(1));
    mark.setAttribute("r", "3.5");
    mark.setAttribute("vector-effect", "non-scaling-stroke");
    const title = document.createElementNS(SVG, "title"); // the hover text, as text (never markup)
    title.textContent = `${p.date} ${restatedText(p)}`;
    mark.append(title);
    svg.appendChild(mark);
  });
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
      ". Largest error-rate increase first." +
      (overview.marketplaces.some((m) => m.sparkline.some((p) => p.restated_at))
        ? " Amber dots: days restated by late data after first written (hover for the change)." : ""),
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
  const shows = { overview: () => showOverview(), marketplace: () => showMarketplace(), quality: () => showQualityView() };
  for (const view of VIEWS) {
    $(`tab-${view}`).addEventListener("click", (event) => {
      event.preventDefault();
      if (!state.marketplaces.length) return;
      showView(view);
      writeUrl(true);
      shows[view]().catch((error) => showError(error.message));
    });
  }
  $("quality-days").addEventListener("change", () => {
    writeUrl();
    showQualityView().catch((error) => showError(error.message));
  });
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

// -- over the marketplace charts: the forecast band, the anomalous days, and today as partial

const FORECAST_DAYS_AFTER = 7; // forecast days drawn after the period, when gold has nothing newer
const ANOMALY_COLOR = "#b42318";
const FORECAST_COLOR = "#7a8ea6";
const PARTIAL_STYLE = { opacity: 0.4, borderType: "dashed", borderColor: "#2f6fb3", borderWidth: 1 };

async function fetchPredictions(marketplace, days, end) {
  // the forecast runs past the period only when the period reaches gold's newest day (else the days after
  // it have actual numbers the charts do not show); a failure leaves the charts as they are, with a note
  const listed = state.marketplaces.find((m) => m.marketplace === marketplace);
  const horizon = listed && end >= listed.last_date ? FORECAST_DAYS_AFTER : 0;
  try {
    const answer = await api(`marketplaces/${encodeURIComponent(marketplace)}/predictions`, { days, end, horizon });
    return answer.data;
  } catch (error) {
    return { unavailable: error.message, forecast: [], anomalies: [], partial_date: null };
  }
}

function predictionOverlay(predictions, dates, days) {
  // what the three charts add to their days: the same lookups for each (``days``: the performance answer's)
  const last = dates[dates.length - 1];
  const anomalies = new Map();
  for (const a of predictions.anomalies) {
    if (!anomalies.has(a.metric)) anomalies.set(a.metric, new Map());
    anomalies.get(a.metric).set(a.date, a);
  }
  return {
    forecast: new Map(predictions.forecast.map((f) => [f.date, f])),
    future: predictions.forecast.map((f) => f.date).filter((d) => last === undefined || d > last),
    anomalies,
    partial: dates.includes(predictions.partial_date) ? predictions.partial_date : null,
    restated: new Map(days.filter((d) => d.restated_at).map((d) => [d.date, d])),
  };
}

function withPredictions(metric, option, overlay, format) {
  // ``option`` drawn over ``metric``'s days: today's point partial, the forecast (band for the volume,
  // a dashed line for the error rate, none for p95), and the anomalous days marked with their score
  const forecastField = { validations: "predicted_validations", error_rate: "predicted_error_rate" }[metric];
  const axis = forecastField ? [...option.xAxis.data, ...overlay.future] : option.xAxis.data;
  const at = overlay.partial ? axis.indexOf(overlay.partial) : -1;
  const series = option.series.flatMap((s) => partialSeries(s, at));
  if (forecastField && overlay.forecast.size) series.push(...forecastSeries(metric, forecastField, axis, overlay));
  const flagged = overlay.anomalies.get(metric) || new Map();
  if (flagged.size) {
    series.push({
      id: "anomalies", name: "anomaly", type: "scatter", symbol: "pin", symbolSize: 26, z: 5,
      itemStyle: { color: ANOMALY_COLOR },
      data: [...flagged.values()].filter((a) => axis.includes(a.date)).map((a) => [a.date, a.observed, a.z_score]),
    });
  }
  series.push(...restatedSeries(metric, option, overlay));
  return {
    ...option,
    xAxis: { ...option.xAxis, data: axis },
    series,
    tooltip: { trigger: "axis", confine: true, formatter: predictionTooltip(metric, forecastField, overlay, format) },
  };
}

// -- restated days: gold groups late data changed after they were first written (gold_restatements). The
// performance answer gives each such day its latest restatement; the charts put a diamond on the day's point
// and the tooltip says how its numbers moved. The overview's sparklines mark them with a dot.

const RESTATED_COLOR = "#b26a00";
const RESTATED_ON = { validations: "validations", error_rate: "error rate", p95_processing_time: "p95" }; // the series marked

function restatedText(day) {
  // "restated 2026-11-28 03:00 UTC: 120 → 123 validations, error rate 4.0 % → 4.9 %"
  const r = day.restatement;
  const when = day.restated_at.replace("T", " ").slice(0, 16) + " UTC";
  return `restated ${when}: ${fmt.int(r.previous_total_validations)} → ${fmt.int(r.new_total_validations)} validations, ` +
    `error rate ${fmt.pct(r.previous_error_rate)} → ${fmt.pct(r.new_error_rate)}`;
}

function restatedSeries(metric, option, overlay) {
  // a diamond on each restated day's point of the chart's own series (the day's number now)
  const own = option.series.find((s) => s.name === RESTATED_ON[metric]);
  if (!own || !overlay.restated.size) return [];
  const data = option.xAxis.data.flatMap((d, i) => (overlay.restated.has(d) && own.data[i] != null ? [[d, own.data[i]]] : []));
  return [{
    id: "restated", name: "restated", type: "scatter", symbol: "diamond", symbolSize: 13, z: 4,
    itemStyle: { color: RESTATED_COLOR, borderColor: "#fff", borderWidth: 1 }, data,
  }];
}

function partialSeries(s, at) {
  // a bar: today's bar lighter and dashed; a line: solid up to yesterday, dashed from yesterday to today
  if (at < 0 || s.data[at] == null) return [s];
  if (s.type === "bar") {
    const data = s.data.map((v, i) => (i === at ? { value: v, partial: true, itemStyle: PARTIAL_STYLE } : v));
    return [{ ...s, data }];
  }
  const solid = s.data.map((v, i) => (i === at ? null : v));
  const dashed = s.data.map((v, i) => (i === at || i === at - 1 ? v : null));
  return [
    { ...s, data: solid },
    { ...s, id: `${s.name}:partial`, data: dashed, symbol: "emptyCircle", showSymbol: true, lineStyle: { type: "dashed" } },
  ];
}

function forecastSeries(metric, field, axis, overlay) {
  const value = (name) => axis.map((d) => (overlay.forecast.has(d) ? overlay.forecast.get(d)[name] : null));
  const line = {
    id: "forecast", name: "forecast", type: "line", data: value(field), symbol: "none", z: 3,
    lineStyle: { type: "dashed", color: FORECAST_COLOR }, itemStyle: { color: FORECAST_COLOR },
  };
  if (metric !== "validations") return [line]; // the model gives the error rate no interval
  const lower = value("lower_bound");
  const upper = value("upper_bound");
  const band = { type: "line", stack: "forecast-band", symbol: "none", lineStyle: { opacity: 0 }, silent: true };
  return [
    { ...band, id: "forecast-lower", name: "forecast band", data: lower },
    {
      ...band, id: "forecast-band", name: "forecast band", areaStyle: { color: FORECAST_COLOR, opacity: 0.35 },
      data: upper.map((u, i) => (u == null || lower[i] == null ? null : u - lower[i])),
    },
    line,
  ];
}

function predictionTooltip(metric, forecastField, overlay, format) {
  const escape = echarts.format.encodeHTML;
  return (params) => {
    const day = params[0].axisValue;
    const lines = [escape(day) + (day === overlay.partial ? " · partial (today, still growing)" : "")];
    for (const p of params) {
      const own = !String(p.seriesId).startsWith("forecast") && !["anomalies", "restated"].includes(p.seriesId);
      const value = Array.isArray(p.value) ? p.value[1] : p.value;
      if (!own || value == null || (String(p.seriesId).endsWith(":partial") && day !== overlay.partial)) continue;
      lines.push(`${p.marker}${escape(p.seriesName)}: ${format(value)}`);
    }
    const f = forecastField && overlay.forecast.get(day);
    if (f && f[forecastField] != null) {
      const band = metric === "validations" && f.lower_bound != null
        ? ` (${Math.round(100 * (f.confidence_level || 0.8))}% band ${format(f.lower_bound)} – ${format(f.upper_bound)})` : "";
      lines.push(`forecast: ${format(f[forecastField])}${band}, ${f.categories} categories summed`);
    }
    const a = (overlay.anomalies.get(metric) || new Map()).get(day);
    if (a) lines.push(`<b style="color:${ANOMALY_COLOR}">⚠ anomaly</b>: ${format(a.observed)} vs expected ${format(a.expected)}, score ${a.z_score.toFixed(1)}`);
    const r = overlay.restated.get(day);
    if (r) lines.push(`<b style="color:${RESTATED_COLOR}">◆</b> ${escape(restatedText(r))}`);
    return lines.join("<br>");
  };
}

function describePredictions(predictions, overlay) {
  // the muted note under the charts: what is drawn, or why nothing is
  const parts = [];
  if (predictions.unavailable) parts.push(`Forecast and anomalies unavailable: ${predictions.unavailable}.`);
  else if (!predictions.forecast.length && !predictions.anomalies.length) {
    parts.push("No forecast or anomaly scores for this period yet (vhlake ml train, vhlake ml score).");
  } else {
    if (predictions.forecast.length) {
      parts.push("Shaded: the forecast's band, its categories' forecasts summed; dashed: the forecast (the error rate's has no band, p95 is not forecast).");
    }
    const days = new Set(predictions.anomalies.map((a) => a.date)).size;
    parts.push(days ? `Red pins: ${predictions.anomalies.length} anomalies on ${days} days (hover for the score).` : "No anomalous day in this period.");
  }
  if (overlay.restated.size) {
    const n = overlay.restated.size;
    parts.push(`Amber diamonds: ${n} day${n === 1 ? "" : "s"} restated by late data after first written (hover for the change).`);
  }
  if (overlay.partial) parts.push(`Today (${overlay.partial}) is partial: lighter bar, dashed line.`);
  $("predictions-note").textContent = parts.join(" ");
}

// -- the data-quality view: quarantined and rejected inputs per day and reason (?view=quality&days=30[&end=...]),
// with a replay of a quarantine reason for keys that may. Examples are untrusted input: text only, never markup.

Object.defineProperty(window.vhlake, "quality", { get: () => state.quality });

function qualityFromUrl(wanted) {
  if (["7", "14", "30"].includes(wanted.days)) $("quality-days").value = wanted.days;
  state.qualityEnd = /^\d{4}-\d{2}-\d{2}$/.test(wanted.end || "") ? wanted.end : null;
}

function qualityUrl(params) {
  params.set("days", $("quality-days").value);
  if (state.qualityEnd) params.set("end", state.qualityEnd);
}

async function post(path, body) {
  const response = await fetch(`/v1/${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) {
    const error = new Error(typeof answer.detail === "string" ? answer.detail : answer.title);
    error.status = response.status;
    throw error;
  }
  return answer;
}

const SOURCE_LABEL = { quarantine: "quarantined", rejected: "rejected" };

async function showQualityView() {
  const days = $("quality-days").value;
  const answer = await api("quality/rejections", { days, ...(state.qualityEnd ? { end: state.qualityEnd } : {}) });
  const data = answer.data;
  showFreshness(answer.freshness);
  $("quality-note").textContent =
    `${data.start_date} to ${data.end_date}, by the day inputs were ingested.` +
    (data.rejects_visible ? "" : " Rejected inputs name no marketplace: this key does not see them.");
  drawRejections(data);
  listRejections(data);
  state.quality = { ...data, days: Number(days), replayed: state.quality ? state.quality.replayed : null };
}

function drawRejections(data) {
  // one bar per source and day, stacked by reason
  const dates = daysBetween(data.start_date, data.end_date);
  const perDay = new Map(data.daily.map((d) => [`${d.date}|${d.source}|${d.reason}`, d.events]));
  chart("chart-rejections").setOption({
    animation: false, // redrawn after each replay: the new bars at once
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { type: "scroll" },
    grid: { containLabel: true, left: 8, right: 16, top: 40 },
    xAxis: { type: "category", data: dates },
    yAxis: { type: "value", minInterval: 1 },
    series: data.reasons.map((r) => ({
      name: `${SOURCE_LABEL[r.source] || r.source}: ${r.reason}`,
      type: "bar",
      stack: r.source,
      data: dates.map((d) => perDay.get(`${d}|${r.source}|${r.reason}`) || 0),
    })),
  }, true);
}

function listRejections(data) {
  keepForCsv($("rejections"), `rejections-${data.start_date}_${data.end_date}`,
    ["source", "reason", "events", "last_seen", "example", "example_truncated"], data.reasons);
  const replaying = data.can_replay;
  $("replay-column").hidden = !replaying;
  const body = $("rejections").tBodies[0];
  if (!data.reasons.length) {
    rows(body, [[["(nothing quarantined or rejected in this period)"], [""], [""], [""], [""]]]);
    return;
  }
  body.replaceChildren(...data.reasons.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.source = r.source;
    tr.dataset.reason = r.reason;
    const cells = [
      [SOURCE_LABEL[r.source] || r.source], [r.reason], [fmt.int(r.events), "num"],
      [r.last_seen.replace("T", " ").slice(0, 19)], [r.example + (r.example_truncated ? " …" : ""), "example"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text; // never innerHTML: the example is whatever a producer sent
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    if (replaying) {
      const td = document.createElement("td");
      if (r.source === "quarantine") {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "replay";
        button.textContent = "Replay";
        button.title = `Re-check the events quarantined for ${r.reason} with the pipeline's current rules`;
        button.addEventListener("click", () => replayReason(r.reason, button));
        td.appendChild(button);
      }
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function replayReason(reason, button) {
  const status = $("replay-status");
  button.disabled = true;
  status.textContent = `Replaying the events quarantined for ${reason}…`;
  try {
    const result = await post("quality/replay", { reason });
    state.quality.replayed = result;
    await showQualityView();
    status.textContent = `${fmt.int(result.replayed)} event${result.replayed === 1 ? "" : "s"} of ${reason} replayed out of the quarantine` +
      (result.replayed ? "." : " (none passes the current rules).");
  } catch (error) {
    status.textContent = `Replay of ${reason} failed: ${error.message}`;
    button.disabled = false;
  }
}
