//! The management-node registry: one record per cluster member, shaped like ZStack's
//! `ManagementNodeInventory`, kept current by the leader's registry duty.

use serde::Deserialize;
use serde::Serialize;

use crate::ApiError;
use crate::ApplyCtx;
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

/// Inventory fields in order: ZStack's four, then ours (spec decision 9).
pub const FIELDS: &[&str] = &[
    "uuid",
    "hostName",
    "joinDate",
    "heartBeat",
    "raftNodeId",
    "raftRole",
    "term",
    "commitIndex",
    "appliedIndex",
];

impl ManagementNode {
    /// The `ManagementNodeInventory` as the API shows it (dates in ZStack's Java-8 form).
    pub fn inventory(&self) -> serde_json::Value {
        serde_json::json!({
            "uuid": self.uuid,
            "hostName": self.host_name,
            "joinDate": crate::wire::date::java_date(self.join_date),
            "heartBeat": crate::wire::date::java_date(self.heart_beat),
            "raftNodeId": self.raft_node_id,
            "raftRole": self.raft_role,
            "term": self.term,
            "commitIndex": self.commit_index,
            "appliedIndex": self.applied_index,
        })
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

pub(crate) fn apply(
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

fn run_query(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    _caller: &crate::Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    // Management nodes are infrastructure every session may list (zstack-ctl does).
    let rows = list(txn)?.into_iter().map(|mn| mn.inventory());
    Ok(crate::query::run(q, FIELDS, rows)?)
}

/// The management-node family: the registry duty's records and `QueryManagementNode`.
pub struct ManagementNodes;

impl crate::family::Family for ManagementNodes {
    type Op = ManagementNodeOp;
    type Out = ManagementNodeResult;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl {
        calls: &[crate::family::CallDecl::new(
            "QueryManagementNode",
            |p| p.query(run_query),
            &[crate::family::route(
                crate::rest::Method::Get,
                "/v1/management-nodes",
                crate::rest::Body::None,
            )],
        )],
        #[cfg(test)]
        cases: cases::cases,
        ..crate::family::FamilyDecl::internal("management_node", &[TABLE])
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        _caller: &crate::Caller,
        op: ManagementNodeOp,
    ) -> Result<ManagementNodeResult, ApiError> {
        apply(txn, ctx, op)
    }

    fn reply(
        _out: &ManagementNodeResult,
    ) -> Result<serde_json::Map<String, serde_json::Value>, crate::wire::errors::Refusal> {
        Ok(serde_json::Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::IntoCommand;
    use crate::Response;

    fn record(id: u64) -> ManagementNode {
        ManagementNode {
            uuid: format!("{id:032x}"),
            host_name: "127.0.0.1".into(),
            join_date: 5,
            heart_beat: 6,
            raft_node_id: id,
            raft_role: "Follower".into(),
            term: 2,
            commit_index: 3,
            applied_index: 3,
            raft_addr: "127.0.0.1:7070".into(),
            api_addr: "127.0.0.1:8080".into(),
        }
    }

    #[test]
    fn upsert_list_remove() {
        let mut t = MemTxn::default();
        let up = |r| ManagementNodeOp::Upsert(r).command(crate::Caller::admin());
        assert_eq!(
            crate::apply(&mut t, &ctx(1), up(record(1))).unwrap(),
            Response::ManagementNode(ManagementNodeResult::Stored { created: true })
        );
        assert_eq!(
            crate::apply(&mut t, &ctx(2), up(record(1))).unwrap(),
            Response::ManagementNode(ManagementNodeResult::Stored { created: false })
        );
        crate::apply(&mut t, &ctx(3), up(record(2))).unwrap();
        let all = list(&t).unwrap();
        assert_eq!(all, vec![record(1), record(2)]);
        let rm = ManagementNodeOp::Remove {
            uuid: record(1).uuid,
        }
        .command(crate::Caller::admin());
        assert_eq!(
            crate::apply(&mut t, &ctx(4), rm).unwrap(),
            Response::ManagementNode(ManagementNodeResult::Removed { existed: true })
        );
        assert_eq!(list(&t).unwrap(), vec![record(2)]);
    }

    #[test]
    fn inventory_is_camel_case_and_bad_uuid_refused() {
        let json = serde_json::to_value(record(1)).unwrap();
        assert!(json.get("hostName").is_some() && json.get("raftNodeId").is_some());
        let mut t = MemTxn::default();
        let mut bad = record(1);
        bad.uuid = "nope".into();
        let r = crate::apply(
            &mut t,
            &ctx(1),
            ManagementNodeOp::Upsert(bad).command(crate::Caller::admin()),
        )
        .unwrap();
        assert!(matches!(r, Response::Refused(ApiError::InvalidArgument(_))));
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties {
            admin,
            tenant,
            nobody,
            ..
        } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Management nodes.
        {
            let mn = i.mn.clone();
            m.push(ok(
                "QueryManagementNode",
                &tenant,
                json!({"conditions": []}),
                move |_, r| {
                    assert_eq!(r["inventories"][0]["uuid"], mn.as_str());
                    assert_eq!(r["inventories"][0]["hostName"], "10.0.0.1");
                },
            ));
        }
        m.push(no(
            "QueryManagementNode",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m.push(no(
            "QueryManagementNode",
            &nobody,
            json!({"conditions": []}),
            Code::InvalidSession,
        ));
        m
    }
}
