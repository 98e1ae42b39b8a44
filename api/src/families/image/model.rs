//! Image records, commands, the field rules and their apply (what touches the copies is in
//! `copies.rs`).

use serde::Deserialize;
use serde::Serialize;

use super::copies;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The image table.
pub const TABLE: &str = "image";
/// The image kind.
pub const KIND: &str = "Image";
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
    /// Where the store serves this copy for download (`ExportImageFromBackupStorage`), until
    /// the export is deleted.
    #[serde(default)]
    pub export_url: Option<String>,
    /// md5 of the exported file.
    #[serde(default)]
    pub export_md5_sum: Option<String>,
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
    /// A disabled image creates no new VMs; existing VMs are unaffected.
    pub state: EnableState,
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

crate::described_record!(Image);

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
        match crate::settings::value(txn, "image", "deletionPolicy")?.as_str() {
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
        /// New name and description.
        rename: Rename,
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
        /// enable or disable.
        event: EnableEvent,
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
    /// `ExportImageFromBackupStorage`: the first step of its flow, which checks that the copy
    /// can be exported; writes nothing.
    Export {
        /// Image.
        uuid: String,
        /// The BS holding the copy.
        backup_storage_uuid: String,
        /// `raw` or `qcow2` (absent: as stored).
        format: Option<String>,
    },
    /// `DeleteExportedImageFromBackupStorage`: the first step of its flow; writes nothing.
    DeleteExport {
        /// Image.
        uuid: String,
        /// The BS holding the copy.
        backup_storage_uuid: String,
    },
    /// Internal (export flows): the copy's export as its store reported it (`None`: removed).
    MarkExported {
        /// Image.
        uuid: String,
        /// The BS holding the copy.
        backup_storage_uuid: String,
        /// Where it is served.
        url: Option<String>,
        /// md5 of the exported file.
        md5: Option<String>,
    },
}

/// Answer of an image command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageResult {
    /// The image after the change.
    Inventory(Box<Image>),
    /// Deleted (or already absent); also a deleted export (its event carries nothing).
    Deleted,
    /// `ExportImageFromBackupStorage`: where the copy can be downloaded.
    Exported {
        /// `http://<store>:<port>/exports/...`.
        image_url: String,
        /// md5 of the exported file.
        md5: String,
    },
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

/// The format an `AddImage` without one gets: from the media type, else from the url.
fn default_format(media_type: &str, url: &str) -> String {
    let url = url.to_ascii_lowercase();
    if media_type == "ISO" {
        "iso".into()
    } else if url.ends_with(".raw") || url.ends_with(".img") {
        "raw".into()
    } else {
        "qcow2".into()
    }
}

/// A copy on each named BS, `Downloading`: every BS must exist, be Enabled and be named once.
fn new_copies(
    txn: &dyn StateTxn,
    backup_storage_uuids: &[String],
    now: u64,
) -> Result<Vec<BackupStorageRef>, ApiError> {
    if backup_storage_uuids.is_empty() {
        return Err(validate::invalid_arg(
            "field[backupStorageUuids] must be a non-empty list",
        ));
    }
    let mut refs: Vec<BackupStorageRef> = Vec::with_capacity(backup_storage_uuids.len());
    for b in backup_storage_uuids {
        let bs = resource::require_ref(txn, "BackupStorage", b)?;
        if bs.field("state") != Some("Enabled") {
            return Err(validate::op_failure(format!(
                "backup storage[uuid:{b}] is not Enabled, it cannot take new images"
            )));
        }
        if refs.iter().any(|r| r.backup_storage_uuid == *b) {
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
            export_url: None,
            export_md5_sum: None,
        });
    }
    Ok(refs)
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ImageOp,
) -> Result<ImageResult, ApiError> {
    let now = ctx.proposed_at_ms;
    let img = match op {
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
            generic::check_fields(&uuid, &name, description.as_deref())?;
            check_url(&url)?;
            let media_type = media_type.unwrap_or_else(|| "RootVolumeTemplate".into());
            let format = format.unwrap_or_else(|| default_format(&media_type, &url));
            check_media_format(&media_type, &format)?;
            let platform = platform.unwrap_or_else(|| "Linux".into());
            one_of("platform", &platform, PLATFORMS)?;
            let architecture = architecture.unwrap_or_else(|| "x86_64".into());
            one_of("architecture", &architecture, validate::ARCHITECTURES)?;
            if let Some(g) = &guest_os_type {
                validate::max_len("guestOsType", g, 255)?;
            }
            let refs = new_copies(txn, &backup_storage_uuids, now)?;
            resource::refuse_duplicate::<Image>(txn, &uuid)?;
            let img = Image {
                uuid,
                name,
                description,
                state: EnableState::Enabled,
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
            img
        }
        ImageOp::Update {
            uuid,
            rename,
            guest_os_type,
            media_type,
            format,
            system,
            platform,
            architecture,
            virtio,
        } => generic::modify_visible(txn, ctx, caller, &uuid, |_, img: &mut Image| {
            rename.apply_to(img)?;
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
                one_of("architecture", &a, validate::ARCHITECTURES)?;
                img.architecture = a;
            }
            if let Some(s) = system {
                img.system = s;
            }
            if let Some(v) = virtio {
                img.virtio = v;
            }
            Ok(())
        })?,
        ImageOp::ChangeState { uuid, event } => {
            generic::modify_visible(txn, ctx, caller, &uuid, |_, img: &mut Image| {
                img.state = event.target();
                Ok(())
            })?
        }
        ImageOp::Delete {
            uuid,
            backup_storage_uuids,
        } => {
            copies::delete(txn, ctx, caller, &uuid, &backup_storage_uuids)?;
            return Ok(ImageResult::Deleted);
        }
        ImageOp::Expunge {
            uuid,
            backup_storage_uuids,
        } => {
            copies::expunge(txn, ctx, caller, &uuid, &backup_storage_uuids)?;
            return Ok(ImageResult::Deleted);
        }
        ImageOp::Recover {
            uuid,
            backup_storage_uuids,
        } => copies::recover(txn, ctx, caller, &uuid, &backup_storage_uuids)?,
        ImageOp::MarkReady {
            uuid,
            backup_storage_uuid,
            install_path,
            size,
            actual_size,
            md5_sum,
        } => {
            caller.require_admin("image download")?;
            let done = copies::Downloaded {
                install_path,
                size,
                actual_size,
                md5_sum,
            };
            copies::mark_ready(txn, ctx, &uuid, &backup_storage_uuid, done)?
        }
        ImageOp::MarkFailed {
            uuid,
            backup_storage_uuid,
        } => {
            caller.require_admin("image download")?;
            match copies::mark_failed(txn, ctx, &uuid, &backup_storage_uuid)? {
                Some(img) => img,
                None => return Ok(ImageResult::Deleted),
            }
        }
        ImageOp::Export {
            uuid,
            backup_storage_uuid,
            format,
        } => super::export::check_export(
            txn,
            caller,
            &uuid,
            &backup_storage_uuid,
            format.as_deref(),
        )?,
        ImageOp::DeleteExport {
            uuid,
            backup_storage_uuid,
        } => super::export::check_unexport(txn, caller, &uuid, &backup_storage_uuid)?,
        ImageOp::MarkExported {
            uuid,
            backup_storage_uuid,
            url,
            md5,
        } => {
            caller.require_admin("image export")?;
            match super::export::mark_exported(txn, ctx, &uuid, &backup_storage_uuid, url, md5)? {
                Some(img) => img,
                None => return Ok(ImageResult::Deleted),
            }
        }
    };
    Ok(ImageResult::Inventory(Box::new(img)))
}
