//! Primary-storage unit tests.

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::Rename;
use crate::testing::ctx;
use crate::testing::make_cluster;
use crate::testing::make_zone;
use crate::testing::normal;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;

fn run(t: &mut MemTxn, op: PrimaryStorageOp) -> Result<PrimaryStorageResult, ApiError> {
    apply(t, &ctx(5), &Caller::admin(), op)
}

fn add_op(n: u32, ps_type: PsType, zone: &str, url: &str) -> PrimaryStorageOp {
    PrimaryStorageOp::Add {
        uuid: u(n),
        ps_type,
        zone_uuid: zone.into(),
        name: format!("ps-{n}"),
        url: url.into(),
        description: None,
    }
}

fn add(t: &mut MemTxn, n: u32, ps_type: PsType, zone: &str, url: &str) -> String {
    run(t, add_op(n, ps_type, zone, url)).unwrap();
    u(n)
}

fn attach(t: &mut MemTxn, ps: &str, cluster: &str) -> Result<PrimaryStorageResult, ApiError> {
    run(
        t,
        PrimaryStorageOp::Attach {
            uuid: ps.into(),
            cluster_uuid: cluster.into(),
        },
    )
}

fn code(r: Result<PrimaryStorageResult, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn add_update_state_and_inventory_shape() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let PrimaryStorageResult::Inventory(p) =
        run(&mut t, add_op(20, PsType::Nfs, &z, "192.168.0.1:/nfs/ps")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(p.as_ref())).unwrap(),
        format!(
            r#"{{"uuid":"{u}","zoneUuid":"{z}","name":"ps-20","url":"192.168.0.1:/nfs/ps","totalCapacity":0,"availableCapacity":0,"totalPhysicalCapacity":0,"availablePhysicalCapacity":0,"systemUsedCapacity":0,"type":"NFS","state":"Enabled","status":"Connecting","mountPath":"/opt/zstack/nfsprimarystorage/prim-{u}","createDate":"{d}","lastOpDate":"{d}","attachedClusterUuids":[]}}"#,
            u = p.uuid,
            d = java_date(5000)
        )
    );
    let local = add(&mut t, 21, PsType::LocalStorage, &z, "/zstack_ps");
    let r = run(
        &mut t,
        PrimaryStorageOp::Update {
            uuid: local.clone(),
            rename: Rename {
                name: Some("local".into()),
                description: Some("d".into()),
            },
            url: Some("/data/ps".into()),
        },
    )
    .unwrap();
    let PrimaryStorageResult::Inventory(p) = r else {
        panic!()
    };
    assert_eq!(
        (p.name.as_str(), p.mount_path.as_str()),
        ("local", "/data/ps")
    );
    for (ev, st) in [
        (PsStateEvent::Maintain, PsState::Maintenance),
        (PsStateEvent::Disable, PsState::Disabled),
        (PsStateEvent::Deleting, PsState::Deleting),
        (PsStateEvent::Enable, PsState::Enabled),
    ] {
        let PrimaryStorageResult::Inventory(p) = run(
            &mut t,
            PrimaryStorageOp::ChangeState {
                uuid: local.clone(),
                event: ev,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(p.state, st);
    }
    let PrimaryStorageResult::Inventory(p) = run(
        &mut t,
        PrimaryStorageOp::Report {
            uuid: local,
            capacity: CapacityReport {
                total: 100,
                available: 40,
                total_physical: 100,
                available_physical: 50,
                system_used: 10,
                hosts: Vec::new(),
            },
            status: PsStatus::Connected,
        },
    )
    .unwrap() else {
        panic!()
    };
    // The virtual figure is the measured free space less the volumes' reservations (none).
    assert_eq!((p.available_capacity, p.status), (50, PsStatus::Connected));
}

#[test]
fn attach_rules_detach_delete() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let z2 = make_zone(&mut t, 2);
    let c = make_cluster(&mut t, 10, &z);
    let c_other_zone = make_cluster(&mut t, 11, &z2);
    let l1 = add(&mut t, 20, PsType::LocalStorage, &z, "/ps1");
    let l2 = add(&mut t, 21, PsType::LocalStorage, &z, "/ps2");
    let l_same_url = add(&mut t, 22, PsType::LocalStorage, &z, "/ps1");
    let nfs = add(&mut t, 23, PsType::Nfs, &z, "10.0.0.1:/a");
    let smp = add(&mut t, 24, PsType::SharedMountPoint, &z, "/mnt/smp");
    let before = t.tables.clone();
    assert_eq!(code(attach(&mut t, &l1, &c_other_zone)), "SYS.1007", "zone");
    assert_eq!(code(attach(&mut t, &u(99), &c)), "SYS.1003");
    assert_eq!(code(attach(&mut t, &l1, &u(98))), "SYS.1003");
    assert_eq!(t.tables, before);
    attach(&mut t, &l1, &c).unwrap();
    let before = t.tables.clone();
    assert_eq!(code(attach(&mut t, &l1, &c)), "SYS.1006", "twice");
    assert_eq!(
        code(attach(&mut t, &l_same_url, &c)),
        "SYS.1007",
        "same url"
    );
    assert_eq!(t.tables, before);
    attach(&mut t, &l2, &c).unwrap(); // Local × 2
    let before = t.tables.clone();
    assert_eq!(code(attach(&mut t, &nfs, &c)), "SYS.1006", "2 local + nfs");
    assert_eq!(code(attach(&mut t, &smp, &c)), "SYS.1006", "2 local + smp");
    assert_eq!(
        code(run(&mut t, PrimaryStorageOp::Delete { uuid: l1.clone() })),
        "SYS.1006",
        "delete while attached"
    );
    assert_eq!(t.tables, before);
    run(
        &mut t,
        PrimaryStorageOp::Detach {
            uuid: l2.clone(),
            cluster_uuid: c.clone(),
        },
    )
    .unwrap();
    assert_eq!(
        code(run(
            &mut t,
            PrimaryStorageOp::Detach {
                uuid: l2.clone(),
                cluster_uuid: c.clone()
            }
        )),
        "SYS.1007",
        "not attached"
    );
    attach(&mut t, &nfs, &c).unwrap(); // Local + NFS
    assert_eq!(
        code(attach(&mut t, &smp, &c)),
        "SYS.1006",
        "local + nfs + smp"
    );
    assert_eq!(
        run(&mut t, PrimaryStorageOp::Delete { uuid: l2.clone() }).unwrap(),
        PrimaryStorageResult::Deleted
    );
    // Deleting the cluster detaches its storage.
    crate::testing::delete_cluster(&mut t, 6, &c);
    assert!(
        resource::find::<PrimaryStorage>(&t, "attachedClusterUuids", &u(10))
            .unwrap()
            .is_empty()
    );
    run(&mut t, PrimaryStorageOp::Delete { uuid: l1 }).unwrap();
    // Deleting the zone deletes the rest.
    crate::testing::delete_zone(&mut t, 7, &z);
    assert!(resource::list::<PrimaryStorage>(&t).unwrap().is_empty());
}

#[test]
fn combinations() {
    use PsType::*;
    assert!(combination_allowed(&[
        LocalStorage,
        LocalStorage,
        LocalStorage
    ]));
    assert!(combination_allowed(&[Nfs, Nfs]));
    assert!(combination_allowed(&[SharedMountPoint]));
    assert!(combination_allowed(&[LocalStorage, Nfs]));
    assert!(combination_allowed(&[SharedMountPoint, LocalStorage]));
    assert!(!combination_allowed(&[SharedMountPoint, SharedMountPoint]));
    assert!(!combination_allowed(&[Nfs, SharedMountPoint]));
    assert!(!combination_allowed(&[LocalStorage, Nfs, Nfs]));
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let z = make_zone(&mut t, 1);
    let p = add(&mut t, 20, PsType::LocalStorage, &z, "/ps");
    let before = t.tables.clone();
    for (ty, url) in [
        (PsType::LocalStorage, "/"),
        (PsType::LocalStorage, "/dev/sda"),
        (PsType::LocalStorage, "relative/path"),
        (PsType::LocalStorage, "/usr/bin/"),
        (PsType::SharedMountPoint, "/proc"),
        (PsType::Nfs, "/no/host"),
        (PsType::Nfs, "1.1.1.1:relative"),
        (PsType::Nfs, "bad host:/x"),
    ] {
        assert_eq!(
            code(run(&mut t, add_op(21, ty, &z, url))),
            "SYS.1007",
            "{url}"
        );
    }
    assert_eq!(
        code(run(&mut t, add_op(21, PsType::Nfs, &u(99), "h:/x"))),
        "SYS.1003"
    );
    assert_eq!(
        code(run(&mut t, add_op(20, PsType::Nfs, &z, "h:/x"))),
        "SYS.1007"
    );
    assert_eq!(
        code(run(
            &mut t,
            PrimaryStorageOp::Update {
                uuid: p.clone(),
                rename: Rename::default(),
                url: Some("/sys".into())
            }
        )),
        "SYS.1007"
    );
    assert_eq!(
        code(run(
            &mut t,
            PrimaryStorageOp::ChangeState {
                uuid: u(99),
                event: PsStateEvent::Enable
            }
        )),
        "SYS.1003"
    );
    assert_eq!(
        code(run(
            &mut t,
            PrimaryStorageOp::Detach {
                uuid: u(99),
                cluster_uuid: u(98)
            }
        )),
        "SYS.1003"
    );
    assert_eq!(
        code(apply(
            &mut t,
            &ctx(5),
            &normal(),
            PrimaryStorageOp::Delete { uuid: p }
        )),
        "ID.1002"
    );
    assert_eq!(t.tables, before);
}
