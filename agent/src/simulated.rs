//! In-memory hosts for scale tests, the way ZStack's simulator stands in for KVM hosts: each
//! simulated host has its own facts, domain list and storage figures, and nothing touches the
//! machine running it. Never used by production or the demo.

use std::sync::Mutex;

use proto::agent::v1 as pb;

use crate::backend::BackendError;
use crate::backend::HostBackend;
use crate::backend::StorageSpec;

/// Simulated disk size of every primary storage of a simulated host.
const STORAGE_TOTAL: u64 = 10 << 40;

/// One simulated host.
#[derive(Debug)]
pub struct SimulatedBackend {
    name: String,
    domains: Mutex<Vec<pb::Domain>>,
}

impl SimulatedBackend {
    /// Simulated host `name` (its address, so facts tell hosts apart).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            domains: Mutex::new(Vec::new()),
        }
    }

    /// Put a domain on the host (what `virsh define; virsh start` would do), for tests of the
    /// leader's view of domain changes.
    pub fn set_domain(&self, d: pb::Domain) {
        let mut g = self
            .domains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.retain(|x| x.uuid != d.uuid);
        g.push(d);
        g.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    }
}

impl HostBackend for SimulatedBackend {
    fn facts(&self) -> Result<pb::HostFacts, BackendError> {
        Ok(pb::HostFacts {
            hostname: format!("sim-{}", self.name),
            architecture: "x86_64".into(),
            cpu_model: "Simulated CPU".into(),
            cpu_threads: 32,
            cpu_sockets: 2,
            cpu_cores_per_socket: 8,
            cpu_threads_per_core: 2,
            cpu_mhz: 2400,
            memory_bytes: 128 << 30,
            hypervisor_type: "SIMULATED".into(),
            hypervisor_version: env!("CARGO_PKG_VERSION").into(),
            libvirt_version: String::new(),
            virtualization: "simulated".into(),
            os_distribution: "simulated".into(),
            os_release: String::new(),
            os_version: String::new(),
            libvirt_uri: String::new(),
        })
    }

    fn domains(&self) -> Result<Vec<pb::Domain>, BackendError> {
        Ok(self
            .domains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn prepare_storage(&self, s: &StorageSpec) -> Result<(), BackendError> {
        if !s.dir().starts_with('/') {
            return Err(BackendError(format!(
                "{:?} must be an absolute path",
                s.dir()
            )));
        }
        Ok(())
    }

    fn storage_capacity(&self, s: &StorageSpec) -> pb::StorageCapacity {
        pb::StorageCapacity {
            primary_storage_uuid: s.uuid.clone(),
            total_bytes: STORAGE_TOTAL,
            available_bytes: STORAGE_TOTAL / 10 * 8,
            healthy: true,
            error: String::new(),
        }
    }

    fn blocking(&self) -> bool {
        false
    }
}
