//! An in-memory [`StateTxn`]: ordered maps, for tests of this and other crates and for tools
//! that apply commands without RocksDB.

use std::collections::BTreeMap;

use crate::Pair;
use crate::StateError;
use crate::StateTxn;

/// Tables as ordered maps.
#[derive(Debug, Default, Clone)]
pub struct MemTxn {
    /// Every table's pairs.
    pub tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl StateTxn for MemTxn {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.tables.get(table).and_then(|t| t.get(key)).cloned())
    }
    fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(key.to_vec(), value);
        Ok(())
    }
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError> {
        if let Some(t) = self.tables.get_mut(table) {
            t.remove(key);
            // An emptied table is the same state as one never written (as in RocksDB), so
            // states compare equal after a write and its undo.
            if t.is_empty() {
                self.tables.remove(table);
            }
        }
        Ok(())
    }
    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StateError> {
        Ok(self
            .tables
            .get(table)
            .map(|t| {
                t.range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
}
