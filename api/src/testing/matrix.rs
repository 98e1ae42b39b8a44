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

use super::ctx;
pub(crate) use super::harness::send;
pub(crate) use super::harness::stamp_uuid;
pub(crate) use super::harness::Who;
use super::MemTxn;
use crate::families::identity;
use crate::plan::Plan;
use crate::plan::Stamp;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;

/// A state and its step counter.
pub(crate) struct Harness {
    pub(crate) t: MemTxn,
    pub(crate) n: u32,
}

impl Harness {
    /// An empty state at step 0.
    pub(crate) fn new() -> Self {
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

    pub(crate) fn send(
        &mut self,
        who: &Who,
        name: &str,
        body: Value,
    ) -> Result<Map<String, Value>, Refusal> {
        self.n += 1;
        send(&mut self.t, self.n, who, name, body)
    }

    pub(crate) fn apply(&mut self, command: Command) -> crate::Response {
        self.n += 1;
        crate::apply(&mut self.t, &ctx(u64::from(self.n)), command).unwrap()
    }

    /// An async call through the durable job path (`Submit`, then the executor's `Run`), as
    /// the node runs it: the job's result and the audit record are written too.
    pub(crate) fn through_job(&mut self, name: &str, body: Value) -> String {
        self.n += 1;
        let stamp = Stamp {
            now_ms: 1_000 * u64::from(self.n),
            new_uuid: stamp_uuid(self.n),
            salt: [0; 16],
            key: crate::testing::key(),
        };
        let Plan::Propose { call, command } = super::harness::admin_plan(name, body, &stamp) else {
            panic!("{name} is not a proposal")
        };
        let job_uuid = stamp.new_uuid.clone();
        self.apply(
            crate::job::JobOp::Submit(crate::job::Submission::command(
                job_uuid.clone(),
                call.name.clone(),
                call.reply_class.clone(),
                "",
                *command,
            ))
            .command(Caller::admin()),
        );
        let resp = self.apply(
            crate::job::JobOp::Step {
                uuid: job_uuid.clone(),
                step: 0,
                undo: false,
            }
            .command(Caller::admin()),
        );
        let crate::Response::Job(crate::job::JobResult::Job(job)) = resp else {
            panic!("{name}: {resp:?}")
        };
        assert_eq!(job.success, Some(true), "{name}: {:?}", job.result);
        job_uuid
    }

    /// The refusal of a call that must be refused without changing anything.
    pub(crate) fn refused(&mut self, who: &Who, name: &str, body: Value) -> Refusal {
        let before = self.t.tables.clone();
        let e = self.send(who, name, body).expect_err(name);
        if self.t.tables != before {
            let mut changed = Vec::new();
            for (table, rows) in &self.t.tables {
                let old = before.get(table);
                for (k, v) in rows {
                    if old.and_then(|o| o.get(k)) != Some(v) {
                        changed.push(format!("{table}/{} written", String::from_utf8_lossy(k)));
                    }
                }
                for k in old.into_iter().flat_map(|o| o.keys()) {
                    if !rows.contains_key(k) {
                        changed.push(format!("{table}/{} deleted", String::from_utf8_lossy(k)));
                    }
                }
            }
            panic!("{name} changed state while refused ({e}): {changed:#?}");
        }
        e
    }

    /// The code of an admin call that must be refused without changing anything.
    pub(crate) fn admin_refused(&mut self, name: &str, body: Value) -> Code {
        self.refused(&Who::As(Caller::admin()), name, body).code
    }

    pub(crate) fn ok(&mut self, who: &Who, name: &str, body: Value) -> Map<String, Value> {
        self.send(who, name, body)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The `inventory.uuid` of a call that must succeed.
    pub(crate) fn uuid_of(&mut self, who: &Who, name: &str, body: Value) -> String {
        self.ok(who, name, body)["inventory"]["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub(crate) fn admin(&mut self, name: &str, body: Value) -> Map<String, Value> {
        self.ok(&Who::As(Caller::admin()), name, body)
    }

    pub(crate) fn created(&mut self, name: &str, body: Value) -> String {
        self.admin(name, body)["inventory"]["uuid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} returned no inventory uuid"))
            .to_string()
    }

    /// Inventories of an admin query with these conditions.
    pub(crate) fn query(&mut self, name: &str, conds: Value) -> Vec<Value> {
        match self
            .admin(name, json!({ "conditions": conds }))
            .remove("inventories")
        {
            Some(Value::Array(v)) => v,
            other => panic!("{name}: no inventories in {other:?}"),
        }
    }

    pub(crate) fn count(&mut self, name: &str, conds: Value) -> usize {
        self.query(name, conds).len()
    }

    pub(crate) fn one(&mut self, name: &str, field: &str, value: &str) -> Value {
        let mut v = self.query(name, json!([{"name": field, "op": "=", "value": value}]));
        assert_eq!(v.len(), 1, "{name} {field}={value}: {v:?}");
        v.remove(0)
    }

    /// `count` of an admin query `name` with the one condition `field = value`.
    pub(crate) fn count_eq(&mut self, name: &str, field: &str, value: &str) -> usize {
        self.count(name, eq(field, value))
    }

    // The base world's parts, also built alone by other tests.

    /// Local primary storage `local` (`/zstack_ps`) in `zone`.
    pub(crate) fn local_ps(&mut self, zone: &str) -> String {
        self.created(
            "AddLocalPrimaryStorage",
            json!({"zoneUuid": zone, "name": "local", "url": "/zstack_ps"}),
        )
    }

    /// NFS primary storage `nfs` (`10.0.0.5:/nfs`) in `zone`.
    pub(crate) fn nfs_ps(&mut self, zone: &str) -> String {
        self.created(
            "AddNfsPrimaryStorage",
            json!({"zoneUuid": zone, "name": "nfs", "url": "10.0.0.5:/nfs"}),
        )
    }

    /// ImageStore backup storage `bs` on `10.0.0.9`.
    pub(crate) fn image_store(&mut self) -> String {
        self.created(
            "AddImageStoreBackupStorage",
            json!({"name": "bs", "url": "/zstack_bs", "hostname": "10.0.0.9", "username": "root", "password": "p", "sshPort": 22}),
        )
    }

    /// Instance offering `small`: 1 CPU, 1 GiB.
    pub(crate) fn small_offering(&mut self) -> String {
        self.created(
            "CreateInstanceOffering",
            json!({"name": "small", "cpuNum": 1, "memorySize": 1073741824u64}),
        )
    }

    /// Image `ttylinux` (qcow2) on backup storage `bs`.
    pub(crate) fn ttylinux(&mut self, bs: &str) -> String {
        self.created(
            "AddImage",
            json!({"name": "ttylinux", "url": "http://h/ttylinux.qcow2", "format": "qcow2", "backupStorageUuids": [bs]}),
        )
    }

    /// NoVlan L2 `flat` on `eth0` in `zone`.
    pub(crate) fn flat_l2(&mut self, zone: &str) -> String {
        self.created(
            "CreateL2NoVlanNetwork",
            json!({"zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"}),
        )
    }

    /// VXLAN pool `pool` in `zone`.
    pub(crate) fn vxlan_pool(&mut self, zone: &str) -> String {
        self.created(
            "CreateL2VxlanNetworkPool",
            json!({"zoneUuid": zone, "name": "pool"}),
        )
    }

    /// VXLAN `vx` (VNI 15) in `pool`.
    pub(crate) fn vxlan(&mut self, pool: &str) -> String {
        self.created(
            "CreateL2VxlanNetwork",
            json!({"poolUuid": pool, "name": "vx", "vni": 15}),
        )
    }

    /// Private IPv4 L3 `flat-l3` on `l2`.
    pub(crate) fn flat_l3(&mut self, l2: &str) -> String {
        self.created(
            "CreateL3Network",
            json!({"l2NetworkUuid": l2, "name": "flat-l3", "category": "Private", "ipVersion": 4}),
        )
    }

    /// IP range `r1` (192.168.1.10-20, gateway .1) of `l3`.
    pub(crate) fn ip_range_r1(&mut self, l3: &str) -> String {
        self.created(
            "AddIpRange",
            json!({"l3NetworkUuid": l3, "name": "r1", "startIp": "192.168.1.10", "endIp": "192.168.1.20", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
        )
    }

    /// System tag `networkServices::Flat` on L3 `l3`.
    pub(crate) fn flat_tag(&mut self, l3: &str) -> String {
        self.created(
            "CreateSystemTag",
            json!({"resourceType": "L3NetworkVO", "resourceUuid": l3, "tag": "networkServices::Flat"}),
        )
    }

    /// User tag `rack-1` on cluster `cluster`.
    pub(crate) fn rack_tag(&mut self, cluster: &str) -> String {
        self.created(
            "CreateUserTag",
            json!({"resourceType": "ClusterVO", "resourceUuid": cluster, "tag": "rack-1"}),
        )
    }

    /// Asserts that an admin call is refused with `code`, changing nothing.
    pub(crate) fn refuses(&mut self, name: &str, body: Value, code: Code) {
        self.refuses_as(&Who::As(Caller::admin()), name, body, code);
    }

    /// Asserts that a call sent as `who` is refused with `code`, changing nothing.
    pub(crate) fn refuses_as(&mut self, who: &Who, name: &str, body: Value, code: Code) {
        let label = format!("{name} {body}");
        assert_eq!(self.refused(who, name, body).code, code, "{label}");
    }

    /// A `ChangeXState` call (`stateEvent` `event` on `uuid`) as the admin.
    pub(crate) fn change_state(
        &mut self,
        call: &str,
        uuid: &str,
        event: &str,
    ) -> Map<String, Value> {
        self.admin(call, json!({"uuid": uuid, "stateEvent": event}))
    }

    /// The common small world: zone `z` and KVM cluster `c` in it; returns their uuids.
    pub(crate) fn zone_and_cluster(&mut self) -> (String, String) {
        let zone = self.created("CreateZone", json!({"name": "z"}));
        let cluster = self.created(
            "CreateCluster",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        );
        (zone, cluster)
    }

    pub(crate) fn valid(&mut self, session: &str) -> bool {
        self.send(
            &Who::As(Caller::admin()),
            "ValidateSession",
            json!({ "sessionUuid": session }),
        )
        .unwrap()["validSession"]
            == true
    }
}

pub(crate) const TENANT_PW: &str = "tenant-password-sha512";
pub(crate) const ALICE_PW: &str = "alice-password-sha512";

/// What the base world holds.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub(crate) mn: String,
    pub(crate) admin_session: String,
    pub(crate) tenant: String,
    pub(crate) tenant_session: String,
    pub(crate) alice: String,
    pub(crate) alice_session: String,
    pub(crate) zone: String,
    pub(crate) zone2: String,
    pub(crate) zone2_job: String,
    pub(crate) cluster: String,
    pub(crate) host: String,
    pub(crate) host_in_maintenance: String,
    pub(crate) local: String,
    pub(crate) nfs: String,
    pub(crate) smp: String,
    pub(crate) bs: String,
    pub(crate) io: String,
    pub(crate) dof: String,
    pub(crate) image: String,
    pub(crate) deleted_image: String,
    pub(crate) l2: String,
    pub(crate) vlan: String,
    pub(crate) pool: String,
    pub(crate) vni_range: String,
    pub(crate) spare_vni_range: String,
    pub(crate) vxlan: String,
    pub(crate) l3: String,
    pub(crate) l3v: String,
    pub(crate) ip_range: String,
    pub(crate) sys_tag: String,
    pub(crate) user_tag: String,
}

/// The base world, built through the wire as a client (and the node's duties) would.
pub(crate) fn base() -> (Harness, Ids) {
    let mut h = Harness::new();
    // The leader's duties: the admin bootstrap and the management-node registry.
    let password =
        identity::hash_password(identity::DEFAULT_ADMIN_PASSWORD_SHA512, &[7; 16]).expect("hash");
    h.apply(identity::IdentityOp::EnsureAdmin { password }.command(Caller::admin()));
    let mn = "0123456789abcdef0123456789abcdef".to_string();
    h.apply(
        crate::families::management_node::ManagementNodeOp::Upsert(
            crate::families::management_node::ManagementNode {
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
            },
        )
        .command(Caller::admin()),
    );
    let nobody = Who::Session("0".repeat(32));
    let admin_session = h.uuid_of(
        &nobody,
        "LogInByAccount",
        json!({"accountName": "admin", "password": identity::DEFAULT_ADMIN_PASSWORD_SHA512}),
    );
    let s_admin = Who::Session(admin_session.clone());
    let tenant = h.uuid_of(
        &s_admin,
        "CreateAccount",
        json!({"name": "tenant", "password": TENANT_PW}),
    );
    let tenant_session = h.uuid_of(
        &nobody,
        "LogInByAccount",
        json!({"accountName": "tenant", "password": TENANT_PW}),
    );
    let alice = h.uuid_of(
        &Who::Session(tenant_session.clone()),
        "CreateUser",
        json!({"name": "alice", "password": ALICE_PW}),
    );
    let alice_session = h.uuid_of(
        &nobody,
        "LogInByUser",
        json!({"accountName": "tenant", "userName": "alice", "password": ALICE_PW}),
    );
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
    let local = h.local_ps(&zone);
    let nfs = h.nfs_ps(&zone);
    let smp = h.created(
        "AddSharedMountPointPrimaryStorage",
        json!({"zoneUuid": zone, "name": "smp", "url": "/mnt/smp"}),
    );
    h.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": local, "clusterUuid": cluster}),
    );
    let bs = h.image_store();
    h.admin(
        "AttachBackupStorageToZone",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
    );
    let io = h.small_offering();
    let dof = h.created(
        "CreateDiskOffering",
        json!({"name": "disk", "diskSize": 1073741824u64}),
    );
    let image = h.ttylinux(&bs);
    let deleted_image = h.created(
        "AddImage",
        json!({"name": "gone", "url": "http://h/gone.qcow2", "format": "qcow2", "backupStorageUuids": [bs]}),
    );
    h.admin("DeleteImage", json!({"uuid": deleted_image}));
    let l2 = h.flat_l2(&zone);
    h.admin(
        "AttachL2NetworkToCluster",
        json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
    );
    let vlan = h.created(
        "CreateL2VlanNetwork",
        json!({"zoneUuid": zone, "name": "vlan", "physicalInterface": "eth0", "vlan": 100}),
    );
    let pool = h.vxlan_pool(&zone);
    let vni_range = h.created(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "r", "startVni": 10, "endVni": 20}),
    );
    let spare_vni_range = h.created(
        "CreateVniRange",
        json!({"l2NetworkUuid": pool, "name": "spare", "startVni": 50, "endVni": 60}),
    );
    let vxlan = h.vxlan(&pool);
    let l3 = h.flat_l3(&l2);
    let l3v = h.created(
        "CreateL3Network",
        json!({"l2NetworkUuid": vlan, "name": "vlan-l3"}),
    );
    let ip_range = h.ip_range_r1(&l3);
    h.admin(
        "AddDnsToL3Network",
        json!({"l3NetworkUuid": l3, "dns": "8.8.8.8"}),
    );
    let sys_tag = h.flat_tag(&l3);
    let user_tag = h.rack_tag(&cluster);
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

pub(crate) type Check = Box<dyn Fn(&mut Harness, &Map<String, Value>)>;

pub(crate) enum Expect {
    Ok(Check),
    Refused(Code),
}

pub(crate) struct Case {
    pub(crate) call: &'static str,
    pub(crate) who: Who,
    pub(crate) body: Value,
    pub(crate) expect: Expect,
    /// Requests sent first, each as its sender, each of which must succeed: what the case
    /// acts on when the base world does not hold it (see [`Case::given`]).
    pub(crate) given: Vec<(Who, &'static str, Value)>,
}

impl Case {
    /// The same case, run after `call` was sent as `who` (and succeeded), so that a family
    /// whose kinds the base world does not hold keeps its fixtures beside its cases.
    pub(crate) fn given(mut self, who: &Who, call: &'static str, body: Value) -> Case {
        self.given.push((who.clone(), call, body));
        self
    }
}

pub(crate) fn ok(
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
        given: Vec::new(),
    }
}

pub(crate) fn no(call: &'static str, who: &Who, body: Value, code: Code) -> Case {
    Case {
        call,
        who: who.clone(),
        body,
        expect: Expect::Refused(code),
        given: Vec::new(),
    }
}

/// Cases, one a row: `call, who, body => code;` is [`no`]`(call, &who, body, Code::code)`,
/// `call, who, body => ok(check);` is [`ok`]`(call, &who, body, check)`.
macro_rules! rows {
    (@acc [$($out:expr,)*]) => { vec![$($out,)*] };
    (@acc [$($out:expr,)*] $call:literal, $who:ident, $body:expr => ok($check:expr); $($rest:tt)*) => {
        $crate::testing::matrix::rows!(@acc [$($out,)* $crate::testing::matrix::ok(
            $call,
            &$who,
            $body,
            $check,
        ),] $($rest)*)
    };
    (@acc [$($out:expr,)*] $call:literal, $who:ident, $body:expr => $code:ident; $($rest:tt)*) => {
        $crate::testing::matrix::rows!(@acc [$($out,)* $crate::testing::matrix::no(
            $call,
            &$who,
            $body,
            $crate::wire::errors::Code::$code,
        ),] $($rest)*)
    };
    ($($rows:tt)*) => { $crate::testing::matrix::rows!(@acc [] $($rows)*) };
}
pub(crate) use rows;

/// A success check: the reply's `inventory[field]` is `want`.
pub(crate) fn inv(
    field: &'static str,
    want: impl Into<Value>,
) -> impl Fn(&mut Harness, &Map<String, Value>) + 'static {
    let want = want.into();
    move |_, r| assert_eq!(r["inventory"][field], want)
}

/// A success check: the reply's `inventories[0][field]` is `want`.
pub(crate) fn first(
    field: &'static str,
    want: impl Into<Value>,
) -> impl Fn(&mut Harness, &Map<String, Value>) + 'static {
    let want = want.into();
    move |_, r| assert_eq!(r["inventories"][0][field], want)
}

/// A success check: query `name` finds no `uuid` any more.
pub(crate) fn gone(
    name: &'static str,
    uuid: &str,
) -> impl Fn(&mut Harness, &Map<String, Value>) + 'static {
    let uuid = uuid.to_string();
    move |h, _| assert_eq!(h.count(name, eq("uuid", &uuid)), 0)
}

/// A success check: query `name` finds `uuid` once, its `field` being `want`.
pub(crate) fn found(
    name: &'static str,
    uuid: &str,
    field: &'static str,
    want: impl Into<Value>,
) -> impl Fn(&mut Harness, &Map<String, Value>) + 'static {
    let (uuid, want) = (uuid.to_string(), want.into());
    move |h, _| assert_eq!(h.one(name, "uuid", &uuid)[field], want)
}

/// A syntactically bad query condition (unknown operator).
pub(crate) fn bad_query() -> Value {
    json!({"conditions": [{"name": "uuid", "op": "~=", "value": "x"}]})
}

pub(crate) fn eq(field: &str, value: &str) -> Value {
    json!([{"name": field, "op": "=", "value": value}])
}

/// A uuid nothing in the base world has.
pub(crate) fn missing() -> String {
    "deadbeefdeadbeefdeadbeefdeadbeef".to_string()
}

/// Who the cases send as: the admin, a tenant account, its user alice, an account that does
/// not exist, and an unknown session.
pub(crate) struct Parties {
    pub(crate) admin: Who,
    pub(crate) tenant: Who,
    pub(crate) alice: Who,
    pub(crate) stranger: Who,
    pub(crate) nobody: Who,
}

impl Parties {
    pub(crate) fn of(ids: &Ids) -> Parties {
        Parties {
            admin: Who::As(Caller::admin()),
            tenant: Who::Session(ids.tenant_session.clone()),
            alice: Who::Session(ids.alice_session.clone()),
            stranger: Who::As(Caller {
                account_uuid: "5".repeat(32),
                user_uuid: "5".repeat(32),
                admin: false,
            }),
            nobody: Who::Session("0".repeat(32)),
        }
    }
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
    let cases: Vec<Case> = crate::registry::FAMILIES
        .iter()
        .flat_map(|f| (f.cases)(&ids))
        .collect();
    let mut failures = Vec::new();
    for case in &cases {
        if !crate::plan::is_implemented(case.call) {
            failures.push(format!("{}: in the matrix but not implemented", case.call));
        }
        let mut h = world.fork();
        let label = format!("{} {} as {:?}", case.call, case.body, case.who);
        let given = case.given.iter().try_for_each(|(who, call, body)| {
            match h.send(who, call, body.clone()) {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{label}: given {call} {body} refused {e}")),
            }
        });
        if let Err(e) = given {
            failures.push(e);
            continue;
        }
        let before = h.t.tables.clone();
        let got = h.send(&case.who, case.call, case.body.clone());
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

/// REST `schema` (issue 17): every object in every success reply of the matrix (all calls,
/// their real replies with nested inventories) has a class declared by its family, so the
/// SDK types every element; a call whose reply holds an object of undeclared class fails here
/// naming the call and the path.
#[test]
fn every_success_reply_declares_the_class_of_each_object() {
    let (world, ids) = base();
    let cases: Vec<Case> = crate::registry::FAMILIES
        .iter()
        .flat_map(|f| (f.cases)(&ids))
        .collect();
    let mut failures = std::collections::BTreeSet::new();
    for case in cases.iter().filter(|c| matches!(c.expect, Expect::Ok(_))) {
        let mut h = world.fork();
        if case
            .given
            .iter()
            .any(|(who, call, body)| h.send(who, call, body.clone()).is_err())
        {
            continue;
        }
        let Ok(mut reply) = h.send(&case.who, case.call, case.body.clone()) else {
            continue;
        };
        reply.insert("success".into(), Value::Bool(true));
        let spec = crate::catalogue::catalogue()
            .by_name(case.call)
            .expect("an implemented call is in the catalogue");
        let route = crate::rest::route_of(case.call).expect("an implemented call is routed");
        let rest = crate::rest::reply(route, spec, &Value::Object(reply), true);
        let Some(body) = rest.body.as_object() else {
            continue;
        };
        let mut fields = body.clone();
        fields.remove("schema");
        let built = crate::rest::schema::build(&fields, crate::registry::replies(case.call));
        for p in built.undeclared {
            failures.insert(format!("{}: no class declared for {p}", case.call));
        }
    }
    assert!(
        failures.is_empty(),
        "{} reply object(s) of undeclared class:\n{}",
        failures.len(),
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
}
