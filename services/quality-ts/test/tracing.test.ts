// The task's span continues the caller's trace (metadata first, then the
// request's `trace` field), recorded by the OpenTelemetry SDK.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace";
import { v1 } from "../src/protos";
import { DEFAULTS, Server } from "../src/server";
import * as skill from "../src/skill";
import { Json, toStruct } from "../src/struct";
import * as tracing from "../src/tracing";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const recorded = new InMemorySpanExporter();
let server: Server;
let client: any;

before(async () => {
  tracing.setup({ sampleRatio: 1, exportIntervalMs: 5000, processors: [new SimpleSpanProcessor({ exporter: recorded })] });
  server = new Server(DEFAULTS, () => {});
  const port = await server.start("127.0.0.1:0");
  client = new v1.AgentService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
});

after(async () => {
  await server.stop();
  await tracing.shutdown();
});

function request(taskId: string, input: { [k: string]: Json }, extra: object = {}) {
  const deadline = Date.now() + 30_000;
  return {
    task_id: taskId,
    run_id: "run-1",
    skill_id: skill.SKILL_ID,
    input: toStruct(input),
    attempt: 2,
    deadline: { seconds: Math.floor(deadline / 1000), nanos: 0 },
    ...extra,
  };
}

function run(req: object, md = new grpc.Metadata()): Promise<void> {
  return new Promise((resolve) => {
    const call = client.ExecuteTask(req, md);
    call.on("data", () => {});
    call.on("error", () => resolve());
    call.on("end", () => resolve());
  });
}

async function spanOf(taskId: string) {
  for (let i = 0; i < 200; i++) {
    const found = recorded.getFinishedSpans().filter((s) => s.attributes.task_id === taskId);
    if (found.length > 0) return found;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no span for ${taskId}`);
}

test("a task span continues the trace in the call's metadata", async () => {
  const md = new grpc.Metadata();
  md.set("traceparent", `00-${TRACE}-${PARENT}-01`);
  await run(request("tr1", skill.exampleInput()), md);
  const [span] = await spanOf("tr1");
  assert.equal(span!.name, "task");
  assert.equal(span!.kind, SpanKind.SERVER);
  assert.equal(span!.spanContext().traceId, TRACE);
  assert.equal(span!.parentSpanContext?.spanId, PARENT);
  assert.equal(span!.attributes.run_id, "run-1");
  assert.equal(span!.attributes.attempt, 2);
  assert.equal(span!.attributes.outcome, "completed");
});

test("without metadata the request's trace field is continued, and a refusal is an error", async () => {
  await run(request("tr2", { surprise: 1 }, { trace: { traceparent: `00-${TRACE}-${PARENT}-01` } }));
  const [span] = await spanOf("tr2");
  assert.equal(span!.spanContext().traceId, TRACE);
  assert.equal(span!.attributes.outcome, "invalid_input");
  assert.equal(span!.status.code, SpanStatusCode.ERROR);
});

test("a malformed traceparent starts a new trace", async () => {
  const md = new grpc.Metadata();
  md.set("traceparent", "garbage");
  await run(request("tr3", skill.exampleInput()), md);
  const [span] = await spanOf("tr3");
  assert.equal(span!.parentSpanContext, undefined);
  assert.notEqual(span!.spanContext().traceId, TRACE);
});
