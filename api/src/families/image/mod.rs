//! Images (spec 02 §2.4, §3.3, §9): templates and ISOs kept on backup storage. `AddImage`
//! records the image as `Downloading` on each named BS; the agent's download later reports each
//! copy `Ready` (with size and md5) through [`ImageOp::MarkReady`], or failed through
//! [`ImageOp::MarkFailed`]. Deletion follows the global `image.deletionPolicy`: `Direct`
//! removes the record, `Delay`/`Never` mark it `Deleted` (recoverable until expunged).

#[cfg(test)]
mod cases;
mod copies;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

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

/// The image family.
pub struct Images;

impl Family for Images {
    type Op = ImageOp;
    type Out = ImageResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "image",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[Relation {
                field: "backupStorageRefs.backupStorageUuid",
                parent: "BackupStorage",
                on_delete: OnDelete::DetachOrDelete(copies::forget_backup_storage),
                on_parent_state: None,
            }],
            ..KindDecl::new(KIND, TABLE, &["ImageVO"])
        }],
        calls: &[
            CallDecl::new("AddImage", wire::add, &[route(Po, "/v1/images", P)]).creating("ImageVO"),
            CallDecl::new(
                "UpdateImage",
                wire::update,
                &[route(Pu, "/v1/images/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeImageState",
                |p| {
                    generic::plan_change_state(p, |uuid, event| ImageOp::ChangeState {
                        uuid,
                        event,
                    })
                },
                &[route(Pu, "/v1/images/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteImage",
                wire::delete,
                &[route(D, "/v1/images/{uuid}", N)],
            ),
            CallDecl::new(
                "ExpungeImage",
                |p| {
                    wire::copies(p, |uuid, backup_storage_uuids| ImageOp::Expunge {
                        uuid,
                        backup_storage_uuids,
                    })
                },
                &[route(Pu, "/v1/images/{imageUuid}/actions", A)],
            ),
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
            CallDecl::new(
                "QueryImage",
                generic::plan_query::<Image>,
                &[route(G, "/v1/images", N), route(G, "/v1/images/{uuid}", N)],
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
        op: ImageOp,
    ) -> Result<ImageResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &ImageResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
