//! Backup storage (spec 03 §10): ImageStore image servers (decision 7), attached to zones
//! (many-to-many). Adding one is a flow (`flows.rs`): the server's `zsagent` (installed over SSH
//! when none answers) connects the image directory and measures it. Deleting a BS removes
//! records only (spec 03 gaps #2): the BS and the images that live nowhere else; the bits on
//! disk stay (an agent the add installed is removed).

#[cfg(test)]
mod cases;
pub mod flows;
mod model;
mod reads;
pub mod reconnect;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::is_news;

pub use model::BackupStorage;
pub use model::BackupStorageOp;
pub use model::BackupStorageResult;
pub use model::BsStatus;
pub use model::IMAGE_STORE;
pub use model::KIND;
pub use model::MAX_URL;
pub use model::TABLE;
pub use wire::ImageStoreView;

use crate::family::prelude::*;

/// ZStack's classes of backup storage: an image store is an `ImageStoreBackupStorageVO`, written
/// as its own inventory (with `hostname`, `username`, `sshPort`) wherever it appears.
const BACKUP_STORAGE: JavaClass =
    JavaClass::leaf("org.zstack.header.storage.backup.BackupStorageInventory");
const IMAGE_STORE_BACKUP_STORAGE: JavaClass =
    JavaClass::leaf("org.zstack.storage.backup.imagestore.ImageStoreBackupStorageInventory");
const BY_TYPE: Schema = Schema::ByField {
    field: "type",
    classes: &[(model::IMAGE_STORE, &IMAGE_STORE_BACKUP_STORAGE)],
    other: &BACKUP_STORAGE,
};

/// The backup-storage family.
pub struct BackupStorages;

impl Family for BackupStorages {
    type Op = BackupStorageOp;
    type Out = BackupStorageResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(BY_TYPE),
        name: "backup_storage",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[Relation::new(
                "attachedZoneUuids",
                "Zone",
                OnDelete::DetachOrDelete(model::forget_zone),
            )],
            // Placement reads status and zones (host/placement.rs).
            inventory: Some(resource::stored_inventory::<BackupStorage>),
            ..KindDecl::new(
                KIND,
                TABLE,
                &["BackupStorageVO", "ImageStoreBackupStorageVO"],
            )
        }],
        calls: &[
            CallDecl::new(
                "AddImageStoreBackupStorage",
                wire::add_image_store,
                &[route(Po, "/v1/backup-storage/image-store", P)],
            )
            .creating("ImageStoreBackupStorageVO")
            .running(flows::ADD_IMAGE_STORE),
            update_call!(
                "UpdateBackupStorage",
                "/v1/backup-storage",
                BackupStorageOp::Update
            ),
            state_call!(
                "ChangeBackupStorageState",
                "/v1/backup-storage",
                BackupStorageOp::ChangeState
            ),
            CallDecl::new(
                "AttachBackupStorageToZone",
                |p| {
                    generic::plan_pair(p, "backupStorageUuid", "zoneUuid", |uuid, zone_uuid| {
                        BackupStorageOp::AttachToZone { uuid, zone_uuid }
                    })
                },
                &[route(
                    Po,
                    "/v1/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
                    P,
                )],
            ),
            CallDecl::new(
                "DetachBackupStorageFromZone",
                |p| {
                    generic::plan_pair(p, "backupStorageUuid", "zoneUuid", |uuid, zone_uuid| {
                        BackupStorageOp::DetachFromZone { uuid, zone_uuid }
                    })
                },
                &[route(
                    D,
                    "/v1/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
                    N,
                )],
            ),
            delete_call!(
                "DeleteBackupStorage",
                "/v1/backup-storage",
                BackupStorageOp::Delete
            )
            .running(flows::DELETE),
            CallDecl::new(
                "QueryBackupStorage",
                |p| p.query(wire::query_base),
                routes!(query "/v1/backup-storage"),
            ),
            query_call!(
                "QueryImageStoreBackupStorage",
                "/v1/backup-storage/image-store",
                ImageStoreView
            ),
            CallDecl::new(
                "GetBackupStorageCapacity",
                reads::capacity,
                &[route(G, "/v1/backup-storage/capacities", N)],
            ),
            CallDecl::new(
                "ReconnectBackupStorage",
                |p| {
                    Ok(p.propose(BackupStorageOp::Reconnect {
                        uuid: generic::target_uuid(p)?,
                    }))
                },
                routes!(actions "/v1/backup-storage"),
            )
            .running(reconnect::RECONNECT),
        ],
        flows: &[
            flows::ADD_IMAGE_STORE_FLOW,
            flows::DELETE_FLOW,
            reconnect::RECONNECT_FLOW,
        ],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
