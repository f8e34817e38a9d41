"""Refusals as the protocol wants them: a gRPC status carrying a
`google.rpc.ErrorInfo` with domain `agentmesh` and a reason from
`agentmesh.v1.ErrorReason` (its name without the `ERROR_REASON_` prefix)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .protos import errors

DOMAIN = "agentmesh"

# The gRPC code each reason travels with (docs/PROTOCOL.md, "Errors").
_CODES = {
    "UNKNOWN_SKILL": grpc.StatusCode.NOT_FOUND,
    "INVALID_INPUT": grpc.StatusCode.INVALID_ARGUMENT,
    "AGENT_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "OUTPUT_INVALID": grpc.StatusCode.INTERNAL,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "CANCELED": grpc.StatusCode.CANCELLED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "AGENT_FAILED": grpc.StatusCode.INTERNAL,
    "NOT_WAITING": grpc.StatusCode.FAILED_PRECONDITION,
}

def reason_known(reason: str) -> bool:
    """True if `reason` names a value of `agentmesh.v1.ErrorReason`."""
    try:
        errors.ErrorReason.Value(f"ERROR_REASON_{reason}")
    except ValueError:
        return False
    return True


@dataclass
class MeshError(Exception):
    """A refusal or a task failure with its machine-readable reason."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not reason_known(self.reason):
            raise ValueError(f"{self.reason!r} is not an agentmesh ErrorReason")
        super().__init__(self.message)

    @property
    def code(self) -> grpc.StatusCode:
        return _CODES.get(self.reason, grpc.StatusCode.INTERNAL)

    # doc:begin status
    def to_status(self) -> grpc.Status:
        """The status to abort a call with, ErrorInfo attached."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=self.metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(
            code=self.code.value[0], message=self.message, details=[detail]
        )
        return rpc_status.to_status(status)
    # doc:end status

    def abort(self, context: grpc.ServicerContext) -> None:
        """Ends the call with this error (raises)."""
        context.abort_with_status(self.to_status())



# doc:begin schema_error
def schema_error(validator, value, prefix: str = "") -> MeshError | None:
    """The first way `value` fails `validator` (a jsonschema validator), as
    INVALID_INPUT naming the failing field, under `prefix` when given
    (`answer.horizon`); None when it fits."""
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return None
    first = errors[0]
    where = ".".join([*([prefix] if prefix else []), *(str(p) for p in first.path)]) or "input"
    return MeshError("INVALID_INPUT", f"{where}: {first.message}", {"field": where})
# doc:end schema_error
