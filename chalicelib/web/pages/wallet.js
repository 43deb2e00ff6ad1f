// Wallet: balance and held, top-up (the tiers with their bonus, or a custom amount, paid at the provider's
// checkout), the result of a top-up as its credit arrives, orders, the ledger and redeeming a code.
import { html, useEffect, useState } from "../vendor/preact-htm.js";
import {
  api, Empty, ErrorText, Field, FormError, Loading, Pager, t, usd, useCursor, useForm, useLoad, when,
} from "../lib.js";

function Balance({ wallet }) {
  return html`<div class="stats" aria-label=${t("wallet.balanceTitle")}>
    <div class="stat"><span class="stat-label">${t("wallet.balance")}</span>
      <strong class="stat-value" data-testid="balance">${usd(wallet.balance_usd)}</strong></div>
    <div class="stat"><span class="stat-label">${t("wallet.available")}</span>
      <strong class="stat-value">${usd(wallet.available_usd)}</strong></div>
    <div class="stat"><span class="stat-label">${t("wallet.held")}</span>
      <strong class="stat-value">${usd(wallet.held_usd)}</strong></div>
    ${wallet.frozen_usd !== "0.00" ? html`<div class="stat"><span class="stat-label">${t("wallet.frozen")}</span>
      <strong class="stat-value">${usd(wallet.frozen_usd)}</strong></div>` : null}
    ${wallet.debt_usd !== "0.00" ? html`<div class="stat"><span class="stat-label">${t("wallet.debt")}</span>
      <strong class="stat-value">${usd(wallet.debt_usd)}</strong></div>` : null}
    ${wallet.suspended ? html`<p class="warning" role="alert">${t("wallet.suspended")}</p>` : null}
  </div>`;
}

function TopUp() {
  const [options, error, loading] = useLoad(() => api("GET", "/api/wallet/topup-options"));
  const form = useForm({ amount_usd: "" });
  const [busyTier, setBusyTier] = useState(null);
  const [tierError, setTierError] = useState(null);
  // The order is made here; the provider's page takes the payment and sends the customer back.
  const checkout = async (amount) => {
    const order = await api("POST", "/api/wallet/topups", { amount_usd: amount });
    location.assign(order.checkout_url);
  };
  const payTier = async (tier) => {
    setBusyTier(tier.pay_usd); setTierError(null);
    try { await checkout(tier.pay_usd); } catch (err) { setTierError(err); setBusyTier(null); }
  };
  if (loading) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  if (!options.enabled) return html`<p class="notice">${t("wallet.topupOff")}</p>`;
  return html`<div>
    <div class="table-wrap"><table class="tiers">
      <caption>${t("wallet.tiersCaption")}</caption>
      <thead><tr><th scope="col">${t("wallet.amount")}</th><th scope="col">${t("wallet.youPay")}</th>
        <th scope="col">${t("wallet.credit")}</th><th scope="col"><span class="visually-hidden">${t("wallet.pay")}</span></th></tr></thead>
      <tbody>${options.tiers.map((tier) => html`<tr>
        <th scope="row">${usd(tier.pay_usd).replace(/\.00$/, "")}</th>
        <td>${usd(tier.pay_usd)}</td>
        <td>${usd(tier.credit_usd)}${Number(tier.bonus_percent) > 0
          ? html` <span class="bonus">${t("wallet.bonus", { percent: tier.bonus_percent })}</span>` : null}</td>
        <td><button type="button" disabled=${busyTier !== null} onClick=${() => payTier(tier)}
          aria-label=${t("wallet.payTier", { amount: usd(tier.pay_usd) })}>${t("wallet.pay")}</button></td>
      </tr>`)}</tbody>
    </table></div>
    <${ErrorText} error=${tierError} />
    <form class="inline-form" onSubmit=${form.submit((v) => checkout(v.amount_usd.trim()))} novalidate>
      <${Field} label=${t("wallet.custom")} name="amount_usd" inputmode="decimal" value=${form.values.amount_usd}
        onInput=${form.set("amount_usd")} error=${form.error}
        hint=${t("wallet.customHint", { min: usd(options.min_usd), max: usd(options.max_usd) })} />
      <button type="submit" disabled=${form.busy}>${t("wallet.payCustom")}</button>
    </form>
    <${FormError} error=${form.error} fields=${["amount_usd"]} />
    <p class="hint">${t("wallet.methods", { methods: options.payment_methods.join(", ") })}</p>
  </div>`;
}

function Orders() {
  const pager = useCursor();
  const [data, error, loading] = useLoad(() => api("GET", `/api/wallet/topups?limit=10${pager.cursor ? `&cursor=${encodeURIComponent(pager.cursor)}` : ""}`), [pager.cursor]);
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  if (data.data.length === 0 && pager.page === 1) return html`<${Empty} text=${t("wallet.noOrders")} />`;
  return html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">${t("wallet.created")}</th><th scope="col">${t("wallet.status")}</th>
        <th scope="col">${t("wallet.youPay")}</th><th scope="col">${t("wallet.credit")}</th><th scope="col">${t("wallet.order")}</th></tr></thead>
      <tbody>${data.data.map((o) => html`<tr>
        <td>${when(o.created_at)}</td><td><span class=${`badge ${o.status}`}>${t(`order.${o.status}`)}</span></td>
        <td>${usd(o.pay_usd)}</td><td>${usd(o.credit_usd)}</td>
        <td><a href=${`#/topup/${o.order_id}`}>${o.order_id}</a></td></tr>`)}</tbody>
    </table></div>
    <${Pager} pager=${pager} nextCursor=${data.next_cursor} />`;
}

function Ledger() {
  const pager = useCursor();
  const [data, error, loading] = useLoad(() => api("GET", `/api/wallet/ledger?limit=20${pager.cursor ? `&cursor=${encodeURIComponent(pager.cursor)}` : ""}`), [pager.cursor]);
  if (loading && !data) return html`<${Loading} />`;
  if (error) return html`<${ErrorText} error=${error} />`;
  if (data.data.length === 0 && pager.page === 1) return html`<${Empty} text=${t("wallet.noLedger")} />`;
  return html`<div class="table-wrap"><table class="ledger">
      <thead><tr><th scope="col">${t("wallet.time")}</th><th scope="col">${t("wallet.kind")}</th>
        <th scope="col">${t("wallet.change")}</th><th scope="col">${t("wallet.after")}</th>
        <th scope="col">${t("wallet.detail")}</th></tr></thead>
      <tbody>${data.data.map((line) => html`<tr>
        <td>${when(line.created_at)}</td><td>${t(`ledger.${line.kind}`) === `ledger.${line.kind}` ? line.kind : t(`ledger.${line.kind}`)}</td>
        <td class=${line.amount_usd.startsWith("-") ? "neg" : "pos"}>${usd(line.amount_usd)}</td>
        <td>${usd(line.balance_after_usd)}</td>
        <td>${[line.model, line.note, line.reference].filter(Boolean).join(" · ")}</td></tr>`)}</tbody>
    </table></div>
    <${Pager} pager=${pager} nextCursor=${data.next_cursor} />`;
}

function Redeem({ onRedeemed }) {
  const form = useForm({ code: "" });
  const [done, setDone] = useState(null);
  const redeem = form.submit(async ({ code }) => {
    setDone(null);
    const result = await api("POST", "/api/wallet/redeem", { code: code.trim() });
    setDone(result); form.set("code")(""); onRedeemed();
  });
  return html`<form class="inline-form" onSubmit=${redeem} novalidate>
    <${Field} label=${t("wallet.code")} name="code" value=${form.values.code} onInput=${form.set("code")}
      error=${form.error} autocomplete="off" />
    <button type="submit" disabled=${form.busy}>${t("wallet.redeem")}</button>
    <${FormError} error=${form.error} fields=${["code"]} />
    ${done ? html`<p class="notice" role="status">${t("wallet.redeemed", { credit: usd(done.credited_usd), balance: usd(done.balance_usd) })}</p>` : null}
  </form>`;
}

export function Wallet() {
  const [wallet, error, loading, reload] = useLoad(() => api("GET", "/api/wallet"));
  const [tab, setTab] = useState("orders");
  return html`<section aria-labelledby="wallet-title">
    <h1 id="wallet-title">${t("title.wallet")}</h1>
    ${loading && !wallet ? html`<${Loading} />` : error ? html`<${ErrorText} error=${error} />` : html`<${Balance} wallet=${wallet} />`}
    <div class="card"><h2>${t("wallet.topupTitle")}</h2><${TopUp} /></div>
    <div class="card"><h2>${t("wallet.redeemTitle")}</h2><${Redeem} onRedeemed=${reload} /></div>
    <div class="card">
      <div role="tablist" class="tabs" aria-label=${t("wallet.history")}>
        ${["orders", "ledger"].map((name) => html`<button type="button" role="tab" id=${`tab-${name}`}
          aria-selected=${tab === name ? "true" : "false"} aria-controls=${`panel-${name}`}
          onClick=${() => setTab(name)}>${t(`wallet.${name}`)}</button>`)}
      </div>
      <div role="tabpanel" id=${`panel-${tab}`} aria-labelledby=${`tab-${tab}`}>
        ${tab === "orders" ? html`<${Orders} />` : html`<${Ledger} />`}
      </div>
    </div>
  </section>`;
}

const SETTLED = ["paid", "partially_refunded", "refunded", "disputed", "expired"];

/** Where the provider's return page links: the order, checked until its credit arrives. */
export function TopupResult({ route }) {
  const orderId = route.rest[0] || "";
  const [order, setOrder] = useState(null);
  const [wallet, setWallet] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    let timer = null;
    const check = async () => {
      try {
        const current = await api("GET", `/api/wallet/topups/${encodeURIComponent(orderId)}`);
        if (!live) return;
        setOrder(current);
        if (SETTLED.includes(current.status) || current.status === "review") {
          setWallet(await api("GET", "/api/wallet"));
        } else {
          timer = setTimeout(check, 1500);
        }
      } catch (err) { if (live) setError(err); }
    };
    check();
    return () => { live = false; clearTimeout(timer); };
  }, [orderId]);
  const credited = order && ["paid", "partially_refunded", "refunded", "disputed"].includes(order.status);
  return html`<section aria-labelledby="topup-title">
    <h1 id="topup-title">${t("title.topup")}</h1>
    ${error ? html`<${ErrorText} error=${error} />` : !order ? html`<${Loading} />` : html`
      <div class="card" aria-live="polite">
        <p class=${credited ? "success big" : "notice big"} data-testid="topup-status">
          ${credited ? t("wallet.credited", { credit: usd(order.credit_usd) })
            : order.status === "pending" ? t("wallet.waiting")
              : order.status === "review" ? t("wallet.review") : t("wallet.notPaid")}</p>
        <dl class="facts">
          <dt>${t("wallet.order")}</dt><dd><code>${order.order_id}</code></dd>
          <dt>${t("wallet.youPay")}</dt><dd>${usd(order.pay_usd)}</dd>
          <dt>${t("wallet.credit")}</dt><dd>${usd(order.credit_usd)}</dd>
          <dt>${t("wallet.bonusLabel")}</dt><dd>${usd(order.bonus_usd)}</dd>
          <dt>${t("wallet.status")}</dt><dd>${t(`order.${order.status}`)}</dd>
          ${wallet ? html`<dt>${t("wallet.balance")}</dt><dd data-testid="balance">${usd(wallet.balance_usd)}</dd>` : null}
        </dl>
        ${order.status === "pending" && order.checkout_url
          ? html`<p><a href=${order.checkout_url}>${t("wallet.resume")}</a></p>` : null}
      </div>`}
    <p><a href="#/wallet">${t("wallet.back")}</a></p>
  </section>`;
}
