//! A small key-value command set: the applier used by raft-store's own tests and benchmarks,
//! and by the node until the cloud model's `api` crate plugs in its own.

use serde::Deserialize;
use serde::Serialize;

use crate::error::StoreError;
use crate::state_machine::Applier;
use crate::state_machine::ApplyContext;
use crate::txn::Txn;

/// The table the KV applier keeps its pairs in.
pub const KV_TABLE: &str = "kv";

/// A key-value command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: String,
    },
    /// Set several keys at once (all or nothing).
    PutMany {
        /// Pairs to set.
        pairs: Vec<(String, Vec<u8>)>,
    },
    /// Set `key` to `value` only if its current value is `expected` (`None`: absent).
    CompareAndSwap {
        /// Key.
        key: String,
        /// Required current value.
        expected: Option<Vec<u8>>,
        /// New value.
        value: Vec<u8>,
    },
}

/// What a KV command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// The command was applied at this log index; carries the previous value for single-key ops.
    Applied {
        /// Value before the command (single-key commands).
        previous: Option<Vec<u8>>,
    },
    /// A compare-and-swap whose expectation did not hold; nothing changed.
    Mismatch {
        /// The value actually found.
        current: Option<Vec<u8>>,
    },
}

/// The KV applier.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvApplier;

impl Applier for KvApplier {
    type Command = KvCommand;
    type Response = KvResponse;

    fn tables(&self) -> Vec<&'static str> {
        vec![KV_TABLE]
    }

    fn format(&self) -> &'static str {
        "raft-store-kv/1"
    }

    fn apply(
        &self,
        txn: &mut Txn<'_>,
        _ctx: &ApplyContext,
        cmd: KvCommand,
    ) -> Result<KvResponse, StoreError> {
        Ok(match cmd {
            KvCommand::Put { key, value } => {
                let previous = txn.get(KV_TABLE, key.as_bytes())?;
                txn.put(KV_TABLE, key.as_bytes(), value)?;
                KvResponse::Applied { previous }
            }
            KvCommand::Delete { key } => {
                let previous = txn.get(KV_TABLE, key.as_bytes())?;
                txn.delete(KV_TABLE, key.as_bytes())?;
                KvResponse::Applied { previous }
            }
            KvCommand::PutMany { pairs } => {
                for (k, v) in pairs {
                    txn.put(KV_TABLE, k.as_bytes(), v)?;
                }
                KvResponse::Applied { previous: None }
            }
            KvCommand::CompareAndSwap {
                key,
                expected,
                value,
            } => {
                let current = txn.get(KV_TABLE, key.as_bytes())?;
                if current != expected {
                    KvResponse::Mismatch { current }
                } else {
                    txn.put(KV_TABLE, key.as_bytes(), value)?;
                    KvResponse::Applied { previous: current }
                }
            }
        })
    }

    fn keep_writes(&self, response: &KvResponse) -> bool {
        matches!(response, KvResponse::Applied { .. })
    }
}
