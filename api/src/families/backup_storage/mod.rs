//! Backup storage (spec 03 §10): ImageStore image servers (decision 7), attached to zones
//! (many-to-many). Deleting a BS removes records only (spec 03 gaps #2): the BS and the images
//! that live nowhere else; the bits on disk stay.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::BackupStorage;
pub use model::BackupStorageOp;
pub use model::BackupStorageResult;
pub use model::BsStatus;
pub use model::IMAGE_STORE;
pub use model::KIND;
pub use model::MAX_URL;
pub use model::TABLE;
pub use wire::ImageStoreView;

use serde_json::Map;
use serde_json::Value;

use crate::family::inventory_reply;
use crate::family::route;
use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::KindDecl;
use crate::family::RestBody::Action as A;
use crate::family::RestBody::None as N;
use crate::family::RestBody::Params as P;
use crate::resource::generic;
use crate::resource::relations::OnDelete;
use crate::resource::relations::Relation;
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The backup-storage family.
pub struct BackupStorages;

impl Family for BackupStorages {
    type Op = BackupStorageOp;
    type Out = BackupStorageResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "backup_storage",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[Relation {
                field: "attachedZoneUuids",
                parent: "Zone",
                on_delete: OnDelete::DetachOrDelete(model::forget_zone),
                on_parent_state: None,
            }],
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
            .creating("ImageStoreBackupStorageVO"),
            CallDecl::new(
                "UpdateBackupStorage",
                |p| {
                    generic::plan_update(p, |uuid, rename| BackupStorageOp::Update { uuid, rename })
                },
                &[route(Pu, "/v1/backup-storage/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeBackupStorageState",
                |p| {
                    generic::plan_change_state(p, |uuid, event| BackupStorageOp::ChangeState {
                        uuid,
                        event,
                    })
                },
                &[route(Pu, "/v1/backup-storage/{uuid}/actions", A)],
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
            CallDecl::new(
                "DeleteBackupStorage",
                |p| generic::plan_delete(p, |uuid| BackupStorageOp::Delete { uuid }),
                &[route(D, "/v1/backup-storage/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryBackupStorage",
                |p| p.query(wire::query_base),
                &[
                    route(G, "/v1/backup-storage", N),
                    route(G, "/v1/backup-storage/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryImageStoreBackupStorage",
                generic::plan_query::<ImageStoreView>,
                &[
                    route(G, "/v1/backup-storage/image-store", N),
                    route(G, "/v1/backup-storage/image-store/{uuid}", N),
                ],
            ),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: BackupStorageOp,
    ) -> Result<BackupStorageResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &BackupStorageResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
