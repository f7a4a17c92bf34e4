//! A shutdown signal that many tasks can wait for.

use tokio::sync::watch;

/// The sending half: `trigger()` once, every `Shutdown` sees it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A cheap, cloneable view of the signal.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the trigger fires (or its sender is gone).
    pub async fn triggered(&mut self) {
        let _ = self.0.wait_for(|&down| down).await;
    }
}
