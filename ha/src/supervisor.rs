//! The supervisor loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::LeaderContext;
use crate::context::LeaderNode;
use crate::BoxFuture;

/// What the node currently believes about its own leadership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leadership {
    /// This node is the Raft leader.
    pub is_leader: bool,
    /// The Raft term the belief refers to.
    pub term: u64,
}

/// Why a duty (or the barrier) stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DutyError(pub String);

/// A task only the leader runs. It must return promptly once its context is cancelled.
pub trait Duty: Send + Sync + 'static {
    /// Short name for logs and metrics.
    fn name(&self) -> &str;
    /// Run until `ctx.cancelled()` fires. Returning earlier counts as a failure: the
    /// supervisor restarts the duty after a pause while leadership lasts.
    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>>;
}

/// Waits, on a new leader, until everything committed when leadership was gained is applied
/// locally, so duties act on the complete state.
pub trait LeaderBarrier: Send + Sync + 'static {
    /// Resolve once the local state machine has applied everything committed so far.
    fn wait_caught_up(&self, term: u64) -> BoxFuture<'static, Result<(), DutyError>>;
}

/// The supervisor's observable state (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorState {
    /// Term whose duties are running, if any.
    pub active_term: Option<u64>,
    /// Number of duty tasks currently alive.
    pub running: usize,
}

/// Starts and stops the registered duties as leadership comes and goes.
pub struct Supervisor {
    duties: Vec<Arc<dyn Duty>>,
    restart_pause: Duration,
    state: watch::Sender<SupervisorState>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    /// A supervisor without duties.
    pub fn new() -> Self {
        Self {
            duties: Vec::new(),
            restart_pause: Duration::from_secs(1),
            state: watch::channel(SupervisorState::default()).0,
        }
    }

    /// Register a duty; call before [`Supervisor::run`].
    pub fn register(&mut self, duty: Arc<dyn Duty>) {
        self.duties.push(duty);
    }

    /// Pause before restarting a duty that returned while still leader.
    pub fn with_restart_pause(mut self, pause: Duration) -> Self {
        self.restart_pause = pause;
        self
    }

    /// Watch the supervisor's state.
    pub fn state(&self) -> watch::Receiver<SupervisorState> {
        self.state.subscribe()
    }

    /// Run until `shutdown` fires or the leadership watch closes; duties are stopped on exit.
    /// `node` is what every term's [`LeaderContext`] is built on.
    pub async fn run(
        self,
        mut leadership: watch::Receiver<Leadership>,
        barrier: Arc<dyn LeaderBarrier>,
        node: Arc<dyn LeaderNode>,
        shutdown: CancellationToken,
    ) {
        loop {
            // Wait to become leader.
            let term = loop {
                let l = *leadership.borrow_and_update();
                if l.is_leader {
                    break l.term;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = leadership.changed() => if r.is_err() { return },
                }
            };
            tracing::info!(
                term,
                "gained leadership; waiting until committed entries are applied"
            );
            let term_token = shutdown.child_token();

            // Establish: catch up first, abandoning the attempt if leadership goes meanwhile.
            let caught_up = tokio::select! {
                r = barrier.wait_caught_up(term) => r,
                _ = lost(&mut leadership, term) => Err(DutyError("leadership lost while catching up".into())),
                _ = shutdown.cancelled() => return,
            };
            if let Err(e) = caught_up {
                tracing::warn!(term, error = %e, "not starting leader duties");
                // Re-evaluate from the current leadership value; avoid a hot loop on a barrier
                // that keeps failing while we stay leader.
                tokio::select! {
                    _ = tokio::time::sleep(self.restart_pause) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }

            // Establish, in named steps: the term's context, then every duty in registration
            // order (catching up came first, above).
            tracing::info!(term, step = "context", "establishing leadership");
            let ctx = Arc::new(LeaderContext::new(term, term_token.clone(), node.clone()));
            let mut started = Vec::new();
            for duty in &self.duties {
                tracing::debug!(term, step = "start-duty", duty = %duty.name(), "establishing leadership");
                started.push((
                    duty.name().to_string(),
                    self.spawn_duty(duty.clone(), ctx.clone()),
                ));
            }
            self.state.send_replace(SupervisorState {
                active_term: Some(term),
                running: started.len(),
            });
            tracing::info!(term, duties = started.len(), "leader duties started");

            let stopping_for_shutdown = tokio::select! {
                _ = lost(&mut leadership, term) => false,
                _ = shutdown.cancelled() => true,
            };

            // Revoke, in named steps: cancel the term's context (every proposal through it
            // fails from now on), then wait for every duty, last started first, before anything
            // can start again.
            tracing::info!(term, step = "cancel", "revoking leadership");
            term_token.cancel();
            while let Some((name, task)) = started.pop() {
                tracing::debug!(term, step = "stop-duty", duty = %name, "revoking leadership");
                if let Err(e) = task.await {
                    tracing::error!(term, duty = %name, error = %e, "leader duty task panicked");
                }
                self.state.send_modify(|s| s.running = started.len());
            }
            drop(ctx);
            self.state.send_replace(SupervisorState::default());
            tracing::info!(term, "leader duties stopped");
            if stopping_for_shutdown {
                return;
            }
        }
    }

    /// Run one duty for a term, restarting it after a pause when it returns while the term
    /// lasts.
    fn spawn_duty(
        &self,
        duty: Arc<dyn Duty>,
        ctx: Arc<LeaderContext>,
    ) -> tokio::task::JoinHandle<()> {
        let pause = self.restart_pause;
        tokio::spawn(async move {
            let term = ctx.term();
            loop {
                let name = duty.name().to_string();
                let res = duty.clone().run(ctx.clone()).await;
                if ctx.cancelled().is_cancelled() {
                    tracing::debug!(duty = %name, term, "duty stopped");
                    return;
                }
                match res {
                    Ok(()) => tracing::warn!(duty = %name, term, "duty returned early; restarting"),
                    Err(e) => {
                        tracing::warn!(duty = %name, term, error = %e, "duty failed; restarting")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = ctx.cancelled().cancelled() => return,
                }
            }
        })
    }
}

/// Resolve when the node is no longer leader of `term` (or the watch closed).
async fn lost(leadership: &mut watch::Receiver<Leadership>, term: u64) {
    loop {
        let l = *leadership.borrow_and_update();
        if !l.is_leader || l.term != term {
            return;
        }
        if leadership.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use super::*;

    /// Records starts/stops and the peak number of concurrently running instances.
    #[derive(Default)]
    struct Probe {
        running: AtomicI64,
        peak: AtomicI64,
        starts: AtomicU64,
        terms: Mutex<Vec<u64>>,
        stop_delay_ms: u64,
    }

    impl Duty for Probe {
        fn name(&self) -> &str {
            "probe"
        }
        fn run(
            self: Arc<Self>,
            ctx: Arc<LeaderContext>,
        ) -> BoxFuture<'static, Result<(), DutyError>> {
            Box::pin(async move {
                let (term, cancel) = (ctx.term(), ctx.cancelled().clone());
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                self.starts.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut t) = self.terms.lock() {
                    t.push(term);
                }
                cancel.cancelled().await;
                // A slow shutdown: the next term must still not overlap with us.
                tokio::time::sleep(Duration::from_millis(self.stop_delay_ms)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    struct Barrier {
        delay_ms: u64,
        calls: AtomicU64,
    }

    impl LeaderBarrier for Barrier {
        fn wait_caught_up(&self, _term: u64) -> BoxFuture<'static, Result<(), DutyError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let d = self.delay_ms;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(d)).await;
                Ok(())
            })
        }
    }

    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in 2 s");
    }

    type Setup = (
        Arc<Probe>,
        Arc<Probe>,
        Arc<Barrier>,
        watch::Sender<Leadership>,
        watch::Receiver<SupervisorState>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    );

    fn setup(stop_delay_ms: u64, barrier_ms: u64) -> Setup {
        let a = Arc::new(Probe {
            stop_delay_ms,
            ..Default::default()
        });
        let b = Arc::new(Probe {
            stop_delay_ms,
            ..Default::default()
        });
        let barrier = Arc::new(Barrier {
            delay_ms: barrier_ms,
            calls: AtomicU64::new(0),
        });
        let mut sup = Supervisor::new().with_restart_pause(Duration::from_millis(20));
        sup.register(a.clone());
        sup.register(b.clone());
        let state = sup.state();
        let (tx, rx) = watch::channel(Leadership::default());
        let shutdown = CancellationToken::new();
        let h = tokio::spawn(sup.run(
            rx,
            barrier.clone(),
            crate::testing::node(),
            shutdown.clone(),
        ));
        (a, b, barrier, tx, state, shutdown, h)
    }

    #[tokio::test(start_paused = true)]
    async fn duties_start_on_gain_and_all_stop_on_loss() {
        let (a, b, barrier, tx, state, shutdown, h) = setup(0, 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.starts.load(Ordering::SeqCst), 0, "started while follower");
        tx.send_replace(Leadership {
            is_leader: true,
            term: 3,
        });
        until(|| a.running.load(Ordering::SeqCst) == 1 && b.running.load(Ordering::SeqCst) == 1)
            .await;
        assert_eq!(barrier.calls.load(Ordering::SeqCst), 1);
        assert_eq!(state.borrow().active_term, Some(3));
        tx.send_replace(Leadership {
            is_leader: false,
            term: 4,
        });
        until(|| a.running.load(Ordering::SeqCst) == 0 && b.running.load(Ordering::SeqCst) == 0)
            .await;
        until(|| state.borrow().active_term.is_none()).await;
        shutdown.cancel();
        h.await.unwrap();
        assert_eq!(*a.terms.lock().unwrap(), vec![3]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_overlap_across_terms_even_with_slow_stop() {
        let (a, b, _barrier, tx, _state, shutdown, h) = setup(150, 0);
        tx.send_replace(Leadership {
            is_leader: true,
            term: 1,
        });
        until(|| a.running.load(Ordering::SeqCst) == 1).await;
        // Lose and immediately regain in a new term: the old instances take 150 ms to stop.
        tx.send_replace(Leadership {
            is_leader: false,
            term: 2,
        });
        tx.send_replace(Leadership {
            is_leader: true,
            term: 2,
        });
        until(|| a.starts.load(Ordering::SeqCst) == 2 && b.starts.load(Ordering::SeqCst) == 2)
            .await;
        assert_eq!(a.peak.load(Ordering::SeqCst), 1, "duty a overlapped itself");
        assert_eq!(b.peak.load(Ordering::SeqCst), 1, "duty b overlapped itself");
        assert_eq!(*a.terms.lock().unwrap(), vec![1, 2]);
        shutdown.cancel();
        h.await.unwrap();
        assert_eq!(
            a.running.load(Ordering::SeqCst),
            0,
            "shutdown left a duty running"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_lost_during_barrier_starts_nothing() {
        let (a, _b, _barrier, tx, _state, shutdown, h) = setup(0, 300);
        tx.send_replace(Leadership {
            is_leader: true,
            term: 5,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(Leadership {
            is_leader: false,
            term: 6,
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(a.starts.load(Ordering::SeqCst), 0);
        shutdown.cancel();
        h.await.unwrap();
    }

    struct Flaky {
        runs: AtomicU64,
    }

    impl Duty for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn run(
            self: Arc<Self>,
            _ctx: Arc<LeaderContext>,
        ) -> BoxFuture<'static, Result<(), DutyError>> {
            Box::pin(async move {
                self.runs.fetch_add(1, Ordering::SeqCst);
                Err(DutyError("boom".into()))
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failing_duty_is_restarted_while_leader() {
        let flaky = Arc::new(Flaky {
            runs: AtomicU64::new(0),
        });
        let mut sup = Supervisor::new().with_restart_pause(Duration::from_millis(10));
        sup.register(flaky.clone());
        let (tx, rx) = watch::channel(Leadership {
            is_leader: true,
            term: 1,
        });
        let barrier = Arc::new(Barrier {
            delay_ms: 0,
            calls: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let h = tokio::spawn(sup.run(rx, barrier, crate::testing::node(), shutdown.clone()));
        until(|| flaky.runs.load(Ordering::SeqCst) >= 3).await;
        tx.send_replace(Leadership {
            is_leader: false,
            term: 2,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = flaky.runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            flaky.runs.load(Ordering::SeqCst),
            n,
            "restarted after losing leadership"
        );
        shutdown.cancel();
        h.await.unwrap();
    }
}
