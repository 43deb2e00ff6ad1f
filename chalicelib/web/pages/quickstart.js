// Quickstart: the manual's Python, Node.js and curl snippets, with this gateway's address filled in.
import { html } from "../vendor/preact-htm.js";
import { BASE, CopyButton, t } from "../lib.js";

// The gateway serves the OpenAI API with and without /v1; the manual's SDK snippets use its root.
const ROOT = BASE.toString().replace(/\/$/, "");

const PYTHON = `import openai
from openai import OpenAI

client = OpenAI(
    base_url="${ROOT}",
    api_key="sk-..."
)

# Chat
response = client.chat.completions.create(
    model="deepseek-chat",
    messages=[{"role": "user", "content": "Hello"}]
)

# Embeddings
emb = client.embeddings.create(
    model="text-embedding-3-small",
    input=["Hello world"]
)

# Image generation
img = client.images.generate(
    model="dall-e-3",
    prompt="Chinese landscape painting, digital art"
)`;

const NODE = `import OpenAI from "openai";

const client = new OpenAI({
    baseURL: "${ROOT}",
    apiKey: "sk-...",
});

const response = await client.chat.completions.create({
    model: "deepseek-chat",
    messages: [{ role: "user", content: "Hello!" }],
});`;

const CURL = `curl ${ROOT}/v1/chat/completions \\
  -H "Authorization: Bearer sk-..." \\
  -H "Content-Type: application/json" \\
  -d '{
    "model": "deepseek-chat",
    "messages": [{"role": "user", "content": "Hello"}]
  }'`;

function Snippet({ id, title, code }) {
  return html`<div class="card">
    <div class="snippet-head"><h2 id=${`${id}-title`}>${title}</h2>
      <${CopyButton} text=${code} label=${t("quick.copy", { what: title })} /></div>
    <pre class="snippet" id=${id} aria-labelledby=${`${id}-title`} tabindex="0"><code>${code}</code></pre>
  </div>`;
}

export function Quickstart() {
  return html`<section aria-labelledby="quick-title">
    <h1 id="quick-title">${t("title.quickstart")}</h1>
    <div class="card">
      <p>${t("quick.base")} <code data-testid="base-url">${ROOT}</code></p>
      <p>${t("quick.key")} <a href="#/tokens">${t("nav.tokens")}</a></p>
      <p class="hint">Authorization: Bearer sk-...</p>
    </div>
    <${Snippet} id="snippet-python" title=${t("quick.python")} code=${PYTHON} />
    <${Snippet} id="snippet-node" title=${t("quick.node")} code=${NODE} />
    <${Snippet} id="snippet-curl" title="cURL" code=${CURL} />
  </section>`;
}
