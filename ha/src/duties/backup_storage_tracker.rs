//! The image store tracker (a leader duty): every `host/ping.interval` the leader connects
//! each ImageStore backup storage's agent to its directory (idempotent) and commits status and
//! `statvfs` capacity when they change (`BackupStorageOp::Report`, term-fenced; what counts as
//! a change is the family's `is_news`). A store still `Connecting` is its job's
//! (AddImageStoreBackupStorage's or ReconnectBackupStorage's flow): the tracker leaves it
//! alone, and the Report op refuses it.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::backup_storage::is_news;
use api::families::backup_storage::BackupStorage;
use api::families::backup_storage::BackupStorageOp;
use api::families::backup_storage::BsStatus;
use api::Caller;
use api::IntoCommand;
use futures::StreamExt;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// (total, available) bytes, or why the store cannot be reached.
pub type Measured = Result<(u64, u64), String>;

/// How the tracker reaches image store agents.
pub trait ImageStoreAgents: Send + Sync + 'static {
    /// Connect backup storage `uuid` at `hostname` to directory `url`; (total, available).
    fn connect(
        &self,
        uuid: &str,
        hostname: &str,
        url: &str,
        term: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u64, u64), String>>;
}

/// The duty.
pub struct BackupStorageTracker {
    agents: Arc<dyn ImageStoreAgents>,
}

impl BackupStorageTracker {
    /// A tracker reaching agents through `agents`.
    pub fn new(agents: Arc<dyn ImageStoreAgents>) -> Self {
        Self { agents }
    }
}

impl BackupStorageTracker {
    async fn round(&self, ctx: &Arc<LeaderContext>) -> usize {
        let timeout = Duration::from_secs(super::host_setting(ctx, "ping.timeout", 10));
        let bss: Vec<BackupStorage> = ctx
            .read(|v| api::resource::list::<BackupStorage>(v))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, b)| b)
            .filter(|b| b.status != BsStatus::Connecting)
            .collect();
        let term = ctx.term();
        let measured: Vec<(BackupStorage, Measured)> =
            futures::stream::iter(bss.into_iter().map(|b| {
                let f = self
                    .agents
                    .connect(&b.uuid, &b.hostname, &b.url, term, timeout);
                async move { (b, f.await) }
            }))
            .buffer_unordered(16)
            .collect()
            .await;
        let mut committed = 0;
        for (b, m) in measured {
            let (status, total, available) = match m {
                Ok((t, a)) => (BsStatus::Connected, t, a.min(t)),
                Err(e) => {
                    tracing::debug!(bs = %b.uuid, error = %e, "image store not reachable");
                    (
                        BsStatus::Disconnected,
                        b.total_capacity,
                        b.available_capacity,
                    )
                }
            };
            if !is_news(&b, status, total, available) {
                continue;
            }
            if b.status != status {
                tracing::info!(bs = %b.uuid, from = ?b.status, to = ?status, "backup storage status");
            }
            let cmd = BackupStorageOp::Report {
                uuid: b.uuid.clone(),
                total,
                available,
                status,
            }
            .command(Caller::admin());
            match ctx.propose_as_leader(cmd, None).await {
                Ok(_) => committed += 1,
                Err(e) => {
                    tracing::info!(bs = %b.uuid, error = %e.0, "backup storage report not committed")
                }
            }
        }
        committed
    }
}

impl Duty for BackupStorageTracker {
    fn name(&self) -> &str {
        "backup-storage-tracker"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                let started = Instant::now();
                let reports = self.round(&ctx).await;
                tracing::debug!(term = ctx.term(), reports, "backup storage round");
                // A store just added is Connected by its own flow, so nothing calls for an
                // early round.
                if !super::wait_round(&ctx, started, |_| false).await {
                    return Ok(());
                }
            }
        })
    }
}
