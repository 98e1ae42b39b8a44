//! Cluster membership and leadership administration: initialising a single-voter cluster,
//! forwarding an administration request to the leader, and (on the leader, one change at a time)
//! adding and removing members and transferring leadership.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::RaftMetrics;
use proto::cluster::AdminRequest;
use proto::cluster::NodeStatus;
use proto::cluster::PROTOCOL_VERSION;
use raft_store::openraft;
use raft_store::MemberNode;
use raft_store::NodeId;
use raft_store::TypeConfig;

use super::raft_client::peer_unavailable;
use super::raft_client::Target;
use super::Node;
use crate::config::validate_host_port;
use crate::error::NodeError;
use crate::network::PeerError;
use crate::network::Rpc;

/// Bound on membership and leadership administration (catching a learner up takes a while).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a status probe of a peer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Node {
    /// Initialise a single-voter cluster with this node.
    pub async fn init_cluster(&self) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Unavailable(format!("raft stopped: {e}")))?;
        if initialized {
            return Err(NodeError::Conflict(format!(
                "node {} is already initialised (member of a cluster)",
                self.id
            )));
        }
        let members = BTreeMap::from([(self.id, self.advertise.clone())]);
        self.raft.initialize(members).await.map_err(|e| match e {
            openraft::errors::RaftError::APIError(e) => {
                NodeError::Conflict(format!("cannot initialise: {e}"))
            }
            e => NodeError::Unavailable(format!("cannot initialise: {e}")),
        })
    }

    /// Run an administration request on the leader, forwarding it if needed; returns JSON.
    pub async fn admin(&self, req: AdminRequest) -> Result<serde_json::Value, NodeError> {
        let json = self
            .on_leader(
                "administration",
                ADMIN_TIMEOUT,
                None,
                |target, remaining| {
                    let req = req.clone();
                    async move {
                        match target {
                            Target::Local => self.admin_local(req).await,
                            Target::Remote { id, addr } => {
                                self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
                                let r: Result<String, NodeError> = self
                                    .peers
                                    .call(id, &addr, Rpc::Admin, &req, remaining)
                                    .await
                                    .map_err(peer_unavailable)?;
                                r
                            }
                        }
                    }
                },
            )
            .await?;
        serde_json::from_str(&json)
            .map_err(|e| NodeError::Internal(format!("undecodable admin reply: {e}")))
    }

    /// Execute an administration request; this node must be the leader. Returns JSON text.
    pub async fn admin_local(&self, req: AdminRequest) -> Result<String, NodeError> {
        if !self.raft.is_leader() {
            return Err(NodeError::Unavailable(format!(
                "node {} is not the leader",
                self.id
            )));
        }
        let _one_at_a_time = self.admin_lock.lock().await;
        let v = match req {
            AdminRequest::AddMember {
                id,
                raft_addr,
                api_addr,
            } => self.add_member(id, raft_addr, api_addr).await?,
            AdminRequest::RemoveMember { id } => self.remove_member(id).await?,
            AdminRequest::TransferLeader { to } => self.transfer_leader(to).await?,
        };
        Ok(v.to_string())
    }

    fn membership_settled(&self, m: &RaftMetrics<TypeConfig>) -> Result<(), NodeError> {
        if m.membership_config.membership().get_joint_config().len() > 1 {
            return Err(NodeError::Unavailable(
                "a membership change is still in progress".into(),
            ));
        }
        Ok(())
    }

    async fn add_member(
        &self,
        id: NodeId,
        raft_addr: String,
        api_addr: String,
    ) -> Result<serde_json::Value, NodeError> {
        if id == 0 {
            return Err(NodeError::BadRequest("node id 0 is reserved".into()));
        }
        validate_host_port(&raft_addr)
            .map_err(|e| NodeError::BadRequest(format!("raft_addr: {e}")))?;
        validate_host_port(&api_addr)
            .map_err(|e| NodeError::BadRequest(format!("api_addr: {e}")))?;
        let m = self.raft_metrics();
        self.membership_settled(&m)?;
        let membership = m.membership_config.membership();
        let is_voter = membership.voter_ids().any(|v| v == id);
        let mut already_learner = false;
        if let Some(n) = membership.get_node(&id) {
            if n.raft_addr != raft_addr || n.api_addr != api_addr {
                return Err(NodeError::Conflict(format!(
                    "node id {id} already belongs to a member at {n}; node ids are never reused"
                )));
            }
            if is_voter {
                return Err(NodeError::Conflict(format!(
                    "node {id} is already a voting member"
                )));
            }
            already_learner = true;
        }
        for (nid, n) in membership.nodes() {
            if *nid != id && (n.raft_addr == raft_addr || n.api_addr == api_addr) {
                return Err(NodeError::Conflict(format!(
                    "address already used by member {nid} ({n})"
                )));
            }
        }

        // Ask the newcomer who it is before touching the membership: it refuses a foreign
        // cluster id, another protocol version or another node id itself.
        let st: NodeStatus = self
            .peers
            .call(id, &raft_addr, Rpc::Status, &(), PROBE_TIMEOUT)
            .await
            .map_err(|e| match e {
                PeerError::Refused { detail, .. } => NodeError::Conflict(format!(
                    "node {id} at {raft_addr} refused to join: {detail}"
                )),
                e => NodeError::Peer(format!(
                    "cannot reach node {id} to check it before adding: {e}"
                )),
            })?;
        if st.node_id != id
            || st.cluster_id != self.cluster_id
            || st.protocol_version != PROTOCOL_VERSION
        {
            return Err(NodeError::Conflict(format!(
                "node at {raft_addr} is node {} of cluster {:?} (protocol v{}), expected node {id} of {:?} (v{PROTOCOL_VERSION})",
                st.node_id, st.cluster_id, st.protocol_version, self.cluster_id
            )));
        }
        if !already_learner && !st.members.is_empty() {
            return Err(NodeError::Conflict(format!(
                "node {id} already belongs to a cluster with members {:?}; start it with a fresh data dir",
                st.members
            )));
        }

        let node = MemberNode {
            raft_addr,
            api_addr,
        };
        if !already_learner {
            tracing::info!(id, %node, "adding learner");
            self.change(self.raft.add_learner(id, node.clone(), true), "add learner")
                .await?;
        }
        tracing::info!(id, "learner caught up; promoting to voter");
        self.change(
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
            "promote to voter",
        )
        .await?;
        Ok(serde_json::json!({
            "id": id,
            "raft_addr": node.raft_addr,
            "api_addr": node.api_addr,
            "voter": true,
            "voters": self.raft.voter_ids().collect::<Vec<_>>(),
            "served_by": self.id,
        }))
    }

    async fn change<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, openraft::errors::RaftError<TypeConfig, E>>>,
        what: &str,
    ) -> Result<T, NodeError> {
        match tokio::time::timeout(ADMIN_TIMEOUT, fut).await {
            Err(_) => Err(NodeError::Unavailable(format!(
                "{what}: not done within {ADMIN_TIMEOUT:?}"
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(openraft::errors::RaftError::APIError(e))) => {
                Err(NodeError::Unavailable(format!("{what}: {e}")))
            }
            Ok(Err(e)) => Err(NodeError::Unavailable(format!("{what}: {e}"))),
        }
    }

    async fn remove_member(&self, id: NodeId) -> Result<serde_json::Value, NodeError> {
        let m = self.raft_metrics();
        self.membership_settled(&m)?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(NodeError::Conflict(format!(
                    "refusing to remove node {id}: it is the last voter"
                )));
            }
            // Joint consensus needs a majority of the current AND of the new configuration; if
            // either is unreachable the change could never commit and would wedge membership.
            let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let mut reachable = BTreeSet::new();
            for v in &voters {
                if *v == self.id {
                    reachable.insert(*v);
                    continue;
                }
                if let Some(n) = membership.get_node(v) {
                    let probe: Result<NodeStatus, _> = self
                        .peers
                        .call(*v, &n.raft_addr, Rpc::Status, &(), PROBE_TIMEOUT)
                        .await;
                    if probe.is_ok() {
                        reachable.insert(*v);
                    }
                }
            }
            let current_ok = reachable.len() > voters.len() / 2;
            let new_reachable = remaining.iter().filter(|v| reachable.contains(v)).count();
            let new_ok = new_reachable > remaining.len() / 2;
            if !current_ok || !new_ok {
                return Err(NodeError::Conflict(format!(
                    "refusing to remove node {id}: reachable voters {reachable:?} are not a majority of \
                     the current voters {voters:?} and of the remaining voters {remaining:?}"
                )));
            }
            tracing::info!(id, "removing voter");
            self.change(
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
                "remove voter",
            )
            .await?;
        } else {
            tracing::info!(id, "removing learner");
            self.change(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
                "remove learner",
            )
            .await?;
        }
        Ok(serde_json::json!({
            "removed": id,
            "voters": self.raft.voter_ids().collect::<Vec<_>>(),
            "served_by": self.id,
        }))
    }

    async fn transfer_leader(&self, to: Option<NodeId>) -> Result<serde_json::Value, NodeError> {
        let m = self.raft_metrics();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let target = match to {
            Some(t) if !voters.contains(&t) => {
                return Err(NodeError::BadRequest(format!(
                    "node {t} is not a voter; voters: {voters:?}"
                )))
            }
            Some(t) => t,
            None => {
                // The most up-to-date other voter takes over with the least catch-up.
                let replication = m.replication.clone().unwrap_or_default();
                voters
                    .iter()
                    .copied()
                    .filter(|v| *v != self.id)
                    .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))
                    .ok_or_else(|| {
                        NodeError::Conflict("no other voter to transfer leadership to".into())
                    })?
            }
        };
        if target != self.id {
            tracing::info!(to = target, "transferring leadership");
            self.raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| NodeError::Unavailable(format!("raft stopped: {e}")))?;
            let waited = self
                .raft
                .wait(Some(ADMIN_TIMEOUT.min(Duration::from_secs(10))))
                .current_leader(target, "leader transfer")
                .await;
            if let Err(e) = waited {
                return Err(NodeError::Unavailable(format!(
                    "node {target} did not take over: {e}"
                )));
            }
        }
        Ok(serde_json::json!({ "leader_id": target, "served_by": self.id }))
    }
}
