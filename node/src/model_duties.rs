//! Backends of the cloud-model leader duties: the async-job executor, the bootstrap of the
//! built-in admin, and the sweepers of expired sessions, API results and audit records. They
//! only propose commands; `api::apply` decides what each does.

use std::sync::Arc;
use std::time::Duration;

use api::identity;
use api::identity::IdentityOp;
use api::job;
use api::job::JobOp;
use api::Caller;
use api::Command;
use api::IntoCommand;
use ha::jobs::JobBackend;
use ha::jobs::JobExecutor;
use ha::jobs::Periodic;
use ha::BoxFuture;
use ha::Duty;
use ha::DutyError;

use crate::node::Node;
use crate::state_view::StateView;

/// How often the executor looks for jobs submitted through other nodes.
const JOB_POLL: Duration = Duration::from_millis(200);

fn duty_err(e: impl std::fmt::Display) -> DutyError {
    DutyError(e.to_string())
}

async fn propose(
    node: &Node,
    cmd: Command,
    rid: Option<String>,
) -> Result<api::Response, DutyError> {
    let (_, resp) = node.propose(&cmd, rid).await.map_err(duty_err)?;
    match resp {
        api::Response::Refused(e) => Err(duty_err(e)),
        other => Ok(other),
    }
}

/// The job executor's view of the node.
pub struct NodeJobs(pub Arc<Node>);

impl JobBackend for NodeJobs {
    fn pending(&self, limit: usize) -> Result<Vec<String>, DutyError> {
        job::pending(&StateView(&self.0.sm), limit).map_err(duty_err)
    }

    fn run(&self, job_uuid: String) -> BoxFuture<'static, Result<(), DutyError>> {
        let node = self.0.clone();
        Box::pin(async move {
            let cmd = JobOp::Run {
                uuid: job_uuid.clone(),
            }
            .command(Caller::admin());
            // One request id per job run: a retry after a leader change is applied once, and a
            // second run of a finished job is a no-op in `apply` anyway.
            propose(&node, cmd, Some(format!("run/{job_uuid}")))
                .await
                .map(|_| ())
        })
    }
}

/// Creates the built-in admin (spec decision 2) once per cluster: idempotent, so every new
/// leader runs it and all but the first find the admin present.
pub struct AdminBootstrap(pub Arc<Node>);

impl Duty for AdminBootstrap {
    fn name(&self) -> &str {
        "admin-bootstrap"
    }

    fn run(
        self: Arc<Self>,
        term: u64,
        cancel: ha::CancellationToken,
    ) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let present = api::resource::load::<identity::Account>(
                &StateView(&self.0.sm),
                api::ADMIN_ACCOUNT_UUID,
            )
            .map_err(duty_err)?
            .is_some();
            if !present {
                let password = identity::hash_password(
                    identity::DEFAULT_ADMIN_PASSWORD_SHA512,
                    &rand::random::<[u8; 16]>(),
                )
                .map_err(duty_err)?;
                let cmd = IdentityOp::EnsureAdmin { password }.command(Caller::admin());
                propose(&self.0, cmd, None).await?;
                tracing::info!(term, "created the built-in admin account");
            }
            // Done; stay alive (a returning duty counts as failed) until leadership ends.
            cancel.cancelled().await;
            Ok(())
        })
    }
}

fn config_secs(node: &Node, category: &str, name: &str, fallback: u64) -> Duration {
    let secs = api::global_config::int_value(&StateView(&node.sm), category, name)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(fallback);
    Duration::from_secs(secs)
}

/// Every cloud-model duty, for the supervisor.
pub fn duties(node: &Arc<Node>) -> Vec<Arc<dyn Duty>> {
    let sessions = {
        let (n, p) = (node.clone(), node.clone());
        Periodic::new(
            "session-sweeper",
            Arc::new(move || config_secs(&p, "identity", "session.cleanup.interval", 3600)),
            move || {
                let n = n.clone();
                Box::pin(async move {
                    let cmd = IdentityOp::ExpireSessions.command(Caller::admin());
                    propose(&n, cmd, None).await.map(|_| ())
                }) as BoxFuture<'static, Result<(), DutyError>>
            },
        )
    };
    let results = {
        let n = node.clone();
        Periodic::new(
            "api-result-sweeper",
            Arc::new(|| Duration::from_secs(3600)),
            move || {
                let n = n.clone();
                Box::pin(async move {
                    let cmd = JobOp::Expire.command(Caller::admin());
                    propose(&n, cmd, None).await.map(|_| ())
                }) as BoxFuture<'static, Result<(), DutyError>>
            },
        )
    };
    let audit = {
        let n = node.clone();
        Periodic::new(
            "audit-sweeper",
            Arc::new(|| AUDIT_SWEEP_PERIOD),
            move || {
                let n = n.clone();
                Box::pin(sweep_audit(n)) as BoxFuture<'static, Result<(), DutyError>>
            },
        )
    };
    vec![
        Arc::new(JobExecutor::new(
            NodeJobs(node.clone()),
            node.job_wakeup().clone(),
            JOB_POLL,
        )),
        Arc::new(AdminBootstrap(node.clone())),
        Arc::new(sessions),
        Arc::new(results),
        Arc::new(audit),
    ]
}

/// How often the leader deletes audit records past `audit/retention`.
const AUDIT_SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// Records deleted per proposed entry (bounds the entry and the apply).
const AUDIT_SWEEP_BATCH: u32 = 1000;
/// Entries per sweep, so one sweep cannot monopolise the log after a long outage; the rest
/// waits for the next period.
const AUDIT_SWEEP_MAX_BATCHES: usize = 100;

/// Delete expired audit records, oldest first, one bounded batch per entry, until a batch
/// comes back short.
async fn sweep_audit(node: Arc<Node>) -> Result<(), DutyError> {
    for _ in 0..AUDIT_SWEEP_MAX_BATCHES {
        let cmd = api::audit::AuditOp::Expire {
            limit: AUDIT_SWEEP_BATCH,
        }
        .command(Caller::admin());
        match propose(&node, cmd, None).await? {
            api::Response::Audit(api::audit::AuditResult::Expired(n))
                if n >= u64::from(AUDIT_SWEEP_BATCH) => {}
            _ => break,
        }
    }
    Ok(())
}
