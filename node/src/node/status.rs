//! What a node says about itself and the cluster: the `Status` answer of the node-to-node
//! protocol, `/health/ready` and `/cluster/status`, and Raft role names as the contracts spell
//! them.

use std::collections::BTreeSet;

use openraft::LogIdOptionExt;
use openraft::ServerState;
use proto::cluster::NodeStatus;
use proto::cluster::PROTOCOL_VERSION;
use proto::http::ClusterStatus;
use proto::http::MemberInfo;
use proto::http::Readiness;
use raft_store::openraft;

use super::Node;

/// Role name as the HTTP contract spells it.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}

impl Node {
    /// This node's identity and progress.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft_metrics();
        let host_name = self
            .advertise
            .api_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| self.advertise.api_addr.clone());
        NodeStatus {
            node_id: self.id,
            cluster_id: self.cluster_id.clone(),
            protocol_version: PROTOCOL_VERSION,
            uuid: self.identity.uuid.clone(),
            host_name,
            role: role_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: m.local_committed.index().unwrap_or(0),
            applied_index: m.last_applied.index().unwrap_or(0),
            raft_addr: self.advertise.raft_addr.clone(),
            api_addr: self.advertise.api_addr.clone(),
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    /// `/health/ready`: ready once a leader is known and the local state machine applied the
    /// commit index seen at start-up.
    pub fn readiness(&self) -> Readiness {
        let m = self.raft_metrics();
        let applied = m.last_applied.index().unwrap_or(0);
        let (ready, reason) = match m.current_leader {
            None => (false, "no leader known".to_string()),
            Some(_) if applied < self.startup_commit => (
                false,
                format!(
                    "applied index {applied} is behind the commit index {} seen at start-up",
                    self.startup_commit
                ),
            ),
            Some(l) => (true, format!("leader {l} known; applied index {applied}")),
        };
        Readiness {
            ready,
            reason,
            node_id: self.id,
        }
    }

    /// `/cluster/status`: this node's Raft progress and the members of its configuration (with
    /// matched index and lag only when this node is the leader).
    pub fn cluster_status(&self) -> ClusterStatus {
        let m = self.raft_metrics();
        let last_log = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| {
                // Only the leader knows how far each member got.
                let matched = match &m.replication {
                    Some(_) if *id == self.id => Some(last_log),
                    Some(r) => r.get(id).map(|l| l.index().unwrap_or(0)),
                    None => None,
                };
                MemberInfo {
                    id: *id,
                    raft_addr: n.raft_addr.clone(),
                    api_addr: n.api_addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|x| last_log.saturating_sub(x)),
                }
            })
            .collect();
        ClusterStatus {
            node_id: self.id,
            cluster_id: self.cluster_id.clone(),
            role: role_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: last_log,
            commit_index: m.local_committed.index().unwrap_or(0),
            applied_index: m.last_applied.index().unwrap_or(0),
            members,
            served_by: self.id,
        }
    }
}
