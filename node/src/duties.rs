//! Wiring of the `ha` supervisor to openraft: the leadership watch, the catch-up barrier and
//! the management-node registry's backend.

use std::sync::Arc;
use std::time::Duration;

use api::families::management_node::ManagementNode;
use api::StateTxn;
use ha::registry::Member;
use ha::registry::ProbedStatus;
use ha::registry::RegistryBackend;
use ha::BoxFuture;
use ha::Duty;
use ha::DutyError;
use ha::EffectRunner;
use ha::LeaderBarrier;
use ha::LeaderNode;
use ha::Leadership;
use proto::cluster::NodeStatus;
use raft_store::openraft::async_runtime::WatchReceiver;
use raft_store::openraft::ReadPolicy;
use raft_store::openraft::ServerState;
use raft_store::Proposal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::network::Rpc;
use crate::node::now_ms;
use crate::node::Node;
use crate::state_view::StateView;

/// Bound on the catch-up barrier of a new leader.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);

/// Mirror openraft's metrics into a [`Leadership`] watch until `shutdown`.
pub fn leadership_watch(
    node: &Arc<Node>,
    shutdown: CancellationToken,
) -> watch::Receiver<Leadership> {
    let mut metrics = node.raft.metrics();
    let current = |m: &raft_store::openraft::RaftMetrics<raft_store::TypeConfig>| Leadership {
        is_leader: m.state == ServerState::Leader,
        term: m.current_term,
    };
    let (tx, rx) = watch::channel(current(&metrics.borrow_watched()));
    tokio::spawn(async move {
        loop {
            let l = current(&metrics.borrow_and_update());
            tx.send_if_modified(|old| {
                let changed = *old != l;
                *old = l;
                changed
            });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = metrics.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}

/// The new leader's barrier: a read index confirmed by a quorum covers everything committed
/// so far (at least this term's first entry); waiting for it to apply is "caught up".
pub struct RaftBarrier(pub Arc<Node>);

impl LeaderBarrier for RaftBarrier {
    fn wait_caught_up(&self, term: u64) -> BoxFuture<'static, Result<(), DutyError>> {
        let node = self.0.clone();
        Box::pin(async move {
            let r = tokio::time::timeout(
                BARRIER_TIMEOUT,
                node.raft.ensure_linearizable(ReadPolicy::ReadIndex),
            )
            .await;
            match r {
                Err(_) => Err(DutyError(format!(
                    "term {term}: not caught up within {BARRIER_TIMEOUT:?}"
                ))),
                Ok(Err(e)) => Err(DutyError(format!("term {term}: {e}"))),
                Ok(Ok(read)) => {
                    tracing::info!(term, read_index = read.index(), "leader caught up");
                    Ok(())
                }
            }
        })
    }
}

/// The registry's view of the node: the membership and member probes.
pub struct NodeRegistry(pub Arc<Node>);

impl RegistryBackend for NodeRegistry {
    fn members(&self) -> Vec<Member> {
        let m = self.0.raft_metrics();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                raft_addr: n.raft_addr.clone(),
                api_addr: n.api_addr.clone(),
            })
            .collect()
    }

    fn probe(&self, member: &Member) -> BoxFuture<'static, Result<ProbedStatus, DutyError>> {
        let node = self.0.clone();
        let member = member.clone();
        Box::pin(async move {
            let st = if member.id == node.id {
                node.status()
            } else {
                node.peers()
                    .call::<(), NodeStatus>(
                        member.id,
                        &member.raft_addr,
                        Rpc::Status,
                        &(),
                        Duration::from_millis(800),
                    )
                    .await
                    .map_err(|e| DutyError(e.to_string()))?
            };
            Ok(ProbedStatus {
                uuid: st.uuid.clone(),
                host_name: st.host_name.clone(),
                role: st.role.clone(),
                term: st.term,
                commit_index: st.commit_index,
                applied_index: st.applied_index,
            })
        })
    }
}

/// What the leader's duties get from this node: local reads, local-only proposals, the clock
/// and the flow receivers.
pub struct NodeLeader(pub Arc<Node>);

impl LeaderNode for NodeLeader {
    fn read(&self, f: &mut dyn FnMut(&dyn StateTxn)) {
        f(&StateView(&self.0.sm))
    }

    fn propose_local(
        &self,
        cmd: api::Command,
        request_id: Option<String>,
    ) -> BoxFuture<'static, Result<api::Response, DutyError>> {
        let node = self.0.clone();
        Box::pin(async move {
            // Leader-only: a duty must never reach the log through another leader after this
            // node was deposed, so no forwarding here (openraft refuses on a non-leader).
            // SEEDED BUG (test builds only): duties propose like clients, forwarded to
            // whichever node leads now.
            #[cfg(feature = "seeded-bugs")]
            if crate::seeded::unfenced_duty() {
                return node
                    .propose(&cmd, request_id)
                    .await
                    .map(|(_, r)| r)
                    .map_err(|e| DutyError(e.to_string()));
            }
            let rid = request_id.unwrap_or_else(|| node.new_request_id());
            let proposal = Proposal::new(Some(rid), now_ms(), &cmd);
            let outcome = node
                .propose_local(proposal, node.request_timeout())
                .await
                .map_err(|e| DutyError(e.to_string()))?;
            outcome
                .decode()
                .map_err(|e| DutyError(format!("undecodable duty response: {e}")))
        })
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn effects(&self) -> Arc<dyn EffectRunner> {
        crate::receivers::runner(self.0.receivers().clone())
    }
}

/// How often the executor looks for jobs submitted through other nodes.
const JOB_POLL: Duration = Duration::from_millis(200);
/// Jobs run at once by the leader (different resources; one per resource at a time).
pub const MAX_JOBS_IN_FLIGHT: usize = 16;

/// Every leader duty, in the order they are established (and revoked in reverse).
pub fn all(node: &Arc<Node>, step_pause: Duration) -> Vec<Arc<dyn Duty>> {
    use ha::duties::sweepers;
    // The receivers' client set (one channel per agent for flows and duties alike); a node
    // built without receivers gets its own.
    let agents =
        node.receivers().agents().cloned().unwrap_or_else(|| {
            Arc::new(crate::agent_client::AgentClients::new(node.credentials()))
        });
    let mut duties: Vec<Arc<dyn Duty>> = vec![
        Arc::new(ha::registry::RegistryDuty::new(Arc::new(NodeRegistry(
            node.clone(),
        )))),
        Arc::new(sweepers::AdminBootstrap),
        Arc::new(
            ha::duties::executor::JobExecutor::new(
                node.job_wakeup().clone(),
                JOB_POLL,
                MAX_JOBS_IN_FLIGHT,
            )
            .with_step_pause(step_pause),
        ),
        Arc::new(sweepers::session_sweeper()),
        Arc::new(sweepers::api_result_sweeper()),
        Arc::new(sweepers::audit_sweeper()),
        Arc::new(sweepers::vm_expunge_sweeper()),
        Arc::new(sweepers::volume_expunge_sweeper()),
        Arc::new(ha::duties::scheduler_timer::SchedulerTimer::new(
            node.data_key().clone(),
        )),
        Arc::new(ha::duties::vm_reconciler::VmReconciler::new(Arc::new(
            crate::agent_client::TrackerAgents::new(agents.clone(), proto::agent::DEFAULT_PORT),
        ))),
        Arc::new(
            ha::duties::host_tracker::HostTracker::new(Arc::new(
                crate::agent_client::TrackerAgents::new(agents.clone(), proto::agent::DEFAULT_PORT),
            ))
            .with_metrics(node.metrics().host_tracker.clone()),
        ),
    ];
    // The reconnect flow's receiver and the tracker measure through the same edge.
    let storage = node.receivers().storage().cloned().unwrap_or_else(|| {
        Arc::new(crate::storage_agents::HostStorages::new(
            agents.clone(),
            proto::agent::DEFAULT_PORT,
        ))
    });
    duties.push(Arc::new(ha::duties::storage_tracker::StorageTracker::new(
        Arc::new(crate::storage_agents::TrackerStorage(storage)),
    )));
    if let Some(images) = node.receivers().images() {
        duties.push(Arc::new(
            ha::duties::backup_storage_tracker::BackupStorageTracker::new(Arc::new(
                crate::image_agents::TrackerImageStores(images.clone()),
            )),
        ));
    }
    duties
}

/// Every management node record in the local state.
pub fn read_management_nodes(node: &Node) -> Result<Vec<ManagementNode>, crate::error::NodeError> {
    let rows = node
        .sm
        .scan_prefix(api::families::management_node::TABLE, b"", usize::MAX)
        .map_err(|e| crate::error::NodeError::Internal(e.to_string()))?;
    rows.iter()
        .map(|(_, v)| {
            api::families::management_node::decode(v)
                .map_err(|e| crate::error::NodeError::Internal(e.to_string()))
        })
        .collect()
}
