//! A write buffer over a [`StateTxn`]: reads see the buffered writes, and nothing reaches the
//! underlying transaction unless [`Staged::commit`] is called. Lets one command run an inner
//! command (a job step) and keep only the outer bookkeeping when the inner one is refused.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::Pair;
use crate::StateError;
use crate::StateTxn;

/// What the buffer sits on: a transaction it may commit into, or a view it only reads.
enum Base<'a> {
    Txn(&'a mut dyn StateTxn),
    View(&'a dyn StateTxn),
}

/// Buffered writes over `inner`.
pub struct Staged<'a> {
    // Dynamic so that a job applying a command through a `Staged` does not instantiate
    // `apply` for ever deeper `Staged<Staged<...>>` types.
    inner: Base<'a>,
    writes: BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Staged<'a> {
    /// Start buffering.
    pub fn new(inner: &'a mut dyn StateTxn) -> Self {
        Self {
            inner: Base::Txn(inner),
            writes: BTreeMap::new(),
        }
    }

    /// A throw-away overlay of a read-only view: a dry run writes here and is dropped.
    pub fn over(view: &'a dyn StateTxn) -> Self {
        Self {
            inner: Base::View(view),
            writes: BTreeMap::new(),
        }
    }

    fn base(&self) -> &dyn StateTxn {
        match &self.inner {
            Base::Txn(t) => &**t,
            Base::View(v) => *v,
        }
    }

    /// Apply the buffered writes to the underlying transaction.
    pub fn commit(self) -> Result<(), StateError> {
        let Base::Txn(inner) = self.inner else {
            return Err(StateError(
                "a dry-run overlay of a read-only view cannot be committed".into(),
            ));
        };
        for ((table, key), v) in self.writes {
            match v {
                Some(v) => inner.put(&table, &key, v)?,
                None => inner.delete(&table, &key)?,
            }
        }
        Ok(())
    }
}

impl StateTxn for Staged<'_> {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(&(table.to_string(), key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.base().get(table, key),
        }
    }

    fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
        self.writes
            .insert((table.to_string(), key.to_vec()), Some(value));
        Ok(())
    }

    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError> {
        self.writes.insert((table.to_string(), key.to_vec()), None);
        Ok(())
    }

    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StateError> {
        // Read enough from below to survive buffered deletes, then overlay the buffer.
        let buffered = self.writes.len();
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .base()
            .scan_prefix(table, prefix, limit.saturating_add(buffered))?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        let lo = Bound::Included((table.to_string(), prefix.to_vec()));
        for ((t, k), v) in self.writes.range((lo, Bound::Unbounded)) {
            if t != table || !k.starts_with(prefix) {
                break;
            }
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemTxn;

    #[test]
    fn buffered_until_commit() {
        let mut t = MemTxn::default();
        t.put("a", b"k1", b"v1".to_vec()).unwrap();
        t.put("a", b"k2", b"v2".to_vec()).unwrap();
        {
            let mut s = Staged::new(&mut t);
            s.put("a", b"k3", b"v3".to_vec()).unwrap();
            s.delete("a", b"k1").unwrap();
            assert_eq!(s.get("a", b"k1").unwrap(), None);
            let keys: Vec<_> = s
                .scan_prefix("a", b"k", 10)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(keys, vec![b"k2".to_vec(), b"k3".to_vec()]);
            // dropped without commit
        }
        assert_eq!(t.get("a", b"k1").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(t.get("a", b"k3").unwrap(), None);
        let mut s = Staged::new(&mut t);
        s.put("a", b"k3", b"v3".to_vec()).unwrap();
        s.commit().unwrap();
        assert_eq!(t.get("a", b"k3").unwrap(), Some(b"v3".to_vec()));
    }
}
