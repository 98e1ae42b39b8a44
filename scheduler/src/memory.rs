//! An in-memory [`PlacementView`] for tests and benchmarks, with `reserve`/`release` modelling
//! what the reservation command's apply will do on the replicated counters: re-check with
//! [`crate::capacity::fits`], take exactly the charge, give exactly it back.

use std::collections::BTreeMap;
use std::collections::HashMap;

use thiserror::Error;

use crate::capacity::Limits;
use crate::capacity::PsCapacity;
use crate::capacity::ReleaseError;
use crate::capacity::Reservation;
use crate::capacity::Shortfall;
use crate::config::AllocatorConfig;
use crate::view::AffinityGroupView;
use crate::view::BackupStorageView;
use crate::view::ClusterView;
use crate::view::HostUsage;
use crate::view::HostView;
use crate::view::ImageView;
use crate::view::L2View;
use crate::view::L3View;
use crate::view::PlacementView;
use crate::view::PrimaryStorageView;
use crate::view::ZoneView;

/// Everything placement reads, in maps. Hosts are kept in a `BTreeMap` so a full scan visits
/// them in a stable order.
#[derive(Debug, Clone, Default)]
pub struct InMemoryView {
    /// Global settings.
    pub config: AllocatorConfig,
    /// Zones.
    pub zones: HashMap<String, ZoneView>,
    /// Clusters.
    pub clusters: HashMap<String, ClusterView>,
    /// Hosts.
    pub hosts: BTreeMap<String, HostView>,
    /// Primary storages.
    pub primary_storages: HashMap<String, PrimaryStorageView>,
    /// `(ps, host)` → LocalStorage host ref.
    pub local_refs: HashMap<(String, String), PsCapacity>,
    /// L3 networks.
    pub l3_networks: HashMap<String, L3View>,
    /// L2 networks.
    pub l2_networks: HashMap<String, L2View>,
    /// Images.
    pub images: HashMap<String, ImageView>,
    /// Backup storages.
    pub backup_storages: HashMap<String, BackupStorageView>,
    /// Affinity groups.
    pub affinity_groups: HashMap<String, AffinityGroupView>,
    /// VM → host holding its reservation.
    pub vm_hosts: HashMap<String, String>,
    /// Host usage averages.
    pub usage: HashMap<String, HostUsage>,
    /// cluster → attached PS uuids (derived by [`InMemoryView::add_primary_storage`]).
    cluster_ps: HashMap<String, Vec<String>>,
}

/// A reservation the in-memory apply refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReserveError {
    /// The host is gone.
    #[error("host {0} not found")]
    UnknownHost(String),
    /// The VM already holds a reservation.
    #[error("vm {vm} already holds a reservation on host {host}")]
    AlreadyReserved {
        /// The VM.
        vm: String,
        /// Where.
        host: String,
    },
    /// The committed counters no longer have room (a concurrent placement won).
    #[error("host {host}: {shortfall}")]
    NoRoom {
        /// The host.
        host: String,
        /// The numbers.
        shortfall: Shortfall,
    },
    /// The primary storage no longer has room.
    #[error("primary storage {ps}: not enough capacity left for {bytes} bytes")]
    NoStorage {
        /// The PS.
        ps: String,
        /// Deflated bytes asked.
        bytes: u64,
    },
    /// The release does not match.
    #[error("host {host}: {source}")]
    Release {
        /// The host.
        host: String,
        /// Why.
        source: ReleaseError,
    },
    /// The VM holds no reservation on that host.
    #[error("vm {vm} holds no reservation on host {host}")]
    NotReserved {
        /// The VM.
        vm: String,
        /// The host named.
        host: String,
    },
}

impl InMemoryView {
    /// Add a primary storage and index its clusters.
    pub fn add_primary_storage(&mut self, ps: PrimaryStorageView) {
        for c in &ps.attached_cluster_uuids {
            self.cluster_ps
                .entry(c.clone())
                .or_default()
                .push(ps.uuid.clone());
        }
        self.primary_storages.insert(ps.uuid.clone(), ps);
    }

    /// Apply a reservation: re-check the host's committed counters, then take the charge (and
    /// the root volume's bytes). Nothing changes on error.
    pub fn reserve(&mut self, r: &Reservation) -> Result<(), ReserveError> {
        if let Some(host) = self.vm_hosts.get(&r.vm_uuid) {
            return Err(ReserveError::AlreadyReserved {
                vm: r.vm_uuid.clone(),
                host: host.clone(),
            });
        }
        let config = self.config;
        let host = self
            .hosts
            .get(&r.host_uuid)
            .ok_or_else(|| ReserveError::UnknownHost(r.host_uuid.clone()))?;
        let limits = Limits::of(host.capacity, &config);
        let mut allocated = host.allocated;
        allocated
            .take(limits, r.charge)
            .map_err(|shortfall| ReserveError::NoRoom {
                host: r.host_uuid.clone(),
                shortfall,
            })?;
        if let Some(v) = &r.volume {
            let room = |cap: Option<&PsCapacity>| cap.is_some_and(|c| c.available >= v.bytes);
            let ok = match &v.local_host_uuid {
                Some(h) => room(
                    self.local_refs
                        .get(&(v.primary_storage_uuid.clone(), h.clone())),
                ),
                None => room(
                    self.primary_storages
                        .get(&v.primary_storage_uuid)
                        .map(|p| &p.capacity),
                ),
            };
            if !ok {
                return Err(ReserveError::NoStorage {
                    ps: v.primary_storage_uuid.clone(),
                    bytes: v.bytes,
                });
            }
            self.adjust_storage(r, |avail, bytes| avail - bytes);
        }
        if let Some(host) = self.hosts.get_mut(&r.host_uuid) {
            host.allocated = allocated;
            host.vm_count += 1;
        }
        self.vm_hosts.insert(r.vm_uuid.clone(), r.host_uuid.clone());
        Ok(())
    }

    /// Return exactly what `r` took. Refused (nothing changes) unless the VM holds it.
    pub fn release(&mut self, r: &Reservation) -> Result<(), ReserveError> {
        if self.vm_hosts.get(&r.vm_uuid) != Some(&r.host_uuid) {
            return Err(ReserveError::NotReserved {
                vm: r.vm_uuid.clone(),
                host: r.host_uuid.clone(),
            });
        }
        let host = self
            .hosts
            .get_mut(&r.host_uuid)
            .ok_or_else(|| ReserveError::UnknownHost(r.host_uuid.clone()))?;
        let mut allocated = host.allocated;
        allocated
            .give_back(r.charge)
            .map_err(|source| ReserveError::Release {
                host: r.host_uuid.clone(),
                source,
            })?;
        host.allocated = allocated;
        host.vm_count = host.vm_count.saturating_sub(1);
        if r.volume.is_some() {
            self.adjust_storage(r, |avail, bytes| avail + bytes);
        }
        self.vm_hosts.remove(&r.vm_uuid);
        Ok(())
    }

    fn adjust_storage(&mut self, r: &Reservation, f: impl Fn(u64, u64) -> u64) {
        let Some(v) = &r.volume else { return };
        if let Some(h) = &v.local_host_uuid {
            if let Some(c) = self
                .local_refs
                .get_mut(&(v.primary_storage_uuid.clone(), h.clone()))
            {
                c.available = f(c.available, v.bytes);
            }
        }
        if let Some(ps) = self.primary_storages.get_mut(&v.primary_storage_uuid) {
            ps.capacity.available = f(ps.capacity.available, v.bytes);
        }
    }
}

impl PlacementView for InMemoryView {
    fn config(&self) -> AllocatorConfig {
        self.config
    }
    fn host_uuids(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }
    fn host(&self, uuid: &str) -> Option<HostView> {
        self.hosts.get(uuid).cloned()
    }
    fn cluster(&self, uuid: &str) -> Option<ClusterView> {
        self.clusters.get(uuid).cloned()
    }
    fn zone(&self, uuid: &str) -> Option<ZoneView> {
        self.zones.get(uuid).cloned()
    }
    fn cluster_primary_storages(&self, cluster_uuid: &str) -> Vec<PrimaryStorageView> {
        self.cluster_ps
            .get(cluster_uuid)
            .map(|list| {
                list.iter()
                    .filter_map(|u| self.primary_storages.get(u).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn primary_storage(&self, uuid: &str) -> Option<PrimaryStorageView> {
        self.primary_storages.get(uuid).cloned()
    }
    fn local_storage_host_capacity(&self, ps_uuid: &str, host_uuid: &str) -> Option<PsCapacity> {
        self.local_refs
            .get(&(ps_uuid.to_string(), host_uuid.to_string()))
            .copied()
    }
    fn l3_network(&self, uuid: &str) -> Option<L3View> {
        self.l3_networks.get(uuid).cloned()
    }
    fn l2_network(&self, uuid: &str) -> Option<L2View> {
        self.l2_networks.get(uuid).cloned()
    }
    fn image(&self, uuid: &str) -> Option<ImageView> {
        self.images.get(uuid).cloned()
    }
    fn backup_storage(&self, uuid: &str) -> Option<BackupStorageView> {
        self.backup_storages.get(uuid).cloned()
    }
    fn affinity_group(&self, uuid: &str) -> Option<AffinityGroupView> {
        self.affinity_groups.get(uuid).cloned()
    }
    fn vm_host(&self, vm_uuid: &str) -> Option<String> {
        self.vm_hosts.get(vm_uuid).cloned()
    }
    fn host_usage(&self, host_uuid: &str) -> HostUsage {
        self.usage.get(host_uuid).copied().unwrap_or_default()
    }
}
