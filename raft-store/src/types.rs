//! The openraft type configuration and the payloads that travel through the log.
//!
//! Everything openraft-specific that other crates need is re-exported from here, so an openraft
//! upgrade touches this crate only.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;

use crate::codec;

/// Raft node id. Never reused: the node's data directory records it.
pub type NodeId = u64;

/// What the cluster knows about a member: where to reach its Raft and HTTP endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// `host:port` of the node-to-node gRPC endpoint (Raft transport).
    pub raft_addr: String,
    /// `host:port` of the HTTP endpoint (API, metrics, health).
    pub api_addr: String,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

/// A client proposal: one application command, encoded, plus what the store needs to dedup it.
///
/// The command stays opaque bytes here so that the log format does not depend on the
/// application's type; the state machine's [`crate::Applier`] decodes it on apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Idempotency key chosen by the client (or the node on its behalf). A proposal whose id was
    /// already applied is answered with the stored response and not applied again.
    pub request_id: Option<String>,
    /// Wall-clock milliseconds stamped by the proposing node; drives dedup-record expiry
    /// deterministically on every replica.
    pub proposed_at_ms: u64,
    /// The application command, encoded with [`codec::encode`].
    pub command: Vec<u8>,
}

impl Proposal {
    /// Wrap an application command.
    pub fn new<C: Serialize>(request_id: Option<String>, proposed_at_ms: u64, command: &C) -> Self {
        Self {
            request_id,
            proposed_at_ms,
            command: codec::encode(command),
        }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Proposal(request_id={:?}, {} bytes)",
            self.request_id,
            self.command.len()
        )
    }
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// Log index of the entry that produced `response` (for a duplicate: the original entry).
    pub index: u64,
    /// True when the request id had been applied before and this is the remembered answer.
    pub duplicate: bool,
    /// The application's response, encoded with [`codec::encode`]; empty for blank and
    /// membership entries.
    pub response: Vec<u8>,
}

impl ApplyOutcome {
    /// Decode the application's response.
    pub fn decode<R: DeserializeOwned>(&self) -> Result<R, codec::DecodeError> {
        codec::decode(&self.response)
    }
}

openraft::declare_raft_types!(
    /// The single openraft type configuration of the management cluster.
    pub TypeConfig:
        D = Proposal,
        R = ApplyOutcome,
        NodeId = NodeId,
        Node = MemberNode,
);

/// openraft's log id for our config.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// openraft's vote for our config.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// Membership as stored with its log id.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// The Raft handle type the node runs.
pub type Raft<A> = openraft::Raft<TypeConfig, crate::StateMachineStore<A>>;
