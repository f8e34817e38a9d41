//! Limits on the wire: deadlines from `grpc-timeout`, and a clear reason for
//! messages over the size limit.

use std::time::Duration;

use agentmesh_proto::error::{ErrorReason, MeshError};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// The client's deadline from the `grpc-timeout` header
/// (`<up to 8 digits><H|M|S|m|u|n>`), if present and well-formed.
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(raw)
}

fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Response mapper for the server's layer stack: tonic rejects a request
/// larger than `max_decoding_message_size` with a bare OUT_OF_RANGE; this
/// turns it into RESOURCE_EXHAUSTED with reason `RESOURCE_EXHAUSTED` and
/// `limit = max_message_bytes`, like every other limit.
pub fn explain_oversize(response: http::Response<Body>) -> http::Response<Body> {
    match Status::from_header_map(response.headers()) {
        Some(status)
            if status.code() == Code::OutOfRange
                && status.message().contains("message length too large") =>
        {
            MeshError::new(
                ErrorReason::ResourceExhausted,
                format!("message rejected: {}", status.message()),
            )
            .with_meta("limit", "max_message_bytes")
            .into_status()
            .into_http()
        }
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("10n"), Some(Duration::from_nanos(10)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("12x"), None);
    }
}
