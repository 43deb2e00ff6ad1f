// Token Management: the keys, Add Token (the secret shown once), edit, disable/enable, regenerate, revoke,
// and each key's usage and limits.
import { html, useState } from "../vendor/preact-htm.js";
import {
  api, Confirm, CopyButton, Dialog, Empty, ErrorText, Field, FormError, Loading, num, t, usd, useForm, useLoad, when,
} from "../lib.js";

const LIMITS = ["rpm_limit", "tpm_limit", "concurrency_limit"];
const FIELDS = ["name", "group", "expires_at", "quota_usd", "models", "allowed_ips", ...LIMITS];

const list = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
const localInput = (iso) => {
  if (!iso) return "";
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

/** The form's values as the API takes them: an empty field is null (no expiry, no quota, no limit). */
function body(values) {
  const out = {
    name: values.name.trim(),
    expires_at: values.expires_at ? new Date(values.expires_at).toISOString() : null,
    quota_usd: values.quota_usd.trim() || null,
    models: list(values.models),
    allowed_ips: list(values.allowed_ips),
  };
  if (values.group) out.group = values.group;
  for (const name of LIMITS) out[name] = values[name] === "" ? null : Number(values[name]);
  return out;
}

function formValues(key) {
  return {
    name: key ? key.name : "", group: key ? key.group : "", expires_at: key ? localInput(key.expires_at) : "",
    quota_usd: key && key.quota_usd !== null ? key.quota_usd : "",
    models: key ? key.models.join(", ") : "", allowed_ips: key ? key.allowed_ips.join(", ") : "",
    rpm_limit: key && key.rpm_limit !== null ? String(key.rpm_limit) : "",
    tpm_limit: key && key.tpm_limit !== null ? String(key.tpm_limit) : "",
    concurrency_limit: key && key.concurrency_limit !== null ? String(key.concurrency_limit) : "",
  };
}

function KeyForm({ keyItem, groups, onSaved, onClose }) {
  const form = useForm(formValues(keyItem));
  const v = form.values;
  const save = form.submit(async (values) => {
    const sent = body(values);
    const saved = keyItem ? await api("PATCH", `/api/tokens/${keyItem.id}`, sent) : await api("POST", "/api/tokens", sent);
    onSaved(saved);
  });
  const field = (name, extra = {}) => html`<${Field} label=${t(`tokens.${name}`)} name=${name} value=${v[name]}
    onInput=${form.set(name)} error=${form.error} ...${extra} />`;
  return html`<${Dialog} title=${keyItem ? t("tokens.editTitle") : t("tokens.addTitle")} onClose=${onClose} wide>
    <form onSubmit=${save} novalidate class="grid-form">
      ${field("name", { required: true, maxlength: 50, placeholder: t("tokens.namePlaceholder") })}
      <${Field} label=${t("tokens.group")} name="group" type="select" value=${v.group} onInput=${form.set("group")}
        error=${form.error} hint=${t("tokens.groupHint")}>
        ${keyItem ? null : html`<option value="">${t("tokens.groupDefault")}</option>`}
        ${(groups || []).map((g) => html`<option value=${g.name}>${g.name}${g.description ? ` — ${g.description}` : ""}</option>`)}
      <//>
      ${field("expires_at", { type: "datetime-local", hint: t("tokens.expiresHint") })}
      ${field("quota_usd", { inputmode: "decimal", placeholder: "10.00", hint: t("tokens.quotaHint") })}
      ${field("models", { placeholder: "deepseek-chat, gpt-4o", hint: t("tokens.modelsHint") })}
      ${field("allowed_ips", { placeholder: "203.0.113.0/24", hint: t("tokens.ipsHint") })}
      ${LIMITS.map((name) => field(name, { type: "number", min: 1, inputmode: "numeric", hint: t("tokens.limitHint") }))}
      <${FormError} error=${form.error} fields=${FIELDS} />
      <div class="actions wide-row">
        <button type="button" class="secondary" onClick=${onClose}>${t("common.cancel")}</button>
        <button type="submit" disabled=${form.busy}>${keyItem ? t("common.save") : t("tokens.create")}</button>
      </div>
    </form>
  <//>`;
}

/** The secret of a created or regenerated key: here once, never again. */
function SecretDialog({ created, onClose }) {
  return html`<${Dialog} title=${t("tokens.secretTitle")} onClose=${onClose}>
    <p class="warning" role="alert">${t("tokens.secretWarning")}</p>
    <p>${t("tokens.secretFor", { name: created.name })}</p>
    <div class="secret-row">
      <code id="new-secret" class="secret" aria-label=${t("tokens.secretLabel")}>${created.key}</code>
      <${CopyButton} text=${created.key} label=${t("tokens.copySecret")} />
    </div>
    <p class="hint">${t("tokens.secretUse")}</p>
    <div class="actions"><button type="button" onClick=${onClose}>${t("tokens.secretDone")}</button></div>
  <//>`;
}

function KeyDetails({ keyItem, onClose }) {
  const [data, error, loading] = useLoad(() => Promise.all([
    api("GET", `/api/tokens/${keyItem.id}/usage`), api("GET", `/api/tokens/${keyItem.id}/limits`)]), [keyItem.id]);
  const limit = (value) => (value === null || value === undefined ? t("tokens.unlimited") : num(value));
  return html`<${Dialog} title=${t("tokens.detailsTitle", { name: keyItem.name })} onClose=${onClose} wide>
    ${loading ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : html`
      <h3>${t("tokens.usage")}</h3>
      <dl class="facts">
        <dt>${t("dash.requests")}</dt><dd>${num(data[0].requests)}</dd>
        <dt>${t("dash.promptTokens")}</dt><dd>${num(data[0].prompt_tokens)}</dd>
        <dt>${t("dash.completionTokens")}</dt><dd>${num(data[0].completion_tokens)}</dd>
        <dt>${t("tokens.spent")}</dt><dd>${usd(data[0].spent_usd)}</dd>
        <dt>${t("tokens.lastUsed")}</dt><dd>${when(data[0].last_used_at)}</dd>
      </dl>
      <h3>${t("tokens.limits")}</h3>
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">${t("tokens.scope")}</th><th scope="col">RPM</th><th scope="col">TPM</th>
          <th scope="col">${t("tokens.concurrency")}</th></tr></thead>
        <tbody>${data[1].data.map((row) => html`<tr>
          <th scope="row">${row.scope === "key" ? t("tokens.scopeKey") : row.model}</th>
          <td>${limit(row.rpm)}</td><td>${limit(row.tpm)}</td><td>${limit(row.concurrency)}</td></tr>`)}</tbody>
      </table></div>`}
    <div class="actions"><button type="button" onClick=${onClose}>${t("common.close")}</button></div>
  <//>`;
}

export function Tokens() {
  const [data, error, loading, reload] = useLoad(() => api("GET", "/api/tokens"));
  const [groups] = useLoad(() => api("GET", "/api/groups").then((r) => r.data));
  const [dialog, setDialog] = useState(null);
  const [rowError, setRowError] = useState(null);
  const close = () => setDialog(null);
  const toggle = async (key) => {
    setRowError(null);
    try { await api("PATCH", `/api/tokens/${key.id}`, { enabled: key.status !== "active" }); reload(); }
    catch (err) { setRowError({ id: key.id, error: err }); }
  };
  const keys = data ? data.data : [];
  const limits = (key) => LIMITS.some((n) => key[n] !== null)
    ? [key.rpm_limit && `${num(key.rpm_limit)} RPM`, key.tpm_limit && `${num(key.tpm_limit)} TPM`,
      key.concurrency_limit && `${num(key.concurrency_limit)} ${t("tokens.concurrent")}`].filter(Boolean).join(" · ")
    : t("tokens.planLimits");
  return html`<section aria-labelledby="tokens-title">
    <div class="page-head">
      <h1 id="tokens-title">${t("title.tokens")}</h1>
      <button type="button" onClick=${() => setDialog({ kind: "add" })}>${t("tokens.add")}</button>
    </div>
    <p class="hint">${t("tokens.intro")}</p>
    ${loading && !data ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />`
      : keys.length === 0 ? html`<${Empty} text=${t("tokens.empty")} />` : html`
      <div class="table-wrap"><table class="keys">
        <caption class="visually-hidden">${t("title.tokens")}</caption>
        <thead><tr>
          ${["name", "hint", "group", "status", "created", "lastUsed", "expires", "quota", "spent", "limits", "actions"]
            .map((c) => html`<th scope="col">${t(`tokens.col.${c}`)}</th>`)}
        </tr></thead>
        <tbody>${keys.map((key) => html`<tr data-key=${key.id}>
          <th scope="row">${key.name}</th>
          <td><code>${key.hint}</code></td>
          <td>${key.group}</td>
          <td><span class=${`badge ${key.status}`}>${t(`status.${key.status}`)}</span></td>
          <td>${when(key.created_at)}</td>
          <td>${when(key.last_used_at)}</td>
          <td>${key.expires_at ? when(key.expires_at) : t("tokens.never")}</td>
          <td>${key.quota_usd === null ? t("tokens.unlimited")
            : t("tokens.quotaLeft", { left: usd(key.quota_left_usd), total: usd(key.quota_usd) })}</td>
          <td>${usd(key.spent_usd)}</td>
          <td>${limits(key)}</td>
          <td class="row-actions">
            <button type="button" class="link" aria-label=${t("tokens.detailsOf", { name: key.name })}
              onClick=${() => setDialog({ kind: "details", key })}>${t("tokens.details")}</button>
            <button type="button" class="link" aria-label=${t("tokens.editOf", { name: key.name })}
              onClick=${() => setDialog({ kind: "edit", key })}>${t("common.edit")}</button>
            <button type="button" class="link" onClick=${() => toggle(key)}
              aria-label=${t(key.status === "active" ? "tokens.disableOf" : "tokens.enableOf", { name: key.name })}>
              ${key.status === "active" ? t("tokens.disable") : t("tokens.enable")}</button>
            <button type="button" class="link" aria-label=${t("tokens.regenerateOf", { name: key.name })}
              onClick=${() => setDialog({ kind: "regenerate", key })}>${t("tokens.regenerate")}</button>
            <button type="button" class="link danger" aria-label=${t("tokens.revokeOf", { name: key.name })}
              onClick=${() => setDialog({ kind: "revoke", key })}>${t("tokens.revoke")}</button>
            ${rowError && rowError.id === key.id ? html`<${ErrorText} error=${rowError.error} />` : null}
          </td>
        </tr>`)}</tbody>
      </table></div>`}
    ${dialog && dialog.kind === "add" ? html`<${KeyForm} groups=${groups} onClose=${close}
        onSaved=${(created) => { reload(); setDialog({ kind: "secret", created }); }} />` : null}
    ${dialog && dialog.kind === "edit" ? html`<${KeyForm} keyItem=${dialog.key} groups=${groups} onClose=${close}
        onSaved=${() => { reload(); close(); }} />` : null}
    ${dialog && dialog.kind === "secret" ? html`<${SecretDialog} created=${dialog.created} onClose=${close} />` : null}
    ${dialog && dialog.kind === "details" ? html`<${KeyDetails} keyItem=${dialog.key} onClose=${close} />` : null}
    ${dialog && dialog.kind === "regenerate" ? html`<${Confirm} title=${t("tokens.regenerateTitle")}
        text=${t("tokens.regenerateText", { name: dialog.key.name })} onClose=${close}
        action=${() => api("POST", `/api/tokens/${dialog.key.id}/regenerate`)}
        onDone=${(created) => { reload(); setDialog({ kind: "secret", created }); }} />` : null}
    ${dialog && dialog.kind === "revoke" ? html`<${Confirm} title=${t("tokens.revokeTitle")} danger
        text=${t("tokens.revokeText", { name: dialog.key.name })} onClose=${close}
        action=${() => api("DELETE", `/api/tokens/${dialog.key.id}`)} onDone=${() => { reload(); close(); }} />` : null}
  </section>`;
}
