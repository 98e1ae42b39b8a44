//! The host allocator chain: each filter keeps or rejects one host, with a reason carrying the
//! numbers. The order is ZStack's (`DesignatedHostAllocatorFlow` first, capacity before storage,
//! affinity last), so "the filter that removed the last candidates" names the same flow a ZStack
//! operator would see.

mod affinity;
mod capacity;
mod network;
mod scope;
pub(crate) mod state;

use std::collections::HashSet;
use std::fmt;

use crate::capacity::Charge;
use crate::capacity::VolumeCharge;
use crate::config::AllocatorConfig;
use crate::error::BadRequest;
use crate::request::PlacementRequest;
use crate::strategy::mix;
use crate::strategy::rotation;
use crate::strategy::AllocatorStrategy;
use crate::strategy::Metric;
use crate::strategy::Rank;
use crate::strategy::NO_DATA_CLASS;
use crate::view::AffinityPolicy;
use crate::view::EnableState;
use crate::view::HostView;
use crate::view::PlacementView;

/// A filter of the chain, displayed by its ZStack-style name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterName {
    /// Requested zone, cluster and host.
    DesignatedHost,
    /// Host state Enabled and status Connected.
    HostStateAndHypervisor,
    /// The host's cluster and zone Enabled.
    ClusterAndZoneState,
    /// Excluded hosts (current host on migration, failed host on HA restart).
    AvoidHost,
    /// A VM whose root volume is on LocalStorage starts only on that host.
    LocalStorage,
    /// Every requested L3's L2 attached to the host's cluster.
    AttachedL2Network,
    /// A backup storage holding the image attached to the host's zone.
    ImageBackupStorage,
    /// CPU and memory after over-provisioning and reserved memory.
    HostCapacity,
    /// A primary storage of the cluster can hold the new root volume, below the threshold.
    HostPrimaryStorage,
    /// `MaxInstancePerHostHostAllocatorStrategy`'s limit.
    MaxInstancePerHost,
    /// antiHard affinity group: no host holding another member.
    AffinityGroup,
    /// Hard-mode usage strategy: the host must have samples in the window.
    HostUsageData,
}

impl FilterName {
    /// The name in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterName::DesignatedHost => "DesignatedHostAllocatorFlow",
            FilterName::HostStateAndHypervisor => "HostStateAndHypervisorAllocatorFlow",
            FilterName::ClusterAndZoneState => "ClusterAndZoneStateAllocatorFlow",
            FilterName::AvoidHost => "AvoidHostAllocatorFlow",
            FilterName::LocalStorage => "LocalStorageAllocatorFlow",
            FilterName::AttachedL2Network => "AttachedL2NetworkAllocatorFlow",
            FilterName::ImageBackupStorage => "ImageBackupStorageAllocatorFlow",
            FilterName::HostCapacity => "HostCapacityAllocatorFlow",
            FilterName::HostPrimaryStorage => "HostPrimaryStorageAllocatorFlow",
            FilterName::MaxInstancePerHost => "MaxInstancePerHostAllocatorFlow",
            FilterName::AffinityGroup => "AffinityGroupAllocatorFlow",
            FilterName::HostUsageData => "HostUsageDataAllocatorFlow",
        }
    }
}

impl fmt::Display for FilterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The chain, in order.
pub const CHAIN: [FilterName; 12] = [
    FilterName::DesignatedHost,
    FilterName::HostStateAndHypervisor,
    FilterName::ClusterAndZoneState,
    FilterName::AvoidHost,
    FilterName::LocalStorage,
    FilterName::AttachedL2Network,
    FilterName::ImageBackupStorage,
    FilterName::HostCapacity,
    FilterName::HostPrimaryStorage,
    FilterName::MaxInstancePerHost,
    FilterName::AffinityGroup,
    FilterName::HostUsageData,
];

/// One requested L3 and the clusters its L2 reaches.
#[derive(Debug, Clone)]
pub(crate) struct NetworkReach {
    pub l3: String,
    pub l2: String,
    pub clusters: HashSet<String>,
}

/// The VM's enabled affinity group and where its other members hold reservations.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub uuid: String,
    pub policy: AffinityPolicy,
    /// member host → one member VM there (for the error text).
    pub member_hosts: std::collections::HashMap<String, String>,
}

/// A request resolved against the view once, so each host check is a few lookups.
pub struct Ctx<'a, V: PlacementView + ?Sized> {
    pub(crate) view: &'a V,
    pub(crate) req: &'a PlacementRequest,
    pub(crate) config: AllocatorConfig,
    pub(crate) charge: Charge,
    pub(crate) networks: Vec<NetworkReach>,
    /// The image and the zones its usable backup storages are attached to.
    pub(crate) image_zones: Option<(String, HashSet<String>)>,
    pub(crate) group: Option<Group>,
    pub(crate) excluded: HashSet<String>,
    /// `mix(seed)`: the tie-break offset.
    pub(crate) spin: u64,
}

fn unknown(kind: &'static str, uuid: &str) -> BadRequest {
    BadRequest::UnknownResource {
        kind,
        uuid: uuid.to_string(),
    }
}

impl<'a, V: PlacementView + ?Sized> Ctx<'a, V> {
    /// Validate `req` against `view` and resolve what the filters need. Every bad-input error
    /// comes from here, before any host is looked at.
    pub fn prepare(view: &'a V, req: &'a PlacementRequest) -> Result<Self, BadRequest> {
        if req.spec.cpu_num == 0 {
            return Err(BadRequest::NonPositiveCpu { value: 0 });
        }
        if req.spec.memory_size == 0 {
            return Err(BadRequest::NonPositiveMemory { value: 0 });
        }
        if req.root_volume_size == Some(0) {
            return Err(BadRequest::NonPositiveRootVolume { value: 0 });
        }
        scope::validate(view, req)?;
        let mut networks = Vec::with_capacity(req.l3_network_uuids.len());
        for l3_uuid in &req.l3_network_uuids {
            let l3 = view
                .l3_network(l3_uuid)
                .ok_or_else(|| unknown("L3Network", l3_uuid))?;
            let l2 = view
                .l2_network(&l3.l2_network_uuid)
                .ok_or_else(|| unknown("L2Network", &l3.l2_network_uuid))?;
            networks.push(NetworkReach {
                l3: l3.uuid,
                l2: l2.uuid,
                clusters: l2.attached_cluster_uuids.into_iter().collect(),
            });
        }
        let image_zones = match &req.image_uuid {
            None => None,
            Some(uuid) => {
                let image = view.image(uuid).ok_or_else(|| unknown("Image", uuid))?;
                let zones = image
                    .backup_storage_uuids
                    .iter()
                    .filter_map(|bs| view.backup_storage(bs))
                    .filter(|bs| bs.usable)
                    .flat_map(|bs| bs.attached_zone_uuids)
                    .collect();
                Some((image.uuid, zones))
            }
        };
        if let Some(ps) = &req.primary_storage_uuid {
            view.primary_storage(ps)
                .ok_or_else(|| unknown("PrimaryStorage", ps))?;
        }
        let group = match &req.affinity_group_uuid {
            None => None,
            Some(uuid) => {
                let g = view
                    .affinity_group(uuid)
                    .ok_or_else(|| unknown("AffinityGroup", uuid))?;
                // A disabled group's members ignore the policy (spec 02 §5.2).
                (g.state == EnableState::Enabled).then(|| Group {
                    member_hosts: g
                        .vm_uuids
                        .iter()
                        .filter(|vm| **vm != req.vm_uuid)
                        .filter_map(|vm| view.vm_host(vm).map(|h| (h, vm.clone())))
                        .collect(),
                    uuid: g.uuid,
                    policy: g.policy,
                })
            }
        };
        let config = view.config();
        Ok(Ctx {
            view,
            req,
            charge: Charge::of(req.spec, &config),
            config,
            networks,
            image_zones,
            group,
            excluded: req.excluded_host_uuids.iter().cloned().collect(),
            spin: mix(req.seed),
        })
    }

    /// Whether `filter` has anything to check for this request.
    pub fn applies(&self, filter: FilterName) -> bool {
        match filter {
            FilterName::DesignatedHost => {
                self.req.zone_uuid.is_some()
                    || self.req.cluster_uuid.is_some()
                    || self.req.host_uuid.is_some()
            }
            FilterName::AvoidHost => !self.excluded.is_empty(),
            FilterName::LocalStorage => self.req.root_volume_host_uuid.is_some(),
            FilterName::AttachedL2Network => !self.networks.is_empty(),
            FilterName::ImageBackupStorage => self.image_zones.is_some(),
            FilterName::HostPrimaryStorage => self.req.root_volume_size.is_some(),
            FilterName::MaxInstancePerHost => {
                matches!(self.req.strategy, AllocatorStrategy::MaxInstancePerHost(_))
            }
            FilterName::AffinityGroup => self
                .group
                .as_ref()
                .is_some_and(|g| g.policy == AffinityPolicy::AntiHard),
            FilterName::HostUsageData => self.req.strategy.hard_usage().is_some(),
            FilterName::HostStateAndHypervisor
            | FilterName::ClusterAndZoneState
            | FilterName::HostCapacity => true,
        }
    }

    /// Run one filter on one host.
    pub fn check(&self, filter: FilterName, host: &HostView) -> Result<(), String> {
        match filter {
            FilterName::DesignatedHost => scope::designated(self, host),
            FilterName::HostStateAndHypervisor => state::host_state(host),
            FilterName::ClusterAndZoneState => state::cluster_and_zone(self.view, host),
            FilterName::AvoidHost => scope::avoid(self, host),
            FilterName::LocalStorage => scope::local_storage(self, host),
            FilterName::AttachedL2Network => network::attached_l2(self, host),
            FilterName::ImageBackupStorage => network::image_backup_storage(self, host),
            FilterName::HostCapacity => capacity::host_capacity(self, host),
            FilterName::HostPrimaryStorage => capacity::primary_storage(self, host).map(|_| ()),
            FilterName::MaxInstancePerHost => scope::max_instance(self, host),
            FilterName::AffinityGroup => affinity::anti_hard(self, host),
            FilterName::HostUsageData => affinity::usage_data(self, host),
        }
    }

    /// Every applicable filter on one host; the first rejection.
    pub fn check_all(&self, host: &HostView) -> Result<(), (FilterName, String)> {
        for f in CHAIN {
            if self.applies(f) {
                self.check(f, host).map_err(|why| (f, why))?;
            }
        }
        Ok(())
    }

    /// The primary storage and bytes the new root volume takes on `host` (`None` without one).
    pub fn volume_charge(&self, host: &HostView) -> Result<Option<VolumeCharge>, String> {
        if self.req.root_volume_size.is_none() {
            return Ok(None);
        }
        capacity::primary_storage(self, host).map(Some)
    }

    /// Whether `host` holds another member of the VM's antiSoft group.
    pub fn soft_member(&self, host_uuid: &str) -> bool {
        self.group.as_ref().is_some_and(|g| {
            g.policy == AffinityPolicy::AntiSoft && g.member_hosts.contains_key(host_uuid)
        })
    }

    /// The strategy's measure for a host (VM count, or usage ‰ / [`NO_DATA_CLASS`]).
    pub fn class(&self, host: &HostView) -> u64 {
        match self.req.strategy.usage_metric() {
            None => u64::from(host.vm_count),
            Some(metric) => {
                let usage = self.view.host_usage(&host.uuid);
                let v = match metric {
                    Metric::Cpu => usage.cpu_permille,
                    Metric::Memory => usage.memory_permille,
                };
                v.map_or(NO_DATA_CLASS, u64::from)
            }
        }
    }

    /// The host's rank: antiSoft members after everything else, then the last host first (for
    /// `LastHostPreferredAllocatorStrategy`), then the strategy's measure, then the seeded spin.
    pub fn rank(&self, host: &HostView) -> Rank {
        let member = u8::from(self.soft_member(&host.uuid));
        let not_last = u8::from(
            self.req.strategy == AllocatorStrategy::LastHostPreferred
                && self.req.last_host_uuid.as_deref() != Some(host.uuid.as_str()),
        );
        Rank {
            tier: member * 2 + not_last,
            class: self.class(host),
            spin: rotation(&host.uuid).wrapping_sub(self.spin),
            uuid: host.uuid.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
