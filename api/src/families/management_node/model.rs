//! Management-node records, the registry changes and their apply.

use serde::Deserialize;
use serde::Serialize;

use serde_json::json;

use crate::query::Query;
use crate::query::QueryOutput;
use crate::resource::Field;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The table holding management-node records, keyed by uuid.
pub const TABLE: &str = "management_node";

/// One management node as ZStack's inventory shows it, plus its Raft facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementNode {
    /// Stable identifier of the node (32 hex chars), recorded in its data directory.
    pub uuid: String,
    /// Host name or address the node is reached at.
    pub host_name: String,
    /// When the node joined, ms since the Unix epoch.
    pub join_date: u64,
    /// Last heartbeat the leader committed for it, ms since the Unix epoch.
    pub heart_beat: u64,
    /// Raft node id.
    pub raft_node_id: u64,
    /// Raft role as last seen by the leader: Leader, Follower, Candidate, Learner or Unreachable.
    pub raft_role: String,
    /// Raft term the node reported.
    pub term: u64,
    /// Commit index the node reported.
    pub commit_index: u64,
    /// Applied index the node reported.
    pub applied_index: u64,
    /// Raft (gRPC) address.
    #[serde(default)]
    pub raft_addr: String,
    /// HTTP API address.
    #[serde(default)]
    pub api_addr: String,
}

/// The `ManagementNodeInventory` in order: ZStack's four fields, then ours (spec decision 9);
/// also the query schema. Dates in ZStack's Java-8 form.
pub const INVENTORY: &[Field<ManagementNode>] = &[
    Field::new("uuid", |m| json!(m.uuid)),
    Field::new("hostName", |m| json!(m.host_name)),
    Field::new("joinDate", |m| json!(java_date(m.join_date))),
    Field::new("heartBeat", |m| json!(java_date(m.heart_beat))),
    Field::new("raftNodeId", |m| json!(m.raft_node_id)),
    Field::new("raftRole", |m| json!(m.raft_role)),
    Field::new("term", |m| json!(m.term)),
    Field::new("commitIndex", |m| json!(m.commit_index)),
    Field::new("appliedIndex", |m| json!(m.applied_index)),
];

/// The query schema.
pub fn fields() -> Vec<&'static str> {
    crate::resource::table_fields(INVENTORY)
}

impl ManagementNode {
    /// The `ManagementNodeInventory` as the API shows it.
    pub fn inventory(&self) -> serde_json::Value {
        crate::resource::render_fields(INVENTORY, self)
    }
}

/// A registry change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementNodeOp {
    /// Insert or replace the record with this uuid.
    Upsert(ManagementNode),
    /// Remove the record with this uuid.
    Remove {
        /// Record to remove.
        uuid: String,
    },
}

/// What a registry change answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementNodeResult {
    /// The record was stored; `created` when it did not exist before.
    Stored {
        /// Whether this created the record.
        created: bool,
    },
    /// The record was removed; `existed` when there was one.
    Removed {
        /// Whether a record existed.
        existed: bool,
    },
}

/// Decode a stored record.
pub fn decode(raw: &[u8]) -> Result<ManagementNode, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::Corrupt {
        what: "management node record".into(),
        detail: e.to_string(),
    })
}

/// Every record, from any state view that can scan the table.
pub fn list(txn: &dyn StateTxn) -> Result<Vec<ManagementNode>, ApiError> {
    txn.scan_prefix(TABLE, b"", usize::MAX)?
        .into_iter()
        .map(|(_, v)| decode(&v))
        .collect()
}

fn validate(mn: &ManagementNode) -> Result<(), ApiError> {
    if mn.uuid.len() != 32 || !mn.uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::InvalidArgument(format!(
            "management node uuid {:?} is not 32 hex characters",
            mn.uuid
        )));
    }
    Ok(())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    op: ManagementNodeOp,
) -> Result<ManagementNodeResult, ApiError> {
    match op {
        ManagementNodeOp::Upsert(mn) => {
            validate(&mn)?;
            let created = txn.get(TABLE, mn.uuid.as_bytes())?.is_none();
            let raw = serde_json::to_vec(&mn).map_err(|e| {
                ApiError::InvalidArgument(format!("management node record does not encode: {e}"))
            })?;
            txn.put(TABLE, mn.uuid.as_bytes(), raw)?;
            Ok(ManagementNodeResult::Stored { created })
        }
        ManagementNodeOp::Remove { uuid } => {
            let existed = txn.get(TABLE, uuid.as_bytes())?.is_some();
            txn.delete(TABLE, uuid.as_bytes())?;
            Ok(ManagementNodeResult::Removed { existed })
        }
    }
}

pub(super) fn run_query(
    txn: &dyn StateTxn,
    q: &Query,
    _caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    // Management nodes are infrastructure every session may list (zstack-ctl does).
    let rows = list(txn)?.into_iter().map(|mn| mn.inventory());
    Ok(crate::query::run(q, &fields(), rows)?)
}
