//! A placement request: the VM's size and every constraint the filters read.

use crate::capacity::VmSpec;
use crate::error::BadRequest;
use crate::strategy::AllocatorStrategy;

/// A validated VM size from the wire's signed numbers (zero and negative refused).
pub fn vm_spec(cpu_num: i64, memory_size: i64) -> Result<VmSpec, BadRequest> {
    let cpu_num = u64::try_from(cpu_num)
        .ok()
        .filter(|c| *c >= 1)
        .ok_or(BadRequest::NonPositiveCpu { value: cpu_num })?;
    let memory_size = u64::try_from(memory_size)
        .ok()
        .filter(|m| *m >= 1)
        .ok_or(BadRequest::NonPositiveMemory { value: memory_size })?;
    Ok(VmSpec {
        cpu_num,
        memory_size,
    })
}

/// A validated root-volume size.
pub fn root_volume_size(size: i64) -> Result<u64, BadRequest> {
    u64::try_from(size)
        .ok()
        .filter(|s| *s >= 1)
        .ok_or(BadRequest::NonPositiveRootVolume { value: size })
}

/// Where a VM may go and how to choose. Create, start, migrate and HA restart all fill this in;
/// what differs is which constraints they set (spec 02 §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The VM (excluded from its own affinity group's members).
    pub vm_uuid: String,
    /// Its size.
    pub spec: VmSpec,
    /// Virtual size of a new root volume (create); `None` when the root volume exists.
    pub root_volume_size: Option<u64>,
    /// The primary storage asked for the new root volume.
    pub primary_storage_uuid: Option<String>,
    /// The image, when creating from one: its backup storage must be reachable from the zone.
    pub image_uuid: Option<String>,
    /// The VM's L3 networks: each one's L2 must be attached to the host's cluster.
    pub l3_network_uuids: Vec<String>,
    /// Requested zone.
    pub zone_uuid: Option<String>,
    /// Requested cluster.
    pub cluster_uuid: Option<String>,
    /// Designated host.
    pub host_uuid: Option<String>,
    /// Hosts never chosen: the current one on migration, the failed one on HA restart.
    pub excluded_host_uuids: Vec<String>,
    /// The host holding the VM's root volume on LocalStorage: the VM starts only there.
    pub root_volume_host_uuid: Option<String>,
    /// The VM's affinity group.
    pub affinity_group_uuid: Option<String>,
    /// How to choose among the survivors.
    pub strategy: AllocatorStrategy,
    /// The VM's last host (for `LastHostPreferredAllocatorStrategy`).
    pub last_host_uuid: Option<String>,
    /// Tie-break seed: the proposer stamps it (e.g. from the job uuid) so a retry is repeatable.
    pub seed: u64,
}

impl PlacementRequest {
    /// A request with no constraints beyond the size, under the default strategy.
    pub fn new(
        vm_uuid: impl Into<String>,
        cpu_num: i64,
        memory_size: i64,
    ) -> Result<Self, BadRequest> {
        Ok(PlacementRequest {
            vm_uuid: vm_uuid.into(),
            spec: vm_spec(cpu_num, memory_size)?,
            root_volume_size: None,
            primary_storage_uuid: None,
            image_uuid: None,
            l3_network_uuids: Vec::new(),
            zone_uuid: None,
            cluster_uuid: None,
            host_uuid: None,
            excluded_host_uuids: Vec::new(),
            root_volume_host_uuid: None,
            affinity_group_uuid: None,
            strategy: AllocatorStrategy::default(),
            last_host_uuid: None,
            seed: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_be_positive() {
        let cases: &[(i64, i64, &str)] = &[
            (0, 1, "cpuNum must be ≥ 1, got 0"),
            (-2, 1, "cpuNum must be ≥ 1, got -2"),
            (1, 0, "memorySize must be ≥ 1 byte, got 0"),
            (1, -1, "memorySize must be ≥ 1 byte, got -1"),
        ];
        for (cpu, mem, text) in cases {
            assert_eq!(vm_spec(*cpu, *mem).unwrap_err().to_string(), *text);
        }
        assert_eq!(
            root_volume_size(0).unwrap_err().to_string(),
            "root volume size must be ≥ 1 byte, got 0"
        );
        assert_eq!(vm_spec(2, 1 << 30).unwrap().cpu_num, 2);
    }
}
