//! The tags of any resource, read by the resource's uuid: the `__systemTag__` / `__userTag__`
//! conditions of every query and the inventories that join a resource's tags (an image's
//! `systemTags`) read them here, so nothing outside the tag family names it.
//!
//! The tag family (`families::tag`) owns the records, the calls and every write. It declares
//! the two kinds named here, indexed by `resourceUuid` and `tag`, with their inventory
//! rendering ([`crate::family::KindDecl::inventory`]); this module reads them through those
//! declarations only.

use serde_json::Value;

use crate::resource;
use crate::ApiError;
use crate::StateTxn;

/// The kind of system tags.
pub const SYSTEM_KIND: &str = "SystemTag";
/// The kind of user tags.
pub const USER_KIND: &str = "UserTag";
/// The indexed field naming the tagged resource.
pub const RESOURCE_FIELD: &str = "resourceUuid";
/// The indexed field holding the tag's text.
pub const TAG_FIELD: &str = "tag";

/// The kind of system (`true`) or user tags.
pub fn kind(system: bool) -> &'static str {
    if system {
        SYSTEM_KIND
    } else {
        USER_KIND
    }
}

/// Tag texts of a resource (system or user kind), in uuid order of the tags.
pub fn texts(
    txn: &dyn StateTxn,
    resource_uuid: &str,
    system: bool,
) -> Result<Vec<String>, ApiError> {
    Ok(
        resource::refs_where(txn, kind(system), RESOURCE_FIELD, resource_uuid)?
            .iter()
            .filter_map(|t| t.field(TAG_FIELD).map(str::to_string))
            .collect(),
    )
}

/// Every (tagged resource uuid, tag text) of the system (`true`) or user tags whose text starts
/// with `prefix`, through the tag index: one range scan, whatever the number of resources (what
/// a per-resource lookup of a rarely-set tag would cost for every host of a placement).
pub fn with_prefix(
    txn: &dyn StateTxn,
    system: bool,
    prefix: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let kind = kind(system);
    let table = crate::registry::table_of(kind);
    let mut start = resource::index_key(table, TAG_FIELD, "", None);
    // `index_key` ends the (empty) value with its separator; the prefix goes in its place,
    // lowercased as the index stores values (the tag's own text is read from its record).
    start.pop();
    start.extend(
        prefix
            .to_ascii_lowercase()
            .bytes()
            .map(|b| if b == 0 { 1 } else { b }),
    );
    let mut out = Vec::new();
    for (k, _) in txn.scan_prefix(resource::INDEX_TABLE, &start, usize::MAX)? {
        let Some(cut) = k.iter().rposition(|b| *b == 0) else {
            continue;
        };
        let tag_uuid = String::from_utf8_lossy(&k[cut + 1..]).into_owned();
        let Some(r) = resource::lookup(txn, kind, &tag_uuid)? else {
            continue;
        };
        if let (Some(res), Some(text)) = (r.field(RESOURCE_FIELD), r.field(TAG_FIELD)) {
            out.push((res.to_string(), text.to_string()));
        }
    }
    Ok(out)
}

/// Inventories of a resource's tags (`SystemTagInventory` / `UserTagInventory`), in uuid
/// order of the tags.
pub fn inventories(
    txn: &dyn StateTxn,
    resource_uuid: &str,
    system: bool,
) -> Result<Vec<Value>, ApiError> {
    let kind = kind(system);
    let table = crate::registry::table_of(kind);
    let mut out = Vec::new();
    for u in resource::uuids_in(txn, table, RESOURCE_FIELD, resource_uuid)? {
        if let Some(inv) = resource::inventory_of(txn, kind, &u)? {
            out.push(inv);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn the_tag_kinds_are_declared_as_read_here() {
        for system in [true, false] {
            let k = registry::find_kind(kind(system))
                .unwrap_or_else(|| panic!("tag kind {} is not declared", kind(system)));
            assert!(k.inventory.is_some(), "{} renders no inventory", k.kind);
        }
    }
}
