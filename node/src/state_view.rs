//! A read-only [`api::StateTxn`] over the local state machine, for queries and session checks
//! (after a linearizable barrier unless the caller asked for a stale read).

use api::Pair;
use api::StateError;
use api::StateTxn;

use crate::node::Sm;

/// Local reads of the replicated state.
pub struct StateView<'a>(pub &'a Sm);

impl StateTxn for StateView<'_> {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0
            .get(table, key)
            .map_err(|e| StateError(e.to_string()))
    }

    fn put(&mut self, table: &str, _key: &[u8], _value: Vec<u8>) -> Result<(), StateError> {
        Err(StateError(format!(
            "write to {table} through a read-only view"
        )))
    }

    fn delete(&mut self, table: &str, _key: &[u8]) -> Result<(), StateError> {
        Err(StateError(format!(
            "delete in {table} through a read-only view"
        )))
    }

    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StateError> {
        self.0
            .scan_prefix(table, prefix, limit)
            .map_err(|e| StateError(e.to_string()))
    }
}
