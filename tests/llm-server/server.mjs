// A /v1/chat/completions server over a small local GGUF model, run by
// node-llama-cpp on the CPU: the real model the LLM planner's end-to-end
// test talks to. Answers follow the request's response_format JSON Schema
// (a grammar built from it), one request at a time.
//
//   node server.mjs MODEL.gguf [PORT]     # prints "listening on PORT"
import http from "node:http";
import os from "node:os";
import { getLlama, LlamaChatSession } from "node-llama-cpp";

const [modelPath, port = "0"] = process.argv.slice(2);
if (!modelPath) {
  console.error("usage: node server.mjs MODEL.gguf [PORT]");
  process.exit(64);
}
const llama = await getLlama({ gpu: false, build: "never" });
const model = await llama.loadModel({ modelPath });
// As many threads as cores: the library's default oversubscribes a small
// machine and runs a hundred times slower.
const context = await model.createContext({ contextSize: 4096, threads: os.availableParallelism() });

// Keywords the grammar builder does not take are dropped; a free-form
// object becomes an object of scalar values.
function grammarSchema(s) {
  if (Array.isArray(s)) return s.map(grammarSchema);
  if (!s || typeof s !== "object") return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (["pattern", "$schema", "description", "minItems", "maxItems"].includes(k)) continue;
    out[k] = grammarSchema(v);
  }
  if (out.type === "object" && !out.properties) {
    return { type: "object", additionalProperties: { type: ["string", "number", "boolean"] } };
  }
  return out;
}

async function complete(body) {
  const messages = body.messages ?? [];
  const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n");
  const turns = messages.filter((m) => m.role !== "system");
  const last = turns.pop();
  const sequence = context.getSequence();
  try {
    const session = new LlamaChatSession({ contextSequence: sequence, systemPrompt: system });
    const history = [{ type: "system", text: system }];
    for (const m of turns) {
      history.push(m.role === "assistant" ? { type: "model", response: [m.content] } : { type: "user", text: m.content });
    }
    session.setChatHistory(history);
    const schema = body.response_format?.json_schema?.schema;
    const grammar = schema ? await llama.createGrammarForJsonSchema(grammarSchema(schema)) : undefined;
    const meta = await session.promptWithMeta(last?.content ?? "", {
      grammar,
      maxTokens: body.max_tokens ?? 512,
      temperature: body.temperature ?? 0,
    });
    const text = meta.responseText;
    return {
      id: "chatcmpl-local",
      object: "chat.completion",
      model: body.model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: text },
        finish_reason: meta.stopReason === "maxTokens" ? "length" : "stop",
      }],
      usage: {
        prompt_tokens: model.tokenize(messages.map((m) => m.content).join("\n")).length,
        completion_tokens: model.tokenize(text).length,
      },
    };
  } finally {
    sequence.dispose();
  }
}

// One request at a time: the context has one sequence.
let queue = Promise.resolve();
const server = http.createServer((req, res) => {
  if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
    res.writeHead(404).end();
    return;
  }
  let data = "";
  req.on("data", (c) => (data += c));
  req.on("end", () => {
    queue = queue.then(async () => {
      try {
        const out = await complete(JSON.parse(data));
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out));
      } catch (e) {
        res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: String(e) } }));
      }
    });
  });
});
server.listen(Number(port), "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
