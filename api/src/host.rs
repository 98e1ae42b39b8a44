//! KVM hosts (spec 03 §4): physical servers of a KVM cluster, reached over SSH.
//!
//! Until the host agent exists (the next issue), "connecting" a host means the node that
//! received the call reached the host's SSH port and read an SSH identification line
//! ([`probe_target`] tells it where to look); only then is the command proposed, so a host
//! that cannot be reached never leaves a record behind (spec 03 §12.1 step 12). Capacity
//! fields stay 0 until the agent reports the host's facts.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::staged::Staged;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::Response;
use crate::StateTxn;

/// The host table.
pub const TABLE: &str = "host";
/// The only hypervisor this build manages.
pub const KVM: &str = "KVM";
/// SSH port when the call names none.
pub const DEFAULT_SSH_PORT: i64 = 22;
/// Longest username/password (`@APIParam(maxLength = 255)`).
pub const MAX_CREDENTIAL: usize = 255;

/// Admin-driven state (spec 03 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostState {
    /// Accepts new VMs.
    Enabled,
    /// Accepts no new VMs; running ones keep running.
    Disabled,
    /// Entering maintenance (VMs are being moved off).
    PreMaintenance,
    /// In maintenance.
    Maintenance,
}

/// Connection-driven status (spec 03 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostStatus {
    /// Being connected.
    Connecting,
    /// Reachable.
    Connected,
    /// Not reachable.
    Disconnected,
}

/// A KVM host record. The SSH password is kept for the agent deployment and never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Zone of its cluster.
    pub zone_uuid: String,
    /// Its cluster.
    pub cluster_uuid: String,
    /// IPv4 address or host name, unique across hosts.
    pub management_ip: String,
    /// Admin-driven state.
    pub state: HostState,
    /// Connection status.
    pub status: HostStatus,
    /// vCPUs (threads × CPU over-provisioning ratio); 0 until the agent reports facts.
    pub total_cpu_capacity: u64,
    /// vCPUs not allocated; 0 until the agent reports facts.
    pub available_cpu_capacity: u64,
    /// CPU sockets; 0 until the agent reports facts.
    pub cpu_sockets: u64,
    /// Bytes; 0 until the agent reports facts.
    pub total_memory_capacity: u64,
    /// Bytes; 0 until the agent reports facts.
    pub available_memory_capacity: u64,
    /// CPU threads; 0 until the agent reports facts.
    pub cpu_num: u64,
    /// SSH user (root or a sudoer).
    pub username: String,
    /// SSH password (`@APINoSee`: kept out of every inventory).
    pub password: String,
    /// SSH port.
    pub ssh_port: u16,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// OS distribution, once the agent reported it.
    #[serde(default)]
    pub os_distribution: Option<String>,
    /// OS release, once reported.
    #[serde(default)]
    pub os_release: Option<String>,
    /// OS version, once reported.
    #[serde(default)]
    pub os_version: Option<String>,
    /// CPU architecture, once reported.
    #[serde(default)]
    pub architecture: Option<String>,
}

pub use crate::plan::HostEndpoint;

impl Host {
    /// Where this host is reached.
    pub fn endpoint(&self) -> HostEndpoint {
        HostEndpoint {
            management_ip: self.management_ip.clone(),
            ssh_port: self.ssh_port,
            username: self.username.clone(),
        }
    }
}

impl Resource for Host {
    const KIND: &'static str = "Host";
    const TABLE: &'static str = TABLE;
    // `KVMHostInventory`: subclass fields first, then `HostInventory` (spec 06 §1.3, §6). The
    // os* and architecture fields arrive with the agent's facts; absent until then.
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("username", |r| json!(r.username)),
        Field::new("sshPort", |r| json!(r.ssh_port)),
        Field::maybe("osDistribution", |r| {
            r.os_distribution.as_ref().map(|x| json!(x))
        }),
        Field::maybe("osRelease", |r| r.os_release.as_ref().map(|x| json!(x))),
        Field::maybe("osVersion", |r| r.os_version.as_ref().map(|x| json!(x))),
        Field::new("zoneUuid", |r| json!(r.zone_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("clusterUuid", |r| json!(r.cluster_uuid)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("managementIp", |r| json!(r.management_ip)),
        Field::new("hypervisorType", |_| json!(KVM)),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("totalCpuCapacity", |r| json!(r.total_cpu_capacity)),
        Field::new("availableCpuCapacity", |r| json!(r.available_cpu_capacity)),
        Field::new("cpuSockets", |r| json!(r.cpu_sockets)),
        Field::new("totalMemoryCapacity", |r| json!(r.total_memory_capacity)),
        Field::new("availableMemoryCapacity", |r| {
            json!(r.available_memory_capacity)
        }),
        Field::new("cpuNum", |r| json!(r.cpu_num)),
        Field::maybe("architecture", |r| {
            r.architecture.as_ref().map(|x| json!(x))
        }),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] =
        &["name", "state", "zoneUuid", "clusterUuid", "managementIp"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// API events of `ChangeHostState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
    /// → PreMaintenance → Maintenance.
    Maintain,
}

/// Host commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostOp {
    /// `AddKVMHost` (proposed only after the host's SSH port answered).
    AddKvm {
        /// New uuid.
        uuid: String,
        /// Cluster (KVM).
        cluster_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// IPv4 address or host name.
        management_ip: String,
        /// SSH user.
        username: String,
        /// SSH password.
        password: String,
        /// SSH port (22 when not sent).
        ssh_port: i64,
    },
    /// `UpdateKVMHost`.
    UpdateKvm {
        /// Host.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New management IP.
        management_ip: Option<String>,
        /// New SSH user.
        username: Option<String>,
        /// New SSH password.
        password: Option<String>,
        /// New SSH port.
        ssh_port: Option<i64>,
    },
    /// `ChangeHostState`.
    ChangeState {
        /// Host.
        uuid: String,
        /// enable, disable or maintain.
        event: HostStateEvent,
    },
    /// `DeleteHost`.
    Delete {
        /// Host.
        uuid: String,
    },
    /// `ReconnectHost` (proposed only after the host's SSH port answered).
    Reconnect {
        /// Host.
        uuid: String,
    },
}

/// Answer of a host command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostResult {
    /// The host after the change.
    Inventory(Box<Host>),
    /// Deleted (or already absent).
    Deleted,
}

impl HostResult {
    /// The `inventory` of the reply, if any (runtime class `KVMHostInventory`).
    pub fn inventory(&self) -> Option<Value> {
        match self {
            HostResult::Inventory(h) => Some(resource::inventory(h.as_ref())),
            HostResult::Deleted => None,
        }
    }
}

fn ssh_port(v: i64) -> Result<u16, ApiError> {
    u16::try_from(v).ok().filter(|p| *p >= 1).ok_or_else(|| {
        validate::invalid_arg(format!(
            "field[sshPort] must be in range of [1, 65535], got {v}"
        ))
    })
}

fn username(v: &str) -> Result<(), ApiError> {
    validate::name("username", v)?;
    validate::max_len("username", v, MAX_CREDENTIAL)
}

fn password(v: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        return Err(validate::invalid_arg("field[password] cannot be empty"));
    }
    validate::max_len("password", v, MAX_CREDENTIAL)
}

/// ZStack's `HostApiInterceptor`: one host per management IP (compared case-insensitively, as
/// MySQL would).
fn unique_ip(txn: &dyn StateTxn, ip: &str, except: Option<&str>) -> Result<(), ApiError> {
    if resource::uuids_where::<Host>(txn, "managementIp", ip)?
        .iter()
        .any(|u| Some(u.as_str()) != except)
    {
        return Err(validate::invalid_arg(format!(
            "there has been a host having managementIp[{ip}]"
        )));
    }
    Ok(())
}

fn in_maintenance(h: &Host) -> bool {
    matches!(h.state, HostState::PreMaintenance | HostState::Maintenance)
}

/// Cluster enable/disable propagates to its hosts, except those in PreMaintenance or
/// Maintenance (spec 03 §3.6, [U] `HostExtensionToCluster`).
fn cluster_state_changed(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    state: &str,
) -> Result<(), ApiError> {
    let to = if state == "Enabled" {
        HostState::Enabled
    } else {
        HostState::Disabled
    };
    let Some((owner, mut h)) = resource::load::<Host>(txn, uuid)? else {
        return Ok(());
    };
    if !in_maintenance(&h) && h.state != to {
        h.state = to;
        h.last_op_date = ctx.proposed_at_ms;
        resource::save(txn, &owner, &h)?;
    }
    Ok(())
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: HostOp,
) -> Result<HostResult, ApiError> {
    caller.require_admin("host")?;
    let now = ctx.proposed_at_ms;
    match op {
        HostOp::AddKvm {
            uuid,
            cluster_uuid,
            name,
            description,
            management_ip,
            username: user,
            password: pass,
            ssh_port: port,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            validate::hostname("managementIp", &management_ip)?;
            username(&user)?;
            password(&pass)?;
            let port = ssh_port(port)?;
            // A disabled cluster (or zone) still accepts new hosts (spec 03 §14.5); the new
            // host starts Enabled, as in ZStack.
            let cluster = resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            let hypervisor = cluster.field("hypervisorType").unwrap_or_default();
            if hypervisor != KVM {
                return Err(validate::invalid_arg(format!(
                    "cluster[uuid:{cluster_uuid}] is of hypervisorType[{hypervisor}], a KVM host can only join a KVM cluster"
                )));
            }
            if resource::load::<Host>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("Host", &uuid));
            }
            unique_ip(txn, &management_ip, None)?;
            let h = Host {
                uuid,
                name,
                description,
                zone_uuid: cluster.field("zoneUuid").unwrap_or_default().to_string(),
                cluster_uuid,
                management_ip,
                state: HostState::Enabled,
                // The node reached the SSH port before proposing this. The agent issue inserts
                // the host `Connecting` and moves it to `Connected` once the agent is deployed.
                status: HostStatus::Connected,
                total_cpu_capacity: 0,
                available_cpu_capacity: 0,
                cpu_sockets: 0,
                total_memory_capacity: 0,
                available_memory_capacity: 0,
                cpu_num: 0,
                username: user,
                password: pass,
                ssh_port: port,
                create_date: now,
                last_op_date: now,
                os_distribution: None,
                os_release: None,
                os_version: None,
                architecture: None,
            };
            resource::save(txn, &caller.account_uuid, &h)?;
            Ok(HostResult::Inventory(Box::new(h)))
        }
        HostOp::UpdateKvm {
            uuid,
            name,
            description,
            management_ip,
            username: user,
            password: pass,
            ssh_port: port,
        } => {
            let (owner, mut h) = resource::require::<Host>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                h.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                h.description = Some(d);
            }
            if let Some(ip) = management_ip {
                validate::hostname("managementIp", &ip)?;
                if ip != h.management_ip {
                    if h.status == HostStatus::Connecting {
                        return Err(validate::op_failure(format!(
                            "cannot update the management IP of host[uuid:{uuid}] while it is Connecting"
                        )));
                    }
                    unique_ip(txn, &ip, Some(&uuid))?;
                }
                h.management_ip = ip;
            }
            if let Some(u) = user {
                username(&u)?;
                h.username = u;
            }
            if let Some(p) = pass {
                password(&p)?;
                h.password = p;
            }
            if let Some(p) = port {
                h.ssh_port = ssh_port(p)?;
            }
            h.last_op_date = now;
            resource::save(txn, &owner, &h)?;
            Ok(HostResult::Inventory(Box::new(h)))
        }
        HostOp::ChangeState { uuid, event } => {
            let (owner, mut h) = resource::require::<Host>(txn, &uuid)?;
            h.state = match event {
                // Leaving maintenance re-tracks and reconnects the host in ZStack; the agent
                // issue adds that. Enable/disable are accepted from every state (§4.3 table).
                HostStateEvent::Enable => HostState::Enabled,
                HostStateEvent::Disable => HostState::Disabled,
                HostStateEvent::Maintain => {
                    if h.status != HostStatus::Connected {
                        return Err(validate::op_failure(format!(
                            "can not maintain host[uuid:{uuid}, status:{:?}] which is not Connected",
                            h.status
                        )));
                    }
                    if in_maintenance(&h) {
                        return Err(validate::op_failure(format!(
                            "host[uuid:{uuid}] is already in state[{:?}]",
                            h.state
                        )));
                    }
                    // maintain = preMaintain, move the VMs off, then → Maintenance. There are
                    // no VMs yet, so PreMaintenance is passed through within this one apply and
                    // never observed; the VM issue splits this into a job with rollback.
                    HostState::Maintenance
                }
            };
            h.last_op_date = now;
            resource::save(txn, &owner, &h)?;
            Ok(HostResult::Inventory(Box::new(h)))
        }
        HostOp::Delete { uuid } => {
            let Some((_, h)) = resource::load::<Host>(txn, &uuid)? else {
                return Ok(HostResult::Deleted);
            };
            // Spec 03 §4.3: a host is deleted only in maintenance or when disconnected, so no
            // running VM is orphaned (enforced server-side, spec decision [I]).
            if h.state != HostState::Maintenance && h.status != HostStatus::Disconnected {
                return Err(validate::op_failure(format!(
                    "host[uuid:{uuid}] can be deleted only in Maintenance state or Disconnected status, it is {:?} and {:?}",
                    h.state, h.status
                )));
            }
            crate::resource::relations::delete(txn, ctx, "Host", &uuid)?;
            Ok(HostResult::Deleted)
        }
        HostOp::Reconnect { uuid } => {
            let (owner, mut h) = resource::require::<Host>(txn, &uuid)?;
            if in_maintenance(&h) {
                return Err(validate::op_failure(format!(
                    "host[uuid:{uuid}, name:{}] is in state[{:?}], cannot perform required operation",
                    h.name, h.state
                )));
            }
            h.status = HostStatus::Connected;
            h.last_op_date = now;
            resource::save(txn, &owner, &h)?;
            Ok(HostResult::Inventory(Box::new(h)))
        }
    }
}

/// Calls whose command the receiving node proposes only after probing the host.
pub const PROBED_CALLS: &[&str] = &["AddKVMHost", "UpdateKVMHost", "ReconnectHost"];

/// Request → command for the host calls (`None`: not a host call).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let cmd = |op: HostOp| op.command(caller.clone());
    let r = || -> Result<Option<HostOp>, Refusal> {
        Ok(Some(match call.name.as_str() {
            "AddKVMHost" => HostOp::AddKvm {
                uuid: params::new_uuid(b, new_uuid),
                cluster_uuid: params::required(b, "clusterUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                management_ip: params::required(b, "managementIp", call)?,
                username: params::required(b, "username", call)?,
                password: params::required(b, "password", call)?,
                ssh_port: params::int(b, "sshPort", call)?.unwrap_or(DEFAULT_SSH_PORT),
            },
            "UpdateKVMHost" => HostOp::UpdateKvm {
                uuid: params::required(b, "uuid", call)?,
                name: params::string(b, "name"),
                description: params::string(b, "description"),
                management_ip: params::string(b, "managementIp"),
                username: params::string(b, "username"),
                password: params::string(b, "password"),
                ssh_port: params::int(b, "sshPort", call)?,
            },
            "ChangeHostState" => HostOp::ChangeState {
                uuid: params::required(b, "uuid", call)?,
                event: params::state_event(
                    b,
                    call,
                    &[
                        ("enable", HostStateEvent::Enable),
                        ("disable", HostStateEvent::Disable),
                        ("maintain", HostStateEvent::Maintain),
                    ],
                )?,
            },
            "DeleteHost" => HostOp::Delete {
                uuid: params::required(b, "uuid", call)?,
            },
            "ReconnectHost" => HostOp::Reconnect {
                uuid: params::required(b, "uuid", call)?,
            },
            _ => return Ok(None),
        }))
    };
    r().transpose().map(|r| r.map(cmd))
}

fn host_op(command: &Command) -> Option<&HostOp> {
    match command.innermost() {
        Command::Host(c) => Some(&c.op),
        _ => None,
    }
}

/// The endpoint the receiving node must reach before proposing `command`, or `None` when
/// nothing needs probing (not a host command, or an update that keeps the IP and port).
///
/// The command is first applied to a throw-away overlay of `txn` (as of `now_ms`), so a call
/// the state refuses (unknown cluster, duplicate IP, host in maintenance, ...) is refused with
/// its own error before any connection is attempted. Nothing is written to `txn`.
pub fn probe_target(
    txn: &mut dyn StateTxn,
    now_ms: u64,
    command: &Command,
) -> Result<Option<HostEndpoint>, ApiError> {
    let Some(op) = host_op(command) else {
        return Ok(None);
    };
    // The overlay is dropped without `commit`: the dry run leaves `txn` untouched.
    let mut overlay = Staged::new(txn);
    let before = match op {
        HostOp::UpdateKvm { uuid, .. } | HostOp::Reconnect { uuid } => {
            resource::load::<Host>(&overlay, uuid)?.map(|(_, h)| h)
        }
        _ => None,
    };
    let ctx = ApplyCtx {
        index: 0,
        term: 0,
        proposed_at_ms: now_ms,
    };
    let resp = crate::apply(&mut overlay, &ctx, command.clone())?;
    let after = match resp.innermost() {
        Response::Refused(e) => return Err(e.clone()),
        Response::Host(HostResult::Inventory(h)) => Some(h.endpoint()),
        _ => None,
    };
    Ok(match op {
        HostOp::AddKvm { .. } | HostOp::Reconnect { .. } => after,
        HostOp::UpdateKvm { .. } => match (before, after) {
            (Some(b), Some(a))
                if b.management_ip == a.management_ip && b.ssh_port == a.ssh_port =>
            {
                None
            }
            (_, a) => a,
        },
        HostOp::ChangeState { .. } | HostOp::Delete { .. } => None,
    })
}

/// The refusal for a host that could not be reached: `HOST.1000` (unable to add host) for
/// `AddKVMHost`, `HOST.1002` (unable to reconnect host) for the calls that reconnect it.
pub fn unreachable_refusal(call: &str, endpoint: &HostEndpoint, cause: &str) -> Refusal {
    let (code, what) = if call == "AddKVMHost" {
        (Code::HostAdd, "add")
    } else {
        (Code::HostReconnect, "reconnect")
    };
    Refusal::new(
        code,
        format!(
            "unable to {what} host[{}:{}]: its SSH port cannot be reached: {cause}",
            endpoint.management_ip, endpoint.ssh_port
        ),
    )
}

fn probed(p: &crate::plan::PlanInput) -> Result<crate::plan::Plan, Refusal> {
    match crate::family::op_plan(plan, p)? {
        crate::plan::Plan::Propose { call, command } => Ok(crate::plan::Plan::ProbeThenPropose {
            call,
            command,
            probe: probe_target,
            unreachable: unreachable_refusal,
        }),
        other => Ok(other),
    }
}

/// The host family.
pub struct Hosts;

impl crate::family::Family for Hosts {
    type Op = HostOp;
    type Out = HostResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "host",
            tables: &[TABLE],
            kinds: &[KindDecl {
                // A cluster's hosts go with it (spec 03 §3.6); no VMs exist yet, so nothing
                // else hangs off a host but its tags.
                relations: &[Relation {
                    field: "clusterUuid",
                    parent: "Cluster",
                    on_delete: OnDelete::Cascade,
                    on_parent_state: Some(cluster_state_changed),
                }],
                ..KindDecl::new("Host", TABLE, &["HostVO", "KVMHostVO"])
            }],
            calls: &[
                CallDecl::new("AddKVMHost", probed, &[route(Po, "/v1/hosts/kvm", P)])
                    .creating("HostVO"),
                CallDecl::new(
                    "UpdateKVMHost",
                    probed,
                    &[route(Pu, "/v1/hosts/kvm/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeHostState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/hosts/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteHost",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/hosts/{uuid}", N)],
                ),
                CallDecl::new(
                    "ReconnectHost",
                    probed,
                    &[route(Pu, "/v1/hosts/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "QueryHost",
                    generic::plan_query::<Host>,
                    &[route(G, "/v1/hosts", N), route(G, "/v1/hosts/{uuid}", N)],
                ),
            ],
            flows: &[],
            #[cfg(test)]
            cases: cases::cases,
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: HostOp,
    ) -> Result<HostResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &HostResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::plan::Plan;
    use crate::plan::Stamp;
    use crate::testing::normal;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;
    use crate::wire::envelope::decode_request;

    /// Calls through the node's path (`testing::harness::send`); the probe itself is the node's, so
    /// here every probe "succeeds".
    struct Wire {
        t: MemTxn,
        n: u32,
    }

    impl Wire {
        fn new() -> Self {
            Wire {
                t: MemTxn::default(),
                n: 0,
            }
        }

        fn call_as(
            &mut self,
            caller: &Caller,
            name: &str,
            body: Value,
        ) -> Result<Map<String, Value>, Refusal> {
            self.n += 1;
            let who = crate::testing::harness::Who::As(caller.clone());
            crate::testing::harness::send(&mut self.t, self.n, &who, name, body)
        }

        fn ok(&mut self, name: &str, body: Value) -> Map<String, Value> {
            self.call_as(&Caller::admin(), name, body)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        fn created(&mut self, name: &str, body: Value) -> String {
            self.ok(name, body)["inventory"]["uuid"]
                .as_str()
                .expect("uuid")
                .to_string()
        }

        /// The refusal code; asserts that nothing changed.
        fn refused_as(&mut self, caller: &Caller, name: &str, body: Value) -> &'static str {
            let before = self.t.tables.clone();
            let e = self.call_as(caller, name, body).expect_err(name);
            assert_eq!(self.t.tables, before, "{name} changed state while refused");
            e.code.as_str()
        }

        fn refused(&mut self, name: &str, body: Value) -> &'static str {
            self.refused_as(&Caller::admin(), name, body)
        }

        fn hosts(&mut self, conds: Value) -> Vec<Value> {
            self.ok("QueryHost", json!({ "conditions": conds }))["inventories"]
                .as_array()
                .expect("inventories")
                .clone()
        }

        fn host(&self, uuid: &str) -> Host {
            resource::require::<Host>(&self.t, uuid).expect("host").1
        }

        /// Force a status, as the agent's ping tracker will.
        fn set_status(&mut self, uuid: &str, status: HostStatus) {
            let (owner, mut h) = resource::require::<Host>(&self.t, uuid).expect("host");
            h.status = status;
            resource::save(&mut self.t, &owner, &h).expect("save");
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
        let (owner, mut other) =
            resource::require::<crate::families::cluster::Cluster>(&w.t, &c).unwrap();
        other.uuid = "e".repeat(32);
        other.hypervisor_type = "Simulator".into();
        resource::save(&mut w.t, &owner, &other).unwrap();
        assert_eq!(
            w.refused("AddKVMHost", add_body(&other.uuid, "10.0.0.6")),
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
        assert!(resource::list::<crate::tag::UserTag>(&w.t)
            .unwrap()
            .is_empty());
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
        assert!(resource::list::<Host>(&w.t).unwrap().is_empty());
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
        let before = w.t.tables.clone();
        let ep = |ip: &str, port: u16| HostEndpoint {
            management_ip: ip.into(),
            ssh_port: port,
            username: "root".into(),
        };
        let mut body = add_body(&c, "10.0.0.6");
        body["systemTags"] = json!(["x::y"]);
        let add = planned("AddKVMHost", body);
        assert!(
            matches!(&add, Command::Tag(c) if matches!(*c.op, crate::tag::TagOp::Tagged { .. }))
        );
        assert_eq!(
            probe_target(&mut w.t, 9_000, &add).unwrap(),
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
            probe_target(&mut w.t, 9_000, &moved).unwrap(),
            Some(ep("10.0.0.5", 22))
        );
        let again = planned("ReconnectHost", json!({"uuid": h}));
        assert_eq!(
            probe_target(&mut w.t, 9_000, &again).unwrap(),
            Some(ep("10.0.0.5", 2222))
        );
        let state = planned(
            "ChangeHostState",
            json!({"uuid": h, "stateEvent": "disable"}),
        );
        assert_eq!(probe_target(&mut w.t, 9_000, &state).unwrap(), None);
        assert_eq!(w.t.tables, before, "the dry run wrote");

        let e = unreachable_refusal("AddKVMHost", &ep("10.0.0.6", 2222), "connection refused");
        assert_eq!(e.code.as_str(), "HOST.1000");
        assert!(e.details.contains("10.0.0.6:2222") && e.details.contains("connection refused"));
        let e = unreachable_refusal("ReconnectHost", &ep("10.0.0.6", 22), "timed out");
        assert_eq!(e.code.as_str(), "HOST.1002");
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
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
        m
    }
}
