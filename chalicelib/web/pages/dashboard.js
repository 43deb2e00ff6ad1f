// Dashboard: totals, charts of spend, requests and tokens over time and by model and key, the request log
// with its filters and paging, and the CSV export.
import { html, useState } from "../vendor/preact-htm.js";
import {
  api, apiUrl, Empty, ErrorText, Field, Loading, num, Pager, t, usd, useCursor, useLoad, when,
} from "../lib.js";
import { ChartBox, COLORS } from "./charts.js";

const ZONES = (() => {
  const own = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const common = ["UTC", "Asia/Shanghai", "Asia/Tokyo", "Asia/Singapore", "Europe/London", "Europe/Berlin",
    "America/New_York", "America/Los_Angeles"];
  return [...new Set([own, ...common])];
})();

/** A date (YYYY-MM-DD) in the time zone `tz`, `days` from today. */
function day(tz, days = 0) {
  const moment = new Date(Date.now() + days * 86400000);
  return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(moment);
}
const nextDay = (text) => new Date(Date.parse(`${text}T00:00:00Z`) + 86400000).toISOString().slice(0, 10);

/** The query string of the chosen range: the API reads dates and times in the chosen zone. */
function rangeQuery(filters) {
  const { range, tz } = filters;
  const params = new URLSearchParams({ tz });
  if (range === "24h") {
    // From the moment the range was chosen, so that the query (and what it loads) stays the same.
    params.set("from", new Date(filters.anchor - 86400000).toISOString());
    params.set("to", new Date(filters.anchor + 900000).toISOString());
  } else if (range === "custom") {
    if (filters.from) params.set("from", filters.from);
    if (filters.to) params.set("to", nextDay(filters.to));
  } else {
    params.set("from", day(tz, range === "7d" ? -6 : -29));
  }
  return params;
}

const label = (start, granularity) => (granularity === "hour" ? start.slice(5, 16).replace("T", " ") : start.slice(5, 10));
const dollars = (text) => Number(text);
// Axis ticks in dollars, small amounts with two significant digits (a call costs fractions of a cent).
function money(value) {
  if (value === 0) return "$0";
  if (value >= 0.01) return `$${value.toFixed(2)}`;
  const digits = Math.min(12, 1 - Math.floor(Math.log10(value)));
  return `$${value.toFixed(digits).replace(/0+$/, "")}`;
}

function Totals({ summary, wallet }) {
  const totals = summary.totals;
  const stat = (name, value, id) => html`<div class="stat"><span class="stat-label">${name}</span>
    <strong class="stat-value" data-testid=${id}>${value}</strong></div>`;
  return html`<div class="stats">
    ${stat(t("dash.spend"), usd(totals.spend_usd), "total-spend")}
    ${stat(t("dash.requests"), num(totals.requests), "total-requests")}
    ${stat(t("dash.tokens"), num(totals.total_tokens), "total-tokens")}
    ${stat(t("dash.errorRate"), totals.error_rate === null ? "—" : `${(totals.error_rate * 100).toFixed(1)}%`, "error-rate")}
    ${stat(t("dash.latency"), totals.latency_p50_ms === null ? "—" : `${num(Math.round(totals.latency_p50_ms))} ms`, "latency")}
    ${wallet ? stat(t("wallet.balance"), usd(wallet.balance_usd), "balance") : null}
  </div>`;
}

function Charts({ byModel, byKey, keyNames, granularity }) {
  const series = byModel.series;
  const labels = series.map((point) => label(point.start, granularity));
  const axis = (title, ticks) => ({ y: { beginAtZero: true, title: { display: true, text: title }, ticks } });
  const spendTotal = usd(byModel.totals.spend_usd);
  const top = (rows, name) => rows.slice(0, 8).map((row) => ({ name: name(row), spend: dollars(row.spend_usd), row }));
  const models = top(byModel.breakdown, (row) => row.model);
  const keys = top(byKey.breakdown, (row) => keyNames[row.key_id] || row.key_id);
  const bar = (rows, what) => ({
    type: "bar",
    data: { labels: rows.map((r) => r.name), datasets: [{ label: what, data: rows.map((r) => r.spend), backgroundColor: COLORS }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { callback: money } } } },
  });
  const listed = (rows) => rows.map((r) => `${r.name} ${usd(r.row.spend_usd)}`).join(", ") || t("dash.noData");
  return html`<div class="charts">
    <${ChartBox} id="chart-spend" title=${t("dash.spendOverTime")} summary=${t("dash.spendSummary", { total: spendTotal })}
      config=${{ type: "bar", data: { labels, datasets: [{ label: t("dash.spendUsd"), data: series.map((p) => dollars(p.spend_usd)), backgroundColor: COLORS[0] }] },
        options: { scales: axis("USD", { callback: money }) } }} />
    <${ChartBox} id="chart-requests" title=${t("dash.requestsOverTime")}
      summary=${t("dash.requestsSummary", { total: byModel.totals.requests, failed: byModel.totals.failed_requests })}
      config=${{ type: "bar", data: { labels, datasets: [
        { label: t("dash.successful"), data: series.map((p) => p.successful_requests), backgroundColor: COLORS[2] },
        { label: t("dash.failed"), data: series.map((p) => p.failed_requests), backgroundColor: COLORS[4] }] },
        options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } } }} />
    <${ChartBox} id="chart-tokens" title=${t("dash.tokensOverTime")} summary=${t("dash.tokensSummary", { total: byModel.totals.total_tokens })}
      config=${{ type: "line", data: { labels, datasets: [
        { label: t("dash.promptTokens"), data: series.map((p) => p.prompt_tokens), borderColor: COLORS[0], backgroundColor: COLORS[0], fill: false, tension: 0.2 },
        { label: t("dash.completionTokens"), data: series.map((p) => p.completion_tokens), borderColor: COLORS[1], backgroundColor: COLORS[1], fill: false, tension: 0.2 }] },
        options: { scales: axis(t("dash.tokens"), { precision: 0 }) } }} />
    <${ChartBox} id="chart-models" title=${t("dash.spendByModel")} summary=${listed(models)} config=${bar(models, t("dash.spendUsd"))} />
    <${ChartBox} id="chart-keys" title=${t("dash.spendByKey")} summary=${listed(keys)} config=${bar(keys, t("dash.spendUsd"))} />
  </div>`;
}

function RequestLog({ query, keys }) {
  const [filters, setFilters] = useState({ key_id: "", model: "", status: "" });
  const [applied, setApplied] = useState(filters);
  const pager = useCursor();
  const params = new URLSearchParams(query);
  for (const [name, value] of Object.entries(applied)) if (value) params.set(name, value);
  const logQuery = new URLSearchParams(params);
  logQuery.set("limit", "20");
  if (pager.cursor) logQuery.set("cursor", pager.cursor);
  const [data, error, loading] = useLoad(() => api("GET", `/api/usage/logs?${logQuery}`), [logQuery.toString()]);
  const apply = (e) => { e.preventDefault(); pager.reset(); setApplied(filters); };
  const set = (name) => (value) => setFilters({ ...filters, [name]: value });
  return html`<div class="card">
    <div class="page-head"><h2 id="log-title">${t("dash.log")}</h2>
      <a href=${apiUrl(`/api/usage/export.csv?${params}`)} download="tokenway-usage.csv">${t("dash.export")}</a></div>
    <form class="filters" onSubmit=${apply}>
      <${Field} label=${t("dash.key")} name="key_id" type="select" value=${filters.key_id} onInput=${set("key_id")} error=${error}>
        <option value="">${t("common.all")}</option>
        ${keys.map((k) => html`<option value=${k.id}>${k.name} (${k.hint})</option>`)}
      <//>
      <${Field} label=${t("dash.model")} name="model" value=${filters.model} onInput=${set("model")} error=${error} placeholder="deepseek-chat" />
      <${Field} label=${t("dash.status")} name="status" type="select" value=${filters.status} onInput=${set("status")} error=${error}>
        <option value="">${t("common.all")}</option>
        <option value="success">${t("dash.successful")}</option>
        <option value="error">${t("dash.failed")}</option>
      <//>
      <button type="submit">${t("common.apply")}</button>
    </form>
    ${loading && !data ? html`<${Loading} />` : error && !["key_id", "model", "status"].includes(error.param) ? html`<${ErrorText} error=${error} />`
      : !data || data.data.length === 0 ? html`<${Empty} text=${t("dash.noRequests")} />` : html`
      <div class="table-wrap"><table aria-labelledby="log-title">
        <thead><tr>${["time", "model", "key", "status", "prompt", "completion", "cost", "latency"].map((c) =>
          html`<th scope="col">${t(`dash.col.${c}`)}</th>`)}</tr></thead>
        <tbody>${data.data.map((row) => html`<tr>
          <td>${when(row.time)}</td><td>${row.model}</td>
          <td>${(keys.find((k) => k.id === row.key_id) || {}).name || row.key_id}</td>
          <td><span class=${`badge ${row.status < 300 ? "active" : "disabled"}`}>${row.status}${row.error_type ? ` ${row.error_type}` : ""}</span></td>
          <td>${num(row.prompt_tokens)}</td><td>${num(row.completion_tokens)}</td><td>${usd(row.cost_usd)}</td>
          <td>${row.latency_ms === null ? "—" : `${num(row.latency_ms)} ms`}</td></tr>`)}</tbody>
      </table></div>
      <${Pager} pager=${pager} nextCursor=${data.next_cursor} />`}
  </div>`;
}

export function Dashboard() {
  const [filters, setFilters] = useState({ range: "7d", tz: ZONES[0], granularity: "day", from: day(ZONES[0], -6), to: day(ZONES[0]), anchor: Date.now() });
  const query = rangeQuery(filters);
  query.set("granularity", filters.granularity);
  const [data, error, loading] = useLoad(() => Promise.all([
    api("GET", `/api/usage/summary?${query}&group_by=model`),
    api("GET", `/api/usage/summary?${query}&group_by=key`),
    api("GET", "/api/wallet"),
    api("GET", "/api/tokens"),
  ]), [query.toString()]);
  const set = (name) => (value) => {
    const next = { ...filters, [name]: value };
    if (name === "range") { next.granularity = value === "24h" ? "hour" : "day"; next.anchor = Date.now(); }
    setFilters(next);
  };
  const keys = data ? data[3].data : [];
  const keyNames = Object.fromEntries(keys.map((k) => [k.id, k.name]));
  const logQuery = rangeQuery(filters);
  return html`<section aria-labelledby="dash-title" aria-busy=${loading ? "true" : "false"}>
    <h1 id="dash-title">${t("title.dashboard")}</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()} aria-label=${t("dash.filters")}>
      <${Field} label=${t("dash.range")} name="range" type="select" value=${filters.range} onInput=${set("range")}>
        ${["24h", "7d", "30d", "custom"].map((r) => html`<option value=${r}>${t(`dash.range.${r}`)}</option>`)}
      <//>
      ${filters.range === "custom" ? html`
        <${Field} label=${t("dash.from")} name="from" type="date" value=${filters.from} onInput=${set("from")} error=${error} />
        <${Field} label=${t("dash.to")} name="to" type="date" value=${filters.to} onInput=${set("to")} error=${error} />` : null}
      <${Field} label=${t("dash.granularity")} name="granularity" type="select" value=${filters.granularity} onInput=${set("granularity")}>
        <option value="hour">${t("dash.hour")}</option><option value="day">${t("dash.day")}</option>
      <//>
      <${Field} label=${t("dash.tz")} name="tz" type="select" value=${filters.tz} onInput=${set("tz")}>
        ${ZONES.map((z) => html`<option value=${z}>${z}</option>`)}
      <//>
    </form>
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : html`
      <${Totals} summary=${data[0]} wallet=${data[2]} />
      ${data[0].totals.requests === 0 ? html`<${Empty} text=${t("dash.noUsage")} />` : html`
        <${Charts} byModel=${data[0]} byKey=${data[1]} keyNames=${keyNames} granularity=${data[0].granularity} />`}
      <${RequestLog} query=${logQuery.toString()} keys=${keys} />`}
  </section>`;
}
