//! Backup storage on the wire: the base inventory and its ImageStore view, request → op, and
//! the queries.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::model::BackupStorage;
use super::model::BackupStorageOp;
use super::model::BackupStorageResult;
use super::model::IMAGE_STORE;
use super::model::KIND;
use super::model::TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::query::Query;
use crate::query::QueryOutput;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

impl Resource for BackupStorage {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    /// The base `BackupStorageInventory` (what `QueryBackupStorage` shows).
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("url", |r| json!(r.url)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("totalCapacity", |r| json!(r.total_capacity)),
        Field::new("availableCapacity", |r| json!(r.available_capacity)),
        Field::new("type", |_| json!(IMAGE_STORE)),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("attachedZoneUuids", |r| json!(r.attached_zone_uuids)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "attachedZoneUuids"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// The ImageStore view of the same table, for `QueryImageStoreBackupStorage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageStoreView(pub BackupStorage);

impl Resource for ImageStoreView {
    const KIND: &'static str = IMAGE_STORE;
    const TABLE: &'static str = TABLE;
    /// `ImageStoreBackupStorageInventory`: subclass fields first, then the base (spec 06 §6).
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("hostname", |r| json!(r.0.hostname)),
        Field::new("username", |r| json!(r.0.username)),
        Field::new("sshPort", |r| json!(r.0.ssh_port)),
        Field::splice(
            |r| resource::inventory(&r.0),
            resource::fields::<BackupStorage>,
        ),
    ];
    const INDEXED: &'static [&'static str] = BackupStorage::INDEXED;

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

/// The `inventory` of the reply, if any (the runtime class, ImageStore, is what Gson writes).
impl crate::family::Reply for BackupStorageResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            BackupStorageResult::Inventory(b) => {
                Some(resource::inventory(&ImageStoreView((**b).clone())))
            }
            BackupStorageResult::Deleted => None,
        }
    }
}

pub(super) fn add_image_store(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(BackupStorageOp::AddImageStore {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        url: p.required("url")?,
        hostname: p.required("hostname")?,
        username: p.required("username")?,
        password: p.sealed("password")?,
        ssh_port: params::int(p.body, "sshPort", p.call)?.unwrap_or(22),
    }))
}

/// Every session may list backup storage (`account.api.control` default, spec 05).
pub(super) fn query_base(
    txn: &dyn StateTxn,
    q: &Query,
    _caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    resource::query::<BackupStorage>(txn, q, |_| true)
}
