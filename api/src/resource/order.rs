//! What lets a query without conditions skip decoding the table: per-field order keys (a page
//! sorted by `createDate` is a range read of the index) and per-owner record counts (a count is
//! one read per account).
//!
//! Order keys sit in the shared index table beside the field index:
//! `\0order\0<table>\0<field>\0a<enc>\0<uuid>` ascending and `...\0d<enc>\0<uuid>` descending,
//! where the encoding sorts bytewise exactly as the query engine's comparator does for
//! the value: no value first (ascending) or last (descending), then Java dates by instant, ties
//! in uuid order (the engine's sort is stable over records in uuid order). A value the
//! encoding cannot order like the engine (text that is not a date, a number) gets a
//! `...\0x\0<uuid>` marker instead, and while any marker exists the field is sorted by the engine.
//!
//! Counts are `\0count\0<table>\0<owner>` → big-endian u64, kept by `save` and `remove_raw`,
//! the only writers of resource tables.

use serde_json::Value;

use super::INDEX_TABLE;
use crate::wire::date::parse_java_date;
use crate::ApiError;
use crate::StateTxn;

/// Which way an order key reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Ascending,
    Descending,
}

fn field_prefix(table: &str, field: &str) -> Vec<u8> {
    let mut k = b"\0order\0".to_vec();
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(field.as_bytes());
    k.push(0);
    k
}

/// The prefix every order key of `field` in one direction starts with.
pub(crate) fn direction_prefix(table: &str, field: &str, d: Direction) -> Vec<u8> {
    let mut k = field_prefix(table, field);
    k.push(match d {
        Direction::Ascending => b'a',
        Direction::Descending => b'd',
    });
    k
}

fn unordered_prefix(table: &str, field: &str) -> Vec<u8> {
    let mut k = field_prefix(table, field);
    k.extend_from_slice(b"x\0");
    k
}

/// The order keys of one record's `field` value (`None`: the record has no such value).
pub(crate) fn keys(table: &str, field: &str, value: Option<&Value>, uuid: &str) -> Vec<Vec<u8>> {
    let value = value.filter(|v| !v.is_null());
    let instant = match value {
        None => None,
        Some(Value::String(s)) => match parse_java_date(s) {
            Some(t) => Some(t),
            None => return vec![marker(table, field, uuid)],
        },
        Some(_) => return vec![marker(table, field, uuid)],
    };
    let mut asc = direction_prefix(table, field, Direction::Ascending);
    let mut desc = direction_prefix(table, field, Direction::Descending);
    match instant {
        // No value is the engine's least key: first ascending, last descending.
        None => {
            asc.push(b'0');
            desc.push(b'Z');
        }
        Some(t) => {
            asc.push(b'D');
            asc.extend_from_slice(format!("{t:016x}").as_bytes());
            desc.push(b'D');
            desc.extend_from_slice(format!("{:016x}", u64::MAX - t).as_bytes());
        }
    }
    for k in [&mut asc, &mut desc] {
        k.push(0);
        k.extend_from_slice(uuid.as_bytes());
    }
    vec![asc, desc]
}

fn marker(table: &str, field: &str, uuid: &str) -> Vec<u8> {
    let mut k = unordered_prefix(table, field);
    k.extend_from_slice(uuid.as_bytes());
    k
}

/// Whether every record's `field` has an order key (no marker).
pub(crate) fn fully_ordered(
    txn: &dyn StateTxn,
    table: &str,
    field: &str,
) -> Result<bool, ApiError> {
    Ok(txn
        .scan_prefix(INDEX_TABLE, &unordered_prefix(table, field), 1)?
        .is_empty())
}

/// The uuid an order key ends with.
pub(crate) fn uuid_of(key: &[u8]) -> String {
    let at = key.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&key[at..]).into_owned()
}

fn count_prefix(table: &str) -> Vec<u8> {
    let mut k = b"\0count\0".to_vec();
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k
}

/// Add `delta` to the number of `table` records `owner` owns.
pub(crate) fn count_add(
    txn: &mut dyn StateTxn,
    table: &str,
    owner: &str,
    delta: i64,
) -> Result<(), ApiError> {
    let mut key = count_prefix(table);
    key.extend_from_slice(owner.as_bytes());
    let now = txn
        .get(INDEX_TABLE, &key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes);
    let next = now.saturating_add_signed(delta);
    if next == 0 {
        txn.delete(INDEX_TABLE, &key)?;
    } else {
        txn.put(INDEX_TABLE, &key, next.to_be_bytes().to_vec())?;
    }
    Ok(())
}

/// The number of `table` records per owner, for every owner holding one.
pub(crate) fn counts(txn: &dyn StateTxn, table: &str) -> Result<Vec<(String, u64)>, ApiError> {
    let prefix = count_prefix(table);
    Ok(txn
        .scan_prefix(INDEX_TABLE, &prefix, usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            let n = <[u8; 8]>::try_from(v.as_slice()).map_or(0, u64::from_be_bytes);
            (String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), n)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_sort_like_the_engine_in_both_directions() {
        let early = json!("Jan 2, 2026 3:04:05 AM");
        let late = json!("Dec 3, 2026 5:10:00 PM");
        let k = |v: Option<&Value>, u: &str| keys("T", "createDate", v, u);
        let (none, e1, e2, l) = (
            k(None, "u3"),
            k(Some(&early), "u2"),
            k(Some(&early), "u4"),
            k(Some(&late), "u1"),
        );
        // Ascending: no value, then by instant, ties by uuid.
        let mut asc = vec![&l[0], &e2[0], &none[0], &e1[0]];
        asc.sort();
        assert_eq!(asc, vec![&none[0], &e1[0], &e2[0], &l[0]]);
        // Descending: latest first, ties still by uuid, no value last.
        let mut desc = vec![&none[1], &e2[1], &l[1], &e1[1]];
        desc.sort();
        assert_eq!(desc, vec![&l[1], &e1[1], &e2[1], &none[1]]);
        assert_eq!(uuid_of(&e2[1]), "u4");
        assert_eq!(k(Some(&json!("not a date")), "u5").len(), 1);
        assert_eq!(k(Some(&json!(7)), "u6").len(), 1);
    }
}
