//! `zsagent`: the agent on every KVM host, driven only by the management cluster's Raft leader
//! over mutual TLS (`proto::agent`).

pub mod image_store;
