//! openraft storage for the management cluster: the Raft log, the vote and the replicated
//! state machine in ONE RocksDB instance.
//!
//! Column families: `log` (entries by big-endian index), `meta` (vote, committed, last purged,
//! format marker), `sm` (last applied, membership), `dedup` (request ids) and one per state
//! table of the [`Applier`]. See `docs/architecture.md` for the durability argument.

#![deny(missing_docs)]

pub mod codec;
mod db;
mod error;
pub mod kv;
mod log_store;
mod snapshot;
mod state_machine;
mod txn;
mod types;

use std::path::Path;

pub use error::StoreError;
pub use log_store::FlushStats;
pub use log_store::LogStore;
pub use snapshot::SnapshotFile;
pub use snapshot::SnapshotSink;
pub(crate) use state_machine::fsync_dir;
pub use state_machine::Applier;
pub use state_machine::ApplyContext;
pub use state_machine::StateDump;
pub use state_machine::StateMachineStore;
pub use state_machine::DEDUP_RETENTION_MS;
pub use txn::Txn;
pub use types::*;

/// Re-export of the openraft crate, so dependants use exactly the version raft-store pins.
pub use openraft;

/// A key and its value in a state table.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Open (creating if absent) the store under `dir`: RocksDB in `dir/db`, snapshots in
/// `dir/snapshots`. Fails with a clear error on a corrupt or foreign directory, an undecodable
/// log entry or metadata record, or a damaged current snapshot.
pub fn open<A: Applier>(
    dir: &Path,
    applier: A,
) -> Result<(LogStore, StateMachineStore<A>), StoreError> {
    let tables = applier.tables();
    let db = db::open(&dir.join("db"), &tables, applier.format())?;
    let log = LogStore::new(db.clone())?;
    let sm = StateMachineStore::new(db, applier, dir.join("snapshots"))?;
    Ok((log, sm))
}
