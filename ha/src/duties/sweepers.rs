//! Leader duties that keep the model tidy: the built-in admin's bootstrap and the sweepers of
//! expired sessions, API results and audit records. They only propose commands; what each
//! does is decided by `apply`, so a duty cancelled mid-way (leadership lost) leaves nothing
//! half done: the next leader's duty finds the same work in the replicated state.

use std::sync::Arc;
use std::time::Duration;

use api::audit::AuditOp;
use api::audit::AuditResult;
use api::families::identity;
use api::families::identity::IdentityOp;
use api::job::JobOp;
use api::Caller;
use api::Command;
use api::IntoCommand;
use api::Response;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// A periodic leader duty: proposes what `tick` builds every `period` (the first time after
/// one period). The period is read again at least every [`RECHECK`], so a changed setting
/// takes effect within seconds, without a restart and without waiting out the old period.
pub struct Periodic {
    name: &'static str,
    period: fn(&LeaderContext) -> Duration,
    tick: fn(Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>>,
}

/// How often a waiting periodic duty reads its period again.
const RECHECK: Duration = Duration::from_secs(5);

impl Periodic {
    /// A duty named `name`.
    pub fn new(
        name: &'static str,
        period: fn(&LeaderContext) -> Duration,
        tick: fn(Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>>,
    ) -> Self {
        Self { name, period, tick }
    }
}

impl Duty for Periodic {
    fn name(&self) -> &str {
        self.name
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let mut last = tokio::time::Instant::now();
            loop {
                let due = last + (self.period)(&ctx);
                let now = tokio::time::Instant::now();
                if now < due {
                    tokio::select! {
                        _ = ctx.cancelled().cancelled() => return Ok(()),
                        _ = tokio::time::sleep((due - now).min(RECHECK)) => {}
                    }
                    continue;
                }
                last = now;
                if let Err(e) = (self.tick)(ctx.clone()).await {
                    tracing::warn!(term = ctx.term(), duty = %self.name, error = %e.0, "periodic duty tick failed");
                }
            }
        })
    }
}

/// A setting in seconds, or `fallback` when unset or unreadable.
fn config_secs(ctx: &LeaderContext, category: &str, name: &str, fallback: u64) -> Duration {
    let secs = ctx
        .read(|v| api::settings::int_value(v, category, name))
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(fallback);
    Duration::from_secs(secs)
}

async fn propose(ctx: &LeaderContext, cmd: Command) -> Result<Response, DutyError> {
    ctx.propose_as_leader(cmd, None).await
}

/// Deletes expired sessions every `identity/session.cleanup.interval`.
pub fn session_sweeper() -> Periodic {
    Periodic::new(
        "session-sweeper",
        |ctx| config_secs(ctx, "identity", "session.cleanup.interval", 3600),
        |ctx| {
            Box::pin(async move {
                propose(&ctx, IdentityOp::ExpireSessions.command(Caller::admin()))
                    .await
                    .map(|_| ())
            })
        },
    )
}

/// Forgets finished API results past `api/result.retention`, hourly.
pub fn api_result_sweeper() -> Periodic {
    Periodic::new(
        "api-result-sweeper",
        |_| Duration::from_secs(3600),
        |ctx| {
            Box::pin(async move {
                propose(&ctx, JobOp::Expire.command(Caller::admin()))
                    .await
                    .map(|_| ())
            })
        },
    )
}

/// Submits the expunge job of every Destroyed VM past `vm.expungePeriod`, every
/// `vm.expungeInterval`. A job's uuid is derived from the VM and its destroy time, so a sweep
/// repeated (or run by the next leader) submits nothing twice.
pub fn vm_expunge_sweeper() -> Periodic {
    Periodic::new(
        "vm-expunge-sweeper",
        |ctx| config_secs(ctx, "vm", "expungeInterval", 3600),
        |ctx| {
            Box::pin(async move {
                let now = ctx.now_ms();
                let jobs = ctx
                    .read(|v| api::families::vm::expunge_jobs(v, now))
                    .map_err(|e| DutyError(e.to_string()))?;
                for job in jobs {
                    let vm = job.chain.clone();
                    propose(&ctx, JobOp::Submit(job).command(Caller::admin())).await?;
                    tracing::info!(vm = %vm, "expunge of a destroyed VM submitted");
                }
                Ok(())
            })
        },
    )
}

/// Submits the expunge job of every Deleted data volume past `volume.expungePeriod`, every
/// `volume.expungeInterval`; like the VM sweeper, a job's uuid is derived from the volume and
/// its deletion time, so a repeated sweep submits nothing twice.
pub fn volume_expunge_sweeper() -> Periodic {
    Periodic::new(
        "volume-expunge-sweeper",
        |ctx| config_secs(ctx, "volume", "expungeInterval", 3600),
        |ctx| {
            Box::pin(async move {
                let now = ctx.now_ms();
                let jobs = ctx
                    .read(|v| api::families::vm::volume_expunge_jobs(v, now))
                    .map_err(|e| DutyError(e.to_string()))?;
                for job in jobs {
                    let volume = job.chain.clone();
                    propose(&ctx, JobOp::Submit(job).command(Caller::admin())).await?;
                    tracing::info!(volume = %volume, "expunge of a deleted data volume submitted");
                }
                Ok(())
            })
        },
    )
}

/// How often the leader deletes audit records past `audit/retention`.
const AUDIT_SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// Records deleted per proposed entry (bounds the entry and the apply).
const AUDIT_SWEEP_BATCH: u32 = 1000;
/// Entries per sweep, so one sweep cannot monopolise the log after a long outage; the rest
/// waits for the next period.
const AUDIT_SWEEP_MAX_BATCHES: usize = 100;

/// Deletes expired audit records, oldest first, one bounded batch per entry, until a batch
/// comes back short.
pub fn audit_sweeper() -> Periodic {
    Periodic::new(
        "audit-sweeper",
        |_| AUDIT_SWEEP_PERIOD,
        |ctx| {
            Box::pin(async move {
                for _ in 0..AUDIT_SWEEP_MAX_BATCHES {
                    let cmd = AuditOp::Expire {
                        limit: AUDIT_SWEEP_BATCH,
                    }
                    .command(Caller::admin());
                    match propose(&ctx, cmd).await? {
                        Response::Audit(AuditResult::Expired(n))
                            if n >= u64::from(AUDIT_SWEEP_BATCH) => {}
                        _ => break,
                    }
                }
                Ok(())
            })
        },
    )
}

/// Creates the built-in admin (spec decision 2) once per cluster: idempotent, so every new
/// leader runs it and all but the first find the admin present.
pub struct AdminBootstrap;

impl Duty for AdminBootstrap {
    fn name(&self) -> &str {
        "admin-bootstrap"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let present = ctx
                .read(|v| api::resource::load::<identity::Account>(v, api::ADMIN_ACCOUNT_UUID))
                .map_err(|e| DutyError(e.to_string()))?
                .is_some();
            if !present {
                let password = identity::hash_password(
                    identity::DEFAULT_ADMIN_PASSWORD_SHA512,
                    &rand::random::<[u8; 16]>(),
                )
                .map_err(|e| DutyError(e.to_string()))?;
                propose(
                    &ctx,
                    IdentityOp::EnsureAdmin { password }.command(Caller::admin()),
                )
                .await?;
                tracing::info!(term = ctx.term(), "created the built-in admin account");
            }
            // Done; stay alive (a returning duty counts as failed) until leadership ends.
            ctx.cancelled().cancelled().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::context::NoReceivers;
    use crate::testing::MemNode;

    // Paused time: the clock only advances when every task is idle, so the ticks counted
    // below do not depend on how loaded the machine is.
    #[tokio::test(start_paused = true)]
    async fn periodic_ticks_until_cancelled_and_bootstrap_is_idempotent() {
        let node = Arc::new(MemNode::new(Arc::new(NoReceivers)));
        let cancel = CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(1, cancel.clone(), node.clone()));
        let fast = Arc::new(Periodic::new(
            "tick",
            |_| Duration::from_millis(5),
            |ctx| {
                Box::pin(async move {
                    propose(&ctx, JobOp::Expire.command(Caller::admin()))
                        .await
                        .map(|_| ())
                })
            },
        ));
        let t1 = tokio::spawn(fast.run(ctx.clone()));
        let t2 = tokio::spawn(Arc::new(AdminBootstrap).run(ctx.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        t1.await.unwrap().unwrap();
        t2.await.unwrap().unwrap();
        assert!(node.proposals.load(Ordering::SeqCst) >= 3);
        let admin = {
            let st = node.state.lock().unwrap();
            api::resource::load::<identity::Account>(&*st, api::ADMIN_ACCOUNT_UUID).unwrap()
        };
        assert!(admin.is_some());
        // A second leader finds the admin and proposes nothing for it.
        let n = node.proposals.load(Ordering::SeqCst);
        let cancel = CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(2, cancel.clone(), node.clone()));
        node.term.store(2, Ordering::SeqCst);
        let t = tokio::spawn(Arc::new(AdminBootstrap).run(ctx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
        t.await.unwrap().unwrap();
        assert_eq!(node.proposals.load(Ordering::SeqCst), n);
    }
}
