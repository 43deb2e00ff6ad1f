// Sign up, log in, forgot password, set a password from a link, change the password.
import { html, useState } from "../vendor/preact-htm.js";
import { api, Field, FormError, navigate, setCsrf, t, useForm } from "../lib.js";

const mismatch = () => ({ message: t("auth.mismatch"), param: "confirm" });

export function Login({ onLoggedIn, route }) {
  const form = useForm({ email: route.params.get("email") || "", password: "" });
  const notice = route.params.get("created") ? t("auth.created")
    : route.params.get("changed") ? t("auth.changedLogin")
      : route.params.get("set") ? t("auth.setLogin") : null;
  const login = form.submit(async ({ email, password }) => {
    const session = await api("POST", "/api/auth/login", { email, password });
    setCsrf(session.csrf_token);
    onLoggedIn(session.account);
  });
  return html`<section class="card narrow" aria-labelledby="login-title">
    <h1 id="login-title">${t("auth.loginTitle")}</h1>
    ${notice ? html`<p class="notice" role="status">${notice}</p>` : null}
    <form onSubmit=${login} novalidate>
      <${Field} label=${t("auth.email")} name="email" type="email" autocomplete="username" required
        value=${form.values.email} onInput=${form.set("email")} error=${form.error} />
      <${Field} label=${t("auth.password")} name="password" type="password" autocomplete="current-password" required
        value=${form.values.password} onInput=${form.set("password")} error=${form.error} />
      <${FormError} error=${form.error} fields=${["email", "password"]} />
      <button type="submit" disabled=${form.busy}>${t("auth.login")}</button>
    </form>
    <p class="links"><a href="#/signup">${t("auth.toSignup")}</a> · <a href="#/forgot">${t("auth.toForgot")}</a></p>
  </section>`;
}

export function Signup() {
  const form = useForm({ email: "", password: "" });
  const signup = form.submit(async ({ email, password }) => {
    await api("POST", "/api/auth/signup", { email, password });
    navigate(`login?created=1&email=${encodeURIComponent(email)}`);
  });
  return html`<section class="card narrow" aria-labelledby="signup-title">
    <h1 id="signup-title">${t("auth.signupTitle")}</h1>
    <form onSubmit=${signup} novalidate>
      <${Field} label=${t("auth.email")} name="email" type="email" autocomplete="email" required
        value=${form.values.email} onInput=${form.set("email")} error=${form.error} />
      <${Field} label=${t("auth.password")} name="password" type="password" autocomplete="new-password" required
        hint=${t("auth.passwordHint")} value=${form.values.password} onInput=${form.set("password")} error=${form.error} />
      <${FormError} error=${form.error} fields=${["email", "password"]} />
      <button type="submit" disabled=${form.busy}>${t("auth.signup")}</button>
    </form>
    <p class="links"><a href="#/login">${t("auth.toLogin")}</a></p>
  </section>`;
}

export function Forgot() {
  const form = useForm({ email: "" });
  const [sent, setSent] = useState(false);
  const send = form.submit(async ({ email }) => {
    await api("POST", "/api/auth/password/forgot", { email });
    setSent(true);
  });
  return html`<section class="card narrow" aria-labelledby="forgot-title">
    <h1 id="forgot-title">${t("auth.forgotTitle")}</h1>
    ${sent ? html`<p class="notice" role="status">${t("auth.forgotSent")}</p>` : html`
      <p>${t("auth.forgotIntro")}</p>
      <form onSubmit=${send} novalidate>
        <${Field} label=${t("auth.email")} name="email" type="email" autocomplete="email" required
          value=${form.values.email} onInput=${form.set("email")} error=${form.error} />
        <${FormError} error=${form.error} fields=${["email"]} />
        <button type="submit" disabled=${form.busy}>${t("auth.forgotSend")}</button>
      </form>`}
    <p class="links"><a href="#/login">${t("auth.toLogin")}</a></p>
  </section>`;
}

export function SetPassword({ route }) {
  const token = route.params.get("token") || "";
  const form = useForm({ password: "", confirm: "" });
  const save = form.submit(async ({ password, confirm }) => {
    if (password !== confirm) throw mismatch();
    await api("POST", "/api/auth/password/set", { token, password });
    setCsrf(null);
    navigate("login?set=1");
  });
  return html`<section class="card narrow" aria-labelledby="set-title">
    <h1 id="set-title">${t("auth.setTitle")}</h1>
    ${token ? html`<form onSubmit=${save} novalidate>
        <${Field} label=${t("auth.newPassword")} name="password" type="password" autocomplete="new-password" required
          hint=${t("auth.passwordHint")} value=${form.values.password} onInput=${form.set("password")} error=${form.error} />
        <${Field} label=${t("auth.confirm")} name="confirm" type="password" autocomplete="new-password" required
          value=${form.values.confirm} onInput=${form.set("confirm")} error=${form.error} />
        <${FormError} error=${form.error} fields=${["password", "confirm"]} />
        <button type="submit" disabled=${form.busy}>${t("auth.setSave")}</button>
      </form>`
      : html`<p class="error" role="alert">${t("auth.noToken")}</p>`}
    <p class="links"><a href="#/login">${t("auth.toLogin")}</a></p>
  </section>`;
}

export function ChangePassword({ me }) {
  const form = useForm({ current_password: "", new_password: "", confirm: "" });
  const save = form.submit(async ({ current_password, new_password, confirm }) => {
    if (new_password !== confirm) throw mismatch();
    await api("POST", "/api/auth/password", { current_password, new_password });
    // Every session of the account has ended, this one too.
    setCsrf(null);
    navigate(`login?changed=1&email=${encodeURIComponent(me.email)}`);
  });
  return html`<section aria-labelledby="account-title">
    <h1 id="account-title">${t("title.account")}</h1>
    <dl class="facts">
      <dt>${t("auth.email")}</dt><dd>${me.email}</dd>
      <dt>${t("account.role")}</dt><dd>${t(`role.${me.role}`)}</dd>
      <dt>${t("account.id")}</dt><dd><code>${me.account_id}</code></dd>
    </dl>
    <div class="card narrow">
      <h2>${t("auth.changeTitle")}</h2>
      <p class="hint">${t("auth.changeNote")}</p>
      <form onSubmit=${save} novalidate>
        <${Field} label=${t("auth.currentPassword")} name="current_password" type="password" autocomplete="current-password"
          required value=${form.values.current_password} onInput=${form.set("current_password")} error=${form.error} />
        <${Field} label=${t("auth.newPassword")} name="new_password" type="password" autocomplete="new-password" required
          value=${form.values.new_password} onInput=${form.set("new_password")} error=${form.error} />
        <${Field} label=${t("auth.confirm")} name="confirm" type="password" autocomplete="new-password" required
          value=${form.values.confirm} onInput=${form.set("confirm")} error=${form.error} />
        <${FormError} error=${form.error} fields=${["current_password", "new_password", "confirm"]} />
        <button type="submit" disabled=${form.busy}>${t("auth.changeSave")}</button>
      </form>
    </div>
  </section>`;
}
