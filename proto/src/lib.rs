//! `proto`: the protocols between the processes of the management plane, so that both ends of
//! each one compile against ONE definition.
//!
//! - [`cluster`] — node↔node (`zsnode` to `zsnode`): the tonic/protobuf schema
//!   `zstack.cluster.v1` ([`cluster::v1`]), its [`cluster::PROTOCOL_VERSION`], and the serde
//!   messages carried inside its `bytes` payloads that are not openraft's own
//!   ([`cluster::NodeStatus`], [`cluster::AdminRequest`]).
//! - [`http`] — ops↔node: the JSON bodies of the node's cluster HTTP API (`/health`, `/cluster`,
//!   `/kv`), serialised by `zsnode` and decoded by `zsctl`.
//!
//! - [`agent`] — leader↔agent (`zsnode` leader to each host's `zsagent`): `zstack.agent.v1`
//!   ([`agent::v1`]), its version, port, TLS name and certificate naming.
//!
//! This crate depends on no other workspace crate, and must never depend on `raft-store` or
//! `api`: the host agent will depend on it and must not see the management node's storage or
//! domain model. Payload types are therefore plain serde structs; the node chooses their encoding
//! (`raft_store::codec` inside the protobuf envelopes).

#![deny(missing_docs)]

pub mod agent;
pub mod cluster;
pub mod http;
