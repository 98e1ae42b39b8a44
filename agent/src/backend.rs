//! What the agent needs from the host, behind one trait: libvirt on a real host
//! ([`crate::libvirt::LibvirtBackend`], production and the demo) or an in-memory host
//! ([`crate::simulated::SimulatedBackend`], thousands per process for scale tests).

use proto::agent::v1 as pb;

/// A host-side failure, with the cause in words an operator can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

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
    /// Whether the calls above block on I/O (libvirt, the file system) and must run off the
    /// async workers; the simulator answers from memory.
    fn blocking(&self) -> bool {
        true
    }
}
