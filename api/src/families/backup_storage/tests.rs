//! Backup-storage unit tests.

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::testing::ctx;
use crate::testing::make_zone;
use crate::testing::normal;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;

fn run(t: &mut MemTxn, op: BackupStorageOp) -> Result<BackupStorageResult, ApiError> {
    apply(t, &ctx(6), &Caller::admin(), op)
}

fn add_op(n: u32, host: &str) -> BackupStorageOp {
    BackupStorageOp::AddImageStore {
        uuid: u(n),
        name: format!("bs-{n}"),
        description: None,
        url: "/zstack_bs".into(),
        hostname: host.into(),
        username: "root".into(),
        password: crate::testing::sealed("secret"),
        ssh_port: 22,
    }
}

/// Add ImageStore BS `u(n)`.
fn make_bs(t: &mut MemTxn, n: u32) -> String {
    run(t, add_op(n, &format!("10.0.0.{n}"))).unwrap();
    u(n)
}

fn code(r: Result<BackupStorageResult, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn lifecycle_inventory_and_zone_cascade() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let z2 = make_zone(&mut t, 2);
    let r = run(&mut t, add_op(30, "172.20.0.5")).unwrap();
    let inv = r.inventory().unwrap();
    assert_eq!(
        serde_json::to_string(&inv).unwrap(),
        format!(
            r#"{{"hostname":"172.20.0.5","username":"root","sshPort":22,"uuid":"{}","name":"bs-30","url":"/zstack_bs","totalCapacity":0,"availableCapacity":0,"type":"ImageStoreBackupStorage","state":"Enabled","status":"Connecting","createDate":"{d}","lastOpDate":"{d}","attachedZoneUuids":[]}}"#,
            u(30),
            d = java_date(6000)
        )
    );
    assert!(!serde_json::to_string(&inv).unwrap().contains("secret"));
    let bs = u(30);
    let shared = make_bs(&mut t, 31);
    for (b, zz) in [(&bs, &z), (&shared, &z), (&shared, &z2)] {
        run(
            &mut t,
            BackupStorageOp::AttachToZone {
                uuid: b.clone(),
                zone_uuid: zz.clone(),
            },
        )
        .unwrap();
    }
    run(
        &mut t,
        BackupStorageOp::Update {
            uuid: bs.clone(),
            rename: Rename {
                name: Some("n".into()),
                description: Some("d".into()),
            },
        },
    )
    .unwrap();
    let BackupStorageResult::Inventory(b) = run(
        &mut t,
        BackupStorageOp::ChangeState {
            uuid: bs.clone(),
            event: EnableEvent::Disable,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((b.state, b.name.as_str()), (EnableState::Disabled, "n"));
    run(
        &mut t,
        BackupStorageOp::Report {
            uuid: bs.clone(),
            total: 10,
            available: 5,
            status: BsStatus::Connected,
        },
    )
    .unwrap();
    run(
        &mut t,
        BackupStorageOp::DetachFromZone {
            uuid: shared.clone(),
            zone_uuid: z2.clone(),
        },
    )
    .unwrap();
    run(
        &mut t,
        BackupStorageOp::AttachToZone {
            uuid: shared.clone(),
            zone_uuid: z2.clone(),
        },
    )
    .unwrap();
    crate::testing::delete_zone(&mut t, 7, &z);
    let left = resource::list::<BackupStorage>(&t).unwrap();
    assert_eq!(left.len(), 1, "only the shared BS survives");
    assert_eq!(left[0].1.attached_zone_uuids, vec![z2]);
    assert_eq!(
        run(&mut t, BackupStorageOp::Delete { uuid: shared }).unwrap(),
        BackupStorageResult::Deleted
    );
    assert!(resource::list::<BackupStorage>(&t).unwrap().is_empty());
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let bs = make_bs(&mut t, 30);
    run(
        &mut t,
        BackupStorageOp::AttachToZone {
            uuid: bs.clone(),
            zone_uuid: z.clone(),
        },
    )
    .unwrap();
    let before = t.tables.clone();
    let mut bad_port = add_op(31, "h");
    if let BackupStorageOp::AddImageStore { ssh_port, .. } = &mut bad_port {
        *ssh_port = 70000;
    }
    let mut bad_url = add_op(31, "h");
    if let BackupStorageOp::AddImageStore { url, .. } = &mut bad_url {
        *url = "/".into();
    }
    for (op, want, why) in [
        (bad_port, "SYS.1007", "port"),
        (bad_url, "SYS.1007", "url"),
        (add_op(31, "bad host"), "SYS.1007", "hostname"),
        (add_op(31, "10.0.0.30"), "SYS.1007", "duplicate"),
        (
            BackupStorageOp::AttachToZone {
                uuid: bs.clone(),
                zone_uuid: z.clone(),
            },
            "SYS.1006",
            "attached already",
        ),
        (
            BackupStorageOp::AttachToZone {
                uuid: bs.clone(),
                zone_uuid: u(99),
            },
            "SYS.1003",
            "no zone",
        ),
        (
            BackupStorageOp::DetachFromZone {
                uuid: bs.clone(),
                zone_uuid: u(2),
            },
            "SYS.1003",
            "no zone 2",
        ),
        (
            BackupStorageOp::ChangeState {
                uuid: u(99),
                event: EnableEvent::Enable,
            },
            "SYS.1003",
            "no storage",
        ),
        (
            BackupStorageOp::Update {
                uuid: bs.clone(),
                rename: Rename {
                    name: Some(String::new()),
                    description: None,
                },
            },
            "SYS.1007",
            "empty name",
        ),
    ] {
        assert_eq!(code(run(&mut t, op)), want, "{why}");
    }
    assert_eq!(
        code(apply(
            &mut t,
            &ctx(6),
            &normal(),
            BackupStorageOp::Delete { uuid: bs }
        )),
        "ID.1002"
    );
    assert_eq!(t.tables, before);
    let z_other = make_zone(&mut t, 3);
    let before = t.tables.clone();
    assert_eq!(
        code(run(
            &mut t,
            BackupStorageOp::DetachFromZone {
                uuid: u(30),
                zone_uuid: z_other
            }
        )),
        "SYS.1006"
    );
    assert_eq!(t.tables, before);
}

#[test]
fn a_password_that_is_not_sealed_is_never_stored() {
    let mut t = MemTxn::default();
    let mut op = add_op(1, "10.0.0.1");
    if let BackupStorageOp::AddImageStore { password, .. } = &mut op {
        *password = crate::secret::Sealed::from_stored("secret".into());
    }
    let before = t.tables.clone();
    let e = run(&mut t, op).unwrap_err();
    assert_eq!(e.code(), "SYS.1007");
    assert!(e.to_string().contains("must be sealed"), "{e}");
    assert_eq!(t.tables, before);
}
