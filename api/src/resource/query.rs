//! Queries over one resource kind: the candidates come from the primary key or the most
//! selective usable index condition, and every candidate is still checked by the engine.

use serde_json::Value;

use crate::query;
use crate::query::Query;
use crate::query::QueryOp;
use crate::query::QueryOutput;
use crate::resource::fields;
use crate::resource::full_inventory;
use crate::resource::index_key;
use crate::resource::inventory_fields;
use crate::resource::joined_fields;
use crate::resource::list;
use crate::resource::load;
use crate::resource::Resource;
use crate::resource::INDEX_TABLE;
use crate::ApiError;
use crate::StateTxn;

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
    txn: &dyn StateTxn,
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
fn candidates<R: Resource>(txn: &dyn StateTxn, q: &Query) -> Result<Vec<(String, R)>, ApiError> {
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
    // `like` without a literal prefix (`'%x%'`) cannot be a range of the index, but the index
    // entries of its field are far cheaper to read than the records: they are filtered by the
    // pattern, and only records with a matching value are loaded. It wins over an `=`/prefix
    // condition that still matches thousands of records. Patterns holding NUL or U+0001 are
    // left to the scan (the index writes a value's NUL as U+0001).
    let filter = q.conditions.iter().find(|c| {
        c.op == QueryOp::Like
            && R::INDEXED.contains(&c.name.as_str())
            && c.value.as_deref().is_some_and(|p| {
                query::like_prefix(p).is_none_or(|x| x.is_empty()) && !p.contains(['\0', '\u{1}'])
            })
    });
    let mut cap = 64usize;
    while !options.is_empty() {
        if filter.is_some() && cap > 2048 {
            break;
        }
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
    if let Some(c) = filter {
        let field = index_key(R::TABLE, &c.name, "", None);
        let field = &field[..field.len() - 1];
        let pattern = c.value.as_deref().unwrap_or_default();
        let mut uuids = Vec::new();
        for (k, _) in txn.scan_prefix(INDEX_TABLE, field, usize::MAX)? {
            let rest = &k[field.len()..];
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let value = String::from_utf8_lossy(&rest[..end]);
            if query::like_matches(pattern, &value) {
                uuids.push(String::from_utf8_lossy(&rest[end + 1..]).into_owned());
            }
        }
        uuids.sort();
        uuids.dedup();
        return load_all(txn, uuids);
    }
    list(txn)
}

fn load_all<R: Resource>(
    txn: &dyn StateTxn,
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
    txn: &dyn StateTxn,
    q: &Query,
    visible: impl Fn(&str) -> bool,
) -> Result<QueryOutput, ApiError> {
    query_filtered::<R>(txn, q, |owner, _| visible(owner))
}

/// A query over the records `keep` accepts (given owner and record). Conditions on `__systemTag__` /
/// `__userTag__` are evaluated against the record's tags as ZStack does: a positive operator
/// holds when some tag matches, a negative one (`!=`, `not in`, `not like`) when none does,
/// `is null` when the record has no tag of that kind.
pub fn query_filtered<R: Resource>(
    txn: &dyn StateTxn,
    q: &Query,
    keep: impl Fn(&str, &R) -> bool,
) -> Result<QueryOutput, ApiError> {
    query_via(txn, q, keep, true)
}

/// [`query_filtered`], with the indexes or (`use_index` false) over the whole table.
pub(crate) fn query_via<R: Resource>(
    txn: &dyn StateTxn,
    q: &Query,
    keep: impl Fn(&str, &R) -> bool,
    use_index: bool,
) -> Result<QueryOutput, ApiError> {
    let schema = fields::<R>();
    query::validate(q, &schema)?;
    let (tag_conds, rest): (Vec<_>, Vec<_>) = q
        .conditions
        .iter()
        .cloned()
        .partition(|c| query::TAG_FIELDS.contains(&c.name.as_str()));
    let mut plain = q.clone();
    plain.conditions = rest;
    let found = if use_index {
        candidates::<R>(txn, &plain)?
    } else {
        list(txn)?
    };
    // Rendering every field of every candidate, and joining child records into it, is most
    // of a large query's cost: when no condition and no sort key names a joined field, each
    // row holds only the fields the conditions and the sort read, and only the page's rows are
    // rendered in full.
    let joined = joined_fields::<R>();
    let names_joined = |name: &str| {
        let head = name.split('.').next().unwrap_or(name);
        joined.contains(&head)
    };
    let lazy = !plain.conditions.iter().any(|c| names_joined(&c.name))
        && !plain.sort_by.as_deref().is_some_and(names_joined);
    let needed: Vec<&str> = plain
        .conditions
        .iter()
        .map(|c| c.name.split('.').next().unwrap_or(&c.name))
        .chain(plain.sort_by.as_deref())
        .collect();
    let mut records = Vec::new();
    let mut rows = Vec::new();
    for (owner, r) in found {
        if !keep(&owner, &r) {
            continue;
        }
        if !tag_conds.is_empty() && !tags_match(txn, r.uuid(), &tag_conds)? {
            continue;
        }
        rows.push(if lazy {
            inventory_fields(&r, &needed)
        } else {
            full_inventory(txn, &r)?
        });
        records.push(r);
    }
    if !lazy {
        return Ok(query::run(&plain, &schema, rows)?);
    }
    let view: Vec<&Value> = rows.iter().collect();
    let (total, page) = query::select(&plain, &schema, &view)?;
    if plain.count {
        return Ok(QueryOutput {
            inventories: None,
            total: Some(total),
        });
    }
    let mut out = Vec::with_capacity(page.len());
    for i in page {
        out.push(query::shape(&plain, full_inventory(txn, &records[i])?));
    }
    Ok(QueryOutput {
        inventories: Some(out),
        total: plain.reply_with_count.then_some(total),
    })
}

fn tags_match(
    txn: &dyn StateTxn,
    uuid: &str,
    conds: &[query::Condition],
) -> Result<bool, ApiError> {
    for c in conds {
        let system = c.name == query::TAG_FIELDS[0];
        let tags = super::tags::texts(txn, uuid, system)?;
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
