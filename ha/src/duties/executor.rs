//! The job executor: drives every unfinished job's flow, step by step, as the leader. What
//! runs next is decided from the replicated state alone (`api::flow::schedule`, `api::job::
//! next_action`), so after a leader change the new leader's executor carries on each flow from
//! its last committed step and re-issues an uncommitted side effect with the same idempotency
//! key. Jobs start in submit order; one at a time per resource; at most `max_in_flight` at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::job;
use api::job::JobOp;
use api::job::NextAction;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use api::Caller;
use api::IntoCommand;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::context::EffectCall;
use crate::context::EffectError;
use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// Least time between two progress commits of one step.
const PROGRESS_EVERY: Duration = Duration::from_millis(300);
/// How long a side effect is asked again (same key) while its receiver gives no definite
/// answer, before the step fails.
const INDETERMINATE_FOR: Duration = Duration::from_secs(120);

/// The job executor duty.
pub struct JobExecutor {
    wakeup: Arc<Notify>,
    poll: Duration,
    max_in_flight: usize,
    step_pause: Duration,
}

impl JobExecutor {
    /// An executor woken by `wakeup` (raised when an applied entry accepts a job) and polling
    /// every `poll`, running at most `max_in_flight` jobs at once.
    pub fn new(wakeup: Arc<Notify>, poll: Duration, max_in_flight: usize) -> Self {
        Self {
            wakeup,
            poll,
            max_in_flight: max_in_flight.max(1),
            step_pause: Duration::ZERO,
        }
    }

    /// Wait this long before every committed step of a flow: widens the windows between
    /// steps for fault-injection tests (zero in production).
    pub fn with_step_pause(mut self, pause: Duration) -> Self {
        self.step_pause = pause;
        self
    }
}

fn err(e: impl std::fmt::Display) -> DutyError {
    DutyError(e.to_string())
}

/// Perform a side effect until its receiver gives a definite answer (asking again with the
/// same key after an indeterminate one, with backoff, for at most [`INDETERMINATE_FOR`]).
async fn perform(
    ctx: &Arc<LeaderContext>,
    uuid: &str,
    key: String,
    request: api::flow::EffectRequest,
    step: u32,
) -> Result<api::flow::Vars, Refusal> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match perform_once(ctx, uuid, key.clone(), request.clone(), step).await {
            Ok(vars) => return Ok(vars),
            Err(EffectError::Failed(r)) => return Err(r),
            Err(EffectError::Indeterminate(why)) => {
                if started.elapsed() >= INDETERMINATE_FOR {
                    return Err(Refusal::new(
                        Code::OperationFailure,
                        format!(
                            "receiver '{}' gave no definite answer for {INDETERMINATE_FOR:?}: {why}",
                            request.receiver
                        ),
                    ));
                }
                tracing::info!(job = %uuid, %key, error = %why, "side effect outcome unknown; asking again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One attempt, a panicking receiver being the step's failure.
async fn perform_once(
    ctx: &Arc<LeaderContext>,
    uuid: &str,
    key: String,
    request: api::flow::EffectRequest,
    step: u32,
) -> Result<api::flow::Vars, EffectError> {
    // Progress reports become (rate-limited) commits of the step's percent.
    let (tx, mut rx) = tokio::sync::watch::channel(0u8);
    let progress: crate::context::ProgressFn = Arc::new(move |p| {
        tx.send_replace(p);
    });
    let runner = ctx.effects();
    let mut effect = tokio::spawn(runner.perform(
        EffectCall {
            key,
            term: ctx.term(),
            request,
        },
        progress,
    ));
    let mut last = Instant::now() - PROGRESS_EVERY;
    let mut progress_in_flight: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            r = &mut effect => {
                return r.unwrap_or_else(|e| {
                    Err(EffectError::Failed(Refusal::new(
                        Code::Internal,
                        format!("the side effect failed unexpectedly: {e}"),
                    )))
                });
            }
            // Without this branch a select entered while the progress branch is throttled
            // would wait for the effect alone, and later progress would never be committed.
            () = tokio::time::sleep_until((last + PROGRESS_EVERY).into()), if last.elapsed() < PROGRESS_EVERY => {}
            changed = rx.changed(), if last.elapsed() >= PROGRESS_EVERY => {
                if changed.is_err() {
                    continue;
                }
                let percent = *rx.borrow_and_update();
                last = Instant::now();
                // Progress is advisory: a lost one is overwritten by the next, and its proposal
                // must never hold up the step's own outcome (one in flight at a time).
                if progress_in_flight.as_ref().is_some_and(|h| !h.is_finished()) {
                    continue;
                }
                let op = JobOp::Progress { uuid: uuid.to_string(), step, percent };
                let (c, job) = (ctx.clone(), uuid.to_string());
                progress_in_flight = Some(tokio::spawn(async move {
                    if let Err(e) = c.propose_as_leader(op.command(Caller::admin()), None).await {
                        tracing::debug!(%job, error = %e, "progress not committed");
                    }
                }));
            }
        }
    }
}

/// Drive one job until it is done, leadership ends or a proposal fails (the job stays where
/// it is; the next pass, or the next leader, carries on from there).
async fn drive(ctx: Arc<LeaderContext>, uuid: String, pause: Duration) -> Result<(), DutyError> {
    loop {
        if ctx.cancelled().is_cancelled() {
            return Ok(());
        }
        let Some(j) = ctx.read(|v| job::get(v, &uuid)).map_err(err)? else {
            return Ok(());
        };
        let op = match job::next_action(&j) {
            NextAction::Finished => return Ok(()),
            NextAction::Commit(op) => {
                if !pause.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = ctx.cancelled().cancelled() => return Ok(()),
                    }
                }
                op
            }
            NextAction::Effect {
                key,
                request,
                step,
                undo,
            } => {
                tracing::debug!(job = %uuid, %key, receiver = %request.receiver, action = %request.action, "side effect");
                let outcome = tokio::select! {
                    o = perform(&ctx, &uuid, key, request, step) => o,
                    _ = ctx.cancelled().cancelled() => return Ok(()),
                };
                JobOp::Effect {
                    uuid: uuid.clone(),
                    step,
                    undo,
                    outcome,
                }
            }
        };
        // The request id names the step and the term: a retry within the term is applied
        // once; a later leader's proposal of the same step is its own (a deposed leader's
        // refused entry must not answer for it), and apply makes any repeat a no-op.
        let rid = match &op {
            JobOp::Step { step, undo, .. } | JobOp::Effect { step, undo, .. } => {
                format!("step/{uuid}/{step}/{undo}/t{}", ctx.term())
            }
            _ => format!("job/{uuid}/t{}", ctx.term()),
        };
        ctx.propose_as_leader(op.command(Caller::admin()), Some(rid))
            .await?;
    }
}

impl Duty for JobExecutor {
    fn name(&self) -> &str {
        "job-executor"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let mut running = BTreeSet::new();
            let mut tasks = JoinSet::new();
            loop {
                // Register interest before scanning, so a submit racing the scan still wakes us.
                let woken = self.wakeup.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let next = ctx
                    .read(|v| api::flow::schedule::runnable(v, &running, self.max_in_flight))
                    .map_err(err)?;
                for uuid in next {
                    running.insert(uuid.clone());
                    let c = ctx.clone();
                    let pause = self.step_pause;
                    tasks.spawn(async move {
                        let r = drive(c, uuid.clone(), pause).await;
                        (uuid, r)
                    });
                }
                tokio::select! {
                    _ = ctx.cancelled().cancelled() => {
                        // Dropping the tasks drops any side effect in flight; its key is
                        // re-issued by the next leader.
                        tasks.shutdown().await;
                        return Ok(());
                    }
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                        match done {
                            Ok((uuid, r)) => {
                                running.remove(&uuid);
                                if let Err(e) = r {
                                    // Not fatal: the job stays where it is and is retried.
                                    tracing::warn!(term = ctx.term(), job = %uuid, error = %e.0, "job step not committed; will retry");
                                    tokio::select! {
                                        _ = tokio::time::sleep(self.poll) => {}
                                        _ = ctx.cancelled().cancelled() => {}
                                    }
                                }
                            }
                            Err(e) => {
                                // A panicking driver: forget what it ran, so the job is
                                // scheduled again (its state says where it stands).
                                tracing::error!(error = %e, "job driver panicked");
                                running.clear();
                                tasks.shutdown().await;
                            }
                        }
                    }
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use api::flow::selftest;
    use api::flow::Vars;
    use api::job::FlowSpec;
    use api::job::JobState;
    use api::job::Submission;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::context::EffectFuture;
    use crate::context::EffectRunner;
    use crate::context::ProgressFn;
    use crate::testing::MemNode;

    /// Applies each key once, remembers the answer, may stall on a key.
    #[derive(Default)]
    struct Receiver {
        seen: Mutex<BTreeMap<String, u32>>,
    }

    impl EffectRunner for Receiver {
        fn perform(&self, call: EffectCall, progress: ProgressFn) -> EffectFuture {
            let EffectCall { key, request, .. } = call;
            *self.seen.lock().unwrap().entry(key.clone()).or_default() += 1;
            Box::pin(async move {
                progress(50);
                assert_eq!(request.receiver, selftest::RECEIVER);
                Ok(Vars::from([("token".to_string(), key)]))
            })
        }
    }

    fn submit(node: &MemNode, uuid: &str, key: &str) {
        let op = JobOp::Submit(Submission {
            uuid: uuid.into(),
            api_name: "FlowSelfTest".into(),
            reply_class: "org.zstack.header.message.APIEvent".into(),
            chain: key.into(),
            flow: FlowSpec::Named {
                flow: selftest::FLOW.into(),
                vars: Vars::from([("key".to_string(), key.to_string())]),
            },
        });
        node.apply(op.command(Caller::admin()));
    }

    fn state_of(node: &MemNode, uuid: &str) -> Option<JobState> {
        let st = node.state.lock().unwrap();
        job::get(&*st, uuid).unwrap().map(|j| j.state)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_flows_to_the_end_and_stops_with_its_term() {
        let rx = Arc::new(Receiver::default());
        let node = Arc::new(MemNode::new(rx.clone()));
        let u = |n: u32| format!("{n:032x}");
        for i in 1..=4 {
            submit(&node, &u(i), &format!("k{i}"));
        }
        let cancel = CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(1, cancel.clone(), node.clone()));
        let wake = Arc::new(Notify::new());
        let exec = Arc::new(JobExecutor::new(wake.clone(), Duration::from_millis(20), 2));
        let task = tokio::spawn(exec.run(ctx));
        for _ in 0..200 {
            if (1..=4).all(|i| state_of(&node, &u(i)) == Some(JobState::Done)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for i in 1..=4 {
            assert_eq!(state_of(&node, &u(i)), Some(JobState::Done), "job {i}");
        }
        // Every side effect once, by key.
        let seen = rx.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen.values().all(|n| *n == 1), "{seen:?}");
        cancel.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_deposed_leaders_executor_commits_nothing() {
        let rx = Arc::new(Receiver::default());
        let node = Arc::new(MemNode::new(rx.clone()));
        let job = "9".repeat(32);
        submit(&node, &job, "k");
        // The executor runs with the context of term 1; the log has moved on to term 2.
        node.term.store(2, Ordering::SeqCst);
        let before = node.state.lock().unwrap().clone();
        let cancel = CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(1, cancel.clone(), node.clone()));
        let exec = Arc::new(JobExecutor::new(
            Arc::new(Notify::new()),
            Duration::from_millis(10),
            4,
        ));
        let task = tokio::spawn(exec.run(ctx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert!(node.proposals.load(Ordering::SeqCst) > 0, "it did try");
        let after = node.state.lock().unwrap().clone();
        assert_eq!(
            after.tables, before.tables,
            "a term-1 duty changed term-2 state"
        );
        assert_eq!(state_of(&node, &job), Some(JobState::Processing));
    }
}
