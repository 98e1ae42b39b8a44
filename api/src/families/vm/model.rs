//! VM and volume records, the VM commands and their apply (spec 02 §2.1, §2.2, §3.1).
//!
//! A command only moves a VM into the transitional state of its operation (after checking
//! that the state allows it, ZStack's `validateOperationByState`); the operation's flow
//! (`flows.rs`) then drives the host and commits the stable state. The job of every VM call
//! serialises on the VM's uuid, so no two operations of one VM ever overlap.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The VM table.
pub const TABLE: &str = "vm_instance";
/// The kind other families name VMs by.
pub const KIND: &str = "VmInstance";
/// Tags' resource type of a VM.
pub const VO: &str = "VmInstanceVO";
/// The volume table.
pub const VOLUME_TABLE: &str = "volume";
/// The kind of a volume.
pub const VOLUME_KIND: &str = "Volume";
/// Tags' resource type of a volume.
pub const VOLUME_VO: &str = "VolumeVO";

/// A VM's state (spec 02 §3.1; upstream's `VmInstanceState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// Recorded, never started (`JustCreate`).
    Created,
    /// Being started.
    Starting,
    /// Running on `host_uuid`.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped; holds no host capacity.
    Stopped,
    /// Being rebooted.
    Rebooting,
    /// Being paused.
    Pausing,
    /// Paused on its host (memory kept there).
    Paused,
    /// Being resumed.
    Resuming,
    /// Being destroyed.
    Destroying,
    /// In the recycle bin (deletion policy Delay/Never): recoverable until expunged.
    Destroyed,
    /// Being expunged.
    Expunging,
    /// Being migrated.
    Migrating,
    /// Its host cannot be reached.
    Unknown,
    /// A create that failed after the record was made (never left by a rolled-back create,
    /// which removes the record).
    Error,
}

impl VmState {
    /// ZStack's name.
    pub fn name(self) -> &'static str {
        match self {
            VmState::Created => "Created",
            VmState::Starting => "Starting",
            VmState::Running => "Running",
            VmState::Stopping => "Stopping",
            VmState::Stopped => "Stopped",
            VmState::Rebooting => "Rebooting",
            VmState::Pausing => "Pausing",
            VmState::Paused => "Paused",
            VmState::Resuming => "Resuming",
            VmState::Destroying => "Destroying",
            VmState::Destroyed => "Destroyed",
            VmState::Expunging => "Expunging",
            VmState::Migrating => "Migrating",
            VmState::Unknown => "Unknown",
            VmState::Error => "Error",
        }
    }

    /// Whether the VM holds a host (capacity reserved, a domain defined there).
    pub fn on_host(self) -> bool {
        matches!(
            self,
            VmState::Starting
                | VmState::Running
                | VmState::Stopping
                | VmState::Rebooting
                | VmState::Pausing
                | VmState::Paused
                | VmState::Resuming
                | VmState::Migrating
                | VmState::Unknown
        )
    }
}

/// A NIC (`VmNicInventory`), kept inside its VM's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmNic {
    /// 32 hex chars.
    pub uuid: String,
    /// Its VM.
    pub vm_instance_uuid: String,
    /// Its L3 network.
    pub l3_network_uuid: String,
    /// The L3's L2 network (what the host bridges it to).
    pub l2_network_uuid: Option<String>,
    /// Address, empty until allocated.
    pub ip: Option<String>,
    /// Netmask of the address's range.
    pub netmask: Option<String>,
    /// Gateway of the address's range.
    pub gateway: Option<String>,
    /// The IPAM record of the address.
    pub used_ip_uuid: Option<String>,
    /// A static address the caller asked for.
    pub static_ip: Option<String>,
    /// MAC address.
    pub mac: String,
    /// 0 for the first NIC.
    pub device_id: u32,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

/// A VM record (`VmInstanceVO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmInstance {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name (duplicates allowed).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Zone, once placed.
    pub zone_uuid: Option<String>,
    /// Cluster, once placed.
    pub cluster_uuid: Option<String>,
    /// Current host (Running, Paused, Migrating, Unknown, and the transitions between).
    pub host_uuid: Option<String>,
    /// The host it last ran on.
    pub last_host_uuid: Option<String>,
    /// The offering it was created from (kept as a copy: cpu and memory below).
    pub instance_offering_uuid: Option<String>,
    /// The image of its root volume.
    pub image_uuid: Option<String>,
    /// Its root volume.
    pub root_volume_uuid: String,
    /// The L3 of its default NIC.
    pub default_l3_network_uuid: Option<String>,
    /// Inherited from the image.
    pub platform: String,
    /// vCPUs.
    pub cpu_num: u64,
    /// Memory, bytes.
    pub memory_size: u64,
    /// The offering's host allocator strategy.
    pub allocator_strategy: Option<String>,
    /// State.
    pub state: VmState,
    /// Its NICs, by device id.
    pub vm_nics: Vec<VmNic>,
    /// When it was destroyed into the recycle bin (the expunge deadline counts from here).
    #[serde(default)]
    pub deleted_at: Option<u64>,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(VmInstance);

/// A volume's lifecycle (`VolumeStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeStatus {
    /// Its file is being made.
    Creating,
    /// Its file exists.
    Ready,
    /// Recorded without a file (a data volume created without storage).
    NotInstantiated,
    /// In the recycle bin.
    Deleted,
}

/// A volume record (`VolumeVO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Where its file lives, once chosen.
    pub primary_storage_uuid: Option<String>,
    /// LocalStorage: the host holding the file.
    pub local_host_uuid: Option<String>,
    /// The VM it is attached to.
    pub vm_instance_uuid: Option<String>,
    /// The image it was created from.
    pub root_image_uuid: Option<String>,
    /// `Root` or `Data`.
    pub volume_type: String,
    /// The file on the primary storage, once created.
    pub install_path: Option<String>,
    /// Virtual size, bytes.
    pub size: u64,
    /// Bytes the file takes.
    pub actual_size: u64,
    /// `qcow2`.
    pub format: String,
    /// 0 = the root disk.
    pub device_id: Option<u32>,
    /// Enabled or Disabled.
    pub state: generic::EnableState,
    /// Lifecycle.
    pub status: VolumeStatus,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(Volume);

/// How a create ends (`strategy` of `CreateVmInstance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateStrategy {
    /// Placed, volumes made, started (the default).
    InstantStart,
    /// Placed and volumes made, left Stopped.
    CreateStopped,
}

/// Stop mode (`type` of `StopVmInstance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopType {
    /// ACPI shutdown, then forced after the timeout.
    Grace,
    /// Forced at once (power off).
    Cold,
}

/// One NIC a create asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRequest {
    /// New NIC uuid (derived from the VM's).
    pub uuid: String,
    /// Its L3.
    pub l3_network_uuid: String,
    /// A static address asked for (system tag `staticIp::<l3>::<ip>`).
    pub static_ip: Option<String>,
    /// MAC.
    pub mac: String,
}

/// VM commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmOp {
    /// `CreateVmInstance`: the record, `Starting`, with its root volume `Creating`; the flow
    /// places, allocates and starts it.
    Create {
        /// New VM uuid.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Offering.
        instance_offering_uuid: String,
        /// Image of the root volume.
        image_uuid: String,
        /// NICs, the default one first.
        nics: Vec<NicRequest>,
        /// Root volume uuid (derived from the VM's).
        root_volume_uuid: String,
        /// Requested zone, cluster, host, root volume storage.
        zone_uuid: Option<String>,
        /// Requested cluster.
        cluster_uuid: Option<String>,
        /// Requested host.
        host_uuid: Option<String>,
        /// Requested primary storage of the root volume.
        primary_storage_uuid: Option<String>,
        /// How it ends.
        strategy: CreateStrategy,
    },
    /// `StartVmInstance`: Stopped → Starting.
    Start {
        /// VM.
        uuid: String,
        /// A host asked for (`hostUuid`).
        host_uuid: Option<String>,
    },
    /// `StopVmInstance`: → Stopping.
    Stop {
        /// VM.
        uuid: String,
        /// Grace or cold.
        stop_type: StopType,
    },
    /// `RebootVmInstance`: Running → Rebooting.
    Reboot {
        /// VM.
        uuid: String,
    },
    /// `PauseVmInstance`: Running → Pausing.
    Pause {
        /// VM.
        uuid: String,
    },
    /// `ResumeVmInstance`: Paused → Resuming.
    Resume {
        /// VM.
        uuid: String,
    },
    /// `DestroyVmInstance`: → Destroying.
    Destroy {
        /// VM.
        uuid: String,
    },
    /// `ExpungeVmInstance`: Destroyed → Expunging.
    Expunge {
        /// VM.
        uuid: String,
    },
    /// `RecoverVmInstance`: Destroyed → Stopped.
    Recover {
        /// VM.
        uuid: String,
    },
    /// `MigrateVm`: Running → Migrating (live, to `host_uuid` or where the allocator
    /// places it, never its current host).
    Migrate {
        /// VM.
        uuid: String,
        /// The destination asked for (`hostUuid`).
        host_uuid: Option<String>,
    },
    /// `UpdateVmInstance`: name and description.
    Update {
        /// VM.
        uuid: String,
        /// New name and description.
        rename: Rename,
    },
    /// A volume call (`volumes.rs`).
    Volume(super::volumes::VolumeOp),
    /// A volume snapshot call (`snapshots.rs`).
    Snapshot(super::snapshots::SnapshotOp),
    /// A NIC call (`nics.rs`).
    Nic(super::nics::NicOp),
    /// `CloneVmInstance` (`clone.rs`).
    Clone(super::clone::CloneOp),
}

impl VmOp {
    /// The VM the op is about.
    pub fn uuid(&self) -> &str {
        match self {
            VmOp::Create { uuid, .. }
            | VmOp::Start { uuid, .. }
            | VmOp::Stop { uuid, .. }
            | VmOp::Reboot { uuid }
            | VmOp::Pause { uuid }
            | VmOp::Resume { uuid }
            | VmOp::Destroy { uuid }
            | VmOp::Expunge { uuid }
            | VmOp::Recover { uuid }
            | VmOp::Migrate { uuid, .. }
            | VmOp::Update { uuid, .. } => uuid,
            VmOp::Volume(op) => op.uuid(),
            VmOp::Snapshot(op) => op.uuid(),
            VmOp::Nic(op) => op.uuid(),
            VmOp::Clone(op) => &op.vm_uuid,
        }
    }

    /// The API message the op stands for (named in state errors).
    pub fn message(&self) -> &'static str {
        match self {
            VmOp::Create { .. } => "APICreateVmInstanceMsg",
            VmOp::Start { .. } => "APIStartVmInstanceMsg",
            VmOp::Stop { .. } => "APIStopVmInstanceMsg",
            VmOp::Reboot { .. } => "APIRebootVmInstanceMsg",
            VmOp::Pause { .. } => "APIPauseVmInstanceMsg",
            VmOp::Resume { .. } => "APIResumeVmInstanceMsg",
            VmOp::Destroy { .. } => "APIDestroyVmInstanceMsg",
            VmOp::Expunge { .. } => "APIExpungeVmInstanceMsg",
            VmOp::Recover { .. } => "APIRecoverVmInstanceMsg",
            VmOp::Migrate { .. } => "APIMigrateVmMsg",
            VmOp::Update { .. } => "APIUpdateVmInstanceMsg",
            VmOp::Volume(op) => op.message(),
            VmOp::Snapshot(op) => op.message(),
            VmOp::Nic(op) => op.message(),
            VmOp::Clone(_) => "APICloneVmInstanceMsg",
        }
    }
}

/// Answer of a VM command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmResult {
    /// The VM after the change.
    Inventory(Box<VmInstance>),
    /// Gone (expunged, or a create rolled back).
    Deleted,
    /// A volume after the change.
    Volume(Box<Volume>),
    /// A volume snapshot after the change.
    Snapshot(Box<super::snapshots::VolumeSnapshot>),
    /// What became of each clone of a `CloneVmInstance`.
    Clones(Vec<super::clone::CloneOutcome>),
}

/// The states an op may start from, and the transitional state it moves the VM to.
fn transition(op: &VmOp) -> (&'static [VmState], VmState) {
    use VmState::*;
    match op {
        VmOp::Start { .. } => (&[Stopped, Created], Starting),
        VmOp::Stop { .. } => (&[Running, Paused, Unknown], Stopping),
        VmOp::Reboot { .. } => (&[Running], Rebooting),
        VmOp::Pause { .. } => (&[Running], Pausing),
        VmOp::Resume { .. } => (&[Paused], Resuming),
        VmOp::Destroy { .. } => (
            &[Running, Paused, Stopped, Unknown, Created, Error],
            Destroying,
        ),
        VmOp::Expunge { .. } => (&[Destroyed], Expunging),
        VmOp::Recover { .. } => (&[Destroyed], Stopped),
        VmOp::Migrate { .. } => (MIGRATABLE, Migrating),
        VmOp::Create { .. }
        | VmOp::Update { .. }
        | VmOp::Volume(_)
        | VmOp::Snapshot(_)
        | VmOp::Nic(_)
        | VmOp::Clone(_) => (&[], Starting),
    }
}

/// The states a VM live-migrates from.
pub const MIGRATABLE: &[VmState] = &[VmState::Running];

/// Why the VM cannot live-migrate to `to` (or anywhere, when `to` is `None`), if it cannot:
/// its state, a destination that is its own host, or a volume on local storage (whose file
/// lives on the source host's disk; spec 02 §4.4 needs a storage copy this build does not do).
pub fn migration_refusal(
    txn: &dyn StateTxn,
    vm: &VmInstance,
    message: &str,
    to: Option<&str>,
) -> Result<(), ApiError> {
    if !MIGRATABLE.contains(&vm.state) {
        return Err(state_error(message, vm, MIGRATABLE));
    }
    if let Some(h) = to {
        resource::require_ref(txn, "Host", h)?;
        if vm.host_uuid.as_deref() == Some(h) {
            return Err(validate::op_failure(format!(
                "the vm[uuid:{}] is already on host[uuid:{h}], cannot migrate it to the same host",
                vm.uuid
            )));
        }
    }
    for v in volumes_of(txn, &vm.uuid)? {
        let Some(ps) = &v.primary_storage_uuid else {
            continue;
        };
        let local = resource::inventory_of(txn, "PrimaryStorage", ps)?
            .is_some_and(|inv| inv["type"] == "LocalStorage");
        if local {
            return Err(validate::op_failure(format!(
                "the vm[uuid:{}]'s volume[uuid:{}] is on local primary storage[uuid:{ps}]; a VM on local storage cannot be live-migrated, stop it and migrate its volumes instead",
                vm.uuid, v.uuid
            )));
        }
    }
    Ok(())
}

/// ZStack's refusal of an operation in a state that does not allow it.
pub fn state_error(message: &str, vm: &VmInstance, allowed: &[VmState]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
    validate::op_failure(format!(
        "current vm instance state[{}] doesn't allow to proceed message[org.zstack.header.vm.{message}], allowed states are [{}]",
        vm.state.name(),
        names.join(", ")
    ))
}

/// The offering's figures a create copies.
struct Offering {
    cpu_num: u64,
    memory_size: u64,
    allocator_strategy: Option<String>,
}

fn offering(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<Offering, ApiError> {
    let r = resource::require_ref(txn, "InstanceOffering", uuid)?;
    r.check_visible(caller)?;
    let inv = resource::inventory_of(txn, "InstanceOffering", uuid)?
        .ok_or_else(|| resource::not_found_kind("InstanceOffering", uuid))?;
    if inv["state"] != "Enabled" {
        return Err(validate::op_failure(format!(
            "instance offering[uuid:{uuid}] is Disabled; a disabled offering cannot create VMs"
        )));
    }
    Ok(Offering {
        cpu_num: inv["cpuNum"].as_u64().unwrap_or(0),
        memory_size: inv["memorySize"].as_u64().unwrap_or(0),
        allocator_strategy: inv["allocatorStrategy"].as_str().map(str::to_string),
    })
}

/// The image's figures a create needs: (virtual size, platform).
fn image(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<(u64, String), ApiError> {
    let r = resource::require_ref(txn, "Image", uuid)?;
    r.check_visible(caller)?;
    let inv = resource::inventory_of(txn, "Image", uuid)?
        .ok_or_else(|| resource::not_found_kind("Image", uuid))?;
    if inv["status"] != "Ready" {
        return Err(validate::op_failure(format!(
            "image[uuid:{uuid}] is {}, not Ready; a VM is created only from a Ready image",
            inv["status"].as_str().unwrap_or("?")
        )));
    }
    if inv["state"] != "Enabled" {
        return Err(validate::op_failure(format!(
            "image[uuid:{uuid}] is Disabled; a disabled image cannot create VMs"
        )));
    }
    if inv["mediaType"] != "RootVolumeTemplate" {
        return Err(validate::invalid_arg(format!(
            "image[uuid:{uuid}] is a {}; a VM is created from a RootVolumeTemplate image (ISO installs are not supported yet)",
            inv["mediaType"].as_str().unwrap_or("?")
        )));
    }
    Ok((
        inv["size"].as_u64().unwrap_or(0),
        inv["platform"].as_str().unwrap_or("Linux").to_string(),
    ))
}

pub(super) fn check_l3(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<(), ApiError> {
    let r = resource::require_ref(txn, "L3Network", uuid)?;
    r.check_visible(caller)?;
    if r.field("state") != Some("Enabled") {
        return Err(validate::op_failure(format!(
            "L3 network[uuid:{uuid}] is Disabled; a VM cannot use a disabled network"
        )));
    }
    Ok(())
}

/// The VM as the caller may act on it.
pub(super) fn visible_vm(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
) -> Result<VmInstance, ApiError> {
    resource::require_visible::<VmInstance>(txn, caller, uuid).map(|(_, v)| v)
}

#[allow(clippy::too_many_lines)]
pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: VmOp,
) -> Result<VmResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match op {
        VmOp::Create {
            uuid,
            name,
            description,
            instance_offering_uuid,
            image_uuid,
            nics,
            root_volume_uuid,
            zone_uuid,
            cluster_uuid,
            host_uuid,
            primary_storage_uuid,
            strategy: _,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            validate::uuid("rootVolumeUuid", &root_volume_uuid)?;
            let o = offering(txn, caller, &instance_offering_uuid)?;
            let (image_size, platform) = image(txn, caller, &image_uuid)?;
            if nics.is_empty() {
                return Err(validate::invalid_arg(
                    "l3NetworkUuids must name at least one L3 network",
                ));
            }
            for n in &nics {
                validate::uuid("vmNicUuid", &n.uuid)?;
                check_l3(txn, caller, &n.l3_network_uuid)?;
            }
            for (kind, u) in [
                ("Zone", &zone_uuid),
                ("Cluster", &cluster_uuid),
                ("Host", &host_uuid),
                ("PrimaryStorage", &primary_storage_uuid),
            ] {
                if let Some(u) = u {
                    resource::require_ref(txn, kind, u)?;
                }
            }
            resource::refuse_duplicate::<VmInstance>(txn, &uuid)?;
            let vm_nics = nics
                .iter()
                .enumerate()
                .map(|(i, n)| VmNic {
                    uuid: n.uuid.clone(),
                    vm_instance_uuid: uuid.clone(),
                    l3_network_uuid: n.l3_network_uuid.clone(),
                    l2_network_uuid: None,
                    ip: None,
                    netmask: None,
                    gateway: None,
                    used_ip_uuid: None,
                    static_ip: n.static_ip.clone(),
                    mac: n.mac.clone(),
                    device_id: u32::try_from(i).unwrap_or(u32::MAX),
                    create_date: now,
                    last_op_date: now,
                })
                .collect();
            let vm = VmInstance {
                uuid: uuid.clone(),
                name: name.clone(),
                description,
                zone_uuid,
                cluster_uuid,
                host_uuid,
                last_host_uuid: None,
                instance_offering_uuid: Some(instance_offering_uuid),
                image_uuid: Some(image_uuid.clone()),
                root_volume_uuid: root_volume_uuid.clone(),
                default_l3_network_uuid: nics.first().map(|n| n.l3_network_uuid.clone()),
                platform,
                cpu_num: o.cpu_num,
                memory_size: o.memory_size,
                allocator_strategy: o.allocator_strategy,
                state: VmState::Starting,
                vm_nics,
                deleted_at: None,
                create_date: now,
                last_op_date: now,
            };
            let root = Volume {
                uuid: root_volume_uuid,
                name: format!("ROOT-for-{name}"),
                description: Some(format!("Root volume for VM[uuid:{uuid}]")),
                primary_storage_uuid,
                local_host_uuid: None,
                vm_instance_uuid: Some(uuid),
                root_image_uuid: Some(image_uuid),
                volume_type: "Root".into(),
                install_path: None,
                size: image_size,
                actual_size: 0,
                format: "qcow2".into(),
                device_id: Some(0),
                state: generic::EnableState::Enabled,
                status: VolumeStatus::Creating,
                create_date: now,
                last_op_date: now,
            };
            resource::refuse_duplicate::<Volume>(txn, &root.uuid)?;
            resource::save(txn, &caller.account_uuid, &vm)?;
            resource::save(txn, &caller.account_uuid, &root)?;
            Ok(VmResult::Inventory(Box::new(vm)))
        }
        VmOp::Volume(op) => super::volumes::apply(txn, ctx, caller, op),
        VmOp::Snapshot(op) => super::snapshots::apply(txn, ctx, caller, op),
        VmOp::Nic(op) => super::nics::apply(txn, ctx, caller, op),
        VmOp::Clone(op) => super::clone::apply(txn, ctx, caller, op),
        VmOp::Update { uuid, rename } => {
            visible_vm(txn, caller, &uuid)?;
            generic::modify(txn, ctx, &uuid, |_, v: &mut VmInstance| rename.apply_to(v))
                .map(|v| VmResult::Inventory(Box::new(v)))
        }
        op => {
            let uuid = op.uuid().to_string();
            let vm = visible_vm(txn, caller, &uuid)?;
            let (allowed, next) = transition(&op);
            if let VmOp::Migrate { host_uuid, .. } = &op {
                caller.require_admin("host")?;
                migration_refusal(txn, &vm, op.message(), host_uuid.as_deref())?;
                // Refused here, before the VM moves to Migrating, when no host can take it.
                let mut input = super::flows::migration_placement(txn, &vm, host_uuid.as_deref())?;
                input["strict"] = serde_json::json!(true);
                crate::registry::serve(txn, ctx, caller, "host.candidates", &input)?;
            }
            if !allowed.contains(&vm.state) {
                return Err(state_error(op.message(), &vm, allowed));
            }
            if let VmOp::Start {
                host_uuid: Some(h), ..
            } = &op
            {
                resource::require_ref(txn, "Host", h)?;
            }
            let vm = generic::modify(txn, ctx, &uuid, |_, v: &mut VmInstance| {
                v.state = next;
                Ok(())
            })?;
            Ok(VmResult::Inventory(Box::new(vm)))
        }
    }
}

/// The VM's volumes (root first, then data volumes by device id).
pub fn volumes_of(txn: &dyn StateTxn, vm_uuid: &str) -> Result<Vec<Volume>, ApiError> {
    let mut v: Vec<Volume> = resource::find::<Volume>(txn, "vmInstanceUuid", vm_uuid)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    v.sort_by_key(|x| (x.volume_type != "Root", x.device_id));
    Ok(v)
}

/// Remove a VM and its root volume's record for good (expunge, rolled-back create); its data
/// volumes stay, detached.
pub fn forget(txn: &mut dyn StateTxn, ctx: &ApplyCtx, vm_uuid: &str) -> Result<(), ApiError> {
    for v in volumes_of(txn, vm_uuid)? {
        // A data volume outlives its VM (ZStack detaches it): only the root volume goes.
        if v.volume_type == "Data" {
            generic::modify(txn, ctx, &v.uuid, |_, d: &mut Volume| {
                d.vm_instance_uuid = None;
                d.device_id = None;
                Ok(())
            })?;
            continue;
        }
        release_capacity(txn, ctx, &v.uuid)?;
        relations::delete(txn, ctx, VOLUME_KIND, &v.uuid)?;
    }
    relations::delete(txn, ctx, KIND, vm_uuid)?;
    Ok(())
}

/// Give a volume's primary-storage capacity back (`primary_storage.release`): every path that
/// removes a volume record (expunge, `Direct` deletion, a rolled-back create) goes through
/// here, so no reservation outlives its volume. Absent: nothing changes.
pub fn release_capacity(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    volume_uuid: &str,
) -> Result<(), ApiError> {
    crate::registry::serve(
        txn,
        ctx,
        &Caller::admin(),
        "primary_storage.release",
        &serde_json::json!({ "volumeUuid": volume_uuid }),
    )?;
    Ok(())
}

/// Take a volume's virtual size from its primary storage (`primary_storage.reserve`; on
/// LocalStorage from `host`'s disk). Again with another size: the difference. `exact`
/// records a file the agent already made at that size, without refusing.
pub fn reserve_capacity(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    v: &Volume,
    size: u64,
    exact: bool,
) -> Result<(), ApiError> {
    let Some(ps) = &v.primary_storage_uuid else {
        return Ok(());
    };
    crate::registry::serve(
        txn,
        ctx,
        &Caller::admin(),
        "primary_storage.reserve",
        &serde_json::json!({
            "volumeUuid": v.uuid,
            "primaryStorageUuid": ps,
            "hostUuid": v.local_host_uuid,
            "size": size,
            "exact": exact,
        }),
    )?;
    Ok(())
}

/// The jobs that expunge the Destroyed VMs whose `vm.expungePeriod` has passed at `now_ms`
/// under the `Delay` policy (`Never` keeps them until expunged by hand). Each job's uuid is
/// derived from the VM and its destroy time: two sweeps (of one leader or of two) submit it
/// once, and a VM recovered and destroyed again gets a new one.
pub fn expunge_jobs(
    txn: &dyn StateTxn,
    now_ms: u64,
) -> Result<Vec<crate::job::Submission>, ApiError> {
    if crate::settings::value(txn, "vm", "deletionPolicy")? != "Delay" {
        return Ok(Vec::new());
    }
    let period_ms = u64::try_from(crate::settings::int_value(txn, "vm", "expungePeriod")?)
        .unwrap_or(0)
        .saturating_mul(1000);
    let Some(spec) = crate::catalogue::catalogue().by_name("ExpungeVmInstance") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (_, vm) in resource::find::<VmInstance>(txn, "state", VmState::Destroyed.name())? {
        let Some(at) = vm.deleted_at else { continue };
        if at.saturating_add(period_ms) > now_ms {
            continue;
        }
        let command = crate::IntoCommand::command(
            VmOp::Expunge {
                uuid: vm.uuid.clone(),
            },
            Caller::admin(),
        );
        out.push(crate::job::Submission {
            uuid: crate::params::derive_uuid(&format!("{}-expunge-{at}", vm.uuid), 0),
            api_name: spec.name.clone(),
            reply_class: spec.reply_class.clone(),
            chain: vm.uuid.clone(),
            flow: crate::job::FlowSpec::Named {
                flow: super::flows::EXPUNGE.to_string(),
                vars: crate::flow::command_vars(&command)?,
            },
        });
    }
    Ok(out)
}
