//! Orchestrator API statuses as A2A errors. The A2A code says what class
//! of error it is; the mesh's own reason (ErrorReason name) and its
//! metadata travel in the `google.rpc.ErrorInfo` detail's metadata
//! (`agentmesh_reason`, and each metadata key), which both bindings keep.

use std::collections::HashMap;

use a2a::errordetails::{FieldViolation, TypedDetail};
use a2a::{A2AError, error_code, error_reason};
use agentmesh_proto::error::MeshError;
use tonic::Code;

/// The ErrorInfo metadata key holding the mesh's reason.
pub const REASON_KEY: &str = "agentmesh_reason";

/// INVALID_PARAMS naming the field.
pub fn invalid(field: &str, message: impl Into<String>) -> A2AError {
    let message = message.into();
    let mut meta = HashMap::new();
    meta.insert(REASON_KEY.to_string(), "INVALID_INPUT".to_string());
    meta.insert("field".to_string(), field.to_string());
    A2AError::invalid_params(format!("{field}: {message}")).with_details(vec![
        TypedDetail::error_info(
            error_reason(error_code::INVALID_PARAMS),
            a2a::errordetails::PROTOCOL_DOMAIN,
            Some(meta),
        ),
        TypedDetail::bad_request(vec![FieldViolation {
            field: field.to_string(),
            description: message,
        }]),
    ])
}

/// The A2A error for a status the Orchestrator API answered.
pub fn from_status(status: &tonic::Status) -> A2AError {
    let mesh = MeshError::from_status(status);
    let code = match status.code() {
        Code::NotFound => error_code::TASK_NOT_FOUND,
        Code::InvalidArgument | Code::OutOfRange => error_code::INVALID_PARAMS,
        Code::FailedPrecondition => error_code::UNSUPPORTED_OPERATION,
        _ => error_code::INTERNAL_ERROR,
    };
    let mut meta: HashMap<String, String> = mesh.metadata.clone();
    meta.insert(REASON_KEY.to_string(), mesh.reason.name().to_string());
    meta.insert("grpc_code".to_string(), format!("{:?}", status.code()));
    A2AError::new(code, status.message()).with_details(vec![TypedDetail::error_info(
        error_reason(code),
        a2a::errordetails::PROTOCOL_DOMAIN,
        Some(meta),
    )])
}

/// A refused credential: the mesh's UNAUTHENTICATED / PERMISSION_DENIED,
/// as an A2A error (the HTTP and gRPC layers answer 401 /
/// UNAUTHENTICATED before a call gets here; this is the last word).
pub fn refused(reason: &str, message: &str) -> A2AError {
    let mut meta = HashMap::new();
    meta.insert(REASON_KEY.to_string(), reason.to_string());
    A2AError::invalid_request(message.to_string()).with_details(vec![TypedDetail::error_info(
        error_reason(error_code::INVALID_REQUEST),
        a2a::errordetails::PROTOCOL_DOMAIN,
        Some(meta),
    )])
}
