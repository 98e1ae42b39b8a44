//! VM placement (issue 12): ZStack's host allocator — a chain of filters and a strategy — as
//! pure functions over a [`PlacementView`] of the state, plus the capacity arithmetic
//! ([`capacity::fits`]) that the reservation command's apply re-checks, so two placements
//! computed concurrently on different nodes can never both land on a host that fits one.
//!
//! Nothing here proposes or commits: the node computes a [`Reservation`] with [`allocate`],
//! proposes it through Raft, and the apply takes it with [`capacity::Allocated::take`] (or
//! refuses it, and the node retries the pipeline).

#![deny(missing_docs)]

pub mod capacity;
pub mod config;
pub mod error;
pub mod filter;
pub mod index;
pub mod memory;
pub mod pipeline;
pub mod request;
pub mod strategy;
pub mod units;
pub mod view;

pub use capacity::fits;
pub use capacity::Reservation;
pub use error::AllocationError;
pub use error::BadRequest;
pub use error::NoHostAvailable;
pub use filter::FilterName;
pub use index::HostIndex;
pub use memory::InMemoryView;
pub use pipeline::allocate;
pub use pipeline::allocate_scan;
pub use pipeline::candidates;
pub use request::PlacementRequest;
pub use strategy::AllocatorStrategy;
pub use strategy::StrategyMode;
pub use view::PlacementView;
