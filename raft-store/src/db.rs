//! Opening the single RocksDB instance that holds the log, the Raft metadata and the state.

use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use rocksdb::ColumnFamilyDescriptor;
use rocksdb::DBRecoveryMode;
use rocksdb::Options;
use rocksdb::DB;

use crate::error::StoreError;

/// Log entries, key = big-endian index.
pub(crate) const CF_LOG: &str = "log";
/// Raft metadata of the log side: vote, committed, last purged, format marker.
pub(crate) const CF_META: &str = "meta";
/// State-machine metadata: last applied log id and membership.
pub(crate) const CF_SM: &str = "sm";
/// Request-id dedup records; replicated state, so it is part of every snapshot.
pub(crate) const CF_DEDUP: &str = "dedup";

/// Names an applier may not use for its own tables.
pub(crate) const RESERVED: [&str; 5] = [CF_LOG, CF_META, CF_SM, CF_DEDUP, "default"];

pub(crate) const KEY_FORMAT: &[u8] = b"format";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";

/// The on-disk layout version this build writes and reads.
pub(crate) const FORMAT: &[u8] = b"zstack-raft-store/1";
/// Key of the applier's own format (how its commands and state are encoded).
pub(crate) const KEY_APPLIER_FORMAT: &[u8] = b"applier_format";

/// The open database plus the ordered list of replicated state tables.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    /// Replicated state tables in snapshot order: `dedup` first, then the applier's tables.
    pub(crate) state_tables: Vec<String>,
}

impl Db {
    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every CF in `state_tables` and the fixed ones is created or verified in `open`, and
        // CFs are never dropped while the DB is open, so a miss is a programming error.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} was opened in Db::open"))
    }
}

/// Open (or create) the RocksDB directory `path` with the applier's `tables`.
pub(crate) fn open(
    path: &Path,
    tables: &[&str],
    applier_format: &str,
) -> Result<Arc<Db>, StoreError> {
    let mut state_tables = vec![CF_DEDUP.to_string()];
    for t in tables {
        if RESERVED.contains(t) {
            return Err(StoreError::ReservedTable(t.to_string()));
        }
        if !state_tables.iter().any(|s| s == t) {
            state_tables.push(t.to_string());
        }
    }

    if !path.exists() {
        create(path, &state_tables, applier_format)?;
    } else if !path.join("CURRENT").exists() {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            reason: "directory exists but has no RocksDB CURRENT file (truncated or foreign data)"
                .to_string(),
        });
    }

    let opts = db_options(false);
    let mut names: BTreeSet<String> = [CF_LOG, CF_META, CF_SM]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(state_tables.iter().cloned());
    let existing = DB::list_cf(&opts, path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    names.extend(existing.into_iter().filter(|n| n != "default"));
    let cfs = names
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;

    let meta = db.cf_handle(CF_META).expect("meta CF was just opened");
    match db
        .get_cf(meta, KEY_FORMAT)
        .map_err(StoreError::rocks("read format marker"))?
    {
        Some(found) if found == FORMAT => {}
        Some(found) => {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "format marker {:?}, this build reads {:?}",
                    String::from_utf8_lossy(&found),
                    String::from_utf8_lossy(FORMAT)
                ),
            })
        }
        None => {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                reason: "RocksDB directory without a raft-store format marker".to_string(),
            })
        }
    }

    // Commands in the log and records in the state were written by the applier of some build;
    // a build that encodes them differently must not read them (it could misread instead of
    // failing), so the store carries the applier's format and refuses another.
    let found = db
        .get_cf(meta, KEY_APPLIER_FORMAT)
        .map_err(StoreError::rocks("read applier format marker"))?;
    let found = found.as_deref().map(String::from_utf8_lossy);
    if found.as_deref() != Some(applier_format) {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            reason: match found {
                Some(f) => format!(
                    "its state and log were written in format {f:?}, this build reads {applier_format:?}; \
                     there is no migration between them: start this node with an empty data \
                     directory and let it join (or restore a snapshot taken by a build of the same format)"
                ),
                None => format!(
                    "its state and log were written by a build that predates format markers; this build \
                     reads {applier_format:?}: start this node with an empty data directory"
                ),
            },
        });
    }

    Ok(Arc::new(Db {
        db,
        path: path.to_path_buf(),
        state_tables,
    }))
}

/// Big-endian key of a log index, so RocksDB's byte order is index order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Inverse of [`index_key`]; `None` for a key of the wrong length.
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(true);
    opts.set_paranoid_checks(true);
    // A torn tail record from a crash is dropped (it was never acknowledged: acks wait for
    // fsync); everything before it must replay. All CFs share one WAL, so what survives a crash
    // is a prefix of our writes: an apply batch never survives without the log entries it was
    // built from, nor a purge without the snapshot that allowed it.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts
}

/// Create a new store atomically: build it in a sibling directory, write the format marker
/// durably, then rename. A crash at any point leaves either no `path` or a complete store.
fn create(path: &Path, state_tables: &[String], applier_format: &str) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.init-tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(StoreError::io("remove stale init directory", &tmp))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(StoreError::io("create data directory", parent))?;
    }
    {
        let mut names: Vec<&str> = vec![CF_LOG, CF_META, CF_SM];
        names.extend(state_tables.iter().map(String::as_str));
        let cfs = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&db_options(true), &tmp, cfs).map_err(|source| {
            StoreError::Open {
                path: tmp.clone(),
                source,
            }
        })?;
        let meta = db.cf_handle(CF_META).expect("meta CF was just created");
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        db.put_cf_opt(meta, KEY_FORMAT, FORMAT, &w)
            .map_err(StoreError::rocks("write format marker"))?;
        db.put_cf_opt(meta, KEY_APPLIER_FORMAT, applier_format.as_bytes(), &w)
            .map_err(StoreError::rocks("write applier format marker"))?;
    }
    std::fs::rename(&tmp, path).map_err(StoreError::io("rename new store into place", path))?;
    if let Some(parent) = path.parent() {
        crate::fsync_dir(parent)?;
    }
    Ok(())
}
