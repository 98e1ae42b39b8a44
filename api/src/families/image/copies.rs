//! The copies of an image on backup storage: delete under the deletion policy, recover,
//! expunge, the download duty's results, and the copy a deleted BS takes with it. An image is
//! removed with its last copy.

use super::model::deletion_policy;
use super::model::DeletionPolicy;
use super::model::Image;
use super::model::ImageStatus;
use super::model::KIND;
use crate::resource;
use crate::resource::generic;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Backup-storage deletion: drop the image's copy on it; an image left with no copy is removed
/// (records only, spec 03 gaps #2) by the relation's walk.
pub(super) fn forget_backup_storage(
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

/// The one copy on `bs_uuid`.
fn pick_one(img: &Image, bs_uuid: &str) -> Result<usize, ApiError> {
    Ok(pick_refs(img, &[bs_uuid.to_string()])?[0])
}

/// Drop the picked copies.
fn drop_refs(img: &mut Image, picked: &[usize]) {
    let mut i = 0;
    img.backup_storage_refs.retain(|_| {
        let keep = !picked.contains(&i);
        i += 1;
        keep
    });
}

/// Save what is left of an image, or remove it with its last copy (`None`).
fn keep_or_remove(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    owner: &str,
    mut img: Image,
) -> Result<Option<Image>, ApiError> {
    if img.backup_storage_refs.is_empty() {
        relations::delete(txn, ctx, KIND, &img.uuid)?;
        return Ok(None);
    }
    img.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, owner, &img)?;
    Ok(Some(img))
}

/// `DeleteImage`: `Direct` drops the copies, `Delay`/`Never` mark them deleted (and the image,
/// when all of them are). Deleting an image that is gone already is a success.
pub(super) fn delete(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    only: &[String],
) -> Result<(), ApiError> {
    let Some((owner, mut img)) = resource::load::<Image>(txn, uuid)? else {
        return Ok(());
    };
    if !caller.can_see(&owner) {
        resource::require_visible::<Image>(txn, caller, uuid)?;
    }
    let picked = pick_refs(&img, only)?;
    let all = picked.len() == img.backup_storage_refs.len();
    if deletion_policy(txn)? == DeletionPolicy::Direct {
        drop_refs(&mut img, &picked);
    } else {
        let now = ctx.proposed_at_ms;
        for i in &picked {
            let r = &mut img.backup_storage_refs[*i];
            r.status = ImageStatus::Deleted;
            r.last_op_date = now;
            // A deleted image is no longer served; the remove flow revokes the file.
            r.export_url = None;
            r.export_md5_sum = None;
        }
        if all && img.status != ImageStatus::Deleted {
            img.status_before_delete = Some(img.status);
            img.status = ImageStatus::Deleted;
            img.deleted_at = Some(now);
        }
    }
    keep_or_remove(txn, ctx, &owner, img)?;
    Ok(())
}

/// `ExpungeImage`: only deleted copies go for good.
pub(super) fn expunge(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    only: &[String],
) -> Result<(), ApiError> {
    let (owner, mut img) = resource::require_visible::<Image>(txn, caller, uuid)?;
    let picked = pick_refs(&img, only)?;
    if picked
        .iter()
        .any(|i| img.backup_storage_refs[*i].status != ImageStatus::Deleted)
    {
        return Err(validate::op_failure(format!(
            "image[uuid:{uuid}] is not deleted on the given backup storage; only deleted images can be expunged"
        )));
    }
    drop_refs(&mut img, &picked);
    keep_or_remove(txn, ctx, &owner, img)?;
    Ok(())
}

/// `RecoverImage`: deleted copies come back as they were (Ready once downloaded).
pub(super) fn recover(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    only: &[String],
) -> Result<Image, ApiError> {
    let now = ctx.proposed_at_ms;
    generic::modify_visible(txn, ctx, caller, uuid, |_, img: &mut Image| {
        let picked = pick_refs(img, only)?;
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
        Ok(())
    })
}

/// What the agent reports of a finished download.
pub(super) struct Downloaded {
    /// Where the BS keeps it.
    pub(super) install_path: String,
    /// Virtual size.
    pub(super) size: u64,
    /// Bytes on disk.
    pub(super) actual_size: u64,
    /// MD5 of the file.
    pub(super) md5_sum: String,
}

/// The download duty: the copy on `bs_uuid` is Ready (and so is the image, the first time).
pub(super) fn mark_ready(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    bs_uuid: &str,
    done: Downloaded,
) -> Result<Image, ApiError> {
    let now = ctx.proposed_at_ms;
    generic::modify(txn, ctx, uuid, |_, img: &mut Image| {
        let idx = pick_one(img, bs_uuid)?;
        if img.backup_storage_refs[idx].status != ImageStatus::Downloading {
            return Err(validate::op_failure(format!(
                "image[uuid:{uuid}] on backup storage[uuid:{bs_uuid}] is not downloading"
            )));
        }
        let r = &mut img.backup_storage_refs[idx];
        r.status = ImageStatus::Ready;
        r.install_path = Some(done.install_path);
        r.last_op_date = now;
        img.size = done.size;
        img.actual_size = done.actual_size;
        img.md5_sum = Some(done.md5_sum);
        if img.status == ImageStatus::Downloading {
            img.status = ImageStatus::Ready;
        }
        Ok(())
    })
}

/// The download duty: the copy on `bs_uuid` failed and is dropped; `None` when it was the
/// last one and the image went with it.
pub(super) fn mark_failed(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    bs_uuid: &str,
) -> Result<Option<Image>, ApiError> {
    let (owner, mut img) = resource::require::<Image>(txn, uuid)?;
    let idx = pick_one(&img, bs_uuid)?;
    img.backup_storage_refs.remove(idx);
    keep_or_remove(txn, ctx, &owner, img)
}
