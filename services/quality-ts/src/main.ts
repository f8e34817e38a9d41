#!/usr/bin/env node
// `quality-agent`: runs the quality agent until SIGTERM or SIGINT, then drains.
import { parseArgs } from "node:util";
import { Registration } from "./registration";
import { DEFAULTS, Server, Settings, VERSION } from "./server";
import * as tracing from "./tracing";

const USAGE = `quality-agent: agentmesh quality agent (quality.check), a gRPC AgentService in TypeScript

  --listen HOST:PORT        where to serve (default 127.0.0.1:50062)
  --max-concurrency N       tasks at once (default ${DEFAULTS.maxConcurrency})
  --heartbeat-ms N          heartbeat interval cap (default ${DEFAULTS.heartbeatMs})
  --max-task-ms N           longest a task may run (default ${DEFAULTS.maxTaskMs})
  --shutdown-grace-ms N     time running tasks get on SIGTERM (default ${DEFAULTS.shutdownGraceMs})
  --fault-delay-ms N        fault injection: every task waits this long (heartbeating, cancellable) first
  --ask-threshold           ask a person for the outlier threshold when the input names none
                            (env AGENTMESH_QUALITY_ASK_THRESHOLD)
  --register HOST:PORT      orchestrator to register with
  --advertise HOST:PORT     address the orchestrator reaches this agent at (default: --listen)
  --lease-ms N              registration lease asked for (default 10000, at least 300)
  --log-format text|json    log lines as text (default) or JSON
  --otlp-endpoint URL       export spans over OTLP/gRPC, e.g. http://otel-collector:4317
  --otlp-sample-ratio R     share of new traces recorded, 0 to 1 (default 1)
  --otlp-export-interval-ms N  how often finished spans are sent (default 5000)
  --version, --help`;

function fail(message: string): never {
  process.stderr.write(`quality-agent: ${message}\n${USAGE}\n`);
  process.exit(64);
}

function count(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) fail(`--${name} ${text}: expected a whole number of at least ${min}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        listen: { type: "string", default: "127.0.0.1:50062" },
        "max-concurrency": { type: "string" },
        "heartbeat-ms": { type: "string" },
        "max-task-ms": { type: "string" },
        "shutdown-grace-ms": { type: "string" },
        "fault-delay-ms": { type: "string" },
        "ask-threshold": { type: "boolean" },
        register: { type: "string" },
        advertise: { type: "string" },
        "lease-ms": { type: "string" },
        "log-format": { type: "string", default: "text" },
        "otlp-endpoint": { type: "string" },
        "otlp-sample-ratio": { type: "string" },
        "otlp-export-interval-ms": { type: "string" },
        version: { type: "boolean" },
        help: { type: "boolean" },
      },
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  if (values.version) return void process.stdout.write(`quality-agent ${VERSION}\n`);
  const format = values["log-format"];
  if (format !== "text" && format !== "json") fail(`--log-format ${format}: expected text or json`);
  const log = (message: string, fields: Record<string, string> = {}) =>
    process.stderr.write(
      format === "json"
        ? `${JSON.stringify({ time: new Date().toISOString(), level: "INFO", target: "quality_agent", message, ...fields })}\n`
        : `${new Date().toISOString()} INFO quality_agent: ${message}${Object.entries(fields)
            .map(([k, v]) => ` ${k}=${v}`)
            .join("")}\n`,
    );
  const endpoint = values["otlp-endpoint"];
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) fail(`--otlp-endpoint ${endpoint}: expected an http:// or https:// URL`);
  const ratio = values["otlp-sample-ratio"] === undefined ? 1 : Number(values["otlp-sample-ratio"]);
  if (!(ratio >= 0 && ratio <= 1)) fail(`--otlp-sample-ratio ${values["otlp-sample-ratio"]}: expected a number from 0 to 1`);
  tracing.setup({
    endpoint,
    sampleRatio: ratio,
    exportIntervalMs: count("otlp-export-interval-ms", values["otlp-export-interval-ms"], 5000, 1),
  });
  const settings: Settings = {
    ...DEFAULTS,
    maxConcurrency: count("max-concurrency", values["max-concurrency"], DEFAULTS.maxConcurrency, 1),
    heartbeatMs: count("heartbeat-ms", values["heartbeat-ms"], DEFAULTS.heartbeatMs, 1),
    maxTaskMs: count("max-task-ms", values["max-task-ms"], DEFAULTS.maxTaskMs, 1),
    shutdownGraceMs: count("shutdown-grace-ms", values["shutdown-grace-ms"], DEFAULTS.shutdownGraceMs, 0),
    faultDelayMs: count("fault-delay-ms", values["fault-delay-ms"], DEFAULTS.faultDelayMs, 0),
    askThreshold:
      values["ask-threshold"] === true || ["1", "true", "yes"].includes((process.env.AGENTMESH_QUALITY_ASK_THRESHOLD ?? "").toLowerCase()),
  };
  const leaseMs = count("lease-ms", values["lease-ms"], 10_000, 300);
  const server = new Server(settings, log);
  let port: number;
  try {
    port = await server.start(values.listen!);
  } catch (e) {
    log(`cannot serve on ${values.listen}: ${(e as Error).message}`);
    process.exit(69);
  }
  const host = values.listen!.slice(0, values.listen!.lastIndexOf(":"));
  log(`quality agent ${VERSION} serving on ${host}:${port}`);
  const registration = values.register
    ? new Registration(values.register, values.advertise ?? `${host}:${port}`, leaseMs, log)
    : undefined;
  registration?.start();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log("shutting down: draining");
    await server.stop(registration ? () => registration.stop() : undefined);
    await tracing.shutdown();
    log("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  if (process.env.AGENTMESH_EXIT_WITH_PARENT === "1") {
    // Stop when the process that started this one goes away, so a killed
    // `meshctl up` leaves no orphans.
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) void stop();
    }, 500).unref();
  }
}

void main();
