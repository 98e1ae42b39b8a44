//! The primary storage tracker (a leader duty): every `host/ping.interval` the leader asks the
//! agent of every Connected host in a cluster a primary storage is attached to to prepare it
//! (create the directory, mount NFS; idempotent) and measure it, then commits the storage's
//! status and capacity when they changed (`PrimaryStorageOp::Report`, term-fenced).
//!
//! - LocalStorage: each host's own disk, so the figures are the sum over the hosts that
//!   answered healthy.
//! - SharedMountPoint and NFS: one file system every host sees; the first healthy answer is
//!   its figures.
//! - Status: Connected when at least one host reaches it, Disconnected when hosts were asked
//!   and none could; a storage with no Connected host to ask keeps its status.
//!
//! Virtual capacity starts equal to the physical figures: volumes do not exist yet, and the
//! scheduler issue will subtract what it allocates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::host::Host;
use api::families::host::HostStatus;
use api::families::primary_storage::CapacityReport;
use api::families::primary_storage::PrimaryStorage;
use api::families::primary_storage::PrimaryStorageOp;
use api::families::primary_storage::PsState;
use api::families::primary_storage::PsStatus;
use api::families::primary_storage::PsType;
use api::Caller;
use api::IntoCommand;
use futures::StreamExt;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// A primary storage as a host's agent must prepare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOnHost {
    /// Host uuid.
    pub host_uuid: String,
    /// Its management address (the agent listens there).
    pub management_ip: String,
    /// Primary storage uuid.
    pub ps_uuid: String,
    /// "LocalStorage", "SharedMountPoint", "NFS".
    pub ps_type: String,
    /// Directory, or `server:/export` for NFS.
    pub url: String,
    /// Where NFS is mounted (the directory itself otherwise).
    pub mount_point: String,
}

/// What a host measured: (total bytes, available bytes), or why it cannot reach the storage.
pub type Measured = Result<(u64, u64), String>;

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
        let pss = api::resource::list::<PrimaryStorage>(v)?;
        // Without storage there is nothing to ask: skip decoding every host each round.
        let hosts = if pss.is_empty() {
            Vec::new()
        } else {
            api::resource::list::<Host>(v)?
        };
        Ok::<_, api::ApiError>((pss, hosts))
    });
    let Ok((pss, hosts)) = read else {
        tracing::warn!("storage tracker cannot read the state");
        return (Vec::new(), Vec::new());
    };
    let pss: Vec<PrimaryStorage> = pss
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p.state != PsState::Deleting)
        .collect();
    let mut pairs = Vec::new();
    for p in &pss {
        for (_, h) in &hosts {
            if h.status == HostStatus::Connected
                && p.attached_cluster_uuids.contains(&h.cluster_uuid)
            {
                pairs.push(StorageOnHost {
                    host_uuid: h.uuid.clone(),
                    management_ip: h.management_ip.clone(),
                    ps_uuid: p.uuid.clone(),
                    ps_type: p.ps_type.as_str().to_string(),
                    url: p.url.clone(),
                    mount_point: p.mount_path.clone(),
                });
            }
        }
    }
    (pss, pairs)
}

/// The report a storage's answers add up to, if any host was asked.
pub fn report_of(ps_type: PsType, answers: &[Measured]) -> Option<(CapacityReport, PsStatus)> {
    if answers.is_empty() {
        return None;
    }
    let healthy: Vec<(u64, u64)> = answers.iter().filter_map(|a| a.clone().ok()).collect();
    let Some(first) = healthy.first().copied() else {
        return Some((
            CapacityReport {
                total: 0,
                available: 0,
                total_physical: 0,
                available_physical: 0,
                system_used: 0,
            },
            PsStatus::Disconnected,
        ));
    };
    let (total, available) = match ps_type {
        PsType::LocalStorage => healthy.iter().fold((0u64, 0u64), |(t, a), (ht, ha)| {
            (t.saturating_add(*ht), a.saturating_add(*ha))
        }),
        PsType::SharedMountPoint | PsType::Nfs => first,
    };
    let available = available.min(total);
    Some((
        CapacityReport {
            total,
            available,
            total_physical: total,
            available_physical: available,
            system_used: total - available,
        },
        PsStatus::Connected,
    ))
}

/// Whether a report is news: a status change, or figures moved by more than 0.1 % of the total
/// (free space on a live file system moves all the time; every byte is not worth a commit).
fn is_news(p: &PrimaryStorage, r: &CapacityReport, status: PsStatus) -> bool {
    if p.status != status || p.total_physical_capacity != r.total_physical {
        return true;
    }
    let slack = (r.total_physical / 1000).max(1 << 20);
    p.available_physical_capacity.abs_diff(r.available_physical) > slack
}

impl StorageTracker {
    /// One round; answers how many reports were committed.
    async fn round(&self, ctx: &Arc<LeaderContext>) -> usize {
        let timeout = Duration::from_secs(super::host_setting(ctx, "ping.timeout", 10));
        let parallel = super::host_setting(ctx, "ping.parallelismDegree", 100) as usize;
        let (pss, pairs) = work(ctx);
        let term = ctx.term();
        let answers: Vec<(String, Measured)> = futures::stream::iter(pairs.into_iter().map(|s| {
            let agents = self.agents.clone();
            async move {
                let m = agents.prepare(&s, term, timeout).await;
                if let Err(e) = &m {
                    tracing::debug!(ps = %s.ps_uuid, host = %s.host_uuid, error = %e, "primary storage not reachable from host");
                }
                (s.ps_uuid, m)
            }
        }))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
        let mut by_ps: HashMap<String, Vec<Measured>> = HashMap::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_storage_adds_up_hosts_and_shared_storage_is_one_file_system() {
        let answers = vec![Ok((100, 40)), Err("gone".into()), Ok((200, 50))];
        let (r, s) = report_of(PsType::LocalStorage, &answers).unwrap();
        assert_eq!(
            (r.total, r.available, r.system_used, s),
            (300, 90, 210, PsStatus::Connected)
        );
        let (r, _) = report_of(PsType::SharedMountPoint, &answers).unwrap();
        assert_eq!((r.total, r.available), (100, 40));
        let (_, s) = report_of(PsType::Nfs, &[Err("mount failed".into())]).unwrap();
        assert_eq!(s, PsStatus::Disconnected);
        assert!(
            report_of(PsType::Nfs, &[]).is_none(),
            "no host asked: no news"
        );
    }
}
