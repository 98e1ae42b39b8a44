//! Zones (spec 03 §zones): the top of the hardware hierarchy. What a zone holds declares its
//! own relation to it (cluster, primary storage, L2 network, backup storage), so deleting or
//! disabling a zone walks those declarations.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::Zone;
pub use model::ZoneOp;
pub use model::ZoneResult;
pub use model::KIND;
pub use model::TABLE;

use crate::family::prelude::*;

/// ZStack's class of a zone.
const ZONE: JavaClass = JavaClass::leaf("org.zstack.header.zone.ZoneInventory");

/// The zone family.
pub struct Zones;

impl Family for Zones {
    type Op = ZoneOp;
    type Out = ZoneResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&ZONE)),
        name: "zone",
        tables: &[TABLE],
        kinds: &[KindDecl {
            // Placement answers candidate zones as inventories (host/placement.rs).
            inventory: Some(resource::stored_inventory::<Zone>),
            ..KindDecl::new(KIND, TABLE, &["ZoneVO"])
        }],
        calls: &[
            CallDecl::new("CreateZone", wire::create, &[route(Po, "/v1/zones", P)])
                .creating("ZoneVO"),
            CallDecl::new("UpdateZone", wire::update, routes!(actions "/v1/zones")),
            state_call!("ChangeZoneState", "/v1/zones", ZoneOp::ChangeState),
            delete_call!("DeleteZone", "/v1/zones", ZoneOp::Delete),
            query_call!("QueryZone", "/v1/zones", Zone),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for ZoneResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            ZoneResult::Inventory(z) => Some(resource::inventory(z)),
            ZoneResult::Deleted => None,
        }
    }
}
