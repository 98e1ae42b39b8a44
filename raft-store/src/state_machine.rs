//! `RaftStateMachine`: applies committed entries to the state tables through an [`Applier`].

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use futures::Stream;
use futures::TryStreamExt;
use openraft::entry::RaftEntry;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::db::Db;
use crate::db::CF_DEDUP;
use crate::db::CF_SM;
use crate::db::KEY_LAST_APPLIED;
use crate::db::KEY_MEMBERSHIP;
use crate::error::StoreError;
use crate::snapshot::SnapshotFile;
use crate::snapshot::SnapshotHeader;
use crate::snapshot::SnapshotReader;
use crate::snapshot::SnapshotSink;
use crate::snapshot::SnapshotWriter;
use crate::txn::Txn;
use crate::types::ApplyOutcome;
use crate::types::LogId;
use crate::types::Proposal;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;
use crate::types::TypeConfig;
use crate::Pair;

/// How long a request id is remembered after its proposal was stamped. A client retrying the
/// same request within this window gets the original answer instead of a second apply.
pub const DEDUP_RETENTION_MS: u64 = 15 * 60 * 1000;
/// Expired dedup records deleted per applied proposal, so expiry never makes one entry slow;
/// above the proposal rate it still keeps up.
const DEDUP_GC_PER_ENTRY: usize = 16;

/// Facts about the entry being applied, identical on every replica.
#[derive(Debug, Clone)]
pub struct ApplyContext {
    /// Log index of the entry.
    pub index: u64,
    /// Term of the leader that proposed it.
    pub term: u64,
    /// Milliseconds stamped by the proposing node.
    pub proposed_at_ms: u64,
    /// The proposal's idempotency key, if any.
    pub request_id: Option<String>,
}

/// The application's deterministic state transition. Everything it reads and writes goes
/// through the [`Txn`]; it must not look at clocks, randomness or anything outside the command.
pub trait Applier: Send + Sync + 'static {
    /// The command type carried (encoded) in [`Proposal::command`].
    type Command: DeserializeOwned + Send;
    /// What a command answers.
    type Response: Serialize + Send;

    /// The state tables (column families) this applier reads and writes.
    fn tables(&self) -> Vec<&'static str>;

    /// How this applier encodes its commands and state; a store written in another format is
    /// refused at open.
    fn format(&self) -> &'static str;

    /// Apply one command. An `Err` is a storage failure and stops the node; a refused command
    /// is an ordinary `Response` for which [`Applier::keep_writes`] returns false.
    fn apply(
        &self,
        txn: &mut Txn<'_>,
        ctx: &ApplyContext,
        cmd: Self::Command,
    ) -> Result<Self::Response, StoreError>;

    /// Whether the writes made while producing `response` are kept. Returning false for a
    /// refused command guarantees it leaves no half-applied state.
    fn keep_writes(&self, _response: &Self::Response) -> bool {
        true
    }
}

/// The whole replicated state, for comparisons in tests and `zsctl` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDump {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembership,
    /// Every table with all its pairs, in table then key order.
    pub tables: Vec<(String, Vec<Pair>)>,
}

struct Shared<A> {
    db: Arc<Db>,
    applier: A,
    snapshot_dir: PathBuf,
    /// Serialises publishing snapshot files (build and install may race).
    publish: Mutex<()>,
    tmp_seq: AtomicU64,
}

/// The state machine store. Cheap to clone (snapshot builders are clones).
pub struct StateMachineStore<A> {
    shared: Arc<Shared<A>>,
}

impl<A> Clone for StateMachineStore<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<A> Debug for StateMachineStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("path", &self.shared.db.path)
            .finish()
    }
}

fn snap_name(meta: &SnapshotMeta) -> String {
    match &meta.last_log_id {
        Some(l) => format!("snap-{:020}.snap", l.index()),
        None => "snap-empty.snap".to_string(),
    }
}

/// Order key of a published snapshot file name: `None` for files that are not snapshots.
fn snap_order(name: &str) -> Option<Option<u64>> {
    let body = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if body == "empty" {
        return Some(None);
    }
    body.parse().ok().map(Some)
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

impl<A: Applier> StateMachineStore<A> {
    pub(crate) fn new(db: Arc<Db>, applier: A, snapshot_dir: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(StoreError::io("create snapshot directory", &snapshot_dir))?;
        // Leftovers of builds or transfers interrupted by a crash.
        for e in std::fs::read_dir(&snapshot_dir)
            .map_err(StoreError::io("list snapshots", &snapshot_dir))?
        {
            let e = e.map_err(StoreError::io("list snapshots", &snapshot_dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if snap_order(&name).is_none() {
                std::fs::remove_file(e.path())
                    .map_err(StoreError::io("remove stale snapshot file", e.path()))?;
            }
        }
        let sm = Self {
            shared: Arc::new(Shared {
                db,
                applier,
                snapshot_dir,
                publish: Mutex::new(()),
                tmp_seq: AtomicU64::new(0),
            }),
        };
        // Refuse to start on undecodable metadata or a damaged current snapshot.
        sm.read_applied()?;
        if let Some(path) = sm.current_snapshot_path()? {
            SnapshotReader::open(&path)?.verify()?;
        }
        Ok(sm)
    }

    fn db(&self) -> &Db {
        &self.shared.db
    }

    /// The applier.
    pub fn applier(&self) -> &A {
        &self.shared.applier
    }

    fn decode_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        raw: Option<Vec<u8>>,
    ) -> Result<Option<T>, StoreError> {
        raw.map(|b| {
            codec::decode(&b).map_err(|e| StoreError::Corrupt {
                path: self.db().path.clone(),
                what: format!("state-machine record {:?}", String::from_utf8_lossy(key)),
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// Last applied log id and membership.
    pub fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let cf = self.db().cf(CF_SM);
        let get = |k: &[u8]| {
            self.db()
                .db
                .get_cf(cf, k)
                .map_err(StoreError::rocks("read sm meta"))
        };
        let applied = self.decode_meta(KEY_LAST_APPLIED, get(KEY_LAST_APPLIED)?)?;
        let membership = self
            .decode_meta(KEY_MEMBERSHIP, get(KEY_MEMBERSHIP)?)?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    /// Read one value of a state table (a local, possibly stale read).
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self
            .db()
            .db
            .cf_handle(table)
            .filter(|_| self.db().state_tables.iter().any(|t| t == table))
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))?;
        self.db()
            .db
            .get_cf(cf, key)
            .map_err(StoreError::rocks("read state"))
    }

    /// Pairs of a state table whose key starts with `prefix`, in key order, at most `limit`,
    /// all from one consistent RocksDB snapshot.
    pub fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        if !self.db().state_tables.iter().any(|t| t == table) {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        let snap = self.db().db.snapshot();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in snap.iterator_cf(self.db().cf(table), mode) {
            let (k, v) = item.map_err(StoreError::rocks("scan state"))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The complete replicated state from one consistent RocksDB snapshot.
    pub fn dump(&self) -> Result<StateDump, StoreError> {
        let db = self.db();
        let snap = db.db.snapshot();
        let get = |k: &[u8]| {
            snap.get_cf(db.cf(CF_SM), k)
                .map_err(StoreError::rocks("read sm meta"))
        };
        let last_applied = self.decode_meta(KEY_LAST_APPLIED, get(KEY_LAST_APPLIED)?)?;
        let membership = self
            .decode_meta(KEY_MEMBERSHIP, get(KEY_MEMBERSHIP)?)?
            .unwrap_or_default();
        let mut tables = Vec::new();
        for t in &db.state_tables {
            let mut rows = Vec::new();
            for item in snap.iterator_cf(db.cf(t), rocksdb::IteratorMode::Start) {
                let (k, v) = item.map_err(StoreError::rocks("scan state"))?;
                rows.push((k.to_vec(), v.to_vec()));
            }
            tables.push((t.clone(), rows));
        }
        Ok(StateDump {
            last_applied,
            membership,
            tables,
        })
    }

    /// Start receiving a snapshot streamed from a peer.
    pub fn begin_receive(&self) -> Result<SnapshotSink, StoreError> {
        SnapshotSink::create(self.tmp_path("incoming"))
    }

    fn tmp_path(&self, kind: &str) -> PathBuf {
        let n = self.shared.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.shared
            .snapshot_dir
            .join(format!("{kind}-{}-{n}.tmp", std::process::id()))
    }

    fn current_snapshot_path(&self) -> Result<Option<PathBuf>, StoreError> {
        let dir = &self.shared.snapshot_dir;
        let mut best: Option<(Option<u64>, PathBuf)> = None;
        for e in std::fs::read_dir(dir).map_err(StoreError::io("list snapshots", dir))? {
            let e = e.map_err(StoreError::io("list snapshots", dir))?;
            if let Some(order) = snap_order(&e.file_name().to_string_lossy()) {
                if best.as_ref().is_none_or(|(b, _)| order > *b) {
                    best = Some((order, e.path()));
                }
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// Rename a complete, fsynced file into place as the snapshot for `meta` and delete older
    /// ones. Returns the published path.
    fn publish(&self, tmp: &Path, meta: &SnapshotMeta) -> Result<PathBuf, StoreError> {
        let dir = &self.shared.snapshot_dir;
        let _guard = self
            .shared
            .publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let target = dir.join(snap_name(meta));
        if tmp != target {
            std::fs::rename(tmp, &target).map_err(StoreError::io("publish snapshot", &target))?;
        }
        fsync_dir(dir)?;
        let mine = meta.last_log_id.as_ref().map(|l| l.index());
        for e in std::fs::read_dir(dir).map_err(StoreError::io("list snapshots", dir))? {
            let e = e.map_err(StoreError::io("list snapshots", dir))?;
            if let Some(order) = snap_order(&e.file_name().to_string_lossy()) {
                if order < mine {
                    std::fs::remove_file(e.path())
                        .map_err(StoreError::io("remove old snapshot", e.path()))?;
                }
            }
        }
        Ok(target)
    }

    fn build(&self) -> Result<(SnapshotMeta, SnapshotFile), StoreError> {
        let db = self.db();
        let snap = db.db.snapshot();
        let get = |k: &[u8]| {
            snap.get_cf(db.cf(CF_SM), k)
                .map_err(StoreError::rocks("read sm meta"))
        };
        let meta = SnapshotMeta {
            last_log_id: self.decode_meta(KEY_LAST_APPLIED, get(KEY_LAST_APPLIED)?)?,
            last_membership: self
                .decode_meta(KEY_MEMBERSHIP, get(KEY_MEMBERSHIP)?)?
                .unwrap_or_default(),
        };
        let tmp = self.tmp_path("build");
        let header = SnapshotHeader {
            meta: meta.clone(),
            tables: db.state_tables.clone(),
        };
        let mut w = SnapshotWriter::create(&tmp, &header)?;
        for (i, t) in db.state_tables.iter().enumerate() {
            for item in snap.iterator_cf(db.cf(t), rocksdb::IteratorMode::Start) {
                let (k, v) = item.map_err(StoreError::rocks("scan state for snapshot"))?;
                w.record(i as u16, &k, &v)?;
            }
        }
        w.finish()?;
        let path = self.publish(&tmp, &meta)?;
        tracing::info!(path = %path.display(), last_log_id = ?meta.last_log_id, "built snapshot");
        Ok((meta, SnapshotFile::new(path)))
    }

    fn install(&self, meta: &SnapshotMeta, file: SnapshotFile) -> Result<(), StoreError> {
        // 1. The whole file must be intact and describe what openraft says it describes.
        let (header, records) = SnapshotReader::open(file.path())?.verify()?;
        if &header.meta != meta {
            return Err(StoreError::Corrupt {
                path: file.path().to_path_buf(),
                what: "snapshot header".into(),
                detail: format!("describes {:?}, expected {:?}", header.meta, meta),
            });
        }
        let db = self.db();
        let mut cf_of = Vec::with_capacity(header.tables.len());
        for t in &header.tables {
            if !db.state_tables.contains(t) {
                return Err(StoreError::Corrupt {
                    path: file.path().to_path_buf(),
                    what: "snapshot header".into(),
                    detail: format!("table {t:?} is unknown to this build"),
                });
            }
            cf_of.push(db.cf(t));
        }

        // 2. Publish the file first: if we crash before the state is replaced, openraft finds a
        //    snapshot newer than the applied state at start-up and installs it again.
        let dir = &self.shared.snapshot_dir;
        let local = if file.path().parent() == Some(dir.as_path()) {
            file.path().to_path_buf()
        } else {
            let tmp = self.tmp_path("copy");
            std::fs::copy(file.path(), &tmp).map_err(StoreError::io("copy snapshot", &tmp))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("fsync snapshot", &tmp))?;
            tmp
        };
        let published = self.publish(&local, meta)?;

        // 3. Replace the state in one synced batch: readers see old state or new, never a mix.
        let mut batch = rocksdb::WriteBatch::default();
        for t in &db.state_tables {
            let cf = db.cf(t);
            let last = db
                .db
                .iterator_cf(cf, rocksdb::IteratorMode::End)
                .next()
                .transpose()
                .map_err(StoreError::rocks("find table end"))?;
            if let Some((k, _)) = last {
                let mut end = k.to_vec();
                end.push(0);
                batch.delete_range_cf(cf, Vec::new(), end);
            }
        }
        let mut reader = SnapshotReader::open(&published)?;
        while let Some(r) = reader.next_record()? {
            batch.put_cf(cf_of[r.table as usize], r.key, r.value);
        }
        let sm = db.cf(CF_SM);
        match &meta.last_log_id {
            Some(l) => batch.put_cf(sm, KEY_LAST_APPLIED, codec::encode(l)),
            None => batch.delete_cf(sm, KEY_LAST_APPLIED),
        }
        batch.put_cf(sm, KEY_MEMBERSHIP, codec::encode(&meta.last_membership));
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        db.db
            .write_opt(batch, &w)
            .map_err(StoreError::rocks("install snapshot"))?;
        tracing::info!(records, last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    fn apply_proposal(
        &self,
        txn: &mut Txn<'_>,
        log_id: &LogId,
        p: Proposal,
    ) -> Result<ApplyOutcome, StoreError> {
        let index = log_id.index();
        self.expire_dedup(txn, p.proposed_at_ms)?;
        if let Some(rid) = &p.request_id {
            let key = [b"r/".as_slice(), rid.as_bytes()].concat();
            if let Some(raw) = txn.get(CF_DEDUP, &key)? {
                let (orig_index, _ts, response): (u64, u64, Vec<u8>) = codec::decode(&raw)
                    .map_err(|e| StoreError::Corrupt {
                        path: self.db().path.clone(),
                        what: format!("dedup record of request {rid:?}"),
                        detail: e.to_string(),
                    })?;
                return Ok(ApplyOutcome {
                    index: orig_index,
                    duplicate: true,
                    response,
                });
            }
        }
        let cmd: A::Command = codec::decode(&p.command).map_err(|e| StoreError::Corrupt {
            path: self.db().path.clone(),
            what: format!("command in log entry at index {index}"),
            detail: e.to_string(),
        })?;
        let ctx = ApplyContext {
            index,
            term: log_id.committed_leader_id().term,
            proposed_at_ms: p.proposed_at_ms,
            request_id: p.request_id.clone(),
        };
        let response = self.shared.applier.apply(txn, &ctx, cmd)?;
        let keep = self.shared.applier.keep_writes(&response);
        txn.end_entry(keep);
        let response = codec::encode(&response);
        if let Some(rid) = &p.request_id {
            let r_key = [b"r/".as_slice(), rid.as_bytes()].concat();
            let t_key = [
                b"t/".as_slice(),
                &p.proposed_at_ms.to_be_bytes(),
                rid.as_bytes(),
            ]
            .concat();
            txn.put(
                CF_DEDUP,
                &r_key,
                codec::encode(&(index, p.proposed_at_ms, &response)),
            )?;
            txn.put(CF_DEDUP, &t_key, Vec::new())?;
            txn.end_entry(true);
        }
        Ok(ApplyOutcome {
            index,
            duplicate: false,
            response,
        })
    }

    /// Forget request ids stamped more than [`DEDUP_RETENTION_MS`] before `now_ms`.
    ///
    /// Runs before every proposal, not once per batch: what a duplicate finds must depend only
    /// on the entries before it, never on where openraft happened to cut the apply batches, or
    /// replicas that batched differently would disagree about applying a retried request.
    fn expire_dedup(&self, txn: &mut Txn<'_>, now_ms: u64) -> Result<(), StoreError> {
        let cutoff = now_ms.saturating_sub(DEDUP_RETENTION_MS);
        let until = [b"t/".as_slice(), &cutoff.to_be_bytes()].concat();
        for (k, _) in txn.scan_range(CF_DEDUP, b"t/", &until, DEDUP_GC_PER_ENTRY)? {
            txn.delete(CF_DEDUP, &k)?;
            txn.delete(CF_DEDUP, &[b"r/".as_slice(), &k[10..]].concat())?;
        }
        txn.end_entry(true);
        Ok(())
    }
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<A> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let this = self.clone();
        let (meta, snapshot) = tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(io::Error::other)??;
        Ok(openraft::Snapshot { meta, snapshot })
    }
}

impl<A: Applier> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok(self.read_applied()?)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let db = self.shared.db.clone();
        let mut txn = Txn::new(&db);
        let mut last_applied = None;
        let mut membership = None;
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let outcome = match entry.payload {
                EntryPayload::Blank => ApplyOutcome {
                    index: log_id.index(),
                    duplicate: false,
                    response: Vec::new(),
                },
                EntryPayload::Normal(p) => self.apply_proposal(&mut txn, &log_id, p)?,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    ApplyOutcome {
                        index: log_id.index(),
                        duplicate: false,
                        response: Vec::new(),
                    }
                }
            };
            last_applied = Some(log_id);
            if let Some(r) = responder {
                replies.push((r, outcome));
            }
        }
        let Some(last_applied) = last_applied else {
            return Ok(());
        };
        let mut batch = rocksdb::WriteBatch::default();
        txn.into_batch(&mut batch);
        let sm = db.cf(CF_SM);
        batch.put_cf(sm, KEY_LAST_APPLIED, codec::encode(&last_applied));
        if let Some(m) = &membership {
            batch.put_cf(sm, KEY_MEMBERSHIP, codec::encode(m));
        }
        // Not synced: every applied entry is already durable in the log (same WAL, earlier
        // position), so a crash can only roll the state back to a point openraft re-applies from.
        db.db
            .write(batch)
            .map_err(StoreError::rocks("write apply batch"))?;
        for (r, outcome) in replies {
            r.send(outcome);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let this = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || this.install(&meta, snapshot))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        let _guard = self
            .shared
            .publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(path) = self.current_snapshot_path()? else {
            return Ok(None);
        };
        let header = SnapshotReader::open(&path)?.header;
        Ok(Some(openraft::Snapshot {
            meta: header.meta,
            snapshot: SnapshotFile::new(path),
        }))
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::kv::KvApplier;
    use crate::kv::KvCommand;
    use crate::kv::KvResponse;
    use crate::kv::KV_TABLE;
    use crate::types::Entry;

    fn entry(index: u64, rid: Option<&str>, ts: u64, cmd: KvCommand) -> Entry {
        Entry::new_normal(
            openraft::testing::log_id::<TypeConfig>(1, 1, index),
            Proposal::new(rid.map(String::from), ts, &cmd),
        )
    }

    fn put(key: &str, value: &str) -> KvCommand {
        KvCommand::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    async fn apply_all(sm: &mut StateMachineStore<KvApplier>, entries: Vec<Entry>) {
        sm.apply(stream::iter(entries.into_iter().map(|e| Ok((e, None)))))
            .await
            .unwrap();
    }

    fn dedup_keys(sm: &StateMachineStore<KvApplier>) -> Vec<Vec<u8>> {
        sm.scan_prefix(CF_DEDUP, b"", usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[tokio::test]
    async fn duplicate_request_id_is_applied_once() {
        let td = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open(td.path(), KvApplier).unwrap();
        // Same request id twice in one batch and once more in a later batch: one apply.
        apply_all(
            &mut sm,
            vec![
                entry(1, Some("r1"), 10, put("k", "first")),
                entry(2, Some("r1"), 10, put("k", "second")),
            ],
        )
        .await;
        apply_all(&mut sm, vec![entry(3, Some("r1"), 11, put("k", "third"))]).await;
        assert_eq!(sm.get(KV_TABLE, b"k").unwrap(), Some(b"first".to_vec()));
        assert_eq!(sm.read_applied().unwrap().0.unwrap().index(), 3);
    }

    #[tokio::test]
    async fn refused_command_leaves_no_writes() {
        let td = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open(td.path(), KvApplier).unwrap();
        apply_all(&mut sm, vec![entry(1, None, 1, put("k", "v"))]).await;
        let cas = KvCommand::CompareAndSwap {
            key: "k".into(),
            expected: Some(b"other".to_vec()),
            value: b"new".to_vec(),
        };
        apply_all(&mut sm, vec![entry(2, Some("cas"), 2, cas)]).await;
        assert_eq!(sm.get(KV_TABLE, b"k").unwrap(), Some(b"v".to_vec()));
        // The refusal itself is remembered, so a retry gets the same answer.
        let raw = sm.get(CF_DEDUP, b"r/cas").unwrap().unwrap();
        let (_, _, resp): (u64, u64, Vec<u8>) = codec::decode(&raw).unwrap();
        assert_eq!(
            codec::decode::<KvResponse>(&resp).unwrap(),
            KvResponse::Mismatch {
                current: Some(b"v".to_vec())
            }
        );
    }

    #[tokio::test]
    async fn dedup_records_expire_after_retention() {
        let td = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open(td.path(), KvApplier).unwrap();
        apply_all(&mut sm, vec![entry(1, Some("old"), 1_000, put("a", "1"))]).await;
        apply_all(&mut sm, vec![entry(2, Some("mid"), 2_000, put("b", "1"))]).await;
        assert_eq!(dedup_keys(&sm).len(), 4);
        // A proposal stamped just past the retention of "old" but not of "mid".
        let now = 1_000 + DEDUP_RETENTION_MS + 1;
        apply_all(&mut sm, vec![entry(3, Some("new"), now, put("c", "1"))]).await;
        let keys = dedup_keys(&sm);
        assert!(!keys.contains(&b"r/old".to_vec()), "expired record kept");
        assert!(keys.contains(&b"r/mid".to_vec()) && keys.contains(&b"r/new".to_vec()));
        assert_eq!(keys.len(), 4);
    }

    #[tokio::test]
    async fn snapshot_names_order_by_index() {
        assert!(
            snap_order("snap-00000000000000000010.snap")
                > snap_order("snap-00000000000000000009.snap")
        );
        assert!(snap_order("snap-00000000000000000000.snap") > snap_order("snap-empty.snap"));
        assert_eq!(snap_order("build-1-2.tmp"), None);
    }
}
