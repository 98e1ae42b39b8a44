//! Leader duties: the [`Supervisor`] establishes leadership in named steps when this node
//! gains it (catch up with everything committed, build the term's [`LeaderContext`], start
//! every registered [`Duty`] with it) and revokes it when leadership is lost (cancel the
//! context, then wait for every duty, last started first) — Nomad's establish/revoke
//! leadership. A duty reaches the node only through its context: a read view, proposals fenced
//! by its term and never forwarded, the side-effect seam, a clock.
//!
//! This crate knows nothing of RocksDB or openraft: the node feeds it a [`Leadership`] watch, a
//! [`LeaderBarrier`] and a [`LeaderNode`].

#![deny(missing_docs)]

pub mod context;
pub mod duties;
pub mod registry;
mod supervisor;
#[cfg(test)]
mod testing;

pub use context::EffectCall;
pub use context::EffectError;
pub use context::EffectFuture;
pub use context::EffectRunner;
pub use context::LeaderContext;
pub use context::LeaderNode;
pub use context::ProgressFn;
pub use supervisor::Duty;
pub use supervisor::DutyError;
pub use supervisor::LeaderBarrier;
pub use supervisor::Leadership;
pub use supervisor::Supervisor;
pub use supervisor::SupervisorState;
pub use tokio_util::sync::CancellationToken;

/// A boxed, sendable future, as the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
