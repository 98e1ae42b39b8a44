//! Images (spec 02 §2.4, §3.3, §9): templates and ISOs kept on backup storage. `AddImage`
//! records the image as `Downloading` on each named BS; the agent's download later reports each
//! copy `Ready` (with size and md5) through [`ImageOp::MarkReady`], or failed through
//! [`ImageOp::MarkFailed`]. Deletion follows the global `image.deletionPolicy`: `Direct`
//! removes the record, `Delay`/`Never` mark it `Deleted` (recoverable until expunged).

#[cfg(test)]
mod cases;
mod copies;
mod export;
pub mod export_flows;
pub mod flows;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use export::EXPORT_FORMATS;
pub use model::deletion_policy;
pub use model::BackupStorageRef;
pub use model::DeletionPolicy;
pub use model::Image;
pub use model::ImageOp;
pub use model::ImageResult;
pub use model::ImageStatus;
pub use model::FORMATS;
pub use model::KIND;
pub use model::MAX_URL;
pub use model::MEDIA_TYPES;
pub use model::PLATFORMS;
pub use model::TABLE;
pub use model::URL_SCHEMES;

use crate::family::prelude::*;

/// ZStack's class of an image and of the objects in it.
const IMAGE: JavaClass = JavaClass {
    name: "org.zstack.header.image.ImageInventory",
    fields: &[
        (
            "backupStorageRefs",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.header.image.ImageBackupStorageRefInventory",
            )),
        ),
        (
            "systemTags",
            Schema::Class(&JavaClass::leaf("org.zstack.header.tag.SystemTagInventory")),
        ),
    ],
};

/// The image family.
pub struct Images;

impl Family for Images {
    type Op = ImageOp;
    type Out = ImageResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&IMAGE)),
        name: "image",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[Relation::new(
                "backupStorageRefs.backupStorageUuid",
                "BackupStorage",
                OnDelete::DetachOrDelete(copies::forget_backup_storage),
            )],
            // Placement reads where the image's bits are and its size (host/placement.rs).
            inventory: Some(resource::stored_inventory::<Image>),
            ..KindDecl::new(KIND, TABLE, &["ImageVO"])
        }],
        calls: &[
            CallDecl::new("AddImage", wire::add, &[route(Po, "/v1/images", P)])
                .creating("ImageVO")
                .running(flows::ADD),
            CallDecl::new("UpdateImage", wire::update, routes!(actions "/v1/images")),
            state_call!("ChangeImageState", "/v1/images", ImageOp::ChangeState),
            CallDecl::new("DeleteImage", wire::delete, routes!(delete "/v1/images"))
                .running(flows::REMOVE),
            CallDecl::new(
                "ExpungeImage",
                |p| {
                    wire::copies(p, |uuid, backup_storage_uuids| ImageOp::Expunge {
                        uuid,
                        backup_storage_uuids,
                    })
                },
                &[route(Pu, "/v1/images/{imageUuid}/actions", A)],
            )
            .running(flows::REMOVE),
            CallDecl::new(
                "RecoverImage",
                |p| {
                    wire::copies(p, |uuid, backup_storage_uuids| ImageOp::Recover {
                        uuid,
                        backup_storage_uuids,
                    })
                },
                &[route(Pu, "/v1/images/{imageUuid}/actions", A)],
            ),
            query_call!("QueryImage", "/v1/images", Image),
            CallDecl::new(
                "ExportImageFromBackupStorage",
                wire::export,
                &[route(
                    Pu,
                    "/v1/backup-storage/{backupStorageUuid}/actions",
                    A,
                )],
            )
            .running(export_flows::EXPORT),
            CallDecl::new(
                "DeleteExportedImageFromBackupStorage",
                wire::unexport,
                &[route(
                    D,
                    "/v1/backup-storage/{backupStorageUuid}/exported-images/{imageUuid}",
                    N,
                )],
            )
            .running(export_flows::UNEXPORT),
        ],
        flows: &[
            flows::ADD_FLOW,
            flows::REMOVE_FLOW,
            export_flows::EXPORT_FLOW,
            export_flows::UNEXPORT_FLOW,
        ],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
