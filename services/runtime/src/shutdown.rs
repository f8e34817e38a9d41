//! Shutdown signals.

/// Resolves on SIGTERM or SIGINT (Ctrl-C). Kubernetes stops a pod with
/// SIGTERM, a person at a terminal with SIGINT; both mean "finish what you
/// are doing and exit", so both start the same graceful shutdown.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                // Signal handlers could not be installed: fall back to Ctrl-C.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
