//! Ctrl-C and SIGTERM (a service manager or `docker stop`): both ask for a clean stop.

/// Resolves when the user or the system asks the process to stop.
pub async fn requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    // Without a SIGTERM handler, Ctrl-C alone. If even that cannot be installed, never resolve:
    // the default signal behaviour then stops the process.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
