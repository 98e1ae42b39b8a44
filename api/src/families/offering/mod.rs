//! Instance offerings and disk offerings (spec 02 §2.6, §2.7, §3.6): templates for VMs and
//! volumes. `Enabled ⇄ Disabled`, then delete (immediate: no recycle bin; deleting one in use
//! is allowed because VMs and volumes keep their own copy of the figures).

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::DiskOffering;
pub use model::InstanceOffering;
pub use model::OfferingOp;
pub use model::OfferingResult;
pub use model::ALLOCATOR_STRATEGIES;
pub use model::DISK_ALLOCATOR_STRATEGIES;
pub use model::DISK_KIND;
pub use model::DISK_TABLE;
pub use model::INSTANCE_KIND;
pub use model::INSTANCE_TABLE;
pub use model::MAX_CPU;

use crate::family::prelude::*;

/// ZStack's classes of offerings.
const INSTANCE_OFFERING: JavaClass =
    JavaClass::leaf("org.zstack.header.configuration.InstanceOfferingInventory");
const DISK_OFFERING: JavaClass =
    JavaClass::leaf("org.zstack.header.configuration.DiskOfferingInventory");

/// The offering family: instance and disk offerings.
pub struct Offerings;

impl Family for Offerings {
    type Op = OfferingOp;
    type Out = OfferingResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&INSTANCE_OFFERING)),
        name: "offering",
        tables: &[INSTANCE_TABLE, DISK_TABLE],
        kinds: &[
            // Placement reads the sizes an offering names (host/placement.rs).
            KindDecl {
                inventory: Some(resource::stored_inventory::<InstanceOffering>),
                ..KindDecl::new(INSTANCE_KIND, INSTANCE_TABLE, &["InstanceOfferingVO"])
            },
            KindDecl {
                inventory: Some(resource::stored_inventory::<DiskOffering>),
                ..KindDecl::new(DISK_KIND, DISK_TABLE, &["DiskOfferingVO"])
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateInstanceOffering",
                wire::create_instance,
                &[route(Po, "/v1/instance-offerings", P)],
            )
            .creating("InstanceOfferingVO"),
            CallDecl::new(
                "UpdateInstanceOffering",
                wire::update_instance,
                routes!(actions "/v1/instance-offerings"),
            ),
            CallDecl::new(
                "ChangeInstanceOfferingState",
                |p| wire::change_state(p, false),
                routes!(actions "/v1/instance-offerings"),
            ),
            CallDecl::new(
                "DeleteInstanceOffering",
                |p| wire::delete(p, false),
                routes!(delete "/v1/instance-offerings"),
            ),
            query_call!(
                "QueryInstanceOffering",
                "/v1/instance-offerings",
                InstanceOffering
            ),
            CallDecl::new(
                "CreateDiskOffering",
                wire::create_disk,
                &[route(Po, "/v1/disk-offerings", P)],
            )
            .creating("DiskOfferingVO")
            .replying(inventories!(Schema::Class(&DISK_OFFERING))),
            CallDecl::new(
                "UpdateDiskOffering",
                wire::update_disk,
                routes!(actions "/v1/disk-offerings"),
            )
            .replying(inventories!(Schema::Class(&DISK_OFFERING))),
            CallDecl::new(
                "ChangeDiskOfferingState",
                |p| wire::change_state(p, true),
                routes!(actions "/v1/disk-offerings"),
            )
            .replying(inventories!(Schema::Class(&DISK_OFFERING))),
            CallDecl::new(
                "DeleteDiskOffering",
                |p| wire::delete(p, true),
                routes!(delete "/v1/disk-offerings"),
            )
            .replying(inventories!(Schema::Class(&DISK_OFFERING))),
            query_call!("QueryDiskOffering", "/v1/disk-offerings", DiskOffering)
                .replying(inventories!(Schema::Class(&DISK_OFFERING))),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
