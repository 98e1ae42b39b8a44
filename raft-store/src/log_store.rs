//! `RaftLogStorage`: the Raft log and vote in the `log` and `meta` column families.
//!
//! Appends are written (readable at once) on the caller's task and made durable by a single
//! flusher thread that fsyncs the WAL and then fires the completion callbacks strictly in the
//! order the appends were made. One flusher is what keeps completions ordered: openraft treats
//! a completion as "everything up to here is durable" (openraft issue #1960 shows what breaks
//! when a later append is reported before an earlier one). Appends queued while a sync runs
//! share the next sync, which is where batching under load comes from.

use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use rocksdb::WriteBatch;
use rocksdb::WriteOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::db::index_key;
use crate::db::key_index;
use crate::db::Db;
use crate::db::CF_LOG;
use crate::db::CF_META;
use crate::db::KEY_COMMITTED;
use crate::db::KEY_LAST_PURGED;
use crate::db::KEY_VOTE;
use crate::error::StoreError;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::TypeConfig;
use crate::types::Vote;

/// Counters of the flusher, for `/metrics`.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// WAL syncs performed.
    pub syncs: std::sync::atomic::AtomicU64,
    /// Append callbacks completed.
    pub appends: std::sync::atomic::AtomicU64,
    /// Total microseconds spent in WAL sync.
    pub sync_micros: std::sync::atomic::AtomicU64,
}

struct Flusher {
    tx: Mutex<Option<mpsc::Sender<IOFlushed<TypeConfig>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Close the queue so the thread drains what is left and exits.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

fn spawn_flusher(db: Arc<Db>, stats: Arc<FlushStats>) -> Result<Flusher, StoreError> {
    use std::sync::atomic::Ordering::Relaxed;
    let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
    let thread = std::thread::Builder::new()
        .name("raft-log-flusher".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut pending = vec![first];
                pending.extend(rx.try_iter());
                let started = Instant::now();
                let res = db.db.flush_wal(true);
                stats.syncs.fetch_add(1, Relaxed);
                stats
                    .sync_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                stats.appends.fetch_add(pending.len() as u64, Relaxed);
                match res {
                    Ok(()) => pending.into_iter().for_each(|cb| cb.io_completed(Ok(()))),
                    Err(e) => {
                        tracing::error!(error = %e, "WAL sync failed; failing {} appends", pending.len());
                        for cb in pending {
                            cb.io_completed(Err(io::Error::other(format!("WAL sync failed: {e}"))));
                        }
                    }
                }
            }
        })
        .map_err(StoreError::io("spawn flusher thread", "raft-log-flusher"))?;
    Ok(Flusher {
        tx: Mutex::new(Some(tx)),
        thread: Mutex::new(Some(thread)),
    })
}

/// The Raft log store. Cheap to clone; clones share the database and the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    flusher: Arc<Flusher>,
    stats: Arc<FlushStats>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.db.path)
            .finish()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>) -> Result<Self, StoreError> {
        let stats = Arc::new(FlushStats::default());
        let flusher = Arc::new(spawn_flusher(db.clone(), stats.clone())?);
        let store = Self { db, flusher, stats };
        store.verify()?;
        Ok(store)
    }

    /// Flusher counters.
    pub fn flush_stats(&self) -> &FlushStats {
        &self.stats
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        let raw = self
            .db
            .db
            .get_cf(self.db.cf(CF_META), key)
            .map_err(StoreError::rocks("read meta"))?;
        raw.map(|b| {
            codec::decode(&b).map_err(|e| StoreError::Corrupt {
                path: self.db.path.clone(),
                what: format!("meta record {:?}", String::from_utf8_lossy(key)),
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        self.db
            .db
            .put_cf_opt(self.db.cf(CF_META), key, codec::encode(value), &w)
            .map_err(StoreError::rocks("write meta"))
    }

    fn decode_entry(&self, key: &[u8], value: &[u8]) -> Result<Entry, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: self.db.path.clone(),
            what: match key_index(key) {
                Some(i) => format!("log entry at index {i}"),
                None => format!("log key {key:?}"),
            },
            detail,
        };
        let index = key_index(key).ok_or_else(|| corrupt("key is not an 8-byte index".into()))?;
        let entry: Entry = codec::decode(value).map_err(|e| corrupt(e.to_string()))?;
        if entry.index() != index {
            return Err(corrupt(format!("entry says index {}", entry.index())));
        }
        Ok(entry)
    }

    /// Decode every record once at open, so a damaged log stops the node at start-up with the
    /// failing index named, instead of surfacing mid-replication as a fatal Raft error. The log
    /// is bounded by the snapshot policy (purged behind each snapshot), so this stays cheap.
    fn verify(&self) -> Result<(), StoreError> {
        let _vote: Option<Vote> = self.get_meta(KEY_VOTE)?;
        let _committed: Option<LogId> = self.get_meta(KEY_COMMITTED)?;
        let purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let mut expect = purged.as_ref().map(|l| l.index() + 1);
        for item in self
            .db
            .db
            .iterator_cf(self.db.cf(CF_LOG), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(StoreError::rocks("scan log"))?;
            let entry = self.decode_entry(&k, &v)?;
            if let Some(want) = expect {
                if entry.index() < want {
                    // At or below last purged: a purge whose range delete was lost in a crash.
                    // openraft ignores these entries; they are deleted on the next purge.
                    continue;
                }
                if entry.index() != want {
                    return Err(StoreError::Corrupt {
                        path: self.db.path.clone(),
                        what: format!("log entry at index {}", entry.index()),
                        detail: format!("gap in the log: expected index {want}"),
                    });
                }
            }
            expect = Some(entry.index() + 1);
        }
        Ok(())
    }

    fn read_range(&self, start: u64, end_exclusive: Option<u64>) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let from = index_key(start);
        let mode = rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward);
        for item in self.db.db.iterator_cf(self.db.cf(CF_LOG), mode) {
            let (k, v) = item.map_err(StoreError::rocks("read log"))?;
            if let (Some(end), Some(i)) = (end_exclusive, key_index(&k)) {
                if i >= end {
                    break;
                }
            }
            out.push(self.decode_entry(&k, &v)?);
        }
        Ok(out)
    }

    /// Write entries without waiting for durability; the caller arranges the fsync.
    pub(crate) fn write_entries<I>(&self, entries: I) -> Result<usize, StoreError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOG);
        let mut n = 0;
        for entry in entries {
            batch.put_cf(cf, index_key(entry.index()), codec::encode(&entry));
            n += 1;
        }
        self.db
            .db
            .write(batch)
            .map_err(StoreError::rocks("write log batch"))?;
        Ok(n)
    }

    fn enqueue_flush(&self, callback: IOFlushed<TypeConfig>) -> Result<(), StoreError> {
        let tx = self.flusher.tx.lock().map_err(|_| StoreError::Io {
            op: "enqueue WAL sync",
            path: self.db.path.clone(),
            source: io::Error::other("flusher lock poisoned"),
        })?;
        let closed = || StoreError::Io {
            op: "enqueue WAL sync",
            path: self.db.path.clone(),
            source: io::Error::other("flusher thread has stopped"),
        };
        tx.as_ref()
            .ok_or_else(closed)?
            .send(callback)
            .map_err(|_| closed())
    }
}

fn start_index(range: &impl RangeBounds<u64>) -> u64 {
    match range.start_bound() {
        Bound::Included(x) => *x,
        Bound::Excluded(x) => x.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

fn end_exclusive(range: &impl RangeBounds<u64>) -> Option<u64> {
    match range.end_bound() {
        Bound::Included(x) => Some(x.saturating_add(1)),
        Bound::Excluded(x) => Some(*x),
        Bound::Unbounded => None,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self.read_range(start_index(&range), end_exclusive(&range))?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.get_meta(KEY_VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last = self
            .db
            .db
            .iterator_cf(self.db.cf(CF_LOG), rocksdb::IteratorMode::End)
            .next()
            .transpose()
            .map_err(StoreError::rocks("read last log entry"))?;
        let last_log_id = match last {
            Some((k, v)) => Some(self.decode_entry(&k, &v)?.log_id()),
            None => None,
        };
        // Entries at or below the purge point may linger after a crash (see `verify`).
        let last_log_id = std::cmp::max(last_log_id, last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // Synchronous write: the vote is on disk before we return.
        Ok(self.put_meta(KEY_VOTE, vote, true)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // An optimisation only (faster re-apply after restart); no fsync needed.
        match committed {
            Some(c) => self.put_meta(KEY_COMMITTED, &c, false)?,
            None => self
                .db
                .db
                .delete_cf(self.db.cf(CF_META), KEY_COMMITTED)
                .map_err(StoreError::rocks("clear committed"))?,
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta(KEY_COMMITTED)?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        // The entries must be readable when this returns, so the write happens here; only the
        // fsync is handed to the flusher.
        self.write_entries(entries)?;
        self.enqueue_flush(callback)?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        // Not synced: if the truncation is lost in a crash the stale entries come back, and
        // openraft truncates again; a later synced append makes the delete durable with it.
        self.db
            .db
            .delete_range_cf(self.db.cf(CF_LOG), index_key(from), index_key(u64::MAX))
            .map_err(StoreError::rocks("truncate log"))?;
        // delete_range's end is exclusive.
        self.db
            .db
            .delete_cf(self.db.cf(CF_LOG), index_key(u64::MAX))
            .map_err(StoreError::rocks("truncate log"))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The marker and the range delete go in one batch; entries at or below the marker are
        // ignored by `get_log_state`/`verify`, so partial durability is harmless either way.
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_META), KEY_LAST_PURGED, codec::encode(&log_id));
        batch.delete_range_cf(
            self.db.cf(CF_LOG),
            index_key(0),
            index_key(log_id.index() + 1),
        );
        self.db
            .db
            .write(batch)
            .map_err(StoreError::rocks("purge log"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::type_config::TypeConfigExt;
    use openraft::OptionalSend;

    use super::*;

    fn blank(index: u64) -> Entry {
        Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, index))
    }

    #[tokio::test]
    async fn callbacks_complete_in_append_order_after_a_sync() {
        let td = tempfile::tempdir().unwrap();
        let (mut log, _sm) = crate::open(td.path(), crate::kv::KvApplier).unwrap();
        let mut rxs = Vec::new();
        for i in 1..=500 {
            let (tx, rx) = TypeConfig::oneshot();
            log.append([blank(i)], IOFlushed::signal(tx)).await.unwrap();
            // Written entries are readable before their sync completes.
            assert_eq!(log.try_get_log_entries(i..=i).await.unwrap().len(), 1);
            rxs.push(rx);
        }
        // Once the last append is reported durable, every earlier one must already be.
        let mut last = rxs.pop().unwrap();
        loop {
            match last.try_recv() {
                Ok(r) => break r.unwrap(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    tokio::task::yield_now().await
                }
                Err(e) => panic!("callback dropped: {e}"),
            }
        }
        for (i, mut rx) in rxs.into_iter().enumerate() {
            match rx.try_recv() {
                Ok(r) => r.unwrap(),
                Err(e) => panic!("append {} not complete after a later one: {e}", i + 1),
            }
        }
        let stats = log.flush_stats();
        let syncs = stats.syncs.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            stats.appends.load(std::sync::atomic::Ordering::Relaxed),
            500
        );
        assert!((1..=500).contains(&syncs), "{syncs} syncs");
        fn assert_send<T: OptionalSend>(_: &T) {}
        assert_send(&log);
    }

    #[tokio::test]
    async fn truncate_and_purge() {
        let td = tempfile::tempdir().unwrap();
        let (mut log, sm) = crate::open(td.path(), crate::kv::KvApplier).unwrap();
        log.write_entries((0..=20).map(blank)).unwrap();
        log.truncate_after(Some(openraft::testing::log_id::<TypeConfig>(1, 1, 15)))
            .await
            .unwrap();
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index(),
            15
        );
        log.purge(openraft::testing::log_id::<TypeConfig>(1, 1, 15))
            .await
            .unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.unwrap().index(), 15);
        assert_eq!(
            st.last_log_id.unwrap().index(),
            15,
            "purging everything keeps the last id"
        );
        assert!(log.try_get_log_entries(0..).await.unwrap().is_empty());
        log.truncate_after(None).await.unwrap();
        drop((log, sm));
        let (mut log, _sm) = crate::open(td.path(), crate::kv::KvApplier).unwrap();
        assert_eq!(
            log.get_log_state()
                .await
                .unwrap()
                .last_purged_log_id
                .unwrap()
                .index(),
            15
        );
    }
}
