//! Exporting a copy for download, as flows the leader runs (ZStack's image store export: the
//! store serves the file over plain HTTP under an unguessable path, which is the capability):
//!
//! `image.export` (ExportImageFromBackupStorage)
//! 1. `check-export` (commit): the call's command checks the copy can be exported (the
//!    caller's image, on that store, Ready; the format); writes nothing.
//! 2. `export` (effect, receiver `imagestore`): the store's agent places the file (the same
//!    bytes, or converted with `qemu-img`) under its export directory and answers the URL and
//!    md5; undo removes it again.
//! 3. `exported` (commit): the copy's `exportUrl`/`exportMd5Sum`; the event answers
//!    `imageUrl`. Refused when the copy stopped being Ready meanwhile (undo removes the file).
//!
//! `image.unexport` (DeleteExportedImageFromBackupStorage): the check, the agent removing the
//! file (idempotent), then the record forgetting the URL: a store that cannot be reached
//! fails the call with the URL still recorded, so the operator never believes a file gone
//! that is still served.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::export::export_format;
use super::model::Image;
use super::model::ImageOp;
use super::model::ImageResult;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// ExportImageFromBackupStorage's flow.
pub const EXPORT: &str = "image.export";
/// DeleteExportedImageFromBackupStorage's flow.
pub const UNEXPORT: &str = "image.unexport";
/// Effect (receiver [`super::flows::RECEIVER`]): place the copy under the export directory.
pub const EXPORT_ACTION: &str = "export";
/// Effect: remove an exported copy (nothing exported is a success).
pub const UNEXPORT_ACTION: &str = "unexport";
/// Var: what the store serves (JSON of [`Exported`]), set by `export`.
pub const EXPORTED: &str = "exported";

/// What a store answered an export with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exported {
    /// `http://<store hostname>:<port>/exports/...`.
    pub url: String,
    /// md5 of the served file.
    pub md5: String,
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("image export flow without {k}")))
}

/// Step 1 of both flows: the call's command, and the copy it names in the vars.
fn check(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let command: Command = serde_json::from_str(var(vars, crate::flow::COMMAND_VAR)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    let (bs, format) = match command.innermost() {
        Command::Image(c) => match &*c.op {
            ImageOp::Export {
                backup_storage_uuid,
                format,
                ..
            } => (backup_storage_uuid.clone(), format.clone()),
            ImageOp::DeleteExport {
                backup_storage_uuid,
                ..
            } => (backup_storage_uuid.clone(), None),
            other => {
                return Err(validate::invalid_arg(format!(
                    "an export flow runs {other:?}"
                )))
            }
        },
        other => {
            return Err(validate::invalid_arg(format!(
                "an export flow runs {other:?}"
            )))
        }
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let img: Image = match resp.innermost() {
        Response::Image(ImageResult::Inventory(i)) => (**i).clone(),
        other => {
            return Err(validate::invalid_arg(format!(
                "the export check answered {other:?}, not an image"
            )))
        }
    };
    vars.insert("image_uuid".into(), img.uuid.clone());
    vars.insert("name".into(), img.name.clone());
    vars.insert("bs_uuid".into(), bs);
    vars.insert("format".into(), export_format(&img, format.as_deref())?);
    Ok(None)
}

fn request(action: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    Ok(EffectRequest {
        receiver: super::flows::RECEIVER.into(),
        action: action.into(),
        payload: json!({
            "imageUuid": var(v, "image_uuid")?,
            "backupStorageUuid": var(v, "bs_uuid")?,
            "format": var(v, "format")?,
            "name": var(v, "name")?,
        })
        .to_string(),
    })
}

fn mark(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    v: &Vars,
    exported: Option<Exported>,
) -> Result<ImageResult, ApiError> {
    super::model::apply(
        txn,
        ctx,
        caller,
        ImageOp::MarkExported {
            uuid: var(v, "image_uuid")?.to_string(),
            backup_storage_uuid: var(v, "bs_uuid")?.to_string(),
            url: exported.as_ref().map(|e| e.url.clone()),
            md5: exported.map(|e| e.md5),
        },
    )
}

fn exported(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let e: Exported = serde_json::from_str(var(vars, EXPORTED)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable export result: {e}")))?;
    mark(txn, ctx, caller, vars, Some(e.clone()))?;
    Ok(Some(Response::Image(ImageResult::Exported {
        image_url: e.url,
        md5: e.md5,
    })))
}

fn unexported(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    mark(txn, ctx, caller, vars, None)?;
    Ok(Some(Response::Image(ImageResult::Deleted)))
}

/// `image.export`.
pub const EXPORT_FLOW: FlowDef = FlowDef {
    name: EXPORT,
    steps: &[
        StepDef {
            name: "check-export",
            action: Action::Commit(check),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "export",
            action: Action::Effect(|v| request(EXPORT_ACTION, v)),
            undo: Undo::Effect(|v| request(UNEXPORT_ACTION, v)),
        },
        StepDef {
            name: "exported",
            action: Action::Commit(exported),
            undo: Undo::Nothing,
        },
    ],
};

/// `image.unexport`.
pub const UNEXPORT_FLOW: FlowDef = FlowDef {
    name: UNEXPORT,
    steps: &[
        StepDef {
            name: "check-unexport",
            action: Action::Commit(check),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "unexport",
            action: Action::Effect(|v| request(UNEXPORT_ACTION, v)),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "unexported",
            action: Action::Commit(unexported),
            undo: Undo::Nothing,
        },
    ],
};
