//! Queries over one resource kind: the candidates come from the primary key or the most
//! selective usable index condition, and every candidate is still checked by the engine.

use serde_json::Value;

use crate::query;
use crate::query::Query;
use crate::query::QueryOp;
use crate::query::QueryOutput;
use crate::resource::corrupt;
use crate::resource::fields;
use crate::resource::full_inventory;
use crate::resource::index_key;
use crate::resource::inventory_fields;
use crate::resource::joined_fields;
use crate::resource::list;
use crate::resource::load;
use crate::resource::order;
use crate::resource::order::Direction;
use crate::resource::searchable;
use crate::resource::Resource;
use crate::resource::StoredRecord;
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
        let pattern = c.value.as_deref().unwrap_or_default();
        return load_all(txn, searchable::matching(txn, R::TABLE, &c.name, pattern)?);
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
    if let Some(out) = unconditioned::<R>(txn, q, &visible)? {
        return Ok(out);
    }
    query_filtered::<R>(txn, q, |owner, _| visible(owner))
}

/// A query without conditions, answered without decoding the table (the web console's list
/// pages: 100 rows by `createDate` with the total): the count sums the visible owners' record
/// counts, and the page reads records in the order of the sort field's order keys (uuid order
/// when unsorted) until it holds `start + limit` visible ones. `None` when the engine must
/// answer: a condition, a sort on a field without order keys or with a value they cannot
/// order (`order.rs`). The answer equals the engine's (property-tested below).
fn unconditioned<R: Resource>(
    txn: &dyn StateTxn,
    q: &Query,
    visible: &impl Fn(&str) -> bool,
) -> Result<Option<QueryOutput>, ApiError> {
    if !q.conditions.is_empty() {
        return Ok(None);
    }
    query::validate(q, &fields::<R>())?;
    let total = || -> Result<u64, ApiError> {
        Ok(order::counts(txn, R::TABLE)?
            .into_iter()
            .filter(|(owner, _)| visible(owner))
            .map(|(_, n)| n)
            .sum())
    };
    if q.count {
        return Ok(Some(QueryOutput {
            inventories: None,
            total: Some(total()?),
        }));
    }
    let want = q.start.saturating_add(q.limit);
    let rows = match q.sort_by.as_deref() {
        None => first_visible(want, visible, |n| {
            txn.scan_prefix(R::TABLE, b"", n)?
                .into_iter()
                .map(|(k, v)| {
                    let s: StoredRecord<R> = serde_json::from_slice(&v)
                        .map_err(|e| corrupt(R::KIND, &String::from_utf8_lossy(&k), e))?;
                    Ok(Some((s.owner, s.record)))
                })
                .collect()
        })?,
        Some(f)
            if R::ORDERED.contains(&f)
                && !joined_fields::<R>().contains(&f)
                && order::fully_ordered(txn, R::TABLE, f)? =>
        {
            let d = if q.sort_desc {
                Direction::Descending
            } else {
                Direction::Ascending
            };
            let prefix = order::direction_prefix(R::TABLE, f, d);
            first_visible(want, visible, |n| {
                txn.scan_prefix(INDEX_TABLE, &prefix, n)?
                    .into_iter()
                    .map(|(k, _)| load::<R>(txn, &order::uuid_of(&k)))
                    .collect()
            })?
        }
        Some(_) => return Ok(None),
    };
    let mut out = Vec::with_capacity(q.limit);
    for r in rows.iter().skip(q.start) {
        out.push(query::shape(q, full_inventory(txn, r)?));
    }
    Ok(Some(QueryOutput {
        inventories: Some(out),
        total: if q.reply_with_count {
            Some(total()?)
        } else {
            None
        },
    }))
}

/// The first `want` visible records of an ordered source; `read(n)` gives its first `n`
/// entries (`None`: an entry whose record is gone). Reads grow fourfold, so hidden records
/// cost a few re-reads, not one read per record.
fn first_visible<R>(
    want: usize,
    visible: &impl Fn(&str) -> bool,
    read: impl Fn(usize) -> Result<Vec<Option<(String, R)>>, ApiError>,
) -> Result<Vec<R>, ApiError> {
    let mut out = Vec::new();
    let mut seen = 0;
    let mut n = want.max(16);
    loop {
        let entries = read(n)?;
        let exhausted = entries.len() < n;
        for (owner, r) in entries.into_iter().skip(seen).flatten() {
            if out.len() == want {
                break;
            }
            if visible(&owner) {
                out.push(r);
            }
        }
        if out.len() >= want || exhausted {
            return Ok(out);
        }
        seen = n;
        n = n.saturating_mul(4);
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::resource::date;
    use crate::resource::remove;
    use crate::resource::save;
    use crate::resource::Field;
    use crate::testing::MemTxn;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Dated {
        uuid: String,
        name: String,
        created: Option<Value>,
    }

    impl Resource for Dated {
        const KIND: &'static str = "Dated";
        const TABLE: &'static str = "dated";
        const INVENTORY: &'static [Field<Self>] = &[
            Field::new("uuid", |r| json!(r.uuid)),
            Field::new("name", |r| json!(r.name)),
            Field::maybe("createDate", |r| r.created.clone()),
        ];
        const INDEXED: &'static [&'static str] = &["name"];
        fn uuid(&self) -> &str {
            &self.uuid
        }
    }

    /// One step of a history: save record `i` (owner, name, createDate), or remove it.
    #[derive(Debug, Clone)]
    enum Step {
        Save(u8, u8, String, Option<Value>),
        Remove(u8),
    }

    fn created() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            // Few distinct instants, so ties (ordered by uuid) are common.
            8 => (0u64..4).prop_map(|s| Some(date(1_780_000_000_000 + s * 1000))),
            1 => Just(Some(json!("not a date"))),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..10, 0u8..3, "[a-c]{0,2}", created())
                .prop_map(|(i, o, n, c)| Step::Save(i, o, n, c)),
            1 => (0u8..10).prop_map(Step::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The unconditioned path (counts and order keys) answers every query without
        /// conditions exactly as the engine over every full inventory does, after any history
        /// of saves, owner changes and removals.
        #[test]
        fn unconditioned_answers_equal_the_engine(
            steps in proptest::collection::vec(step(), 0..24),
            count in any::<bool>(),
            sort in prop_oneof![Just(None), Just(Some("createDate")), Just(Some("name"))],
            desc in any::<bool>(),
            start in 0usize..4,
            limit in 0usize..12,
            reply_with_count in any::<bool>(),
            hidden in 0u8..4,
        ) {
            let mut t = MemTxn::default();
            for s in steps {
                match s {
                    Step::Save(i, o, name, created) => {
                        let d = Dated { uuid: format!("{i:032x}"), name, created };
                        save(&mut t, &format!("acct{o}"), &d).unwrap();
                    }
                    Step::Remove(i) => {
                        remove::<Dated>(&mut t, &format!("{i:032x}")).unwrap();
                    }
                }
            }
            let q = Query {
                limit,
                start,
                count,
                reply_with_count,
                sort_by: sort.map(String::from),
                sort_desc: desc,
                ..Query::default()
            };
            // `hidden` 3 hides nobody.
            let visible = |o: &str| o != format!("acct{hidden}");
            let fast = query::<Dated>(&t, &q, visible).map_err(|e| format!("{e:?}"));
            let full: Vec<Value> = list::<Dated>(&t)
                .unwrap()
                .into_iter()
                .filter(|(o, _)| visible(o))
                .map(|(_, d)| full_inventory(&t, &d).unwrap())
                .collect();
            let reference = crate::query::run(&q, &fields::<Dated>(), full)
                .map_err(|e| format!("{:?}", ApiError::from(e)));
            prop_assert_eq!(format!("{fast:?}"), format!("{reference:?}"), "query {:?}", q);
        }
    }

    #[test]
    fn counts_follow_saves_owner_changes_and_removals() {
        let mut t = MemTxn::default();
        let d = |i: u8| Dated {
            uuid: format!("{i:032x}"),
            name: "n".into(),
            created: Some(date(1_780_000_000_000)),
        };
        save(&mut t, "a", &d(1)).unwrap();
        save(&mut t, "a", &d(2)).unwrap();
        save(&mut t, "a", &d(2)).unwrap();
        save(&mut t, "b", &d(1)).unwrap();
        assert_eq!(
            order::counts(&t, "dated").unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 1)]
        );
        remove::<Dated>(&mut t, &d(1).uuid).unwrap();
        remove::<Dated>(&mut t, &d(2).uuid).unwrap();
        // Nothing left behind: no count, no order key.
        assert!(t.tables.is_empty(), "{:?}", t.tables);
    }
}
