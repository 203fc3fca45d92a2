//! The signal every server in the workspace stops on.

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes and compose send).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

/// Tells every [`Shutdown`] cloned from its pair that the service is
/// stopping. Dropping it counts as telling them.
#[derive(Debug)]
pub struct Trigger(tokio::sync::watch::Sender<bool>);

/// A task's view of shutdown: checked between units of work
/// ([`Shutdown::is_started`]) or awaited ([`Shutdown::started`]). A named
/// type instead of a bare `watch::Receiver<bool>`, so its meaning and its
/// two ways of use live in one place.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

/// A new trigger and the shutdown it controls.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Starts shutdown (idempotent).
    pub fn start(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown has started.
    pub fn is_started(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has started, or when its trigger is gone.
    pub async fn started(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// [`Shutdown::started`] as an owned future, for `select!` loops and
    /// servers' graceful-shutdown hooks that need `'static`.
    pub async fn into_started(mut self) {
        self.started().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_start_and_a_dropped_trigger_counts() {
        let (trigger, shutdown) = channel();
        let mut waiter = shutdown.clone();
        assert!(!shutdown.is_started());
        let waiting = tokio::spawn(async move { waiter.started().await });
        trigger.start();
        waiting.await.unwrap();
        assert!(shutdown.is_started());

        let (trigger, shutdown) = channel();
        drop(trigger);
        shutdown.into_started().await;
    }
}
