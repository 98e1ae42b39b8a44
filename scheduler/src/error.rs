//! What placement answers when it cannot place: bad input (nothing looked at, nothing reserved)
//! or no host, naming the filter that removed the last candidates with its numbers.

use thiserror::Error;

use crate::filter::FilterName;

/// A request placement refuses before looking at any host.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadRequest {
    /// Not one of [`crate::strategy::STRATEGY_NAMES`].
    #[error("unknown host allocator strategy {name:?}")]
    UnknownStrategy {
        /// The name given.
        name: String,
    },
    /// A strategy mode other than `soft`/`hard`.
    #[error("{strategy}: unknown strategy mode {mode:?} (soft or hard)")]
    UnknownStrategyMode {
        /// The strategy.
        strategy: &'static str,
        /// The mode given.
        mode: String,
    },
    /// `MaxInstancePerHostHostAllocatorStrategy` without a limit ≥ 1.
    #[error("MaxInstancePerHostHostAllocatorStrategy needs maxInstancePerHost ≥ 1, got {value:?}")]
    BadMaxInstancePerHost {
        /// The value given, if any.
        value: Option<i64>,
    },
    /// A VM needs at least one vCPU.
    #[error("cpuNum must be ≥ 1, got {value}")]
    NonPositiveCpu {
        /// The value given.
        value: i64,
    },
    /// A VM needs some memory.
    #[error("memorySize must be ≥ 1 byte, got {value}")]
    NonPositiveMemory {
        /// The value given.
        value: i64,
    },
    /// A new root volume needs a size.
    #[error("root volume size must be ≥ 1 byte, got {value}")]
    NonPositiveRootVolume {
        /// The value given.
        value: i64,
    },
    /// A referenced resource does not exist.
    #[error("{kind} {uuid} not found")]
    UnknownResource {
        /// `Zone`, `Cluster`, `Host`, `L3Network`, ….
        kind: &'static str,
        /// Its uuid.
        uuid: String,
    },
    /// The designated host is not in the requested zone.
    #[error("designated host {host} is in zone {host_zone}, not in the requested zone {zone}")]
    HostOutsideZone {
        /// The host.
        host: String,
        /// Its zone.
        host_zone: String,
        /// The zone asked.
        zone: String,
    },
    /// The designated host is not in the requested cluster.
    #[error("designated host {host} is in cluster {host_cluster}, not in the requested cluster {cluster}")]
    HostOutsideCluster {
        /// The host.
        host: String,
        /// Its cluster.
        host_cluster: String,
        /// The cluster asked.
        cluster: String,
    },
    /// The requested cluster is not in the requested zone.
    #[error("cluster {cluster} is in zone {cluster_zone}, not in the requested zone {zone}")]
    ClusterOutsideZone {
        /// The cluster.
        cluster: String,
        /// Its zone.
        cluster_zone: String,
        /// The zone asked.
        zone: String,
    },
    /// The designated host is also excluded.
    #[error("designated host {host} is also in the excluded hosts")]
    HostExcluded {
        /// The host.
        host: String,
    },
    /// The designated host is not where the VM's local root volume lives.
    #[error("designated host {host} is not host {root_volume_host} where the root volume lives on local storage")]
    HostNotRootVolumeHost {
        /// The host.
        host: String,
        /// The root volume's host.
        root_volume_host: String,
    },
}

/// One host's rejection by a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The host.
    pub host_uuid: String,
    /// Why, with numbers: `not enough memory: need 8G, free 6G`.
    pub reason: String,
}

/// No host survived the filters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", describe(self))]
pub struct NoHostAvailable {
    /// The filter that removed the last candidates.
    pub filter: FilterName,
    /// How many candidates it removed.
    pub removed: usize,
    /// Its last rejection (`None` when there was no host to begin with).
    pub last: Option<Rejection>,
}

fn describe(e: &NoHostAvailable) -> String {
    match &e.last {
        None => format!("no host available: {}: there are no hosts", e.filter),
        Some(r) => format!(
            "no host available: {} removed the last {} candidate{}; host {}: {}",
            e.filter,
            e.removed,
            if e.removed == 1 { "" } else { "s" },
            r.host_uuid,
            r.reason
        ),
    }
}

/// Why a placement failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocationError {
    /// Refused input; nothing was evaluated or reserved.
    #[error("bad placement request: {0}")]
    BadRequest(#[from] BadRequest),
    /// Every candidate was filtered out.
    #[error(transparent)]
    NoHost(#[from] NoHostAvailable),
}
