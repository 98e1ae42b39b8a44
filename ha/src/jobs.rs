//! Leader duties that drive replicated work forward: the async-job executor and periodic
//! sweepers. Each one only proposes commands; what they do is decided by `apply`, so a duty
//! that is cancelled mid-way (leadership lost) leaves nothing half done: the next leader's
//! duty finds the same pending work in the replicated state and carries on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// What the job executor needs from the node.
pub trait JobBackend: Send + Sync + 'static {
    /// Jobs accepted but not yet run, oldest first, at most `limit`.
    fn pending(&self, limit: usize) -> Result<Vec<String>, DutyError>;
    /// Propose running one job; resolves once it is applied.
    fn run(&self, job_uuid: String) -> BoxFuture<'static, Result<(), DutyError>>;
}

/// Runs every pending async job, one at a time in uuid order, waking when a job is submitted
/// on this node and polling otherwise (jobs submitted through other nodes).
pub struct JobExecutor<B> {
    backend: B,
    wakeup: Arc<Notify>,
    poll: Duration,
}

impl<B: JobBackend> JobExecutor<B> {
    /// An executor polling every `poll` and woken early by `wakeup`.
    pub fn new(backend: B, wakeup: Arc<Notify>, poll: Duration) -> Self {
        Self {
            backend,
            wakeup,
            poll,
        }
    }
}

impl<B: JobBackend> Duty for JobExecutor<B> {
    fn name(&self) -> &str {
        "job-executor"
    }

    fn run(
        self: Arc<Self>,
        term: u64,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                // Register interest before scanning, so a submit racing the scan still wakes us.
                let woken = self.wakeup.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let pending = self.backend.pending(64)?;
                if !pending.is_empty() {
                    tracing::debug!(term, jobs = pending.len(), "running pending api jobs");
                }
                for uuid in pending {
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                    if let Err(e) = self.backend.run(uuid.clone()).await {
                        // Not fatal: the job stays pending and is retried on the next pass.
                        tracing::warn!(term, job = %uuid, error = %e.0, "api job run failed; will retry");
                        break;
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = woken => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        })
    }
}

/// A periodic leader duty: calls `tick` every `period` (the first time after one period).
pub struct Periodic<F> {
    name: String,
    period: Arc<dyn Fn() -> Duration + Send + Sync>,
    tick: F,
}

impl<F> Periodic<F>
where
    F: Fn() -> BoxFuture<'static, Result<(), DutyError>> + Send + Sync + 'static,
{
    /// A duty named `name` running `tick` every `period()` (read again before each wait, so a
    /// changed global config takes effect without a restart).
    pub fn new(
        name: impl Into<String>,
        period: Arc<dyn Fn() -> Duration + Send + Sync>,
        tick: F,
    ) -> Self {
        Self {
            name: name.into(),
            period,
            tick,
        }
    }
}

impl<F> Duty for Periodic<F>
where
    F: Fn() -> BoxFuture<'static, Result<(), DutyError>> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        self: Arc<Self>,
        term: u64,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep((self.period)()) => {}
                }
                if let Err(e) = (self.tick)().await {
                    tracing::warn!(term, duty = %self.name, error = %e.0, "periodic duty tick failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Jobs {
        pending: Mutex<Vec<String>>,
        ran: Mutex<Vec<String>>,
    }

    struct Backend(Arc<Jobs>);

    impl JobBackend for Backend {
        fn pending(&self, limit: usize) -> Result<Vec<String>, DutyError> {
            Ok(self
                .0
                .pending
                .lock()
                .unwrap()
                .iter()
                .take(limit)
                .cloned()
                .collect())
        }
        fn run(&self, job: String) -> BoxFuture<'static, Result<(), DutyError>> {
            let jobs = self.0.clone();
            Box::pin(async move {
                jobs.pending.lock().unwrap().retain(|j| *j != job);
                jobs.ran.lock().unwrap().push(job);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn runs_pending_jobs_and_wakes_on_submit() {
        let jobs = Arc::new(Jobs::default());
        jobs.pending
            .lock()
            .unwrap()
            .extend(["a".to_string(), "b".to_string()]);
        let wake = Arc::new(Notify::new());
        let exec = Arc::new(JobExecutor::new(
            Backend(jobs.clone()),
            wake.clone(),
            Duration::from_secs(3600),
        ));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(exec.run(1, cancel.clone()));
        for _ in 0..200 {
            if jobs.ran.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*jobs.ran.lock().unwrap(), vec!["a", "b"]);
        // A new job submitted later is picked up on the wake-up, not after the hour-long poll.
        jobs.pending.lock().unwrap().push("c".into());
        for _ in 0..200 {
            wake.notify_waiters();
            if jobs.ran.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(jobs.ran.lock().unwrap().len(), 3);
        cancel.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn periodic_ticks_until_cancelled() {
        let count = Arc::new(Mutex::new(0));
        let c = count.clone();
        let duty = Arc::new(Periodic::new(
            "tick",
            Arc::new(|| Duration::from_millis(5)),
            move || {
                let c = c.clone();
                Box::pin(async move {
                    *c.lock().unwrap() += 1;
                    Ok(())
                }) as BoxFuture<'static, Result<(), DutyError>>
            },
        ));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(duty.run(1, cancel.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert!(*count.lock().unwrap() >= 2);
    }
}
