// The gRPC server: agentmesh.v1.AgentService, health and reflection.
//
// Every rule of the task stream is kept here, for any skill: input
// validated against the skill's schema before the task starts, events
// numbered per stream, heartbeats while working, the deadline, CancelTask
// and the caller dropping the stream, the concurrency cap, idempotency
// keys, and a drain on shutdown.
import * as grpc from "@grpc/grpc-js";
import { Span } from "@opentelemetry/api";
import { HealthImplementation } from "grpc-health-check";
import { ReflectionService } from "@grpc/reflection";
import Ajv2020 from "ajv/dist/2020";
import { MeshError, schemaError } from "./errors";
import { servedDefinition, v1 } from "./protos";
import * as skill from "./skill";
import { fromStruct, Json, PbStruct, toStruct } from "./struct";
import { Cancelled, Table, Task } from "./tasks";
import * as tracing from "./tracing";

export const VERSION = "0.1.0";
export const AGENT_SERVICE = "agentmesh.v1.AgentService";

/** The agent's limits; each is a flag of the command line. */
export interface Settings {
  maxConcurrency: number;
  heartbeatMs: number;
  maxTaskMs: number;
  maxMessageBytes: number;
  artifactChunkBytes: number;
  idempotencyEntries: number;
  idempotencyTtlMs: number;
  shutdownGraceMs: number;
  faultDelayMs: number;
  /** Ask a person for the outlier threshold when the input names none. */
  askThreshold: boolean;
}

export const DEFAULTS: Settings = {
  maxConcurrency: 8,
  heartbeatMs: 1000,
  maxTaskMs: 60_000,
  maxMessageBytes: 4 * 1024 * 1024,
  artifactChunkBytes: 64 * 1024,
  idempotencyEntries: 1024,
  idempotencyTtlMs: 600_000,
  shutdownGraceMs: 10_000,
  faultDelayMs: 0,
  askThreshold: false,
};

/** Writes a log line; `fields` (trace and span ids) go with it. */
type Log = (msg: string, fields?: Record<string, string>) => void;

interface Timestamp {
  seconds: number | string;
  nanos: number;
}

const millis = (t: Timestamp | null | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : undefined);

/** The refusal of a call naming a task this agent never saw. */
function unknownTask(taskId: string): MeshError {
  return new MeshError("NOT_FOUND", `no task ${JSON.stringify(taskId)} here`, { task_id: taskId });
}

export class Agent {
  readonly tasks: Table;
  draining = false;
  private readonly validate = new Ajv2020({ allErrors: false, strict: false }).compile(skill.INPUT_SCHEMA);

  constructor(
    readonly settings: Settings,
    private readonly log: Log,
  ) {
    this.tasks = new Table(settings.idempotencyEntries, settings.idempotencyTtlMs);
  }

  card() {
    return {
      name: skill.NAME,
      version: VERSION,
      description:
        "Data-quality checks of the sales dataset, written in TypeScript: missing months, outliers, negative margins, negative values and duplicates.",
      protocol_version: "agentmesh.v1",
      max_concurrency: this.settings.maxConcurrency,
      skills: [
        {
          ...skill.cardEntry(),
          input_schema: toStruct(skill.INPUT_SCHEMA as unknown as { [k: string]: Json }),
          output_schema: toStruct(skill.OUTPUT_SCHEMA as unknown as { [k: string]: Json }),
          hints: { idempotent: true, read_only: true },
        },
      ],
    };
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      GetAgentCard: (_call: grpc.ServerUnaryCall<object, object>, done: grpc.sendUnaryData<object>) =>
        done(null, { card: this.card() }),
      ExecuteTask: (call: grpc.ServerWritableStream<any, object>) => this.executeTask(call),
      // doc:begin cancel
      CancelTask: (call: grpc.ServerUnaryCall<any, object>, done: grpc.sendUnaryData<object>) => {
        const task = this.tasks.get(call.request.task_id);
        if (!task) return done(unknownTask(call.request.task_id).toServiceError());
        const state = task.cancel(call.request.reason);
        this.log(`task ${call.request.task_id}: cancel asked (${call.request.reason}), now ${state}`);
        done(null, { state });
      },
      // doc:end cancel
      // doc:begin provide
      ProvideInput: (call: grpc.ServerUnaryCall<any, object>, done: grpc.sendUnaryData<object>) => {
        const { task_id: taskId, answer } = call.request;
        const task = this.tasks.get(taskId);
        try {
          if (!task) throw unknownTask(taskId);
          task.provide(answer?.input_id ?? "", fromStruct(answer?.answer as PbStruct | null));
        } catch (e) {
          const err = e instanceof MeshError ? e : new MeshError("AGENT_FAILED", "the answer could not be taken");
          this.log(`task ${taskId}: answer refused: ${err.reason} ${err.message}`);
          return done(err.toServiceError());
        }
        this.log(`task ${taskId}: answered ${answer?.input_id}`);
        done(null, {});
      },
      // doc:end provide
    };
  }

  // doc:begin execute
  private executeTask(call: grpc.ServerWritableStream<any, object>): void {
    const req = call.request;
    // The task's span continues the caller's trace (its attempt's span).
    const span = tracing.taskSpan(tracing.parent(call.metadata, req), {
      run_id: req.run_id,
      task_id: req.task_id,
      skill: req.skill_id,
      attempt: req.attempt,
    });
    let admitted: { task: Task; isNew: boolean; input: { [k: string]: Json } };
    try {
      admitted = this.admit(req, call.getDeadline(), tracing.ids(span));
    } catch (e) {
      const err = e instanceof MeshError ? e : new MeshError("AGENT_FAILED", "the agent failed to admit the task");
      this.log(`task ${req.task_id} refused: ${err.reason} ${err.message}`, tracing.ids(span));
      tracing.end(span, err.reason.toLowerCase());
      call.emit("error", err.toServiceError());
      return;
    }
  // doc:end execute
    const { task, isNew, input } = admitted;
    if (isNew) {
      for (const a of (req.answers ?? []) as { input_id: string; answer: PbStruct | null }[]) {
        task.answers.set(a.input_id, fromStruct(a.answer));
      }
      // The caller dropping the stream cancels the task it started.
      call.on("cancelled", () => task.cancel("the caller went away"));
      void this.work(task, input, span);
    } else {
      tracing.end(span, "completed");
    }
    let heartbeat = this.settings.heartbeatMs;
    const asked = req.heartbeat_interval ? Number(req.heartbeat_interval.seconds) * 1000 + req.heartbeat_interval.nanos / 1e6 : 0;
    if (asked > 0) heartbeat = Math.min(heartbeat, asked);
    void task.follow(req.task_id, heartbeat, !isNew, (event) => call.write(event)).then(() => call.end());
  }

  private admit(
    req: any,
    callDeadline: grpc.Deadline,
    ids: Record<string, string>,
  ): { task: Task; isNew: boolean; input: { [k: string]: Json } } {
    if (this.draining) throw new MeshError("AGENT_UNAVAILABLE", "the agent is shutting down; try another replica");
    if (!req.task_id) throw new MeshError("INVALID_INPUT", "task_id is empty", { field: "task_id" });
    if (req.skill_id !== skill.SKILL_ID) {
      throw new MeshError("UNKNOWN_SKILL", `this agent has no skill ${JSON.stringify(req.skill_id)}; it offers ${skill.SKILL_ID}`, {
        skill_id: req.skill_id,
      });
    }
    // doc:begin validate
    const input = fromStruct(req.input as PbStruct | null);
    if (!this.validate(input)) throw schemaError(this.validate.errors);
    let deadline = Date.now() + this.settings.maxTaskMs;
    const asked = millis(req.deadline);
    if (asked !== undefined) deadline = Math.min(deadline, asked);
    const grpcDeadline = callDeadline instanceof Date ? callDeadline.getTime() : callDeadline;
    if (Number.isFinite(grpcDeadline)) deadline = Math.min(deadline, grpcDeadline);
    if (deadline <= Date.now()) throw new MeshError("DEADLINE_EXCEEDED", "the task's deadline had passed before it started");
    // doc:end validate
    const started = this.tasks.start(req.task_id, req.idempotency_key, deadline, this.settings.maxConcurrency);
    if (!started) {
      throw new MeshError("RESOURCE_EXHAUSTED", `${this.settings.maxConcurrency} tasks already running (max_concurrency)`, {
        limit: "max_concurrency",
      });
    }
    this.log(
      `task ${req.task_id} ${started.isNew ? "started" : "follows an earlier task with its key"} (run ${req.run_id}, attempt ${req.attempt}, key ${req.idempotency_key || "-"})`,
      ids,
    );
    return { ...started, input };
  }

  private async work(task: Task, input: { [k: string]: Json }, span: Span): Promise<void> {
    task.status("TASK_STATE_SUBMITTED", "accepted");
    task.status("TASK_STATE_WORKING", "working");
    try {
      if (this.settings.faultDelayMs > 0) {
        task.progress(`fault injection: waiting ${this.settings.faultDelayMs} ms`);
        await task.sleep(this.settings.faultDelayMs);
      }
      const [output, artifacts] = await skill.execute(task, input, { askThreshold: this.settings.askThreshold });
      task.check();
      task.complete(output, artifacts, this.settings.artifactChunkBytes);
    } catch (e) {
      if (e instanceof Cancelled) {
        // the task already ended (cancel or deadline)
      } else if (e instanceof MeshError) {
        this.log(`task ${task.taskId} failed: ${e.reason} ${e.message}`, tracing.ids(span));
        task.fail(e.reason, e.message);
      } else {
        // A bug must fail the task, never the agent.
        this.log(`task ${task.taskId} failed: ${(e as Error).stack ?? e}`, tracing.ids(span));
        task.fail("AGENT_FAILED", "the quality check failed inside the agent (see its log)", true);
      }
    }
    this.log(`task ${task.taskId} ended ${task.state}`, tracing.ids(span));
    const completed = task.state === "TASK_STATE_COMPLETED";
    tracing.end(span, completed ? "completed" : (task.reason || "canceled").toLowerCase());
  }
}

/** A running agent: the gRPC server with health and reflection. */
export class Server {
  readonly agent: Agent;
  readonly grpc: grpc.Server;
  readonly health = new HealthImplementation({ "": "NOT_SERVING", [AGENT_SERVICE]: "NOT_SERVING" });
  port = 0;

  constructor(
    readonly settings: Settings,
    log: Log,
  ) {
    this.agent = new Agent(settings, log);
    this.grpc = new grpc.Server({
      "grpc.max_receive_message_length": settings.maxMessageBytes,
      "grpc.max_send_message_length": settings.maxMessageBytes,
    });
    // doc:begin health
    this.grpc.addService((v1.AgentService as any).service, this.agent.handlers());
    this.health.addToServer(this.grpc);
    new ReflectionService(servedDefinition).addToServer(this.grpc);
    // doc:end health
  }

  /** Binds `listen` (host:port; port 0 picks one) and turns SERVING. */
  async start(listen: string): Promise<number> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.grpc.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    for (const name of ["", AGENT_SERVICE]) this.health.setStatus(name, "SERVING");
    return this.port;
  }

  /** Drains: NOT_SERVING, new tasks refused, running ones get the grace
   * period, then the rest are cancelled. */
  async stop(beforeDrain?: () => Promise<void>): Promise<void> {
    for (const name of ["", AGENT_SERVICE]) this.health.setStatus(name, "NOT_SERVING");
    this.agent.draining = true;
    if (beforeDrain) await beforeDrain();
    const end = Date.now() + this.settings.shutdownGraceMs;
    while (this.agent.tasks.running().length > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const task of this.agent.tasks.running()) {
      task.fail("AGENT_UNAVAILABLE", "the agent is shutting down", true, "TASK_STATE_CANCELED");
    }
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.grpc.forceShutdown();
        resolve();
      }, 1000);
      this.grpc.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }
}
