// The agent as a caller sees it: a real gRPC server on a loopback port.
import { after, before, test } from "node:test";
import * as assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { errorInfo } from "../src/errors";
import { v1 } from "../src/protos";
import { DEFAULTS, Server, Settings } from "../src/server";
import * as skill from "../src/skill";
import { fromStruct, Json, toStruct } from "../src/struct";

const servers: Server[] = [];
const quiet = () => {};

async function agent(settings: Partial<Settings> = {}) {
  const server = new Server({ ...DEFAULTS, ...settings }, quiet);
  const port = await server.start("127.0.0.1:0");
  servers.push(server);
  const client = new v1.AgentService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any;
  return { server, client };
}

after(async () => {
  for (const s of servers) await s.stop();
});

function request(taskId: string, input: { [k: string]: Json }, extra: object = {}) {
  const deadline = Date.now() + 30_000;
  return {
    task_id: taskId,
    run_id: "run-1",
    skill_id: skill.SKILL_ID,
    input: toStruct(input),
    attempt: 1,
    deadline: { seconds: Math.floor(deadline / 1000), nanos: 0 },
    heartbeat_interval: { seconds: 0, nanos: 100_000_000 },
    ...extra,
  };
}

/** All events of a task, or the status it was refused with. */
function run(client: any, req: object, onEvent?: (e: any, all: any[]) => void): Promise<{ events: any[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const events: any[] = [];
    const call = client.ExecuteTask(req);
    call.on("data", (e: any) => {
      events.push(e);
      onEvent?.(e, events);
    });
    call.on("error", (error: grpc.ServiceError) => resolve({ events, error }));
    call.on("end", () => resolve({ events }));
  });
}

const unary = (client: any, rpc: string, req: object): Promise<any> =>
  new Promise((resolve, reject) => client[rpc](req, (err: any, resp: any) => (err ? reject(err) : resolve(resp))));

let shared: any;
before(async () => {
  shared = (await agent()).client;
});

test("the card names the skill, its kinds and an example that validates", async () => {
  const { card } = await unary(shared, "GetAgentCard", {});
  assert.equal(card.name, "quality");
  assert.equal(card.protocol_version, "agentmesh.v1");
  const [s] = card.skills;
  assert.deepEqual([s.id, s.consumes, s.produces], ["quality.check", ["sales.dataset"], ["sales.quality"]]);
  assert.deepEqual(JSON.parse(s.examples[1]), skill.exampleInput());
});

test("a check streams a well-formed, completed task with its report", async () => {
  const { events, error } = await run(shared, request("t1", skill.exampleInput()));
  assert.equal(error, undefined);
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
  );
  assert.ok(events.every((e) => e.task_id === "t1" && e.time));
  const last = events.at(-1);
  assert.equal(last.status.state, "TASK_STATE_COMPLETED");
  assert.equal(last.status.final, true);
  const out = fromStruct(events.at(-2).result.output) as any;
  assert.equal(out.rows_checked, 12);
  assert.deepEqual(
    out.issues.map((i: any) => [i.check, i.where.month]),
    [
      ["negative_margin", "2024-04"],
      ["outliers", "2024-08"],
    ],
  );
});

for (const [name, input, field] of [
  ["no dataset", {}, "dataset"],
  ["an undeclared field", { ...skill.exampleInput(), surprise: 1 }, "surprise"],
  ["a row without revenue", { dataset: { rows: [{ month: "2024-01" }] } }, "dataset.rows.0.revenue"],
] as const) {
  test(`${name} is refused INVALID_INPUT naming ${field}`, async () => {
    const { events, error } = await run(shared, request(`bad-${field}`, input as any));
    assert.equal(events.length, 0);
    assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(errorInfo(error!), { reason: "INVALID_INPUT", domain: "agentmesh", metadata: { field } });
  });
}

test("an unknown skill is refused NOT_FOUND with UNKNOWN_SKILL", async () => {
  const { error } = await run(shared, request("u", {}, { skill_id: "sales.extract" }));
  assert.equal(error?.code, grpc.status.NOT_FOUND);
  assert.equal(errorInfo(error!)?.reason, "UNKNOWN_SKILL");
});

test("heartbeats while it works; CancelTask ends the stream CANCELED, twice the same", async () => {
  const { client } = await agent({ faultDelayMs: 10_000 });
  let cancelled: Promise<any> | undefined;
  const { events } = await run(client, request("slow", skill.exampleInput()), (_, all) => {
    if (!cancelled && all.filter((e) => e.heartbeat).length === 3) {
      cancelled = unary(client, "CancelTask", { task_id: "slow", reason: "test" });
    }
  });
  assert.equal((await cancelled).state, "TASK_STATE_CANCELED");
  assert.equal(events.at(-1).status.state, "TASK_STATE_CANCELED");
  assert.equal(events.at(-2).failure.reason, "CANCELED");
  assert.equal((await unary(client, "CancelTask", { task_id: "slow" })).state, "TASK_STATE_CANCELED");
});

function withoutThreshold(): { [k: string]: Json } {
  const input = { ...skill.exampleInput() };
  delete input.outlier_threshold;
  return input;
}

const answer = (taskId: string, inputId: string, value: { [k: string]: Json }) => ({
  task_id: taskId,
  answer: { input_id: inputId, answer: toStruct(value) },
});

test("without a threshold the task asks, refuses wrong answers, and goes on when answered", async () => {
  const { client } = await agent({ askThreshold: true });
  // A short deadline: it must not run while the task waits for a person.
  const soon = Date.now() + 800;
  const checks: Promise<void>[] = [];
  let asked: any;
  const { events, error } = await run(
    client,
    request("asks", withoutThreshold(), { deadline: { seconds: Math.floor(soon / 1000), nanos: (soon % 1000) * 1e6 } }),
    (e, all) => {
      if (e.status?.state === "TASK_STATE_INPUT_REQUIRED") asked = e.status.input;
      // Answer once the deadline has passed while it waited.
      if (asked && checks.length === 0 && all.filter((x) => x.heartbeat).length === 12) {
        checks.push(
          (async () => {
            await assert.rejects(unary(client, "ProvideInput", answer("asks", "outlier_threshold", { outlier_threshold: 50 })), (err: any) => {
              assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
              assert.deepEqual(errorInfo(err)?.metadata, { field: "answer.outlier_threshold" });
              return true;
            });
            await assert.rejects(unary(client, "ProvideInput", answer("asks", "other", { x: 1 })), (err: any) => {
              assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
              assert.equal(errorInfo(err)?.reason, "NOT_WAITING");
              return true;
            });
            await unary(client, "ProvideInput", answer("asks", "outlier_threshold", { outlier_threshold: 2.5 }));
          })(),
        );
      }
    },
  );
  await Promise.all(checks);
  assert.equal(error, undefined);
  assert.equal(asked.input_id, "outlier_threshold");
  assert.match(asked.question, /outlier/);
  assert.equal(fromStruct(asked.answer_schema).type, "object");
  const states = events.filter((e) => e.status).map((e) => e.status.state);
  assert.deepEqual(states.slice(-3), ["TASK_STATE_INPUT_REQUIRED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]);
  const result = events.find((e) => e.result).result;
  assert.equal(fromStruct(result.output).outlier_threshold, 2.5);
  await assert.rejects(unary(client, "ProvideInput", answer("asks", "outlier_threshold", { outlier_threshold: 3 })), (err: any) => {
    assert.equal(errorInfo(err)?.reason, "NOT_WAITING");
    return true;
  });
});

test("an answer an earlier attempt got is used without asking", async () => {
  const { client } = await agent({ askThreshold: true });
  const { events } = await run(
    client,
    request("carried", withoutThreshold(), { answers: [{ input_id: "outlier_threshold", answer: toStruct({ outlier_threshold: 4 }) }] }),
  );
  const states = events.filter((e) => e.status).map((e) => e.status.state);
  assert.ok(!states.includes("TASK_STATE_INPUT_REQUIRED"), states.join(","));
  assert.equal(states.at(-1), "TASK_STATE_COMPLETED");
  assert.equal(fromStruct(events.find((e) => e.result).result.output).outlier_threshold, 4);
});

test("a task cancelled while it waits ends CANCELED", async () => {
  const { client } = await agent({ askThreshold: true });
  const { events } = await run(client, request("dropped", withoutThreshold()), (e) => {
    if (e.status?.state === "TASK_STATE_INPUT_REQUIRED") void unary(client, "CancelTask", { task_id: "dropped" });
  });
  assert.equal(events.at(-1).status.state, "TASK_STATE_CANCELED");
});

test("a deadline passing mid-task fails it DEADLINE_EXCEEDED", async () => {
  const { client } = await agent({ faultDelayMs: 10_000 });
  const soon = Date.now() + 400;
  const { events } = await run(
    client,
    request("late", skill.exampleInput(), { deadline: { seconds: Math.floor(soon / 1000), nanos: (soon % 1000) * 1e6 } }),
  );
  assert.equal(events.at(-2).failure.reason, "DEADLINE_EXCEEDED");
  assert.equal(events.at(-1).status.state, "TASK_STATE_FAILED");
});

test("the same key follows a running task, then replays it", async () => {
  const { client } = await agent({ faultDelayMs: 500 });
  const first = run(client, request("a1", skill.exampleInput(), { idempotency_key: "k" }));
  await new Promise((r) => setTimeout(r, 100));
  const follower = await run(client, request("a2", skill.exampleInput(), { idempotency_key: "k" }));
  const original = await first;
  assert.deepEqual(follower.events.at(-2).result, original.events.at(-2).result);
  assert.ok(follower.events.every((e) => e.task_id === "a2"));
  const replay = await run(client, request("a3", skill.exampleInput(), { idempotency_key: "k" }));
  assert.deepEqual(replay.events.at(-2).result, original.events.at(-2).result);
});

test("past the concurrency cap a task is refused RESOURCE_EXHAUSTED", async () => {
  const { client } = await agent({ faultDelayMs: 5_000, maxConcurrency: 1 });
  const call = client.ExecuteTask(request("c1", skill.exampleInput()));
  await new Promise((r) => call.once("data", r));
  const { error } = await run(client, request("c2", skill.exampleInput()));
  assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(errorInfo(error!)?.metadata.limit, "max_concurrency");
  call.cancel();
  call.on("error", () => {});
});

test("draining refuses new tasks AGENT_UNAVAILABLE", async () => {
  const { server, client } = await agent();
  server.agent.draining = true;
  const { error } = await run(client, request("d", skill.exampleInput()));
  assert.equal(error?.code, grpc.status.UNAVAILABLE);
  assert.equal(errorInfo(error!)?.reason, "AGENT_UNAVAILABLE");
});
