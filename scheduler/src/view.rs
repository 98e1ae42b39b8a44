//! The read view placement needs, and nothing more. Field meanings and units mirror the `api`
//! records (`families/host/model.rs`, `cluster`, `zone`, `primary_storage`, `l2`, `l3`, `image`,
//! `backup_storage`), but these are this crate's own plain structs: `api` is the crate that will
//! depend on `scheduler` (the reservation apply calls [`crate::capacity::fits`]), so the arrow
//! cannot point back, and the node's implementation of [`PlacementView`] over the replicated
//! state is a thin mapping.

use crate::capacity::Allocated;
use crate::capacity::HostCapacity;
use crate::capacity::PsCapacity;
use crate::config::AllocatorConfig;

/// Enabled/Disabled of zones, clusters, affinity groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableState {
    /// In use.
    Enabled,
    /// Takes nothing new.
    Disabled,
}

/// A host's admin-driven state (spec 03 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Accepts new VMs.
    Enabled,
    /// Accepts no new VMs.
    Disabled,
    /// Entering maintenance.
    PreMaintenance,
    /// In maintenance.
    Maintenance,
}

/// A host's connection status (spec 03 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    /// Being connected.
    Connecting,
    /// Reachable.
    Connected,
    /// Not reachable.
    Disconnected,
}

/// A zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneView {
    /// uuid.
    pub uuid: String,
    /// Admin state.
    pub state: EnableState,
}

/// A cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// uuid.
    pub uuid: String,
    /// Its zone.
    pub zone_uuid: String,
    /// Admin state.
    pub state: EnableState,
}

/// A host with what is reserved on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    /// uuid.
    pub uuid: String,
    /// Zone of its cluster.
    pub zone_uuid: String,
    /// Its cluster.
    pub cluster_uuid: String,
    /// Admin state.
    pub state: HostState,
    /// Connection status.
    pub status: HostStatus,
    /// Threads, memory and the reserved memory resolved for this host (host tag, else
    /// `kvm.reservedMemory`).
    pub capacity: HostCapacity,
    /// Sum of the charges of the reservations on this host.
    pub allocated: Allocated,
    /// VMs holding a reservation here (Running and the transitional states that hold resources).
    pub vm_count: u32,
}

/// Primary-storage types in scope (decision 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsType {
    /// Each host's local directory: capacity per host, volumes bound to their host.
    LocalStorage,
    /// NFS.
    Nfs,
    /// Shared mount point.
    SharedMountPoint,
}

/// A primary storage usable for new volumes only when Enabled and Connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryStorageView {
    /// uuid.
    pub uuid: String,
    /// Type.
    pub ps_type: PsType,
    /// Enabled (not Disabled/Maintenance/Deleting).
    pub enabled: bool,
    /// Connected.
    pub connected: bool,
    /// The PS totals (for LocalStorage the sum of the host refs; placement reads the ref).
    pub capacity: PsCapacity,
    /// Clusters it is attached to.
    pub attached_cluster_uuids: Vec<String>,
}

/// An L3 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L3View {
    /// uuid.
    pub uuid: String,
    /// Its L2.
    pub l2_network_uuid: String,
}

/// An L2 network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2View {
    /// uuid.
    pub uuid: String,
    /// Clusters it is attached to.
    pub attached_cluster_uuids: Vec<String>,
}

/// An image and where its bits are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageView {
    /// uuid.
    pub uuid: String,
    /// Backup storages holding a Ready copy.
    pub backup_storage_uuids: Vec<String>,
}

/// A backup storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStorageView {
    /// uuid.
    pub uuid: String,
    /// Enabled and Connected.
    pub usable: bool,
    /// Zones it is attached to.
    pub attached_zone_uuids: Vec<String>,
}

/// Affinity-group policy (spec 02 §2.5; API values `antiSoft`/`antiHard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityPolicy {
    /// Different hosts as far as possible.
    AntiSoft,
    /// Strictly different hosts.
    AntiHard,
}

impl AffinityPolicy {
    /// The API value.
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityPolicy::AntiSoft => "antiSoft",
            AffinityPolicy::AntiHard => "antiHard",
        }
    }
}

/// An affinity group (type HOST, zone scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityGroupView {
    /// uuid.
    pub uuid: String,
    /// Policy.
    pub policy: AffinityPolicy,
    /// A disabled group's members ignore the policy.
    pub state: EnableState,
    /// Member VMs.
    pub vm_uuids: Vec<String>,
}

/// A host's reported usage averaged over the collection window
/// (`…collectHostDataDuration`, default 10 minutes), in permille; `None` without samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostUsage {
    /// Average CPU utilisation, ‰.
    pub cpu_permille: Option<u32>,
    /// Average memory utilisation, ‰.
    pub memory_permille: Option<u32>,
}

/// What the allocator reads. Lookups return owned records so an implementation may decode them
/// from the replicated state on the fly.
pub trait PlacementView {
    /// The global settings in force.
    fn config(&self) -> AllocatorConfig;
    /// Every host, for a full scan (the explanation of a failure, the naive pipeline).
    fn host_uuids(&self) -> Vec<String>;
    /// A host.
    fn host(&self, uuid: &str) -> Option<HostView>;
    /// A cluster.
    fn cluster(&self, uuid: &str) -> Option<ClusterView>;
    /// A zone.
    fn zone(&self, uuid: &str) -> Option<ZoneView>;
    /// The primary storages attached to a cluster.
    fn cluster_primary_storages(&self, cluster_uuid: &str) -> Vec<PrimaryStorageView>;
    /// A primary storage.
    fn primary_storage(&self, uuid: &str) -> Option<PrimaryStorageView>;
    /// A LocalStorage PS's capacity on one host (`LocalStorageHostRef`).
    fn local_storage_host_capacity(&self, ps_uuid: &str, host_uuid: &str) -> Option<PsCapacity>;
    /// An L3 network.
    fn l3_network(&self, uuid: &str) -> Option<L3View>;
    /// An L2 network.
    fn l2_network(&self, uuid: &str) -> Option<L2View>;
    /// An image.
    fn image(&self, uuid: &str) -> Option<ImageView>;
    /// A backup storage.
    fn backup_storage(&self, uuid: &str) -> Option<BackupStorageView>;
    /// An affinity group.
    fn affinity_group(&self, uuid: &str) -> Option<AffinityGroupView>;
    /// The host where a VM holds its reservation, if any.
    fn vm_host(&self, vm_uuid: &str) -> Option<String>;
    /// A host's averaged usage.
    fn host_usage(&self, host_uuid: &str) -> HostUsage;
}
