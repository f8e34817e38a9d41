//! `analytics-agent`: the analytics agent as a gRPC server.

// mimalloc: the services allocate and free many small objects per request
// across worker threads; measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// doc:begin main
fn main() -> std::process::ExitCode {
    agentmesh_runtime::launch::main::<agentmesh_analytics::server::AnalyticsService>()
}
// doc:end main
