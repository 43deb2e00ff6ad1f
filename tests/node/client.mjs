// The manual's Node.js snippet against the gateway; prints what it got as one JSON line.
// Usage: node client.mjs BASE_URL API_KEY
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const response = await client.chat.completions.create({
  model: "deepseek-chat",
  messages: [{ role: "user", content: "Hello!" }],
});

const stream = await client.chat.completions.create({
  model: "deepseek-chat",
  messages: [{ role: "user", content: "Hello!" }],
  stream: true,
});
let streamed = "";
for await (const chunk of stream) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
}

const embedding = await client.embeddings.create({ model: "text-embedding-3-small", input: ["Hello world"] });

let refused = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
} catch (error) {
  refused = { status: error.status, code: error.code };
}

console.log(JSON.stringify({
  content: response.choices[0].message.content,
  model: response.model,
  usage: response.usage,
  streamed,
  dimensions: embedding.data[0].embedding.length,
  refused,
}));
