//! Two tenants over real HTTP (issue #10, Done-when 4): a `zsnode` holds the admin's
//! infrastructure and two normal accounts, A and B, each with resources of its own wherever a
//! family lets tenants own some (users, key pairs, images, VXLAN networks, L3 networks, IP
//! ranges, DNS, tags, jobs). Then, driven by the call registry (`api::registry::calls()`):
//!
//! - every query (`Query*`) is sent by each tenant, through the RPC envelope and the REST
//!   mirror: the other tenant's records never appear (not their uuids, not their names, not
//!   their sessions, not in nested fields, not in counts), the admin's records do not either
//!   (except the calls in [`SHARED`], which show cluster-wide records by design), and each
//!   tenant's own records do appear (so the check is not vacuous);
//! - every other call is sent by tenant B against A's resources (and the admin's where that is
//!   what the call acts on), through both wire forms, and must be refused with the code in
//!   [`attacks`] (ZStack's permission error `ID.1002` for all but a few, each with its reason)
//!   while every admin-visible query answers exactly as before.
//!
//! An implemented call that is neither a query, nor in [`attacks`], nor in [`EXEMPT`] fails the
//! test with "no isolation case for call X": a new family is covered by adding its calls here.

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use std::time::Instant;

use common::login;
use common::spawn;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Calls no tenant-isolation case applies to, with the reason.
const EXEMPT: &[(&str, &str)] = &[
    (
        "LogOut",
        "the session uuid in the body is the credential itself: whoever holds it is that session",
    ),
    (
        "ValidateSession",
        "answers only whether a session uuid the caller already holds is valid (bearer check)",
    ),
];

/// Queries that show records no account owns (or the admin's cluster-wide ones) to every
/// account by design; the other tenant's records must still never appear in them.
const SHARED: &[(&str, &str)] = &[
    (
        "QueryBackupStorage",
        "every session lists backup storage to choose one for AddImage (spec 05 account.api.control); the base inventory has no hostname or credentials, QueryImageStoreBackupStorage stays the admin's",
    ),
    (
        "QueryGlobalConfig",
        "settings are cluster-wide and owned by no account; tenants read them, only the admin changes them",
    ),
    (
        "QueryManagementNode",
        "management nodes are the cluster's own infrastructure, shown to every signed-in account",
    ),
];

/// Queries left out of the before/after state comparison: their answers change by themselves.
const VOLATILE: &[&str] = &[
    // Every call, refused or not, appends its audit record.
    "QueryAudit",
    // Heartbeats and Raft indexes move every few seconds.
    "QueryManagementNode",
];

const PERMISSION_DENIED: &str = "ID.1002";
const AUTHENTICATION_ERROR: &str = "ID.1000";
const INVALID_ARGUMENT: &str = "SYS.1007";

/// The wire forms every case is sent through.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// `POST /zstack/api` with `{messageClass: body}`, polling `/zstack/api/result/{uuid}`.
    Rpc,
    /// The REST v1 route of the call (`api::rest::routes()`), polling the job location.
    Rest,
}

/// A call's answer: its reply fields, or its error code and details.
type Answer = Result<Value, (String, String)>;

struct Api {
    c: reqwest::Client,
    http: String,
}

impl Api {
    /// Send `name` with `body` as `session` through `form`; async calls are followed to their
    /// result. Also returns the job uuid of an async RPC call.
    async fn call(
        &self,
        form: Form,
        session: Option<&str>,
        name: &str,
        body: &Value,
    ) -> (Answer, Option<String>) {
        match form {
            Form::Rpc => self.rpc(session, name, body).await,
            Form::Rest => (self.rest(session, name, body).await, None),
        }
    }

    async fn rpc(
        &self,
        session: Option<&str>,
        name: &str,
        body: &Value,
    ) -> (Answer, Option<String>) {
        let spec = api::catalogue::catalogue()
            .by_name(name)
            .unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        let mut body = body.clone();
        if let (Some(s), Some(m)) = (session, body.as_object_mut()) {
            m.insert("session".into(), json!({ "uuid": s }));
        }
        let text = self
            .c
            .post(format!("http://{}/zstack/api", self.http))
            .body(json!({ spec.class.clone(): body }).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        let job = v["uuid"].as_str().map(str::to_string);
        let deadline = Instant::now() + Duration::from_secs(30);
        while v["state"] == "Processing" {
            assert!(Instant::now() < deadline, "{name}: job never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
            let uuid = job.as_deref().expect("an accepted call has a job uuid");
            v = self
                .c
                .get(format!("http://{}/zstack/api/result/{uuid}", self.http))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
        let result: Value = serde_json::from_str(v["result"].as_str().unwrap_or("null"))
            .unwrap_or_else(|e| panic!("{name}: result is not JSON: {e}: {v}"));
        let reply = result
            .as_object()
            .and_then(|m| m.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        let answer = if reply["success"] == true {
            Ok(reply)
        } else {
            Err(error_of(&reply))
        };
        (answer, job)
    }

    async fn rest(&self, session: Option<&str>, name: &str, body: &Value) -> Answer {
        let (method, path, payload) = rest_request(name, body);
        let mut req = self
            .c
            .request(method, format!("http://{}/zstack{path}", self.http));
        if let Some(s) = session {
            req = req.header("Authorization", format!("OAuth {s}"));
        }
        if let Some(p) = payload {
            req = req.json(&p);
        }
        let r = req.send().await.unwrap();
        let (mut status, mut v) = (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while status == 202 {
            assert!(Instant::now() < deadline, "{name}: job never finished");
            tokio::time::sleep(Duration::from_millis(10)).await;
            let location = v["location"]
                .as_str()
                .expect("202 carries a location")
                .to_string();
            let r = self.c.get(&location).send().await.unwrap();
            status = r.status().as_u16();
            v = r.json().await.unwrap_or(Value::Null);
        }
        if v["error"].is_object() {
            Err(error_of(&v))
        } else {
            assert_eq!(status, 200, "{name} over REST: {v}");
            Ok(v)
        }
    }
}

fn error_of(reply: &Value) -> (String, String) {
    (
        reply["error"]["code"].as_str().unwrap_or("?").to_string(),
        reply["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The REST form of `{name: body}`: the first route of the call whose path variables the body
/// holds, the rest of the body as `{"params": ..}`, `{"<action>": ..}` or the query string.
fn rest_request(name: &str, body: &Value) -> (reqwest::Method, String, Option<Value>) {
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
    let mut rest: Map<String, Value> = fields.clone();
    let mut path = route.path.to_string();
    for v in vars(route.path) {
        let value = rest.remove(&v).map(|x| text_of(&x)).unwrap_or_default();
        path = path.replace(&format!("{{{v}}}"), &value);
    }
    let method = match route.method {
        api::rest::Method::Get => reqwest::Method::GET,
        api::rest::Method::Post => reqwest::Method::POST,
        api::rest::Method::Put => reqwest::Method::PUT,
        api::rest::Method::Delete => reqwest::Method::DELETE,
    };
    let payload = match route.body {
        api::rest::Body::Params => Some(json!({ "params": rest })),
        api::rest::Body::Action => Some(json!({ api::rest::action_name(name): rest })),
        api::rest::Body::None => {
            if !rest.is_empty() {
                // A list parameter is repeated (`?zoneUuids=a&zoneUuids=b`).
                let pairs = rest.iter().flat_map(|(k, v)| match v {
                    Value::Array(items) => items.iter().map(|x| (k.clone(), text_of(x))).collect(),
                    other => vec![(k.clone(), text_of(other))],
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

/// A normal account and what it owns.
#[derive(Debug, Clone, Default)]
struct Tenant {
    /// Every name it chose contains this (`tenant-a`), so a leak of any of them is found.
    tag: String,
    account: String,
    session: String,
    user: String,
    user_session: String,
    key: String,
    image: String,
    vxlan: String,
    l3: String,
    ip_range: String,
    user_tag: String,
    system_tag: String,
    /// An async call's job.
    job: String,
}

impl Tenant {
    /// Every uuid it owns or holds.
    fn uuids(&self) -> Vec<&str> {
        vec![
            &self.account,
            &self.user,
            &self.key,
            &self.image,
            &self.vxlan,
            &self.l3,
            &self.ip_range,
            &self.user_tag,
            &self.system_tag,
        ]
        .into_iter()
        .map(String::as_str)
        .collect()
    }

    /// What must never appear in another account's answers.
    fn secrets(&self) -> Vec<&str> {
        let mut s = self.uuids();
        s.extend([
            self.session.as_str(),
            self.user_session.as_str(),
            self.job.as_str(),
            self.tag.as_str(),
        ]);
        s
    }
}

/// The admin's resources, by role.
#[derive(Debug, Clone, Default)]
struct Infra {
    session: String,
    zone: String,
    cluster: String,
    host: String,
    local: String,
    nfs: String,
    bs: String,
    io: String,
    dof: String,
    image: String,
    l2: String,
    vlan: String,
    pool: String,
    vni_range: String,
    l3: String,
    ip_range: String,
    system_tag: String,
    user_tag: String,
    key: String,
    user: String,
    vm: String,
    /// A data volume of the admin's, attached to `vm`.
    volume: String,
    /// A snapshot of `volume`.
    snapshot: String,
    sched_job: String,
    sched_trigger: String,
}

impl Infra {
    fn uuids(&self) -> Vec<&str> {
        vec![
            api::ADMIN_ACCOUNT_UUID,
            &self.zone,
            &self.cluster,
            &self.host,
            &self.local,
            &self.nfs,
            &self.bs,
            &self.io,
            &self.dof,
            &self.image,
            &self.l2,
            &self.vlan,
            &self.pool,
            &self.vni_range,
            &self.l3,
            &self.ip_range,
            &self.system_tag,
            &self.user_tag,
            &self.key,
            &self.user,
            &self.vm,
            &self.sched_job,
            &self.sched_trigger,
        ]
    }
}

const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYXE4BsnXGTixX4ZmM22E8NSqbuZnQoQ7SALeCCja3T alice@example";

/// This run's scratch directory: the image store's directory and the image it downloads.
fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zs-tenant-{}", std::process::id()))
}

/// A small qcow2 image the image store downloads (file://), made once.
fn image_url() -> String {
    let img = scratch().join("img.qcow2");
    if !img.exists() {
        std::fs::create_dir_all(scratch()).unwrap();
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&img)
            .arg("8M")
            .status()
            .unwrap();
        assert!(st.success());
    }
    format!("file://{}", img.display())
}

/// Build-up calls, which must succeed.
struct Setup<'a> {
    api: &'a Api,
}

impl Setup<'_> {
    async fn ok(&self, session: &str, name: &str, body: Value) -> (Value, Option<String>) {
        match self.api.rpc(Some(session), name, &body).await {
            (Ok(v), job) => (v, job),
            (Err(e), _) => panic!("setup {name} {body} refused: {e:?}"),
        }
    }

    async fn uuid(&self, session: &str, name: &str, body: Value) -> String {
        let (v, _) = self.ok(session, name, body).await;
        v["inventory"]["uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no inventory uuid in {v}"))
            .to_string()
    }

    async fn log_in(&self, name: &str, body: Value) -> String {
        match self.api.rpc(None, name, &body).await {
            (Ok(v), _) => v["inventory"]["uuid"].as_str().unwrap().to_string(),
            (Err(e), _) => panic!("{name} refused: {e:?}"),
        }
    }

    async fn infra(&self, admin: &str, ssh_port: u16) -> Infra {
        let s = admin;
        let zone = self
            .uuid(s, "CreateZone", json!({"name": "admin-zone"}))
            .await;
        let cluster = self
            .uuid(
                s,
                "CreateCluster",
                json!({"zoneUuid": zone, "name": "admin-cluster", "hypervisorType": "KVM"}),
            )
            .await;
        let host = self
            .uuid(
                s,
                "AddKVMHost",
                json!({"clusterUuid": cluster, "name": "admin-host", "managementIp": "127.0.0.1",
                   "sshPort": ssh_port, "username": "root", "password": "admin-host-password"}),
            )
            .await;
        let local = self
            .uuid(
                s,
                "AddLocalPrimaryStorage",
                json!({"zoneUuid": zone, "name": "admin-local", "url": scratch().join("ps").to_str().unwrap()}),
            )
            .await;
        let nfs = self
            .uuid(
                s,
                "AddNfsPrimaryStorage",
                json!({"zoneUuid": zone, "name": "admin-nfs", "url": "10.0.0.5:/nfs"}),
            )
            .await;
        self.ok(
            s,
            "AttachPrimaryStorageToCluster",
            json!({"primaryStorageUuid": local, "clusterUuid": cluster}),
        )
        .await;
        let bs = self
            .uuid(
                s,
                "AddImageStoreBackupStorage",
                json!({"name": "admin-bs", "url": scratch().join("bs").to_str().unwrap(), "hostname": "127.0.0.1",
                   "username": "root", "password": "admin-bs-password", "sshPort": 22}),
            )
            .await;
        self.ok(
            s,
            "AttachBackupStorageToZone",
            json!({"backupStorageUuid": bs, "zoneUuid": zone}),
        )
        .await;
        let io = self
            .uuid(
                s,
                "CreateInstanceOffering",
                json!({"name": "admin-io", "cpuNum": 1, "memorySize": 1073741824u64}),
            )
            .await;
        let dof = self
            .uuid(
                s,
                "CreateDiskOffering",
                json!({"name": "admin-disk", "diskSize": 1073741824u64}),
            )
            .await;
        let image = self
            .uuid(s, "AddImage", json!({"name": "admin-image", "url": image_url(), "format": "qcow2", "backupStorageUuids": [bs]}))
            .await;
        let l2 = self
            .uuid(
                s,
                "CreateL2NoVlanNetwork",
                json!({"zoneUuid": zone, "name": "admin-flat", "physicalInterface": "eth0"}),
            )
            .await;
        self.ok(
            s,
            "AttachL2NetworkToCluster",
            json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
        )
        .await;
        let vlan = self
            .uuid(s, "CreateL2VlanNetwork", json!({"zoneUuid": zone, "name": "admin-vlan", "physicalInterface": "eth0", "vlan": 100}))
            .await;
        let pool = self
            .uuid(
                s,
                "CreateL2VxlanNetworkPool",
                json!({"zoneUuid": zone, "name": "admin-pool"}),
            )
            .await;
        let vni_range = self
            .uuid(
                s,
                "CreateVniRange",
                json!({"l2NetworkUuid": pool, "name": "admin-vni", "startVni": 10, "endVni": 20}),
            )
            .await;
        let l3 = self
            .uuid(
                s,
                "CreateL3Network",
                json!({"l2NetworkUuid": l2, "name": "admin-l3"}),
            )
            .await;
        let ip_range = self
            .uuid(
                s,
                "AddIpRange",
                json!({"l3NetworkUuid": l3, "name": "admin-range", "startIp": "192.168.1.10",
                   "endIp": "192.168.1.20", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            )
            .await;
        self.ok(
            s,
            "AddDnsToL3Network",
            json!({"l3NetworkUuid": l3, "dns": "8.8.8.8"}),
        )
        .await;
        let system_tag = self
            .uuid(s, "CreateSystemTag", json!({"resourceType": "L3NetworkVO", "resourceUuid": l3, "tag": "networkServices::Flat"}))
            .await;
        let user_tag = self
            .uuid(
                s,
                "CreateUserTag",
                json!({"resourceType": "ClusterVO", "resourceUuid": cluster, "tag": "admin-rack"}),
            )
            .await;
        let key = self
            .uuid(
                s,
                "CreateSshKeyPair",
                json!({"name": "admin-key", "publicKey": ED25519}),
            )
            .await;
        let user = self
            .uuid(
                s,
                "CreateUser",
                json!({"name": "admin-ops", "password": "admin-ops-password"}),
            )
            .await;
        // A VM of the admin's on the test agent (its local storage measured first).
        self.ok(s, "ReconnectPrimaryStorage", json!({ "uuid": local }))
            .await;
        let vm = self
            .uuid(
                s,
                "CreateVmInstance",
                json!({"name": "admin-vm", "instanceOfferingUuid": io, "imageUuid": image,
                   "l3NetworkUuids": [l3]}),
            )
            .await;
        let volume = self
            .uuid(
                s,
                "CreateDataVolume",
                json!({"name": "admin-data", "diskSize": 1073741824u64}),
            )
            .await;
        self.ok(
            s,
            "AttachDataVolumeToVm",
            json!({"volumeUuid": volume, "vmInstanceUuid": vm}),
        )
        .await;
        let snapshot = self
            .uuid(
                s,
                "CreateVolumeSnapshot",
                json!({"volumeUuid": volume, "name": "admin-snap"}),
            )
            .await;
        // A scheduled reboot of that VM, attached to a trigger that never fires in the test.
        let sched_job = self
            .uuid(
                s,
                "CreateSchedulerJob",
                json!({"name": "admin-reboot", "targetResourceUuid": vm, "type": "rebootVm"}),
            )
            .await;
        let sched_trigger = self
            .uuid(
                s,
                "CreateSchedulerTrigger",
                json!({"name": "admin-trigger", "schedulerType": "simple",
                   "schedulerInterval": 3600, "startTime": 4_000_000_000u64}),
            )
            .await;
        self.ok(
            s,
            "AddSchedulerJobToSchedulerTrigger",
            json!({"schedulerJobUuid": sched_job, "schedulerTriggerUuid": sched_trigger}),
        )
        .await;
        Infra {
            session: admin.to_string(),
            zone,
            cluster,
            host,
            local,
            nfs,
            bs,
            io,
            dof,
            image,
            l2,
            vlan,
            pool,
            vni_range,
            l3,
            ip_range,
            system_tag,
            user_tag,
            key,
            user,
            vm,
            volume,
            snapshot,
            sched_job,
            sched_trigger,
        }
    }

    /// A normal account `tag` and its own resources; `net` is its private /24's third octet.
    async fn tenant(&self, infra: &Infra, tag: &str, net: u8) -> Tenant {
        let password = format!("{tag}-password");
        let account = self
            .uuid(
                &infra.session,
                "CreateAccount",
                json!({"name": tag, "password": password}),
            )
            .await;
        let s = self
            .log_in(
                "LogInByAccount",
                json!({"accountName": tag, "password": password}),
            )
            .await;
        let user_name = format!("{tag}-user");
        let user = self
            .uuid(
                &s,
                "CreateUser",
                json!({"name": user_name, "password": password}),
            )
            .await;
        let user_session = self
            .log_in(
                "LogInByUser",
                json!({"accountName": tag, "userName": user_name, "password": password}),
            )
            .await;
        let (key, job) = self
            .ok(
                &s,
                "CreateSshKeyPair",
                json!({"name": format!("{tag}-key"), "publicKey": ED25519}),
            )
            .await;
        let key = key["inventory"]["uuid"].as_str().unwrap().to_string();
        let image = self
            .uuid(
                &s,
                "AddImage",
                json!({"name": format!("{tag}-image"), "url": image_url(),
                   "format": "qcow2", "backupStorageUuids": [infra.bs]}),
            )
            .await;
        let vxlan = self
            .uuid(
                &s,
                "CreateL2VxlanNetwork",
                json!({"poolUuid": infra.pool, "name": format!("{tag}-vxlan")}),
            )
            .await;
        let l3 = self
            .uuid(
                &s,
                "CreateL3Network",
                json!({"l2NetworkUuid": vxlan, "name": format!("{tag}-l3")}),
            )
            .await;
        let ip_range = self
            .uuid(
                &s,
                "AddIpRange",
                json!({"l3NetworkUuid": l3, "name": format!("{tag}-range"),
                   "startIp": format!("10.0.{net}.10"), "endIp": format!("10.0.{net}.20"),
                   "netmask": "255.255.255.0", "gateway": format!("10.0.{net}.1")}),
            )
            .await;
        self.ok(
            &s,
            "AddDnsToL3Network",
            json!({"l3NetworkUuid": l3, "dns": format!("10.0.{net}.53")}),
        )
        .await;
        let user_tag = self
            .uuid(&s, "CreateUserTag", json!({"resourceType": "ImageVO", "resourceUuid": image, "tag": format!("{tag}-gold")}))
            .await;
        let system_tag = self
            .uuid(&s, "CreateSystemTag", json!({"resourceType": "SshKeyPairVO", "resourceUuid": key, "tag": format!("owner::{tag}")}))
            .await;
        Tenant {
            tag: tag.to_string(),
            account,
            session: s,
            user,
            user_session,
            key,
            image,
            vxlan,
            l3,
            ip_range,
            user_tag,
            system_tag,
            job: job.expect("CreateSshKeyPair is async"),
        }
    }
}

/// What an attack must answer.
#[derive(Debug, Clone)]
enum Expect {
    /// Refused with this code.
    Code(&'static str),
    /// Answered, with no inventories (a read that shows other accounts nothing).
    Empty,
}

/// Tenant B's attempt of one call.
#[derive(Debug, Clone)]
struct Attack {
    body: Value,
    expect: Expect,
    /// Why the code is not `ID.1002`, when it is not.
    why: &'static str,
}

fn denied(body: Value) -> Attack {
    Attack {
        body,
        expect: Expect::Code(PERMISSION_DENIED),
        why: "",
    }
}

fn refused(body: Value, code: &'static str, why: &'static str) -> Attack {
    Attack {
        body,
        expect: Expect::Code(code),
        why,
    }
}

/// Tenant B's attempts of every non-query call, against A's resources and the admin's.
fn attacks(i: &Infra, a: &Tenant, b: &Tenant) -> BTreeMap<&'static str, Vec<Attack>> {
    const STOLEN: &str = "a create that names another account's uuid is refused as a duplicate (SYS.1007) and that record is untouched; creating its own is a tenant's right";
    let mut m: BTreeMap<&'static str, Vec<Attack>> = BTreeMap::new();
    let mut add = |name: &'static str, attacks: Vec<Attack>| {
        assert!(m.insert(name, attacks).is_none(), "{name} twice");
    };
    let state = |uuid: &str| json!({"uuid": uuid, "stateEvent": "disable"});
    let rename = |uuid: &str| json!({"uuid": uuid, "name": "taken-by-b"});
    let uuid = |uuid: &str| json!({ "uuid": uuid });

    // ---- Identity.
    add(
        "LogInByAccount",
        vec![refused(
            json!({"accountName": a.tag, "password": format!("{}-password", b.tag)}),
            AUTHENTICATION_ERROR,
            "a login carries no session; B's password does not open A's account",
        )],
    );
    add(
        "LogInByUser",
        vec![refused(
            json!({"accountName": a.tag, "userName": format!("{}-user", a.tag), "password": format!("{}-password", b.tag)}),
            AUTHENTICATION_ERROR,
            "a login carries no session; B's password does not open A's user",
        )],
    );
    add(
        "RenewSession",
        vec![
            denied(json!({"sessionUuid": a.session, "duration": 600})),
            denied(json!({"sessionUuid": i.session, "duration": 600})),
        ],
    );
    add(
        "CreateAccount",
        vec![denied(json!({"name": "b-made-account", "password": "x"}))],
    );
    add(
        "UpdateAccount",
        vec![
            denied(json!({"uuid": a.account, "description": "taken-by-b", "password": "b-knows"})),
            denied(json!({"uuid": api::ADMIN_ACCOUNT_UUID, "password": "b-knows"})),
        ],
    );
    add(
        "DeleteAccount",
        vec![
            denied(uuid(&a.account)),
            denied(uuid(api::ADMIN_ACCOUNT_UUID)),
        ],
    );
    add(
        "CreateUser",
        vec![refused(
            json!({"resourceUuid": a.user, "name": "b-user-2", "password": "x"}),
            INVALID_ARGUMENT,
            STOLEN,
        )],
    );
    add(
        "UpdateUser",
        vec![
            denied(json!({"uuid": a.user, "description": "taken-by-b", "password": "b-knows"})),
            denied(json!({"uuid": i.user, "password": "b-knows"})),
        ],
    );
    add(
        "DeleteUser",
        vec![denied(uuid(&a.user)), denied(uuid(&i.user))],
    );

    // ---- Zones, clusters, hosts.
    add("CreateZone", vec![denied(json!({"name": "b-zone"}))]);
    add("UpdateZone", vec![denied(rename(&i.zone))]);
    add("ChangeZoneState", vec![denied(state(&i.zone))]);
    add("DeleteZone", vec![denied(uuid(&i.zone))]);
    add(
        "CreateCluster",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-cluster", "hypervisorType": "KVM"}),
        )],
    );
    add("UpdateCluster", vec![denied(rename(&i.cluster))]);
    add("ChangeClusterState", vec![denied(state(&i.cluster))]);
    add("DeleteCluster", vec![denied(uuid(&i.cluster))]);
    add(
        "AddKVMHost",
        vec![denied(
            json!({"clusterUuid": i.cluster, "name": "b-host", "managementIp": "127.0.0.2",
        "username": "root", "password": "b-host-password"}),
        )],
    );
    add("UpdateKVMHost", vec![denied(rename(&i.host))]);
    add(
        "ChangeHostState",
        vec![denied(json!({"uuid": i.host, "stateEvent": "maintain"}))],
    );
    add("DeleteHost", vec![denied(uuid(&i.host))]);
    add("ReconnectHost", vec![denied(uuid(&i.host))]);
    add(
        "AllocateHostResource",
        vec![
            denied(
                json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1024}),
            ),
            denied(
                json!({"uuid": i.cluster, "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1024}),
            ),
        ],
    );
    add(
        "GetCpuMemoryCapacity",
        vec![
            denied(json!({"all": "true"})),
            denied(json!({"hostUuids": [i.host]})),
        ],
    );
    add("GetHostAllocatorStrategies", vec![denied(json!({}))]);
    add(
        "GetCandidateZonesClustersHostsForCreatingVm",
        vec![denied(
            json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
        )],
    );
    add(
        "GetCandidatePrimaryStoragesForCreatingVm",
        vec![denied(
            json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
        )],
    );

    // ---- Storage and offerings.
    add(
        "AddLocalPrimaryStorage",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-local", "url": "/b"}),
        )],
    );
    add(
        "AddNfsPrimaryStorage",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-nfs", "url": "10.0.0.6:/b"}),
        )],
    );
    add(
        "AddSharedMountPointPrimaryStorage",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-smp", "url": "/mnt/b"}),
        )],
    );
    add("UpdatePrimaryStorage", vec![denied(rename(&i.local))]);
    add("ChangePrimaryStorageState", vec![denied(state(&i.local))]);
    add("DeletePrimaryStorage", vec![denied(uuid(&i.nfs))]);
    add(
        "AttachPrimaryStorageToCluster",
        vec![denied(
            json!({"primaryStorageUuid": i.nfs, "clusterUuid": i.cluster}),
        )],
    );
    add(
        "DetachPrimaryStorageFromCluster",
        vec![denied(
            json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}),
        )],
    );
    add(
        "AddImageStoreBackupStorage",
        vec![denied(
            json!({"name": "b-bs", "url": "/b", "hostname": "10.0.0.10",
        "username": "root", "password": "b-bs-password"}),
        )],
    );
    add("UpdateBackupStorage", vec![denied(rename(&i.bs))]);
    add("ChangeBackupStorageState", vec![denied(state(&i.bs))]);
    add("DeleteBackupStorage", vec![denied(uuid(&i.bs))]);
    add(
        "GetPrimaryStorageCapacity",
        vec![
            denied(json!({"all": true})),
            denied(json!({"primaryStorageUuids": [i.local]})),
        ],
    );
    add("ReconnectPrimaryStorage", vec![denied(uuid(&i.local))]);

    // ---- VMs: B can neither create one from offerings it cannot see nor touch the admin's.
    add(
        "CreateVmInstance",
        vec![denied(
            json!({"name": "b-vm", "instanceOfferingUuid": i.io, "imageUuid": a.image, "l3NetworkUuids": [a.l3]}),
        )],
    );
    for call in [
        "StartVmInstance",
        "StopVmInstance",
        "RebootVmInstance",
        "PauseVmInstance",
        "ResumeVmInstance",
        "DestroyVmInstance",
        "ExpungeVmInstance",
        "RecoverVmInstance",
    ] {
        add(call, vec![denied(uuid(&i.vm))]);
    }
    add("UpdateVmInstance", vec![denied(rename(&i.vm))]);
    // ---- NICs: B can neither give the admin's VM a network nor take its NIC (the first NIC's
    // uuid is derived from the VM's).
    add(
        "AttachL3NetworkToVm",
        vec![denied(
            json!({"vmInstanceUuid": i.vm, "l3NetworkUuid": i.l3}),
        )],
    );
    add(
        "DetachL3NetworkFromVm",
        vec![denied(
            json!({"vmNicUuid": api::params::derive_uuid(&i.vm, 1)}),
        )],
    );
    // ---- Clone: B cannot copy the admin's VM (its disk holds the admin's data).
    add(
        "CloneVmInstance",
        vec![denied(
            json!({"vmInstanceUuid": i.vm, "names": ["stolen"], "strategy": "JustCreate"}),
        )],
    );

    // ---- Data volumes: B can neither make one from the admin's offering nor touch the
    // admin's volume or VM through a volume call.
    add(
        "CreateDataVolume",
        vec![denied(json!({"name": "b-data", "diskOfferingUuid": i.dof}))],
    );
    add(
        "AttachDataVolumeToVm",
        vec![denied(
            json!({"volumeUuid": i.volume, "vmInstanceUuid": i.vm}),
        )],
    );
    for call in [
        "DetachDataVolumeFromVm",
        "DeleteDataVolume",
        "RecoverDataVolume",
        "ExpungeDataVolume",
    ] {
        add(call, vec![denied(uuid(&i.volume))]);
    }
    add("ChangeVolumeState", vec![denied(state(&i.volume))]);
    add(
        "ResizeDataVolume",
        vec![denied(json!({"uuid": i.volume, "size": 4294967296u64}))],
    );
    add(
        "ResizeRootVolume",
        vec![denied(
            json!({"uuid": api::params::derive_uuid(&i.vm, 0), "size": 4294967296u64}),
        )],
    );
    add(
        "GetVmAttachableDataVolume",
        vec![denied(json!({"vmInstanceUuid": i.vm}))],
    );
    add(
        "GetDataVolumeAttachableVm",
        vec![denied(json!({"volumeUuid": i.volume}))],
    );
    // ---- Volume snapshots: B can neither snapshot the admin's volumes nor touch the
    // admin's snapshots.
    add(
        "CreateVolumeSnapshot",
        vec![
            denied(json!({"volumeUuid": i.volume, "name": "b-snap"})),
            denied(json!({"volumeUuid": api::params::derive_uuid(&i.vm, 0), "name": "b-snap"})),
        ],
    );
    for call in [
        "RevertVolumeFromSnapshot",
        "DeleteVolumeSnapshot",
        "GetVolumeSnapshotSize",
    ] {
        add(call, vec![denied(uuid(&i.snapshot))]);
    }
    add("UpdateVolumeSnapshot", vec![denied(rename(&i.snapshot))]);
    add(
        "MigrateVm",
        vec![
            denied(json!({"vmInstanceUuid": i.vm})),
            denied(json!({"vmInstanceUuid": i.vm, "hostUuid": i.host})),
        ],
    );
    add(
        "GetVmMigrationCandidateHosts",
        vec![denied(json!({"vmInstanceUuid": i.vm}))],
    );
    // ---- Scheduled jobs: B can neither schedule the admin's VM nor touch its job or trigger.
    add(
        "CreateSchedulerJob",
        vec![denied(
            json!({"name": "b-job", "targetResourceUuid": i.vm, "type": "stopVm"}),
        )],
    );
    add("UpdateSchedulerJob", vec![denied(rename(&i.sched_job))]);
    add("DeleteSchedulerJob", vec![denied(uuid(&i.sched_job))]);
    add("ChangeSchedulerState", vec![denied(state(&i.sched_job))]);
    add(
        "CreateSchedulerTrigger",
        vec![refused(
            json!({"resourceUuid": i.sched_trigger, "name": "b-trigger", "schedulerType": "simple",
                   "schedulerInterval": 60}),
            INVALID_ARGUMENT,
            STOLEN,
        )],
    );
    add(
        "UpdateSchedulerTrigger",
        vec![denied(rename(&i.sched_trigger))],
    );
    add(
        "DeleteSchedulerTrigger",
        vec![denied(uuid(&i.sched_trigger))],
    );
    add(
        "AddSchedulerJobToSchedulerTrigger",
        vec![denied(
            json!({"schedulerJobUuid": i.sched_job, "schedulerTriggerUuid": i.sched_trigger}),
        )],
    );
    add(
        "RemoveSchedulerJobFromSchedulerTrigger",
        vec![denied(
            json!({"schedulerJobUuid": i.sched_job, "schedulerTriggerUuid": i.sched_trigger}),
        )],
    );
    add(
        "GetNoTriggerSchedulerJobs",
        vec![Attack {
            body: json!({}),
            expect: Expect::Empty,
            why: "a read of the caller's own jobs: the admin's never appear",
        }],
    );
    add(
        "GetBackupStorageCapacity",
        vec![
            denied(json!({"all": true})),
            denied(json!({"backupStorageUuids": [i.bs]})),
        ],
    );
    add("ReconnectBackupStorage", vec![denied(uuid(&i.bs))]);
    add(
        "AttachBackupStorageToZone",
        vec![denied(
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
        )],
    );
    add(
        "DetachBackupStorageFromZone",
        vec![denied(
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
        )],
    );
    add(
        "CreateInstanceOffering",
        vec![denied(
            json!({"name": "b-io", "cpuNum": 1, "memorySize": 1073741824u64}),
        )],
    );
    add("UpdateInstanceOffering", vec![denied(rename(&i.io))]);
    add("ChangeInstanceOfferingState", vec![denied(state(&i.io))]);
    add("DeleteInstanceOffering", vec![denied(uuid(&i.io))]);
    add(
        "CreateDiskOffering",
        vec![denied(json!({"name": "b-disk", "diskSize": 1073741824u64}))],
    );
    add("UpdateDiskOffering", vec![denied(rename(&i.dof))]);
    add("ChangeDiskOfferingState", vec![denied(state(&i.dof))]);
    add("DeleteDiskOffering", vec![denied(uuid(&i.dof))]);

    // ---- Images.
    add(
        "AddImage",
        vec![refused(
            json!({"resourceUuid": a.image, "name": "b-image-2", "url": "http://h/b2.qcow2", "format": "qcow2", "backupStorageUuids": [i.bs]}),
            INVALID_ARGUMENT,
            STOLEN,
        )],
    );
    add(
        "UpdateImage",
        vec![denied(rename(&a.image)), denied(rename(&i.image))],
    );
    add(
        "ChangeImageState",
        vec![denied(state(&a.image)), denied(state(&i.image))],
    );
    add(
        "DeleteImage",
        vec![denied(uuid(&a.image)), denied(uuid(&i.image))],
    );
    add(
        "ExpungeImage",
        vec![
            denied(json!({"imageUuid": a.image})),
            denied(json!({"imageUuid": i.image})),
        ],
    );
    add(
        "RecoverImage",
        vec![
            denied(json!({"imageUuid": a.image})),
            denied(json!({"imageUuid": i.image})),
        ],
    );
    add(
        "ExportImageFromBackupStorage",
        vec![
            denied(json!({"backupStorageUuid": i.bs, "imageUuid": a.image})),
            denied(json!({"backupStorageUuid": i.bs, "imageUuid": i.image})),
        ],
    );
    add(
        "DeleteExportedImageFromBackupStorage",
        vec![
            denied(json!({"backupStorageUuid": i.bs, "imageUuid": a.image})),
            denied(json!({"backupStorageUuid": i.bs, "imageUuid": i.image})),
        ],
    );

    // ---- L2 networks.
    add(
        "CreateL2NoVlanNetwork",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-flat", "physicalInterface": "eth1"}),
        )],
    );
    add(
        "CreateL2VlanNetwork",
        vec![denied(
            json!({"zoneUuid": i.zone, "name": "b-vlan", "physicalInterface": "eth0", "vlan": 300}),
        )],
    );
    add(
        "CreateL2VxlanNetworkPool",
        vec![denied(json!({"zoneUuid": i.zone, "name": "b-pool"}))],
    );
    add(
        "CreateL2VxlanNetwork",
        vec![refused(
            json!({"resourceUuid": a.vxlan, "poolUuid": i.pool, "name": "b-vxlan-2"}),
            INVALID_ARGUMENT,
            STOLEN,
        )],
    );
    add(
        "UpdateL2Network",
        vec![denied(rename(&a.vxlan)), denied(rename(&i.l2))],
    );
    add(
        "DeleteL2Network",
        vec![denied(uuid(&a.vxlan)), denied(uuid(&i.l2))],
    );
    add(
        "AttachL2NetworkToCluster",
        vec![
            denied(json!({"l2NetworkUuid": a.vxlan, "clusterUuid": i.cluster})),
            denied(json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster})),
        ],
    );
    add(
        "DetachL2NetworkFromCluster",
        vec![denied(
            json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
        )],
    );
    add(
        "CreateVniRange",
        vec![denied(
            json!({"l2NetworkUuid": i.pool, "name": "b-vni", "startVni": 100, "endVni": 200}),
        )],
    );
    add("DeleteVniRange", vec![denied(uuid(&i.vni_range))]);

    // ---- L3 networks and addresses.
    add(
        "CreateL3Network",
        vec![
            denied(json!({"l2NetworkUuid": a.vxlan, "name": "b-l3-on-a"})),
            denied(json!({"l2NetworkUuid": i.l2, "name": "b-l3-on-admin"})),
        ],
    );
    add(
        "UpdateL3Network",
        vec![denied(rename(&a.l3)), denied(rename(&i.l3))],
    );
    add(
        "ChangeL3NetworkState",
        vec![denied(state(&a.l3)), denied(state(&i.l3))],
    );
    add(
        "DeleteL3Network",
        vec![denied(uuid(&a.l3)), denied(uuid(&i.l3))],
    );
    add(
        "AddIpRange",
        vec![denied(
            json!({"l3NetworkUuid": a.l3, "name": "b-range", "startIp": "10.0.1.100",
        "endIp": "10.0.1.110", "netmask": "255.255.255.0", "gateway": "10.0.1.1"}),
        )],
    );
    add(
        "AddIpRangeByNetworkCidr",
        vec![
            denied(json!({"l3NetworkUuid": a.l3, "name": "b-cidr", "networkCidr": "10.9.0.0/24"})),
            denied(json!({"l3NetworkUuid": i.l3, "name": "b-cidr", "networkCidr": "10.9.0.0/24"})),
        ],
    );
    add(
        "UpdateIpRange",
        vec![denied(rename(&a.ip_range)), denied(rename(&i.ip_range))],
    );
    add(
        "DeleteIpRange",
        vec![denied(uuid(&a.ip_range)), denied(uuid(&i.ip_range))],
    );
    add(
        "AddDnsToL3Network",
        vec![denied(json!({"l3NetworkUuid": a.l3, "dns": "9.9.9.9"}))],
    );
    add(
        "RemoveDnsFromL3Network",
        vec![
            denied(json!({"l3NetworkUuid": a.l3, "dns": "10.0.1.53"})),
            denied(json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"})),
        ],
    );
    add(
        "GetFreeIp",
        vec![
            denied(json!({"l3NetworkUuid": a.l3})),
            denied(json!({"ipRangeUuid": a.ip_range})),
        ],
    );
    add(
        "CheckIpAvailability",
        vec![denied(json!({"l3NetworkUuid": a.l3, "ip": "10.0.1.12"}))],
    );

    // ---- Tags.
    add(
        "CreateUserTag",
        vec![
            denied(
                json!({"resourceType": "ImageVO", "resourceUuid": a.image, "tag": "b-was-here"}),
            ),
            denied(json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "b-was-here"})),
        ],
    );
    add(
        "CreateSystemTag",
        vec![
            denied(
                json!({"resourceType": "SshKeyPairVO", "resourceUuid": a.key, "tag": "owner::b"}),
            ),
            denied(json!({"resourceType": "L3NetworkVO", "resourceUuid": i.l3, "tag": "b::x"})),
        ],
    );
    add(
        "DeleteTag",
        vec![
            denied(uuid(&a.user_tag)),
            denied(uuid(&a.system_tag)),
            denied(uuid(&i.user_tag)),
        ],
    );

    // ---- Settings, key pairs, jobs.
    add(
        "UpdateGlobalConfig",
        vec![denied(
            json!({"category": "identity", "name": "session.timeout", "value": "600"}),
        )],
    );
    add("ResetGlobalConfig", vec![denied(json!({}))]);
    add(
        "CreateSshKeyPair",
        vec![refused(
            json!({"resourceUuid": a.key, "name": "b-key-2", "publicKey": ED25519}),
            INVALID_ARGUMENT,
            STOLEN,
        )],
    );
    add(
        "UpdateSshKeyPair",
        vec![denied(rename(&a.key)), denied(rename(&i.key))],
    );
    add(
        "DeleteSshKeyPair",
        vec![denied(uuid(&a.key)), denied(uuid(&i.key))],
    );
    add(
        "GetTaskProgress",
        vec![Attack {
            body: json!({"apiId": a.job, "all": "true"}),
            expect: Expect::Empty,
            why: "like a query, another account's job is answered as if it did not exist",
        }],
    );
    m
}

/// Every query call of the registry.
fn queries() -> Vec<&'static str> {
    api::registry::calls()
        .map(|c| c.name)
        .filter(|n| is_query(n))
        .collect()
}

/// What the admin sees through every query that does not change by itself.
async fn dump(api: &Api, admin: &str) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    for q in queries().into_iter().filter(|q| !VOLATILE.contains(q)) {
        let (got, _) = api
            .rpc(Some(admin), q, &json!({"conditions": [], "limit": 100000}))
            .await;
        let v = got.unwrap_or_else(|e| panic!("admin {q}: {e:?}"));
        out.insert(q, v["inventories"].clone());
    }
    out
}

fn uuids_in(reply: &Value) -> Vec<String> {
    reply["inventories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["uuid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every query as `viewer` through both forms: nothing of `other`'s or (outside [`SHARED`])
/// of the admin's; returns the uuids `viewer` saw.
async fn check_queries(
    api: &Api,
    infra: &Infra,
    viewer: &Tenant,
    other: &Tenant,
    failures: &mut Vec<String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let admin_uuids: BTreeSet<&str> = infra.uuids().into_iter().collect();
    for q in queries() {
        let shared = SHARED.iter().any(|(s, _)| *s == q);
        let label = |form: Form| format!("{q} as {} ({form:?})", viewer.tag);
        // Everything the viewer may see.
        let mut answers = Vec::new();
        let (rpc, _) = api
            .rpc(
                Some(&viewer.session),
                q,
                &json!({"conditions": [], "limit": 100000}),
            )
            .await;
        answers.push((Form::Rpc, rpc));
        let rest_all = api::rest::routes()
            .iter()
            .find(|r| r.call == q && !r.path.contains('{'))
            .map(|r| r.path);
        if let Some(path) = rest_all {
            let r = api
                .c
                .get(format!("http://{}/zstack{path}?limit=100000", api.http))
                .header("Authorization", format!("OAuth {}", viewer.session))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            answers.push((
                Form::Rest,
                if v["error"].is_object() {
                    Err(error_of(&v))
                } else {
                    Ok(v)
                },
            ));
        }
        // The admin's and the other tenant's records, one by one.
        let (admin_view, _) = api
            .rpc(
                Some(&infra.session),
                q,
                &json!({"conditions": [], "limit": 100000}),
            )
            .await;
        let admin_view = admin_view.unwrap_or_else(|e| panic!("admin {q}: {e:?}"));
        // What the viewer must not see: the other tenant's records, the admin's (outside
        // SHARED), and any audit record of another account.
        let foreign: Vec<String> = admin_view["inventories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                let u = r["uuid"].as_str().unwrap_or_default();
                other.uuids().contains(&u)
                    || (!shared && admin_uuids.contains(u))
                    || (q == "QueryAudit" && r["accountUuid"] != viewer.account.as_str())
            })
            .filter_map(|r| r["uuid"].as_str().map(str::to_string))
            // Enough of them to tell, few enough to keep the run short.
            .take(40)
            .collect();
        if let Some(route) = api::rest::routes()
            .iter()
            .find(|r| r.call == q && r.path.ends_with("/{uuid}"))
        {
            for u in &foreign {
                let path = route.path.replace("{uuid}", u);
                let r = api
                    .c
                    .get(format!("http://{}/zstack{path}", api.http))
                    .header("Authorization", format!("OAuth {}", viewer.session))
                    .send()
                    .await
                    .unwrap();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                answers.push((
                    Form::Rest,
                    if v["error"].is_object() {
                        Err(error_of(&v))
                    } else {
                        Ok(v)
                    },
                ));
            }
        }
        if admin_view["inventories"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["uuid"].is_string()))
            && !foreign.is_empty()
        {
            let (counted, _) = api
                .rpc(
                    Some(&viewer.session),
                    q,
                    &json!({"conditions": [{"name": "uuid", "op": "in", "value": foreign.join(",")}],
                            "count": true}),
                )
                .await;
            match counted {
                Ok(v) if v["total"] == 0 => {}
                Ok(v) => failures.push(format!(
                    "{}: counts {} foreign records",
                    label(Form::Rpc),
                    v["total"]
                )),
                Err(e) => failures.push(format!("{}: count refused {e:?}", label(Form::Rpc))),
            }
        }
        for (form, answer) in answers {
            let v = match answer {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: refused {e:?}", label(form)));
                    continue;
                }
            };
            let text = v.to_string();
            // The viewer's own audit records repeat what it sent (the other's uuids, in these
            // very checks): they are checked by their account below instead.
            for s in other.secrets().into_iter().filter(|_| q != "QueryAudit") {
                if let Some(at) = text.find(s) {
                    let around: String = text
                        .chars()
                        .skip(at.saturating_sub(200))
                        .take(400)
                        .collect();
                    failures.push(format!(
                        "{}: shows {s} of {}: ...{around}...",
                        label(form),
                        other.tag
                    ));
                }
            }
            for u in uuids_in(&v) {
                if !shared && admin_uuids.contains(u.as_str()) {
                    failures.push(format!("{}: shows the admin's {u}", label(form)));
                }
                seen.insert(u);
            }
            if q == "QueryAudit" {
                for r in v["inventories"].as_array().into_iter().flatten() {
                    if r["accountUuid"] != viewer.account.as_str() {
                        failures.push(format!(
                            "{}: shows another account's audit record {r}",
                            label(form)
                        ));
                    }
                }
            }
        }
    }
    seen
}

/// A fake host: every connection reads an SSH identification.
async fn fake_ssh_host() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_8.0\r\n").await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_keeps_tenants_apart() {
    let started = Instant::now();
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init", "--request-timeout-ms", "15000"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin = login(&c, &format!("http://{}/zstack/v1", node.http)).await;
    let api = Api {
        c,
        http: node.http.clone(),
    };
    let setup = Setup { api: &api };
    // The admin host's agent: libvirt's test driver, which the operator allows here.
    let _agent = common::TestAgent::install(
        &common::data_dir(td.path(), 1),
        &td.path().join("agent"),
        "127.0.0.1",
    );
    setup
        .ok(
            &admin,
            "UpdateGlobalConfig",
            json!({"category": "kvm", "name": "allowTestDriver", "value": "true"}),
        )
        .await;
    // The build machine's disk is shared and often nearly full; the world's volumes are tiny.
    setup
        .ok(
            &admin,
            "UpdateGlobalConfig",
            json!({"category": "mevoco", "name": "threshold.primaryStorage.physicalCapacity", "value": "1.0"}),
        )
        .await;
    let infra = setup.infra(&admin, fake_ssh_host().await).await;
    let a = setup.tenant(&infra, "tenant-a", 1).await;
    let b = setup.tenant(&infra, "tenant-b", 2).await;
    eprintln!("world built in {:?}", started.elapsed());

    let mut failures = Vec::new();
    // The table names implemented calls only, and exemptions are implemented calls.
    let implemented: BTreeSet<&str> = api::registry::calls().map(|c| c.name).collect();
    let table = attacks(&infra, &a, &b);
    for name in table.keys().chain(EXEMPT.iter().map(|(n, _)| n)) {
        if !implemented.contains(name) {
            failures.push(format!(
                "{name} has an isolation case but is not an implemented call"
            ));
        }
    }

    // Queries: each tenant sees its own records and nothing of the other's or the admin's.
    for (viewer, other) in [(&a, &b), (&b, &a)] {
        let seen = check_queries(&api, &infra, viewer, other, &mut failures).await;
        for u in viewer.uuids() {
            if !seen.contains(u) {
                failures.push(format!(
                    "{}'s own {u} appears in none of its queries",
                    viewer.tag
                ));
            }
        }
    }
    let admin_seen: BTreeSet<String> = dump(&api, &admin)
        .await
        .values()
        .flat_map(|v| uuids_in(&json!({ "inventories": v })))
        .collect();
    for u in infra.uuids().into_iter().chain(a.uuids()).chain(b.uuids()) {
        if !admin_seen.contains(u) {
            failures.push(format!("the admin's queries miss {u}"));
        }
    }
    eprintln!("queries checked at {:?}", started.elapsed());

    // Every other call: B attacks A's (and the admin's) resources; nothing may change.
    let mut covered = Vec::new();
    let mut before = dump(&api, &admin).await;
    for name in api::registry::calls().map(|c| c.name) {
        if is_query(name) || EXEMPT.iter().any(|(e, _)| *e == name) {
            continue;
        }
        let Some(attempts) = table.get(name) else {
            failures.push(format!("no isolation case for call {name}"));
            continue;
        };
        for at in attempts {
            for form in [Form::Rpc, Form::Rest] {
                let label = format!("{name} {} as {} ({form:?})", at.body, b.tag);
                let (got, _) = api.call(form, Some(&b.session), name, &at.body).await;
                match (&at.expect, got) {
                    (Expect::Code(code), Err((got, _))) if got == *code => {}
                    (Expect::Code(code), Err((got, details))) => failures.push(format!(
                        "{label}: expected {code}{}, got {got}: {details}",
                        if at.why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", at.why)
                        }
                    )),
                    (Expect::Code(code), Ok(v)) => {
                        failures.push(format!("{label}: expected {code}, succeeded: {v}"))
                    }
                    (Expect::Empty, Ok(v)) if v["inventories"] == json!([]) => {}
                    (Expect::Empty, other) => {
                        failures.push(format!("{label}: expected an empty answer, got {other:?}"))
                    }
                }
            }
        }
        let after = dump(&api, &admin).await;
        if after != before {
            let changed: Vec<&str> = after
                .iter()
                .filter(|(q, v)| before.get(*q) != Some(*v))
                .map(|(q, _)| *q)
                .collect();
            failures.push(format!(
                "{name} as {} changed what {changed:?} answer",
                b.tag
            ));
            before = after;
        }
        covered.push(name);
    }
    eprintln!("attacks done at {:?}", started.elapsed());

    // A's sessions survived, and after all of B's attempts the queries still hold (the audit
    // log now holds B's attempts, which name A's uuids, under B's account only).
    for s in [&a.session, &a.user_session] {
        let (got, _) = api
            .rpc(None, "ValidateSession", &json!({"sessionUuid": s}))
            .await;
        if got.as_ref().map(|v| v["validSession"] == true) != Ok(true) {
            failures.push(format!("A's session {s} was ended: {got:?}"));
        }
    }
    check_queries(&api, &infra, &a, &b, &mut failures).await;
    check_queries(&api, &infra, &b, &a, &mut failures).await;

    eprintln!(
        "{} calls attacked in both wire forms, {} queries checked, {} exempt, in {:?}",
        covered.len(),
        queries().len(),
        EXEMPT.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} isolation failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(scratch());
}
