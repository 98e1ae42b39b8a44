//! Storage of cloud resources: one table per resource family keyed by uuid, each record kept
//! with its owner account, plus a shared secondary index so that lookups by the fields queried
//! most (`name`, `state`, `zoneUuid`, ...) do not scan the table.
//!
//! Index keys are `<table>\0<field>\0<lowercased value>\0<uuid>`; values are lowercased because
//! ZStack's MySQL collation compares text case-insensitively. The index only narrows the
//! candidates: every candidate is still checked by the query engine, so an imperfect key (a
//! value containing `\0`) can cost a false positive, never a wrong answer.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use crate::query;
use crate::query::Query;
use crate::query::QueryOp;
use crate::query::QueryOutput;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::StateTxn;

/// The shared secondary-index table.
pub const INDEX_TABLE: &str = "resource_index";

/// A cloud resource family.
pub trait Resource: Serialize + DeserializeOwned + Clone {
    /// ZStack's type name, e.g. `Zone` (errors say `ZoneVO`).
    const KIND: &'static str;
    /// The table records live in.
    const TABLE: &'static str;
    /// Inventory fields in ZStack's serialisation order (the query schema).
    const FIELDS: &'static [&'static str];
    /// Fields with a secondary index besides `uuid`.
    const INDEXED: &'static [&'static str];
    /// The record's uuid.
    fn uuid(&self) -> &str;
    /// The inventory exactly as ZStack serialises it.
    fn inventory(&self) -> Value;
}

/// What is stored: the owner account, the index keys written for the record (so that a
/// record can be removed without knowing its type, e.g. when its account is deleted) and the
/// record itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored<R> {
    owner: String,
    #[serde(default)]
    keys: Vec<Vec<u8>>,
    record: R,
}

/// Ownership index key: `\0owner\0<account>\0<table>\0<uuid>` (the leading NUL keeps it
/// apart from every table's field keys).
fn owner_key(owner: &str, table: &str, uuid: &str) -> Vec<u8> {
    let mut k = owner_prefix(owner);
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(uuid.as_bytes());
    k
}

fn owner_prefix(owner: &str) -> Vec<u8> {
    let mut k = b"\0owner\0".to_vec();
    k.extend_from_slice(owner.as_bytes());
    k.push(0);
    k
}

fn corrupt<R: Resource>(uuid: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("{} record {uuid}", R::KIND),
        detail: e.to_string(),
    }
}

fn index_keys<R: Resource>(owner: &str, r: &R) -> Vec<Vec<u8>> {
    let inv = r.inventory();
    let mut keys = vec![owner_key(owner, R::TABLE, r.uuid())];
    for f in R::INDEXED {
        let values: Vec<String> = match inv.get(*f) {
            Some(Value::String(s)) => vec![s.to_ascii_lowercase()],
            Some(Value::Number(n)) => vec![n.to_string()],
            Some(Value::Bool(b)) => vec![b.to_string()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str())
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => vec![],
        };
        for v in values {
            keys.push(index_key(R::TABLE, f, &v, Some(r.uuid())));
        }
    }
    keys
}

fn index_key(table: &str, field: &str, value: &str, uuid: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(table.len() + field.len() + value.len() + 36);
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(field.as_bytes());
    k.push(0);
    k.extend(value.bytes().map(|b| if b == 0 { 1 } else { b }));
    k.push(0);
    if let Some(u) = uuid {
        k.extend_from_slice(u.as_bytes());
    }
    k
}

/// The map of a JSON object (an empty map for anything else): lets inventories be built from a
/// `json!({..})` literal without unwrapping.
pub fn object(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Load a record and its owner.
pub fn load<R: Resource>(txn: &impl StateTxn, uuid: &str) -> Result<Option<(String, R)>, ApiError> {
    match txn.get(R::TABLE, uuid.as_bytes())? {
        None => Ok(None),
        Some(raw) => {
            let s: Stored<R> = serde_json::from_slice(&raw).map_err(|e| corrupt::<R>(uuid, e))?;
            Ok(Some((s.owner, s.record)))
        }
    }
}

/// Load a record that must exist (ZStack's `SYS.1003` otherwise).
pub fn require<R: Resource>(txn: &impl StateTxn, uuid: &str) -> Result<(String, R), ApiError> {
    load(txn, uuid)?.ok_or_else(|| not_found::<R>(uuid))
}

/// ZStack's not-found refusal for a resource.
pub fn not_found<R: Resource>(uuid: &str) -> ApiError {
    ApiError::Refused(Refusal::new(
        Code::ResourceNotFound,
        format!(
            "invalid field[uuid], resource[uuid:{uuid}, type:{}VO] not found",
            R::KIND
        ),
    ))
}

/// The index keys stored with a record, read without knowing its type.
fn stored_keys(
    txn: &impl StateTxn,
    table: &str,
    uuid: &str,
) -> Result<Option<Vec<Vec<u8>>>, ApiError> {
    match txn.get(table, uuid.as_bytes())? {
        None => Ok(None),
        Some(raw) => {
            let s: Stored<serde::de::IgnoredAny> =
                serde_json::from_slice(&raw).map_err(|e| ApiError::Corrupt {
                    what: format!("{table} record {uuid}"),
                    detail: e.to_string(),
                })?;
            Ok(Some(s.keys))
        }
    }
}

/// Store a record (new or changed), keeping the index in step.
pub fn save<R: Resource>(txn: &mut impl StateTxn, owner: &str, r: &R) -> Result<(), ApiError> {
    for k in stored_keys(txn, R::TABLE, r.uuid())?.unwrap_or_default() {
        txn.delete(INDEX_TABLE, &k)?;
    }
    let keys = index_keys(owner, r);
    for k in &keys {
        txn.put(INDEX_TABLE, k, Vec::new())?;
    }
    let raw = serde_json::to_vec(&Stored {
        owner: owner.to_string(),
        keys,
        record: r.clone(),
    })
    .map_err(|e| corrupt::<R>(r.uuid(), e))?;
    txn.put(R::TABLE, r.uuid().as_bytes(), raw)?;
    Ok(())
}

/// Delete a record of any family by table and uuid, with its index entries; true if it existed.
pub fn remove_raw(txn: &mut impl StateTxn, table: &str, uuid: &str) -> Result<bool, ApiError> {
    let Some(keys) = stored_keys(txn, table, uuid)? else {
        return Ok(false);
    };
    for k in keys {
        txn.delete(INDEX_TABLE, &k)?;
    }
    txn.delete(table, uuid.as_bytes())?;
    Ok(true)
}

/// Delete a record and its index entries; returns it if it existed.
pub fn remove<R: Resource>(txn: &mut impl StateTxn, uuid: &str) -> Result<Option<R>, ApiError> {
    let Some((_, old)) = load::<R>(txn, uuid)? else {
        return Ok(None);
    };
    remove_raw(txn, R::TABLE, uuid)?;
    Ok(Some(old))
}

/// `(table, uuid)` of every record `owner` owns, in table then uuid order.
pub fn owned_by(txn: &impl StateTxn, owner: &str) -> Result<Vec<(String, String)>, ApiError> {
    let prefix = owner_prefix(owner);
    Ok(txn
        .scan_prefix(INDEX_TABLE, &prefix, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| {
            let rest = &k[prefix.len()..];
            let at = rest.iter().position(|b| *b == 0)?;
            Some((
                String::from_utf8_lossy(&rest[..at]).into_owned(),
                String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
            ))
        })
        .collect())
}

/// Every record with its owner, in uuid order.
pub fn list<R: Resource>(txn: &impl StateTxn) -> Result<Vec<(String, R)>, ApiError> {
    txn.scan_prefix(R::TABLE, b"", usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            let s: Stored<R> = serde_json::from_slice(&v)
                .map_err(|e| corrupt::<R>(&String::from_utf8_lossy(&k), e))?;
            Ok((s.owner, s.record))
        })
        .collect()
}

/// Uuids of records whose indexed `field` equals `value` (case-insensitively).
pub fn uuids_where<R: Resource>(
    txn: &impl StateTxn,
    field: &str,
    value: &str,
) -> Result<Vec<String>, ApiError> {
    let prefix = index_key(R::TABLE, field, &value.to_ascii_lowercase(), None);
    Ok(txn
        .scan_prefix(INDEX_TABLE, &prefix, usize::MAX)?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
        .collect())
}

/// Records whose indexed `field` equals `value`.
pub fn find<R: Resource>(
    txn: &impl StateTxn,
    field: &str,
    value: &str,
) -> Result<Vec<(String, R)>, ApiError> {
    let mut out = Vec::new();
    for u in uuids_where::<R>(txn, field, value)? {
        if let Some(r) = load::<R>(txn, &u)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Index keys (or key prefixes) whose entries name every record a condition can hold for, when
/// the index can answer it: `=`/`in` with textual literals (see [`query::eq_is_textual`]) and
/// `like` with a literal prefix (`'vm-12%'`: a prefix range of the index). `None` otherwise.
fn index_prefixes<R: Resource>(c: &query::Condition) -> Option<Vec<Vec<u8>>> {
    if !R::INDEXED.contains(&c.name.as_str()) {
        return None;
    }
    let v = c.value.as_deref()?;
    match c.op {
        QueryOp::Eq | QueryOp::In => {
            let values: Vec<&str> = if c.op == QueryOp::Eq {
                vec![v]
            } else {
                v.split(',').collect()
            };
            if !values.iter().all(|v| query::eq_is_textual(v)) {
                return None;
            }
            Some(
                values
                    .into_iter()
                    .map(|v| index_key(R::TABLE, &c.name, &v.to_ascii_lowercase(), None))
                    .collect(),
            )
        }
        QueryOp::Like => {
            let p = query::like_prefix(v)?.to_ascii_lowercase();
            let mut k = index_key(R::TABLE, &c.name, &p, None);
            k.pop(); // no terminator: every value that starts with the prefix
            Some(vec![k])
        }
        _ => None,
    }
}

/// Uuids under `prefixes` in the index, at most `cap` entries read (`None` if more).
fn index_uuids(
    txn: &impl StateTxn,
    prefixes: &[Vec<u8>],
    cap: usize,
) -> Result<Option<Vec<String>>, ApiError> {
    let mut out = Vec::new();
    for p in prefixes {
        let want = cap.saturating_sub(out.len()).saturating_add(1);
        for (k, _) in txn.scan_prefix(INDEX_TABLE, p, want)? {
            // The uuid follows the value's terminator (values never contain NUL).
            let at = k.iter().rposition(|b| *b == 0).unwrap_or(0);
            out.push(String::from_utf8_lossy(&k[at + 1..]).into_owned());
        }
        if out.len() > cap {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// Candidate records for a query, in uuid order: the named records for `uuid = / in`, else the
/// entries of the most selective usable index condition (counted with growing caps, so a
/// condition matching most of the table costs no more than the best one), else the whole table.
/// Every candidate is still checked against every condition; the result never depends on the
/// access path (property-tested below).
fn candidates<R: Resource>(txn: &impl StateTxn, q: &Query) -> Result<Vec<(String, R)>, ApiError> {
    let mut options = Vec::new();
    for c in &q.conditions {
        if c.name == "uuid" && matches!(c.op, QueryOp::Eq | QueryOp::In) {
            let Some(v) = c.value.as_deref() else {
                continue;
            };
            let values: Vec<&str> = if c.op == QueryOp::Eq {
                vec![v]
            } else {
                v.split(',').collect()
            };
            if !values.iter().all(|v| query::eq_is_textual(v)) {
                continue;
            }
            // uuids are stored lowercase; MySQL would match any case.
            let mut uuids: Vec<String> = values.iter().map(|v| v.to_ascii_lowercase()).collect();
            uuids.sort();
            uuids.dedup();
            return load_all(txn, uuids);
        }
        if let Some(p) = index_prefixes::<R>(c) {
            options.push(p);
        }
    }
    let mut cap = 64usize;
    while !options.is_empty() {
        let mut best: Option<Vec<String>> = None;
        for p in &options {
            let limit = best.as_ref().map_or(cap, |b| b.len());
            if let Some(u) = index_uuids(txn, p, limit)? {
                if best.as_ref().is_none_or(|b| u.len() < b.len()) {
                    best = Some(u);
                }
            }
        }
        if let Some(mut uuids) = best {
            uuids.sort();
            uuids.dedup();
            return load_all(txn, uuids);
        }
        if cap == usize::MAX {
            break;
        }
        cap = cap.saturating_mul(32);
    }
    list(txn)
}

fn load_all<R: Resource>(
    txn: &impl StateTxn,
    uuids: Vec<String>,
) -> Result<Vec<(String, R)>, ApiError> {
    let mut out = Vec::with_capacity(uuids.len());
    for u in uuids {
        if let Some(r) = load::<R>(txn, &u)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Run a query over one resource family, showing only records `visible` says the caller may
/// see (by owner account).
pub fn query<R: Resource>(
    txn: &impl StateTxn,
    q: &Query,
    visible: impl Fn(&str) -> bool,
) -> Result<QueryOutput, ApiError> {
    query_filtered::<R>(txn, q, |owner, _| visible(owner), |_, _| Ok(()))
}

/// A query over the records `keep` accepts (given owner and record), each inventory passed
/// through `decorate` (to embed what lives in other tables). Conditions on `__systemTag__` /
/// `__userTag__` are evaluated against the record's tags as ZStack does: a positive operator
/// holds when some tag matches, a negative one (`!=`, `not in`, `not like`) when none does,
/// `is null` when the record has no tag of that kind.
pub fn query_filtered<R: Resource>(
    txn: &impl StateTxn,
    q: &Query,
    keep: impl Fn(&str, &R) -> bool,
    decorate: impl FnMut(&R, &mut Value) -> Result<(), ApiError>,
) -> Result<QueryOutput, ApiError> {
    query_via(txn, q, keep, decorate, true)
}

/// [`query_filtered`], with the indexes or (`use_index` false) over the whole table.
fn query_via<R: Resource>(
    txn: &impl StateTxn,
    q: &Query,
    keep: impl Fn(&str, &R) -> bool,
    mut decorate: impl FnMut(&R, &mut Value) -> Result<(), ApiError>,
    use_index: bool,
) -> Result<QueryOutput, ApiError> {
    query::validate(q, R::FIELDS)?;
    let (tag_conds, rest): (Vec<_>, Vec<_>) = q
        .conditions
        .iter()
        .cloned()
        .partition(|c| query::TAG_FIELDS.contains(&c.name.as_str()));
    let mut plain = q.clone();
    plain.conditions = rest;
    let mut rows = Vec::new();
    let found = if use_index {
        candidates::<R>(txn, &plain)?
    } else {
        list(txn)?
    };
    for (owner, r) in found {
        if !keep(&owner, &r) {
            continue;
        }
        if !tag_conds.is_empty() && !tags_match(txn, r.uuid(), &tag_conds)? {
            continue;
        }
        let mut inv = r.inventory();
        decorate(&r, &mut inv)?;
        rows.push(inv);
    }
    Ok(query::run(&plain, R::FIELDS, rows)?)
}

fn tags_match(
    txn: &impl StateTxn,
    uuid: &str,
    conds: &[query::Condition],
) -> Result<bool, ApiError> {
    for c in conds {
        let system = c.name == query::TAG_FIELDS[0];
        let tags = crate::tag::tags_of(txn, uuid, system)?;
        let row = serde_json::json!({ "t": tags });
        let (op, negate) = match c.op {
            QueryOp::NotEq => (QueryOp::Eq, true),
            QueryOp::NotIn => (QueryOp::In, true),
            QueryOp::NotLike => (QueryOp::Like, true),
            QueryOp::IsNull => (QueryOp::IsNotNull, true),
            op => (op, false),
        };
        let probe = query::Condition {
            name: "t".into(),
            op,
            value: c.value.clone(),
        };
        let hit = query::matches(&row, &probe);
        if hit == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Load a record the caller may act on: `SYS.1003` when absent, `ID.1002` when it belongs to
/// another account (the admin may act on everything).
pub fn require_visible<R: Resource>(
    txn: &impl StateTxn,
    caller: &crate::Caller,
    uuid: &str,
) -> Result<(String, R), ApiError> {
    let (owner, r) = require::<R>(txn, uuid)?;
    if !caller.can_see(&owner) {
        return Err(ApiError::Refused(Refusal::new(
            Code::PermissionDenied,
            format!(
                "permission denied: the account[uuid:{}] does not own the resource[uuid:{uuid}, type:{}VO]",
                caller.account_uuid,
                R::KIND
            ),
        )));
    }
    Ok((owner, r))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use serde_json::Map;

    use super::*;
    use crate::testing::MemTxn;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        uuid: String,
        name: String,
        state: String,
    }

    impl Resource for Thing {
        const KIND: &'static str = "Thing";
        const TABLE: &'static str = "thing";
        const FIELDS: &'static [&'static str] = &["uuid", "name", "state"];
        const INDEXED: &'static [&'static str] = &["name", "state"];
        fn uuid(&self) -> &str {
            &self.uuid
        }
        fn inventory(&self) -> Value {
            json!({"uuid": self.uuid, "name": self.name, "state": self.state})
        }
    }

    fn thing(i: u32, state: &str) -> Thing {
        Thing {
            uuid: format!("{i:032x}"),
            name: format!("Thing-{i}"),
            state: state.into(),
        }
    }

    fn q(conds: Value) -> Query {
        let mut m = Map::new();
        m.insert("conditions".into(), conds);
        query::parse_query("APIQueryThingMsg", &m).unwrap()
    }

    #[test]
    fn index_follows_updates_and_deletes() {
        let mut t = MemTxn::default();
        for i in 0..50 {
            save(
                &mut t,
                "acct",
                &thing(i, if i % 2 == 0 { "Enabled" } else { "Disabled" }),
            )
            .unwrap();
        }
        assert_eq!(
            uuids_where::<Thing>(&t, "state", "enabled").unwrap().len(),
            25
        );
        assert_eq!(
            uuids_where::<Thing>(&t, "name", "THING-7").unwrap(),
            vec![format!("{:032x}", 7)]
        );
        let mut changed = thing(7, "Enabled");
        changed.name = "renamed".into();
        save(&mut t, "acct", &changed).unwrap();
        assert!(uuids_where::<Thing>(&t, "name", "Thing-7")
            .unwrap()
            .is_empty());
        assert_eq!(
            uuids_where::<Thing>(&t, "state", "Enabled").unwrap().len(),
            26
        );
        assert_eq!(
            remove::<Thing>(&mut t, &changed.uuid).unwrap(),
            Some(changed.clone())
        );
        assert!(uuids_where::<Thing>(&t, "name", "renamed")
            .unwrap()
            .is_empty());
        assert_eq!(list::<Thing>(&t).unwrap().len(), 49);
        assert_eq!(owned_by(&t, "acct").unwrap().len(), 49);
        assert!(remove_raw(&mut t, "thing", &format!("{:032x}", 3)).unwrap());
        assert_eq!(owned_by(&t, "acct").unwrap().len(), 48);
        assert!(uuids_where::<Thing>(&t, "name", "Thing-3")
            .unwrap()
            .is_empty());
        assert!(matches!(
            require::<Thing>(&t, &changed.uuid),
            Err(ApiError::Refused(Refusal {
                code: Code::ResourceNotFound,
                ..
            }))
        ));
    }

    #[test]
    fn queries_use_index_and_respect_visibility() {
        let mut t = MemTxn::default();
        for i in 0..10 {
            save(&mut t, if i < 5 { "a" } else { "b" }, &thing(i, "Enabled")).unwrap();
        }
        let all = |_: &str| true;
        let out = query::<Thing>(
            &t,
            &q(json!([{"name":"name","op":"=","value":"thing-3"}])),
            all,
        )
        .unwrap();
        assert_eq!(out.inventories.unwrap().len(), 1);
        let out = query::<Thing>(
            &t,
            &q(json!([{"name":"uuid","op":"in","value":format!("{:032x},{:032x}", 1, 8)}])),
            all,
        )
        .unwrap();
        assert_eq!(out.inventories.unwrap().len(), 2);
        let only_a = |o: &str| o == "a";
        let out = query::<Thing>(
            &t,
            &q(json!([{"name":"state","op":"=","value":"Enabled"}])),
            only_a,
        )
        .unwrap();
        assert_eq!(out.inventories.unwrap().len(), 5);
        let out = query::<Thing>(
            &t,
            &q(json!([{"name":"name","op":"like","value":"%-9"}])),
            all,
        )
        .unwrap();
        assert_eq!(out.inventories.unwrap()[0]["name"], "Thing-9");
        assert!(
            query::<Thing>(&t, &q(json!([{"name":"bogus","op":"=","value":"1"}])), all).is_err()
        );
    }

    /// A family with a numeric and a list-valued index besides text ones.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Gadget {
        uuid: String,
        name: String,
        state: String,
        size: u64,
        labels: Vec<String>,
    }

    impl Resource for Gadget {
        const KIND: &'static str = "Gadget";
        const TABLE: &'static str = "gadget";
        const FIELDS: &'static [&'static str] = &["uuid", "name", "state", "size", "labels"];
        const INDEXED: &'static [&'static str] = &["name", "state", "size", "labels"];
        fn uuid(&self) -> &str {
            &self.uuid
        }
        fn inventory(&self) -> Value {
            json!({"uuid": self.uuid, "name": self.name, "state": self.state,
                   "size": self.size, "labels": self.labels})
        }
    }

    #[test]
    fn index_answers_like_prefixes_and_keeps_uuid_order() {
        let mut t = MemTxn::default();
        for (i, name) in ["abc", "ABD", "ab", "b", "1", "a_c"].iter().enumerate() {
            let g = Gadget {
                uuid: format!("{:032x}", 0xa0 + i),
                name: name.to_string(),
                state: "Enabled".into(),
                size: i as u64,
                labels: vec![],
            };
            save(&mut t, "a", &g).unwrap();
        }
        let names = |conds: Value, use_index: bool| -> Vec<String> {
            let out =
                query_via::<Gadget>(&t, &q(conds), |_, _| true, |_, _| Ok(()), use_index).unwrap();
            out.inventories
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect()
        };
        for (conds, want) in [
            (
                json!([{"name":"name","op":"like","value":"aB%"}]),
                vec!["abc", "ABD", "ab"],
            ),
            (
                json!([{"name":"name","op":"like","value":"a\\_%"}]),
                vec!["a_c"],
            ),
            (json!([{"name":"name","op":"=","value":"1.0"}]), vec!["1"]),
            (
                json!([{"name":"state","op":"=","value":"enabled"},
                    {"name":"name","op":"like","value":"ab_"}]),
                vec!["abc", "ABD"],
            ),
            (
                json!([{"name":"uuid","op":"in",
                     "value":format!("{:032x},{:032x},{:032x}", 0xa3, 0xa0, 0xa3)}]),
                vec!["abc", "b"],
            ),
        ] {
            assert_eq!(names(conds.clone(), true), want, "{conds}");
            assert_eq!(names(conds.clone(), false), want, "{conds}");
        }
    }

    mod index_vs_scan {
        use proptest::prelude::*;

        use super::*;

        /// Short texts over an alphabet that collides often and includes LIKE wildcards,
        /// escapes, case, NUL, non-ASCII, and texts that read as numbers or dates.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                6 => "[abAB]{0,4}",
                4 => "[aAbB1%_\\\\. \u{0}éÉ-]{0,4}",
                1 => prop_oneof![
                    Just("1"), Just("01"), Just("1.0"), Just("1e0"), Just(" 1"), Just("-0"),
                    Just("Nov 25, 2026 11:45:00 AM"), Just("Nov 25, 2026 11:45:00 am"),
                ]
                .prop_map(String::from),
            ]
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop_oneof![
                text(),
                (text(), text()).prop_map(|(a, b)| format!("{a}%{b}")),
                text().prop_map(|a| format!("{a}%")),
                text().prop_map(|a| format!("%{a}%")),
            ]
        }

        fn uuid_of(i: u8) -> String {
            // Small numbers give all-digit uuids (numeric literals), larger ones hex letters.
            if i.is_multiple_of(2) {
                format!("{:032x}", i)
            } else {
                format!("{:032x}", 0xabcd_0000_u128 + i as u128)
            }
        }

        /// Values of the stored rows, to aim conditions at what exists.
        fn seen(rows: &[Row]) -> Vec<String> {
            let mut v = vec!["x".to_string()];
            for (i, name, state, size, labels, _) in rows {
                v.extend([uuid_of(*i), name.clone(), state.clone(), size.to_string()]);
                v.extend(labels.iter().cloned());
            }
            v
        }

        fn condition(seen: Vec<String>) -> impl Strategy<Value = query::Condition> {
            let field = prop_oneof![
                Just("uuid"),
                Just("name"),
                Just("state"),
                Just("size"),
                Just("labels")
            ];
            let op = prop_oneof![
                3 => Just(QueryOp::Eq),
                2 => Just(QueryOp::In),
                3 => Just(QueryOp::Like),
                1 => Just(QueryOp::NotLike),
                1 => Just(QueryOp::NotEq),
                1 => Just(QueryOp::Ge),
            ];
            let pick = proptest::sample::select(seen);
            let value = prop_oneof![
                pick.clone(),
                (
                    pick.clone(),
                    0usize..4,
                    prop_oneof![Just(""), Just("%"), Just("_%")]
                )
                    .prop_map(|(v, n, tail)| {
                        let head: String = v.chars().take(n).collect();
                        format!("{head}{tail}")
                    }),
                (pick.clone(), pick).prop_map(|(a, b)| format!("{a},{b}")),
                text(),
                pattern(),
                (0u8..12).prop_map(uuid_of),
                (0u8..12).prop_map(|i| uuid_of(i).to_ascii_uppercase()),
                (0u8..4).prop_map(|i| i.to_string()),
                (text(), text()).prop_map(|(a, b)| format!("{a},{b}")),
            ];
            (field, op, value).prop_map(|(f, op, v)| query::Condition {
                name: f.to_string(),
                op,
                value: Some(v),
            })
        }

        type Row = (u8, String, String, u64, Vec<String>, bool);

        fn gadget() -> impl Strategy<Value = Row> {
            (
                0u8..12,
                text(),
                prop_oneof![
                    Just("Enabled".to_string()),
                    Just("disabled".to_string()),
                    text()
                ],
                0u64..4,
                proptest::collection::vec(text(), 0..3),
                any::<bool>(),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn indexed_answers_equal_full_scan_answers(
                (rows, conds) in proptest::collection::vec(gadget(), 0..16).prop_flat_map(|rows| {
                    let conds = proptest::collection::vec(condition(seen(&rows)), 1..4);
                    (Just(rows), conds)
                }),
                sort in prop_oneof![Just(None), Just(Some("name")), Just(Some("size"))],
                desc in any::<bool>(),
                start in 0usize..3,
                limit in 1usize..20,
                only_a in any::<bool>(),
            ) {
                let mut t = MemTxn::default();
                for (i, name, state, size, labels, in_a) in rows {
                    let g = Gadget { uuid: uuid_of(i), name, state, size, labels };
                    save(&mut t, if in_a { "a" } else { "b" }, &g).unwrap();
                }
                let q = Query {
                    conditions: conds,
                    limit,
                    start,
                    reply_with_count: true,
                    sort_by: sort.map(String::from),
                    sort_desc: desc,
                    ..Query::default()
                };
                let keep = |o: &str, _: &Gadget| !only_a || o == "a";
                let indexed = query_via::<Gadget>(&t, &q, keep, |_, _| Ok(()), true);
                let scanned = query_via::<Gadget>(&t, &q, keep, |_, _| Ok(()), false);
                prop_assert_eq!(
                    format!("{:?}", indexed),
                    format!("{:?}", scanned),
                    "query {:?}", q
                );
            }
        }
    }
}
