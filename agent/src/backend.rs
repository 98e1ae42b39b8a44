//! What the agent needs from the host, behind one trait: libvirt on a real host
//! ([`crate::libvirt::LibvirtBackend`], production and the demo) or an in-memory host
//! ([`crate::simulated::SimulatedBackend`], thousands per process for scale tests).

use proto::agent::v1 as pb;

/// A host-side failure, with the cause in words an operator can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Why a VM or volume operation did not happen, by who can fix it: the caller's request
/// (`Invalid`), the host's state (`NotFound`, `WrongState`), or the host itself (`Failed`,
/// `Unavailable`). The service maps each to one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The request is wrong whatever the host's state (a bad spec, uuid or path).
    #[error("{0}")]
    Invalid(String),
    /// The VM has no domain on this host.
    #[error("{0}")]
    NotFound(String),
    /// The host's state does not allow it now (a paused VM rebooted, a volume in use).
    #[error("{0}")]
    WrongState(String),
    /// The hypervisor or a tool refused or failed (libvirt's error, qemu-img's stderr).
    #[error("{0}")]
    Failed(String),
    /// The hypervisor cannot be reached (libvirtd down); asking again later may work.
    #[error("{0}")]
    Unavailable(String),
}

impl From<BackendError> for OpError {
    fn from(e: BackendError) -> Self {
        OpError::Unavailable(e.0)
    }
}

/// How a VM is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// ACPI power button, then destroyed when still running after the timeout.
    Grace(std::time::Duration),
    /// Destroyed at once.
    Cold,
}

/// A volume to create on a primary storage (checked by the service: uuid, storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    /// 32 lowercase hex digits; the file is `<storage dir>/volumes/<uuid>.qcow2`.
    pub volume_uuid: String,
    /// The image file a root volume is an overlay of; `None` for a blank data volume.
    pub backing: Option<String>,
    /// Virtual size; a root volume is at least its image's (0 = the image's).
    pub size_bytes: u64,
}

/// Kinds of primary storage an agent prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StorageKind {
    /// A directory on the host's own disks; capacity is per host.
    LocalStorage,
    /// A directory on a file system every host of the cluster mounts already.
    SharedMountPoint,
    /// An NFS export the agent mounts.
    Nfs,
}

impl StorageKind {
    /// The ZStack type name ("LocalStorage", "SharedMountPoint", "NFS").
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LocalStorage" => Some(Self::LocalStorage),
            "SharedMountPoint" => Some(Self::SharedMountPoint),
            "NFS" => Some(Self::Nfs),
            _ => None,
        }
    }
}

/// A primary storage prepared on this host, remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageSpec {
    /// The primary storage's uuid.
    pub uuid: String,
    /// Its kind.
    pub kind: StorageKind,
    /// Directory (Local, SharedMountPoint) or `server:/export` (NFS).
    pub url: String,
    /// Where NFS is mounted; the directory itself for the others.
    pub mount_point: String,
}

impl StorageSpec {
    /// The directory that holds the storage's files.
    pub fn dir(&self) -> &str {
        match self.kind {
            StorageKind::Nfs => &self.mount_point,
            _ => &self.url,
        }
    }
}

/// One host as the agent sees it.
pub trait HostBackend: Send + Sync {
    /// Facts about the host (CPU, memory, versions, virtualisation).
    fn facts(&self) -> Result<pb::HostFacts, BackendError>;
    /// Every domain the hypervisor knows, running or defined.
    fn domains(&self) -> Result<Vec<pb::Domain>, BackendError>;
    /// Make the storage usable (create its directory, mount it). Idempotent.
    fn prepare_storage(&self, s: &StorageSpec) -> Result<(), BackendError>;
    /// The storage's capacity now; unhealthy when its directory is gone or unreadable.
    fn storage_capacity(&self, s: &StorageSpec) -> pb::StorageCapacity;
    /// Define the VM's domain from `spec` (checked by [`crate::domain_xml::validate`]) and
    /// start it; a domain of that VM already running or paused is answered as it is.
    fn start_vm(&self, spec: &pb::VmSpec) -> Result<pb::Domain, OpError>;
    /// Stop the VM and undefine its domain; a VM the host does not have is already stopped.
    fn stop_vm(&self, vm_uuid: &str, mode: StopMode) -> Result<(), OpError>;
    /// Reboot a running VM (the domain stays running).
    fn reboot_vm(&self, vm_uuid: &str) -> Result<pb::Domain, OpError>;
    /// Pause a running VM; a paused one is answered as it is.
    fn pause_vm(&self, vm_uuid: &str) -> Result<pb::Domain, OpError>;
    /// Resume a paused VM; a running one is answered as it is.
    fn resume_vm(&self, vm_uuid: &str) -> Result<pb::Domain, OpError>;
    /// Destroy the VM (power cut) and undefine its domain; absent is already destroyed.
    fn destroy_vm(&self, vm_uuid: &str) -> Result<(), OpError>;
    /// Incoming side of a live migration (`PrepareMigrationRequest`): the disks must be here;
    /// the test driver defines the domain without starting it, QEMU defines nothing (libvirt
    /// makes the incoming domain during the migration). An active domain answers as it is.
    fn prepare_migration(&self, spec: &pb::VmSpec) -> Result<Option<pb::Domain>, OpError>;
    /// Outgoing side (`MigrateVmRequest`): the domain leaves this host, live to
    /// `destination_uri` under QEMU, destroyed and undefined under the test driver. Absent is
    /// already migrated.
    fn migrate_vm(&self, vm_uuid: &str, destination_uri: &str) -> Result<(), OpError>;
    /// Create the volume's file on a prepared storage; an existing one is answered as it is.
    fn create_volume(&self, s: &StorageSpec, v: &VolumeRequest) -> Result<pb::VolumeFile, OpError>;
    /// Remove the volume's file (whether there was one); refused while a domain uses it.
    fn delete_volume(&self, s: &StorageSpec, volume_uuid: &str) -> Result<bool, OpError>;
    /// Plug `disk` (a volume file of this host) into the running or paused domain of `vm`;
    /// a domain already using the file is answered as it is.
    fn attach_disk(&self, vm: &str, disk: &pb::DiskSpec) -> Result<pb::Domain, OpError>;
    /// Unplug the file `path` from the domain of `vm`; a domain without it (or no domain) is
    /// answered as it is.
    fn detach_disk(&self, vm: &str, path: &str) -> Result<Option<pb::Domain>, OpError>;
    /// Grow the volume's file to `size_bytes` (a larger file is answered as it is): through
    /// the running domain `vm` that uses it, else offline (refused while a domain uses it).
    fn resize_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        size_bytes: u64,
        vm: Option<&str>,
    ) -> Result<pb::VolumeFile, OpError>;
    /// Take snapshot `snapshot_uuid` of the volume (`CreateVolumeSnapshotRequest`); `vm` is
    /// the running domain using it, if any. Idempotent by the snapshot's uuid.
    fn snapshot_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
        vm: Option<&str>,
    ) -> Result<pb::VolumeSnapshotReply, OpError>;
    /// Revert the volume to the snapshot (`RevertVolumeSnapshotRequest`); refused while a
    /// domain uses the volume.
    fn revert_volume(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuid: &str,
    ) -> Result<pb::VolumeSnapshotReply, OpError>;
    /// Remove the snapshots' files, rebasing the volume off them first when its chain passes
    /// through one (`DeleteVolumeSnapshotsRequest`).
    fn delete_volume_snapshots(
        &self,
        s: &StorageSpec,
        volume_uuid: &str,
        snapshot_uuids: &[String],
    ) -> Result<pb::VolumeSnapshotReply, OpError>;
    /// Plug `nic` into the running or paused domain of `vm`; a domain that has an interface
    /// of that MAC already is answered as it is.
    fn attach_nic(&self, vm: &str, nic: &pb::NicSpec) -> Result<pb::Domain, OpError>;
    /// Unplug the interface of `mac` from the domain of `vm`; a domain without it (or no
    /// domain) is answered as it is.
    fn detach_nic(&self, vm: &str, mac: &str) -> Result<Option<pb::Domain>, OpError>;
    /// Make volume `uuid` on `dst` a full, standalone copy of volume `source` on `src`; refused
    /// while a domain uses the source (a clone copies a quiescent disk). A finished copy is
    /// answered as it is.
    fn clone_volume(
        &self,
        src: &StorageSpec,
        source: &str,
        dst: &StorageSpec,
        uuid: &str,
    ) -> Result<pb::VolumeFile, OpError>;
    /// Whether the calls above block on I/O (libvirt, the file system) and must run off the
    /// async workers; the simulator answers from memory.
    fn blocking(&self) -> bool {
        true
    }
}
