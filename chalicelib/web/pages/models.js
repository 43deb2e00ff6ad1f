// Models and pricing: the manual's model guide, the models the customer's plan can call at its prices,
// and the plan's rate limits.
import { html, useState } from "../vendor/preact-htm.js";
import { api, Empty, ErrorText, Field, Loading, num, t, usd, useLoad } from "../lib.js";

// The manual's model selection guide: a use case, the models recommended for it, and why.
const GUIDE = [
  ["general", ["deepseek-chat", "qwen-plus"]],
  ["reasoning", ["deepseek-reasoner", "claude-sonnet"]],
  ["long", ["kimi-k2", "doubao-pro"]],
  ["chinese", ["glm-4", "qwen-max"]],
  ["multiturn", ["gpt-4o", "claude-sonnet"]],
];

const limit = (value) => (value === null || value === undefined ? t("tokens.unlimited") : num(value));

function Guide({ available }) {
  return html`<div class="card">
    <h2 id="guide-title">${t("models.guide")}</h2>
    <div class="table-wrap"><table aria-labelledby="guide-title">
      <thead><tr><th scope="col">${t("models.useCase")}</th><th scope="col">${t("models.recommended")}</th>
        <th scope="col">${t("models.notes")}</th></tr></thead>
      <tbody>${GUIDE.map(([useCase, names]) => html`<tr>
        <th scope="row">${t(`guide.${useCase}`)}</th>
        <td>${names.map((name, i) => html`${i ? ", " : ""}<code>${name}</code>${available.has(name) ? "" : html` <small class="hint">(${t("models.notHere")})</small>`}`)}</td>
        <td>${t(`guide.${useCase}.notes`)}</td></tr>`)}</tbody>
    </table></div>
    <p class="hint">${t("models.fallback")}</p>
  </div>`;
}

function Catalog({ plan }) {
  if (plan.models.length === 0) return html`<${Empty} text=${t("models.none")} />`;
  return html`<div class="table-wrap"><table aria-labelledby="catalog-title">
    <thead><tr>${["model", "useCase", "input", "cached", "output", "context", "maxOutput"].map((c) =>
      html`<th scope="col">${t(`models.col.${c}`)}</th>`)}</tr></thead>
    <tbody>${plan.models.map((m) => html`<tr data-model=${m.name}>
      <th scope="row"><code>${m.name}</code></th>
      <td>${m.use_case || "—"}</td>
      ${m.kind === "image" ? html`<td colspan="3">${t("models.perImage", { price: usd(m.per_image) })}</td>` : html`
        <td>${usd(m.input_per_1m)}</td>
        <td>${m.cached_input_per_1m === m.input_per_1m ? "—" : usd(m.cached_input_per_1m)}</td>
        <td>${m.kind === "embedding" ? "—" : usd(m.output_per_1m)}</td>`}
      <td>${m.context_window ? num(m.context_window) : "—"}</td>
      <td>${m.max_output_tokens ? num(m.max_output_tokens) : "—"}</td></tr>`)}</tbody>
  </table></div>`;
}

function Limits({ group }) {
  const perModel = Object.entries(group.model_limits || {});
  return html`<div class="card">
    <h2 id="limits-title">${t("models.limits", { plan: group.name })}</h2>
    <div class="table-wrap"><table aria-labelledby="limits-title">
      <thead><tr><th scope="col">${t("tokens.scope")}</th><th scope="col">${t("models.rpm")}</th>
        <th scope="col">${t("models.tpm")}</th><th scope="col">${t("models.concurrency")}</th></tr></thead>
      <tbody>
        <tr><th scope="row">${t("models.eachKey")}</th><td>${limit(group.rpm)}</td><td>${limit(group.tpm)}</td><td>${limit(group.concurrency)}</td></tr>
        ${perModel.map(([model, l]) => html`<tr><th scope="row"><code>${model}</code></th>
          <td>${limit(l.rpm)}</td><td>${limit(l.tpm)}</td><td>${limit(l.concurrency)}</td></tr>`)}
      </tbody>
    </table></div>
    <p class="hint">${t("models.timeout")}</p>
    <p class="hint">${t("models.limitHit")}</p>
  </div>`;
}

export function Models() {
  const [data, error, loading] = useLoad(() => api("GET", "/api/models"));
  const [chosen, setChosen] = useState(null);
  if (loading) return html`<h1>${t("title.models")}</h1><${Loading} />`;
  if (error) return html`<h1>${t("title.models")}</h1><${ErrorText} error=${error} />`;
  const plans = data.data;
  if (plans.length === 0) return html`<h1>${t("title.models")}</h1><${Empty} text=${t("models.noPlan")} />`;
  const plan = plans.find((p) => p.group.name === chosen) || plans[0];
  const available = new Set(plan.models.map((m) => m.name));
  return html`<section aria-labelledby="models-title">
    <h1 id="models-title">${t("title.models")}</h1>
    <${Guide} available=${available} />
    <div class="card">
      <div class="page-head">
        <h2 id="catalog-title">${t("models.catalog", { plan: plan.group.name })}</h2>
        ${plans.length > 1 ? html`<${Field} label=${t("models.plan")} name="plan" type="select" value=${plan.group.name}
            onInput=${setChosen}>${plans.map((p) => html`<option value=${p.group.name}>${p.group.name}</option>`)}<//>` : null}
      </div>
      <p class="hint">${t("models.pricesNote", { multiplier: plan.group.multiplier })}${plan.group.description ? ` ${plan.group.description}` : ""}</p>
      <${Catalog} plan=${plan} />
    </div>
    <${Limits} group=${plan.group} />
  </section>`;
}
