//! The management-node registry duty: the leader probes every member about once a second,
//! keeps heartbeats in memory and commits a record only when something an operator cares about
//! changed (join, leave, role, term, address) or, for the heartbeat, every `heartbeat_commit`
//! interval. This is Nomad's rule: heartbeats in memory, status changes in the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::families::management_node::ManagementNode;
use api::families::management_node::ManagementNodeOp;
use api::IntoCommand;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// A member of the Raft configuration as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft node id.
    pub id: u64,
    /// Raft (gRPC) address.
    pub raft_addr: String,
    /// HTTP address.
    pub api_addr: String,
}

/// What a member answered to a status probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStatus {
    /// The member's uuid (from its data directory).
    pub uuid: String,
    /// Host name the member reports.
    pub host_name: String,
    /// Raft role: Leader, Follower, Candidate, Learner, Shutdown.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
}

/// What the registry needs from the node beyond the leader context: the membership and a
/// way to ask a member for its status.
pub trait RegistryBackend: Send + Sync + 'static {
    /// Current members (voters and learners).
    fn members(&self) -> Vec<Member>;
    /// Ask one member for its status.
    fn probe(&self, member: &Member) -> BoxFuture<'static, Result<ProbedStatus, DutyError>>;
}

/// Role recorded for a member that did not answer its probe.
pub const UNREACHABLE: &str = "Unreachable";

/// The registry duty.
pub struct RegistryDuty<B> {
    backend: Arc<B>,
    /// Time between probe rounds.
    pub interval: Duration,
    /// Probe timeout per member.
    pub probe_timeout: Duration,
    /// Heartbeats are committed at most this often when nothing else changed.
    pub heartbeat_commit: Duration,
}

impl<B: RegistryBackend> RegistryDuty<B> {
    /// A registry duty with the default cadence (1 s probes, heartbeat committed every 10 s).
    pub fn new(backend: Arc<B>) -> Self {
        Self {
            backend,
            interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(800),
            heartbeat_commit: Duration::from_secs(10),
        }
    }

    /// One probe round: returns the changes to commit, given the in-memory heartbeats.
    pub async fn round(
        &self,
        ctx: &LeaderContext,
        heartbeats: &mut BTreeMap<u64, u64>,
    ) -> Result<Vec<ManagementNodeOp>, DutyError> {
        let members = self.backend.members();
        let probes = members.iter().map(|m| {
            let fut = self.backend.probe(m);
            let timeout = self.probe_timeout;
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(DutyError(format!("probe timed out after {timeout:?}"))),
                }
            }
        });
        let results = futures::future::join_all(probes).await;
        let now = ctx.now_ms();
        let records = ctx
            .read(api::families::management_node::list)
            .map_err(|e| DutyError(e.to_string()))?;
        Ok(plan(
            &members,
            &results,
            &records,
            heartbeats,
            now,
            self.heartbeat_commit.as_millis() as u64,
        ))
    }
}

/// Decide which records to commit. Pure, so the commit rule is unit-tested without IO.
pub fn plan(
    members: &[Member],
    probes: &[Result<ProbedStatus, DutyError>],
    records: &[ManagementNode],
    heartbeats: &mut BTreeMap<u64, u64>,
    now_ms: u64,
    heartbeat_commit_ms: u64,
) -> Vec<ManagementNodeOp> {
    let mut ops = Vec::new();
    let by_node: BTreeMap<u64, &ManagementNode> =
        records.iter().map(|r| (r.raft_node_id, r)).collect();
    for (m, probe) in members.iter().zip(probes) {
        let existing = by_node.get(&m.id).copied();
        let desired = match (probe, existing) {
            (Ok(p), _) => {
                heartbeats.insert(m.id, now_ms);
                ManagementNode {
                    uuid: p.uuid.clone(),
                    host_name: p.host_name.clone(),
                    join_date: existing
                        .filter(|e| e.uuid == p.uuid)
                        .map(|e| e.join_date)
                        .unwrap_or(now_ms),
                    heart_beat: now_ms,
                    raft_node_id: m.id,
                    raft_role: p.role.clone(),
                    term: p.term,
                    commit_index: p.commit_index,
                    applied_index: p.applied_index,
                    raft_addr: m.raft_addr.clone(),
                    api_addr: m.api_addr.clone(),
                }
            }
            // Never probed successfully and no record: nothing to say about it yet.
            (Err(_), None) => continue,
            (Err(_), Some(e)) => ManagementNode {
                raft_role: UNREACHABLE.to_string(),
                heart_beat: heartbeats.get(&m.id).copied().unwrap_or(e.heart_beat),
                raft_addr: m.raft_addr.clone(),
                api_addr: m.api_addr.clone(),
                ..e.clone()
            },
        };
        let commit = match existing {
            None => true,
            Some(e) => {
                e.uuid != desired.uuid
                    || e.raft_role != desired.raft_role
                    || e.term != desired.term
                    || e.raft_addr != desired.raft_addr
                    || e.api_addr != desired.api_addr
                    || e.host_name != desired.host_name
                    || (probe.is_ok()
                        && desired.heart_beat.saturating_sub(e.heart_beat) >= heartbeat_commit_ms)
            }
        };
        if let Some(e) = existing.filter(|e| e.uuid != desired.uuid) {
            ops.push(ManagementNodeOp::Remove {
                uuid: e.uuid.clone(),
            });
        }
        if commit {
            ops.push(ManagementNodeOp::Upsert(desired));
        }
    }
    // Members that left the configuration.
    for r in records {
        if !members.iter().any(|m| m.id == r.raft_node_id) {
            heartbeats.remove(&r.raft_node_id);
            ops.push(ManagementNodeOp::Remove {
                uuid: r.uuid.clone(),
            });
        }
    }
    ops
}

impl<B: RegistryBackend> Duty for RegistryDuty<B> {
    fn name(&self) -> &str {
        "management-node-registry"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let (term, cancel) = (ctx.term(), ctx.cancelled().clone());
            let mut heartbeats = BTreeMap::new();
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tick.tick() => {}
                }
                let ops = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = self.round(&ctx, &mut heartbeats) => r?,
                };
                for op in ops {
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                    tracing::debug!(term, ?op, "committing management node change");
                    // A commit can wait for a quorum; losing leadership ends it (the context
                    // fails the proposal when its term is cancelled).
                    ctx.propose_as_leader(op.command(api::Caller::admin()), None)
                        .await?;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> Member {
        Member {
            id,
            raft_addr: format!("127.0.0.1:{}", 7000 + id),
            api_addr: format!("127.0.0.1:{}", 8000 + id),
        }
    }

    fn status(id: u64, role: &str, term: u64) -> Result<ProbedStatus, DutyError> {
        Ok(ProbedStatus {
            uuid: format!("{id:032x}"),
            host_name: "127.0.0.1".into(),
            role: role.into(),
            term,
            commit_index: 10 * term,
            applied_index: 10 * term,
        })
    }

    fn upserts(ops: &[ManagementNodeOp]) -> Vec<ManagementNode> {
        ops.iter()
            .filter_map(|o| match o {
                ManagementNodeOp::Upsert(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn join_then_quiet_then_role_change_then_heartbeat_then_leave() {
        let members = vec![member(1), member(2)];
        let mut hb = BTreeMap::new();
        // Join: both recorded.
        let ops = plan(
            &members,
            &[status(1, "Leader", 2), status(2, "Follower", 2)],
            &[],
            &mut hb,
            1_000,
            10_000,
        );
        let recs = upserts(&ops);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].join_date, 1_000);

        // Nothing changed one second later except indexes: no commit, heartbeat only in memory.
        let probes = [
            Ok(ProbedStatus {
                commit_index: 99,
                ..status(1, "Leader", 2).unwrap()
            }),
            status(2, "Follower", 2),
        ];
        let ops = plan(&members, &probes, &recs, &mut hb, 2_000, 10_000);
        assert!(ops.is_empty(), "committed without a change: {ops:?}");
        assert_eq!(hb.get(&2), Some(&2_000));

        // Node 2 unreachable: role change committed, heartbeat kept from memory, join date kept.
        let ops = plan(
            &members,
            &[status(1, "Leader", 2), Err(DutyError("down".into()))],
            &recs,
            &mut hb,
            3_000,
            10_000,
        );
        let changed = upserts(&ops);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].raft_role, UNREACHABLE);
        assert_eq!(changed[0].heart_beat, 2_000);
        assert_eq!(changed[0].join_date, 1_000);

        // Heartbeat interval elapsed: committed even though nothing else changed.
        let ops = plan(
            &members,
            &[status(1, "Leader", 2), status(2, "Follower", 2)],
            &recs,
            &mut hb,
            11_500,
            10_000,
        );
        assert_eq!(upserts(&ops).len(), 2);

        // Node 2 left the configuration: its record is removed.
        let ops = plan(
            &members[..1],
            &[status(1, "Leader", 2)],
            &recs,
            &mut hb,
            11_600,
            10_000,
        );
        assert!(ops.contains(&ManagementNodeOp::Remove {
            uuid: format!("{:032x}", 2)
        }));
        assert!(upserts(&ops).iter().all(|r| r.raft_node_id == 1));
    }

    #[test]
    fn unknown_unreachable_member_is_skipped() {
        let mut hb = BTreeMap::new();
        let ops = plan(
            &[member(3)],
            &[Err(DutyError("down".into()))],
            &[],
            &mut hb,
            1,
            10,
        );
        assert!(ops.is_empty());
    }

    /// Members that always answer; records and commits go through an in-memory node.
    struct Fake {
        members: Vec<Member>,
    }

    impl RegistryBackend for Fake {
        fn members(&self) -> Vec<Member> {
            self.members.clone()
        }
        fn probe(&self, m: &Member) -> BoxFuture<'static, Result<ProbedStatus, DutyError>> {
            let s = status(m.id, "Follower", 1);
            Box::pin(async move { s })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn duty_commits_joins_then_only_periodic_heartbeats_and_stops_on_cancel() {
        use std::sync::atomic::Ordering::SeqCst;
        let fake = Arc::new(Fake {
            members: vec![member(1), member(2)],
        });
        // Ten simulated milliseconds per clock read: the heartbeat interval passes quickly.
        let node = Arc::new(crate::testing::MemNode::new(Arc::new(
            crate::context::NoReceivers,
        )));
        node.term.store(7, SeqCst);
        let start = node.clock.load(SeqCst);
        let mut duty = RegistryDuty::new(fake.clone());
        duty.interval = Duration::from_millis(5);
        duty.heartbeat_commit = Duration::from_millis(200);
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(7, cancel.clone(), node.clone()));
        let h = tokio::spawn(Arc::new(duty).run(ctx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), h)
            .await
            .expect("duty stopped promptly")
            .unwrap()
            .unwrap();
        let records = {
            let st = node.state.lock().unwrap();
            api::families::management_node::list(&*st).unwrap()
        };
        assert_eq!(records.len(), 2);
        let rounds = (node.clock.load(SeqCst) - start) / 10;
        let commits = node.proposals.load(SeqCst);
        // Two joins plus one heartbeat commit per member every 20 rounds, not one per round.
        assert!(
            commits >= 2 && commits <= 2 + 2 * (rounds / 20 + 1),
            "{commits} commits in {rounds} rounds"
        );
    }
}
