//! `zsagent`: the agent on every KVM host, driven only by the management cluster's Raft leader
//! over mutual TLS (`proto::agent`).
//!
//! - [`service`]: the gRPC service: header checks (cluster, protocol, the caller's
//!   certificate), term fencing ([`term`]), the host binding, domain-list versions.
//! - [`backend`]: the host behind a trait: [`libvirt`] (the `virt` crate; production and the
//!   demo) or [`simulated`] (in-memory hosts for scale tests).
//! - [`storage`]: primary storage directories, NFS mounts, `statvfs` capacity.
//! - [`volumes`]: volume files on a primary storage (`qemu-img`); [`domain_xml`]: the
//!   libvirt domain XML of a VM, built from the leader's spec.
//! - [`tls`]: the agent's credentials from the cluster CA and the caller's identity.
//! - [`image_store`], [`image_service`]: the image store role; [`image_export`] and
//!   [`export_http`]: exported images and the plain-HTTP server that serves them.

pub mod backend;
pub mod domain_xml;
pub mod durable;
pub mod export_http;
pub mod image_export;
pub mod image_service;
pub mod image_store;
pub mod libvirt;
pub mod service;
pub mod simulated;
pub mod storage;
pub mod term;
pub mod tls;
pub mod volumes;
