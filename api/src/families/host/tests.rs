//! Host unit tests, through the wire.

use serde_json::json;
use serde_json::Value;

use super::*;
use crate::plan::HostEndpoint;
use crate::plan::Plan;
use crate::plan::Stamp;
use crate::resource;
use crate::testing::matrix::Harness;
use crate::testing::matrix::Who;
use crate::testing::normal;
use crate::wire::date::java_date;
use crate::wire::errors::Code;
use crate::Command;

/// Calls go through the node's path ([`Harness`]); the probe itself is the node's, so here
/// every probe "succeeds".
fn hosts(w: &mut Harness, conds: Value) -> Vec<Value> {
    w.query("QueryHost", conds)
}

fn host(w: &Harness, uuid: &str) -> Host {
    resource::require::<Host>(&w.t, uuid).expect("host").1
}

/// Force a status, as the agent's ping tracker will.
fn set_status(w: &mut Harness, uuid: &str, status: HostStatus) {
    let (owner, mut h) = resource::require::<Host>(&w.t, uuid).expect("host");
    h.status = status;
    resource::save(&mut w.t, &owner, &h).expect("save");
}

fn add(w: &mut Harness, cluster: &str, ip: &str) -> String {
    w.created("AddKVMHost", add_body(cluster, ip))
}

fn add_body(cluster: &str, ip: &str) -> Value {
    json!({"clusterUuid": cluster, "name": format!("h-{ip}"), "managementIp": ip,
           "username": "root", "password": "secret-pw", "sshPort": 2222})
}

#[test]
fn add_kvm_host_inventory_shape_without_password() {
    // The harness answers the flow's agent step with an 8-thread, 16 GiB KVM host; capacity is
    // threads × the default CPU over-provisioning ratio (10).
    let mut w = Harness::new();
    let (z, c) = w.zone_and_cluster();
    let m = w.admin(
        "AddKVMHost",
        json!({"clusterUuid": c, "name": "h1", "managementIp": "10.0.0.5",
               "username": "root", "password": "secret-pw", "description": "d"}),
    );
    let inv = &m["inventory"];
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    let d = java_date(3000);
    assert_eq!(
        serde_json::to_string(inv).unwrap(),
        format!(
            r#"{{"username":"root","sshPort":22,"osDistribution":"debian","osRelease":"bookworm","osVersion":"12","zoneUuid":"{z}","name":"h1","uuid":"{uuid}","clusterUuid":"{c}","description":"d","managementIp":"10.0.0.5","hypervisorType":"KVM","state":"Enabled","status":"Connected","totalCpuCapacity":80,"availableCpuCapacity":80,"cpuSockets":1,"totalMemoryCapacity":17179869184,"availableMemoryCapacity":17179869184,"cpuNum":8,"architecture":"x86_64","createDate":"{d}","lastOpDate":"{d}"}}"#
        )
    );
    // Stored sealed for the agent, shown nowhere.
    let stored = host(&w, &uuid).password;
    assert!(stored.as_str().starts_with("zsenc:v1:"), "{stored:?}");
    assert!(!stored.as_str().contains("secret-pw"));
    assert_eq!(crate::testing::opened(&stored), "secret-pw");
    let all = hosts(&mut w, json!([]));
    assert_eq!(all.len(), 1);
    assert!(!serde_json::to_string(&all).unwrap().contains("secret-pw"));
    assert_eq!(
        hosts(
            &mut w,
            json!([{"name":"managementIp","op":"=","value":"10.0.0.5"}])
        )
        .len(),
        1
    );
    assert_eq!(
        hosts(&mut w, json!([{"name":"clusterUuid","op":"=","value":c}])).len(),
        1
    );
    let fields = w.admin(
        "QueryHost",
        json!({"conditions": [], "fields": ["uuid", "status"]}),
    );
    assert_eq!(
        fields["inventories"][0],
        json!({"uuid": uuid, "status": "Connected"})
    );
}

#[test]
fn add_kvm_host_refusals() {
    let mut w = Harness::new();
    let (z, c) = w.zone_and_cluster();
    add(&mut w, &c, "10.0.0.5");
    // No cluster.
    w.refuses(
        "AddKVMHost",
        add_body(&"9".repeat(32), "10.0.0.6"),
        Code::ResourceNotFound,
    );
    // Duplicate managementIp.
    w.refuses(
        "AddKVMHost",
        add_body(&c, "10.0.0.5"),
        Code::InvalidArgument,
    );
    // One bad field each (`None`: the field left out).
    for (why, field, value) in [
        ("port 0", "sshPort", Some(json!(0))),
        ("port 65536", "sshPort", Some(json!(65536))),
        ("port type", "sshPort", Some(json!("ssh"))),
        ("no password", "password", None),
        ("empty password", "password", Some(json!(""))),
        ("bad ip", "managementIp", Some(json!("10.0.0.6; rm -rf /"))),
        ("blank name", "name", Some(json!(" "))),
        ("long username", "username", Some(json!("u".repeat(256)))),
    ] {
        let mut b = add_body(&c, "10.0.0.6");
        match value {
            Some(v) => b[field] = v,
            None => {
                b.as_object_mut().unwrap().remove(field);
            }
        }
        assert_eq!(
            w.admin_refused("AddKVMHost", b),
            Code::InvalidArgument,
            "{why}"
        );
    }
    // A cluster of another hypervisor (CreateCluster only makes KVM ones).
    let other = crate::testing::copy_cluster(&mut w.t, &c, &"e".repeat(32), "Simulator");
    // Not KVM.
    w.refuses(
        "AddKVMHost",
        add_body(&other, "10.0.0.6"),
        Code::InvalidArgument,
    );
    w.refuses_as(
        &Who::As(normal()),
        "AddKVMHost",
        add_body(&c, "10.0.0.6"),
        Code::PermissionDenied,
    );
    // A disabled zone and cluster still accept hosts (spec 03 §14.5).
    w.change_state("ChangeZoneState", &z, "disable");
    let h = add(&mut w, &c, "10.0.0.7");
    assert_eq!(host(&w, &h).state, HostState::Enabled);
}

#[test]
fn update_kvm_host() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let h = add(&mut w, &c, "10.0.0.5");
    add(&mut w, &c, "10.0.0.6");
    let m = w.admin(
        "UpdateKVMHost",
        json!({"uuid": h, "name": "renamed", "managementIp": "10.0.0.9",
               "sshPort": 22, "username": "zstack", "password": "new-pw"}),
    );
    assert_eq!(m["inventory"]["managementIp"], "10.0.0.9");
    assert_eq!(m["inventory"]["sshPort"], 22);
    assert!(m["inventory"].get("password").is_none());
    let stored = host(&w, &h);
    assert_eq!(
        (
            stored.name.as_str(),
            stored.username.as_str(),
            crate::testing::opened(&stored.password).as_str()
        ),
        ("renamed", "zstack", "new-pw")
    );
    // The old IP is free again; the index follows the update.
    assert!(hosts(
        &mut w,
        json!([{"name":"managementIp","op":"=","value":"10.0.0.5"}])
    )
    .is_empty());
    // Keeping its own IP is no conflict.
    w.admin(
        "UpdateKVMHost",
        json!({"uuid": h, "managementIp": "10.0.0.9"}),
    );
    // Duplicate managementIp.
    w.refuses(
        "UpdateKVMHost",
        json!({"uuid": h, "managementIp": "10.0.0.6"}),
        Code::InvalidArgument,
    );
    w.refuses(
        "UpdateKVMHost",
        json!({"uuid": h, "sshPort": 70000}),
        Code::InvalidArgument,
    );
    w.refuses(
        "UpdateKVMHost",
        json!({"uuid": h, "password": ""}),
        Code::InvalidArgument,
    );
    w.refuses(
        "UpdateKVMHost",
        json!({"uuid": "7".repeat(32)}),
        Code::ResourceNotFound,
    );
    w.refuses_as(
        &Who::As(normal()),
        "UpdateKVMHost",
        json!({"uuid": h, "name": "x"}),
        Code::PermissionDenied,
    );
    set_status(&mut w, &h, HostStatus::Connecting);
    // IP change while Connecting.
    w.refuses(
        "UpdateKVMHost",
        json!({"uuid": h, "managementIp": "10.0.0.10"}),
        Code::OperationFailure,
    );
}

#[test]
fn change_host_state_machine() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let h = add(&mut w, &c, "10.0.0.5");
    let state = |w: &mut Harness, ev: &str| {
        w.change_state("ChangeHostState", &h, ev)["inventory"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&mut w, "disable"), "Disabled");
    assert_eq!(state(&mut w, "enable"), "Enabled");
    assert_eq!(state(&mut w, "maintain"), "Maintenance");
    // Already in maintenance.
    w.refuses(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "maintain"}),
        Code::OperationFailure,
    );
    assert_eq!(state(&mut w, "disable"), "Disabled");
    set_status(&mut w, &h, HostStatus::Disconnected);
    // Maintain needs Connected.
    w.refuses(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "maintain"}),
        Code::OperationFailure,
    );
    // Not an API event.
    w.refuses(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "preMaintain"}),
        Code::InvalidArgument,
    );
    w.refuses(
        "ChangeHostState",
        json!({"uuid": "7".repeat(32), "stateEvent": "enable"}),
        Code::ResourceNotFound,
    );
    w.refuses_as(
        &Who::As(normal()),
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "enable"}),
        Code::PermissionDenied,
    );
}

#[test]
fn delete_host() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let h = add(&mut w, &c, "10.0.0.5");
    w.admin(
        "CreateUserTag",
        json!({"resourceType": "HostVO", "resourceUuid": h, "tag": "rack-1"}),
    );
    // Enabled and Connected.
    w.refuses("DeleteHost", json!({"uuid": h}), Code::OperationFailure);
    w.change_state("ChangeHostState", &h, "maintain");
    w.refuses_as(
        &Who::As(normal()),
        "DeleteHost",
        json!({"uuid": h}),
        Code::PermissionDenied,
    );
    w.admin("DeleteHost", json!({"uuid": h, "deleteMode": "Permissive"}));
    assert!(hosts(&mut w, json!([])).is_empty());
    assert!(crate::testing::user_tags(&w.t).is_empty());
    // Already gone: a success, as ZStack's delete of a missing resource.
    w.admin("DeleteHost", json!({"uuid": h}));
    // A disconnected host may be deleted in any state.
    let h2 = add(&mut w, &c, "10.0.0.6");
    set_status(&mut w, &h2, HostStatus::Disconnected);
    w.admin("DeleteHost", json!({"uuid": h2}));
    assert!(hosts(&mut w, json!([])).is_empty());
}

#[test]
fn reconnect_host() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let h = add(&mut w, &c, "10.0.0.5");
    set_status(&mut w, &h, HostStatus::Disconnected);
    let m = w.admin("ReconnectHost", json!({"uuid": h}));
    assert_eq!(m["inventory"]["status"], "Connected");
    w.change_state("ChangeHostState", &h, "maintain");
    // In maintenance.
    w.refuses("ReconnectHost", json!({"uuid": h}), Code::OperationFailure);
    w.refuses(
        "ReconnectHost",
        json!({"uuid": "7".repeat(32)}),
        Code::ResourceNotFound,
    );
    w.refuses_as(
        &Who::As(normal()),
        "ReconnectHost",
        json!({"uuid": h}),
        Code::PermissionDenied,
    );
}

#[test]
fn query_host_visibility_and_bad_query() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    add(&mut w, &c, "10.0.0.5");
    add(&mut w, &c, "10.0.0.6");
    assert_eq!(
        hosts(&mut w, json!([{"name":"state","op":"=","value":"enabled"}])).len(),
        2
    );
    let seen = w
        .send(&Who::As(normal()), "QueryHost", json!({"conditions": []}))
        .unwrap();
    assert_eq!(seen["inventories"], json!([]));
    // Password is not a field.
    w.refuses(
        "QueryHost",
        json!({"conditions": [], "fields": ["password"]}),
        Code::InvalidArgument,
    );
}

#[test]
fn cluster_and_zone_cascades() {
    let mut w = Harness::new();
    let (z, c) = w.zone_and_cluster();
    let h1 = add(&mut w, &c, "10.0.0.5");
    let h2 = add(&mut w, &c, "10.0.0.6");
    w.change_state("ChangeHostState", &h2, "maintain");
    w.change_state("ChangeClusterState", &c, "disable");
    assert_eq!(host(&w, &h1).state, HostState::Disabled);
    assert_eq!(host(&w, &h2).state, HostState::Maintenance, "skipped");
    w.change_state("ChangeClusterState", &c, "enable");
    assert_eq!(host(&w, &h1).state, HostState::Enabled);
    w.change_state("ChangeZoneState", &z, "disable");
    assert_eq!(host(&w, &h1).state, HostState::Disabled);
    assert_eq!(host(&w, &h2).state, HostState::Maintenance);
    w.change_state("ChangeZoneState", &z, "enable");
    assert_eq!(host(&w, &h1).state, HostState::Enabled);
    // A host can be re-enabled inside a disabled cluster.
    w.change_state("ChangeClusterState", &c, "disable");
    w.change_state("ChangeHostState", &h1, "enable");
    assert_eq!(host(&w, &h1).state, HostState::Enabled);

    w.admin("DeleteCluster", json!({"uuid": c}));
    assert!(hosts(&mut w, json!([])).is_empty());
    let c2 = w.created(
        "CreateCluster",
        json!({"zoneUuid": z, "name": "c2", "hypervisorType": "KVM"}),
    );
    // The deleted hosts' IPs are free again.
    add(&mut w, &c2, "10.0.0.5");
    w.admin("DeleteZone", json!({"uuid": z}));
    assert!(hosts(&mut w, json!([])).is_empty());
    assert!(resource::list::<Host>(&w.t).unwrap().is_empty());
}

fn planned(name: &str, body: Value) -> Command {
    let stamp = Stamp {
        now_ms: 9_000,
        new_uuid: "f".repeat(32),
        salt: [0; 16],
        key: crate::testing::key(),
    };
    match crate::testing::harness::admin_plan(name, body, &stamp) {
        Plan::ProbeThenPropose { command, .. } | Plan::Propose { command, .. } => *command,
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_target_dry_runs_without_writing() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let h = add(&mut w, &c, "10.0.0.5");
    let before = w.t.tables.clone();
    // Sealing draws a fresh nonce, so endpoints compare with their passwords opened.
    let plain = |e: Option<HostEndpoint>| {
        e.map(|e| {
            let pw = crate::testing::opened(&e.password);
            (e.management_ip, e.ssh_port, e.username, pw)
        })
    };
    let endpoint = |ip: &str, port: u16| HostEndpoint {
        management_ip: ip.into(),
        ssh_port: port,
        username: "root".into(),
        password: crate::testing::sealed("secret-pw"),
    };
    let ep = |ip: &str, port: u16| plain(Some(endpoint(ip, port))).unwrap();
    let mut body = add_body(&c, "10.0.0.6");
    body["systemTags"] = json!(["x::y"]);
    let add = planned("AddKVMHost", body);
    assert!(crate::testing::is_tagged_create(&add));
    assert_eq!(
        plain(probe_target(&mut w.t, 9_000, &add).unwrap()),
        Some(ep("10.0.0.6", 2222))
    );
    // Refused by state: no endpoint, the call's own error.
    let dup = planned("AddKVMHost", add_body(&c, "10.0.0.5"));
    assert_eq!(
        probe_target(&mut w.t, 9_000, &dup).unwrap_err().code(),
        "SYS.1007"
    );
    let same = planned("UpdateKVMHost", json!({"uuid": h, "name": "n"}));
    assert_eq!(probe_target(&mut w.t, 9_000, &same).unwrap(), None);
    let moved = planned("UpdateKVMHost", json!({"uuid": h, "sshPort": 22}));
    assert_eq!(
        plain(probe_target(&mut w.t, 9_000, &moved).unwrap()),
        Some(ep("10.0.0.5", 22))
    );
    let again = planned("ReconnectHost", json!({"uuid": h}));
    assert_eq!(
        plain(probe_target(&mut w.t, 9_000, &again).unwrap()),
        Some(ep("10.0.0.5", 2222))
    );
    let state = planned(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "disable"}),
    );
    assert_eq!(probe_target(&mut w.t, 9_000, &state).unwrap(), None);
    assert_eq!(w.t.tables, before, "the dry run wrote");

    let e = unreachable_refusal(
        "AddKVMHost",
        &endpoint("10.0.0.6", 2222),
        "connection refused",
    );
    assert_eq!(e.code.as_str(), "HOST.1000");
    assert!(e.details.contains("10.0.0.6:2222") && e.details.contains("connection refused"));
    let e = unreachable_refusal("ReconnectHost", &endpoint("10.0.0.6", 22), "timed out");
    assert_eq!(e.code.as_str(), "HOST.1002");
}

#[test]
fn passwords_are_sealed_while_planning_and_unsealed_ones_refused() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    // The planned command already carries sealed text: the plaintext never reaches a proposal.
    let cmd = planned("AddKVMHost", add_body(&c, "10.0.0.5"));
    let text = format!("{cmd:?}");
    assert!(!text.contains("secret-pw"), "{text}");
    let Command::Host(h) = cmd.innermost() else {
        panic!("{cmd:?}")
    };
    let HostOp::AddKvm { password, .. } = &*h.op else {
        panic!()
    };
    assert_eq!(crate::testing::opened(password), "secret-pw");
    // Checked in clear before sealing; the refusal does not quote it.
    for bad in [json!(""), json!("x".repeat(256))] {
        let mut body = add_body(&c, "10.0.0.5");
        body["password"] = bad;
        w.refuses("AddKVMHost", body, Code::InvalidArgument);
    }
    // A command carrying plaintext (a buggy or hostile proposer) is refused by the apply.
    let mut cmd = planned("AddKVMHost", add_body(&c, "10.0.0.6"));
    if let Command::Host(h) = &mut cmd {
        if let HostOp::AddKvm { password, .. } = &mut *h.op {
            *password = crate::secret::Sealed::from_stored("secret-pw".into());
        }
    }
    let before = w.t.tables.clone();
    let r = w.apply(cmd);
    assert!(
        matches!(&r, crate::Response::Refused(e) if e.code() == "SYS.1007"),
        "{r:?}"
    );
    assert_eq!(w.t.tables, before);
}

fn track(
    w: &mut Harness,
    uuid: &str,
    status: HostStatus,
    facts: Option<HostFacts>,
) -> crate::Response {
    use crate::IntoCommand;
    let ctx = crate::ApplyCtx {
        index: 100,
        term: 1,
        proposed_at_ms: 9000,
    };
    let cmd = HostOp::Track {
        uuid: uuid.into(),
        status,
        facts,
    }
    .command(crate::Caller::admin());
    crate::apply(&mut w.t, &ctx, cmd).expect("apply")
}

#[test]
fn the_trackers_reports_set_status_and_real_capacity() {
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    let uuid = add(&mut w, &c, "10.0.0.9");
    let facts = HostFacts {
        cpu_threads: 8,
        cpu_sockets: 2,
        memory_bytes: 16 << 30,
        architecture: "x86_64".into(),
        os_distribution: "debian".into(),
        os_release: "bookworm".into(),
        os_version: "12".into(),
    };
    track(&mut w, &uuid, HostStatus::Connected, Some(facts));
    let inv = &hosts(&mut w, json!([{"name": "uuid", "op": "=", "value": uuid}]))[0];
    // threads × host/cpu.overProvisioning.ratio (default 10).
    assert_eq!(inv["cpuNum"], 8);
    assert_eq!(inv["totalCpuCapacity"], 80);
    assert_eq!(inv["availableCpuCapacity"], 80);
    assert_eq!(inv["cpuSockets"], 2);
    assert_eq!(inv["totalMemoryCapacity"], 16u64 << 30);
    assert_eq!(inv["architecture"], "x86_64");
    assert_eq!(inv["osDistribution"], "debian");
    // A missed-ping report keeps the facts and changes only the status.
    track(&mut w, &uuid, HostStatus::Disconnected, None);
    let h = host(&w, &uuid);
    assert_eq!((h.status, h.cpu_num), (HostStatus::Disconnected, 8));
    // Never Connecting, and never for a host that is gone.
    assert!(matches!(
        track(&mut w, &uuid, HostStatus::Connecting, None).innermost(),
        crate::Response::Refused(_)
    ));
    assert!(matches!(
        track(
            &mut w,
            "0123456789abcdef0123456789abcdef",
            HostStatus::Connected,
            None
        )
        .innermost(),
        crate::Response::Refused(_)
    ));
    assert_eq!(host(&w, &uuid).status, HostStatus::Disconnected);
}

#[test]
fn a_host_without_hardware_virtualisation_is_refused_and_leaves_nothing() {
    use crate::families::host::flows;
    let mut w = Harness::new();
    let (_, c) = w.zone_and_cluster();
    // The flow's last step on the vars an agent on libvirt's test driver would answer.
    let mut vars = crate::flow::Vars::new();
    let uuid = add(&mut w, &c, "10.0.0.9");
    vars.insert(flows::vars::HOST.into(), uuid.clone());
    let facts = HostFacts {
        cpu_threads: 4,
        cpu_sockets: 1,
        memory_bytes: 1 << 30,
        architecture: "i686".into(),
        os_distribution: String::new(),
        os_release: String::new(),
        os_version: String::new(),
    };
    vars.insert(
        flows::vars::FACTS.into(),
        serde_json::to_string(&facts).unwrap(),
    );
    vars.insert(flows::vars::VIRTUALIZATION.into(), "test".into());
    let step = &flows::ADD_KVM_FLOW.steps[2];
    let crate::flow::Action::Commit(f) = step.action else {
        panic!("host-connected is a commit")
    };
    let ctx = crate::testing::ctx(99);
    let e = f(&mut w.t, &ctx, &crate::Caller::admin(), &mut vars.clone()).unwrap_err();
    let r = crate::plan::refusal_of(&e);
    assert_eq!(r.code, Code::HostAdd);
    assert!(r.details.contains("virtualization=test"), "{}", r.details);
    assert!(r.details.contains("kvm/allowTestDriver"), "{}", r.details);
    // Allowed once the operator says the test driver is fine.
    w.admin(
        "UpdateGlobalConfig",
        json!({"category": "kvm", "name": "allowTestDriver", "value": "true"}),
    );
    let resp = f(&mut w.t, &ctx, &crate::Caller::admin(), &mut vars.clone()).unwrap();
    assert!(resp.is_some());
    let h = host(&w, &uuid);
    assert_eq!(
        (h.status, h.cpu_num, h.total_memory_capacity),
        (HostStatus::Connected, 4, 1 << 30)
    );
    vars.insert(flows::vars::VIRTUALIZATION.into(), "none".into());
    let e = f(&mut w.t, &ctx, &crate::Caller::admin(), &mut vars).unwrap_err();
    assert!(!crate::plan::refusal_of(&e)
        .details
        .contains("allowTestDriver"));
}
