// Refusals as the protocol wants them: a gRPC status carrying a
// google.rpc.ErrorInfo (domain "agentmesh", reason an ErrorReason name
// without its prefix) in the grpc-status-details-bin trailer.
import * as grpc from "@grpc/grpc-js";
import type { ErrorObject } from "ajv";
import { rpcTypes } from "./protos";

export const DOMAIN = "agentmesh";

const CODES: Record<string, grpc.status> = {
  UNKNOWN_SKILL: grpc.status.NOT_FOUND,
  INVALID_INPUT: grpc.status.INVALID_ARGUMENT,
  AGENT_UNAVAILABLE: grpc.status.UNAVAILABLE,
  OUTPUT_INVALID: grpc.status.INTERNAL,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  CANCELED: grpc.status.CANCELLED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  AGENT_FAILED: grpc.status.INTERNAL,
  NOT_WAITING: grpc.status.FAILED_PRECONDITION,
};

export type Reason = keyof typeof CODES;

/** A refusal or a task failure with its machine-readable reason. */
export class MeshError extends Error {
  constructor(
    readonly reason: Reason,
    message: string,
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
  }

  get code(): grpc.status {
    return CODES[this.reason] ?? grpc.status.INTERNAL;
  }

  /** The error a handler passes to grpc-js, ErrorInfo attached. */
  // doc:begin status
  toServiceError(): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
    const info = rpcTypes.ErrorInfo.encode(
      rpcTypes.ErrorInfo.create({ reason: this.reason, domain: DOMAIN, metadata: this.metadata }),
    ).finish();
    const status = rpcTypes.Status.encode(
      rpcTypes.Status.create({
        code: this.code,
        message: this.message,
        details: [{ type_url: "type.googleapis.com/google.rpc.ErrorInfo", value: info }],
      }),
    ).finish();
    const metadata = new grpc.Metadata();
    metadata.set("grpc-status-details-bin", Buffer.from(status));
    return { code: this.code, details: this.message, metadata };
  }
  // doc:end status
}

/** The ErrorInfo of a failed call, if it carries one (for clients and tests). */
export function errorInfo(
  err: grpc.ServiceError,
): { reason: string; domain: string; metadata: Record<string, string> } | undefined {
  const [raw] = err.metadata?.get("grpc-status-details-bin") ?? [];
  if (!raw || typeof raw === "string") return undefined;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const status = rpcTypes.Status.decode(raw) as any;
  for (const d of status.details ?? []) {
    if (String(d.type_url).endsWith("/google.rpc.ErrorInfo")) {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      return rpcTypes.ErrorInfo.toObject(rpcTypes.ErrorInfo.decode(d.value)) as any;
    }
  }
  return undefined;
}

// doc:begin schemaError
/** The first error of an Ajv validation as INVALID_INPUT naming the failing
 * field, under `prefix` when given (`answer.outlier_threshold`); the whole
 * value is `prefix` or `input`. */
export function schemaError(errors: ErrorObject[] | null | undefined, prefix = ""): MeshError {
  const first = errors?.[0];
  const path = (first?.instancePath ?? "").split("/").filter(Boolean);
  if (first?.keyword === "required") path.push(String(first.params.missingProperty));
  if (first?.keyword === "additionalProperties") path.push(String(first.params.additionalProperty));
  const field = [...(prefix ? [prefix] : []), ...path].join(".") || "input";
  return new MeshError("INVALID_INPUT", `${field}: ${first?.message ?? "invalid"}`, { field });
}
// doc:end schemaError
