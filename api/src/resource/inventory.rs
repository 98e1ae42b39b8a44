//! Inventories from ONE declaration: a resource lists its inventory fields in ZStack's
//! serialisation order, each with how it is rendered; the same list is the query schema, so a
//! field can never be rendered without being queryable or the other way round.

use serde_json::Map;
use serde_json::Value;

use crate::resource::Resource;
use crate::ApiError;
use crate::StateTxn;

/// How one inventory field is rendered from a record.
pub enum Render<R: 'static> {
    /// Always present.
    Always(fn(&R) -> Value),
    /// Omitted when `None` (Gson drops null fields).
    Maybe(fn(&R) -> Option<Value>),
    /// Read from other tables (tags, child records): present in query results, where the
    /// state is at hand, and absent from the inventory a command's reply carries.
    Joined(fn(&dyn StateTxn, &R) -> Result<Value, ApiError>),
    /// Every field of another inventory, in its order (a subclass view of a base kind).
    Splice(fn(&R) -> Value, fn() -> Vec<&'static str>),
}

/// One inventory field (or, with [`Render::Splice`], a run of them).
pub struct Field<R: 'static> {
    /// The wire name, e.g. `zoneUuid`.
    pub name: &'static str,
    /// How it is rendered.
    pub render: Render<R>,
}

impl<R: 'static> Field<R> {
    /// A field every inventory carries.
    pub const fn new(name: &'static str, f: fn(&R) -> Value) -> Self {
        Field {
            name,
            render: Render::Always(f),
        }
    }

    /// A field omitted when the record has no value for it.
    pub const fn maybe(name: &'static str, f: fn(&R) -> Option<Value>) -> Self {
        Field {
            name,
            render: Render::Maybe(f),
        }
    }

    /// A field joined from other tables (see [`Render::Joined`]).
    pub const fn joined(
        name: &'static str,
        f: fn(&dyn StateTxn, &R) -> Result<Value, ApiError>,
    ) -> Self {
        Field {
            name,
            render: Render::Joined(f),
        }
    }
}

impl<R: 'static> Field<R> {
    /// Every field of another kind's inventory, rendered from the record it wraps.
    pub const fn splice(render: fn(&R) -> Value, names: fn() -> Vec<&'static str>) -> Self {
        Field {
            name: "",
            render: Render::Splice(render, names),
        }
    }
}

fn render<R: Resource>(r: &R, txn: Option<&dyn StateTxn>) -> Result<Value, ApiError> {
    render_table(R::INVENTORY, r, txn)
}

/// Render `r` through a field table. Records that are not stored as resources (management
/// nodes, settings, audit records) declare their inventory as such a table too, so the
/// rendering and the query schema come from one declaration.
fn render_table<R>(
    table: &[Field<R>],
    r: &R,
    txn: Option<&dyn StateTxn>,
) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for f in table {
        let v = match (&f.render, txn) {
            (Render::Splice(g, _), _) => {
                if let Value::Object(inner) = g(r) {
                    m.extend(inner);
                }
                continue;
            }
            (Render::Always(g), _) => Some(g(r)),
            (Render::Maybe(g), _) => g(r),
            (Render::Joined(g), Some(t)) => Some(g(t, r)?),
            (Render::Joined(_), None) => None,
        };
        if let Some(v) = v {
            m.insert(f.name.to_string(), v);
        }
    }
    Ok(Value::Object(m))
}

/// The inventory a reply carries (joined fields left out).
pub fn inventory<R: Resource>(r: &R) -> Value {
    match render(r, None) {
        Ok(v) => v,
        // Without a state view no joined field is read, so rendering cannot fail.
        Err(_) => Value::Object(Map::new()),
    }
}

/// The inventory as a query answers it, joined fields included.
pub fn full_inventory<R: Resource>(txn: &dyn StateTxn, r: &R) -> Result<Value, ApiError> {
    render(r, Some(txn))
}

/// Only the inventory fields named in `names` (top-level names; joined fields left out): what
/// a query filters and sorts on, without building the rest of every row.
pub fn inventory_fields<R: Resource>(r: &R, names: &[&str]) -> Value {
    let mut m = Map::new();
    for f in R::INVENTORY {
        let v = match &f.render {
            Render::Splice(g, inner) => {
                if inner().iter().any(|n| names.contains(n)) {
                    if let Value::Object(o) = g(r) {
                        m.extend(o);
                    }
                }
                continue;
            }
            _ if !names.contains(&f.name) => None,
            Render::Always(g) => Some(g(r)),
            Render::Maybe(g) => g(r),
            Render::Joined(_) => None,
        };
        if let Some(v) = v {
            m.insert(f.name.to_string(), v);
        }
    }
    Value::Object(m)
}

/// The fields read from other tables ([`Render::Joined`]): what a query may leave out of the
/// rows it only filters and sorts.
pub fn joined_fields<R: Resource>() -> Vec<&'static str> {
    R::INVENTORY
        .iter()
        .filter(|f| matches!(f.render, Render::Joined(_)))
        .map(|f| f.name)
        .collect()
}

/// The query schema: every field name, in inventory order.
pub fn fields<R: Resource>() -> Vec<&'static str> {
    table_fields(R::INVENTORY)
}

/// The inventory of `r` through `table` (no joined fields).
pub fn render_fields<R>(table: &[Field<R>], r: &R) -> Value {
    match render_table(table, r, None) {
        Ok(v) => v,
        // Without a state view no joined field is read, so rendering cannot fail.
        Err(_) => Value::Object(Map::new()),
    }
}

/// The query schema of a field table.
pub fn table_fields<R>(table: &[Field<R>]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for f in table {
        match &f.render {
            Render::Splice(_, names) => out.extend(names()),
            _ => out.push(f.name),
        }
    }
    out
}

/// A Java-8 date field (`createDate`, `lastOpDate`).
pub fn date(ms: u64) -> Value {
    Value::String(crate::wire::date::java_date(ms))
}
