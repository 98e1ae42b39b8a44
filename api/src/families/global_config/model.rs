//! Global-config inventories, commands and their apply.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::query;
use crate::query::Query;
use crate::query::QueryOutput;
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

/// One setting as `GlobalConfigInventory` (`id, name, category, description, defaultValue, value`).
pub fn inventory(id: usize, def: &Def, value: &str) -> Value {
    json!({
        "id": id + 1,
        "name": def.name,
        "category": def.category,
        "description": def.description,
        "defaultValue": def.default,
        "value": value,
    })
}

/// Query schema.
pub const FIELDS: &[&str] = &[
    "id",
    "name",
    "category",
    "description",
    "defaultValue",
    "value",
];

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
    Ok(query::run(q, FIELDS, inventories(txn)?)?)
}
