// Administration (an admin-role session): accounts, channels and their health, models and prices, plans
// and limits, top-up orders needing review, redemption codes, and usage over all accounts.
import { html, useState } from "../vendor/preact-htm.js";
import {
  api, Confirm, CopyButton, Dialog, Empty, ErrorText, Field, FormError, Loading, num, t, usd, useForm,
  useLoad, when,
} from "../lib.js";

const TABS = ["accounts", "channels", "models", "plans", "topups", "codes", "usage"];
const Table = ({ label, head, children }) => html`<div class="table-wrap"><table aria-label=${label}>
  <thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${children}</tbody></table></div>`;

function Credit({ account, onClose, onDone }) {
  const form = useForm({ amount_usd: "", note: "" });
  const save = form.submit(async (v) => {
    if (!v.note.trim()) throw { message: t("admin.reasonNeeded"), param: "note" };
    onDone(await api("POST", `/admin/accounts/${account.account_id}/credit`, { amount_usd: v.amount_usd.trim(), note: v.note.trim() }));
  });
  return html`<${Dialog} title=${t("admin.creditTitle", { email: account.email })} onClose=${onClose}>
    <form onSubmit=${save} novalidate>
      <${Field} label=${t("admin.amount")} name="amount_usd" inputmode="decimal" value=${form.values.amount_usd} onInput=${form.set("amount_usd")} error=${form.error} />
      <${Field} label=${t("admin.reason")} name="note" value=${form.values.note} onInput=${form.set("note")} error=${form.error} />
      <${FormError} error=${form.error} fields=${["amount_usd", "note"]} />
      <div class="actions"><button type="button" class="secondary" onClick=${onClose}>${t("common.cancel")}</button>
        <button type="submit" disabled=${form.busy}>${t("admin.credit")}</button></div>
    </form>
  <//>`;
}

function Plans({ account, groups, onClose, onDone }) {
  const form = useForm({ groups: account.groups.join(", "), default_plan: account.default_plan });
  const save = form.submit(async (v) => {
    const names = v.groups.split(/[\s,]+/).filter(Boolean);
    onDone(await api("PATCH", `/admin/accounts/${account.account_id}`, { groups: names, default_plan: v.default_plan }));
  });
  return html`<${Dialog} title=${t("admin.plansTitle", { email: account.email })} onClose=${onClose}>
    <form onSubmit=${save} novalidate>
      <${Field} label=${t("admin.groups")} name="groups" value=${form.values.groups} onInput=${form.set("groups")} error=${form.error}
        hint=${t("admin.groupsHint", { names: (groups || []).map((g) => g.name).join(", ") })} />
      <div class="field"><label><input type="checkbox" checked=${form.values.default_plan}
        onChange=${(e) => form.set("default_plan")(e.target.checked)} /> ${t("admin.defaultPlan")}</label></div>
      <${FormError} error=${form.error} fields=${["groups"]} />
      <div class="actions"><button type="button" class="secondary" onClick=${onClose}>${t("common.cancel")}</button>
        <button type="submit" disabled=${form.busy}>${t("common.save")}</button></div>
    </form>
  <//>`;
}

function Accounts() {
  const [search, setSearch] = useState("");
  const [applied, setApplied] = useState("");
  const [data, error, loading, reload] = useLoad(() => api("GET", `/admin/accounts${applied ? `?search=${encodeURIComponent(applied)}` : ""}`), [applied]);
  const [groups] = useLoad(() => api("GET", "/admin/groups").then((r) => r.data));
  const [dialog, setDialog] = useState(null);
  const [notice, setNotice] = useState(null);
  const done = (text) => () => { setDialog(null); setNotice(text); reload(); };
  return html`<div>
    <form class="filters" role="search" onSubmit=${(e) => { e.preventDefault(); setApplied(search.trim()); }}>
      <${Field} label=${t("admin.searchAccounts")} name="search" type="search" value=${search} onInput=${setSearch} />
      <button type="submit">${t("common.search")}</button>
    </form>
    ${notice ? html`<p class="notice" role="status">${notice}</p>` : null}
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : data.data.length === 0 ? html`<${Empty} text=${t("admin.noAccounts")} />` : html`
      <${Table} label=${t("admin.tab.accounts")} head=${[t("auth.email"), t("account.role"), t("wallet.status"), t("admin.groups"), t("wallet.created"), t("tokens.col.actions")]}>
        ${data.data.map((a) => html`<tr data-account=${a.account_id}>
          <th scope="row">${a.email}<br /><small class="hint">${a.account_id}</small></th>
          <td>${t(`role.${a.role}`)}</td><td><span class=${`badge ${a.status}`}>${t(`status.${a.status}`)}</span></td>
          <td>${[a.default_plan ? "default" : null, ...a.groups].filter(Boolean).join(", ")}</td>
          <td>${when(a.created_at)}</td>
          <td class="row-actions">
            <button type="button" class="link" aria-label=${t("admin.creditOf", { email: a.email })} onClick=${() => setDialog({ kind: "credit", a })}>${t("admin.credit")}</button>
            <button type="button" class="link" aria-label=${t("admin.plansOf", { email: a.email })} onClick=${() => setDialog({ kind: "plans", a })}>${t("admin.plans")}</button>
            <button type="button" class=${a.status === "active" ? "link danger" : "link"}
              aria-label=${t(a.status === "active" ? "admin.disableOf" : "admin.enableOf", { email: a.email })}
              onClick=${() => setDialog({ kind: "status", a })}>${a.status === "active" ? t("tokens.disable") : t("tokens.enable")}</button>
          </td></tr>`)}
      <//>`}
    ${dialog && dialog.kind === "credit" ? html`<${Credit} account=${dialog.a} onClose=${() => setDialog(null)}
      onDone=${(r) => done(t("admin.credited", { email: dialog.a.email, balance: usd(r.balance_usd) }))()} />` : null}
    ${dialog && dialog.kind === "plans" ? html`<${Plans} account=${dialog.a} groups=${groups} onClose=${() => setDialog(null)}
      onDone=${done(t("admin.saved"))} />` : null}
    ${dialog && dialog.kind === "status" ? html`<${Confirm} danger=${dialog.a.status === "active"}
      title=${t(dialog.a.status === "active" ? "admin.disableTitle" : "admin.enableTitle", { email: dialog.a.email })}
      text=${t(dialog.a.status === "active" ? "admin.disableText" : "admin.enableText")} onClose=${() => setDialog(null)}
      action=${() => api("PATCH", `/admin/accounts/${dialog.a.account_id}`, { status: dialog.a.status === "active" ? "disabled" : "active" })}
      onDone=${done(t("admin.saved"))} />` : null}
  </div>`;
}

function Channels() {
  const [data, error, loading, reload] = useLoad(() => api("GET", "/admin/channels"));
  const [rowError, setRowError] = useState(null);
  const force = async (name, state) => {
    setRowError(null);
    try { await api("POST", `/admin/channels/${encodeURIComponent(name)}/state`, { state }); reload(); }
    catch (err) { setRowError({ name, err }); }
  };
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  if (data.data.length === 0) return html`<${Empty} text=${t("admin.noChannels")} />`;
  return html`<${Table} label=${t("admin.tab.channels")} head=${[t("admin.channel"), t("admin.baseUrl"), t("admin.health"), t("admin.calls"), t("admin.success"), t("admin.meanLatency"), t("admin.force")]}>
    ${data.data.map((c) => html`<tr>
      <th scope="row">${c.name}<br /><small class="hint">${c.kind}</small></th><td><code>${c.base_url}</code></td>
      <td><span class=${`badge ${c.state}`}>${t(`breaker.${c.state}`)}</span>${c.forced ? html` <small>(${t("admin.forced")})</small>` : null}
        ${c.failures_in_window ? html`<br /><small>${t("admin.failures", { n: c.failures_in_window })}</small>` : null}</td>
      <td>${num(c.calls)}</td><td>${c.success_rate === null ? "—" : `${(c.success_rate * 100).toFixed(1)}%`}</td>
      <td>${c.mean_latency_ms === null ? "—" : `${num(Math.round(c.mean_latency_ms))} ms`}</td>
      <td><label class="visually-hidden" for=${`force-${c.name}`}>${t("admin.forceOf", { name: c.name })}</label>
        <select id=${`force-${c.name}`} value=${c.forced ? c.state : "auto"} onChange=${(e) => force(c.name, e.target.value)}>
          <option value="auto">${t("admin.auto")}</option><option value="open">${t("admin.forceOpen")}</option>
          <option value="closed">${t("admin.forceClosed")}</option></select>
        ${rowError && rowError.name === c.name ? html`<${ErrorText} error=${rowError.err} />` : null}</td></tr>`)}
  <//>`;
}

function ModelPrice({ model, onClose, onDone }) {
  const form = useForm({ input_per_1m: model.input_per_1m, output_per_1m: model.output_per_1m, cached_input_per_1m: model.cached_input_per_1m, per_image: model.per_image });
  const save = form.submit(async (v) => {
    // The API takes prices with a route; naming the last route's channel keeps the routes' order as it is.
    const channel = model.routes.length ? model.routes[model.routes.length - 1].channel : "";
    onDone(await api("POST", "/admin/models", { name: model.name, channel, ...v }));
  });
  const field = (name) => html`<${Field} label=${t(`admin.price.${name}`)} name=${name} inputmode="decimal" value=${form.values[name]} onInput=${form.set(name)} error=${form.error} />`;
  return html`<${Dialog} title=${t("admin.priceTitle", { name: model.name })} onClose=${onClose}>
    <form onSubmit=${save} novalidate>
      ${model.kind === "image" ? field("per_image") : html`${field("input_per_1m")}${field("cached_input_per_1m")}${model.kind === "chat" ? field("output_per_1m") : null}`}
      <${FormError} error=${form.error} fields=${["input_per_1m", "output_per_1m", "cached_input_per_1m", "per_image"]} />
      <div class="actions"><button type="button" class="secondary" onClick=${onClose}>${t("common.cancel")}</button>
        <button type="submit" disabled=${form.busy}>${t("common.save")}</button></div>
    </form>
  <//>`;
}

function ModelsTab() {
  const [data, error, loading, reload] = useLoad(() => api("GET", "/admin/models"));
  const [editing, setEditing] = useState(null);
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  return html`<${Table} label=${t("admin.tab.models")} head=${[t("models.col.model"), t("admin.routes"), t("models.col.input"), t("models.col.cached"), t("models.col.output"), t("admin.perImage"), t("models.col.context"), t("models.col.maxOutput"), t("tokens.col.actions")]}>
      ${data.data.map((m) => html`<tr>
        <th scope="row"><code>${m.name}</code>${m.routable ? null : html`<br /><small class="hint" title=${m.unroutable_reason}>${t("admin.unroutable")}</small>`}</th>
        <td>${m.routes.map((r) => r.channel).join(", ")}</td><td>${usd(m.input_per_1m)}</td><td>${usd(m.cached_input_per_1m)}</td>
        <td>${usd(m.output_per_1m)}</td><td>${usd(m.per_image)}</td>
        <td>${m.context_window ? num(m.context_window) : "—"}</td><td>${m.max_output_tokens ? num(m.max_output_tokens) : "—"}</td>
        <td><button type="button" class="link" aria-label=${t("admin.priceOf", { name: m.name })} onClick=${() => setEditing(m)}>${t("admin.prices")}</button></td></tr>`)}
    <//>
    ${editing ? html`<${ModelPrice} model=${editing} onClose=${() => setEditing(null)} onDone=${() => { setEditing(null); reload(); }} />` : null}`;
}

function PlansTab() {
  const [data, error, loading, reload] = useLoad(() => api("GET", "/admin/groups"));
  const form = useForm({ name: "", multiplier: "1", description: "" });
  const limits = useForm({ group: "", rpm: "", tpm: "", concurrency: "" });
  const [notice, setNotice] = useState(null);
  const create = form.submit(async (v) => {
    await api("POST", "/admin/groups", { name: v.name.trim(), multiplier: v.multiplier.trim(), description: v.description });
    setNotice(t("admin.planCreated", { name: v.name.trim() })); reload();
  });
  const setLimits = limits.submit(async (v) => {
    const n = (x) => (x === "" ? null : Number(x));
    await api("PUT", `/admin/groups/${encodeURIComponent(v.group)}/limits`, { rpm: n(v.rpm), tpm: n(v.tpm), concurrency: n(v.concurrency) });
    setNotice(t("admin.saved")); reload();
  });
  const limit = (x) => (x === null ? t("tokens.unlimited") : num(x));
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  return html`<div>
    ${notice ? html`<p class="notice" role="status">${notice}</p>` : null}
    <${Table} label=${t("admin.tab.plans")} head=${[t("models.plan"), t("admin.multiplier"), t("admin.planModels"), "RPM", "TPM", t("tokens.concurrency")]}>
      ${data.data.map((g) => html`<tr><th scope="row">${g.name}${g.description ? html`<br /><small class="hint">${g.description}</small>` : null}</th>
        <td>×${g.multiplier}</td><td>${g.models.length ? g.models.join(", ") : t("admin.allModels")}</td>
        <td>${limit(g.rpm)}</td><td>${limit(g.tpm)}</td><td>${limit(g.concurrency)}</td></tr>`)}
    <//>
    <h3>${t("admin.newPlan")}</h3>
    <form class="inline-form" onSubmit=${create} novalidate>
      <${Field} label=${t("admin.planName")} name="name" value=${form.values.name} onInput=${form.set("name")} error=${form.error} />
      <${Field} label=${t("admin.multiplier")} name="multiplier" inputmode="decimal" value=${form.values.multiplier} onInput=${form.set("multiplier")} error=${form.error} />
      <${Field} label=${t("admin.description")} name="description" value=${form.values.description} onInput=${form.set("description")} error=${form.error} />
      <button type="submit" disabled=${form.busy}>${t("admin.createPlan")}</button>
    </form>
    <${FormError} error=${form.error} fields=${["name", "multiplier", "description"]} />
    <h3>${t("admin.planLimits")}</h3>
    <form class="inline-form" onSubmit=${setLimits} novalidate>
      <${Field} label=${t("models.plan")} name="group" type="select" value=${limits.values.group} onInput=${limits.set("group")} error=${limits.error}>
        <option value="">—</option>${data.data.map((g) => html`<option value=${g.name}>${g.name}</option>`)}<//>
      <${Field} label="RPM" name="rpm" type="number" min="1" value=${limits.values.rpm} onInput=${limits.set("rpm")} error=${limits.error} />
      <${Field} label="TPM" name="tpm" type="number" min="1" value=${limits.values.tpm} onInput=${limits.set("tpm")} error=${limits.error} />
      <${Field} label=${t("tokens.concurrency")} name="concurrency" type="number" min="1" value=${limits.values.concurrency} onInput=${limits.set("concurrency")} error=${limits.error} />
      <button type="submit" disabled=${limits.busy}>${t("common.save")}</button>
    </form>
    <${FormError} error=${limits.error} fields=${["rpm", "tpm", "concurrency"]} />
  </div>`;
}

function Topups() {
  const [status, setStatus] = useState("review");
  const [data, error, loading, reload] = useLoad(() => api("GET", `/admin/topups?limit=50${status ? `&status=${status}` : ""}`), [status]);
  const [reviewing, setReviewing] = useState(null);
  const form = useForm({ note: "" });
  const review = form.submit(async (v) => {
    await api("POST", `/admin/topups/${reviewing.order_id}/review`, { note: v.note });
    setReviewing(null); reload();
  });
  return html`<div>
    <div class="filters"><${Field} label=${t("wallet.status")} name="order-status" type="select" value=${status} onInput=${setStatus}>
      <option value="">${t("common.all")}</option>
      ${["review", "pending", "paid", "disputed", "refunded", "partially_refunded", "expired"].map((s) => html`<option value=${s}>${t(`order.${s}`)}</option>`)}
    <//></div>
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : data.data.length === 0 ? html`<${Empty} text=${t("admin.noOrders")} />` : html`
      <${Table} label=${t("admin.tab.topups")} head=${[t("wallet.order"), t("admin.account"), t("wallet.status"), t("wallet.youPay"), t("wallet.credit"), t("wallet.created"), t("admin.why"), t("tokens.col.actions")]}>
        ${data.data.map((o) => html`<tr><th scope="row"><code>${o.order_id}</code></th><td><code>${o.account_id}</code></td>
          <td><span class=${`badge ${o.status}`}>${t(`order.${o.status}`)}</span></td><td>${usd(o.pay_usd)}</td><td>${usd(o.credit_usd)}</td>
          <td>${when(o.created_at)}</td><td>${o.review_reason || "—"}${o.note ? html`<br /><small>${o.note}</small>` : null}</td>
          <td>${o.reviewed_at ? html`<small>${t("admin.reviewed", { when: when(o.reviewed_at) })}</small>` : o.status === "review" ? html`<button type="button" class="link" onClick=${() => setReviewing(o)}
            aria-label=${t("admin.reviewOf", { id: o.order_id })}>${t("admin.review")}</button>` : null}</td></tr>`)}
      <//>`}
    ${reviewing ? html`<${Dialog} title=${t("admin.reviewTitle")} onClose=${() => setReviewing(null)}>
      <p>${t("admin.reviewText", { credit: usd(reviewing.credit_usd) })}</p>
      <form onSubmit=${review} novalidate>
        <${Field} label=${t("admin.reason")} name="note" value=${form.values.note} onInput=${form.set("note")} error=${form.error} />
        <${FormError} error=${form.error} fields=${["note"]} />
        <div class="actions"><button type="button" class="secondary" onClick=${() => setReviewing(null)}>${t("common.cancel")}</button>
          <button type="submit" disabled=${form.busy}>${t("admin.approve")}</button></div>
      </form>
    <//>` : null}
  </div>`;
}

function Codes() {
  const [data, error, loading, reload] = useLoad(() => api("GET", "/admin/codes"));
  const form = useForm({ count: "1", value_usd: "", batch: "", note: "" });
  const [made, setMade] = useState(null);
  const create = form.submit(async (v) => {
    const body = { count: Number(v.count), value_usd: v.value_usd.trim() };
    if (v.batch.trim()) body.batch = v.batch.trim();
    if (v.note.trim()) body.note = v.note.trim();
    setMade((await api("POST", "/admin/codes", body)).data); reload();
  });
  const disable = async (code) => { await api("POST", `/admin/codes/${code.code_id}/disable`); reload(); };
  return html`<div>
    <form class="inline-form" onSubmit=${create} novalidate>
      <${Field} label=${t("admin.count")} name="count" type="number" min="1" value=${form.values.count} onInput=${form.set("count")} error=${form.error} />
      <${Field} label=${t("admin.value")} name="value_usd" inputmode="decimal" value=${form.values.value_usd} onInput=${form.set("value_usd")} error=${form.error} />
      <${Field} label=${t("admin.batch")} name="batch" value=${form.values.batch} onInput=${form.set("batch")} error=${form.error} />
      <${Field} label=${t("admin.note")} name="note" value=${form.values.note} onInput=${form.set("note")} error=${form.error} />
      <button type="submit" disabled=${form.busy}>${t("admin.createCodes")}</button>
    </form>
    <${FormError} error=${form.error} fields=${["count", "value_usd", "batch", "note"]} />
    ${made ? html`<div class="warning" role="status"><p>${t("admin.codesOnce")}</p>
      <pre id="new-codes">${made.map((c) => c.code).join("\n")}</pre>
      <${CopyButton} text=${made.map((c) => c.code).join("\n")} label=${t("admin.copyCodes")} /></div>` : null}
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : data.data.length === 0 ? html`<${Empty} text=${t("admin.noCodes")} />` : html`
      <${Table} label=${t("admin.tab.codes")} head=${[t("admin.code"), t("admin.value"), t("wallet.status"), t("admin.batch"), t("wallet.created"), t("admin.redeemedBy"), t("tokens.col.actions")]}>
        ${data.data.map((c) => html`<tr><th scope="row"><code>${c.hint}</code></th><td>${usd(c.value_usd)}</td>
          <td><span class=${`badge ${c.status}`}>${t(`code.${c.status}`)}</span></td><td>${c.batch || "—"}</td><td>${when(c.created_at)}</td>
          <td>${c.redeemed_by || "—"}</td>
          <td>${c.status === "active" ? html`<button type="button" class="link danger" onClick=${() => disable(c)}
            aria-label=${t("admin.disableCode", { hint: c.hint })}>${t("tokens.disable")}</button>` : null}</td></tr>`)}
      <//>`}
  </div>`;
}

function Usage() {
  const [groupBy, setGroupBy] = useState("account");
  const [data, error, loading] = useLoad(() => api("GET", `/admin/usage/summary?group_by=${groupBy}`), [groupBy]);
  return html`<div>
    <div class="filters"><${Field} label=${t("admin.groupBy")} name="usage-group" type="select" value=${groupBy} onInput=${setGroupBy}>
      ${["account", "model", "key", "channel"].map((g) => html`<option value=${g}>${t(`admin.by.${g}`)}</option>`)}<//></div>
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : html`
      <div class="stats">
        <div class="stat"><span class="stat-label">${t("dash.spend")}</span><strong class="stat-value" data-testid="admin-spend">${usd(data.totals.spend_usd)}</strong></div>
        <div class="stat"><span class="stat-label">${t("dash.requests")}</span><strong class="stat-value" data-testid="admin-requests">${num(data.totals.requests)}</strong></div>
        <div class="stat"><span class="stat-label">${t("dash.tokens")}</span><strong class="stat-value">${num(data.totals.total_tokens)}</strong></div>
      </div>
      ${data.breakdown.length === 0 ? html`<${Empty} text=${t("dash.noUsage")} />` : html`
      <${Table} label=${t("admin.tab.usage")} head=${[t(`admin.by.${groupBy}`), t("dash.requests"), t("dash.failed"), t("dash.tokens"), t("dash.spend")]}>
        ${data.breakdown.map((row) => html`<tr><th scope="row"><code>${row[groupBy === "key" ? "key_id" : groupBy] ?? "—"}</code></th>
          <td>${num(row.requests)}</td><td>${num(row.failed_requests)}</td><td>${num(row.total_tokens)}</td><td>${usd(row.spend_usd)}</td></tr>`)}
      <//>`}`}
  </div>`;
}

const PANELS = { accounts: Accounts, channels: Channels, models: ModelsTab, plans: PlansTab, topups: Topups, codes: Codes, usage: Usage };

export function Admin({ route, me }) {
  if (me.role !== "admin") return html`<h1>${t("title.admin")}</h1><p class="error" role="alert">${t("admin.only")}</p>`;
  const tab = TABS.includes(route.rest[0]) ? route.rest[0] : "accounts";
  const Panel = PANELS[tab];
  return html`<section aria-labelledby="admin-title">
    <h1 id="admin-title">${t("title.admin")}</h1>
    <nav class="tabs" aria-label=${t("title.admin")}>
      ${TABS.map((name) => html`<a href=${`#/admin/${name}`} class="tab" aria-current=${name === tab ? "page" : undefined}>${t(`admin.tab.${name}`)}</a>`)}
    </nav>
    <div class="card"><h2>${t(`admin.tab.${tab}`)}</h2><${Panel} /></div>
  </section>`;
}
