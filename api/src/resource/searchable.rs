//! The web console's search (`name like '%x%'`) without reading the index per query: the
//! index entries of a searched field are kept in memory and reused while the table is
//! unchanged.
//!
//! Unchanged is decided by the state itself: each table keeps a digest of its content,
//! `\0gen\0<table>` = XOR over its records of hash(uuid, stored bytes), updated in the same
//! transaction as every write (a write and its undo leave the state as it was). A cached copy
//! is keyed by the digest it was read at, so it is used only where the table holds exactly
//! what it was read from — whichever state it is (tests run many in one process, and
//! replicas of one state share copies). The digest is read before and after the entries,
//! and a copy is kept only if it did not move. The copy only names
//! candidates: the engine still checks every candidate record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use super::INDEX_TABLE;
use crate::query;
use crate::ApiError;
use crate::StateTxn;

/// A table's content digest: two FNV-1a lanes. Not a security boundary (only one state lives in a
/// production process); chosen because it is fixed across builds, unlike std's hasher.
type Generation = [u8; 16];

fn gen_key(table: &str) -> Vec<u8> {
    let mut k = b"\0gen\0".to_vec();
    k.extend_from_slice(table.as_bytes());
    k
}

fn generation(txn: &dyn StateTxn, table: &str) -> Result<Generation, ApiError> {
    Ok(txn
        .get(INDEX_TABLE, &gen_key(table))?
        .and_then(|v| Generation::try_from(v.as_slice()).ok())
        .unwrap_or_default())
}

fn fnv(mut h: u64, parts: &[&[u8]]) -> u64 {
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn digest(uuid: &str, raw: &[u8]) -> Generation {
    let parts: [&[u8]; 2] = [uuid.as_bytes(), raw];
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325, &parts).to_be_bytes());
    out[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142, &parts).to_be_bytes());
    out
}

/// Record in `table`'s digest that record `uuid` went from `old` to `new` stored bytes
/// (`None`: absent).
pub(crate) fn changed(
    txn: &mut dyn StateTxn,
    table: &str,
    uuid: &str,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<(), ApiError> {
    let mut g = generation(txn, table)?;
    for raw in [old, new].into_iter().flatten() {
        for (a, b) in g.iter_mut().zip(digest(uuid, raw)) {
            *a ^= b;
        }
    }
    if g == Generation::default() {
        txn.delete(INDEX_TABLE, &gen_key(table))?;
    } else {
        txn.put(INDEX_TABLE, &gen_key(table), g.to_vec())?;
    }
    Ok(())
}

/// One field's index entries: (lowercased value, uuid), in index order.
type Entries = Arc<Vec<(String, String)>>;

type Copies = Mutex<HashMap<(String, String), (Generation, Entries)>>;

fn copies() -> &'static Copies {
    static COPIES: OnceLock<Copies> = OnceLock::new();
    COPIES.get_or_init(Default::default)
}

/// The index entries of `table`'s `field` as they are now.
fn entries(txn: &dyn StateTxn, table: &str, field: &str) -> Result<Entries, ApiError> {
    let g = generation(txn, table)?;
    // No digest: the table is empty, or holds only records of a build before digests;
    // nothing tells two such states apart, so nothing is cached.
    let cacheable = g != Generation::default();
    let key = (table.to_string(), field.to_string());
    if let (true, Ok(c)) = (cacheable, copies().lock()) {
        if let Some((at, e)) = c.get(&key) {
            if *at == g {
                return Ok(e.clone());
            }
        }
    }
    let prefix = super::index_key(table, field, "", None);
    let prefix = &prefix[..prefix.len() - 1];
    let mut out = Vec::new();
    for (k, _) in txn.scan_prefix(INDEX_TABLE, prefix, usize::MAX)? {
        let rest = &k[prefix.len()..];
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            continue;
        };
        out.push((
            String::from_utf8_lossy(&rest[..end]).into_owned(),
            String::from_utf8_lossy(&rest[end + 1..]).into_owned(),
        ));
    }
    let e: Entries = Arc::new(out);
    // A write applied during the scan may be in what was read: keep the copy only if the
    // digest did not move meanwhile.
    let settled = generation(txn, table)? == g;
    if let (true, true, Ok(mut c)) = (cacheable, settled, copies().lock()) {
        c.insert(key, (g, e.clone()));
    }
    Ok(e)
}

/// How a `like` pattern is tested against lowercased index values: `%text%` (the search box)
/// as a substring test, anything else by the engine's matcher.
enum Matcher<'a> {
    Contains(String),
    Like(&'a str),
}

impl<'a> Matcher<'a> {
    fn new(pattern: &'a str) -> Self {
        let inner = pattern
            .strip_prefix('%')
            .and_then(|p| p.strip_suffix('%'))
            .filter(|p| !p.contains(['%', '_', '\\']));
        match inner {
            Some(p) => Matcher::Contains(p.to_ascii_lowercase()),
            None => Matcher::Like(pattern),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Contains(p) => value.contains(p.as_str()),
            Matcher::Like(p) => query::like_matches(p, value),
        }
    }
}

/// Uuids of `table` records whose indexed `field` has a value matching `pattern`, sorted and
/// without duplicates.
pub(crate) fn matching(
    txn: &dyn StateTxn,
    table: &str,
    field: &str,
    pattern: &str,
) -> Result<Vec<String>, ApiError> {
    let m = Matcher::new(pattern);
    let mut uuids: Vec<String> = entries(txn, table, field)?
        .iter()
        .filter(|(v, _)| m.matches(v))
        .map(|(_, u)| u.clone())
        .collect();
    uuids.sort();
    uuids.dedup();
    Ok(uuids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_substring_pattern_matches_as_the_engine_does() {
        for (p, v) in [
            ("%m-12%", "vm-123"),
            ("%M-12%", "vm-123"),
            ("%%", ""),
            ("%x%", "vm-123"),
            ("%é%", "é"),
            ("%a_c%", "xabcx"),
            ("a%", "abc"),
        ] {
            assert_eq!(
                Matcher::new(p).matches(v),
                query::like_matches(p, v),
                "{p} on {v}"
            );
        }
    }

    #[test]
    fn the_digest_follows_content_not_history() {
        let mut t = crate::testing::MemTxn::default();
        changed(&mut t, "t", "u", None, Some(b"a")).unwrap();
        let g1 = generation(&t, "t").unwrap();
        changed(&mut t, "t", "u", Some(b"a"), Some(b"b")).unwrap();
        let g2 = generation(&t, "t").unwrap();
        changed(&mut t, "t", "u", Some(b"b"), Some(b"a")).unwrap();
        assert_eq!(generation(&t, "t").unwrap(), g1);
        assert!(g1 != g2 && g1 != Generation::default());
        changed(&mut t, "t", "u", Some(b"a"), None).unwrap();
        // Emptied: no digest key left, as if never written.
        assert!(t.tables.is_empty());
    }
}
