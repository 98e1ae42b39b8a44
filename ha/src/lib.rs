//! Leader duties: the [`Supervisor`] starts every registered [`Duty`] when this node gains
//! leadership (after the state machine caught up with everything committed) and cancels them
//! all, waiting for each to stop, when leadership is lost (Nomad's establish/revoke leadership).
//!
//! This crate knows nothing of RocksDB or openraft: the node feeds it a [`Leadership`] watch and
//! a [`LeaderBarrier`], and implements the backends the duties need.

#![deny(missing_docs)]

pub mod jobs;
pub mod registry;
mod supervisor;

pub use supervisor::Duty;
pub use supervisor::DutyError;
pub use supervisor::LeaderBarrier;
pub use supervisor::Leadership;
pub use supervisor::Supervisor;
pub use supervisor::SupervisorState;
pub use tokio_util::sync::CancellationToken;

/// A boxed, sendable future, as the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
