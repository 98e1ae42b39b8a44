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
use crate::IntoCommand;

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

/// What the add flow's last step commits once the agent measured the store.
fn connect(t: &mut MemTxn, uuid: &str, deployed: bool) {
    let mut v = crate::flow::Vars::from([
        (flows::vars::BS.to_string(), uuid.to_string()),
        (flows::vars::TOTAL.to_string(), "1000".to_string()),
        (flows::vars::AVAILABLE.to_string(), "400".to_string()),
        (flows::vars::DEPLOYED.to_string(), deployed.to_string()),
    ]);
    commit(t, &flows::ADD_IMAGE_STORE_FLOW.steps[2], &mut v).unwrap();
}

fn commit(
    t: &mut MemTxn,
    step: &crate::flow::StepDef,
    v: &mut crate::flow::Vars,
) -> Result<Option<crate::Response>, ApiError> {
    let crate::flow::Action::Commit(f) = step.action else {
        panic!("{} is not a commit", step.name)
    };
    f(t, &ctx(8), &Caller::admin(), v)
}

fn effect(step: &crate::flow::StepDef, v: &crate::flow::Vars) -> serde_json::Value {
    let crate::flow::Action::Effect(f) = step.action else {
        panic!("{} is not an effect", step.name)
    };
    let r = f(v).unwrap();
    assert_eq!(r.receiver, flows::RECEIVER);
    serde_json::from_str(&r.payload).unwrap()
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
    connect(&mut t, &bs, false);
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

#[test]
fn a_tracker_report_never_overwrites_a_store_its_job_is_connecting() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let before = t.tables.clone();
    let report = |status| BackupStorageOp::Report {
        uuid: bs.clone(),
        total: 10,
        available: 5,
        status,
    };
    let e = run(&mut t, report(BsStatus::Disconnected)).unwrap_err();
    assert_eq!(e.code(), "SYS.1006");
    assert!(e.to_string().contains("being connected"), "{e}");
    assert_eq!(t.tables, before);
    connect(&mut t, &bs, false);
    let BackupStorageResult::Inventory(b) = run(&mut t, report(BsStatus::Disconnected)).unwrap()
    else {
        panic!()
    };
    assert_eq!((b.status, b.total_capacity), (BsStatus::Disconnected, 10));
}

#[test]
fn the_add_flow_connects_with_measured_capacity_and_the_sealed_password_only() {
    let mut t = MemTxn::default();
    let op = add_op(30, "10.0.0.30");
    let mut v = crate::flow::command_vars(&op.command(Caller::admin())).unwrap();
    let steps = flows::ADD_IMAGE_STORE_FLOW.steps;
    assert!(commit(&mut t, &steps[0], &mut v).unwrap().is_some());
    let (_, b) = resource::require::<BackupStorage>(&t, &u(30)).unwrap();
    assert_eq!(b.status, BsStatus::Connecting);
    // The agent step: where to go, the sealed password (never the clear one).
    let p = effect(&steps[1], &v);
    assert_eq!(p["call"], "AddImageStoreBackupStorage");
    assert_eq!(p["backupStorageUuid"], u(30));
    assert_eq!(p["url"], "/zstack_bs");
    assert_eq!(p["deployed"], false);
    assert_eq!(p["endpoint"]["managementIp"], "10.0.0.30");
    assert_eq!(p["endpoint"]["sshPort"], 22);
    assert_eq!(p["endpoint"]["username"], "root");
    let pw = p["endpoint"]["password"].as_str().unwrap();
    assert!(pw.starts_with("zsenc:v1:"), "{pw}");
    assert_eq!(
        crate::testing::opened(&crate::secret::Sealed::from_stored(pw.into())),
        "secret"
    );
    assert!(!p.to_string().contains("\"secret\""));
    // The agent installed itself and measured more free than total (clamped).
    v.insert(flows::vars::TOTAL.into(), "1000".into());
    v.insert(flows::vars::AVAILABLE.into(), "2000".into());
    v.insert(flows::vars::DEPLOYED.into(), "true".into());
    let r = commit(&mut t, &steps[2], &mut v).unwrap().unwrap();
    let crate::Response::BackupStorage(BackupStorageResult::Inventory(b)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (
            b.status,
            b.total_capacity,
            b.available_capacity,
            b.agent_installed
        ),
        (BsStatus::Connected, 1000, 1000, true)
    );
    // Its rollback (were a later step to fail) asks the agent to forget the store and names
    // the install, then the record goes.
    let undo = |i: usize| match &steps[i].undo {
        crate::flow::Undo::Effect(f) => {
            serde_json::from_str::<serde_json::Value>(&f(&v).unwrap().payload).unwrap()
        }
        _ => panic!("step {i} undoes by an effect"),
    };
    let p = undo(1);
    assert_eq!(
        (p["deployed"].as_bool(), p["url"].as_str()),
        (Some(true), Some("/zstack_bs"))
    );
    let crate::flow::Undo::Commit(f) = steps[0].undo else {
        panic!()
    };
    f(&mut t, &ctx(9), &Caller::admin(), &mut v).unwrap();
    assert!(resource::list::<BackupStorage>(&t).unwrap().is_empty());
}

#[test]
fn a_record_deleted_meanwhile_fails_the_last_add_step() {
    let mut t = MemTxn::default();
    let mut v = crate::flow::Vars::from([
        (flows::vars::BS.to_string(), u(30)),
        (flows::vars::TOTAL.to_string(), "1".to_string()),
        (flows::vars::AVAILABLE.to_string(), "1".to_string()),
    ]);
    let e = commit(&mut t, &flows::ADD_IMAGE_STORE_FLOW.steps[2], &mut v).unwrap_err();
    assert_eq!(e.code(), "SYS.1006");
    assert!(e.to_string().contains("deleted meanwhile"), "{e}");
}

#[test]
fn delete_names_the_agent_the_add_installed_and_keeps_nothing_else() {
    let mut t = MemTxn::default();
    let installed = make_bs(&mut t, 30);
    connect(&mut t, &installed, true);
    let attached = make_bs(&mut t, 31);
    connect(&mut t, &attached, false);
    let steps = flows::DELETE_FLOW.steps;
    for (uuid, deployed, ip) in [
        (&installed, true, "10.0.0.30"),
        (&attached, false, "10.0.0.31"),
    ] {
        let op = BackupStorageOp::Delete { uuid: uuid.clone() };
        let mut v = crate::flow::command_vars(&op.command(Caller::admin())).unwrap();
        commit(&mut t, &steps[0], &mut v).unwrap();
        assert!(resource::load::<BackupStorage>(&t, uuid).unwrap().is_none());
        let p = effect(&steps[1], &v);
        assert_eq!(p["call"], "DeleteBackupStorage");
        assert_eq!(p["backupStorageUuid"], uuid.as_str());
        assert_eq!(p["deployed"], deployed, "{uuid}");
        assert_eq!(p["endpoint"]["managementIp"], ip);
    }
    // Deleting what is gone already: the detach step has nothing to do.
    let op = BackupStorageOp::Delete { uuid: u(99) };
    let mut v = crate::flow::command_vars(&op.command(Caller::admin())).unwrap();
    commit(&mut t, &steps[0], &mut v).unwrap();
    let p = effect(&steps[1], &v);
    assert_eq!(
        (p["backupStorageUuid"].as_str(), p["endpoint"].is_null()),
        (Some(""), true)
    );
}

#[test]
fn the_call_runs_the_flow_and_answers_the_connected_store() {
    let mut w = crate::testing::matrix::Harness::new();
    let m = w.admin(
        "AddImageStoreBackupStorage",
        serde_json::json!({"name": "bs", "url": "/zstack_bs", "hostname": "10.0.0.5",
            "username": "root", "password": "secret-pw", "sshPort": 2222}),
    );
    let inv = &m["inventory"];
    assert_eq!(inv["status"], "Connected");
    assert_eq!(inv["sshPort"], 2222);
    assert_eq!(inv["totalCapacity"], 100u64 << 30);
    assert!(!serde_json::Value::Object(m.clone())
        .to_string()
        .contains("secret-pw"));
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    let (_, b) = resource::require::<BackupStorage>(&w.t, &uuid).unwrap();
    assert!(
        !b.agent_installed,
        "the scripted agent answered without an install"
    );
    w.admin("DeleteBackupStorage", serde_json::json!({"uuid": uuid}));
    assert!(resource::load::<BackupStorage>(&w.t, &uuid)
        .unwrap()
        .is_none());
}
