//! Global-config inventories, commands and their apply.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::query;
use crate::query::Query;
use crate::query::QueryOutput;
use crate::resource::Field;
use crate::settings::check;
use crate::settings::def;
use crate::settings::key;
use crate::settings::unknown;
use crate::settings::value;
use crate::settings::Def;
use crate::settings::DEFS;
use crate::settings::TABLE;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

/// One setting with its current value, as its inventory shows it.
pub struct Setting {
    /// Position in [`DEFS`] (the inventory's `id` is one more).
    pub id: usize,
    /// The setting.
    pub def: &'static Def,
    /// Its current value.
    pub value: String,
}

/// `GlobalConfigInventory`, in order; also the query schema.
pub const INVENTORY: &[Field<Setting>] = &[
    Field::new("id", |s| json!(s.id + 1)),
    Field::new("name", |s| json!(s.def.name)),
    Field::new("category", |s| json!(s.def.category)),
    Field::new("description", |s| json!(s.def.description)),
    Field::new("defaultValue", |s| json!(s.def.default)),
    Field::new("value", |s| json!(s.value)),
];

/// One setting's inventory.
pub fn inventory(id: usize, def: &'static Def, value: &str) -> Value {
    let s = Setting {
        id,
        def,
        value: value.to_string(),
    };
    crate::resource::render_fields(INVENTORY, &s)
}

/// The query schema.
pub fn fields() -> Vec<&'static str> {
    crate::resource::table_fields(INVENTORY)
}

/// Every setting's inventory with its current value.
pub fn inventories(txn: &dyn StateTxn) -> Result<Vec<Value>, ApiError> {
    DEFS.iter()
        .enumerate()
        .map(|(i, d)| Ok(inventory(i, d, &value(txn, d.category, d.name)?)))
        .collect()
}

/// Global-config commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalConfigOp {
    /// `UpdateGlobalConfig`.
    Update {
        /// Category.
        category: String,
        /// Name.
        name: String,
        /// New value.
        value: String,
    },
    /// `ResetGlobalConfig`: every setting back to its default.
    ResetAll,
}

/// Answer of a global-config command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalConfigResult {
    /// The setting after the change.
    Inventory(Value),
    /// Everything was reset.
    Reset,
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    caller: &Caller,
    op: GlobalConfigOp,
) -> Result<GlobalConfigResult, ApiError> {
    caller.require_admin("global config")?;
    match op {
        GlobalConfigOp::Update {
            category,
            name,
            value,
        } => {
            let (id, def) = def(&category, &name).ok_or_else(|| unknown(&category, &name))?;
            check(def, &value)?;
            if value == def.default {
                txn.delete(TABLE, &key(&category, &name))?;
            } else {
                txn.put(TABLE, &key(&category, &name), value.clone().into_bytes())?;
            }
            Ok(GlobalConfigResult::Inventory(inventory(id, def, &value)))
        }
        GlobalConfigOp::ResetAll => {
            for (k, _) in txn.scan_prefix(TABLE, b"", usize::MAX)? {
                txn.delete(TABLE, &k)?;
            }
            Ok(GlobalConfigResult::Reset)
        }
    }
}

pub(super) fn run_query(
    txn: &dyn StateTxn,
    q: &Query,
    _caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    Ok(query::run(q, &fields(), inventories(txn)?)?)
}
