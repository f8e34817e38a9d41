// The agentmesh.v1 protos, loaded at start from the repository's proto/
// folder with @grpc/proto-loader (no generated code to keep in sync), and
// google.rpc.Status / ErrorInfo from Google's own google-proto-files.
import * as path from "node:path";
import * as fs from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";
import { getProtoPath } from "google-proto-files";
import { protoPath as healthProtoPath } from "grpc-health-check";

/** The folder holding agentmesh/v1/*.proto: AGENTMESH_PROTO_DIR, or the
 * repository's proto/ two levels above this package. */
export function protoRoot(): string {
  const given = process.env.AGENTMESH_PROTO_DIR;
  // dist/src/protos.js -> services/quality-ts -> repository root
  const root = given ?? path.resolve(__dirname, "..", "..", "..", "..", "proto");
  if (!fs.existsSync(path.join(root, "agentmesh", "v1", "agent.proto"))) {
    throw new Error(
      `no agentmesh/v1/agent.proto under ${root}: set AGENTMESH_PROTO_DIR to the repository's proto/ folder`,
    );
  }
  return root;
}

const FILES = ["agent.proto", "registry.proto", "errors.proto", "content.proto"];

/** Options: field names as in the .proto, enums as names, oneofs named. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// doc:begin load
export const packageDefinition = protoLoader.loadSync(
  FILES.map((f) => path.join("agentmesh", "v1", f)),
  { ...LOADER_OPTIONS, includeDirs: [protoRoot()] },
);
// doc:end load

/** Everything this agent serves, for server reflection: the agentmesh
 * protos and grpc.health.v1. */
export const servedDefinition: protoLoader.PackageDefinition = {
  ...packageDefinition,
  ...protoLoader.loadSync(healthProtoPath, LOADER_OPTIONS),
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const loaded = grpc.loadPackageDefinition(packageDefinition) as any;

/** agentmesh.v1 service constructors and definitions. */
export const v1 = loaded.agentmesh.v1 as {
  AgentService: grpc.ServiceClientConstructor;
  RegistryService: grpc.ServiceClientConstructor;
};

/** google.rpc.Status and google.rpc.ErrorInfo, for rich error details. */
export const rpcTypes = (() => {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) =>
    target.startsWith("google/rpc/") ? getProtoPath(target.slice("google/".length)) : target;
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
  return {
    Status: root.lookupType("google.rpc.Status"),
    ErrorInfo: root.lookupType("google.rpc.ErrorInfo"),
  };
})();
