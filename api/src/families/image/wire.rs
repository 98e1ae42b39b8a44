//! Images on the wire: the inventory (with its copies and, in queries, its system tags) and
//! request → op.

use serde_json::json;
use serde_json::Value;

use super::model::BackupStorageRef;
use super::model::Image;
use super::model::ImageOp;
use super::model::ImageResult;
use super::model::KIND;
use super::model::TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for Image {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("size", |r| json!(r.size)),
        Field::new("actualSize", |r| json!(r.actual_size)),
        Field::maybe("md5Sum", |r| r.md5_sum.as_ref().map(|x| json!(x))),
        Field::new("url", |r| json!(r.url)),
        Field::new("mediaType", |r| json!(r.media_type)),
        Field::maybe("guestOsType", |r| {
            r.guest_os_type.as_ref().map(|x| json!(x))
        }),
        Field::new("type", |_| json!("zstack")),
        Field::new("platform", |r| json!(r.platform)),
        Field::new("architecture", |r| json!(r.architecture)),
        Field::new("format", |r| json!(r.format)),
        Field::new("system", |r| json!(r.system)),
        Field::new("virtio", |r| json!(r.virtio)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("backupStorageRefs", |r| {
            Value::Array(
                r.backup_storage_refs
                    .iter()
                    .map(|b| ref_inventory(b, &r.uuid))
                    .collect(),
            )
        }),
        // SystemTagInventory objects, read from the tag table: in query results only.
        Field::joined("systemTags", |txn, r| {
            Ok(Value::Array(resource::tags::inventories(
                txn, &r.uuid, true,
            )?))
        }),
    ];
    const INDEXED: &'static [&'static str] = &[
        "name",
        "state",
        "status",
        "mediaType",
        "backupStorageRefs.backupStorageUuid",
    ];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// `ImageBackupStorageRefInventory`.
fn ref_inventory(r: &BackupStorageRef, image_uuid: &str) -> Value {
    let mut om = resource::object(json!({
        "imageUuid": image_uuid,
        "backupStorageUuid": r.backup_storage_uuid,
    }));
    if let Some(p) = &r.install_path {
        om.insert("installPath".into(), json!(p));
    }
    om.insert("status".into(), json!(r.status));
    if let Some(m) = &r.export_md5_sum {
        om.insert("exportMd5Sum".into(), json!(m));
    }
    if let Some(u) = &r.export_url {
        om.insert("exportUrl".into(), json!(u));
    }
    om.insert("createDate".into(), date(r.create_date));
    om.insert("lastOpDate".into(), date(r.last_op_date));
    Value::Object(om)
}

/// The reply fields: the `inventory`, or an export's `imageUrl` (and, as later ZStack
/// versions send it, `exportMd5Sum`).
impl crate::family::Reply for ImageResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            ImageResult::Inventory(i) => Some(resource::inventory(i.as_ref())),
            ImageResult::Deleted | ImageResult::Exported { .. } => None,
        }
    }

    fn reply(&self) -> crate::family::ReplyFields {
        match self {
            ImageResult::Exported { image_url, md5 } => Ok(resource::object(json!({
                "imageUrl": image_url,
                "exportMd5Sum": md5,
            }))),
            other => crate::family::inventory_reply(other.inventory()),
        }
    }
}

/// `ExportImageFromBackupStorage`.
pub(super) fn export(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ImageOp::Export {
        uuid: p.required("imageUuid")?,
        backup_storage_uuid: p.required("backupStorageUuid")?,
        format: p.string("exportFormat"),
    }))
}

/// `DeleteExportedImageFromBackupStorage`.
pub(super) fn unexport(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ImageOp::DeleteExport {
        uuid: p.required("imageUuid")?,
        backup_storage_uuid: p.required("backupStorageUuid")?,
    }))
}

/// The `backupStorageUuids` a call names (absent: none).
fn bs_list(p: &PlanInput) -> Result<Vec<String>, Refusal> {
    Ok(params::strings(p.body, "backupStorageUuids", p.call)?.unwrap_or_default())
}

pub(super) fn add(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ImageOp::Add {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        url: p.required("url")?,
        media_type: p.string("mediaType"),
        guest_os_type: p.string("guestOsType"),
        format: p.string("format"),
        platform: p.string("platform"),
        architecture: p.string("architecture"),
        system: params::boolean(p.body, "system").unwrap_or(false),
        virtio: params::boolean(p.body, "virtio"),
        backup_storage_uuids: bs_list(p)?,
    }))
}

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    generic::plan_update(p, |uuid, rename| ImageOp::Update {
        uuid,
        rename,
        guest_os_type: p.string("guestOsType"),
        media_type: p.string("mediaType"),
        format: p.string("format"),
        system: params::boolean(p.body, "system"),
        platform: p.string("platform"),
        architecture: p.string("architecture"),
        virtio: params::boolean(p.body, "virtio"),
    })
}

pub(super) fn delete(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ImageOp::Delete {
        uuid: generic::target_uuid(p)?,
        backup_storage_uuids: bs_list(p)?,
    }))
}

/// `ExpungeImage` and `RecoverImage`: an image (`imageUuid`) and some of its copies.
pub(super) fn copies(
    p: &PlanInput,
    make: fn(String, Vec<String>) -> ImageOp,
) -> Result<Plan, Refusal> {
    Ok(p.propose(make(p.required("imageUuid")?, bs_list(p)?)))
}
