import { html } from "../vendor/preact-htm.js";
import { t } from "../lib.js";

export const Admin = () => html`<h1>${t("title.admin")}</h1>`;
