//! The write transaction an [`crate::Applier`] sees while applying one batch of entries.
//!
//! Reads see the transaction's own earlier writes (including those of earlier entries in the
//! same batch); nothing reaches RocksDB until the whole batch is committed as one `WriteBatch`.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::db::Db;
use crate::error::StoreError;
use crate::Pair;

type Overlay = BTreeMap<(usize, Vec<u8>), Option<Vec<u8>>>;

/// Read-your-writes transaction over the replicated state tables.
pub struct Txn<'a> {
    db: &'a Db,
    /// Writes of entries already applied in this batch.
    committed: Overlay,
    /// Writes of the entry being applied; dropped if the applier rejects the command.
    current: Overlay,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Self {
            db,
            committed: BTreeMap::new(),
            current: BTreeMap::new(),
        }
    }

    fn table(&self, name: &str) -> Result<usize, StoreError> {
        self.db
            .state_tables
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    }

    fn overlay_get(&self, t: usize, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        let k = (t, key.to_vec());
        self.current.get(&k).or_else(|| self.committed.get(&k))
    }

    /// Read one value.
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.table(table)?;
        if let Some(v) = self.overlay_get(t, key) {
            return Ok(v.clone());
        }
        self.db
            .db
            .get_cf(self.db.cf(table), key)
            .map_err(StoreError::rocks("read state"))
    }

    /// Write one value.
    pub fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        let t = self.table(table)?;
        self.current.insert((t, key.to_vec()), Some(value));
        Ok(())
    }

    /// Delete one value (absent keys are fine).
    pub fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StoreError> {
        let t = self.table(table)?;
        self.current.insert((t, key.to_vec()), None);
        Ok(())
    }

    /// All live pairs whose key starts with `prefix`, in key order, at most `limit` of them.
    pub fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        self.scan(table, prefix, |k| k.starts_with(prefix), limit)
    }

    /// All live pairs with `from <= key < until`, in key order, at most `limit` of them.
    pub fn scan_range(
        &self,
        table: &str,
        from: &[u8],
        until: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        self.scan(table, from, |k| k < until, limit)
    }

    fn scan(
        &self,
        table: &str,
        from: &[u8],
        within: impl Fn(&[u8]) -> bool,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let t = self.table(table)?;
        // Merge the disk view with both overlays; overlay entries win.
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mode = rocksdb::IteratorMode::From(from, rocksdb::Direction::Forward);
        // The overlays can delete disk keys, so read past `limit` by as many as they hold: the
        // first `limit` live keys are then all among what was read.
        let want = limit.saturating_add(self.committed.len() + self.current.len());
        for item in self.db.db.iterator_cf(self.db.cf(table), mode) {
            if merged.len() >= want {
                break;
            }
            let (k, v) = item.map_err(StoreError::rocks("scan state"))?;
            if !within(&k) {
                break;
            }
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        for overlay in [&self.committed, &self.current] {
            let lo = Bound::Included((t, from.to_vec()));
            for ((tt, k), v) in overlay.range((lo, Bound::Unbounded)) {
                if *tt != t || !within(k) {
                    break;
                }
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    /// Keep the current entry's writes.
    pub(crate) fn end_entry(&mut self, keep: bool) {
        let current = std::mem::take(&mut self.current);
        if keep {
            self.committed.extend(current);
        }
    }

    /// Move every kept write into `batch`.
    pub(crate) fn into_batch(mut self, batch: &mut rocksdb::WriteBatch) {
        self.end_entry(true);
        for ((t, k), v) in self.committed {
            let cf = self.db.cf(&self.db.state_tables[t]);
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_own_writes_and_rejected_entries_vanish() {
        let td = tempfile::tempdir().unwrap();
        let db = crate::db::open(&td.path().join("db"), &["t", "u"], "test/1").unwrap();
        db.db.put_cf(db.cf("t"), b"p/1", b"disk1").unwrap();
        db.db.put_cf(db.cf("t"), b"p/2", b"disk2").unwrap();
        db.db.put_cf(db.cf("t"), b"q/1", b"other").unwrap();
        let mut txn = Txn::new(&db);
        txn.put("t", b"p/3", b"mem3".to_vec()).unwrap();
        txn.delete("t", b"p/1").unwrap();
        txn.put("u", b"p/9", b"other-table".to_vec()).unwrap();
        txn.end_entry(true);
        assert_eq!(txn.get("t", b"p/1").unwrap(), None);
        let scan = txn.scan_prefix("t", b"p/", 10).unwrap();
        assert_eq!(
            scan,
            vec![
                (b"p/2".to_vec(), b"disk2".to_vec()),
                (b"p/3".to_vec(), b"mem3".to_vec())
            ]
        );
        assert_eq!(txn.scan_prefix("t", b"p/", 1).unwrap().len(), 1);
        let range = txn.scan_range("t", b"p/2", b"p/4", 10).unwrap();
        assert_eq!(
            range.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![b"p/2".to_vec(), b"p/3".to_vec()]
        );

        // An entry whose writes are dropped.
        txn.put("t", b"p/4", b"x".to_vec()).unwrap();
        assert!(txn.get("t", b"p/4").unwrap().is_some());
        txn.end_entry(false);
        assert!(txn.get("t", b"p/4").unwrap().is_none());
        assert!(matches!(
            txn.get("nope", b"k"),
            Err(StoreError::UnknownTable(_))
        ));

        let mut batch = rocksdb::WriteBatch::default();
        txn.into_batch(&mut batch);
        db.db.write(batch).unwrap();
        assert_eq!(db.db.get_cf(db.cf("t"), b"p/1").unwrap(), None);
        assert_eq!(
            db.db.get_cf(db.cf("t"), b"p/3").unwrap(),
            Some(b"mem3".to_vec())
        );
        assert_eq!(db.db.get_cf(db.cf("t"), b"p/4").unwrap(), None);
    }
}
