//! Exporting a copy of an image for download (`ExportImageFromBackupStorage`) and revoking
//! it (`DeleteExportedImageFromBackupStorage`): the rules the flows' first steps check before
//! anything reaches a store, and the record of what the store serves (`exportUrl`,
//! `exportMd5Sum` of the copy, as ZStack's `ImageBackupStorageRefVO` keeps them).

use super::model::Image;
use super::model::ImageStatus;
use crate::resource;
use crate::resource::generic;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Formats a copy can be exported as (ZStack's `exportFormat` valid values).
pub const EXPORT_FORMATS: &[&str] = &["raw", "qcow2"];

/// The position of the copy on `bs_uuid`, after checking the store exists.
fn copy_on(txn: &dyn StateTxn, img: &Image, bs_uuid: &str) -> Result<usize, ApiError> {
    resource::require_ref(txn, "BackupStorage", bs_uuid)?;
    img.backup_storage_refs
        .iter()
        .position(|r| r.backup_storage_uuid == bs_uuid)
        .ok_or_else(|| {
            validate::invalid_arg(format!(
                "image[uuid:{}] is not on backup storage[uuid:{bs_uuid}]",
                img.uuid
            ))
        })
}

/// The format the copy is exported as: `format`, or the image's own.
pub(super) fn export_format(img: &Image, format: Option<&str>) -> Result<String, ApiError> {
    let Some(f) = format else {
        return Ok(img.format.clone());
    };
    if !EXPORT_FORMATS.contains(&f) {
        return Err(validate::invalid_arg(format!(
            "valid values for field[exportFormat] are {EXPORT_FORMATS:?}, but {f} found"
        )));
    }
    if img.format == "iso" {
        return Err(validate::invalid_arg(format!(
            "image[uuid:{}] is an ISO; it is exported as it is, without exportFormat",
            img.uuid
        )));
    }
    Ok(f.to_string())
}

/// `ExportImageFromBackupStorage`'s checks: the caller's image, a copy on that store, Ready.
pub(super) fn check_export(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
    bs_uuid: &str,
    format: Option<&str>,
) -> Result<Image, ApiError> {
    let (_, img) = resource::require_visible::<Image>(txn, caller, uuid)?;
    let i = copy_on(txn, &img, bs_uuid)?;
    let status = img.backup_storage_refs[i].status;
    if status != ImageStatus::Ready {
        return Err(validate::op_failure(format!(
            "image[uuid:{uuid}] on backup storage[uuid:{bs_uuid}] is {status:?}, not Ready; only a Ready image can be exported"
        )));
    }
    export_format(&img, format)?;
    Ok(img)
}

/// `DeleteExportedImageFromBackupStorage`'s checks: the caller's image, a copy on that store
/// (with or without an export: deleting none is a success, as ZStack answers it).
pub(super) fn check_unexport(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
    bs_uuid: &str,
) -> Result<Image, ApiError> {
    let (_, img) = resource::require_visible::<Image>(txn, caller, uuid)?;
    copy_on(txn, &img, bs_uuid)?;
    Ok(img)
}

/// Record (or, with `url` `None`, forget) the export of the copy on `bs_uuid`. An export is
/// recorded only on a Ready copy (its flow rolls the file back otherwise); forgetting the
/// export of an image or copy that is gone is nothing to do (`None`).
pub(super) fn mark_exported(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    bs_uuid: &str,
    url: Option<String>,
    md5: Option<String>,
) -> Result<Option<Image>, ApiError> {
    let Some((_, img)) = resource::load::<Image>(txn, uuid)? else {
        return match url {
            None => Ok(None),
            Some(_) => Err(resource::not_found::<Image>(uuid)),
        };
    };
    let Some(i) = img
        .backup_storage_refs
        .iter()
        .position(|r| r.backup_storage_uuid == bs_uuid)
    else {
        return match url {
            None => Ok(None),
            Some(_) => Err(validate::op_failure(format!(
                "image[uuid:{uuid}] is no longer on backup storage[uuid:{bs_uuid}]"
            ))),
        };
    };
    if url.is_some() && img.backup_storage_refs[i].status != ImageStatus::Ready {
        return Err(validate::op_failure(format!(
            "image[uuid:{uuid}] on backup storage[uuid:{bs_uuid}] is no longer Ready"
        )));
    }
    let now = ctx.proposed_at_ms;
    generic::modify(txn, ctx, uuid, |_, img: &mut Image| {
        let r = &mut img.backup_storage_refs[i];
        r.export_url = url;
        r.export_md5_sum = md5;
        r.last_op_date = now;
        Ok(())
    })
    .map(Some)
}
