//! Images (spec 02 §2.4, §3.3, §9): templates and ISOs kept on backup storage. `AddImage`
//! records the image as `Downloading` on each named BS; the agent's download later reports each
//! copy `Ready` (with size and md5) through [`ImageOp::MarkReady`], or failed through
//! [`ImageOp::MarkFailed`]. Deletion follows the global `image.deletionPolicy`: `Direct`
//! removes the record, `Delay`/`Never` mark it `Deleted` (recoverable until expunged).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::StateTxn;

/// The image table.
pub const TABLE: &str = "image";
/// Longest url (`@APIParam(maxLength = 1024)`).
pub const MAX_URL: usize = 1024;
/// URL schemes accepted (the ones the agent downloads).
pub const URL_SCHEMES: &[&str] = &["http://", "https://", "file:///"];
/// Image formats.
pub const FORMATS: &[&str] = &["qcow2", "raw", "iso"];
/// Media types.
pub const MEDIA_TYPES: &[&str] = &["RootVolumeTemplate", "ISO", "DataVolumeTemplate"];
/// Platforms.
pub const PLATFORMS: &[&str] = &[
    "Linux",
    "Windows",
    "Other",
    "Paravirtualization",
    "WindowsVirtio",
];

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageState {
    /// May create new VMs.
    Enabled,
    /// May not create new VMs; existing VMs unaffected.
    Disabled,
}

/// Readiness of an image or of one of its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageStatus {
    /// Being downloaded.
    Downloading,
    /// Usable.
    Ready,
    /// Deleted (recycle bin), recoverable until expunged.
    Deleted,
}

/// One copy of the image on a backup storage (`ImageBackupStorageRefInventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStorageRef {
    /// The BS.
    pub backup_storage_uuid: String,
    /// Where the BS keeps it, once downloaded.
    pub install_path: Option<String>,
    /// Readiness of this copy.
    pub status: ImageStatus,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

/// An image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Enabled or Disabled.
    pub state: ImageState,
    /// Downloading, Ready or Deleted.
    pub status: ImageStatus,
    /// Status before a delete (restored by recover).
    pub status_before_delete: Option<ImageStatus>,
    /// Virtual size, bytes.
    pub size: u64,
    /// Bytes on disk.
    pub actual_size: u64,
    /// MD5 of the file, once known.
    pub md5_sum: Option<String>,
    /// Where it was downloaded from.
    pub url: String,
    /// RootVolumeTemplate, ISO or DataVolumeTemplate.
    pub media_type: String,
    /// Guest OS hint.
    pub guest_os_type: Option<String>,
    /// Linux, Windows, ...
    pub platform: String,
    /// CPU architecture.
    pub architecture: String,
    /// qcow2, raw or iso.
    pub format: String,
    /// A system image (virtual-router image etc.).
    pub system: bool,
    /// Whether VMs get virtio devices.
    pub virtio: bool,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// When it was deleted (Delay/Never policies), ms.
    pub deleted_at: Option<u64>,
    /// Copies, in the order the BSs were named.
    pub backup_storage_refs: Vec<BackupStorageRef>,
}

impl Resource for Image {
    const KIND: &'static str = "Image";
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
                    .map(|b| b.inventory(&r.uuid))
                    .collect(),
            )
        }),
        // SystemTagInventory objects, read from the tag table: in query results only.
        Field::joined("systemTags", |txn, r| {
            let tags = resource::find::<crate::tag::SystemTag>(txn, "resourceUuid", &r.uuid)?
                .into_iter()
                .map(|(_, t)| resource::inventory(&t))
                .collect();
            Ok(Value::Array(tags))
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

impl BackupStorageRef {
    /// `ImageBackupStorageRefInventory`.
    fn inventory(&self, image_uuid: &str) -> Value {
        let mut om = resource::object(json!({
            "imageUuid": image_uuid,
            "backupStorageUuid": self.backup_storage_uuid,
        }));
        if let Some(p) = &self.install_path {
            om.insert("installPath".into(), json!(p));
        }
        om.insert("status".into(), json!(self.status));
        om.insert("createDate".into(), crate::resource::date(self.create_date));
        om.insert(
            "lastOpDate".into(),
            crate::resource::date(self.last_op_date),
        );
        Value::Object(om)
    }
}

/// State events of `ChangeImageState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// `image.deletionPolicy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionPolicy {
    /// Remove at once.
    Direct,
    /// Mark deleted; the expunge sweeper removes it after `image.expungePeriod`.
    Delay,
    /// Mark deleted; never expunged automatically.
    Never,
}

/// The current image deletion policy (global config `image.deletionPolicy`).
pub fn deletion_policy(txn: &dyn StateTxn) -> Result<DeletionPolicy, ApiError> {
    Ok(
        match crate::global_config::value(txn, "image", "deletionPolicy")?.as_str() {
            "Direct" => DeletionPolicy::Direct,
            "Never" => DeletionPolicy::Never,
            _ => DeletionPolicy::Delay,
        },
    )
}

/// Image commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageOp {
    /// `AddImage`.
    Add {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Source url.
        url: String,
        /// Media type (default RootVolumeTemplate).
        media_type: Option<String>,
        /// Guest OS hint.
        guest_os_type: Option<String>,
        /// Format (default from media type and url).
        format: Option<String>,
        /// Platform (default Linux).
        platform: Option<String>,
        /// Architecture (default x86_64).
        architecture: Option<String>,
        /// System image.
        system: bool,
        /// Virtio (default true).
        virtio: Option<bool>,
        /// Where to keep it (non-empty).
        backup_storage_uuids: Vec<String>,
    },
    /// `UpdateImage`.
    Update {
        /// Image.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New guest OS hint.
        guest_os_type: Option<String>,
        /// New media type.
        media_type: Option<String>,
        /// New format.
        format: Option<String>,
        /// New system flag.
        system: Option<bool>,
        /// New platform.
        platform: Option<String>,
        /// New architecture.
        architecture: Option<String>,
        /// New virtio flag.
        virtio: Option<bool>,
    },
    /// `ChangeImageState`.
    ChangeState {
        /// Image.
        uuid: String,
        /// Event.
        event: ImageStateEvent,
    },
    /// `DeleteImage` (all copies, or only those on `backup_storage_uuids`).
    Delete {
        /// Image.
        uuid: String,
        /// Only these copies (empty: all).
        backup_storage_uuids: Vec<String>,
    },
    /// `ExpungeImage`: remove a deleted image (or deleted copies) for good.
    Expunge {
        /// Image.
        uuid: String,
        /// Only these copies (empty: all).
        backup_storage_uuids: Vec<String>,
    },
    /// `RecoverImage`: undo a delete.
    Recover {
        /// Image.
        uuid: String,
        /// Only these copies (empty: all).
        backup_storage_uuids: Vec<String>,
    },
    /// Internal (download duty): a copy finished downloading.
    MarkReady {
        /// Image.
        uuid: String,
        /// The BS holding the copy.
        backup_storage_uuid: String,
        /// Where the BS keeps it.
        install_path: String,
        /// Virtual size.
        size: u64,
        /// Bytes on disk.
        actual_size: u64,
        /// MD5 of the file.
        md5_sum: String,
    },
    /// Internal (download duty): a copy failed to download; it is dropped, and an image left
    /// with no copy is removed (ZStack deletes an image whose download failed).
    MarkFailed {
        /// Image.
        uuid: String,
        /// The BS that failed.
        backup_storage_uuid: String,
    },
}

/// Answer of an image command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageResult {
    /// The image after the change.
    Inventory(Box<Image>),
    /// Deleted, expunged, or removed after a failed download (or already absent).
    Deleted,
}

impl ImageResult {
    /// The `inventory` of the reply, if any (without tags, which only queries join in).
    pub fn inventory(&self) -> Option<Value> {
        match self {
            ImageResult::Inventory(i) => Some(resource::inventory(i.as_ref())),
            ImageResult::Deleted => None,
        }
    }
}

fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "valid values for field[{field}] are {allowed:?}, but {v} found"
        )))
    }
}

fn check_media_format(media: &str, format: &str) -> Result<(), ApiError> {
    one_of("mediaType", media, MEDIA_TYPES)?;
    one_of("format", format, FORMATS)?;
    if (media == "ISO") != (format == "iso") {
        return Err(validate::invalid_arg(format!(
            "mediaType[{media}] and format[{format}] do not match: ISO images have format iso, templates qcow2 or raw"
        )));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), ApiError> {
    validate::max_len("url", url, MAX_URL)?;
    let scheme_ok = URL_SCHEMES
        .iter()
        .any(|s| url.len() > s.len() && url[..s.len()].eq_ignore_ascii_case(s));
    if !scheme_ok || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(validate::invalid_arg(format!(
            "url[{url}] is not a valid image url; supported schemes are http://, https:// and file:/// (absolute path on the backup storage)"
        )));
    }
    Ok(())
}

/// Backup-storage deletion: drop the image's copy on it; an image left with no copy is removed
/// (records only, spec 03 gaps #2) by the relation's walk.
fn forget_backup_storage(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    uuid: &str,
    bs_uuid: &str,
) -> Result<bool, ApiError> {
    let Some((owner, mut img)) = resource::load::<Image>(txn, uuid)? else {
        return Ok(false);
    };
    img.backup_storage_refs
        .retain(|r| r.backup_storage_uuid != bs_uuid);
    if img.backup_storage_refs.is_empty() {
        return Ok(true);
    }
    resource::save(txn, &owner, &img)?;
    Ok(false)
}

/// Which refs an operation names: all when `only` is empty, else those (each must exist).
fn pick_refs(img: &Image, only: &[String]) -> Result<Vec<usize>, ApiError> {
    if only.is_empty() {
        return Ok((0..img.backup_storage_refs.len()).collect());
    }
    only.iter()
        .map(|b| {
            img.backup_storage_refs
                .iter()
                .position(|r| r.backup_storage_uuid == *b)
                .ok_or_else(|| {
                    validate::invalid_arg(format!(
                        "image[uuid:{}] is not on backup storage[uuid:{b}]",
                        img.uuid
                    ))
                })
        })
        .collect()
}

fn remove_image(txn: &mut dyn StateTxn, ctx: &ApplyCtx, uuid: &str) -> Result<(), ApiError> {
    crate::resource::relations::delete(txn, ctx, "Image", uuid)?;
    Ok(())
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ImageOp,
) -> Result<ImageResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match op {
        ImageOp::Add {
            uuid,
            name,
            description,
            url,
            media_type,
            guest_os_type,
            format,
            platform,
            architecture,
            system,
            virtio,
            backup_storage_uuids,
        } => {
            // Normal accounts may add their own images (`account.api.control`, spec 05).
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            check_url(&url)?;
            let media_type = media_type.unwrap_or_else(|| "RootVolumeTemplate".into());
            let format = format.unwrap_or_else(|| {
                if media_type == "ISO" {
                    "iso".into()
                } else if url.to_ascii_lowercase().ends_with(".raw")
                    || url.to_ascii_lowercase().ends_with(".img")
                {
                    "raw".into()
                } else {
                    "qcow2".into()
                }
            });
            check_media_format(&media_type, &format)?;
            let platform = platform.unwrap_or_else(|| "Linux".into());
            one_of("platform", &platform, PLATFORMS)?;
            let architecture = architecture.unwrap_or_else(|| "x86_64".into());
            one_of(
                "architecture",
                &architecture,
                crate::validate::ARCHITECTURES,
            )?;
            if let Some(g) = &guest_os_type {
                validate::max_len("guestOsType", g, 255)?;
            }
            if backup_storage_uuids.is_empty() {
                return Err(validate::invalid_arg(
                    "field[backupStorageUuids] must be a non-empty list",
                ));
            }
            let mut refs = Vec::with_capacity(backup_storage_uuids.len());
            for b in &backup_storage_uuids {
                let bs = resource::require_ref(txn, "BackupStorage", b)?;
                if bs.field("state") != Some("Enabled") {
                    return Err(validate::op_failure(format!(
                        "backup storage[uuid:{b}] is not Enabled, it cannot take new images"
                    )));
                }
                if refs
                    .iter()
                    .any(|r: &BackupStorageRef| r.backup_storage_uuid == *b)
                {
                    return Err(validate::invalid_arg(format!(
                        "backup storage[uuid:{b}] is listed twice"
                    )));
                }
                refs.push(BackupStorageRef {
                    backup_storage_uuid: b.clone(),
                    install_path: None,
                    status: ImageStatus::Downloading,
                    create_date: now,
                    last_op_date: now,
                });
            }
            if resource::load::<Image>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("Image", &uuid));
            }
            let img = Image {
                uuid,
                name,
                description,
                state: ImageState::Enabled,
                status: ImageStatus::Downloading,
                status_before_delete: None,
                size: 0,
                actual_size: 0,
                md5_sum: None,
                url,
                virtio: virtio.unwrap_or(!matches!(platform.as_str(), "Windows" | "Other")),
                media_type,
                guest_os_type,
                platform,
                architecture,
                format,
                system,
                create_date: now,
                last_op_date: now,
                deleted_at: None,
                backup_storage_refs: refs,
            };
            resource::save(txn, &caller.account_uuid, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
        ImageOp::Update {
            uuid,
            name,
            description,
            guest_os_type,
            media_type,
            format,
            system,
            platform,
            architecture,
            virtio,
        } => {
            let (owner, mut img) = resource::require_visible::<Image>(txn, caller, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                img.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                img.description = Some(d);
            }
            if let Some(g) = guest_os_type {
                validate::max_len("guestOsType", &g, 255)?;
                img.guest_os_type = Some(g);
            }
            let media = media_type.unwrap_or_else(|| img.media_type.clone());
            let fmt = format.unwrap_or_else(|| img.format.clone());
            check_media_format(&media, &fmt)?;
            img.media_type = media;
            img.format = fmt;
            if let Some(p) = platform {
                one_of("platform", &p, PLATFORMS)?;
                img.platform = p;
            }
            if let Some(a) = architecture {
                one_of("architecture", &a, crate::validate::ARCHITECTURES)?;
                img.architecture = a;
            }
            if let Some(s) = system {
                img.system = s;
            }
            if let Some(v) = virtio {
                img.virtio = v;
            }
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
        ImageOp::ChangeState { uuid, event } => {
            let (owner, mut img) = resource::require_visible::<Image>(txn, caller, &uuid)?;
            img.state = match event {
                ImageStateEvent::Enable => ImageState::Enabled,
                ImageStateEvent::Disable => ImageState::Disabled,
            };
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
        ImageOp::Delete {
            uuid,
            backup_storage_uuids,
        } => {
            let Some((owner, mut img)) = resource::load::<Image>(txn, &uuid)? else {
                return Ok(ImageResult::Deleted);
            };
            if !caller.can_see(&owner) {
                resource::require_visible::<Image>(txn, caller, &uuid)?;
            }
            let picked = pick_refs(&img, &backup_storage_uuids)?;
            let policy = deletion_policy(txn)?;
            let all = picked.len() == img.backup_storage_refs.len();
            if policy == DeletionPolicy::Direct {
                if all {
                    remove_image(txn, ctx, &uuid)?;
                    return Ok(ImageResult::Deleted);
                }
                let mut i = 0;
                img.backup_storage_refs.retain(|_| {
                    let keep = !picked.contains(&i);
                    i += 1;
                    keep
                });
            } else {
                for i in &picked {
                    let r = &mut img.backup_storage_refs[*i];
                    r.status = ImageStatus::Deleted;
                    r.last_op_date = now;
                }
                if all && img.status != ImageStatus::Deleted {
                    img.status_before_delete = Some(img.status);
                    img.status = ImageStatus::Deleted;
                    img.deleted_at = Some(now);
                }
            }
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Deleted)
        }
        ImageOp::Expunge {
            uuid,
            backup_storage_uuids,
        } => {
            let (owner, mut img) = resource::require_visible::<Image>(txn, caller, &uuid)?;
            let picked = pick_refs(&img, &backup_storage_uuids)?;
            if picked
                .iter()
                .any(|i| img.backup_storage_refs[*i].status != ImageStatus::Deleted)
            {
                return Err(validate::op_failure(format!(
                    "image[uuid:{uuid}] is not deleted on the given backup storage; only deleted images can be expunged"
                )));
            }
            let mut i = 0;
            img.backup_storage_refs.retain(|_| {
                let keep = !picked.contains(&i);
                i += 1;
                keep
            });
            if img.backup_storage_refs.is_empty() {
                remove_image(txn, ctx, &uuid)?;
            } else {
                img.last_op_date = now;
                resource::save(txn, &owner, &img)?;
            }
            Ok(ImageResult::Deleted)
        }
        ImageOp::Recover {
            uuid,
            backup_storage_uuids,
        } => {
            let (owner, mut img) = resource::require_visible::<Image>(txn, caller, &uuid)?;
            let picked = pick_refs(&img, &backup_storage_uuids)?;
            if !picked
                .iter()
                .any(|i| img.backup_storage_refs[*i].status == ImageStatus::Deleted)
            {
                return Err(validate::op_failure(format!(
                    "image[uuid:{uuid}] is not deleted, nothing to recover"
                )));
            }
            for i in picked {
                let r = &mut img.backup_storage_refs[i];
                if r.status == ImageStatus::Deleted {
                    r.status = if r.install_path.is_some() {
                        ImageStatus::Ready
                    } else {
                        ImageStatus::Downloading
                    };
                    r.last_op_date = now;
                }
            }
            if img.status == ImageStatus::Deleted {
                img.status = img
                    .status_before_delete
                    .take()
                    .unwrap_or(ImageStatus::Ready);
                img.deleted_at = None;
            }
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
        ImageOp::MarkReady {
            uuid,
            backup_storage_uuid,
            install_path,
            size,
            actual_size,
            md5_sum,
        } => {
            caller.require_admin("image download")?;
            let (owner, mut img) = resource::require::<Image>(txn, &uuid)?;
            let idx = pick_refs(&img, std::slice::from_ref(&backup_storage_uuid))?[0];
            if img.backup_storage_refs[idx].status != ImageStatus::Downloading {
                return Err(validate::op_failure(format!(
                    "image[uuid:{uuid}] on backup storage[uuid:{backup_storage_uuid}] is not downloading"
                )));
            }
            let r = &mut img.backup_storage_refs[idx];
            r.status = ImageStatus::Ready;
            r.install_path = Some(install_path);
            r.last_op_date = now;
            img.size = size;
            img.actual_size = actual_size;
            img.md5_sum = Some(md5_sum);
            if img.status == ImageStatus::Downloading {
                img.status = ImageStatus::Ready;
            }
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
        ImageOp::MarkFailed {
            uuid,
            backup_storage_uuid,
        } => {
            caller.require_admin("image download")?;
            let (owner, mut img) = resource::require::<Image>(txn, &uuid)?;
            let idx = pick_refs(&img, std::slice::from_ref(&backup_storage_uuid))?[0];
            img.backup_storage_refs.remove(idx);
            if img.backup_storage_refs.is_empty() {
                remove_image(txn, ctx, &uuid)?;
                return Ok(ImageResult::Deleted);
            }
            img.last_op_date = now;
            resource::save(txn, &owner, &img)?;
            Ok(ImageResult::Inventory(Box::new(img)))
        }
    }
}

/// Request → command for the image calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let bs_list = || -> Result<Vec<String>, Refusal> {
        Ok(params::strings(b, "backupStorageUuids", call)?.unwrap_or_default())
    };
    let op: Result<ImageOp, Refusal> = match call.name.as_str() {
        "AddImage" => (|| {
            Ok(ImageOp::Add {
                uuid: params::new_uuid(b, new_uuid),
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                url: params::required(b, "url", call)?,
                media_type: params::string(b, "mediaType"),
                guest_os_type: params::string(b, "guestOsType"),
                format: params::string(b, "format"),
                platform: params::string(b, "platform"),
                architecture: params::string(b, "architecture"),
                system: params::boolean(b, "system").unwrap_or(false),
                virtio: params::boolean(b, "virtio"),
                backup_storage_uuids: bs_list()?,
            })
        })(),
        "UpdateImage" => (|| {
            Ok(ImageOp::Update {
                uuid: params::required(b, "uuid", call)?,
                name: params::string(b, "name"),
                description: params::string(b, "description"),
                guest_os_type: params::string(b, "guestOsType"),
                media_type: params::string(b, "mediaType"),
                format: params::string(b, "format"),
                system: params::boolean(b, "system"),
                platform: params::string(b, "platform"),
                architecture: params::string(b, "architecture"),
                virtio: params::boolean(b, "virtio"),
            })
        })(),
        "ChangeImageState" => (|| {
            Ok(ImageOp::ChangeState {
                uuid: params::required(b, "uuid", call)?,
                event: params::state_event(
                    b,
                    call,
                    &[
                        ("enable", ImageStateEvent::Enable),
                        ("disable", ImageStateEvent::Disable),
                    ],
                )?,
            })
        })(),
        "DeleteImage" => (|| {
            Ok(ImageOp::Delete {
                uuid: params::required(b, "uuid", call)?,
                backup_storage_uuids: bs_list()?,
            })
        })(),
        "ExpungeImage" => (|| {
            Ok(ImageOp::Expunge {
                uuid: params::required(b, "imageUuid", call)?,
                backup_storage_uuids: bs_list()?,
            })
        })(),
        "RecoverImage" => (|| {
            Ok(ImageOp::Recover {
                uuid: params::required(b, "imageUuid", call)?,
                backup_storage_uuids: bs_list()?,
            })
        })(),
        _ => return None,
    };
    Some(op.map(|op| op.command(caller.clone())))
}

/// The image family.
pub struct Images;

impl crate::family::Family for Images {
    type Op = ImageOp;
    type Out = ImageResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "image",
            tables: &[TABLE],
            kinds: &[KindDecl {
                relations: &[Relation {
                    field: "backupStorageRefs.backupStorageUuid",
                    parent: "BackupStorage",
                    on_delete: OnDelete::DetachOrDelete(forget_backup_storage),
                    on_parent_state: None,
                }],
                ..KindDecl::new("Image", TABLE, &["ImageVO"])
            }],
            calls: &[
                CallDecl::new(
                    "AddImage",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/images", P)],
                )
                .creating("ImageVO"),
                CallDecl::new(
                    "UpdateImage",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/images/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeImageState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/images/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteImage",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/images/{uuid}", N)],
                ),
                CallDecl::new(
                    "ExpungeImage",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/images/{imageUuid}/actions", A)],
                ),
                CallDecl::new(
                    "RecoverImage",
                    |p| op_plan(plan, p),
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
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: ImageOp,
    ) -> Result<ImageResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &ImageResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::make_bs;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    fn run(t: &mut MemTxn, op: ImageOp) -> Result<ImageResult, ApiError> {
        apply(t, &ctx(10), &Caller::admin(), op)
    }

    fn add_op(n: u32, url: &str, bss: &[String]) -> ImageOp {
        ImageOp::Add {
            uuid: u(n),
            name: format!("img-{n}"),
            description: None,
            url: url.into(),
            media_type: None,
            guest_os_type: None,
            format: None,
            platform: None,
            architecture: None,
            system: false,
            virtio: None,
            backup_storage_uuids: bss.to_vec(),
        }
    }

    fn ready(t: &mut MemTxn, img: &str, bs: &str) -> Result<ImageResult, ApiError> {
        run(
            t,
            ImageOp::MarkReady {
                uuid: img.into(),
                backup_storage_uuid: bs.into(),
                install_path: format!("/zstack_bs/{img}.qcow2"),
                size: 1 << 30,
                actual_size: 300 << 20,
                md5_sum: "d41d8cd98f00b204e9800998ecf8427e".into(),
            },
        )
    }

    fn set_policy(t: &mut MemTxn, p: &str) {
        crate::global_config::apply(
            t,
            &Caller::admin(),
            crate::global_config::GlobalConfigOp::Update {
                category: "image".into(),
                name: "deletionPolicy".into(),
                value: p.into(),
            },
        )
        .unwrap();
    }

    fn code(r: Result<ImageResult, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    fn load(t: &MemTxn, n: u32) -> Option<Image> {
        resource::load::<Image>(t, &u(n)).unwrap().map(|(_, i)| i)
    }

    #[test]
    fn add_download_update_state_and_shape() {
        let mut t = MemTxn::default();
        let bs = make_bs(&mut t, 30);
        let r = run(
            &mut t,
            add_op(50, "http://host/t.qcow2", std::slice::from_ref(&bs)),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&r.inventory().unwrap()).unwrap(),
            format!(
                r#"{{"uuid":"{img}","name":"img-50","state":"Enabled","status":"Downloading","size":0,"actualSize":0,"url":"http://host/t.qcow2","mediaType":"RootVolumeTemplate","type":"zstack","platform":"Linux","architecture":"x86_64","format":"qcow2","system":false,"virtio":true,"createDate":"{d}","lastOpDate":"{d}","backupStorageRefs":[{{"imageUuid":"{img}","backupStorageUuid":"{bs}","status":"Downloading","createDate":"{d}","lastOpDate":"{d}"}}]}}"#,
                img = u(50),
                d = java_date(10_000)
            )
        );
        let ImageResult::Inventory(img) = ready(&mut t, &u(50), &bs).unwrap() else {
            panic!()
        };
        assert_eq!((img.status, img.size), (ImageStatus::Ready, 1 << 30));
        let full = resource::full_inventory(&t, img.as_ref()).unwrap();
        assert_eq!(full["systemTags"], json!([]));
        assert_eq!(
            code(ready(&mut t, &u(50), &bs)),
            "SYS.1006",
            "not downloading"
        );
        let ImageResult::Inventory(img) = run(
            &mut t,
            ImageOp::Update {
                uuid: u(50),
                name: Some("centos".into()),
                description: None,
                guest_os_type: Some("CentOS 7".into()),
                media_type: None,
                format: None,
                system: None,
                platform: Some("Windows".into()),
                architecture: None,
                virtio: Some(false),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((img.platform.as_str(), img.virtio), ("Windows", false));
        let ImageResult::Inventory(img) = run(
            &mut t,
            ImageOp::ChangeState {
                uuid: u(50),
                event: ImageStateEvent::Disable,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(img.state, ImageState::Disabled);
        // An ISO gets format iso by default.
        let mut iso = add_op(51, "file:///data/cd.iso", std::slice::from_ref(&bs));
        if let ImageOp::Add { media_type, .. } = &mut iso {
            *media_type = Some("ISO".into());
        }
        let ImageResult::Inventory(i) = run(&mut t, iso).unwrap() else {
            panic!()
        };
        assert_eq!(i.format, "iso");
        // A failed download of the only copy removes the image.
        run(
            &mut t,
            ImageOp::MarkFailed {
                uuid: u(51),
                backup_storage_uuid: bs,
            },
        )
        .unwrap();
        assert!(load(&t, 51).is_none());
    }

    #[test]
    fn delete_policies_recover_expunge() {
        let mut t = MemTxn::default();
        let bs = make_bs(&mut t, 30);
        let bs2 = make_bs(&mut t, 31);
        let both = [bs.clone(), bs2.clone()];
        // Delay (the default): deleted, recoverable, expungeable.
        run(&mut t, add_op(50, "http://h/a.qcow2", &both)).unwrap();
        ready(&mut t, &u(50), &bs).unwrap();
        run(
            &mut t,
            ImageOp::Delete {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
        )
        .unwrap();
        let img = load(&t, 50).unwrap();
        assert_eq!(img.status, ImageStatus::Deleted);
        assert_eq!(img.deleted_at, Some(10_000));
        let ImageResult::Inventory(img) = run(
            &mut t,
            ImageOp::Recover {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(img.status, ImageStatus::Ready);
        assert_eq!(img.backup_storage_refs[0].status, ImageStatus::Ready);
        assert_eq!(img.backup_storage_refs[1].status, ImageStatus::Downloading);
        // Partial delete: only one copy.
        run(
            &mut t,
            ImageOp::Delete {
                uuid: u(50),
                backup_storage_uuids: vec![bs2.clone()],
            },
        )
        .unwrap();
        let img = load(&t, 50).unwrap();
        assert_eq!(img.status, ImageStatus::Ready);
        run(
            &mut t,
            ImageOp::Expunge {
                uuid: u(50),
                backup_storage_uuids: vec![bs2.clone()],
            },
        )
        .unwrap();
        assert_eq!(load(&t, 50).unwrap().backup_storage_refs.len(), 1);
        run(
            &mut t,
            ImageOp::Delete {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
        )
        .unwrap();
        run(
            &mut t,
            ImageOp::Expunge {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
        )
        .unwrap();
        assert!(load(&t, 50).is_none());
        // Direct: gone at once.
        set_policy(&mut t, "Direct");
        run(&mut t, add_op(52, "http://h/b.qcow2", &both)).unwrap();
        run(
            &mut t,
            ImageOp::Delete {
                uuid: u(52),
                backup_storage_uuids: vec![],
            },
        )
        .unwrap();
        assert!(load(&t, 52).is_none());
        // Deleting a BS drops the copies; an image left with none is removed.
        run(&mut t, add_op(53, "http://h/c.qcow2", &both)).unwrap();
        run(
            &mut t,
            add_op(54, "http://h/d.qcow2", std::slice::from_ref(&bs)),
        )
        .unwrap();
        crate::testing::delete_bs(&mut t, 11, &bs);
        assert!(load(&t, 54).is_none());
        assert_eq!(load(&t, 53).unwrap().backup_storage_refs.len(), 1);
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let bs = make_bs(&mut t, 30);
        let one = std::slice::from_ref(&bs);
        run(&mut t, add_op(50, "http://h/a.qcow2", one)).unwrap();
        let before = t.tables.clone();
        for url in ["ftp://h/a", "h/a.qcow2", "file://relative", "http://"] {
            assert_eq!(code(run(&mut t, add_op(55, url, one))), "SYS.1007", "{url}");
        }
        assert_eq!(code(run(&mut t, add_op(55, "http://h/a", &[]))), "SYS.1007");
        assert_eq!(
            code(run(&mut t, add_op(55, "http://h/a", &[u(99)]))),
            "SYS.1003"
        );
        assert_eq!(
            code(run(&mut t, add_op(50, "http://h/a", one))),
            "SYS.1007",
            "dup"
        );
        let mut bad = add_op(55, "http://h/a", one);
        if let ImageOp::Add {
            format, media_type, ..
        } = &mut bad
        {
            *format = Some("iso".into());
            *media_type = Some("RootVolumeTemplate".into());
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "iso template");
        let mut bad = add_op(55, "http://h/a", one);
        if let ImageOp::Add { format, .. } = &mut bad {
            *format = Some("vmdk".into());
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "format");
        let mut bad = add_op(55, "http://h/a", one);
        if let ImageOp::Add { platform, .. } = &mut bad {
            *platform = Some("BeOS".into());
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "platform");
        assert_eq!(
            code(run(
                &mut t,
                ImageOp::Expunge {
                    uuid: u(50),
                    backup_storage_uuids: vec![]
                }
            )),
            "SYS.1006",
            "expunge a live image"
        );
        assert_eq!(
            code(run(
                &mut t,
                ImageOp::Recover {
                    uuid: u(50),
                    backup_storage_uuids: vec![]
                }
            )),
            "SYS.1006",
            "recover a live image"
        );
        assert_eq!(
            code(run(
                &mut t,
                ImageOp::Delete {
                    uuid: u(50),
                    backup_storage_uuids: vec![u(99)]
                }
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                ImageOp::ChangeState {
                    uuid: u(99),
                    event: ImageStateEvent::Enable
                }
            )),
            "SYS.1003"
        );
        let normal = normal();
        for op in [
            ImageOp::Delete {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
            ImageOp::ChangeState {
                uuid: u(50),
                event: ImageStateEvent::Disable,
            },
            ImageOp::Update {
                uuid: u(50),
                name: Some("mine".into()),
                description: None,
                guest_os_type: None,
                media_type: None,
                format: None,
                system: None,
                platform: None,
                architecture: None,
                virtio: None,
            },
            ImageOp::MarkFailed {
                uuid: u(50),
                backup_storage_uuid: bs.clone(),
            },
        ] {
            assert_eq!(code(apply(&mut t, &ctx(11), &normal, op)), "ID.1002");
        }
        // A disabled BS takes no new image.
        crate::testing::change_bs_state(
            &mut t,
            11,
            &bs,
            crate::resource::generic::EnableEvent::Disable,
        );
        let before2 = t.tables.clone();
        assert_eq!(code(run(&mut t, add_op(56, "http://h/x", one))), "SYS.1006");
        assert_eq!(t.tables, before2);
        assert_ne!(t.tables, before);
        // A normal account may add its own image.
        crate::testing::change_bs_state(
            &mut t,
            12,
            &bs,
            crate::resource::generic::EnableEvent::Enable,
        );
        apply(&mut t, &ctx(13), &normal, add_op(57, "http://h/y", one)).unwrap();
        assert_eq!(
            resource::load::<Image>(&t, &u(57)).unwrap().unwrap().0,
            normal.account_uuid
        );
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Images.
        m.push(ok(
            "AddImage",
            &admin,
            json!({"name": "img2", "url": "http://h/img2.qcow2", "format": "qcow2", "backupStorageUuids": [i.bs]}),
            |h, r| {
                assert_eq!(r["inventory"]["name"], "img2");
                assert_eq!(h.count("QueryImage", eq("name", "img2")), 1);
            },
        ));
        m.push(no(
            "AddImage",
            &admin,
            json!({"name": "x", "url": "ftp://h/x", "backupStorageUuids": [i.bs]}),
            Code::InvalidArgument,
        ));
        m.push(no(
            "AddImage",
            &admin,
            json!({"name": "x", "url": "http://h/x.qcow2", "backupStorageUuids": [missing()]}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "UpdateImage",
            &admin,
            json!({"uuid": i.image, "platform": "Linux"}),
            |_, r| assert_eq!(r["inventory"]["platform"], "Linux"),
        ));
        m.push(no(
            "UpdateImage",
            &admin,
            json!({"uuid": missing(), "platform": "Linux"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangeImageState",
            &admin,
            json!({"uuid": i.image, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ));
        m.push(no(
            "ChangeImageState",
            &admin,
            json!({"uuid": i.image, "stateEvent": "destroy"}),
            Code::InvalidArgument,
        ));
        {
            let img = i.image.clone();
            m.push(ok(
                "DeleteImage",
                &admin,
                json!({"uuid": i.image}),
                move |h, _| assert_eq!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
            ));
        }
        m.push(no(
            "DeleteImage",
            &tenant,
            json!({"uuid": i.image}),
            Code::PermissionDenied,
        ));
        {
            let img = i.deleted_image.clone();
            m.push(ok(
                "ExpungeImage",
                &admin,
                json!({"imageUuid": i.deleted_image}),
                move |h, _| assert_eq!(h.count("QueryImage", eq("uuid", &img)), 0),
            ));
        }
        m.push(no(
            "ExpungeImage",
            &admin,
            json!({"imageUuid": i.image}),
            Code::OperationFailure,
        ));
        {
            let img = i.deleted_image.clone();
            m.push(ok(
                "RecoverImage",
                &admin,
                json!({"imageUuid": i.deleted_image}),
                move |h, _| assert_ne!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
            ));
        }
        m.push(no(
            "RecoverImage",
            &admin,
            json!({"imageUuid": missing()}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "QueryImage",
            &admin,
            json!({"conditions": eq("status", "Deleted")}),
            |_, r| assert_eq!(r["inventories"][0]["name"], "gone"),
        ));
        m.push(no("QueryImage", &admin, bad_query(), Code::InvalidArgument));
        m
    }
}
