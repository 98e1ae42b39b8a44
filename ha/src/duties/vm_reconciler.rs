//! Reconciliation of the hosts' domains with the VM records (`api::families::vm::reconcile`
//! has the rules): right after the leader takes office, and every `vm.reconcileInterval`
//! seconds after, each Connected host's domain list is read and every disagreement becomes a
//! `vm.reconcile` job on the VM's chain. A host that does not answer is skipped (the host
//! tracker marks it); nothing is concluded from a list that could not be read.

use std::sync::Arc;
use std::time::Duration;

use api::families::host::Host;
use api::families::host::HostStatus;
use api::families::vm::flows::Target;
use api::families::vm::reconcile::Domain;
use api::job::JobOp;
use api::Caller;
use api::IntoCommand;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// How the reconciler reads a host's domains (the node implements it with its agent client).
pub trait DomainLister: Send + Sync + 'static {
    /// The domains of `host` now, asked in `term`.
    fn domains(
        &self,
        host: &Target,
        term: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<Domain>, String>>;
}

/// Bound on one host's list.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting reconciler reads its interval again.
const RECHECK: Duration = Duration::from_secs(2);
/// Default period when `vm.reconcileInterval` is unset.
const DEFAULT_INTERVAL: u64 = 60;

/// The duty.
pub struct VmReconciler {
    lister: Arc<dyn DomainLister>,
}

impl VmReconciler {
    /// A reconciler reading domains through `lister`.
    pub fn new(lister: Arc<dyn DomainLister>) -> Self {
        Self { lister }
    }

    async fn round(&self, ctx: &Arc<LeaderContext>) -> Result<usize, DutyError> {
        let hosts: Vec<Host> = ctx
            .read(|v| api::resource::list::<Host>(v))
            .map_err(|e| DutyError(e.to_string()))?
            .into_iter()
            .map(|(_, h)| h)
            .filter(|h| h.status == HostStatus::Connected)
            .collect();
        let mut submitted = 0;
        for h in hosts {
            let target = Target {
                host_uuid: h.uuid.clone(),
                management_ip: h.management_ip.clone(),
            };
            let domains = match self.lister.domains(&target, ctx.term(), LIST_TIMEOUT).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(host = %h.uuid, error = %e, "reconcile: no domain list; host skipped");
                    continue;
                }
            };
            // The state is read after the list: a VM operation that finished in between is
            // seen finished, and one still running is left alone (its chain is busy).
            let now = ctx.now_ms();
            let jobs = ctx
                .read(|v| api::families::vm::reconcile::jobs_for_host(v, &target, &domains, now))
                .map_err(|e| DutyError(e.to_string()))?;
            for job in jobs {
                tracing::info!(host = %h.uuid, vm = %job.chain, "reconcile: the host disagrees with the record; job submitted");
                ctx.propose_as_leader(JobOp::Submit(job).command(Caller::admin()), None)
                    .await?;
                submitted += 1;
            }
        }
        Ok(submitted)
    }
}

impl Duty for VmReconciler {
    fn name(&self) -> &str {
        "vm-reconciler"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(e) = self.round(&ctx).await {
                    tracing::warn!(term = ctx.term(), error = %e.0, "reconcile round failed");
                }
                // The interval is read again every few seconds, so a changed setting applies
                // without waiting out the old one.
                loop {
                    let secs = ctx
                        .read(|v| api::settings::int_value(v, "vm", "reconcileInterval"))
                        .ok()
                        .and_then(|v| u64::try_from(v).ok())
                        .filter(|v| *v > 0)
                        .unwrap_or(DEFAULT_INTERVAL);
                    let due = started + Duration::from_secs(secs);
                    let now = tokio::time::Instant::now();
                    if now >= due {
                        break;
                    }
                    tokio::select! {
                        _ = ctx.cancelled().cancelled() => return Ok(()),
                        _ = tokio::time::sleep((due - now).min(RECHECK)) => {}
                    }
                }
            }
        })
    }
}
