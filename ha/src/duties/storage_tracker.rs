//! The primary storage tracker (a leader duty): every `host/ping.interval` the leader asks the
//! agent of every Connected host in a cluster a primary storage is attached to to prepare it
//! (create the directory, mount NFS; idempotent) and measure it, then commits the storage's
//! status and capacity when they changed (`PrimaryStorageOp::Report`, term-fenced).
//!
//! Which hosts are asked, how their answers add up (LocalStorage sums the hosts, shared
//! storage is one file system) and what counts as news are the primary-storage family's
//! rules (`api::families::primary_storage::{hosts_to_ask, report_of, is_news}`), which the
//! `ReconnectPrimaryStorage` flow applies too; this duty only runs the rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::primary_storage::hosts_to_ask;
use api::families::primary_storage::is_news;
use api::families::primary_storage::report_of;
use api::families::primary_storage::PrimaryStorage;
use api::families::primary_storage::PrimaryStorageOp;
use api::families::primary_storage::PsState;
use api::families::primary_storage::PsStatus;
use api::Caller;
use api::IntoCommand;
use futures::StreamExt;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

pub use api::families::primary_storage::Measured;
/// A primary storage as a host's agent must prepare it (the family's type).
pub use api::families::primary_storage::StorageOnHost;

/// How the tracker reaches agents (the node implements it with its mutual-TLS agent client).
pub trait StorageAgents: Send + Sync + 'static {
    /// Prepare the storage on the host and measure it.
    fn prepare(
        &self,
        s: &StorageOnHost,
        term: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Measured>;
}

/// The duty.
pub struct StorageTracker {
    agents: Arc<dyn StorageAgents>,
}

impl StorageTracker {
    /// A tracker reaching agents through `agents`.
    pub fn new(agents: Arc<dyn StorageAgents>) -> Self {
        Self { agents }
    }
}

/// Every (storage, host) pair to ask this round.
fn work(ctx: &LeaderContext) -> (Vec<PrimaryStorage>, Vec<StorageOnHost>) {
    let read = ctx.read(|v| {
        let pss: Vec<PrimaryStorage> = api::resource::list::<PrimaryStorage>(v)?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.state != PsState::Deleting)
            .collect();
        let mut pairs = Vec::new();
        for p in &pss {
            pairs.extend(hosts_to_ask(v, p)?);
        }
        Ok::<_, api::ApiError>((pss, pairs))
    });
    read.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "storage tracker cannot read the state");
        (Vec::new(), Vec::new())
    })
}

impl StorageTracker {
    /// One round; answers how many reports were committed.
    async fn round(&self, ctx: &Arc<LeaderContext>) -> usize {
        let timeout = Duration::from_secs(super::host_setting(ctx, "ping.timeout", 10));
        let parallel = super::host_setting(ctx, "ping.parallelismDegree", 100) as usize;
        let (pss, pairs) = work(ctx);
        let term = ctx.term();
        let answers: Vec<(String, (String, Measured))> = futures::stream::iter(pairs.into_iter().map(|s| {
            let agents = self.agents.clone();
            async move {
                let m = agents.prepare(&s, term, timeout).await;
                if let Err(e) = &m {
                    tracing::debug!(ps = %s.ps_uuid, host = %s.host_uuid, error = %e, "primary storage not reachable from host");
                }
                (s.ps_uuid, (s.host_uuid, m))
            }
        }))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
        let mut by_ps: HashMap<String, Vec<(String, Measured)>> = HashMap::new();
        for (ps, m) in answers {
            by_ps.entry(ps).or_default().push(m);
        }
        let mut committed = 0;
        for p in pss {
            let Some((capacity, status)) =
                report_of(p.ps_type, by_ps.get(&p.uuid).map_or(&[][..], Vec::as_slice))
            else {
                continue;
            };
            if !is_news(&p, &capacity, status) {
                continue;
            }
            if p.status != status {
                tracing::info!(ps = %p.uuid, from = ?p.status, to = ?status, "primary storage status");
            }
            let cmd = PrimaryStorageOp::Report {
                uuid: p.uuid.clone(),
                capacity,
                status,
            }
            .command(Caller::admin());
            match ctx.propose_as_leader(cmd, None).await {
                Ok(_) => committed += 1,
                Err(e) => {
                    tracing::info!(ps = %p.uuid, error = %e.0, "primary storage report not committed")
                }
            }
        }
        committed
    }
}

impl Duty for StorageTracker {
    fn name(&self) -> &str {
        "primary-storage-tracker"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                let started = Instant::now();
                let reports = self.round(&ctx).await;
                tracing::debug!(term = ctx.term(), reports, "primary storage round");
                // A storage just attached is measured at once, not a whole interval later.
                let fresh = |c: &LeaderContext| {
                    let (pss, pairs) = work(c);
                    pss.iter().any(|p| {
                        p.status == PsStatus::Connecting
                            && pairs.iter().any(|s| s.ps_uuid == p.uuid)
                    })
                };
                if !super::wait_round(&ctx, started, fresh).await {
                    return Ok(());
                }
            }
        })
    }
}
