//! `ops`: the operator side of the management cluster — an HTTP client for `zsnode` (whose JSON
//! bodies are declared once, in `proto::http`, and re-exported here), the `zsctl` command line
//! and its table rendering. Used by `zsctl` and by `chaos-tests`.

pub mod cli;
pub mod client;
pub mod report;
pub mod table;

pub use client::{
    Auth, ClusterStatus, Consistency, MemberInfo, NodeClient, Nodes, OpsError, Readiness, Timeouts,
};
