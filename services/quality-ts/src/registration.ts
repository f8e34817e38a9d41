// Self-registration with an orchestrator's RegistryService: register, renew
// the lease at a third of its length, register again when it was lost, back
// off (exponential, jittered) while the orchestrator cannot be reached, and
// deregister on shutdown.
import * as grpc from "@grpc/grpc-js";
import { SpanKind } from "@opentelemetry/api";
import { v1 } from "./protos";
import * as tracing from "./tracing";

const BACKOFF_FIRST_MS = 200;
const BACKOFF_MAX_MS = 10_000;
const RPC_TIMEOUT_MS = 5_000;

type Duration = { seconds: number; nanos: number };
const toMs = (d: Duration | null | undefined) => (d ? d.seconds * 1000 + d.nanos / 1e6 : 0);

export class Registration {
  readonly address: string;
  private readonly client: grpc.Client & { [rpc: string]: Function };
  private leaseId?: string;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private backoff = BACKOFF_FIRST_MS;

  constructor(orchestrator: string, advertise: string, private readonly leaseMs: number, private readonly log: (msg: string) => void) {
    this.address = `http://${advertise}`;
    this.client = new v1.RegistryService(orchestrator, grpc.credentials.createInsecure()) as never;
  }

  start(): void {
    this.tick();
  }

  private call<T>(rpc: string, request: object, metadata = new grpc.Metadata()): Promise<T> {
    return new Promise((resolve, reject) =>
      this.client[rpc]!(request, metadata, { deadline: Date.now() + RPC_TIMEOUT_MS }, (err: grpc.ServiceError | null, resp: T) =>
        err ? reject(err) : resolve(resp),
      ),
    );
  }

  private schedule(ms: number): void {
    if (!this.stopped) this.timer = setTimeout(() => this.tick(), ms);
  }

  // doc:begin lease
  private async tick(): Promise<void> {
    try {
      let granted: number;
      if (this.leaseId === undefined) {
        // A trace of its own, continued by the registry.
        const span = tracing.tracer().startSpan("register", { kind: SpanKind.CLIENT });
        const resp = await this.call<{ lease_id: string; lease: Duration }>(
          "Register",
          {
            address: this.address,
            lease: { seconds: Math.floor(this.leaseMs / 1000), nanos: (this.leaseMs % 1000) * 1e6 },
          },
          tracing.inject(span),
        ).finally(() => span.end());
        this.leaseId = resp.lease_id;
        granted = toMs(resp.lease);
        this.log(`registered ${this.address}, lease ${this.leaseId} for ${granted} ms`);
      } else {
        granted = toMs((await this.call<{ lease: Duration }>("RenewLease", { lease_id: this.leaseId })).lease);
      }
  // doc:end lease
      this.backoff = BACKOFF_FIRST_MS;
      this.schedule(Math.max(granted / 3, 100));
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (err.code === grpc.status.NOT_FOUND) {
        this.log(`lease ${this.leaseId} lost; registering again`);
        this.leaseId = undefined;
        this.schedule(0);
        return;
      }
      const wait = Math.random() * this.backoff;
      this.log(`registration: ${grpc.status[err.code]}: ${err.details}; again in ${Math.round(wait)} ms`);
      this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
      this.schedule(wait);
    }
  }

  /** Stops renewing and deregisters (idempotent on the server). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leaseId !== undefined) {
      try {
        await this.call("Deregister", { lease_id: this.leaseId });
        this.log(`deregistered ${this.address}`);
      } catch (e) {
        this.log(`deregister: ${(e as grpc.ServiceError).details}`);
      }
    }
    this.client.close();
  }
}
