// What every page shares: the API client, translations, formatting and small components.
import { html, useEffect, useRef, useState } from "./vendor/preact-htm.js";
import { en } from "./i18n/en.js";
import { zh } from "./i18n/zh.js";

export { html };

// The console may be served under a path prefix (an API Gateway stage): every URL is relative to the page.
export const BASE = new URL(".", document.baseURI);
export const apiUrl = (path) => new URL(path.replace(/^\//, ""), BASE).toString();

// The CSRF token of the session is kept for this tab only; the session itself is an HttpOnly cookie.
const CSRF_KEY = "tokenway.csrf";
export const setCsrf = (token) => token ? sessionStorage.setItem(CSRF_KEY, token) : sessionStorage.removeItem(CSRF_KEY);

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.param = error.param || null;
    this.code = error.code || null;
  }
}

let onUnauthorized = () => {};
export const whenUnauthorized = (handler) => { onUnauthorized = handler; };

/** Calls the console API; the parsed JSON (null for 204), or throws ApiError with the API's message. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = sessionStorage.getItem(CSRF_KEY) || "";
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { message: t("error.network") });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (!response.ok) {
    const error = new ApiError(response.status, (data && data.error) || { message: text || `HTTP ${response.status}` });
    // A dead session, or a tab that never logged in (the cookie is shared, the CSRF token is not): log in here.
    if ((response.status === 401 && !path.startsWith("/api/auth/")) || error.code === "csrf_failed") onUnauthorized();
    throw error;
  }
  return data;
}

// Translations: English and Simplified Chinese; the choice is kept in localStorage (it is not a secret).
const LANG_KEY = "tokenway.lang";
const DICTS = { en, zh };
let lang = (() => {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && DICTS[saved]) return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en";
})();
document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
export const getLang = () => lang;
export function setLang(value) {
  lang = value;
  localStorage.setItem(LANG_KEY, value);
  document.documentElement.lang = value === "zh" ? "zh-CN" : "en";
}
export function t(key, params) {
  let text = DICTS[lang][key] ?? en[key] ?? key;
  for (const [name, value] of Object.entries(params || {})) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

// Money arrives as decimal USD strings ("22.000000001"): shown as typed, never through a float.
export function usd(text) {
  if (text === null || text === undefined) return "—";
  const negative = String(text).startsWith("-");
  const [whole, frac = ""] = String(text).replace("-", "").split(".");
  let shown = frac.replace(/0+$/, "");
  if (shown.length < 2) shown = shown.padEnd(2, "0");
  return `${negative ? "-" : ""}$${Number(whole).toLocaleString("en-US")}.${shown}`;
}
export const num = (value) => (value === null || value === undefined ? "—" : Number(value).toLocaleString());
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(lang === "zh" ? "zh-CN" : "en-US", { dateStyle: "medium", timeStyle: "short" });
}

/** Loads `load()` whenever `deps` change: [data, error, loading, reload]. */
export function useLoad(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    load().then((data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }));
    return () => { live = false; };
  }, [...deps, tick]);
  return [state.data, state.error, state.loading, () => setTick((n) => n + 1)];
}

export const Loading = () => html`<p class="loading" role="status">${t("common.loading")}</p>`;
export const Empty = ({ text }) => html`<p class="empty">${text}</p>`;
export const ErrorText = ({ error, id }) => error
  ? html`<p class="error" role="alert" id=${id}>${error.message || String(error)}</p>` : null;

/** A labelled input; the API's error is shown under the field it names. */
export function Field({ label, name, error, hint, type = "text", value, onInput, children, ...rest }) {
  const id = `f-${name}`;
  const own = error && error.param === name ? error : null;
  const described = own ? `${id}-error` : hint ? `${id}-hint` : undefined;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${type === "select"
      ? html`<select id=${id} name=${name} value=${value} onChange=${(e) => onInput(e.target.value)}
          aria-describedby=${described} ...${rest}>${children}</select>`
      : type === "textarea"
        ? html`<textarea id=${id} name=${name} value=${value} onInput=${(e) => onInput(e.target.value)}
            aria-invalid=${own ? "true" : undefined} aria-describedby=${described} ...${rest}></textarea>`
        : html`<input id=${id} name=${name} type=${type} value=${value} onInput=${(e) => onInput(e.target.value)}
            aria-invalid=${own ? "true" : undefined} aria-describedby=${described} ...${rest} />`}
    ${hint && !own ? html`<small id=${`${id}-hint`} class="hint">${hint}</small>` : null}
    ${own ? html`<p class="error" role="alert" id=${`${id}-error`}>${own.message}</p>` : null}
  </div>`;
}

/** The form's error when no field of it is named by the API. */
export const FormError = ({ error, fields = [] }) =>
  error && !fields.includes(error.param) ? html`<p class="error" role="alert">${error.message}</p>` : null;

export function CopyButton({ text, label }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try { await navigator.clipboard.writeText(text); setDone(true); setTimeout(() => setDone(false), 2000); }
    catch (err) { setDone(false); }
  };
  return html`<button type="button" class="secondary" onClick=${copy}>${done ? t("common.copied") : (label || t("common.copy"))}</button>`;
}

/** A modal dialog (the browser's own <dialog>: focus stays inside, Escape closes it). */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    const cancel = (e) => { e.preventDefault(); onClose(); };
    dialog.addEventListener("cancel", cancel);
    return () => dialog.removeEventListener("cancel", cancel);
  }, []);
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} aria-labelledby="dialog-title">
    <h2 id="dialog-title">${title}</h2>
    ${children}
  </dialog>`;
}

/** Asks before an action that cannot be undone; shows the API's refusal in the dialog. */
export function Confirm({ title, text, action, danger, onDone, onClose }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true);
    try { const result = await action(); onDone(result); } catch (err) { setError(err); setBusy(false); }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <p>${text}</p>
    <${ErrorText} error=${error} />
    <div class="actions">
      <button type="button" class="secondary" onClick=${onClose}>${t("common.cancel")}</button>
      <button type="button" class=${danger ? "danger" : ""} disabled=${busy} onClick=${run}>${t("common.confirm")}</button>
    </div>
  <//>`;
}

/** "Previous / next" over cursor pages: the cursors of the pages seen so far. */
export function useCursor() {
  const [stack, setStack] = useState([null]);
  return {
    cursor: stack[stack.length - 1],
    page: stack.length,
    next: (cursor) => setStack([...stack, cursor]),
    prev: () => setStack(stack.slice(0, -1)),
    reset: () => setStack([null]),
  };
}

export const Pager = ({ pager, nextCursor }) => html`<nav class="pager" aria-label=${t("common.pages")}>
  <button type="button" class="secondary" disabled=${pager.page === 1} onClick=${pager.prev}>${t("common.prev")}</button>
  <span>${t("common.page", { n: pager.page })}</span>
  <button type="button" class="secondary" disabled=${!nextCursor} onClick=${() => pager.next(nextCursor)}>${t("common.next")}</button>
</nav>`;

export const navigate = (route) => { location.hash = `#/${route}`; };

/** A form's state: its values, the API's error and whether it is being sent. */
export function useForm(initial) {
  const [values, setValues] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (value) => setValues((v) => ({ ...v, [name]: value }));
  const submit = (action) => async (event) => {
    event.preventDefault();
    setBusy(true); setError(null);
    try { await action(values); } catch (err) { setError(err); } finally { setBusy(false); }
  };
  return { values, set, error, setError, busy, submit };
}

