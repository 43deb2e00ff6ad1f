// The console's shell: who is logged in, the hash router (`#/tokens`), the navigation and the language switch.
import { html, render, useEffect, useState } from "./vendor/preact-htm.js";
import { api, getLang, navigate, setCsrf, setLang, t, whenUnauthorized } from "./lib.js";
import { ChangePassword, Forgot, Login, SetPassword, Signup } from "./pages/auth.js";
import { Tokens } from "./pages/tokens.js";
import { TopupResult, Wallet } from "./pages/wallet.js";
import { Dashboard } from "./pages/dashboard.js";
import { Models } from "./pages/models.js";
import { Quickstart } from "./pages/quickstart.js";
import { Admin } from "./pages/admin.js";

const PUBLIC = { login: Login, signup: Signup, forgot: Forgot, "set-password": SetPassword };
const PAGES = {
  dashboard: Dashboard, tokens: Tokens, wallet: Wallet, topup: TopupResult, models: Models,
  quickstart: Quickstart, account: ChangePassword, admin: Admin,
};
const NAV = ["dashboard", "tokens", "wallet", "models", "quickstart", "account"];

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  return { name: parts[0] || "", rest: parts.slice(1), params: new URLSearchParams(query) };
}

function LanguageSwitch({ onChange }) {
  return html`<label class="lang">
    <span class="visually-hidden">${t("nav.language")}</span>
    <select aria-label=${t("nav.language")} value=${getLang()} onChange=${(e) => onChange(e.target.value)}>
      <option value="en">English</option>
      <option value="zh">简体中文</option>
    </select>
  </label>`;
}

function App() {
  const [route, setRoute] = useState(parseHash());
  const [me, setMe] = useState(undefined); // undefined: not known yet; null: logged out
  const [, setLangTick] = useState(0);

  useEffect(() => {
    const changed = () => setRoute(parseHash());
    addEventListener("hashchange", changed);
    whenUnauthorized(() => setMe(null));
    api("GET", "/api/auth/me").then(setMe, () => setMe(null));
    return () => removeEventListener("hashchange", changed);
  }, []);

  useEffect(() => {
    const page = route.name ? t(`title.${route.name}`) : "";
    document.title = page && page !== `title.${route.name}` ? `${page} · Tokenway` : "Tokenway Console";
    // On a narrow screen the navigation scrolls sideways: keep the current page's link in view.
    const current = document.querySelector('.top nav a[aria-current="page"]');
    if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
  }, [route, me]);

  const changeLang = (value) => { setLang(value); setLangTick((n) => n + 1); };
  const loggedIn = (account) => { setMe(account); navigate(route.params.get("next") || "dashboard"); };
  const logout = async () => {
    try { await api("POST", "/api/auth/logout"); } catch (err) { /* the session is gone either way */ }
    setCsrf(null); setMe(null); navigate("login");
  };

  if (me === undefined) return html`<p class="loading" role="status">${t("common.loading")}</p>`;

  const Public = PUBLIC[route.name];
  if (Public || !me) {
    const Page = Public || Login;
    return html`<div class="public">
      <header class="public-head"><span class="brand">Tokenway</span><${LanguageSwitch} onChange=${changeLang} /></header>
      <main id="main"><${Page} onLoggedIn=${loggedIn} route=${route} me=${me} /></main>
    </div>`;
  }

  const name = PAGES[route.name] ? route.name : "dashboard";
  const Page = PAGES[name];
  const nav = me.role === "admin" ? [...NAV, "admin"] : NAV;
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>${t("nav.skip")}</a>
    <header class="top">
      <span class="brand">Tokenway</span>
      <nav aria-label=${t("nav.main")}>
        <ul>${nav.map((item) => html`<li><a href=${`#/${item}`} aria-current=${item === name ? "page" : undefined}>${t(`nav.${item}`)}</a></li>`)}</ul>
      </nav>
      <div class="who">
        <span class="email" title=${me.email}>${me.email}</span>
        <${LanguageSwitch} onChange=${changeLang} />
        <button type="button" class="secondary" onClick=${logout}>${t("nav.logout")}</button>
      </div>
    </header>
    <main id="main" tabindex="-1"><${Page} route=${route} me=${me} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
