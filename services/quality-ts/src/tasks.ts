// The task table: each task's events, cancellation, idempotency keys.
//
// A task's events are recorded once, as the work produces them; every
// stream that shows the task (the first call, and later calls with the same
// idempotency key) reads the record and numbers the events for its own task
// id. The first ending wins: a result, a failure, a cancel or a passed
// deadline, whichever comes first, closes the record.
import { EventEmitter } from "node:events";
import Ajv2020 from "ajv/dist/2020";
import { MeshError, schemaError } from "./errors";
import { Json, toStruct } from "./struct";

export type State =
  | "TASK_STATE_SUBMITTED"
  | "TASK_STATE_WORKING"
  | "TASK_STATE_INPUT_REQUIRED"
  | "TASK_STATE_COMPLETED"
  | "TASK_STATE_FAILED"
  | "TASK_STATE_CANCELED"
  | "TASK_STATE_REJECTED";

const TERMINAL: ReadonlySet<State> = new Set<State>([
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
]);

/** One TaskEvent without its task id and seq (set per stream). */
export type Body = { [event: string]: unknown };

export interface Event {
  time: { seconds: number; nanos: number };
  body: Body;
}

/** An output artifact, streamed in chunks. */
export interface Artifact {
  artifact_id: string;
  name: string;
  description: string;
  media_type: string;
  data: Buffer;
  metadata: { [key: string]: Json };
}

/** Thrown inside the work once the task was cancelled or ended. */
export class Cancelled extends Error {}

type Answer = { [key: string]: Json };

/** The question a task waits on. */
interface Pending {
  inputId: string;
  validate: ReturnType<Ajv2020["compile"]>;
  resolve: (answer: Answer) => void;
}

const ajv = new Ajv2020({ allErrors: false, strict: false });

function now(): { seconds: number; nanos: number } {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

export class Task {
  readonly events: Event[] = [];
  state: State = "TASK_STATE_SUBMITTED";
  /** The failure's reason, once it failed ("" otherwise). */
  reason = "";
  endedAt?: number;
  readonly signal = new EventEmitter();
  /** Answers to questions an earlier attempt asked (input_id -> answer). */
  answers = new Map<string, Answer>();
  private pending?: Pending;
  private readonly abort = new AbortController();

  constructor(
    readonly taskId: string,
    readonly key: string,
    /** Epoch ms; moved later by the time the task waits for a person. */
    public deadline: number,
  ) {
    this.signal.setMaxListeners(0);
  }

  get done(): boolean {
    return TERMINAL.has(this.state);
  }

  get aborted(): AbortSignal {
    return this.abort.signal;
  }

  private push(body: Body): void {
    this.events.push({ time: now(), body });
    this.signal.emit("event");
  }

  status(state: State, message: string): void {
    if (this.done) return;
    this.state = state;
    this.push({ status: { state, message, final: false } });
  }

  progress(message: string, fraction = -1): void {
    if (this.done) return;
    this.push({ progress: { message, fraction, text_delta: "" } });
  }

  complete(output: { [key: string]: Json }, artifacts: Artifact[], chunkBytes: number): boolean {
    if (this.done) return false;
    for (const a of artifacts) {
      const count = Math.max(1, Math.ceil(a.data.length / chunkBytes));
      for (let i = 0; i < count; i++) {
        const first = i === 0;
        this.push({
          artifact_chunk: {
            artifact_id: a.artifact_id,
            name: first ? a.name : "",
            description: first ? a.description : "",
            media_type: first ? a.media_type : "",
            metadata: first ? toStruct(a.metadata) : null,
            data: a.data.subarray(i * chunkBytes, (i + 1) * chunkBytes),
            append: !first,
            last_chunk: i === count - 1,
          },
        });
      }
    }
    this.push({
      result: { output: toStruct(output), artifact_ids: artifacts.map((a) => a.artifact_id) },
    });
    this.end("TASK_STATE_COMPLETED", "completed");
    return true;
  }

  fail(reason: string, message: string, retryable = false, state: State = "TASK_STATE_FAILED"): boolean {
    if (this.done) return false;
    this.reason = reason;
    this.push({ failure: { reason, message, retryable } });
    this.end(state, message);
    return true;
  }

  /** Cancels a running task; answers the state it ends in. */
  cancel(why: string): State {
    this.fail("CANCELED", why ? `canceled: ${why}` : "canceled", false, "TASK_STATE_CANCELED");
    return this.state;
  }

  private end(state: State, message: string): void {
    this.state = state;
    this.endedAt = Date.now();
    this.abort.abort();
    this.push({ status: { state, message, final: true } });
  }

  // doc:begin ask
  /** Asks a person and waits for the answer, checked against `schema` (JSON
   * Schema 2020-12) before it is returned. The task goes INPUT_REQUIRED with
   * the question; its deadline does not run while it waits; heartbeats go
   * on. An answer an earlier attempt got (ExecuteTaskRequest.answers) is
   * returned at once. Rejects with `Cancelled` if the task ends first. */
  ask(inputId: string, question: string, schema: { [key: string]: Json }): Promise<Answer> {
    const validate = ajv.compile(schema);
    const given = this.answers.get(inputId);
    if (given !== undefined && validate(given)) return Promise.resolve(given);
    if (this.abort.signal.aborted) return Promise.reject(new Cancelled());
    const since = Date.now();
    return new Promise<Answer>((resolve, reject) => {
      const onAbort = () => {
        this.pending = undefined;
        reject(new Cancelled());
      };
      this.abort.signal.addEventListener("abort", onAbort, { once: true });
      this.pending = {
        inputId,
        validate,
        resolve: (answer) => {
          this.abort.signal.removeEventListener("abort", onAbort);
          this.pending = undefined;
          this.deadline += Date.now() - since;
          this.status("TASK_STATE_WORKING", "answered");
          resolve(answer);
        },
      };
      this.state = "TASK_STATE_INPUT_REQUIRED";
      this.push({
        status: {
          state: "TASK_STATE_INPUT_REQUIRED",
          message: question,
          final: false,
          input: { input_id: inputId, question, answer_schema: toStruct(schema) },
        },
      });
    });
  }

  /** Whether the task waits for a person. */
  get waiting(): boolean {
    return this.pending !== undefined;
  }

  /** A person's answer (AgentService.ProvideInput). Throws `MeshError`:
   * NOT_WAITING if the task waits for no such question, INVALID_INPUT
   * (field `answer.<path>`) if the answer does not fit its schema. */
  provide(inputId: string, answer: Answer): void {
    const pending = this.pending;
    if (!pending || pending.inputId !== inputId) {
      const waits = pending ? `; it waits for ${JSON.stringify(pending.inputId)}` : "";
      throw new MeshError("NOT_WAITING", `task ${this.taskId} waits for no answer to ${JSON.stringify(inputId)}${waits}`, {
        input_id: inputId,
      });
    }
    if (!pending.validate(answer)) throw schemaError(pending.validate.errors, "answer");
    pending.resolve(answer);
  }
  // doc:end ask

  /** Throws `Cancelled` once the task was cancelled or ended. */
  check(): void {
    if (this.abort.signal.aborted) throw new Cancelled();
  }

  /** Waits, ending early (with `Cancelled`) on cancel. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.abort.signal.aborted) return reject(new Cancelled());
      const timer = setTimeout(() => {
        this.abort.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(new Cancelled());
      };
      this.abort.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Streams the task's events to `write` as task `taskId`, numbered 1, 2,
   * ...; a heartbeat after every `heartbeatMs` of silence while it works.
   * A replay leaves out the first run's progress. Resolves when the final
   * status was written. */
  follow(taskId: string, heartbeatMs: number, replay: boolean, write: (event: object) => void): Promise<void> {
    let seq = 0;
    let index = 0;
    const send = (e: Event) => write({ task_id: taskId, seq: ++seq, time: e.time, ...e.body });
    return new Promise((resolve) => {
      let beat: NodeJS.Timeout | undefined;
      let deadline: NodeJS.Timeout | undefined;
      const flush = () => {
        for (; index < this.events.length; index++) {
          const e = this.events[index]!;
          if (replay && "progress" in e.body) continue;
          send(e);
        }
        if (this.done) {
          clearTimeout(beat);
          clearTimeout(deadline);
          this.signal.off("event", flush);
          resolve();
          return;
        }
        clearTimeout(beat);
        beat = setTimeout(heartbeat, heartbeatMs);
      };
      // doc:begin heartbeat
      const heartbeat = () => {
        if (this.done) return;
        send({ time: now(), body: { heartbeat: {} } });
        beat = setTimeout(heartbeat, heartbeatMs);
      };
      // doc:end heartbeat
      // The deadline moves while the task waits for a person: look again.
      const expire = () => {
        if (this.done) return;
        if (this.waiting || Date.now() < this.deadline) {
          deadline = setTimeout(expire, Math.max(50, this.deadline - Date.now()));
          return;
        }
        this.fail("DEADLINE_EXCEEDED", "the task's deadline passed before it finished");
      };
      deadline = setTimeout(expire, Math.max(0, this.deadline - Date.now()));
      this.signal.on("event", flush);
      flush();
    });
  }
}

/** Tasks by id and by idempotency key, bounded: ended tasks are forgotten
 * after `ttlMs`, or oldest first when more than `limit` are kept. */
export class Table {
  private readonly byId = new Map<string, Task>();
  private readonly byKey = new Map<string, Task>();

  constructor(
    private readonly limit: number,
    private readonly ttlMs: number,
  ) {}

  get(taskId: string): Task | undefined {
    return this.byId.get(taskId);
  }

  running(): Task[] {
    return [...new Set([...this.byId.values()].filter((t) => !t.done))];
  }

  /** The task to show under `taskId`, and whether it is new (to run). A key
   * whose task is running or completed is followed; one whose task failed
   * runs again. Undefined when `cap` tasks already run. */
  start(taskId: string, key: string, deadline: number, cap: number): { task: Task; isNew: boolean } | undefined {
    this.forget();
    const seen = key ? this.byKey.get(key) : undefined;
    if (seen && (!seen.done || seen.state === "TASK_STATE_COMPLETED")) {
      this.byId.set(taskId, seen);
      return { task: seen, isNew: false };
    }
    if (this.running().length >= cap) return undefined;
    const task = new Task(taskId, key, deadline);
    this.byId.set(taskId, task);
    if (key) this.byKey.set(key, task);
    return { task, isNew: true };
  }

  private forget(): void {
    const now = Date.now();
    let over = this.byId.size - this.limit;
    for (const [id, task] of this.byId) {
      if (task.endedAt === undefined) continue;
      if (now - task.endedAt <= this.ttlMs && over <= 0) continue;
      this.byId.delete(id);
      over--;
      if (task.key && this.byKey.get(task.key) === task) this.byKey.delete(task.key);
    }
  }
}
