//! Management-node unit tests.

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
