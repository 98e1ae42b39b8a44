//! The call matrix (issue #4): every implemented call (the registry's) has at least one success case
//! and one refusal case at the wire level, each asserting something real (a reply field, a
//! follow-up query) or the exact error code. A call added to `IMPLEMENTED` without both makes
//! [`every_implemented_call_has_a_success_and_a_refusal`] fail, naming it.
//!
//! Requests go through [`send`], which does what `node/src/zstack_api.rs` `execute` does: decode
//! `{class: body}`, resolve the session (or take a given caller), plan with a [`Stamp`], and run
//! every plan kind: proposals are applied (writes of a refused command discarded, as the state
//! machine does; async calls apply their command directly, like the job executor), queries and
//! reads run on the state, logins authenticate and then apply the session command, logouts apply
//! the session delete, and session validation reads the session.

use std::panic::AssertUnwindSafe;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::identity;
use crate::plan::Plan;
use crate::plan::Stamp;
use crate::testing::ctx;
pub(crate) use crate::testing::harness::send;
pub(crate) use crate::testing::harness::stamp_uuid;
pub(crate) use crate::testing::harness::Who;
use crate::testing::MemTxn;
use crate::wire::envelope::decode_request;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::ADMIN_ACCOUNT_UUID;

/// A state and its step counter.
pub(crate) struct Harness {
    pub(crate) t: MemTxn,
    pub(crate) n: u32,
}

impl Harness {
    fn new() -> Self {
        Harness {
            t: MemTxn::default(),
            n: 0,
        }
    }

    /// A copy that continues from the same step (fresh uuids never collide with the base's).
    fn fork(&self) -> Self {
        Harness {
            t: MemTxn {
                tables: self.t.tables.clone(),
            },
            n: self.n,
        }
    }

    fn send(&mut self, who: &Who, name: &str, body: Value) -> Result<Map<String, Value>, Refusal> {
        self.n += 1;
        send(&mut self.t, self.n, who, name, body)
    }

    fn apply(&mut self, command: Command) -> crate::Response {
        self.n += 1;
        crate::apply(&mut self.t, &ctx(u64::from(self.n)), command).unwrap()
    }

    /// An async call through the durable job path (`Submit`, then the executor's `Run`), as
    /// the node runs it: the job's result and the audit record are written too.
    fn through_job(&mut self, name: &str, body: Value) -> String {
        self.n += 1;
        let spec = crate::catalogue::catalogue().by_name(name).unwrap();
        let raw = json!({ spec.class.clone(): body }).to_string();
        let req = decode_request(raw.as_bytes()).unwrap();
        let stamp = Stamp {
            now_ms: 1_000 * u64::from(self.n),
            new_uuid: stamp_uuid(self.n),
            salt: [0; 16],
        };
        let Ok(Plan::Propose { call, command }) = crate::plan::plan(&req, &Caller::admin(), &stamp)
        else {
            panic!("{name} is not a proposal")
        };
        let job_uuid = stamp.new_uuid.clone();
        self.apply(
            crate::job::JobOp::Submit {
                uuid: job_uuid.clone(),
                api_name: call.name.clone(),
                reply_class: call.reply_class.clone(),
                command,
            }
            .command(Caller::admin()),
        );
        let resp = self.apply(
            crate::job::JobOp::Run {
                uuid: job_uuid.clone(),
            }
            .command(Caller::admin()),
        );
        let crate::Response::Job(crate::job::JobResult::Job(job)) = resp else {
            panic!("{name}: {resp:?}")
        };
        assert_eq!(job.success, Some(true), "{name}: {:?}", job.result);
        job_uuid
    }

    fn ok(&mut self, who: &Who, name: &str, body: Value) -> Map<String, Value> {
        self.send(who, name, body)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn admin(&mut self, name: &str, body: Value) -> Map<String, Value> {
        self.ok(&Who::As(Caller::admin()), name, body)
    }

    fn created(&mut self, name: &str, body: Value) -> String {
        self.admin(name, body)["inventory"]["uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} returned no inventory uuid"))
            .to_string()
    }

    /// Inventories of an admin query with these conditions.
    fn query(&mut self, name: &str, conds: Value) -> Vec<Value> {
        match self
            .admin(name, json!({ "conditions": conds }))
            .remove("inventories")
        {
            Some(Value::Array(v)) => v,
            other => panic!("{name}: no inventories in {other:?}"),
        }
    }

    fn count(&mut self, name: &str, conds: Value) -> usize {
        self.query(name, conds).len()
    }

    fn one(&mut self, name: &str, field: &str, value: &str) -> Value {
        let mut v = self.query(name, json!([{"name": field, "op": "=", "value": value}]));
        assert_eq!(v.len(), 1, "{name} {field}={value}: {v:?}");
        v.remove(0)
    }

    fn valid(&mut self, session: &str) -> bool {
        self.send(
            &Who::As(Caller::admin()),
            "ValidateSession",
            json!({ "sessionUuid": session }),
        )
        .unwrap()["validSession"]
            == true
    }
}

const TENANT_PW: &str = "tenant-password-sha512";
const ALICE_PW: &str = "alice-password-sha512";

/// What the base world holds.
#[derive(Debug, Clone)]
struct Ids {
    mn: String,
    admin_session: String,
    tenant: String,
    tenant_session: String,
    alice: String,
    alice_session: String,
    zone: String,
    zone2: String,
    zone2_job: String,
    cluster: String,
    host: String,
    host_in_maintenance: String,
    local: String,
    nfs: String,
    smp: String,
    bs: String,
    io: String,
    dof: String,
    image: String,
    deleted_image: String,
    l2: String,
    vlan: String,
    pool: String,
    vni_range: String,
    spare_vni_range: String,
    vxlan: String,
    l3: String,
    l3v: String,
    ip_range: String,
    sys_tag: String,
    user_tag: String,
}

/// The base world, built through the wire as a client (and the node's duties) would.
fn base() -> (Harness, Ids) {
    let mut h = Harness::new();
    // The leader's duties: the admin bootstrap and the management-node registry.
    let password =
        identity::hash_password(identity::DEFAULT_ADMIN_PASSWORD_SHA512, &[7; 16]).expect("hash");
    h.apply(identity::IdentityOp::EnsureAdmin { password }.command(Caller::admin()));
    let mn = "0123456789abcdef0123456789abcdef".to_string();
    h.apply(
        crate::management_node::ManagementNodeOp::Upsert(crate::management_node::ManagementNode {
            uuid: mn.clone(),
            host_name: "10.0.0.1".into(),
            join_date: 1,
            heart_beat: 2,
            raft_node_id: 1,
            raft_role: "Leader".into(),
            term: 1,
            commit_index: 3,
            applied_index: 3,
            raft_addr: "10.0.0.1:7070".into(),
            api_addr: "10.0.0.1:8080".into(),
        })
        .command(Caller::admin()),
    );
    let nobody = Who::Session("0".repeat(32));
    let admin_session = h.ok(
        &nobody,
        "LogInByAccount",
        json!({"accountName": "admin", "password": identity::DEFAULT_ADMIN_PASSWORD_SHA512}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let s_admin = Who::Session(admin_session.clone());
    let tenant = h.ok(
        &s_admin,
        "CreateAccount",
        json!({"name": "tenant", "password": TENANT_PW}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let tenant_session = h.ok(
        &nobody,
        "LogInByAccount",
        json!({"accountName": "tenant", "password": TENANT_PW}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = h.ok(
        &Who::Session(tenant_session.clone()),
        "CreateUser",
        json!({"name": "alice", "password": ALICE_PW}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let alice_session = h.ok(
        &nobody,
        "LogInByUser",
        json!({"accountName": "tenant", "userName": "alice", "password": ALICE_PW}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    h.ok(
        &s_admin,
        "UpdateGlobalConfig",
        json!({"category": "vm", "name": "expungePeriod", "value": "3600"}),
    );
    let zone = h.created("CreateZone", json!({"name": "zone", "description": "base"}));
    // One call through the job path leaves an audit record (the job's `Run` writes it).
    let zone2_job = h.through_job("CreateZone", json!({"name": "zone2"}));
    let zone2 = h.one("QueryZone", "name", "zone2")["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster = h.created(
        "CreateCluster",
        json!({"zoneUuid": zone, "name": "cluster", "hypervisorType": "KVM"}),
    );
    let host = h.created(
        "AddKVMHost",
        json!({"clusterUuid": cluster, "name": "host1", "managementIp": "10.0.1.1", "username": "root", "password": "p"}),
    );
    let host_in_maintenance = h.created(
        "AddKVMHost",
        json!({"clusterUuid": cluster, "name": "host2", "managementIp": "10.0.1.2", "username": "root", "password": "p"}),
    );
    h.admin(
        "ChangeHostState",
        json!({"uuid": host_in_maintenance, "stateEvent": "maintain"}),
    );
    let local = h.created(
        "AddLocalPrimaryStorage",
        json!({"zoneUuid": zone, "name": "local", "url": "/zstack_ps"}),
    );
    let nfs = h.created(
        "AddNfsPrimaryStorage",
        json!({"zoneUuid": zone, "name": "nfs", "url": "10.0.0.5:/nfs"}),
    );
    let smp = h.created(
        "AddSharedMountPointPrimaryStorage",
        json!({"zoneUuid": zone, "name": "smp", "url": "/mnt/smp"}),
    );
    h.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": local, "clusterUuid": cluster}),
    );
    let bs = h.created(
        "AddImageStoreBackupStorage",
        json!({"name": "bs", "url": "/zstack_bs", "hostname": "10.0.0.9", "username": "root", "password": "p", "sshPort": 22}),
    );
    h.admin(
        "AttachBackupStorageToZone",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
    );
    let io = h.created(
        "CreateInstanceOffering",
        json!({"name": "small", "cpuNum": 1, "memorySize": 1073741824u64}),
    );
    let dof = h.created(
        "CreateDiskOffering",
        json!({"name": "disk", "diskSize": 1073741824u64}),
    );
    let image = h.created(
        "AddImage",
        json!({"name": "ttylinux", "url": "http://h/ttylinux.qcow2", "format": "qcow2", "backupStorageUuids": [bs]}),
    );
    let deleted_image = h.created(
        "AddImage",
        json!({"name": "gone", "url": "http://h/gone.qcow2", "format": "qcow2", "backupStorageUuids": [bs]}),
    );
    h.admin("DeleteImage", json!({"uuid": deleted_image}));
    let l2 = h.created(
        "CreateL2NoVlanNetwork",
        json!({"zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"}),
    );
    h.admin(
        "AttachL2NetworkToCluster",
        json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
    );
    let vlan = h.created(
        "CreateL2VlanNetwork",
        json!({"zoneUuid": zone, "name": "vlan", "physicalInterface": "eth0", "vlan": 100}),
    );
    let pool = h.created(
        "CreateL2VxlanNetworkPool",
        json!({"zoneUuid": zone, "name": "pool"}),
    );
    let vni_range = h.created(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "r", "startVni": 10, "endVni": 20}),
    );
    let spare_vni_range = h.created(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "spare", "startVni": 50, "endVni": 60}),
    );
    let vxlan = h.created(
        "CreateL2VxlanNetwork",
        json!({"poolUuid": pool, "name": "vx", "vni": 15}),
    );
    let l3 = h.created(
        "CreateL3Network",
        json!({"l2NetworkUuid": l2, "name": "flat-l3", "category": "Private", "ipVersion": 4}),
    );
    let l3v = h.created(
        "CreateL3Network",
        json!({"l2NetworkUuid": vlan, "name": "vlan-l3"}),
    );
    let ip_range = h.created(
        "AddIpRange",
        json!({"l3NetworkUuid": l3, "name": "r1", "startIp": "192.168.1.10", "endIp": "192.168.1.20", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
    );
    h.admin(
        "AddDnsToL3Network",
        json!({"l3NetworkUuid": l3, "dns": "8.8.8.8"}),
    );
    let sys_tag = h.created(
        "CreateSystemTag",
        json!({"resourceType": "L3NetworkVO", "resourceUuid": l3, "tag": "networkServices::Flat"}),
    );
    let user_tag = h.created(
        "CreateUserTag",
        json!({"resourceType": "ClusterVO", "resourceUuid": cluster, "tag": "rack-1"}),
    );
    let ids = Ids {
        mn,
        admin_session,
        tenant,
        tenant_session,
        alice,
        alice_session,
        zone,
        zone2,
        zone2_job,
        cluster,
        host,
        host_in_maintenance,
        local,
        nfs,
        smp,
        bs,
        io,
        dof,
        image,
        deleted_image,
        l2,
        vlan,
        pool,
        vni_range,
        spare_vni_range,
        vxlan,
        l3,
        l3v,
        ip_range,
        sys_tag,
        user_tag,
    };
    (h, ids)
}

type Check = Box<dyn Fn(&mut Harness, &Map<String, Value>)>;

enum Expect {
    Ok(Check),
    Refused(Code),
}

struct Case {
    call: &'static str,
    who: Who,
    body: Value,
    expect: Expect,
}

fn ok(
    call: &'static str,
    who: &Who,
    body: Value,
    check: impl Fn(&mut Harness, &Map<String, Value>) + 'static,
) -> Case {
    Case {
        call,
        who: who.clone(),
        body,
        expect: Expect::Ok(Box::new(check)),
    }
}

fn no(call: &'static str, who: &Who, body: Value, code: Code) -> Case {
    Case {
        call,
        who: who.clone(),
        body,
        expect: Expect::Refused(code),
    }
}

/// A syntactically bad query condition (unknown operator).
fn bad_query() -> Value {
    json!({"conditions": [{"name": "uuid", "op": "~=", "value": "x"}]})
}

fn eq(field: &str, value: &str) -> Value {
    json!([{"name": field, "op": "=", "value": value}])
}

/// A uuid nothing in the base world has.
fn missing() -> String {
    "deadbeefdeadbeefdeadbeefdeadbeef".to_string()
}

fn matrix(ids: &Ids) -> Vec<Case> {
    let admin = Who::As(Caller::admin());
    let tenant = Who::Session(ids.tenant_session.clone());
    let alice = Who::Session(ids.alice_session.clone());
    let stranger = Who::As(Caller {
        account_uuid: "5".repeat(32),
        user_uuid: "5".repeat(32),
        admin: false,
    });
    let nobody = Who::Session("0".repeat(32));
    let i = ids.clone();
    let mut m = Vec::new();

    // ---- Zone.
    m.push(ok(
        "CreateZone",
        &admin,
        json!({"name": "z3", "description": "d"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "z3");
            assert_eq!(r["inventory"]["state"], "Enabled");
            assert_eq!(h.count("QueryZone", eq("name", "z3")), 1);
        },
    ));
    m.push(no(
        "CreateZone",
        &tenant,
        json!({"name": "z3"}),
        Code::PermissionDenied,
    ));
    m.push(no("CreateZone", &admin, json!({}), Code::InvalidArgument));
    m.push(ok(
        "UpdateZone",
        &admin,
        json!({"uuid": i.zone, "name": "renamed"}),
        |_, r| assert_eq!(r["inventory"]["name"], "renamed"),
    ));
    m.push(no(
        "UpdateZone",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    {
        let cluster = i.cluster.clone();
        m.push(ok(
            "ChangeZoneState",
            &admin,
            json!({"uuid": i.zone, "stateEvent": "disable"}),
            move |h, r| {
                assert_eq!(r["inventory"]["state"], "Disabled");
                assert_eq!(h.one("QueryCluster", "uuid", &cluster)["state"], "Disabled");
            },
        ));
    }
    m.push(no(
        "ChangeZoneState",
        &admin,
        json!({"uuid": i.zone, "stateEvent": "boom"}),
        Code::InvalidArgument,
    ));
    {
        let zone = i.zone.clone();
        m.push(ok(
            "DeleteZone",
            &admin,
            json!({"uuid": i.zone}),
            move |h, _| {
                assert_eq!(h.count("QueryZone", eq("uuid", &zone)), 0);
                assert_eq!(h.count("QueryCluster", json!([])), 0);
                assert_eq!(h.count("QueryL3Network", json!([])), 0);
            },
        ));
    }
    m.push(no(
        "DeleteZone",
        &tenant,
        json!({"uuid": i.zone}),
        Code::PermissionDenied,
    ));
    {
        let zone = i.zone.clone();
        m.push(ok(
            "QueryZone",
            &admin,
            json!({"conditions": eq("uuid", &zone), "replyWithCount": true}),
            |_, r| {
                assert_eq!(r["total"], 1);
                assert_eq!(r["inventories"][0]["name"], "zone");
            },
        ));
    }
    m.push(ok(
        "QueryZone",
        &tenant,
        json!({"conditions": []}),
        |_, r| assert_eq!(r["inventories"], json!([]), "a tenant sees no admin zone"),
    ));
    m.push(no("QueryZone", &admin, bad_query(), Code::InvalidArgument));

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

    // ---- Global config.
    m.push(ok(
        "UpdateGlobalConfig",
        &admin,
        json!({"category": "identity", "name": "session.timeout", "value": "600"}),
        |h, r| {
            assert_eq!(r["inventory"]["value"], "600");
            let c = h.query(
                "QueryGlobalConfig",
                json!([{"name": "category", "op": "=", "value": "identity"},
                       {"name": "name", "op": "=", "value": "session.timeout"}]),
            );
            assert_eq!(c[0]["value"], "600");
        },
    ));
    m.push(no(
        "UpdateGlobalConfig",
        &admin,
        json!({"category": "identity", "name": "session.timeout", "value": "0"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "UpdateGlobalConfig",
        &admin,
        json!({"category": "nope", "name": "x", "value": "1"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "UpdateGlobalConfig",
        &tenant,
        json!({"category": "identity", "name": "session.timeout", "value": "600"}),
        Code::PermissionDenied,
    ));
    m.push(ok("ResetGlobalConfig", &admin, json!({}), |h, _| {
        let c = h.query(
            "QueryGlobalConfig",
            json!([{"name": "category", "op": "=", "value": "vm"},
                   {"name": "name", "op": "=", "value": "expungePeriod"}]),
        );
        assert_eq!(c[0]["value"], c[0]["defaultValue"]);
    }));
    m.push(no(
        "ResetGlobalConfig",
        &tenant,
        json!({}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "QueryGlobalConfig",
        &tenant,
        json!({"conditions": [{"name": "name", "op": "=", "value": "expungePeriod"}]}),
        |_, r| assert_eq!(r["inventories"][0]["value"], "3600"),
    ));
    m.push(no(
        "QueryGlobalConfig",
        &admin,
        json!({"conditions": [], "limit": "many"}),
        Code::InvalidArgument,
    ));

    // ---- Sessions.
    {
        let tenant_uuid = i.tenant.clone();
        m.push(ok(
            "LogInByAccount",
            &nobody,
            json!({"accountName": "tenant", "password": TENANT_PW}),
            move |h, r| {
                assert_eq!(r["inventory"]["accountUuid"], tenant_uuid.as_str());
                assert_eq!(r["inventory"]["userType"], "AccountVO");
                assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
            },
        ));
    }
    m.push(no(
        "LogInByAccount",
        &nobody,
        json!({"accountName": "tenant", "password": "wrong"}),
        Code::AuthenticationError,
    ));
    m.push(no(
        "LogInByAccount",
        &nobody,
        json!({"accountName": "tenant"}),
        Code::InvalidArgument,
    ));
    {
        let alice_uuid = i.alice.clone();
        m.push(ok(
            "LogInByUser",
            &nobody,
            json!({"accountName": "tenant", "userName": "alice", "password": ALICE_PW}),
            move |h, r| {
                assert_eq!(r["inventory"]["userUuid"], alice_uuid.as_str());
                assert_eq!(r["inventory"]["userType"], "UserVO");
                assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
            },
        ));
    }
    m.push(no(
        "LogInByUser",
        &nobody,
        json!({"accountUuid": i.tenant, "userName": "alice", "password": TENANT_PW}),
        Code::AuthenticationError,
    ));
    m.push(no(
        "LogInByUser",
        &nobody,
        json!({"userName": "alice", "password": ALICE_PW}),
        Code::InvalidArgument,
    ));
    {
        let s = i.tenant_session.clone();
        m.push(ok(
            "LogOut",
            &nobody,
            json!({"sessionUuid": i.tenant_session}),
            move |h, _| assert!(!h.valid(&s)),
        ));
    }
    m.push(no(
        "LogOut",
        &nobody,
        json!({"sessionUuid": {"uuid": "x"}}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "ValidateSession",
        &nobody,
        json!({"sessionUuid": i.alice_session}),
        |_, r| assert_eq!(r["validSession"], true),
    ));
    m.push(ok(
        "ValidateSession",
        &nobody,
        json!({"sessionUuid": missing()}),
        |_, r| assert_eq!(r["validSession"], false),
    ));
    m.push(no(
        "ValidateSession",
        &nobody,
        json!({}),
        Code::InvalidArgument,
    ));
    {
        let s = i.tenant_session.clone();
        m.push(ok(
            "RenewSession",
            &tenant,
            json!({"sessionUuid": i.tenant_session, "duration": 600}),
            move |h, r| {
                assert_eq!(r["inventory"]["uuid"], s.as_str());
                let (_, sess) = crate::resource::require::<identity::Session>(&h.t, &s).unwrap();
                assert_eq!(sess.expired_date, 1_000 * u64::from(h.n) + 600_000);
            },
        ));
    }
    m.push(no(
        "RenewSession",
        &tenant,
        json!({"sessionUuid": i.admin_session}),
        Code::PermissionDenied,
    ));
    m.push(no(
        "RenewSession",
        &admin,
        json!({"sessionUuid": i.admin_session, "duration": 5}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "RenewSession",
        &nobody,
        json!({"sessionUuid": "0".repeat(32)}),
        Code::InvalidSession,
    ));

    // ---- Accounts and users.
    m.push(ok(
        "CreateAccount",
        &admin,
        json!({"name": "acct2", "password": "pw2"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "acct2");
            assert_eq!(r["inventory"]["type"], "Normal");
            h.ok(
                &Who::Session("0".repeat(32)),
                "LogInByAccount",
                json!({"accountName": "acct2", "password": "pw2"}),
            );
        },
    ));
    m.push(no(
        "CreateAccount",
        &tenant,
        json!({"name": "acct2", "password": "pw2"}),
        Code::PermissionDenied,
    ));
    m.push(no(
        "CreateAccount",
        &admin,
        json!({"name": "tenant", "password": "pw2"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateAccount",
        &tenant,
        json!({"uuid": i.tenant, "description": "mine", "password": "new-pw"}),
        |h, r| {
            assert_eq!(r["inventory"]["description"], "mine");
            h.ok(
                &Who::Session("0".repeat(32)),
                "LogInByAccount",
                json!({"accountName": "tenant", "password": "new-pw"}),
            );
        },
    ));
    m.push(no(
        "UpdateAccount",
        &tenant,
        json!({"uuid": ADMIN_ACCOUNT_UUID, "description": "mine"}),
        Code::PermissionDenied,
    ));
    m.push(no(
        "UpdateAccount",
        &admin,
        json!({"uuid": missing(), "description": "x"}),
        Code::ResourceNotFound,
    ));
    {
        let (t, s) = (i.tenant.clone(), i.alice_session.clone());
        m.push(ok(
            "DeleteAccount",
            &admin,
            json!({"uuid": i.tenant}),
            move |h, _| {
                assert_eq!(h.count("QueryAccount", eq("uuid", &t)), 0);
                assert_eq!(h.count("QueryUser", eq("accountUuid", &t)), 0);
                assert!(!h.valid(&s), "the account's sessions go with it");
            },
        ));
    }
    m.push(no(
        "DeleteAccount",
        &admin,
        json!({"uuid": ADMIN_ACCOUNT_UUID}),
        Code::OperationFailure,
    ));
    m.push(no(
        "DeleteAccount",
        &tenant,
        json!({"uuid": i.tenant}),
        Code::PermissionDenied,
    ));
    {
        let t = i.tenant.clone();
        m.push(ok(
            "QueryAccount",
            &tenant,
            json!({"conditions": []}),
            move |_, r| {
                let inv = r["inventories"].as_array().unwrap();
                assert_eq!(inv.len(), 1, "a normal account sees itself only");
                assert_eq!(inv[0]["uuid"], t.as_str());
            },
        ));
    }
    m.push(no(
        "QueryAccount",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let t = i.tenant.clone();
        m.push(ok(
            "CreateUser",
            &tenant,
            json!({"name": "bob", "password": "bob-pw"}),
            move |h, r| {
                assert_eq!(r["inventory"]["accountUuid"], t.as_str());
                h.ok(
                    &Who::Session("0".repeat(32)),
                    "LogInByUser",
                    json!({"accountUuid": t, "userName": "bob", "password": "bob-pw"}),
                );
            },
        ));
    }
    m.push(no(
        "CreateUser",
        &tenant,
        json!({"name": "alice", "password": "again"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateUser",
        &alice,
        json!({"uuid": i.alice, "description": "me"}),
        |_, r| assert_eq!(r["inventory"]["description"], "me"),
    ));
    m.push(no(
        "UpdateUser",
        &admin,
        json!({"uuid": missing(), "description": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(no(
        "UpdateUser",
        &stranger,
        json!({"uuid": i.alice, "description": "x"}),
        Code::PermissionDenied,
    ));
    {
        let (u, s) = (i.alice.clone(), i.alice_session.clone());
        m.push(ok(
            "DeleteUser",
            &tenant,
            json!({"uuid": i.alice}),
            move |h, _| {
                assert_eq!(h.count("QueryUser", eq("uuid", &u)), 0);
                assert!(!h.valid(&s), "the user's sessions go with it");
            },
        ));
    }
    m.push(no(
        "DeleteUser",
        &stranger,
        json!({"uuid": i.alice}),
        Code::PermissionDenied,
    ));
    {
        let u = i.alice.clone();
        m.push(ok(
            "QueryUser",
            &tenant,
            json!({"conditions": eq("name", "alice")}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], u.as_str()),
        ));
    }
    m.push(no("QueryUser", &admin, bad_query(), Code::InvalidArgument));

    // ---- Clusters.
    {
        let zone = i.zone.clone();
        m.push(ok(
            "CreateCluster",
            &admin,
            json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "KVM"}),
            move |h, r| {
                assert_eq!(r["inventory"]["zoneUuid"], zone.as_str());
                assert_eq!(h.count("QueryCluster", eq("zoneUuid", &zone)), 2);
            },
        ));
    }
    m.push(no(
        "CreateCluster",
        &admin,
        json!({"zoneUuid": missing(), "name": "c2", "hypervisorType": "KVM"}),
        Code::ResourceNotFound,
    ));
    m.push(no(
        "CreateCluster",
        &admin,
        json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "Xen"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateCluster",
        &tenant,
        json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "KVM"}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "UpdateCluster",
        &admin,
        json!({"uuid": i.cluster, "name": "c1", "description": "d"}),
        |_, r| assert_eq!(r["inventory"]["name"], "c1"),
    ));
    m.push(no(
        "UpdateCluster",
        &admin,
        json!({"uuid": missing(), "name": "c1"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeClusterState",
        &admin,
        json!({"uuid": i.cluster, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeClusterState",
        &admin,
        json!({"uuid": i.cluster, "stateEvent": "maintain"}),
        Code::InvalidArgument,
    ));
    {
        let (c, local) = (i.cluster.clone(), i.local.clone());
        m.push(ok(
            "DeleteCluster",
            &admin,
            json!({"uuid": i.cluster}),
            move |h, _| {
                assert_eq!(h.count("QueryCluster", eq("uuid", &c)), 0);
                let ps = h.one("QueryPrimaryStorage", "uuid", &local);
                assert_eq!(ps["attachedClusterUuids"], json!([]));
            },
        ));
    }
    m.push(no(
        "DeleteCluster",
        &tenant,
        json!({"uuid": i.cluster}),
        Code::PermissionDenied,
    ));
    {
        let c = i.cluster.clone();
        m.push(ok(
            "QueryCluster",
            &admin,
            json!({"conditions": [{"name": "__userTag__", "op": "=", "value": "rack-1"}]}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], c.as_str()),
        ));
    }
    m.push(no(
        "QueryCluster",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    // ---- Hosts (the node probes the host before proposing; here the probe succeeds).
    {
        let c = i.cluster.clone();
        m.push(ok(
            "AddKVMHost",
            &admin,
            json!({"clusterUuid": i.cluster, "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p", "sshPort": 2222}),
            move |h, r| {
                assert_eq!(r["inventory"]["managementIp"], "10.0.1.3");
                assert_eq!(r["inventory"]["status"], "Connected");
                assert!(r["inventory"].get("password").is_none());
                assert_eq!(h.count("QueryHost", eq("clusterUuid", &c)), 3);
            },
        ));
    }
    m.push(no(
        "AddKVMHost",
        &admin,
        json!({"clusterUuid": missing(), "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p"}),
        Code::ResourceNotFound,
    ));
    m.push(no(
        "AddKVMHost",
        &admin,
        json!({"clusterUuid": i.cluster, "name": "dup", "managementIp": "10.0.1.1", "username": "root", "password": "p"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "AddKVMHost",
        &tenant,
        json!({"clusterUuid": i.cluster, "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p"}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "UpdateKVMHost",
        &admin,
        json!({"uuid": i.host, "name": "host1b", "sshPort": 2200}),
        |_, r| {
            assert_eq!(r["inventory"]["name"], "host1b");
            assert_eq!(r["inventory"]["sshPort"], 2200);
        },
    ));
    m.push(no(
        "UpdateKVMHost",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeHostState",
        &admin,
        json!({"uuid": i.host, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeHostState",
        &admin,
        json!({"uuid": i.host_in_maintenance, "stateEvent": "maintain"}),
        Code::OperationFailure,
    ));
    m.push(no(
        "ChangeHostState",
        &admin,
        json!({"uuid": i.host, "stateEvent": "reboot"}),
        Code::InvalidArgument,
    ));
    {
        let host = i.host_in_maintenance.clone();
        m.push(ok(
            "DeleteHost",
            &admin,
            json!({"uuid": i.host_in_maintenance}),
            move |h, _| assert_eq!(h.count("QueryHost", eq("uuid", &host)), 0),
        ));
    }
    m.push(no(
        "DeleteHost",
        &admin,
        json!({"uuid": i.host}),
        Code::OperationFailure,
    ));
    m.push(ok(
        "ReconnectHost",
        &admin,
        json!({"uuid": i.host}),
        |_, r| assert_eq!(r["inventory"]["status"], "Connected"),
    ));
    m.push(no(
        "ReconnectHost",
        &admin,
        json!({"uuid": i.host_in_maintenance}),
        Code::OperationFailure,
    ));
    {
        let host = i.host.clone();
        m.push(ok(
            "QueryHost",
            &admin,
            json!({"conditions": eq("managementIp", "10.0.1.1")}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], host.as_str()),
        ));
    }
    m.push(ok(
        "QueryHost",
        &tenant,
        json!({"conditions": []}),
        |_, r| assert_eq!(r["inventories"], json!([]), "hosts are the admin's"),
    ));
    m.push(no("QueryHost", &admin, bad_query(), Code::InvalidArgument));

    // ---- Audit.
    {
        let (job, zone2) = (i.zone2_job.clone(), i.zone2.clone());
        m.push(ok(
            "QueryAudit",
            &admin,
            json!({"conditions": eq("apiName", "CreateZone")}),
            move |_, r| {
                let inv = &r["inventories"][0];
                assert_eq!(inv["jobUuid"], job.as_str());
                assert_eq!(inv["resourceUuid"], zone2.as_str());
                assert_eq!(inv["success"], true);
            },
        ));
    }
    m.push(ok(
        "QueryAudit",
        &tenant,
        json!({"conditions": []}),
        |_, r| {
            assert_eq!(
                r["inventories"],
                json!([]),
                "a tenant sees only its own calls"
            )
        },
    ));
    m.push(no("QueryAudit", &admin, bad_query(), Code::InvalidArgument));

    // ---- Primary storage.
    m.push(ok(
        "AddLocalPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "local2", "url": "/ps2"}),
        |h, r| {
            assert_eq!(r["inventory"]["type"], "LocalStorage");
            assert_eq!(h.count("QueryPrimaryStorage", eq("name", "local2")), 1);
        },
    ));
    m.push(no(
        "AddLocalPrimaryStorage",
        &admin,
        json!({"zoneUuid": missing(), "name": "local2", "url": "/ps2"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "AddNfsPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "nfs2", "url": "10.0.0.8:/nfs2"}),
        |_, r| {
            assert_eq!(r["inventory"]["type"], "NFS");
            assert_eq!(r["inventory"]["url"], "10.0.0.8:/nfs2");
        },
    ));
    m.push(no(
        "AddNfsPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "nfs2"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "AddSharedMountPointPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}),
        |_, r| assert_eq!(r["inventory"]["type"], "SharedMountPoint"),
    ));
    m.push(no(
        "AddSharedMountPointPrimaryStorage",
        &tenant,
        json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "UpdatePrimaryStorage",
        &admin,
        json!({"uuid": i.nfs, "description": "d"}),
        |_, r| assert_eq!(r["inventory"]["description"], "d"),
    ));
    m.push(no(
        "UpdatePrimaryStorage",
        &admin,
        json!({"uuid": missing(), "description": "d"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangePrimaryStorageState",
        &admin,
        json!({"uuid": i.nfs, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangePrimaryStorageState",
        &admin,
        json!({"uuid": i.nfs, "stateEvent": "explode"}),
        Code::InvalidArgument,
    ));
    {
        let c = i.cluster.clone();
        m.push(ok(
            "AttachPrimaryStorageToCluster",
            &admin,
            json!({"primaryStorageUuid": i.nfs, "clusterUuid": i.cluster}),
            move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c])),
        ));
    }
    m.push(no(
        "AttachPrimaryStorageToCluster",
        &admin,
        json!({"primaryStorageUuid": i.nfs, "clusterUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "DetachPrimaryStorageFromCluster",
        &admin,
        json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}),
        |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
    ));
    m.push(no(
        "DetachPrimaryStorageFromCluster",
        &tenant,
        json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}),
        Code::PermissionDenied,
    ));
    {
        let nfs = i.nfs.clone();
        m.push(ok(
            "DeletePrimaryStorage",
            &admin,
            json!({"uuid": i.nfs}),
            move |h, _| assert_eq!(h.count("QueryPrimaryStorage", eq("uuid", &nfs)), 0),
        ));
    }
    m.push(no(
        "DeletePrimaryStorage",
        &admin,
        json!({"uuid": i.local}),
        Code::OperationFailure,
    ));
    {
        let local = i.local.clone();
        m.push(ok(
            "QueryPrimaryStorage",
            &admin,
            json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
            move |_, r| {
                assert_eq!(r["inventories"].as_array().unwrap().len(), 1);
                assert_eq!(r["inventories"][0]["uuid"], local.as_str());
            },
        ));
    }
    {
        let smp = i.smp.clone();
        m.push(ok(
            "QueryPrimaryStorage",
            &admin,
            json!({"conditions": eq("type", "SharedMountPoint")}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], smp.as_str()),
        ));
    }
    m.push(no(
        "QueryPrimaryStorage",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    // ---- Backup storage.
    m.push(ok(
        "AddImageStoreBackupStorage",
        &admin,
        json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root", "password": "p"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "bs2");
            assert!(r["inventory"].get("password").is_none());
            assert_eq!(
                h.count("QueryImageStoreBackupStorage", eq("hostname", "10.0.0.10")),
                1
            );
        },
    ));
    m.push(no(
        "AddImageStoreBackupStorage",
        &admin,
        json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateBackupStorage",
        &admin,
        json!({"uuid": i.bs, "name": "bs-renamed"}),
        |_, r| assert_eq!(r["inventory"]["name"], "bs-renamed"),
    ));
    m.push(no(
        "UpdateBackupStorage",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeBackupStorageState",
        &admin,
        json!({"uuid": i.bs, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeBackupStorageState",
        &tenant,
        json!({"uuid": i.bs, "stateEvent": "disable"}),
        Code::PermissionDenied,
    ));
    {
        let zone2 = i.zone2.clone();
        m.push(ok(
            "AttachBackupStorageToZone",
            &admin,
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone2}),
            move |_, r| {
                let zones = r["inventory"]["attachedZoneUuids"].as_array().unwrap();
                assert!(zones.contains(&json!(zone2)), "{zones:?}");
            },
        ));
    }
    m.push(no(
        "AttachBackupStorageToZone",
        &admin,
        json!({"backupStorageUuid": i.bs, "zoneUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "DetachBackupStorageFromZone",
        &admin,
        json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
        |_, r| assert_eq!(r["inventory"]["attachedZoneUuids"], json!([])),
    ));
    m.push(no(
        "DetachBackupStorageFromZone",
        &tenant,
        json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
        Code::PermissionDenied,
    ));
    {
        let bs = i.bs.clone();
        m.push(ok(
            "DeleteBackupStorage",
            &admin,
            json!({"uuid": i.bs}),
            move |h, _| assert_eq!(h.count("QueryBackupStorage", eq("uuid", &bs)), 0),
        ));
    }
    m.push(no(
        "DeleteBackupStorage",
        &tenant,
        json!({"uuid": i.bs}),
        Code::PermissionDenied,
    ));
    {
        let bs = i.bs.clone();
        m.push(ok(
            "QueryBackupStorage",
            &tenant,
            json!({"conditions": eq("attachedZoneUuids", &i.zone)}),
            move |_, r| {
                assert_eq!(
                    r["inventories"][0]["uuid"],
                    bs.as_str(),
                    "every session lists BS"
                );
                assert!(r["inventories"][0].get("hostname").is_none());
            },
        ));
    }
    m.push(no(
        "QueryBackupStorage",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "QueryImageStoreBackupStorage",
        &admin,
        json!({"conditions": eq("hostname", "10.0.0.9")}),
        |_, r| assert_eq!(r["inventories"][0]["sshPort"], 22),
    ));
    m.push(no(
        "QueryImageStoreBackupStorage",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    // ---- Offerings.
    m.push(ok(
        "CreateInstanceOffering",
        &admin,
        json!({"name": "big", "cpuNum": 4, "memorySize": 4294967296u64}),
        |h, r| {
            assert_eq!(r["inventory"]["cpuNum"], 4);
            assert_eq!(h.count("QueryInstanceOffering", eq("name", "big")), 1);
        },
    ));
    m.push(no(
        "CreateInstanceOffering",
        &admin,
        json!({"name": "x", "cpuNum": 0, "memorySize": 1}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateInstanceOffering",
        &admin,
        json!({"uuid": i.io, "description": "d"}),
        |_, r| assert_eq!(r["inventory"]["description"], "d"),
    ));
    m.push(no(
        "UpdateInstanceOffering",
        &admin,
        json!({"uuid": missing(), "description": "d"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeInstanceOfferingState",
        &admin,
        json!({"uuid": i.io, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeInstanceOfferingState",
        &tenant,
        json!({"uuid": i.io, "stateEvent": "disable"}),
        Code::PermissionDenied,
    ));
    {
        let io = i.io.clone();
        m.push(ok(
            "DeleteInstanceOffering",
            &admin,
            json!({"uuid": i.io}),
            move |h, _| assert_eq!(h.count("QueryInstanceOffering", eq("uuid", &io)), 0),
        ));
    }
    m.push(no(
        "DeleteInstanceOffering",
        &tenant,
        json!({"uuid": i.io}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "QueryInstanceOffering",
        &admin,
        json!({"conditions": eq("cpuNum", "1")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "small"),
    ));
    m.push(no(
        "QueryInstanceOffering",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "CreateDiskOffering",
        &admin,
        json!({"name": "big-disk", "diskSize": 10737418240u64}),
        |_, r| assert_eq!(r["inventory"]["diskSize"], 10737418240u64),
    ));
    m.push(no(
        "CreateDiskOffering",
        &admin,
        json!({"name": "d", "diskSize": 0}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateDiskOffering",
        &admin,
        json!({"uuid": i.dof, "name": "disk1"}),
        |_, r| assert_eq!(r["inventory"]["name"], "disk1"),
    ));
    m.push(no(
        "UpdateDiskOffering",
        &admin,
        json!({"uuid": missing(), "name": "disk1"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeDiskOfferingState",
        &admin,
        json!({"uuid": i.dof, "stateEvent": "disable"}),
        |h, r| {
            assert_eq!(r["inventory"]["state"], "Disabled");
            assert_eq!(h.count("QueryDiskOffering", eq("state", "Disabled")), 1);
        },
    ));
    m.push(no(
        "ChangeDiskOfferingState",
        &admin,
        json!({"uuid": i.dof, "stateEvent": "off"}),
        Code::InvalidArgument,
    ));
    {
        let d = i.dof.clone();
        m.push(ok(
            "DeleteDiskOffering",
            &admin,
            json!({"uuid": i.dof}),
            move |h, _| assert_eq!(h.count("QueryDiskOffering", eq("uuid", &d)), 0),
        ));
    }
    m.push(no(
        "DeleteDiskOffering",
        &tenant,
        json!({"uuid": i.dof}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "QueryDiskOffering",
        &admin,
        json!({"conditions": eq("name", "disk")}),
        |_, r| assert_eq!(r["inventories"][0]["diskSize"], 1073741824u64),
    ));
    m.push(no(
        "QueryDiskOffering",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    // ---- Images.
    m.push(ok(
        "AddImage",
        &admin,
        json!({"name": "img2", "url": "http://h/img2.qcow2", "format": "qcow2", "backupStorageUuids": [i.bs]}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "img2");
            assert_eq!(h.count("QueryImage", eq("name", "img2")), 1);
        },
    ));
    m.push(no(
        "AddImage",
        &admin,
        json!({"name": "x", "url": "ftp://h/x", "backupStorageUuids": [i.bs]}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "AddImage",
        &admin,
        json!({"name": "x", "url": "http://h/x.qcow2", "backupStorageUuids": [missing()]}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "UpdateImage",
        &admin,
        json!({"uuid": i.image, "platform": "Linux"}),
        |_, r| assert_eq!(r["inventory"]["platform"], "Linux"),
    ));
    m.push(no(
        "UpdateImage",
        &admin,
        json!({"uuid": missing(), "platform": "Linux"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeImageState",
        &admin,
        json!({"uuid": i.image, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeImageState",
        &admin,
        json!({"uuid": i.image, "stateEvent": "destroy"}),
        Code::InvalidArgument,
    ));
    {
        let img = i.image.clone();
        m.push(ok(
            "DeleteImage",
            &admin,
            json!({"uuid": i.image}),
            move |h, _| assert_eq!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
        ));
    }
    m.push(no(
        "DeleteImage",
        &tenant,
        json!({"uuid": i.image}),
        Code::PermissionDenied,
    ));
    {
        let img = i.deleted_image.clone();
        m.push(ok(
            "ExpungeImage",
            &admin,
            json!({"imageUuid": i.deleted_image}),
            move |h, _| assert_eq!(h.count("QueryImage", eq("uuid", &img)), 0),
        ));
    }
    m.push(no(
        "ExpungeImage",
        &admin,
        json!({"imageUuid": i.image}),
        Code::OperationFailure,
    ));
    {
        let img = i.deleted_image.clone();
        m.push(ok(
            "RecoverImage",
            &admin,
            json!({"imageUuid": i.deleted_image}),
            move |h, _| assert_ne!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
        ));
    }
    m.push(no(
        "RecoverImage",
        &admin,
        json!({"imageUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "QueryImage",
        &admin,
        json!({"conditions": eq("status", "Deleted")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "gone"),
    ));
    m.push(no("QueryImage", &admin, bad_query(), Code::InvalidArgument));

    // ---- L2 networks.
    m.push(ok(
        "CreateL2NoVlanNetwork",
        &admin,
        json!({"zoneUuid": i.zone, "name": "flat2", "physicalInterface": "eth1"}),
        |_, r| {
            assert_eq!(r["inventory"]["type"], "L2NoVlanNetwork");
            assert_eq!(r["inventory"]["physicalInterface"], "eth1");
        },
    ));
    m.push(no(
        "CreateL2NoVlanNetwork",
        &admin,
        json!({"zoneUuid": missing(), "name": "flat2", "physicalInterface": "eth1"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "CreateL2VlanNetwork",
        &admin,
        json!({"zoneUuid": i.zone, "name": "v200", "physicalInterface": "eth0", "vlan": 200}),
        |h, r| {
            assert_eq!(r["inventory"]["vlan"], 200);
            assert_eq!(h.count("QueryL2VlanNetwork", json!([])), 2);
        },
    ));
    m.push(no(
        "CreateL2VlanNetwork",
        &admin,
        json!({"zoneUuid": i.zone, "name": "v", "physicalInterface": "eth0", "vlan": 4095}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "CreateL2VxlanNetworkPool",
        &admin,
        json!({"zoneUuid": i.zone, "name": "pool2"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "pool2");
            assert_eq!(h.count("QueryL2VxlanNetworkPool", json!([])), 2);
        },
    ));
    m.push(no(
        "CreateL2VxlanNetworkPool",
        &tenant,
        json!({"zoneUuid": i.zone, "name": "pool2"}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "CreateVniRange",
        &admin,
        json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 100, "endVni": 200}),
        |h, r| {
            assert_eq!(r["inventory"]["startVni"], 100);
            assert_eq!(h.count("QueryVniRange", json!([])), 3);
        },
    ));
    m.push(no(
        "CreateVniRange",
        &admin,
        json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 15, "endVni": 25}),
        Code::InvalidArgument,
    ));
    {
        let r = i.spare_vni_range.clone();
        m.push(ok(
            "DeleteVniRange",
            &admin,
            json!({"uuid": i.spare_vni_range}),
            move |h, _| assert_eq!(h.count("QueryVniRange", eq("uuid", &r)), 0),
        ));
    }
    m.push(no(
        "DeleteVniRange",
        &tenant,
        json!({"uuid": i.spare_vni_range}),
        Code::PermissionDenied,
    ));
    {
        let pool = i.pool.clone();
        m.push(ok(
            "CreateL2VxlanNetwork",
            &admin,
            json!({"poolUuid": i.pool, "name": "vx2", "vni": 16}),
            move |_, r| {
                assert_eq!(r["inventory"]["vni"], 16);
                assert_eq!(r["inventory"]["poolUuid"], pool.as_str());
            },
        ));
    }
    m.push(no(
        "CreateL2VxlanNetwork",
        &admin,
        json!({"poolUuid": i.pool, "name": "vx2", "vni": 15}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateL2Network",
        &admin,
        json!({"uuid": i.vlan, "name": "v100"}),
        |h, _| assert_eq!(h.count("QueryL2Network", eq("name", "v100")), 1),
    ));
    m.push(no(
        "UpdateL2Network",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    {
        let c = i.cluster.clone();
        m.push(ok(
            "AttachL2NetworkToCluster",
            &admin,
            json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster}),
            move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c])),
        ));
    }
    m.push(no(
        "AttachL2NetworkToCluster",
        &admin,
        json!({"l2NetworkUuid": i.vlan, "clusterUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "DetachL2NetworkFromCluster",
        &admin,
        json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
        |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
    ));
    m.push(no(
        "DetachL2NetworkFromCluster",
        &tenant,
        json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
        Code::PermissionDenied,
    ));
    {
        let (l2, l3) = (i.l2.clone(), i.l3.clone());
        m.push(ok(
            "DeleteL2Network",
            &admin,
            json!({"uuid": i.l2}),
            move |h, _| {
                assert_eq!(h.count("QueryL2Network", eq("uuid", &l2)), 0);
                assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
            },
        ));
    }
    m.push(no(
        "DeleteL2Network",
        &tenant,
        json!({"uuid": i.l2}),
        Code::PermissionDenied,
    ));
    {
        let l2 = i.l2.clone();
        m.push(ok(
            "QueryL2Network",
            &admin,
            json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], l2.as_str()),
        ));
    }
    m.push(no(
        "QueryL2Network",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "QueryL2VlanNetwork",
        &admin,
        json!({"conditions": eq("vlan", "100")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "vlan"),
    ));
    m.push(no(
        "QueryL2VlanNetwork",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let vx = i.vxlan.clone();
        m.push(ok(
            "QueryL2VxlanNetwork",
            &admin,
            json!({"conditions": eq("vni", "15")}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], vx.as_str()),
        ));
    }
    m.push(no(
        "QueryL2VxlanNetwork",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let pool = i.pool.clone();
        m.push(ok(
            "QueryL2VxlanNetworkPool",
            &admin,
            json!({"conditions": []}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], pool.as_str()),
        ));
    }
    m.push(no(
        "QueryL2VxlanNetworkPool",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let r = i.vni_range.clone();
        m.push(ok(
            "QueryVniRange",
            &admin,
            json!({"conditions": eq("startVni", "10")}),
            move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str()),
        ));
    }
    m.push(no(
        "QueryVniRange",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    // ---- L3 networks and IP ranges.
    {
        let vlan = i.vlan.clone();
        m.push(ok(
            "CreateL3Network",
            &admin,
            json!({"l2NetworkUuid": i.vlan, "name": "l3b"}),
            move |h, r| {
                assert_eq!(r["inventory"]["l2NetworkUuid"], vlan.as_str());
                assert_eq!(h.count("QueryL3Network", eq("l2NetworkUuid", &vlan)), 2);
            },
        ));
    }
    m.push(no(
        "CreateL3Network",
        &admin,
        json!({"l2NetworkUuid": missing(), "name": "l3b"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "UpdateL3Network",
        &admin,
        json!({"uuid": i.l3, "dnsDomain": "zstack.org"}),
        |_, r| assert_eq!(r["inventory"]["dnsDomain"], "zstack.org"),
    ));
    m.push(no(
        "UpdateL3Network",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "ChangeL3NetworkState",
        &admin,
        json!({"uuid": i.l3, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.push(no(
        "ChangeL3NetworkState",
        &admin,
        json!({"uuid": i.l3, "stateEvent": "pause"}),
        Code::InvalidArgument,
    ));
    {
        let l3 = i.l3.clone();
        m.push(ok(
            "DeleteL3Network",
            &admin,
            json!({"uuid": i.l3}),
            move |h, _| {
                assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
                assert_eq!(h.count("QueryIpRange", eq("l3NetworkUuid", &l3)), 0);
                assert_eq!(h.count("QuerySystemTag", eq("resourceUuid", &l3)), 0);
            },
        ));
    }
    m.push(no(
        "DeleteL3Network",
        &stranger,
        json!({"uuid": i.l3}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "AddIpRange",
        &admin,
        json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.100", "endIp": "192.168.1.110", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
        |h, r| {
            assert_eq!(r["inventory"]["startIp"], "192.168.1.100");
            assert_eq!(h.count("QueryIpRange", json!([])), 2);
        },
    ));
    m.push(no(
        "AddIpRange",
        &admin,
        json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "AddIpRangeByNetworkCidr",
        &admin,
        json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/24"}),
        |_, r| assert_eq!(r["inventory"]["networkCidr"], "10.10.0.0/24"),
    ));
    m.push(no(
        "AddIpRangeByNetworkCidr",
        &admin,
        json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/33"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "UpdateIpRange",
        &admin,
        json!({"uuid": i.ip_range, "name": "range-1"}),
        |_, r| assert_eq!(r["inventory"]["name"], "range-1"),
    ));
    m.push(no(
        "UpdateIpRange",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    {
        let r = i.ip_range.clone();
        m.push(ok(
            "DeleteIpRange",
            &admin,
            json!({"uuid": i.ip_range}),
            move |h, _| assert_eq!(h.count("QueryIpRange", eq("uuid", &r)), 0),
        ));
    }
    m.push(no(
        "DeleteIpRange",
        &stranger,
        json!({"uuid": i.ip_range}),
        Code::PermissionDenied,
    ));
    m.push(ok(
        "AddDnsToL3Network",
        &admin,
        json!({"l3NetworkUuid": i.l3, "dns": "1.1.1.1"}),
        |_, r| assert_eq!(r["inventory"]["dns"], json!(["8.8.8.8", "1.1.1.1"])),
    ));
    m.push(no(
        "AddDnsToL3Network",
        &admin,
        json!({"l3NetworkUuid": i.l3, "dns": "not-an-ip"}),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "RemoveDnsFromL3Network",
        &admin,
        json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"}),
        |_, r| assert_eq!(r["inventory"]["dns"], json!([])),
    ));
    m.push(no(
        "RemoveDnsFromL3Network",
        &admin,
        json!({"l3NetworkUuid": missing(), "dns": "8.8.8.8"}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "QueryL3Network",
        &admin,
        json!({"conditions": eq("ipRanges.startIp", "192.168.1.10")}),
        |_, r| assert_eq!(r["inventories"][0]["dns"], json!(["8.8.8.8"])),
    ));
    m.push(no(
        "QueryL3Network",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let r = i.ip_range.clone();
        m.push(ok(
            "QueryIpRange",
            &admin,
            json!({"conditions": eq("networkCidr", "192.168.1.0/24")}),
            move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str()),
        ));
    }
    m.push(no(
        "QueryIpRange",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(ok(
        "GetFreeIp",
        &admin,
        json!({"l3NetworkUuid": i.l3, "limit": 2}),
        |_, r| {
            assert_eq!(r["inventories"][0]["ip"], "192.168.1.10");
            assert_eq!(r["inventories"][1]["ip"], "192.168.1.11");
        },
    ));
    m.push(no(
        "GetFreeIp",
        &admin,
        json!({"l3NetworkUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(ok(
        "CheckIpAvailability",
        &admin,
        json!({"l3NetworkUuid": i.l3, "ip": "192.168.1.12"}),
        |_, r| assert_eq!(r["available"], true),
    ));
    m.push(no(
        "CheckIpAvailability",
        &admin,
        json!({"l3NetworkUuid": i.l3, "ip": "300.1.1.1"}),
        Code::InvalidArgument,
    ));

    // ---- Tags.
    {
        let l3v = i.l3v.clone();
        m.push(ok(
            "CreateSystemTag",
            &admin,
            json!({"resourceType": "L3NetworkVO", "resourceUuid": i.l3v, "tag": "networkServices::Flat"}),
            move |h, r| {
                assert_eq!(r["inventory"]["resourceUuid"], l3v.as_str());
                assert_eq!(
                    h.count(
                        "QueryL3Network",
                        json!([{"name": "__systemTag__", "op": "=", "value": "networkServices::Flat"}])
                    ),
                    2
                );
            },
        ));
    }
    m.push(no(
        "CreateSystemTag",
        &admin,
        json!({"resourceType": "L3NetworkVO", "resourceUuid": missing(), "tag": "networkServices::Flat"}),
        Code::ResourceNotFound,
    ));
    {
        let zone = i.zone.clone();
        m.push(ok(
            "CreateUserTag",
            &admin,
            json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}),
            move |h, _| {
                let z = h.query(
                    "QueryZone",
                    json!([{"name": "__userTag__", "op": "=", "value": "gold"}]),
                );
                assert_eq!(z[0]["uuid"], zone.as_str());
            },
        ));
    }
    m.push(no(
        "CreateUserTag",
        &tenant,
        json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}),
        Code::PermissionDenied,
    ));
    {
        let t = i.user_tag.clone();
        m.push(ok(
            "DeleteTag",
            &admin,
            json!({"uuid": i.user_tag}),
            move |h, _| assert_eq!(h.count("QueryUserTag", eq("uuid", &t)), 0),
        ));
    }
    m.push(no(
        "DeleteTag",
        &stranger,
        json!({"uuid": i.user_tag}),
        Code::PermissionDenied,
    ));
    {
        let t = i.sys_tag.clone();
        m.push(ok(
            "QuerySystemTag",
            &admin,
            json!({"conditions": eq("resourceUuid", &i.l3)}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], t.as_str()),
        ));
    }
    m.push(no(
        "QuerySystemTag",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    {
        let c = i.cluster.clone();
        m.push(ok(
            "QueryUserTag",
            &admin,
            json!({"conditions": [{"name": "tag", "op": "like", "value": "rack%"}]}),
            move |_, r| assert_eq!(r["inventories"][0]["resourceUuid"], c.as_str()),
        ));
    }
    m.push(no(
        "QueryUserTag",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));

    m
}

/// Calls in `IMPLEMENTED` whose implementation is still in flux, with the reason; the lead
/// removes entries once their cases are in the matrix.
const PENDING: &[(&str, &str)] = &[];

fn describe(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

#[test]
fn every_implemented_call_has_a_success_and_a_refusal() {
    let (world, ids) = base();
    let cases = matrix(&ids);
    let mut failures = Vec::new();
    for case in &cases {
        if !crate::plan::is_implemented(case.call) {
            failures.push(format!("{}: in the matrix but not implemented", case.call));
        }
        let mut h = world.fork();
        let before = h.t.tables.clone();
        let got = h.send(&case.who, case.call, case.body.clone());
        let label = format!("{} {} as {:?}", case.call, case.body, case.who);
        match (&case.expect, got) {
            (Expect::Ok(check), Ok(reply)) => {
                if let Err(e) = std::panic::catch_unwind(AssertUnwindSafe(|| check(&mut h, &reply)))
                {
                    failures.push(format!("{label}: check failed: {}", describe(&*e)));
                }
            }
            (Expect::Ok(_), Err(e)) => failures.push(format!("{label}: refused {e}")),
            (Expect::Refused(code), Ok(reply)) => failures.push(format!(
                "{label}: expected {}, succeeded with {reply:?}",
                code.as_str()
            )),
            (Expect::Refused(code), Err(e)) => {
                if e.code != *code {
                    failures.push(format!(
                        "{label}: expected {}, got {} ({})",
                        code.as_str(),
                        e.code.as_str(),
                        e.details
                    ));
                }
                if h.t.tables != before {
                    failures.push(format!("{label}: refused but changed state"));
                }
            }
        }
    }
    for name in crate::registry::calls().map(|c| c.name) {
        if PENDING.iter().any(|(p, _)| *p == name) {
            continue;
        }
        let has = |refusal: bool| {
            cases
                .iter()
                .any(|c| c.call == name && matches!(c.expect, Expect::Refused(_)) == refusal)
        };
        if !has(false) {
            failures.push(format!("{name}: no success case"));
        }
        if !has(true) {
            failures.push(format!("{name}: no refusal case"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) in the call matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
