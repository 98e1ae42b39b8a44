//! Host unit tests, through the wire.

use serde_json::json;
use serde_json::Map;
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
use crate::wire::envelope::decode_request;
use crate::wire::errors::Refusal;
use crate::Caller;
use crate::Command;

/// Calls through the node's path (`testing::harness::send`); the probe itself is the node's, so
/// here every probe "succeeds".
struct Wire(Harness);

impl Wire {
    fn new() -> Self {
        Wire(Harness::new())
    }

    fn call_as(
        &mut self,
        caller: &Caller,
        name: &str,
        body: Value,
    ) -> Result<Map<String, Value>, Refusal> {
        self.0.send(&Who::As(caller.clone()), name, body)
    }

    fn ok(&mut self, name: &str, body: Value) -> Map<String, Value> {
        self.0.admin(name, body)
    }

    fn created(&mut self, name: &str, body: Value) -> String {
        self.0.created(name, body)
    }

    /// The refusal code; asserts that nothing changed.
    fn refused_as(&mut self, caller: &Caller, name: &str, body: Value) -> &'static str {
        self.0
            .refused(&Who::As(caller.clone()), name, body)
            .code
            .as_str()
    }

    fn refused(&mut self, name: &str, body: Value) -> &'static str {
        self.refused_as(&Caller::admin(), name, body)
    }

    fn hosts(&mut self, conds: Value) -> Vec<Value> {
        self.0.query("QueryHost", conds)
    }

    fn host(&self, uuid: &str) -> Host {
        resource::require::<Host>(&self.0.t, uuid).expect("host").1
    }

    /// Force a status, as the agent's ping tracker will.
    fn set_status(&mut self, uuid: &str, status: HostStatus) {
        let (owner, mut h) = resource::require::<Host>(&self.0.t, uuid).expect("host");
        h.status = status;
        resource::save(&mut self.0.t, &owner, &h).expect("save");
    }

    /// A zone and a KVM cluster in it.
    fn cluster(&mut self) -> (String, String) {
        let z = self.created("CreateZone", json!({"name": "z"}));
        let c = self.created(
            "CreateCluster",
            json!({"zoneUuid": z, "name": "c", "hypervisorType": "KVM"}),
        );
        (z, c)
    }

    fn add(&mut self, cluster: &str, ip: &str) -> String {
        self.created("AddKVMHost", add_body(cluster, ip))
    }
}

fn add_body(cluster: &str, ip: &str) -> Value {
    json!({"clusterUuid": cluster, "name": format!("h-{ip}"), "managementIp": ip,
           "username": "root", "password": "secret-pw", "sshPort": 2222})
}

#[test]
fn add_kvm_host_inventory_shape_without_password() {
    let mut w = Wire::new();
    let (z, c) = w.cluster();
    let m = w.ok(
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
            r#"{{"username":"root","sshPort":22,"zoneUuid":"{z}","name":"h1","uuid":"{uuid}","clusterUuid":"{c}","description":"d","managementIp":"10.0.0.5","hypervisorType":"KVM","state":"Enabled","status":"Connected","totalCpuCapacity":0,"availableCpuCapacity":0,"cpuSockets":0,"totalMemoryCapacity":0,"availableMemoryCapacity":0,"cpuNum":0,"createDate":"{d}","lastOpDate":"{d}"}}"#
        )
    );
    // Stored for the agent, shown nowhere.
    assert_eq!(w.host(&uuid).password, "secret-pw");
    let all = w.hosts(json!([]));
    assert_eq!(all.len(), 1);
    assert!(!serde_json::to_string(&all).unwrap().contains("secret-pw"));
    assert_eq!(
        w.hosts(json!([{"name":"managementIp","op":"=","value":"10.0.0.5"}]))
            .len(),
        1
    );
    assert_eq!(
        w.hosts(json!([{"name":"clusterUuid","op":"=","value":c}]))
            .len(),
        1
    );
    let fields = w.ok(
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
    let mut w = Wire::new();
    let (z, c) = w.cluster();
    w.add(&c, "10.0.0.5");
    assert_eq!(
        w.refused("AddKVMHost", add_body(&"9".repeat(32), "10.0.0.6")),
        "SYS.1003",
        "no cluster"
    );
    assert_eq!(
        w.refused("AddKVMHost", add_body(&c, "10.0.0.5")),
        "SYS.1007",
        "duplicate managementIp"
    );
    let mut b = add_body(&c, "10.0.0.6");
    b["sshPort"] = json!(0);
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "port 0");
    let mut b = add_body(&c, "10.0.0.6");
    b["sshPort"] = json!(65536);
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "port 65536");
    let mut b = add_body(&c, "10.0.0.6");
    b["sshPort"] = json!("ssh");
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "port type");
    let mut b = add_body(&c, "10.0.0.6");
    b.as_object_mut().unwrap().remove("password");
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "no password");
    let mut b = add_body(&c, "10.0.0.6");
    b["password"] = json!("");
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "empty password");
    let mut b = add_body(&c, "10.0.0.6");
    b["managementIp"] = json!("10.0.0.6; rm -rf /");
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "bad ip");
    let mut b = add_body(&c, "10.0.0.6");
    b["name"] = json!(" ");
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "blank name");
    let mut b = add_body(&c, "10.0.0.6");
    b["username"] = json!("u".repeat(256));
    assert_eq!(w.refused("AddKVMHost", b), "SYS.1007", "long username");
    // A cluster of another hypervisor (CreateCluster only makes KVM ones).
    let other = crate::testing::copy_cluster(&mut w.0.t, &c, &"e".repeat(32), "Simulator");
    assert_eq!(
        w.refused("AddKVMHost", add_body(&other, "10.0.0.6")),
        "SYS.1007",
        "not KVM"
    );
    assert_eq!(
        w.refused_as(&normal(), "AddKVMHost", add_body(&c, "10.0.0.6")),
        "ID.1002"
    );
    // A disabled zone and cluster still accept hosts (spec 03 §14.5).
    w.ok(
        "ChangeZoneState",
        json!({"uuid": z, "stateEvent": "disable"}),
    );
    let h = w.add(&c, "10.0.0.7");
    assert_eq!(w.host(&h).state, HostState::Enabled);
}

#[test]
fn update_kvm_host() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    let h = w.add(&c, "10.0.0.5");
    w.add(&c, "10.0.0.6");
    let m = w.ok(
        "UpdateKVMHost",
        json!({"uuid": h, "name": "renamed", "managementIp": "10.0.0.9",
               "sshPort": 22, "username": "zstack", "password": "new-pw"}),
    );
    assert_eq!(m["inventory"]["managementIp"], "10.0.0.9");
    assert_eq!(m["inventory"]["sshPort"], 22);
    assert!(m["inventory"].get("password").is_none());
    let stored = w.host(&h);
    assert_eq!(
        (
            stored.name.as_str(),
            stored.username.as_str(),
            stored.password.as_str()
        ),
        ("renamed", "zstack", "new-pw")
    );
    // The old IP is free again; the index follows the update.
    assert!(w
        .hosts(json!([{"name":"managementIp","op":"=","value":"10.0.0.5"}]))
        .is_empty());
    // Keeping its own IP is no conflict.
    w.ok(
        "UpdateKVMHost",
        json!({"uuid": h, "managementIp": "10.0.0.9"}),
    );
    assert_eq!(
        w.refused(
            "UpdateKVMHost",
            json!({"uuid": h, "managementIp": "10.0.0.6"})
        ),
        "SYS.1007",
        "duplicate managementIp"
    );
    assert_eq!(
        w.refused("UpdateKVMHost", json!({"uuid": h, "sshPort": 70000})),
        "SYS.1007"
    );
    assert_eq!(
        w.refused("UpdateKVMHost", json!({"uuid": h, "password": ""})),
        "SYS.1007"
    );
    assert_eq!(
        w.refused("UpdateKVMHost", json!({"uuid": "7".repeat(32)})),
        "SYS.1003"
    );
    assert_eq!(
        w.refused_as(&normal(), "UpdateKVMHost", json!({"uuid": h, "name": "x"})),
        "ID.1002"
    );
    w.set_status(&h, HostStatus::Connecting);
    assert_eq!(
        w.refused(
            "UpdateKVMHost",
            json!({"uuid": h, "managementIp": "10.0.0.10"})
        ),
        "SYS.1006",
        "IP change while Connecting"
    );
}

#[test]
fn change_host_state_machine() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    let h = w.add(&c, "10.0.0.5");
    let state = |w: &mut Wire, ev: &str| {
        w.ok("ChangeHostState", json!({"uuid": h, "stateEvent": ev}))["inventory"]["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(&mut w, "disable"), "Disabled");
    assert_eq!(state(&mut w, "enable"), "Enabled");
    assert_eq!(state(&mut w, "maintain"), "Maintenance");
    assert_eq!(
        w.refused(
            "ChangeHostState",
            json!({"uuid": h, "stateEvent": "maintain"})
        ),
        "SYS.1006",
        "already in maintenance"
    );
    assert_eq!(state(&mut w, "disable"), "Disabled");
    w.set_status(&h, HostStatus::Disconnected);
    assert_eq!(
        w.refused(
            "ChangeHostState",
            json!({"uuid": h, "stateEvent": "maintain"})
        ),
        "SYS.1006",
        "maintain needs Connected"
    );
    assert_eq!(
        w.refused(
            "ChangeHostState",
            json!({"uuid": h, "stateEvent": "preMaintain"})
        ),
        "SYS.1007",
        "not an API event"
    );
    assert_eq!(
        w.refused(
            "ChangeHostState",
            json!({"uuid": "7".repeat(32), "stateEvent": "enable"})
        ),
        "SYS.1003"
    );
    assert_eq!(
        w.refused_as(
            &normal(),
            "ChangeHostState",
            json!({"uuid": h, "stateEvent": "enable"})
        ),
        "ID.1002"
    );
}

#[test]
fn delete_host() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    let h = w.add(&c, "10.0.0.5");
    w.ok(
        "CreateUserTag",
        json!({"resourceType": "HostVO", "resourceUuid": h, "tag": "rack-1"}),
    );
    assert_eq!(
        w.refused("DeleteHost", json!({"uuid": h})),
        "SYS.1006",
        "Enabled and Connected"
    );
    w.ok(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "maintain"}),
    );
    assert_eq!(
        w.refused_as(&normal(), "DeleteHost", json!({"uuid": h})),
        "ID.1002"
    );
    w.ok("DeleteHost", json!({"uuid": h, "deleteMode": "Permissive"}));
    assert!(w.hosts(json!([])).is_empty());
    assert!(crate::testing::user_tags(&w.0.t).is_empty());
    // Already gone: a success, as ZStack's delete of a missing resource.
    w.ok("DeleteHost", json!({"uuid": h}));
    // A disconnected host may be deleted in any state.
    let h2 = w.add(&c, "10.0.0.6");
    w.set_status(&h2, HostStatus::Disconnected);
    w.ok("DeleteHost", json!({"uuid": h2}));
    assert!(w.hosts(json!([])).is_empty());
}

#[test]
fn reconnect_host() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    let h = w.add(&c, "10.0.0.5");
    w.set_status(&h, HostStatus::Disconnected);
    let m = w.ok("ReconnectHost", json!({"uuid": h}));
    assert_eq!(m["inventory"]["status"], "Connected");
    w.ok(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "maintain"}),
    );
    assert_eq!(
        w.refused("ReconnectHost", json!({"uuid": h})),
        "SYS.1006",
        "in maintenance"
    );
    assert_eq!(
        w.refused("ReconnectHost", json!({"uuid": "7".repeat(32)})),
        "SYS.1003"
    );
    assert_eq!(
        w.refused_as(&normal(), "ReconnectHost", json!({"uuid": h})),
        "ID.1002"
    );
}

#[test]
fn query_host_visibility_and_bad_query() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    w.add(&c, "10.0.0.5");
    w.add(&c, "10.0.0.6");
    assert_eq!(
        w.hosts(json!([{"name":"state","op":"=","value":"enabled"}]))
            .len(),
        2
    );
    let seen = w
        .call_as(&normal(), "QueryHost", json!({"conditions": []}))
        .unwrap();
    assert_eq!(seen["inventories"], json!([]));
    assert_eq!(
        w.refused(
            "QueryHost",
            json!({"conditions": [], "fields": ["password"]})
        ),
        "SYS.1007",
        "password is not a field"
    );
}

#[test]
fn cluster_and_zone_cascades() {
    let mut w = Wire::new();
    let (z, c) = w.cluster();
    let h1 = w.add(&c, "10.0.0.5");
    let h2 = w.add(&c, "10.0.0.6");
    w.ok(
        "ChangeHostState",
        json!({"uuid": h2, "stateEvent": "maintain"}),
    );
    w.ok(
        "ChangeClusterState",
        json!({"uuid": c, "stateEvent": "disable"}),
    );
    assert_eq!(w.host(&h1).state, HostState::Disabled);
    assert_eq!(w.host(&h2).state, HostState::Maintenance, "skipped");
    w.ok(
        "ChangeClusterState",
        json!({"uuid": c, "stateEvent": "enable"}),
    );
    assert_eq!(w.host(&h1).state, HostState::Enabled);
    w.ok(
        "ChangeZoneState",
        json!({"uuid": z, "stateEvent": "disable"}),
    );
    assert_eq!(w.host(&h1).state, HostState::Disabled);
    assert_eq!(w.host(&h2).state, HostState::Maintenance);
    w.ok(
        "ChangeZoneState",
        json!({"uuid": z, "stateEvent": "enable"}),
    );
    assert_eq!(w.host(&h1).state, HostState::Enabled);
    // A host can be re-enabled inside a disabled cluster.
    w.ok(
        "ChangeClusterState",
        json!({"uuid": c, "stateEvent": "disable"}),
    );
    w.ok(
        "ChangeHostState",
        json!({"uuid": h1, "stateEvent": "enable"}),
    );
    assert_eq!(w.host(&h1).state, HostState::Enabled);

    w.ok("DeleteCluster", json!({"uuid": c}));
    assert!(w.hosts(json!([])).is_empty());
    let c2 = w.created(
        "CreateCluster",
        json!({"zoneUuid": z, "name": "c2", "hypervisorType": "KVM"}),
    );
    // The deleted hosts' IPs are free again.
    w.add(&c2, "10.0.0.5");
    w.ok("DeleteZone", json!({"uuid": z}));
    assert!(w.hosts(json!([])).is_empty());
    assert!(resource::list::<Host>(&w.0.t).unwrap().is_empty());
}

fn planned(name: &str, body: Value) -> Command {
    let spec = crate::catalogue::catalogue().by_name(name).unwrap();
    let raw = json!({ spec.class.clone(): body }).to_string();
    let req = decode_request(raw.as_bytes()).unwrap();
    let stamp = Stamp {
        now_ms: 9_000,
        new_uuid: "f".repeat(32),
        salt: [0; 16],
    };
    match crate::plan::plan(&req, &Caller::admin(), &stamp).unwrap() {
        Plan::ProbeThenPropose { command, .. } | Plan::Propose { command, .. } => *command,
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_target_dry_runs_without_writing() {
    let mut w = Wire::new();
    let (_, c) = w.cluster();
    let h = w.add(&c, "10.0.0.5");
    let before = w.0.t.tables.clone();
    let ep = |ip: &str, port: u16| HostEndpoint {
        management_ip: ip.into(),
        ssh_port: port,
        username: "root".into(),
    };
    let mut body = add_body(&c, "10.0.0.6");
    body["systemTags"] = json!(["x::y"]);
    let add = planned("AddKVMHost", body);
    assert!(crate::testing::is_tagged_create(&add));
    assert_eq!(
        probe_target(&mut w.0.t, 9_000, &add).unwrap(),
        Some(ep("10.0.0.6", 2222))
    );
    // Refused by state: no endpoint, the call's own error.
    let dup = planned("AddKVMHost", add_body(&c, "10.0.0.5"));
    assert_eq!(
        probe_target(&mut w.0.t, 9_000, &dup).unwrap_err().code(),
        "SYS.1007"
    );
    let same = planned("UpdateKVMHost", json!({"uuid": h, "name": "n"}));
    assert_eq!(probe_target(&mut w.0.t, 9_000, &same).unwrap(), None);
    let moved = planned("UpdateKVMHost", json!({"uuid": h, "sshPort": 22}));
    assert_eq!(
        probe_target(&mut w.0.t, 9_000, &moved).unwrap(),
        Some(ep("10.0.0.5", 22))
    );
    let again = planned("ReconnectHost", json!({"uuid": h}));
    assert_eq!(
        probe_target(&mut w.0.t, 9_000, &again).unwrap(),
        Some(ep("10.0.0.5", 2222))
    );
    let state = planned(
        "ChangeHostState",
        json!({"uuid": h, "stateEvent": "disable"}),
    );
    assert_eq!(probe_target(&mut w.0.t, 9_000, &state).unwrap(), None);
    assert_eq!(w.0.t.tables, before, "the dry run wrote");

    let e = unreachable_refusal("AddKVMHost", &ep("10.0.0.6", 2222), "connection refused");
    assert_eq!(e.code.as_str(), "HOST.1000");
    assert!(e.details.contains("10.0.0.6:2222") && e.details.contains("connection refused"));
    let e = unreachable_refusal("ReconnectHost", &ep("10.0.0.6", 22), "timed out");
    assert_eq!(e.code.as_str(), "HOST.1002");
}
