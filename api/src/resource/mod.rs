//! Storage of cloud resources: one table per resource kind keyed by uuid, each record kept with
//! its owner account, plus a shared secondary index so that lookups by the fields queried most
//! (`name`, `state`, `zoneUuid`, ...) do not scan the table.
//!
//! Index keys are `<table>\0<field>\0<lowercased value>\0<uuid>`; values are lowercased because
//! ZStack's MySQL collation compares text case-insensitively. The index only narrows the
//! candidates: every candidate is still checked by the query engine, so an imperfect key (a
//! value containing `\0`) can cost a false positive, never a wrong answer.
//!
//! The indexed fields are also what one family may read of another's records ([`Ref`]): a
//! record is stored with their values, so a lookup by kind and uuid needs no knowledge of the
//! record's type, and families never import each other.

pub mod generic;
mod inventory;
pub mod local_storage;
mod order;
pub mod query;
pub mod relations;
mod searchable;
pub mod tags;

pub use inventory::date;
pub use inventory::fields;
pub use inventory::full_inventory;
pub use inventory::inventory;
pub use inventory::inventory_fields;
pub use inventory::joined_fields;
pub use inventory::render_fields;
pub use inventory::table_fields;
pub use inventory::Field;
pub use inventory::Render;
pub use query::query;
pub use query::query_filtered;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::StateTxn;

/// The shared secondary-index table.
pub const INDEX_TABLE: &str = "resource_index";

/// A cloud resource kind.
pub trait Resource: Serialize + DeserializeOwned + Clone + 'static {
    /// ZStack's type name, e.g. `Zone` (errors say `ZoneVO`).
    const KIND: &'static str;
    /// The table records live in.
    const TABLE: &'static str;
    /// The inventory in ZStack's serialisation order; also the query schema.
    const INVENTORY: &'static [Field<Self>];
    /// Fields with a secondary index besides `uuid`; also what other families may read
    /// through [`lookup`].
    const INDEXED: &'static [&'static str];
    /// Fields kept in sorted order beside the records, so that a page sorted by one of them
    /// reads only the page (see `order.rs`). Every inventory lists `createDate`, the web
    /// console's default sort.
    const ORDERED: &'static [&'static str] = &["createDate"];
    /// The record's uuid.
    fn uuid(&self) -> &str;
}

/// What is stored: the owner account, the index keys written for the record (so that a
/// record can be removed without knowing its type, e.g. when its account is deleted), the
/// values of its indexed fields (what [`Ref`] shows other families) and the record itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored<R> {
    owner: String,
    #[serde(with = "key_text")]
    keys: Vec<Vec<u8>>,
    fields: Vec<(String, String)>,
    record: R,
}

/// What reading a record needs of [`Stored`]: the keys and indexed values are skipped
/// unparsed (they are only needed when the record is rewritten or removed).
#[derive(Deserialize)]
struct StoredRecord<R> {
    owner: String,
    record: R,
}

/// Index keys as JSON strings: they are built from UTF-8 names and NUL separators, and as
/// arrays of numbers (serde's default for bytes) they were most of a record's bytes and of the
/// CPU spent decoding it (the host tracker lists every host each round). Records written as
/// arrays still decode.
mod key_text {
    use serde::de::Deserializer;
    use serde::ser::SerializeSeq;
    use serde::ser::Serializer;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Key {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(keys: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(keys.len()))?;
        for k in keys {
            match std::str::from_utf8(k) {
                Ok(t) => seq.serialize_element(t)?,
                Err(_) => seq.serialize_element(k)?,
            }
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<Key>::deserialize(d)?
            .into_iter()
            .map(|k| match k {
                Key::Text(t) => t.into_bytes(),
                Key::Bytes(b) => b,
            })
            .collect())
    }
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

fn corrupt(kind: &str, uuid: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("{kind} record {uuid}"),
        detail: e.to_string(),
    }
}

/// The indexed fields' values of a record, as text (a list field gives one pair per element).
fn exported<R: Resource>(r: &R) -> Vec<(String, String)> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    let inv = inventory(r);
    let mut out = Vec::new();
    for f in R::INDEXED {
        // `list.field` indexes a field of every element of a list of objects.
        let (head, tail) = match f.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (*f, None),
        };
        let values: Vec<String> = match (inv.get(head), tail) {
            (Some(Value::Array(a)), None) => a
                .iter()
                .filter_map(|v| v.as_str())
                .map(str::to_string)
                .collect(),
            (Some(Value::Array(a)), Some(t)) => a
                .iter()
                .filter_map(|v| v.get(t))
                .filter_map(scalar)
                .collect(),
            (Some(v), None) => scalar(v).into_iter().collect(),
            _ => vec![],
        };
        out.extend(values.into_iter().map(|v| (f.to_string(), v)));
    }
    out
}

pub(crate) fn index_key(table: &str, field: &str, value: &str, uuid: Option<&str>) -> Vec<u8> {
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
pub fn load<R: Resource>(txn: &dyn StateTxn, uuid: &str) -> Result<Option<(String, R)>, ApiError> {
    match txn.get(R::TABLE, uuid.as_bytes())? {
        None => Ok(None),
        Some(raw) => {
            let s: StoredRecord<R> =
                serde_json::from_slice(&raw).map_err(|e| corrupt(R::KIND, uuid, e))?;
            Ok(Some((s.owner, s.record)))
        }
    }
}

/// Load a record that must exist (ZStack's `SYS.1003` otherwise).
pub fn require<R: Resource>(txn: &dyn StateTxn, uuid: &str) -> Result<(String, R), ApiError> {
    load(txn, uuid)?.ok_or_else(|| not_found_kind(R::KIND, uuid))
}

/// ZStack's not-found refusal for a resource.
pub fn not_found<R: Resource>(uuid: &str) -> ApiError {
    not_found_kind(R::KIND, uuid)
}

/// ZStack's not-found refusal for a resource of `kind`.
pub fn not_found_kind(kind: &str, uuid: &str) -> ApiError {
    ApiError::Refused(Refusal::new(
        Code::ResourceNotFound,
        format!("invalid field[uuid], resource[uuid:{uuid}, type:{kind}VO] not found"),
    ))
}

/// ZStack's refusal of a second record with a uuid already taken.
pub fn refuse_duplicate<R: Resource>(txn: &dyn StateTxn, uuid: &str) -> Result<(), ApiError> {
    if txn.get(R::TABLE, uuid.as_bytes())?.is_some() {
        return Err(crate::validate::duplicate_uuid(R::KIND, uuid));
    }
    Ok(())
}

/// Owner, index keys and indexed values of a stored record.
type Head = (String, Vec<Vec<u8>>, Vec<(String, String)>);

fn load_untyped(txn: &dyn StateTxn, table: &str, uuid: &str) -> Result<Option<Head>, ApiError> {
    Ok(load_untyped_raw(txn, table, uuid)?.map(|(h, _)| h))
}

/// [`load_untyped`] with the stored bytes.
fn load_untyped_raw(
    txn: &dyn StateTxn,
    table: &str,
    uuid: &str,
) -> Result<Option<(Head, Vec<u8>)>, ApiError> {
    match txn.get(table, uuid.as_bytes())? {
        None => Ok(None),
        Some(raw) => {
            #[derive(Deserialize)]
            struct Head {
                owner: String,
                #[serde(with = "key_text")]
                keys: Vec<Vec<u8>>,
                fields: Vec<(String, String)>,
            }
            let h: Head = serde_json::from_slice(&raw).map_err(|e| corrupt(table, uuid, e))?;
            Ok(Some(((h.owner, h.keys, h.fields), raw)))
        }
    }
}

/// Another family's record, seen through its indexed fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Its kind, e.g. `Cluster`.
    pub kind: &'static str,
    /// Its uuid.
    pub uuid: String,
    /// The account owning it.
    pub owner: String,
    fields: Vec<(String, String)>,
}

impl Ref {
    /// The value of an indexed field (the first, for a list field).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list field.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `caller` may act on it (`ID.1002` otherwise).
    pub fn check_visible(&self, caller: &crate::Caller) -> Result<(), ApiError> {
        if caller.can_see(&self.owner) {
            Ok(())
        } else {
            Err(permission_denied(caller, self.kind, &self.uuid))
        }
    }
}

/// Look up a record of `kind` (any family's) by uuid.
pub fn lookup(txn: &dyn StateTxn, kind: &'static str, uuid: &str) -> Result<Option<Ref>, ApiError> {
    let table = crate::registry::table_of(kind);
    Ok(
        load_untyped(txn, table, uuid)?.map(|(owner, _, fields)| Ref {
            kind,
            uuid: uuid.to_string(),
            owner,
            fields,
        }),
    )
}

/// [`lookup`] of a record that must exist (`SYS.1003` otherwise).
pub fn require_ref(txn: &dyn StateTxn, kind: &'static str, uuid: &str) -> Result<Ref, ApiError> {
    lookup(txn, kind, uuid)?.ok_or_else(|| not_found_kind(kind, uuid))
}

/// The inventory (as a reply carries it) of the record of `R` with this uuid: a kind's
/// [`crate::family::InventoryFn`].
pub fn stored_inventory<R: Resource>(
    txn: &dyn StateTxn,
    uuid: &str,
) -> Result<Option<Value>, ApiError> {
    Ok(load::<R>(txn, uuid)?.map(|(_, r)| inventory(&r)))
}

/// The inventory of a record of `kind` (any family's), for a kind that declares how its
/// records render ([`crate::family::KindDecl::inventory`]; declaring none is a programming
/// error).
pub fn inventory_of(
    txn: &dyn StateTxn,
    kind: &'static str,
    uuid: &str,
) -> Result<Option<Value>, ApiError> {
    match crate::registry::kind(kind).inventory {
        Some(render) => render(txn, uuid),
        None => panic!("resource kind {kind} declares no inventory rendering"),
    }
}

/// Store a record (new or changed), keeping the index in step.
pub fn save<R: Resource>(txn: &mut dyn StateTxn, owner: &str, r: &R) -> Result<(), ApiError> {
    let old = load_untyped_raw(txn, R::TABLE, r.uuid())?;
    match &old {
        Some(((old_owner, old_keys, _), _)) => {
            for k in old_keys {
                txn.delete(INDEX_TABLE, k)?;
            }
            if old_owner != owner {
                order::count_add(txn, R::TABLE, old_owner, -1)?;
                order::count_add(txn, R::TABLE, owner, 1)?;
            }
        }
        None => order::count_add(txn, R::TABLE, owner, 1)?,
    }
    let fields = exported(r);
    let mut keys = vec![owner_key(owner, R::TABLE, r.uuid())];
    keys.extend(
        fields
            .iter()
            .map(|(f, v)| index_key(R::TABLE, f, &v.to_ascii_lowercase(), Some(r.uuid()))),
    );
    let ordered = inventory_fields(r, R::ORDERED);
    for f in R::ORDERED {
        keys.extend(order::keys(R::TABLE, f, ordered.get(*f), r.uuid()));
    }
    for k in &keys {
        txn.put(INDEX_TABLE, k, Vec::new())?;
    }
    let raw = serde_json::to_vec(&Stored {
        owner: owner.to_string(),
        keys,
        fields,
        record: r.clone(),
    })
    .map_err(|e| corrupt(R::KIND, r.uuid(), e))?;
    let old_raw = old.as_ref().map(|(_, raw)| raw.as_slice());
    searchable::changed(txn, R::TABLE, r.uuid(), old_raw, Some(&raw))?;
    txn.put(R::TABLE, r.uuid().as_bytes(), raw)?;
    Ok(())
}

/// Delete a record of any kind by table and uuid, with its index entries; true if it existed.
pub fn remove_raw(txn: &mut dyn StateTxn, table: &str, uuid: &str) -> Result<bool, ApiError> {
    let Some(((owner, keys, _), raw)) = load_untyped_raw(txn, table, uuid)? else {
        return Ok(false);
    };
    for k in keys {
        txn.delete(INDEX_TABLE, &k)?;
    }
    order::count_add(txn, table, &owner, -1)?;
    searchable::changed(txn, table, uuid, Some(&raw), None)?;
    txn.delete(table, uuid.as_bytes())?;
    Ok(true)
}

/// Delete a record and its index entries; returns it if it existed.
pub fn remove<R: Resource>(txn: &mut dyn StateTxn, uuid: &str) -> Result<Option<R>, ApiError> {
    let Some((_, old)) = load::<R>(txn, uuid)? else {
        return Ok(None);
    };
    remove_raw(txn, R::TABLE, uuid)?;
    Ok(Some(old))
}

/// `(table, uuid)` of every record `owner` owns, in table then uuid order.
pub fn owned_by(txn: &dyn StateTxn, owner: &str) -> Result<Vec<(String, String)>, ApiError> {
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
pub fn list<R: Resource>(txn: &dyn StateTxn) -> Result<Vec<(String, R)>, ApiError> {
    txn.scan_prefix(R::TABLE, b"", usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            let s: StoredRecord<R> = serde_json::from_slice(&v)
                .map_err(|e| corrupt(R::KIND, &String::from_utf8_lossy(&k), e))?;
            Ok((s.owner, s.record))
        })
        .collect()
}

/// Uuids of records in `table` whose indexed `field` equals `value` (case-insensitively).
pub fn uuids_in(
    txn: &dyn StateTxn,
    table: &str,
    field: &str,
    value: &str,
) -> Result<Vec<String>, ApiError> {
    let prefix = index_key(table, field, &value.to_ascii_lowercase(), None);
    Ok(txn
        .scan_prefix(INDEX_TABLE, &prefix, usize::MAX)?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
        .collect())
}

/// Uuids of records whose indexed `field` equals `value` (case-insensitively).
pub fn uuids_where<R: Resource>(
    txn: &dyn StateTxn,
    field: &str,
    value: &str,
) -> Result<Vec<String>, ApiError> {
    uuids_in(txn, R::TABLE, field, value)
}

/// Records of `kind` (any family's) whose indexed `field` equals `value`.
pub fn refs_where(
    txn: &dyn StateTxn,
    kind: &'static str,
    field: &str,
    value: &str,
) -> Result<Vec<Ref>, ApiError> {
    let table = crate::registry::table_of(kind);
    let mut out = Vec::new();
    for u in uuids_in(txn, table, field, value)? {
        if let Some(r) = lookup(txn, kind, &u)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Records whose indexed `field` equals `value`.
pub fn find<R: Resource>(
    txn: &dyn StateTxn,
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

fn permission_denied(caller: &crate::Caller, kind: &str, uuid: &str) -> ApiError {
    ApiError::Refused(Refusal::new(
        Code::PermissionDenied,
        format!(
            "permission denied: the account[uuid:{}] does not own the resource[uuid:{uuid}, type:{kind}VO]",
            caller.account_uuid
        ),
    ))
}

/// Load a record the caller may act on: `SYS.1003` when absent, `ID.1002` when it belongs to
/// another account (the admin may act on everything).
pub fn require_visible<R: Resource>(
    txn: &dyn StateTxn,
    caller: &crate::Caller,
    uuid: &str,
) -> Result<(String, R), ApiError> {
    let (owner, r) = require::<R>(txn, uuid)?;
    if !caller.can_see(&owner) {
        return Err(permission_denied(caller, R::KIND, uuid));
    }
    Ok((owner, r))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use serde_json::Map;

    use super::query::query_via;
    use super::*;
    use crate::query;
    use crate::query::Query;
    use crate::query::QueryOp;
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
        const INVENTORY: &'static [Field<Self>] = &[
            Field::new("uuid", |r| json!(r.uuid)),
            Field::new("name", |r| json!(r.name)),
            Field::new("state", |r| json!(r.state)),
        ];
        const INDEXED: &'static [&'static str] = &["name", "state"];
        fn uuid(&self) -> &str {
            &self.uuid
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
    fn index_keys_are_stored_as_text_and_records_written_as_numbers_still_decode() {
        let mut t = MemTxn::default();
        let a = thing(1, "Enabled");
        save(&mut t, "acct", &a).unwrap();
        let raw = t.get(Thing::TABLE, a.uuid.as_bytes()).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert!(
            v["keys"].as_array().unwrap().iter().all(Value::is_string),
            "{v}"
        );
        // The earlier layout: every key an array of byte values.
        let keys: Vec<Vec<u8>> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().as_bytes().to_vec())
            .collect();
        let mut old = v.clone();
        old["keys"] = json!(keys);
        t.put(
            Thing::TABLE,
            a.uuid.as_bytes(),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert_eq!(load::<Thing>(&t, &a.uuid).unwrap().unwrap().1, a);
        // Rewriting and removing it find the index entries it was written with.
        let b = Thing {
            state: "Disabled".into(),
            ..a.clone()
        };
        save(&mut t, "acct", &b).unwrap();
        assert!(uuids_where::<Thing>(&t, "state", "enabled")
            .unwrap()
            .is_empty());
        assert!(remove_raw(&mut t, Thing::TABLE, &a.uuid).unwrap());
        assert!(uuids_where::<Thing>(&t, "state", "disabled")
            .unwrap()
            .is_empty());
        // Only the table's content digest is left: it never saw the bytes written behind
        // its back, so it cannot return to "empty" (see `searchable.rs`).
        let left = t.scan_prefix(INDEX_TABLE, b"", usize::MAX).unwrap();
        assert!(
            left.iter().all(|(k, _)| k.starts_with(b"\0gen\0")),
            "{left:?}"
        );
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
        const INVENTORY: &'static [Field<Self>] = &[
            Field::new("uuid", |r| json!(r.uuid)),
            Field::new("name", |r| json!(r.name)),
            Field::new("state", |r| json!(r.state)),
            Field::new("size", |r| json!(r.size)),
            Field::new("labels", |r| json!(r.labels)),
        ];
        const INDEXED: &'static [&'static str] = &["name", "state", "size", "labels"];
        fn uuid(&self) -> &str {
            &self.uuid
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
            let out = query_via::<Gadget>(&t, &q(conds), |_, _| true, use_index).unwrap();
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
                let indexed = query_via::<Gadget>(&t, &q, keep, true);
                let scanned = query_via::<Gadget>(&t, &q, keep, false);
                prop_assert_eq!(
                    format!("{:?}", indexed),
                    format!("{:?}", scanned),
                    "query {:?}", q
                );
                // And both equal the plain engine over every full inventory: projected rows
                // and the page rendered last change nothing.
                let full: Vec<Value> = list::<Gadget>(&t)
                    .unwrap()
                    .into_iter()
                    .filter(|(o, g)| keep(o, g))
                    .map(|(_, g)| full_inventory(&t, &g).unwrap())
                    .collect();
                let reference = crate::query::run(&q, &fields::<Gadget>(), full)
                    .map_err(ApiError::from);
                prop_assert_eq!(
                    format!("{:?}", scanned),
                    format!("{:?}", reference),
                    "query {:?}", q
                );
            }
        }
    }
}
