//! KVM host records, commands, the state machine and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::plan::HostEndpoint;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::secret::Sealed;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The host table.
pub const TABLE: &str = "host";
/// The host kind.
pub const KIND: &str = "Host";
/// The only hypervisor this build manages.
pub const KVM: &str = "KVM";
/// SSH port when the call names none.
pub const DEFAULT_SSH_PORT: i64 = 22;

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
    /// SSH password, sealed (`@APINoSee`: kept out of every inventory).
    pub password: Sealed,
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
    /// vCPUs held by the reservations on this host (`reservation.rs`); not in the inventory,
    /// which shows what is left (`availableCpuCapacity`).
    #[serde(default)]
    pub allocated_cpu: u64,
    /// Memory held by the reservations, deflated by the memory ratio in force when each was
    /// taken, bytes.
    #[serde(default)]
    pub allocated_memory: u64,
    /// How many reservations are on this host (the fewest-VMs strategy's count).
    #[serde(default)]
    pub reservation_count: u32,
}

crate::described_record!(Host);

impl Host {
    /// Where this host is reached.
    pub fn endpoint(&self) -> HostEndpoint {
        HostEndpoint {
            management_ip: self.management_ip.clone(),
            ssh_port: self.ssh_port,
            username: self.username.clone(),
            password: self.password.clone(),
        }
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
        /// SSH password, sealed by the receiving node.
        password: Sealed,
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
        /// New SSH password, sealed by the receiving node.
        password: Option<Sealed>,
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
    /// The leader's host tracker: the host's agent answered (`Connected`, with the facts it
    /// reported when they changed) or missed `host/ping.maxFailure` pings (`Disconnected`).
    /// Never an API call; proposed only as a term-fenced leader command.
    Track {
        /// Host.
        uuid: String,
        /// What the tracker observed.
        status: HostStatus,
        /// The facts of the host's agent, when they are new or changed.
        facts: Option<HostFacts>,
    },
    /// Take CPU and memory on a host for a placement (`AllocateHostResource`; the VM flows'
    /// reservation step). The apply re-checks the host's free capacity on the committed
    /// counters, so of two placements computed concurrently on a host that fits one, the
    /// second is refused (`HOST_ALLOCATION.1000`) and its node places again. Idempotent per
    /// reservation uuid: a retried proposal returns the reservation it already made.
    Reserve {
        /// The reservation (the VM's uuid when a VM flow reserves).
        uuid: String,
        /// The host the placement chose.
        host_uuid: String,
        /// vCPUs.
        cpu_num: u64,
        /// Memory as asked, bytes (deflated by the memory ratio at apply).
        memory_size: u64,
    },
    /// Give back exactly what a reservation took (stop, destroy, migrate-away, failed create).
    /// Releasing a reservation that does not exist changes nothing, so a replayed release
    /// cannot return capacity twice.
    Release {
        /// The reservation.
        uuid: String,
    },
}

/// What a host's agent reports about the machine (from libvirt and `/etc/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Logical CPUs (threads) the hypervisor schedules.
    pub cpu_threads: u64,
    /// CPU sockets.
    pub cpu_sockets: u64,
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    /// e.g. `debian`.
    pub os_distribution: String,
    /// e.g. `bookworm`.
    pub os_release: String,
    /// e.g. `12`.
    pub os_version: String,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Capacity from the facts: `totalCpu = threads × host/cpu.overProvisioning.ratio` (spec 03
/// §9), memory as reported; available = total − what the host's reservations hold.
pub(super) fn take_facts(txn: &dyn StateTxn, h: &mut Host, f: &HostFacts) -> Result<(), ApiError> {
    let ratio =
        crate::settings::int_value(txn, "host", "cpu.overProvisioning.ratio")?.max(1) as u64;
    h.cpu_num = f.cpu_threads;
    h.cpu_sockets = f.cpu_sockets;
    h.total_cpu_capacity = f.cpu_threads.saturating_mul(ratio);
    h.total_memory_capacity = f.memory_bytes;
    // Reservations stay when the facts change (a host upgraded while running VMs).
    super::reservation::refresh_available(h);
    h.architecture = non_empty(&f.architecture);
    h.os_distribution = non_empty(&f.os_distribution);
    h.os_release = non_empty(&f.os_release);
    h.os_version = non_empty(&f.os_version);
    Ok(())
}

/// Answer of a host command.
pub type HostResult = generic::Answer<Host>;

fn username(v: &str) -> Result<(), ApiError> {
    validate::name("username", v)?;
    validate::max_len("username", v, validate::MAX_CREDENTIAL)
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
pub(super) fn cluster_state_changed(
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

/// The state an event leads to; enable/disable are accepted from every state (§4.3 table).
fn next_state(h: &Host, event: HostStateEvent) -> Result<HostState, ApiError> {
    let uuid = &h.uuid;
    Ok(match event {
        // Leaving maintenance re-tracks and reconnects the host in ZStack; the agent issue
        // adds that.
        HostStateEvent::Enable => HostState::Enabled,
        HostStateEvent::Disable => HostState::Disabled,
        HostStateEvent::Maintain => {
            if h.status != HostStatus::Connected {
                return Err(validate::op_failure(format!(
                    "can not maintain host[uuid:{uuid}, status:{:?}] which is not Connected",
                    h.status
                )));
            }
            if in_maintenance(h) {
                return Err(validate::op_failure(format!(
                    "host[uuid:{uuid}] is already in state[{:?}]",
                    h.state
                )));
            }
            // maintain = preMaintain; the call's flow (`host.change-state`) moves the VMs
            // off, then → Maintenance, or back to the state before on failure.
            HostState::PreMaintenance
        }
    })
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: HostOp,
) -> Result<HostResult, ApiError> {
    caller.require_admin("host")?;
    let now = ctx.proposed_at_ms;
    let h = match op {
        HostOp::AddKvm {
            uuid,
            cluster_uuid,
            name,
            description,
            management_ip,
            username: user,
            password,
            ssh_port,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            validate::hostname("managementIp", &management_ip)?;
            username(&user)?;
            password.check("password")?;
            let ssh_port = validate::ssh_port(ssh_port)?;
            // A disabled cluster (or zone) still accepts new hosts (spec 03 §14.5); the new
            // host starts Enabled, as in ZStack.
            let cluster = resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            let hypervisor = cluster.field("hypervisorType").unwrap_or_default();
            if hypervisor != KVM {
                return Err(validate::invalid_arg(format!(
                    "cluster[uuid:{cluster_uuid}] is of hypervisorType[{hypervisor}], a KVM host can only join a KVM cluster"
                )));
            }
            resource::refuse_duplicate::<Host>(txn, &uuid)?;
            unique_ip(txn, &management_ip, None)?;
            let h = Host {
                uuid,
                name,
                description,
                zone_uuid: cluster.field("zoneUuid").unwrap_or_default().to_string(),
                cluster_uuid,
                management_ip,
                state: HostState::Enabled,
                // `Connected` only once the agent reported the host's facts (flows.rs).
                status: HostStatus::Connecting,
                total_cpu_capacity: 0,
                available_cpu_capacity: 0,
                cpu_sockets: 0,
                total_memory_capacity: 0,
                available_memory_capacity: 0,
                cpu_num: 0,
                username: user,
                password,
                ssh_port,
                create_date: now,
                last_op_date: now,
                os_distribution: None,
                os_release: None,
                os_version: None,
                architecture: None,
                allocated_cpu: 0,
                allocated_memory: 0,
                reservation_count: 0,
            };
            resource::save(txn, &caller.account_uuid, &h)?;
            h
        }
        HostOp::UpdateKvm {
            uuid,
            name,
            description,
            management_ip,
            username: user,
            password,
            ssh_port,
        } => generic::modify(txn, ctx, &uuid, |txn, h: &mut Host| {
            Rename { name, description }.apply_to(h)?;
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
            if let Some(p) = password {
                p.check("password")?;
                h.password = p;
            }
            if let Some(p) = ssh_port {
                h.ssh_port = validate::ssh_port(p)?;
            }
            Ok(())
        })?,
        HostOp::ChangeState { uuid, event } => {
            generic::modify(txn, ctx, &uuid, |_, h: &mut Host| {
                h.state = next_state(h, event)?;
                Ok(())
            })?
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
            relations::delete(txn, ctx, KIND, &uuid)?;
            // Nothing can run on a deleted host; its reservations go with it.
            super::reservation::forget_host(txn, &uuid)?;
            return Ok(HostResult::Deleted);
        }
        HostOp::Reconnect { uuid } => generic::modify(txn, ctx, &uuid, |_, h: &mut Host| {
            if in_maintenance(h) {
                return Err(validate::op_failure(format!(
                    "host[uuid:{uuid}, name:{}] is in state[{:?}], cannot perform required operation",
                    h.name, h.state
                )));
            }
            // Its flow (flows.rs) reaches the agent and reports it Connected or Disconnected.
            h.status = HostStatus::Connecting;
            Ok(())
        })?,
        HostOp::Track {
            uuid,
            status,
            facts,
        } => {
            if status == HostStatus::Connecting {
                return Err(validate::invalid_arg(
                    "the host tracker reports Connected or Disconnected, never Connecting",
                ));
            }
            generic::modify(txn, ctx, &uuid, |txn, h: &mut Host| {
                // A Connecting host belongs to the flow connecting it, not to the tracker.
                if h.status == HostStatus::Connecting {
                    return Err(validate::op_failure(format!(
                        "host[uuid:{uuid}] is being connected by a job; the tracker leaves it alone"
                    )));
                }
                h.status = status;
                if let Some(f) = &facts {
                    take_facts(txn, h, f)?;
                }
                Ok(())
            })?
        }
        HostOp::Reserve {
            uuid,
            host_uuid,
            cpu_num,
            memory_size,
        } => super::reservation::reserve(txn, ctx, &uuid, &host_uuid, cpu_num, memory_size)?,
        HostOp::Release { uuid } => match super::reservation::release(txn, ctx, &uuid)? {
            Some(h) => h,
            None => return Ok(HostResult::Deleted),
        },
    };
    Ok(HostResult::Inventory(Box::new(h)))
}
