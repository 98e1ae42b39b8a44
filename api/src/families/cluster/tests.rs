//! Cluster unit tests.

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::testing::cluster_create as create_op;
use crate::testing::ctx;
use crate::testing::make_zone;
use crate::testing::normal;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::Caller;

/// Create cluster `u(n)` in `zone`.
fn make_cluster(t: &mut MemTxn, n: u32, zone: &str) -> String {
    apply(t, &ctx(2), &Caller::admin(), create_op(n, zone)).unwrap();
    u(n)
}

fn run(t: &mut MemTxn, op: ClusterOp) -> Result<ClusterResult, ApiError> {
    apply(t, &ctx(3), &Caller::admin(), op)
}

#[test]
fn lifecycle_and_inventory_shape() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let ClusterResult::Inventory(c) = run(&mut t, create_op(10, &z)).unwrap() else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(&c)).unwrap(),
        format!(
            r#"{{"name":"cluster-10","uuid":"{}","description":"d","state":"Enabled","hypervisorType":"KVM","createDate":"{d}","lastOpDate":"{d}","zoneUuid":"{z}","type":"zstack"}}"#,
            c.uuid,
            d = java_date(3000)
        )
    );
    let r = run(
        &mut t,
        ClusterOp::Update {
            uuid: c.uuid.clone(),
            rename: Rename {
                name: Some("renamed".into()),
                description: None,
            },
        },
    )
    .unwrap();
    assert!(matches!(r, ClusterResult::Inventory(Cluster { ref name, .. }) if name == "renamed"));
    let r = run(
        &mut t,
        ClusterOp::ChangeState {
            uuid: c.uuid.clone(),
            event: EnableEvent::Disable,
        },
    )
    .unwrap();
    assert!(matches!(
        r,
        ClusterResult::Inventory(Cluster {
            state: EnableState::Disabled,
            ..
        })
    ));
    assert_eq!(
        run(
            &mut t,
            ClusterOp::Delete {
                uuid: c.uuid.clone()
            }
        )
        .unwrap(),
        ClusterResult::Deleted
    );
    assert!(resource::load::<Cluster>(&t, &c.uuid).unwrap().is_none());
    assert_eq!(
        run(&mut t, ClusterOp::Delete { uuid: c.uuid }).unwrap(),
        ClusterResult::Deleted
    );
}

#[test]
fn zone_delete_and_disable_cascade() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let z2 = make_zone(&mut t, 2);
    make_cluster(&mut t, 10, &z);
    make_cluster(&mut t, 11, &z);
    make_cluster(&mut t, 12, &z2);
    crate::testing::disable_zone(&mut t, 4, &z);
    assert_eq!(
        resource::find::<Cluster>(&t, "state", "Disabled")
            .unwrap()
            .len(),
        2
    );
    crate::testing::delete_zone(&mut t, 5, &z);
    let left = resource::list::<Cluster>(&t).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.uuid, u(12));
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    make_cluster(&mut t, 10, &z);
    let before = t.tables.clone();
    let code = |r: Result<ClusterResult, ApiError>| r.unwrap_err().code();
    assert_eq!(code(run(&mut t, create_op(10, &z))), "SYS.1007", "dup uuid");
    assert_eq!(
        code(run(&mut t, create_op(11, &u(99)))),
        "SYS.1003",
        "no zone"
    );
    let mut bad = create_op(11, &z);
    if let ClusterOp::Create {
        hypervisor_type, ..
    } = &mut bad
    {
        *hypervisor_type = "Simulator".into();
    }
    assert_eq!(code(run(&mut t, bad)), "SYS.1007", "hypervisor");
    let mut bad = create_op(11, &z);
    if let ClusterOp::Create { name, .. } = &mut bad {
        *name = " ".into();
    }
    assert_eq!(code(run(&mut t, bad)), "SYS.1007", "name");
    let mut bad = create_op(11, &z);
    if let ClusterOp::Create { architecture, .. } = &mut bad {
        *architecture = Some("sparc".into());
    }
    assert_eq!(code(run(&mut t, bad)), "SYS.1007", "arch");
    assert_eq!(
        code(run(
            &mut t,
            ClusterOp::Update {
                uuid: u(10),
                rename: Rename {
                    name: Some(String::new()),
                    description: None,
                },
            }
        )),
        "SYS.1007"
    );
    assert_eq!(
        code(run(
            &mut t,
            ClusterOp::Update {
                uuid: u(77),
                rename: Rename {
                    name: None,
                    description: None,
                },
            }
        )),
        "SYS.1003"
    );
    assert_eq!(
        code(run(
            &mut t,
            ClusterOp::ChangeState {
                uuid: u(77),
                event: EnableEvent::Enable
            }
        )),
        "SYS.1003"
    );
    for op in [
        create_op(12, &z),
        ClusterOp::Delete { uuid: u(10) },
        ClusterOp::ChangeState {
            uuid: u(10),
            event: EnableEvent::Disable,
        },
        ClusterOp::Update {
            uuid: u(10),
            rename: Rename {
                name: Some("x".into()),
                description: None,
            },
        },
    ] {
        assert_eq!(code(apply(&mut t, &ctx(4), &normal(), op)), "ID.1002");
    }
    assert_eq!(t.tables, before);
}
