//! REST v1 conformance with ZStack's Java SDK (issue 17), over real HTTP through a follower of
//! a two-node cluster. Every answer is read the way `ZSClient` reads it ([`sdk_read`], written
//! from `sdk/src/main/java/org/zstack/sdk/ZSClient.java` and `ApiResult.java`):
//!
//! - the first answer: 200/204 is a result; 202 must carry `location`, which is polled (with
//!   `X-JSON-Schema`) while it answers 202 `{}`, until 200 (a result) or 503 (`{"error": ..}`,
//!   parsed into the SDK's `ErrorCode`); any other first answer — a sync call's 503, a plain
//!   text 4xx/5xx — becomes `sdk.1000` with the body as details;
//! - a result's `schema`: the SDK resolves every path in it against the body and turns the
//!   object there into the named class, so every path must name an object that is there
//!   (`inventories[1]` of a two-element list, nothing for an empty list or a count), every
//!   object of a ZStack class must be named (else the SDK leaves it an untyped map), parents
//!   before children, and every class must be one the SDK maps ([`SDK_CLASSES`]).
//!
//! Driven by the call registry (`api::registry::calls()`): each query gets the generic cases
//! (all, by uuid, empty, count); each other call has its cases in [`cases`], run in order as
//! they build and tear down a world (zone, cluster, a KVM host with a test-driver agent,
//! storage, offerings, an image, networks, tags, keys, accounts). A call with no case fails
//! the test naming it. `api/tests/api_coverage.rs` reads the case table to mark each call's
//! REST-shape coverage in `docs/api-coverage.md`.

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use common::spawn;
use reqwest::Method as M;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The test host's address (agent, fake SSH, image store): its own loopback address, so that
/// other tests' agents on 127.0.0.1 never collide with it.
const HOST_IP: &str = "127.0.0.17";

/// Classes the SDK maps to its own (`sdk/src/main/java/SourceClassMap.java`), for the classes
/// the implemented calls return; a schema naming any other class is skipped by the SDK.
const SDK_CLASSES: &[&str] = &[
    "org.zstack.core.config.GlobalConfigInventory",
    "org.zstack.header.cluster.ClusterInventory",
    "org.zstack.header.configuration.DiskOfferingInventory",
    "org.zstack.header.configuration.InstanceOfferingInventory",
    "org.zstack.header.core.progress.TaskProgressInventory",
    "org.zstack.header.identity.AccountInventory",
    "org.zstack.header.identity.SessionInventory",
    "org.zstack.header.identity.UserInventory",
    "org.zstack.header.image.ImageBackupStorageRefInventory",
    "org.zstack.header.image.ImageInventory",
    "org.zstack.header.managementnode.ManagementNodeInventory",
    "org.zstack.header.network.l2.L2NetworkInventory",
    "org.zstack.header.network.l2.L2VlanNetworkInventory",
    "org.zstack.header.network.l3.FreeIpInventory",
    "org.zstack.header.network.l3.IpRangeInventory",
    "org.zstack.header.network.l3.L3NetworkHostRouteInventory",
    "org.zstack.header.network.l3.L3NetworkInventory",
    "org.zstack.header.network.l3.ReservedIpRangeInventory",
    "org.zstack.header.network.service.NetworkServiceL3NetworkRefInventory",
    "org.zstack.header.sshkeypair.SshKeyPairInventory",
    "org.zstack.scheduler.SchedulerJobInventory",
    "org.zstack.scheduler.SchedulerTriggerInventory",
    "org.zstack.scheduler.SchedulerJobHistoryInventory",
    "org.zstack.header.storage.backup.BackupStorageInventory",
    "org.zstack.header.storage.primary.PrimaryStorageInventory",
    "org.zstack.header.tag.SystemTagInventory",
    "org.zstack.header.tag.UserTagInventory",
    "org.zstack.header.errorcode.ErrorCode",
    "org.zstack.header.vm.CloneVmInstanceInventory",
    "org.zstack.header.vm.CloneVmInstanceResults",
    "org.zstack.header.vm.VmInstanceInventory",
    "org.zstack.header.vm.VmNicInventory",
    "org.zstack.header.volume.VolumeInventory",
    "org.zstack.header.storage.snapshot.VolumeSnapshotInventory",
    "org.zstack.header.storage.snapshot.VolumeSnapshotTreeInventory",
    "org.zstack.header.storage.snapshot.SnapshotLeafInventory",
    "org.zstack.header.zone.ZoneInventory",
    "org.zstack.kvm.KVMHostInventory",
    "org.zstack.network.l2.vxlan.vxlanNetwork.L2VxlanNetworkInventory",
    "org.zstack.network.l2.vxlan.vxlanNetworkPool.L2VxlanNetworkPoolInventory",
    "org.zstack.network.l2.vxlan.vxlanNetworkPool.VniRangeInventory",
    "org.zstack.storage.backup.imagestore.ImageStoreBackupStorageInventory",
    "org.zstack.zwatch.migratedb.AuditsInventory",
];

/// The NIC `AttachL3NetworkToVm` gives the VM (its `resourceUuid`), which the detach names.
const CONFORMANCE_NIC: &str = "00000000000000000000000000c0ff01";

/// The `resourceUuid` of the conformance `CloneVmInstance`; its one clone's uuid is derived
/// from it (`derive_uuid(base, 0)`), which the teardown destroys.
const CONFORMANCE_CLONES: &str = "00000000000000000000000000c10e01";

/// Inventory fields that are JRE maps in ZStack (`Map<String, String>`, `LinkedHashMap`):
/// objects in JSON that get no schema entry.
const JRE_MAPS: &[&str] = &["attachedCidrs", "opaque", "clusterPsMap"];

/// Reply fields that are `java.util.Map`s of inventories (or of lists of them): the map gets
/// no entry, its objects do, at `field.key` / `field.key[i]`.
const MAPS_OF_OBJECTS: &[&str] = &["dataVolumePrimaryStorages"];

/// What the SDK makes of an answer: the result body, or the `ErrorCode` it surfaces.
type SdkResult = Result<Value, SdkError>;

#[derive(Debug, Clone)]
struct SdkError {
    code: String,
    details: String,
}

/// One HTTP answer.
struct Http {
    status: u16,
    text: String,
}

impl Http {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }
}

struct Client {
    c: reqwest::Client,
    /// `http://<follower>/zstack`.
    base: String,
    /// The follower's `host:port`, which `location` must name.
    host: String,
    session: Option<String>,
}

impl Client {
    async fn http(&self, method: M, url: &str, body: Option<&str>, schema: bool) -> Http {
        let mut req = self.c.request(method, url);
        if let Some(s) = &self.session {
            req = req.header("Authorization", format!("OAuth {s}"));
        }
        if schema {
            req = req.header("X-JSON-Schema", "true");
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("HTTP request");
        let status = r.status().as_u16();
        Http {
            status,
            text: r.text().await.unwrap_or_default(),
        }
    }

    /// Send like `ZSClient` does (with `X-JSON-Schema` unless `schema` is false) and read the
    /// answer the way it does; a shape the SDK would throw on is a failure in `problems`.
    async fn sdk_read(
        &self,
        label: &str,
        method: M,
        path: &str,
        body: Option<&str>,
        schema: bool,
        problems: &mut Vec<String>,
    ) -> (SdkResult, Option<String>) {
        let url = format!("{}{path}", self.base);
        let first = self.http(method, &url, body, schema).await;
        let wrap = |h: &Http| SdkError {
            code: "sdk.1000".into(),
            details: format!("{} {}", h.status, h.text),
        };
        match first.status {
            200 | 204 => (read_result(label, &first, problems), None),
            202 => {
                let v = first.json().unwrap_or(Value::Null);
                let keys: Vec<&str> = v
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if keys != ["apiTimeout", "location"] || !v["apiTimeout"].is_u64() {
                    problems.push(format!(
                        "{label}: 202 body is not {{apiTimeout, location}}: {}",
                        first.text
                    ));
                }
                let Some(location) = v["location"].as_str().map(str::to_string) else {
                    problems.push(format!("{label}: 202 without location: the SDK throws"));
                    return (Err(wrap(&first)), None);
                };
                let prefix = format!("http://{}/zstack/v1/api-jobs/", self.host);
                let job = location
                    .strip_prefix(&prefix)
                    .unwrap_or_default()
                    .to_string();
                if job.len() != 32 || !job.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(format!(
                        "{label}: location {location} is not {prefix}<32 hex>"
                    ));
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let p = self.http(M::GET, &location, None, schema).await;
                    match p.status {
                        202 => {
                            if p.json() != Some(json!({})) {
                                problems.push(format!("{label}: a 202 poll answered {}", p.text));
                            }
                            if Instant::now() > deadline {
                                problems.push(format!("{label}: job never finished"));
                                return (Err(wrap(&p)), Some(job));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        200 => return (read_result(label, &p, problems), Some(job)),
                        503 => return (read_error(label, &p, problems), Some(job)),
                        _ => return (Err(wrap(&p)), Some(job)),
                    }
                }
            }
            _ => (Err(wrap(&first)), None),
        }
    }
}

/// `ApiResult` from a 503 poll: `{"error": {code, description, details, ...}}`.
fn read_error(label: &str, h: &Http, problems: &mut Vec<String>) -> SdkResult {
    let v = h.json().unwrap_or(Value::Null);
    let keys: Vec<&str> = v
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let e = &v["error"];
    let code_ok = e["code"]
        .as_str()
        .and_then(|c| c.split_once('.'))
        .is_some_and(|(p, n)| {
            !p.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        });
    if keys != ["error"] || !code_ok || !e["description"].is_string() || !e["details"].is_string() {
        problems.push(format!(
            "{label}: 503 body is not ZStack's {{error: {{code, description, details}}}}: {}",
            h.text
        ));
    }
    Err(SdkError {
        code: e["code"].as_str().unwrap_or("?").to_string(),
        details: e["details"].as_str().unwrap_or_default().to_string(),
    })
}

/// `ApiResult.getResult`: the body with every schema path resolved.
fn read_result(label: &str, h: &Http, problems: &mut Vec<String>) -> SdkResult {
    let Some(Value::Object(body)) = h.json() else {
        problems.push(format!("{label}: result is not a JSON object: {}", h.text));
        return Err(SdkError {
            code: "parse".into(),
            details: h.text.clone(),
        });
    };
    for k in ["success", "error"] {
        if body.contains_key(k) {
            problems.push(format!("{label}: a REST result carries `{k}`"));
        }
    }
    if let Some(schema) = body.get("schema") {
        check_schema(label, &body, schema, problems);
    }
    Ok(Value::Object(body))
}

/// The JSON path of every object of a ZStack class in `v` (JRE maps excluded), as ZStack's
/// `JsonSchemaBuilder` names them.
fn object_paths(path: &str, v: &Value, top: bool, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        if !top {
            out.push(path.to_string());
        }
        for (k, x) in m {
            if (top && k == "schema") || JRE_MAPS.contains(&k.as_str()) {
                continue;
            }
            let p = if top {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match x {
                Value::Object(m) if MAPS_OF_OBJECTS.contains(&k.as_str()) => {
                    for (mk, mv) in m {
                        let mp = format!("{p}.{mk}");
                        match mv {
                            Value::Object(_) => object_paths(&mp, mv, false, out),
                            Value::Array(items) => {
                                for (i, item) in items.iter().enumerate() {
                                    if item.is_object() {
                                        object_paths(&format!("{mp}[{i}]"), item, false, out);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Value::Object(_) => object_paths(&p, x, false, out),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if item.is_object() {
                            object_paths(&format!("{p}[{i}]"), item, false, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Resolve `inventories[1].backupStorageRefs[0]` in `body` the way `ApiResult.getProperty`
/// does (a missing element throws inside the SDK).
fn resolve<'a>(body: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = body;
    for seg in path.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.strip_suffix(']')?.parse::<usize>().ok()),
            None => (seg, None),
        };
        cur = cur.get(name)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    (!cur.is_null()).then_some(cur)
}

fn check_schema(
    label: &str,
    body: &Map<String, Value>,
    schema: &Value,
    problems: &mut Vec<String>,
) {
    let Some(schema) = schema.as_object() else {
        problems.push(format!("{label}: schema is not an object"));
        return;
    };
    let whole = Value::Object(body.clone());
    let mut want = Vec::new();
    object_paths("", &whole, true, &mut want);
    let want: BTreeSet<String> = want.into_iter().collect();
    let have: BTreeSet<String> = schema.keys().cloned().collect();
    for p in want.difference(&have) {
        problems.push(format!(
            "{label}: schema misses {p} (the SDK leaves it untyped)"
        ));
    }
    for p in have.difference(&want) {
        problems.push(format!(
            "{label}: schema names {p}, which is no object of the reply (the SDK throws)"
        ));
    }
    for (p, class) in schema {
        if resolve(&whole, p).is_none() {
            problems.push(format!("{label}: schema path {p} does not resolve"));
        }
        let c = class.as_str().unwrap_or_default();
        if !SDK_CLASSES.contains(&c) {
            problems.push(format!("{label}: {p} is {c}, a class the SDK does not map"));
        }
    }
    // A parent is converted before its children.
    let keys: Vec<&String> = schema.keys().collect();
    for (i, k) in keys.iter().enumerate() {
        for later in &keys[i + 1..] {
            if k.starts_with(&format!("{later}.")) || k.starts_with(&format!("{later}[")) {
                problems.push(format!(
                    "{label}: schema lists {k} before its parent {later}"
                ));
            }
        }
    }
    if body.keys().next().map(String::as_str) != Some("schema") {
        problems.push(format!("{label}: schema is not the first key"));
    }
}

/// What a case must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A result.
    Ok,
    /// The SDK surfaces this error code.
    Code(&'static str),
    /// Either, by the environment (an agent's answer); the shape is still checked.
    Any,
}

/// One non-query call: its body from the world's named uuids, what it must answer, and the
/// name its result's `inventory.uuid` is kept under.
struct Case {
    call: &'static str,
    body: Box<dyn Fn(&World) -> Value>,
    expect: Expect,
    save: Option<&'static str>,
}

type World = BTreeMap<String, String>;

fn case(call: &'static str, body: impl Fn(&World) -> Value + 'static) -> Case {
    Case {
        call,
        body: Box::new(body),
        expect: Expect::Ok,
        save: None,
    }
}

impl Case {
    fn saves(mut self, name: &'static str) -> Self {
        self.save = Some(name);
        self
    }
    fn expect(mut self, e: Expect) -> Self {
        self.expect = e;
        self
    }
}

fn w<'a>(w: &'a World, k: &str) -> &'a str {
    w.get(k).map(String::as_str).unwrap_or("missing-in-world")
}

const PASSWORD: &str = "5f4dcc3b5aa765d61d8327deb882cf99";
const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYXE4BsnXGTixX4ZmM22E8NSqbuZnQoQ7SALeCCja3T alice@example";

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zs-rest17-{}", std::process::id()))
}

fn image_url() -> String {
    let img = scratch().join("img.qcow2");
    if !img.exists() {
        std::fs::create_dir_all(scratch()).expect("scratch dir");
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("8M")
            .status()
            .expect("qemu-img");
        assert!(st.success());
    }
    format!("file://{}", img.display())
}

/// The non-query calls' cases, in the order they build and then tear down the world (the
/// queries run between the two halves, on the full world).
fn cases(ssh_port: u16) -> (Vec<Case>, Vec<Case>) {
    let st = |k: &'static str, ev: &'static str| move |x: &World| json!({"uuid": w(x, k), "stateEvent": ev});
    let rename =
        |k: &'static str| move |x: &World| json!({"uuid": w(x, k), "name": format!("{k}-renamed")});
    let uuid = |k: &'static str| move |x: &World| json!({ "uuid": w(x, k) });
    let build = vec![
        case("LogInByAccount", |_| json!({"accountName": "admin", "password": api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512})),
        case("LogInByAccount", |_| json!({"accountName": "admin", "password": "wrong"})).expect(Expect::Code("ID.1000")),
        case("CreateAccount", |_| json!({"name": "acct-c", "password": PASSWORD})).saves("account"),
        case("UpdateAccount", |x| json!({"uuid": w(x, "account"), "description": "d"})),
        case("CreateUser", |_| json!({"name": "user-c", "password": PASSWORD})).saves("user"),
        case("UpdateUser", |x| json!({"uuid": w(x, "user"), "description": "d"})),
        case("LogInByUser", |_| json!({"accountName": "admin", "userName": "user-c", "password": PASSWORD})).saves("user_session"),
        case("ValidateSession", |x| json!({"sessionUuid": w(x, "session")})),
        case("RenewSession", |x| json!({"sessionUuid": w(x, "user_session"), "duration": 600})),
        case("LogOut", |x| json!({"sessionUuid": w(x, "user_session")})),
        case("CreateZone", |_| json!({"name": "zone-1", "description": "d"})).saves("zone"),
        case("CreateZone", |_| json!({})).expect(Expect::Code("SYS.1007")),
        case("CreateZone", |_| json!({"name": "zone-2"})).saves("zone2"),
        case("UpdateZone", rename("zone")),
        case("ChangeZoneState", st("zone", "enable")),
        case("CreateCluster", |x| json!({"zoneUuid": w(x, "zone"), "name": "cluster-1", "hypervisorType": "KVM"})).saves("cluster"),
        case("CreateCluster", |x| json!({"zoneUuid": w(x, "zone"), "name": "cluster-2", "hypervisorType": "KVM"})).saves("cluster2"),
        case("UpdateCluster", rename("cluster")),
        case("ChangeClusterState", st("cluster", "enable")),
        case("UpdateGlobalConfig", |_| json!({"category": "kvm", "name": "allowTestDriver", "value": "true"})),
        // The build machine's disk is shared and often nearly full; the world's volumes are tiny.
        case("UpdateGlobalConfig", |_| json!({"category": "mevoco", "name": "threshold.primaryStorage.physicalCapacity", "value": "1.0"})),
        case("AddKVMHost", move |x| json!({"clusterUuid": w(x, "cluster"), "name": "host-1", "managementIp": HOST_IP,
            "sshPort": ssh_port, "username": "root", "password": "host-password"})).saves("host"),
        case("UpdateKVMHost", rename("host")),
        case("ChangeHostState", st("host", "enable")),
        case("ReconnectHost", uuid("host")),
        case("AddLocalPrimaryStorage", |x| json!({"zoneUuid": w(x, "zone"), "name": "local-1",
            "url": scratch().join("ps").display().to_string()})).saves("local"),
        case("AddNfsPrimaryStorage", |x| json!({"zoneUuid": w(x, "zone"), "name": "nfs-1", "url": "10.0.0.5:/nfs"})).saves("nfs"),
        case("AddSharedMountPointPrimaryStorage", |x| json!({"zoneUuid": w(x, "zone"), "name": "smp-1", "url": "/mnt/smp"})).saves("smp"),
        case("AttachPrimaryStorageToCluster", |x| json!({"primaryStorageUuid": w(x, "local"), "clusterUuid": w(x, "cluster")})),
        case("UpdatePrimaryStorage", rename("local")),
        case("ChangePrimaryStorageState", st("nfs", "enable")),
        case("ReconnectPrimaryStorage", uuid("local")).expect(Expect::Any),
        case("GetPrimaryStorageCapacity", |_| json!({"all": true})),
        case("AddImageStoreBackupStorage", |_| json!({"name": "bs-1", "url": scratch().join("bs").display().to_string(),
            "hostname": HOST_IP, "username": "root", "password": "bs-password", "sshPort": 22})).saves("bs"),
        case("AttachBackupStorageToZone", |x| json!({"backupStorageUuid": w(x, "bs"), "zoneUuid": w(x, "zone")})),
        case("UpdateBackupStorage", rename("bs")),
        case("ChangeBackupStorageState", st("bs", "enable")),
        case("ReconnectBackupStorage", uuid("bs")).expect(Expect::Any),
        case("GetBackupStorageCapacity", |_| json!({"all": true})),
        case("CreateInstanceOffering", |_| json!({"name": "io-1", "cpuNum": 1, "memorySize": 1073741824u64})).saves("io"),
        case("UpdateInstanceOffering", rename("io")),
        case("ChangeInstanceOfferingState", st("io", "enable")),
        case("CreateDiskOffering", |_| json!({"name": "disk-1", "diskSize": 1073741824u64})).saves("dof"),
        case("UpdateDiskOffering", rename("dof")),
        case("ChangeDiskOfferingState", st("dof", "enable")),
        case("AddImage", |x| json!({"name": "image-1", "url": image_url(), "format": "qcow2", "backupStorageUuids": [w(x, "bs")]})).saves("image"),
        case("AddImage", |x| json!({"name": "image-2", "url": image_url(), "format": "qcow2", "backupStorageUuids": [w(x, "bs")]})).saves("image2"),
        case("UpdateImage", rename("image")),
        case("ChangeImageState", st("image", "enable")),
        case("ExportImageFromBackupStorage", |x| json!({"backupStorageUuid": w(x, "bs"), "imageUuid": w(x, "image")})).expect(Expect::Any),
        case("DeleteExportedImageFromBackupStorage", |x| json!({"backupStorageUuid": w(x, "bs"), "imageUuid": w(x, "image")})).expect(Expect::Any),
        case("CreateL2NoVlanNetwork", |x| json!({"zoneUuid": w(x, "zone"), "name": "flat-1", "physicalInterface": "eth0"})).saves("l2"),
        case("CreateL2VlanNetwork", |x| json!({"zoneUuid": w(x, "zone"), "name": "vlan-1", "physicalInterface": "eth0", "vlan": 100})).saves("vlan"),
        case("CreateL2VxlanNetworkPool", |x| json!({"zoneUuid": w(x, "zone"), "name": "pool-1"})).saves("pool"),
        case("CreateVniRange", |x| json!({"l2NetworkUuid": w(x, "pool"), "name": "vni-1", "startVni": 10, "endVni": 20})).saves("vni"),
        case("CreateL2VxlanNetwork", |x| json!({"poolUuid": w(x, "pool"), "name": "vxlan-1"})).saves("vxlan"),
        case("UpdateL2Network", rename("l2")),
        case("AttachL2NetworkToCluster", |x| json!({"l2NetworkUuid": w(x, "l2"), "clusterUuid": w(x, "cluster")})),
        case("CreateL3Network", |x| json!({"l2NetworkUuid": w(x, "l2"), "name": "l3-1"})).saves("l3"),
        case("CreateL3Network", |x| json!({"l2NetworkUuid": w(x, "vlan"), "name": "l3-2"})).saves("l3b"),
        case("UpdateL3Network", rename("l3")),
        case("ChangeL3NetworkState", st("l3", "enable")),
        case("AddIpRange", |x| json!({"l3NetworkUuid": w(x, "l3"), "name": "range-1", "startIp": "192.168.1.10",
            "endIp": "192.168.1.20", "netmask": "255.255.255.0", "gateway": "192.168.1.1"})).saves("range"),
        case("AddIpRangeByNetworkCidr", |x| json!({"l3NetworkUuid": w(x, "l3b"), "name": "cidr-1", "networkCidr": "10.9.0.0/24"})),
        case("UpdateIpRange", rename("range")),
        case("AddDnsToL3Network", |x| json!({"l3NetworkUuid": w(x, "l3"), "dns": "8.8.8.8"})),
        case("AddDnsToL3Network", |x| json!({"l3NetworkUuid": w(x, "l3"), "dns": "1.1.1.1"})),
        case("RemoveDnsFromL3Network", |x| json!({"l3NetworkUuid": w(x, "l3"), "dns": "1.1.1.1"})),
        case("GetFreeIp", |x| json!({"l3NetworkUuid": w(x, "l3"), "limit": 3})),
        case("CheckIpAvailability", |x| json!({"l3NetworkUuid": w(x, "l3"), "ip": "192.168.1.12"})),
        case("CreateSystemTag", |x| json!({"resourceType": "L3NetworkVO", "resourceUuid": w(x, "l3"), "tag": "networkServices::Flat"})).saves("stag"),
        case("CreateUserTag", |x| json!({"resourceType": "ClusterVO", "resourceUuid": w(x, "cluster"), "tag": "rack-1"})).saves("utag"),
        case("CreateSshKeyPair", |_| json!({"name": "key-1", "publicKey": ED25519})).saves("key"),
        case("UpdateSshKeyPair", rename("key")),
        case("GetTaskProgress", |x| json!({"apiId": w(x, "job"), "all": "true"})),
        case("AllocateHostResource", |x| json!({"uuid": w(x, "host"), "strategy": "continuous", "scene": "normal",
            "vcpu": "1", "memSize": 1048576})),
        case("AllocateHostResource", |x| json!({"uuid": w(x, "cluster"), "strategy": "continuous", "scene": "normal",
            "vcpu": "100000", "memSize": 1048576})).expect(Expect::Code("HOST_ALLOCATION.1000")),
        case("GetCpuMemoryCapacity", |_| json!({"all": "true"})),
        case("GetHostAllocatorStrategies", |_| json!({})),
        // Whether the test agent's local storage is measured yet decides success or the
        // allocator's error; either way the answer's shape is checked.
        case("GetCandidateZonesClustersHostsForCreatingVm", |x| json!({"instanceOfferingUuid": w(x, "io"),
            "imageUuid": w(x, "image"), "l3NetworkUuids": [w(x, "l3")]})).expect(Expect::Any),
        case("GetCandidatePrimaryStoragesForCreatingVm", |x| json!({"instanceOfferingUuid": w(x, "io"),
            "imageUuid": w(x, "image"), "l3NetworkUuids": [w(x, "l3")], "dataDiskOfferingUuids": [w(x, "dof")]})).expect(Expect::Any),
        // VMs on the test agent: the local storage measured first, so the root volume fits.
        case("ReconnectPrimaryStorage", uuid("local")),
        case("CreateVmInstance", |x| json!({"name": "vm-1", "instanceOfferingUuid": w(x, "io"),
            "imageUuid": w(x, "image"), "l3NetworkUuids": [w(x, "l3")]})).saves("vm"),
        case("CreateVmInstance", |x| json!({"name": "vm-2", "instanceOfferingUuid": w(x, "io"),
            "imageUuid": w(x, "image"), "l3NetworkUuids": [w(x, "l3")], "strategy": "CreateStopped"})).saves("vm2"),
        case("CreateVmInstance", |x| json!({"name": "vm-3", "instanceOfferingUuid": w(x, "io"),
            "imageUuid": w(x, "image"), "l3NetworkUuids": []})).expect(Expect::Code("SYS.1007")),
        case("StartVmInstance", uuid("vm2")),
        case("StopVmInstance", |x| json!({"uuid": w(x, "vm2"), "type": "cold"})),
        case("StopVmInstance", uuid("vm2")).expect(Expect::Code("SYS.1006")),
        case("RebootVmInstance", uuid("vm")),
        case("PauseVmInstance", uuid("vm")),
        case("ResumeVmInstance", uuid("vm")),
        case("UpdateVmInstance", rename("vm")),
        // The VM's root volume is on local storage: it cannot migrate live (one host anyway).
        case("MigrateVm", |x| json!({"vmInstanceUuid": w(x, "vm")})).expect(Expect::Code("SYS.1006")),
        case("GetVmMigrationCandidateHosts", |x| json!({"vmInstanceUuid": w(x, "vm")})).expect(Expect::Code("SYS.1006")),
        case("CreateDataVolume", |_| json!({"name": "data-1", "diskSize": 1073741824u64})).saves("vol"),
        case("CreateDataVolume", |x| json!({"name": "data-2", "diskOfferingUuid": w(x, "dof")})).saves("vol2"),
        case("CreateDataVolume", |_| json!({"name": "data-3"})).expect(Expect::Code("SYS.1007")),
        case("ChangeVolumeState", st("vol", "disable")),
        case("ChangeVolumeState", st("vol", "enable")),
        case("GetVmAttachableDataVolume", |x| json!({"vmInstanceUuid": w(x, "vm")})),
        case("GetDataVolumeAttachableVm", |x| json!({"volumeUuid": w(x, "vol")})),
        case("AttachDataVolumeToVm", |x| json!({"volumeUuid": w(x, "vol"), "vmInstanceUuid": w(x, "vm")})),
        case("AttachDataVolumeToVm", |x| json!({"volumeUuid": w(x, "vol"), "vmInstanceUuid": w(x, "vm")}))
            .expect(Expect::Code("SYS.1006")),
        case("ResizeDataVolume", |x| json!({"uuid": w(x, "vol"), "size": 2147483648u64})),
        // The root volume's uuid is derived from its VM's.
        case("ResizeRootVolume", |x| json!({"uuid": api::params::derive_uuid(w(x, "vm2"), 0), "size": 67108864u64})),
        case("DetachDataVolumeFromVm", uuid("vol")),
        // Snapshots: of a detached data volume, of a stopped VM's root volume (twice, a
        // chain), live of a running VM's; a revert needs the VM stopped.
        case("CreateVolumeSnapshot", |x| json!({"volumeUuid": w(x, "vol"), "name": "snap-1"})).saves("snap"),
        case("CreateVolumeSnapshot", |x| json!({"volumeUuid": api::params::derive_uuid(w(x, "vm2"), 0), "name": "snap-2"})).saves("snap2"),
        case("CreateVolumeSnapshot", |x| json!({"volumeUuid": api::params::derive_uuid(w(x, "vm2"), 0), "name": "snap-3"})).saves("snap3"),
        case("CreateVolumeSnapshot", |x| json!({"volumeUuid": api::params::derive_uuid(w(x, "vm"), 0), "name": "snap-live"})).saves("snaplive"),
        case("CreateVolumeSnapshot", |x| json!({"volumeUuid": w(x, "vol")})).expect(Expect::Code("SYS.1007")),
        case("UpdateVolumeSnapshot", rename("snap")),
        case("GetVolumeSnapshotSize", uuid("snap")),
        case("RevertVolumeFromSnapshot", uuid("snap2")),
        case("RevertVolumeFromSnapshot", uuid("snaplive")).expect(Expect::Code("SYS.1006")),
        // `vm2` is Stopped: its disk is quiescent and may be copied; `vm` runs.
        case("CloneVmInstance", |x| json!({"vmInstanceUuid": w(x, "vm2"), "names": ["clone-1"],
            "strategy": "JustCreate", "resourceUuid": CONFORMANCE_CLONES})),
        case("CloneVmInstance", |x| json!({"vmInstanceUuid": w(x, "vm"), "names": ["clone-2"]}))
            .expect(Expect::Code("SYS.1006")),
        // A second network on the cluster's L2 for the VM; the VLAN L2 of `l3b` is not
        // attached to the cluster, so it cannot reach the VM.
        case("CreateL3Network", |x| json!({"l2NetworkUuid": w(x, "l2"), "name": "l3-nic"})).saves("l3nic"),
        case("AddIpRange", |x| json!({"l3NetworkUuid": w(x, "l3nic"), "name": "range-nic", "startIp": "10.3.0.10",
            "endIp": "10.3.0.20", "netmask": "255.255.255.0", "gateway": "10.3.0.1"})),
        case("AttachL3NetworkToVm", |x| json!({"vmInstanceUuid": w(x, "vm"), "l3NetworkUuid": w(x, "l3nic"),
            "resourceUuid": CONFORMANCE_NIC})),
        case("AttachL3NetworkToVm", |x| json!({"vmInstanceUuid": w(x, "vm"), "l3NetworkUuid": w(x, "l3b")}))
            .expect(Expect::Code("SYS.1006")),
        case("CreateSchedulerJob", |x| json!({"name": "sched-1", "targetResourceUuid": w(x, "vm"), "type": "rebootVm"})).saves("sjob"),
        case("UpdateSchedulerJob", rename("sjob")),
        case("ChangeSchedulerState", st("sjob", "disable")),
        case("GetNoTriggerSchedulerJobs", |_| json!({})),
        // Far in the future: the trigger never fires during the test.
        case("CreateSchedulerTrigger", |_| json!({"name": "trigger-1", "schedulerType": "simple",
            "schedulerInterval": 3600, "startTime": 4_000_000_000u64})).saves("strigger"),
        case("CreateSchedulerTrigger", |_| json!({"name": "trigger-2", "schedulerType": "cron"})).expect(Expect::Code("SYS.1014")),
        case("UpdateSchedulerTrigger", rename("strigger")),
        case("AddSchedulerJobToSchedulerTrigger", |x| json!({"schedulerJobUuid": w(x, "sjob"), "schedulerTriggerUuid": w(x, "strigger")})),
        // One slot, due now: the leader's timer reboots the VM once, leaving a history record
        // for the queries.
        case("CreateSchedulerJob", |x| json!({"name": "sched-2", "targetResourceUuid": w(x, "vm"), "type": "rebootVm"})).saves("sjob2"),
        case("CreateSchedulerTrigger", |_| json!({"name": "trigger-once", "schedulerType": "simple", "repeatCount": 1})).saves("sonce"),
        case("AddSchedulerJobToSchedulerTrigger", |x| json!({"schedulerJobUuid": w(x, "sjob2"), "schedulerTriggerUuid": w(x, "sonce")})),
    ];
    let teardown = vec![
        // snap2 and snaplive go with their VMs' expunge.
        case("DeleteVolumeSnapshot", uuid("snap3")),
        case("DeleteVolumeSnapshot", uuid("snap")),
        case(
            "DetachL3NetworkFromVm",
            |_| json!({"vmNicUuid": CONFORMANCE_NIC}),
        ),
        case(
            "DetachL3NetworkFromVm",
            |_| json!({"vmNicUuid": CONFORMANCE_NIC}),
        )
        .expect(Expect::Code("SYS.1003")),
        case("DeleteDataVolume", uuid("vol2")),
        case("RecoverDataVolume", uuid("vol2")),
        case("DeleteDataVolume", uuid("vol2")),
        case("ExpungeDataVolume", uuid("vol2")),
        case("DeleteDataVolume", uuid("vol")),
        case("ExpungeDataVolume", uuid("vol")),
        case(
            "RemoveSchedulerJobFromSchedulerTrigger",
            |x| json!({"schedulerJobUuid": w(x, "sjob"), "schedulerTriggerUuid": w(x, "strigger")}),
        ),
        case("DeleteSchedulerTrigger", uuid("strigger")),
        case("DeleteSchedulerJob", uuid("sjob")),
        case("DeleteSchedulerJob", uuid("sjob2")),
        case("DeleteSchedulerTrigger", uuid("sonce")),
        case(
            "DestroyVmInstance",
            |_| json!({"uuid": api::params::derive_uuid(CONFORMANCE_CLONES, 0)}),
        ),
        case(
            "ExpungeVmInstance",
            |_| json!({"uuid": api::params::derive_uuid(CONFORMANCE_CLONES, 0)}),
        ),
        case("DestroyVmInstance", uuid("vm2")),
        case("RecoverVmInstance", uuid("vm2")),
        case("DestroyVmInstance", uuid("vm2")),
        case("ExpungeVmInstance", uuid("vm2")),
        case("DestroyVmInstance", uuid("vm")),
        case("ExpungeVmInstance", uuid("vm")),
        case("DeleteTag", uuid("utag")),
        case("DeleteSshKeyPair", uuid("key")),
        case("DeleteImage", uuid("image2")),
        case("RecoverImage", |x| json!({"imageUuid": w(x, "image2")})),
        case("DeleteImage", uuid("image2")),
        case("ExpungeImage", |x| json!({"imageUuid": w(x, "image2")})),
        case("DeleteIpRange", uuid("range")),
        case("DeleteL3Network", uuid("l3b")),
        case("DeleteL3Network", uuid("l3nic")),
        case(
            "DetachL2NetworkFromCluster",
            |x| json!({"l2NetworkUuid": w(x, "l2"), "clusterUuid": w(x, "cluster")}),
        ),
        case("DeleteL2Network", uuid("vxlan")),
        case("DeleteVniRange", uuid("vni")),
        case(
            "DetachPrimaryStorageFromCluster",
            |x| json!({"primaryStorageUuid": w(x, "local"), "clusterUuid": w(x, "cluster")}),
        ),
        case("DeletePrimaryStorage", uuid("smp")),
        case(
            "DetachBackupStorageFromZone",
            |x| json!({"backupStorageUuid": w(x, "bs"), "zoneUuid": w(x, "zone")}),
        ),
        case("DeleteInstanceOffering", uuid("io")),
        case("DeleteDiskOffering", uuid("dof")),
        case("ChangeHostState", st("host", "maintain")),
        case("DeleteHost", uuid("host")),
        case("DeleteCluster", uuid("cluster2")),
        case("DeleteZone", uuid("zone2")),
        case("DeleteBackupStorage", uuid("bs")),
        case("DeleteUser", uuid("user")),
        case("DeleteAccount", uuid("account")),
        case("ResetGlobalConfig", |_| json!({})),
    ];
    (build, teardown)
}

/// The REST form of `{call: body}`: its first route whose path variables the body holds.
fn rest_form(name: &str, body: &Value) -> (M, String, Option<String>) {
    let fields = body.as_object().cloned().unwrap_or_default();
    let vars = |path: &str| -> Vec<String> {
        path.split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect()
    };
    let route = api::rest::routes()
        .iter()
        .filter(|r| r.call == name)
        .find(|r| vars(r.path).iter().all(|v| fields.contains_key(v)))
        .unwrap_or_else(|| panic!("{name}: no REST route fits {body}"));
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rest = fields.clone();
    let mut path = route.path.to_string();
    for v in vars(route.path) {
        let value = rest.remove(&v).map(|x| text(&x)).unwrap_or_default();
        path = path.replace(&format!("{{{v}}}"), &value);
    }
    let method = match route.method {
        api::rest::Method::Get => M::GET,
        api::rest::Method::Post => M::POST,
        api::rest::Method::Put => M::PUT,
        api::rest::Method::Delete => M::DELETE,
    };
    let payload = match route.body {
        api::rest::Body::Params => Some(json!({ "params": rest }).to_string()),
        api::rest::Body::Action => Some(json!({ api::rest::action_name(name): rest }).to_string()),
        api::rest::Body::None => {
            if !rest.is_empty() {
                let pairs = rest.iter().flat_map(|(k, v)| match v {
                    Value::Array(items) => items.iter().map(|x| (k.clone(), text(x))).collect(),
                    other => vec![(k.clone(), text(other))],
                });
                let q: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                path = format!("{path}?{q}");
            }
            None
        }
    };
    (method, path, payload)
}

fn is_query(name: &str) -> bool {
    api::catalogue::catalogue()
        .by_name(name)
        .is_some_and(|s| s.is_query())
}

/// A fake host: every connection reads an SSH identification.
async fn fake_ssh_host(ip: &str) -> u16 {
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind fake ssh");
    let port = l.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_8.0\r\n").await;
        }
    });
    port
}

/// The routes of a query: `GET base` (no variables) and `GET base/{uuid}`.
fn query_paths(q: &str) -> (Option<&'static str>, Option<&'static str>) {
    let all = api::rest::routes()
        .iter()
        .find(|r| r.call == q && !r.path.contains('{'))
        .map(|r| r.path);
    let one = api::rest::routes()
        .iter()
        .find(|r| r.call == q && r.path.ends_with("/{uuid}"))
        .map(|r| r.path);
    (all, one)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_answers_rest_as_the_zstack_sdk_reads_it() {
    let started = Instant::now();
    let td = tempfile::tempdir().expect("tempdir");
    let slow = ["--request-timeout-ms", "15000"];
    let n1 = spawn(td.path(), 1, &["--init", slow[0], slow[1]]);
    let n2 = spawn(td.path(), 2, &slow);
    let admin = common::admin_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = admin
            .post(format!("http://{}/cluster/members", n1.http))
            .json(&json!({"id": 2, "raft_addr": n2.raft, "api_addr": n2.http}))
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status().as_u16() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never joined: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut cl = Client {
        c: c.clone(),
        base: format!("http://{}/zstack", n2.http),
        host: n2.http.clone(),
        session: None,
    };
    let session = common::login(&c, &format!("http://{}/zstack/v1", n2.http)).await;
    cl.session = Some(session.clone());
    let mut world: World = BTreeMap::new();
    world.insert("session".into(), session.clone());
    let mut problems: Vec<String> = Vec::new();
    let mut covered: BTreeSet<&'static str> = BTreeSet::new();

    // The five cases of the issue, before anything exists: empty queries, then a count.
    for q in ["QueryZone", "QueryCluster"] {
        let (all, _) = query_paths(q);
        let path = all.expect("query routed");
        let (got, _) = cl
            .sdk_read(q, M::GET, path, None, true, &mut problems)
            .await;
        match got {
            Ok(v) if v == json!({"schema": {}, "inventories": []}) => {}
            other => problems.push(format!("empty {q}: {other:?}")),
        }
    }

    let _agent = common::TestAgent::install(
        &common::data_dir(td.path(), 1),
        &td.path().join("agent"),
        HOST_IP,
    );
    let (build, teardown) = cases(fake_ssh_host(HOST_IP).await);
    let table: BTreeSet<&str> = build.iter().chain(&teardown).map(|c| c.call).collect();
    for name in api::registry::calls().map(|c| c.name) {
        if !is_query(name) && !table.contains(name) {
            problems.push(format!("no REST conformance case for call {name}"));
        }
    }
    for name in &table {
        if api::registry::call(name).is_none() || is_query(name) {
            problems.push(format!(
                "{name} has a case but is not an implemented non-query call"
            ));
        }
    }

    for cs in build {
        run_case(&cl, &cs, &mut world, &mut problems).await;
        covered.insert(cs.call);
    }
    eprintln!("world built at {:?}", started.elapsed());

    // Every query: all, one by uuid, empty, count; through the follower.
    for q in api::registry::calls()
        .map(|c| c.name)
        .filter(|n| is_query(n))
    {
        let (all, one) = query_paths(q);
        let Some(all) = all else {
            problems.push(format!("{q}: no GET route without variables"));
            continue;
        };
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                &format!("{all}?limit=1000"),
                None,
                true,
                &mut problems,
            )
            .await;
        let list = match got {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{q}: refused {e:?}"));
                continue;
            }
        };
        let items = list["inventories"].as_array().cloned().unwrap_or_default();
        if items.is_empty() && q != "QueryAudit" {
            problems.push(format!("{q}: the world holds none (the case is vacuous)"));
        }
        if let (Some(one), Some(u)) = (one, items.first().and_then(|i| i["uuid"].as_str())) {
            let (got, _) = cl
                .sdk_read(
                    q,
                    M::GET,
                    &one.replace("{uuid}", u),
                    None,
                    true,
                    &mut problems,
                )
                .await;
            if got
                .as_ref()
                .ok()
                .map(|v| v["inventories"].as_array().map(Vec::len))
                != Some(Some(1))
            {
                problems.push(format!("{q} by uuid: {got:?}"));
            }
        }
        // Empty: a condition on the listed records' name (or uuid, or first text field) that
        // nothing matches.
        let field = items
            .first()
            .and_then(Value::as_object)
            .and_then(|m| {
                ["name", "uuid"]
                    .into_iter()
                    .find(|f| m.contains_key(*f))
                    .map(str::to_string)
                    .or_else(|| {
                        m.iter()
                            .find(|(_, v)| v.is_string())
                            .map(|(k, _)| k.clone())
                    })
            })
            .unwrap_or_else(|| "uuid".into());
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                &format!("{all}?q={field}=no-such-record"),
                None,
                true,
                &mut problems,
            )
            .await;
        if got.as_ref().ok() != Some(&json!({"schema": {}, "inventories": []})) {
            problems.push(format!("{q} empty: {got:?}"));
        }
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                &format!("{all}?count=true"),
                None,
                true,
                &mut problems,
            )
            .await;
        match got {
            Ok(v)
                if v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>())
                    == Some(vec!["schema".into(), "total".into()])
                    && v["schema"] == json!({})
                    && v["total"].is_u64() => {}
            other => problems.push(format!("{q} count: {other:?}")),
        }
        // A query carries `schema` even when not asked for (ZStack's `writeResponse`).
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                &format!("{all}?limit=2"),
                None,
                false,
                &mut problems,
            )
            .await;
        if !got.as_ref().is_ok_and(|v| v["schema"].is_object()) {
            problems.push(format!("{q} without X-JSON-Schema: no schema: {got:?}"));
        }
        covered.insert(q);
    }

    // The named five: several management nodes and global configs, each typed.
    for (q, class, at_least) in [
        (
            "QueryManagementNode",
            "org.zstack.header.managementnode.ManagementNodeInventory",
            2,
        ),
        (
            "QueryGlobalConfig",
            "org.zstack.core.config.GlobalConfigInventory",
            2,
        ),
        ("QueryZone", "org.zstack.header.zone.ZoneInventory", 2),
    ] {
        let (all, _) = query_paths(q);
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                all.unwrap_or_default(),
                None,
                true,
                &mut problems,
            )
            .await;
        let v = got.unwrap_or(Value::Null);
        let n = v["inventories"].as_array().map(Vec::len).unwrap_or(0);
        if n < at_least {
            problems.push(format!("{q}: {n} inventories, wanted at least {at_least}"));
        }
        for i in 0..n {
            if v["schema"][format!("inventories[{i}]")] != class {
                problems.push(format!(
                    "{q}: inventories[{i}] not typed {class}: {}",
                    v["schema"]
                ));
            }
        }
    }
    // Nested and runtime classes, by path.
    for (q, filter, path, class) in [
        (
            "QueryHost",
            "",
            "inventories[0]",
            "org.zstack.kvm.KVMHostInventory",
        ),
        (
            "QueryImage",
            "?q=name=image-renamed",
            "inventories[0].backupStorageRefs[0]",
            "org.zstack.header.image.ImageBackupStorageRefInventory",
        ),
        (
            "QueryL3Network",
            "?q=name=l3-renamed",
            "inventories[0].ipRanges[0]",
            "org.zstack.header.network.l3.IpRangeInventory",
        ),
        (
            "QueryL2Network",
            "?q=type=L2VlanNetwork",
            "inventories[0]",
            "org.zstack.header.network.l2.L2VlanNetworkInventory",
        ),
        (
            "QueryBackupStorage",
            "",
            "inventories[0]",
            "org.zstack.storage.backup.imagestore.ImageStoreBackupStorageInventory",
        ),
    ] {
        let (all, _) = query_paths(q);
        let (got, _) = cl
            .sdk_read(
                q,
                M::GET,
                &format!("{}{filter}", all.unwrap_or_default()),
                None,
                true,
                &mut problems,
            )
            .await;
        let v = got.unwrap_or(Value::Null);
        if v["schema"][path] != class {
            problems.push(format!(
                "{q}{filter}: {path} not typed {class}: {}",
                v["schema"]
            ));
        }
    }
    // The count of the issue.
    let (got, _) = cl
        .sdk_read(
            "QueryZone count",
            M::GET,
            "/v1/zones?count=true",
            None,
            true,
            &mut problems,
        )
        .await;
    if got.as_ref().ok() != Some(&json!({"schema": {}, "total": 2})) {
        problems.push(format!("QueryZone count=true: {got:?}"));
    }
    // The same on the leader.
    let leader = Client {
        c: c.clone(),
        base: format!("http://{}/zstack", n1.http),
        host: n1.http.clone(),
        session: Some(session.clone()),
    };
    let (got, _) = leader
        .sdk_read(
            "QueryManagementNode on the leader",
            M::GET,
            "/v1/management-nodes",
            None,
            true,
            &mut problems,
        )
        .await;
    if got
        .as_ref()
        .map(|v| v["schema"].as_object().map(Map::len))
        .ok()
        .flatten()
        < Some(2)
    {
        problems.push(format!("QueryManagementNode on the leader: {got:?}"));
    }
    // A create's `schema` only when asked for (the SDK always asks).
    let (got, _) = cl
        .sdk_read(
            "CreateZone without X-JSON-Schema",
            M::POST,
            "/v1/zones",
            Some(r#"{"params":{"name":"zone-3"}}"#),
            false,
            &mut problems,
        )
        .await;
    match got {
        Ok(v) if v.get("schema").is_none() && v["inventory"]["name"] == "zone-3" => {
            world.insert(
                "zone3".into(),
                v["inventory"]["uuid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        other => problems.push(format!("CreateZone without the header: {other:?}")),
    }
    teardown_and_bad_input(&cl, teardown, &mut world, &mut problems, &mut covered).await;

    let implemented: BTreeSet<&str> = api::registry::calls().map(|c| c.name).collect();
    for n in implemented.difference(&covered) {
        problems.push(format!("{n}: never sent"));
    }
    eprintln!(
        "{} of {} implemented calls checked over REST through a follower in {:?}",
        covered.len(),
        implemented.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} REST conformance problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    let _ = std::fs::remove_dir_all(scratch());
}

async fn teardown_and_bad_input(
    cl: &Client,
    teardown: Vec<Case>,
    world: &mut World,
    problems: &mut Vec<String>,
    covered: &mut BTreeSet<&'static str>,
) {
    for cs in teardown {
        run_case(cl, &cs, world, problems).await;
        covered.insert(cs.call);
    }
    // Bad input: each is an error the SDK surfaces (ZStack's plain-text 4xx/5xx and a sync
    // call's 503 become `sdk.1000`), never a body it fails to parse.
    // (what, method, path, body, status, text in the body)
    type Bad = (
        &'static str,
        M,
        &'static str,
        Option<&'static str>,
        u16,
        &'static str,
    );
    let bad: [Bad; 7] = [
        (
            "malformed q=",
            M::GET,
            "/v1/zones?q=noop",
            None,
            400,
            "doesn't contain any query operator",
        ),
        (
            "unknown field in fields=",
            M::GET,
            "/v1/zones?fields=nope",
            None,
            503,
            "SYS.1007",
        ),
        (
            "bad sort=",
            M::GET,
            "/v1/zones?sort=-nope",
            None,
            503,
            "SYS.1007",
        ),
        (
            "bad limit=",
            M::GET,
            "/v1/zones?limit=x",
            None,
            400,
            "'limit' must be an integer",
        ),
        (
            "a body that is not JSON",
            M::POST,
            "/v1/zones",
            Some("{not json"),
            500,
            "JsonSyntaxException",
        ),
        (
            "an unknown action path",
            M::PUT,
            "/v1/zones/abc/explode",
            Some("{}"),
            404,
            "no api mapping to /v1/zones/abc/explode",
        ),
        (
            "an unknown action",
            M::PUT,
            "/v1/zones/abc/actions",
            Some(r#"{"explode":{}}"#),
            400,
            "doesn't contain action mapping",
        ),
    ];
    for (label, method, path, body, status, text) in bad {
        let h = cl
            .http(method.clone(), &format!("{}{path}", cl.base), body, true)
            .await;
        if h.status != status || !h.text.contains(text) {
            problems.push(format!(
                "{label}: {} {} (wanted {status} with {text:?})",
                h.status, h.text
            ));
        }
        let (got, _) = cl.sdk_read(label, method, path, body, true, problems).await;
        match got {
            Err(e) if e.code == "sdk.1000" && e.details.contains(text) => {}
            other => problems.push(format!("{label}: the SDK would see {other:?}")),
        }
    }
    // A refused async call is answered 202 and its real error reaches the SDK through the poll.
    let (got, job) = cl
        .sdk_read(
            "CreateZone without a name",
            M::POST,
            "/v1/zones",
            Some(r#"{"params":{}}"#),
            true,
            problems,
        )
        .await;
    if job.is_none() || got.as_ref().err().map(|e| e.code.as_str()) != Some("SYS.1007") {
        problems.push(format!("a refused async call: {got:?} (job {job:?})"));
    }
}

async fn run_case(cl: &Client, cs: &Case, world: &mut World, problems: &mut Vec<String>) {
    let body = (cs.body)(world);
    let (method, path, payload) = rest_form(cs.call, &body);
    let label = format!("{} {} {path}", cs.call, method);
    let kind = api::catalogue::catalogue()
        .by_name(cs.call)
        .map(|s| s.kind)
        .unwrap_or(api::catalogue::CallKind::Sync);
    let first = cl
        .http(
            method.clone(),
            &format!("{}{path}", cl.base),
            payload.as_deref(),
            true,
        )
        .await;
    // Async calls answer 202 whatever follows; sync ones at once.
    let async_ = kind == api::catalogue::CallKind::Async;
    if async_ && first.status != 202 {
        problems.push(format!(
            "{label}: async call answered {} {}",
            first.status, first.text
        ));
        return;
    }
    let (got, job) = if async_ {
        let v = first.json().unwrap_or(Value::Null);
        let location = v["location"].as_str().unwrap_or_default().to_string();
        let poll = Client {
            c: cl.c.clone(),
            base: String::new(),
            host: cl.host.clone(),
            session: cl.session.clone(),
        };
        // Poll the location exactly as the SDK does.
        let job = location.rsplit('/').next().map(str::to_string);
        let deadline = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let p = poll.http(M::GET, &location, None, true).await;
            match p.status {
                202 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                200 => break read_result(&label, &p, problems),
                503 => break read_error(&label, &p, problems),
                _ => {
                    problems.push(format!("{label}: poll answered {} {}", p.status, p.text));
                    return;
                }
            }
        };
        (got, job)
    } else {
        match first.status {
            200 | 204 => (read_result(&label, &first, problems), None),
            _ => (
                Err(SdkError {
                    code: "sdk.1000".into(),
                    details: first.text.clone(),
                }),
                None,
            ),
        }
    };
    if let Some(j) = job {
        world.insert("job".into(), j);
    }
    match (cs.expect, &got) {
        (Expect::Ok | Expect::Any, Ok(v)) => {
            if v.get("schema").is_none() {
                problems.push(format!(
                    "{label}: no schema although X-JSON-Schema was sent"
                ));
            }
            if let (Some(name), Some(u)) = (cs.save, v["inventory"]["uuid"].as_str()) {
                world.insert(name.into(), u.to_string());
            }
        }
        (Expect::Any, Err(_)) => {}
        (Expect::Ok, Err(e)) => problems.push(format!("{label}: refused {e:?}")),
        (Expect::Code(code), Err(e)) if async_ && e.code == code => {}
        // A sync call's error is wrapped by the SDK; the real code is in the details.
        (Expect::Code(code), Err(e))
            if !async_ && e.code == "sdk.1000" && e.details.contains(code) => {}
        (Expect::Code(code), other) => {
            problems.push(format!("{label}: wanted {code}, got {other:?}"))
        }
    }
}
