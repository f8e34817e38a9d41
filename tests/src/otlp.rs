//! A real OTLP/gRPC trace receiver on loopback: the collector's trace
//! service from `opentelemetry-proto`, keeping every span it is sent with
//! the name of the service that sent it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

/// A received span and the `service.name` of its sender.
#[derive(Debug, Clone)]
pub struct Received {
    /// `service.name` of the resource.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl Received {
    /// Hex trace id.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Hex span id.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Hex parent span id ("" for a root).
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string or integer attribute, as text.
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }

    /// The names of the span's events.
    pub fn events(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let value = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => Some(format!("{value:?}")),
    }
}

/// The spans received so far.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    out.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves a receiver on a loopback port; returns it and its address.
    pub async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, addr)
    }

    /// Every span of trace `trace_id` received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.trace_id() == trace_id)
            .cloned()
            .collect()
    }

    /// Every span received so far.
    pub fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded by `within`) until `done` holds for the spans of
    /// `trace_id`; returns them.
    pub async fn wait_for(
        &self,
        trace_id: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            if tokio::time::Instant::now() >= deadline {
                let names: HashMap<String, Vec<String>> =
                    spans.iter().fold(HashMap::new(), |mut m, r| {
                        m.entry(r.service.clone())
                            .or_default()
                            .push(r.span.name.clone());
                        m
                    });
                panic!("trace {trace_id} incomplete after {within:?}: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
