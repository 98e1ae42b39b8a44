//! Generic key-value commands on string keys, used by tests, benchmarks and the chaos history.

use serde::Deserialize;
use serde::Serialize;

use crate::ApiError;
use crate::ApplyCtx;
use crate::StateTxn;

/// The table holding the key-value pairs.
pub const TABLE: &str = "kv";
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value accepted, in bytes (a Raft entry should stay small).
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// A key-value command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
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
    /// Set `key` to `value` only if its current value is `expected` (`None`: absent).
    Cas {
        /// Key.
        key: String,
        /// Required current value.
        expected: Option<Vec<u8>>,
        /// New value.
        value: Vec<u8>,
    },
}

/// What a key-value command answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResult {
    /// Applied; carries the value before the command.
    Applied {
        /// Previous value.
        previous: Option<Vec<u8>>,
    },
    /// A compare-and-swap whose expectation did not hold; nothing changed.
    Mismatch {
        /// The value actually found.
        current: Option<Vec<u8>>,
    },
}

impl KvResult {
    /// Only applied commands keep their writes.
    pub fn keeps_writes(&self) -> bool {
        matches!(self, KvResult::Applied { .. })
    }
}

/// Check a key before it is proposed or applied.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::InvalidArgument("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "key is {} bytes, at most {MAX_KEY_LEN} allowed",
            key.len()
        )));
    }
    Ok(())
}

/// Check a value before it is proposed or applied.
pub fn validate_value(value: &[u8]) -> Result<(), ApiError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "value is {} bytes, at most {MAX_VALUE_LEN} allowed",
            value.len()
        )));
    }
    Ok(())
}

/// The storage key of `key` in [`TABLE`]; the node reads through the same encoding.
pub fn storage_key(key: &str) -> &[u8] {
    key.as_bytes()
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    op: KvOp,
) -> Result<KvResult, ApiError> {
    match op {
        KvOp::Put { key, value } => {
            validate_key(&key)?;
            validate_value(&value)?;
            let previous = txn.get(TABLE, storage_key(&key))?;
            txn.put(TABLE, storage_key(&key), value)?;
            Ok(KvResult::Applied { previous })
        }
        KvOp::Delete { key } => {
            validate_key(&key)?;
            let previous = txn.get(TABLE, storage_key(&key))?;
            txn.delete(TABLE, storage_key(&key))?;
            Ok(KvResult::Applied { previous })
        }
        KvOp::Cas {
            key,
            expected,
            value,
        } => {
            validate_key(&key)?;
            validate_value(&value)?;
            let current = txn.get(TABLE, storage_key(&key))?;
            if current != expected {
                return Ok(KvResult::Mismatch { current });
            }
            txn.put(TABLE, storage_key(&key), value)?;
            Ok(KvResult::Applied { previous: current })
        }
    }
}

/// The key-value family (no API calls: the node's `/kv` routes propose it directly).
pub struct Kv;

impl crate::family::Family for Kv {
    type Op = KvOp;
    type Out = KvResult;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl::internal("kv", &[TABLE]);
    const APPLY: crate::family::ApplyFn<Self> = |txn, ctx, _caller, op| apply(txn, ctx, op);

    fn keeps_writes(out: &KvResult) -> bool {
        out.keeps_writes()
    }
}

impl crate::family::Reply for KvResult {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::IntoCommand;
    use crate::Response;

    fn run(txn: &mut MemTxn, op: KvOp) -> Response {
        crate::apply(txn, &ctx(1), op.command(crate::Caller::admin())).unwrap()
    }

    #[test]
    fn put_delete_cas() {
        let mut t = MemTxn::default();
        let put = |v: &str| KvOp::Put {
            key: "a".into(),
            value: v.as_bytes().to_vec(),
        };
        assert_eq!(
            run(&mut t, put("1")),
            Response::Kv(KvResult::Applied { previous: None })
        );
        assert_eq!(
            run(&mut t, put("2")),
            Response::Kv(KvResult::Applied {
                previous: Some(b"1".to_vec())
            })
        );
        let cas = KvOp::Cas {
            key: "a".into(),
            expected: Some(b"1".to_vec()),
            value: b"3".to_vec(),
        };
        let r = run(&mut t, cas);
        assert_eq!(
            r,
            Response::Kv(KvResult::Mismatch {
                current: Some(b"2".to_vec())
            })
        );
        assert!(!r.keeps_writes());
        assert_eq!(
            run(&mut t, KvOp::Delete { key: "a".into() }),
            Response::Kv(KvResult::Applied {
                previous: Some(b"2".to_vec())
            })
        );
        assert_eq!(t.get(TABLE, b"a").unwrap(), None);
    }

    #[test]
    fn bad_keys_are_refused_not_fatal() {
        let mut t = MemTxn::default();
        let r = run(
            &mut t,
            KvOp::Put {
                key: String::new(),
                value: vec![],
            },
        );
        assert!(matches!(r, Response::Refused(ApiError::InvalidArgument(_))));
        assert!(!r.keeps_writes());
        assert!(validate_key(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
