//! `AddImage` as a flow the leader runs (spec 02 §9):
//! 1. `create-image` (commit): the call's command records the image `Downloading` on each
//!    named backup storage; undo removes the record.
//! 2. `download` (effect, receiver `imagestore`): each backup storage's image store agent
//!    downloads the URL (progress through `GetTaskProgress`), verifies the md5 when one was
//!    given (system tag `md5::<hex>`), and reports size and format as `qemu-img` reads them;
//!    undo deletes the files.
//! 3. `image-ready` (commit): every copy `Ready` with what its store reported.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::model::Image;
use super::model::ImageOp;
use super::model::ImageResult;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::resource;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// AddImage's flow.
pub const ADD: &str = "image.add";
/// The receiver of its side effects (the leader's image store client).
pub const RECEIVER: &str = "imagestore";
/// Effect: download into every store.
pub const DOWNLOAD: &str = "download";
/// Effect: delete from every store.
pub const DELETE: &str = "delete";
/// Var: the image's stores (JSON list of [`Store`]).
pub const STORES: &str = "stores";
/// Var: what the stores hold (JSON map backup storage uuid → [`Stored`]), set by `download`.
pub const STORED: &str = "stored";
/// Var of the remove flow: stores whose copy stays (recycle bin) but whose export goes (JSON
/// list of [`Store`]).
pub const UNEXPORT_STORES: &str = "unexport";

/// Where one copy goes (the receiver finds the image store's agent from the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    /// Backup storage uuid.
    pub backup_storage_uuid: String,
}

/// A downloaded copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// Path on the image store.
    pub path: String,
    /// As qemu-img reads it.
    pub format: String,
    /// Virtual size.
    pub virtual_size: u64,
    /// File length.
    pub actual_size: u64,
    /// md5 of the file.
    pub md5: String,
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("image flow without {k}")))
}

/// The md5 a create's system tags name (`md5::<32 hex>`), if any.
fn expected_md5(command_json: &str) -> Result<Option<String>, ApiError> {
    let v: serde_json::Value = serde_json::from_str(command_json)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    let mut found = None;
    let mut stack = vec![&v];
    while let Some(x) = stack.pop() {
        match x {
            serde_json::Value::String(s) => {
                if let Some(h) = s.strip_prefix("md5::") {
                    if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(validate::invalid_arg(format!(
                            "system tag md5::{h} must name 32 hex digits"
                        )));
                    }
                    found = Some(h.to_ascii_lowercase());
                }
            }
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    Ok(found)
}

fn create(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let md5 = expected_md5(var(vars, crate::flow::COMMAND_VAR)?)?;
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let img = match resp.innermost() {
        Response::Image(ImageResult::Inventory(i)) => i.clone(),
        other => {
            return Err(validate::invalid_arg(format!(
                "AddImage answered {other:?}, not an image"
            )))
        }
    };
    let mut stores = Vec::new();
    for r in &img.backup_storage_refs {
        stores.push(Store {
            backup_storage_uuid: r.backup_storage_uuid.clone(),
        });
    }
    vars.insert("image_uuid".into(), img.uuid.clone());
    vars.insert("url".into(), img.url.clone());
    vars.insert("format".into(), img.format.clone());
    if let Some(m) = md5 {
        vars.insert("md5".into(), m);
    }
    vars.insert(
        STORES.into(),
        serde_json::to_string(&stores).map_err(|e| validate::invalid_arg(e.to_string()))?,
    );
    Ok(Some(resp))
}

fn uncreate(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    if let Some(uuid) = vars.get("image_uuid") {
        crate::resource::relations::delete(txn, ctx, super::model::KIND, uuid)?;
    }
    Ok(None)
}

fn request(action: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    let stores: serde_json::Value = serde_json::from_str(var(v, STORES)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable stores: {e}")))?;
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: json!({
            "imageUuid": var(v, "image_uuid")?,
            "url": var(v, "url")?,
            "format": var(v, "format")?,
            "md5": v.get("md5").cloned().unwrap_or_default(),
            "stores": stores,
        })
        .to_string(),
    })
}

fn ready(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, "image_uuid")?.to_string();
    let stored: std::collections::BTreeMap<String, Stored> =
        serde_json::from_str(var(vars, STORED)?)
            .map_err(|e| validate::invalid_arg(format!("undecodable download results: {e}")))?;
    let mut last: Option<Image> = None;
    for (bs, s) in stored {
        let out = super::model::apply(
            txn,
            ctx,
            caller,
            ImageOp::MarkReady {
                uuid: uuid.clone(),
                backup_storage_uuid: bs,
                install_path: s.path,
                size: s.virtual_size,
                actual_size: s.actual_size,
                md5_sum: s.md5,
            },
        )?;
        if let ImageResult::Inventory(i) = out {
            last = Some(*i);
        }
    }
    let img = match last {
        Some(i) => i,
        None => resource::require::<Image>(txn, &uuid)?.1,
    };
    Ok(Some(Response::Image(ImageResult::Inventory(Box::new(img)))))
}

/// `image.add`.
pub const ADD_FLOW: FlowDef = FlowDef {
    name: ADD,
    steps: &[
        StepDef {
            name: "create-image",
            action: Action::Commit(create),
            undo: Undo::Commit(uncreate),
        },
        StepDef {
            name: "download",
            action: Action::Effect(|v| request(DOWNLOAD, v)),
            undo: Undo::Effect(|v| request(DELETE, v)),
        },
        StepDef {
            name: "image-ready",
            action: Action::Commit(ready),
            undo: Undo::Nothing,
        },
    ],
};

/// DeleteImage's and ExpungeImage's flow: the call's command, then the files of every copy the
/// command removed for good are deleted from their stores, exports included (a `Delay`
/// deletion keeps them, the image being recoverable until expunged, but revokes exports).
pub const REMOVE: &str = "image.remove";

fn remove_call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let command: crate::Command = serde_json::from_str(var(vars, crate::flow::COMMAND_VAR)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    let uuid = match command.innermost() {
        crate::Command::Image(c) => match &*c.op {
            ImageOp::Delete { uuid, .. } | ImageOp::Expunge { uuid, .. } => Some(uuid.clone()),
            _ => None,
        },
        _ => None,
    };
    // (store, whether the copy there is exported) before the command.
    let before: Vec<(String, bool)> = match &uuid {
        Some(u) => resource::load::<Image>(txn, u)?
            .map(|(_, i)| {
                i.backup_storage_refs
                    .iter()
                    .map(|r| (r.backup_storage_uuid.clone(), r.export_url.is_some()))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let after: Vec<String> = match &uuid {
        Some(u) => resource::load::<Image>(txn, u)?
            .map(|(_, i)| {
                i.backup_storage_refs
                    .iter()
                    .map(|r| r.backup_storage_uuid.clone())
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let store = |backup_storage_uuid: &String| Store {
        backup_storage_uuid: backup_storage_uuid.clone(),
    };
    // Copies removed for good lose their files (exports included); exported copies kept in
    // the recycle bin (`Delay`) lose only their export: a deleted image is not served.
    let gone: Vec<Store> = before
        .iter()
        .filter(|(b, _)| !after.contains(b))
        .map(|(b, _)| store(b))
        .collect();
    let unexport: Vec<Store> = before
        .iter()
        .filter(|(b, exported)| *exported && after.contains(b))
        .map(|(b, _)| store(b))
        .collect();
    let json =
        |v: &Vec<Store>| serde_json::to_string(v).map_err(|e| validate::invalid_arg(e.to_string()));
    vars.insert("image_uuid".into(), uuid.unwrap_or_default());
    vars.insert(STORES.into(), json(&gone)?);
    vars.insert(UNEXPORT_STORES.into(), json(&unexport)?);
    Ok(Some(resp))
}

fn remove_request(v: &Vars) -> Result<EffectRequest, ApiError> {
    let list = |k: &str| -> Result<serde_json::Value, ApiError> {
        match v.get(k) {
            // A job accepted before exports existed carries no such list.
            None => Ok(json!([])),
            Some(t) => serde_json::from_str(t)
                .map_err(|e| validate::invalid_arg(format!("undecodable stores: {e}"))),
        }
    };
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: DELETE.into(),
        payload: json!({
            "imageUuid": var(v, "image_uuid")?,
            "stores": list(STORES)?,
            "unexport": list(UNEXPORT_STORES)?,
        })
        .to_string(),
    })
}

/// `image.remove`.
pub const REMOVE_FLOW: FlowDef = FlowDef {
    name: REMOVE,
    steps: &[
        StepDef {
            name: "remove-image",
            action: Action::Commit(remove_call),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "delete-files",
            action: Action::Effect(remove_request),
            undo: Undo::Nothing,
        },
    ],
};
