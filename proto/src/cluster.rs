//! The node-to-node protocol of the management cluster (`proto/cluster.proto`): Raft transport,
//! write forwarding, read index, status probes and forwarded membership administration.
//!
//! openraft's own messages travel as openraft structs; the messages below are the others. The
//! node encodes both with `raft_store::codec` inside the protobuf envelopes.

use serde::Deserialize;
use serde::Serialize;

/// Version of the node-to-node protocol; peers with another version are refused.
pub const PROTOCOL_VERSION: u32 = 2;

/// Generated protobuf / tonic code of `zstack.cluster.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("zstack.cluster.v1");
}

/// A node's identity and Raft progress, answered to `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Raft node id.
    pub node_id: u64,
    /// Cluster id.
    pub cluster_id: String,
    /// Protocol version the node speaks.
    pub protocol_version: u32,
    /// Management node uuid.
    pub uuid: String,
    /// Host part of the advertised HTTP address.
    pub host_name: String,
    /// Raft role name.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Leader known to the node.
    pub leader_id: Option<u64>,
    /// Last log index.
    pub last_log_index: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Advertised Raft address.
    pub raft_addr: String,
    /// Advertised HTTP address.
    pub api_addr: String,
    /// Ids in the node's current membership config (empty before init/join).
    pub members: Vec<u64>,
}

/// Membership and leadership administration, executed on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Add a node: learner, catch up, voter.
    AddMember {
        /// Node id.
        id: u64,
        /// Its Raft address.
        raft_addr: String,
        /// Its HTTP address.
        api_addr: String,
    },
    /// Remove a node.
    RemoveMember {
        /// Node id.
        id: u64,
    },
    /// Transfer leadership (to the most up-to-date voter when `to` is `None`).
    TransferLeader {
        /// Target.
        to: Option<u64>,
    },
}
