//! Primary-storage records, commands, the attach rules and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Attachment;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::validate;
use crate::wire::errors::Code;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The primary-storage table.
pub const TABLE: &str = "primary_storage";
/// The kind name other families use.
pub const KIND: &str = "PrimaryStorage";
/// Longest url (`VARCHAR(2048)`).
pub const MAX_URL: usize = 2048;
/// Where hosts mount an NFS primary storage ([U] `nfsPrimaryStorage.mount.base`).
pub const NFS_MOUNT_BASE: &str = "/opt/zstack/nfsprimarystorage";

/// Primary-storage types in scope (decision 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PsType {
    /// Each host's local directory.
    LocalStorage,
    /// An NFS export mounted by every host.
    #[serde(rename = "NFS")]
    Nfs,
    /// A shared file system pre-mounted on every host.
    SharedMountPoint,
}

impl PsType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PsType::LocalStorage => "LocalStorage",
            PsType::Nfs => "NFS",
            PsType::SharedMountPoint => "SharedMountPoint",
        }
    }
}

/// Admin state; every event is accepted in every state ([U] `AbstractPrimaryStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsState {
    /// In use.
    Enabled,
    /// No new volumes.
    Disabled,
    /// Its VMs are stopped; nothing may use it.
    Maintenance,
    /// Being deleted.
    Deleting,
}

/// Connection status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsStatus {
    /// Not yet confirmed by any host.
    Connecting,
    /// At least one host reaches it.
    Connected,
    /// No host reaches it.
    Disconnected,
}

/// A primary-storage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryStorage {
    /// 32 hex chars.
    pub uuid: String,
    /// Zone it belongs to.
    pub zone_uuid: String,
    /// Display name.
    pub name: String,
    /// Type-specific location.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Virtual total, bytes.
    pub total_capacity: u64,
    /// Virtual available, bytes.
    pub available_capacity: u64,
    /// Physical total, bytes.
    pub total_physical_capacity: u64,
    /// Physical available, bytes.
    pub available_physical_capacity: u64,
    /// Used by non-ZStack data, bytes.
    pub system_used_capacity: u64,
    /// Type.
    pub ps_type: PsType,
    /// Admin state.
    pub state: PsState,
    /// Connection status.
    pub status: PsStatus,
    /// Where hosts see it.
    pub mount_path: String,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Clusters it is attached to, in attach order.
    pub attached_cluster_uuids: Vec<String>,
}

crate::described_record!(PrimaryStorage);

/// A PS is attached to clusters of its zone.
pub(super) const CLUSTERS: Attachment<PrimaryStorage> = Attachment {
    what: "primary storage",
    parent: "cluster",
    list: |p| &mut p.attached_cluster_uuids,
};

/// State events of `ChangePrimaryStorageState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PsStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
    /// → Maintenance.
    Maintain,
    /// → Deleting.
    Deleting,
}

/// Capacity and status as an agent reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityReport {
    /// Virtual total.
    pub total: u64,
    /// Virtual available.
    pub available: u64,
    /// Physical total.
    pub total_physical: u64,
    /// Physical available.
    pub available_physical: u64,
    /// Used by others.
    pub system_used: u64,
    /// LocalStorage: each host's share (the figures above are their sum); empty otherwise.
    #[serde(default)]
    pub hosts: Vec<crate::resource::local_storage::LocalHostCapacity>,
}

/// Primary-storage commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrimaryStorageOp {
    /// `AddLocalPrimaryStorage`, `AddNfsPrimaryStorage`, `AddSharedMountPointPrimaryStorage`.
    Add {
        /// New uuid.
        uuid: String,
        /// Type.
        ps_type: PsType,
        /// Zone.
        zone_uuid: String,
        /// Name.
        name: String,
        /// Url (path, or `host:/path` for NFS).
        url: String,
        /// Description.
        description: Option<String>,
    },
    /// `UpdatePrimaryStorage` (the manual lets name, description and URL change).
    Update {
        /// PS.
        uuid: String,
        /// New name and description.
        rename: Rename,
        /// New url.
        url: Option<String>,
    },
    /// `ChangePrimaryStorageState`.
    ChangeState {
        /// PS.
        uuid: String,
        /// Event.
        event: PsStateEvent,
    },
    /// `AttachPrimaryStorageToCluster`.
    Attach {
        /// PS.
        uuid: String,
        /// Cluster.
        cluster_uuid: String,
    },
    /// `DetachPrimaryStorageFromCluster`.
    Detach {
        /// PS.
        uuid: String,
        /// Cluster.
        cluster_uuid: String,
    },
    /// `DeletePrimaryStorage` (refused while attached to a cluster).
    Delete {
        /// PS.
        uuid: String,
    },
    /// Internal (agent/connection duty): new capacity figures and status.
    Report {
        /// PS.
        uuid: String,
        /// Figures.
        capacity: CapacityReport,
        /// Status.
        status: PsStatus,
    },
    /// `ReconnectPrimaryStorage`: the first step of its flow (`Connecting` until the hosts
    /// answered); refused when no host could be asked.
    Reconnect {
        /// PS.
        uuid: String,
    },
}

/// Answer of a primary-storage command.
pub type PrimaryStorageResult = generic::Answer<PrimaryStorage>;

/// Check a url for a type (spec 03 §9.4–9.6).
pub fn check_url(ps_type: PsType, url: &str) -> Result<(), ApiError> {
    validate::max_len("url", url, MAX_URL)?;
    match ps_type {
        PsType::LocalStorage | PsType::SharedMountPoint => validate::storage_path("url", url),
        PsType::Nfs => {
            let Some((host, path)) = url.split_once(':') else {
                return Err(validate::invalid_arg(format!(
                    "the url[{url}] of NFS primary storage must be in the format of 'ip:/path'"
                )));
            };
            validate::hostname("url", host)?;
            validate::storage_path("url", path)
        }
    }
}

fn mount_path(ps_type: PsType, uuid: &str, url: &str) -> String {
    match ps_type {
        PsType::Nfs => format!("{NFS_MOUNT_BASE}/prim-{uuid}"),
        PsType::LocalStorage | PsType::SharedMountPoint => url.to_string(),
    }
}

/// Whether a cluster may hold PSs of these types together (spec 03 §3.3, gaps #4): n×Local,
/// n×NFS, 1×SMP, 1 Local + 1 NFS, 1 Local + 1 SMP — nothing else.
pub fn combination_allowed(types: &[PsType]) -> bool {
    let count = |t| types.iter().filter(|x| **x == t).count();
    let (l, n, s) = (
        count(PsType::LocalStorage),
        count(PsType::Nfs),
        count(PsType::SharedMountPoint),
    );
    matches!(
        (l, n, s),
        (_, 0, 0) | (0, _, 0) | (0, 0, 1) | (1, 1, 0) | (1, 0, 1)
    )
}

/// Cluster deletion: forget the cluster in the PS (the relation's detach).
pub(super) fn forget_cluster(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    cluster_uuid: &str,
) -> Result<bool, ApiError> {
    CLUSTERS.forget(txn, ctx, uuid, cluster_uuid)
}

/// Two PSs of one cluster never share a url.
fn url_free_in_cluster(
    txn: &dyn StateTxn,
    cluster_uuid: &str,
    url: &str,
    except: &str,
) -> Result<(), ApiError> {
    for (_, other) in resource::find::<PrimaryStorage>(txn, "attachedClusterUuids", cluster_uuid)? {
        if other.uuid != except && other.url == url {
            return Err(validate::invalid_arg(format!(
                "url[{url}] has been occupied by primary storage[uuid:{}] in cluster[uuid:{cluster_uuid}], it cannot be duplicate in same cluster",
                other.uuid
            )));
        }
    }
    Ok(())
}

/// The checks of `AttachPrimaryStorageToCluster`, in ZStack's order, then the attach.
fn attach(txn: &dyn StateTxn, p: &mut PrimaryStorage, cluster_uuid: &str) -> Result<(), ApiError> {
    let uuid = &p.uuid;
    let c = resource::require_ref(txn, "Cluster", cluster_uuid)?;
    let c_zone = c.field("zoneUuid").unwrap_or_default();
    if c_zone != p.zone_uuid {
        return Err(validate::invalid_arg(format!(
            "primary storage[uuid:{uuid}] is in zone[uuid:{}] but cluster[uuid:{cluster_uuid}] is in zone[uuid:{}], they must be in the same zone",
            p.zone_uuid, c_zone
        )));
    }
    CLUSTERS.refuse_attached(p, cluster_uuid)?;
    if p.state == PsState::Deleting {
        return Err(validate::op_failure(format!(
            "primary storage[uuid:{}] is being deleted",
            p.uuid
        )));
    }
    url_free_in_cluster(txn, cluster_uuid, &p.url, &p.uuid)?;
    let mut types: Vec<PsType> =
        resource::find::<PrimaryStorage>(txn, "attachedClusterUuids", cluster_uuid)?
            .into_iter()
            .map(|(_, x)| x.ps_type)
            .collect();
    types.push(p.ps_type);
    if !combination_allowed(&types) {
        types.sort();
        return Err(validate::op_failure(format!(
            "cluster[uuid:{cluster_uuid}] cannot hold primary storage of types {:?}; allowed are: LocalStorage only, NFS only, one SharedMountPoint, one LocalStorage with one NFS, one LocalStorage with one SharedMountPoint",
            types.iter().map(|t| t.as_str()).collect::<Vec<_>>()
        )));
    }
    p.attached_cluster_uuids.push(cluster_uuid.to_string());
    Ok(())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: PrimaryStorageOp,
) -> Result<PrimaryStorageResult, ApiError> {
    caller.require_admin("primary storage")?;
    let now = ctx.proposed_at_ms;
    let p = match op {
        PrimaryStorageOp::Add {
            uuid,
            ps_type,
            zone_uuid,
            name,
            url,
            description,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            check_url(ps_type, &url)?;
            resource::require_ref(txn, "Zone", &zone_uuid)?;
            resource::refuse_duplicate::<PrimaryStorage>(txn, &uuid)?;
            let p = PrimaryStorage {
                mount_path: mount_path(ps_type, &uuid, &url),
                uuid,
                zone_uuid,
                name,
                url,
                description,
                total_capacity: 0,
                available_capacity: 0,
                total_physical_capacity: 0,
                available_physical_capacity: 0,
                system_used_capacity: 0,
                ps_type,
                state: PsState::Enabled,
                status: PsStatus::Connecting,
                create_date: now,
                last_op_date: now,
                attached_cluster_uuids: Vec::new(),
            };
            resource::save(txn, &caller.account_uuid, &p)?;
            p
        }
        PrimaryStorageOp::Update { uuid, rename, url } => {
            generic::modify(txn, ctx, &uuid, |txn, p: &mut PrimaryStorage| {
                rename.apply_to(p)?;
                if let Some(url) = url {
                    check_url(p.ps_type, &url)?;
                    for c in &p.attached_cluster_uuids {
                        url_free_in_cluster(txn, c, &url, &p.uuid)?;
                    }
                    p.mount_path = mount_path(p.ps_type, &p.uuid, &url);
                    p.url = url;
                }
                Ok(())
            })?
        }
        PrimaryStorageOp::ChangeState { uuid, event } => {
            generic::modify(txn, ctx, &uuid, |_, p: &mut PrimaryStorage| {
                p.state = match event {
                    PsStateEvent::Enable => PsState::Enabled,
                    PsStateEvent::Disable => PsState::Disabled,
                    PsStateEvent::Maintain => PsState::Maintenance,
                    PsStateEvent::Deleting => PsState::Deleting,
                };
                Ok(())
            })?
        }
        PrimaryStorageOp::Attach { uuid, cluster_uuid } => {
            generic::modify(txn, ctx, &uuid, |txn, p| attach(txn, p, &cluster_uuid))?
        }
        PrimaryStorageOp::Detach { uuid, cluster_uuid } => {
            generic::modify(txn, ctx, &uuid, |txn, p: &mut PrimaryStorage| {
                resource::require_ref(txn, "Cluster", &cluster_uuid)?;
                if !p.attached_cluster_uuids.contains(&cluster_uuid) {
                    return Err(validate::invalid_arg(format!(
                        "primary storage[uuid:{uuid}] has not been attached to cluster[uuid:{cluster_uuid}] yet"
                    )));
                }
                // Stopping the VMs that use it in that cluster joins here with the VM family.
                p.attached_cluster_uuids.retain(|c| *c != cluster_uuid);
                Ok(())
            })?
        }
        PrimaryStorageOp::Delete { uuid } => {
            let Some((_, p)) = resource::load::<PrimaryStorage>(txn, &uuid)? else {
                return Ok(PrimaryStorageResult::Deleted);
            };
            if !p.attached_cluster_uuids.is_empty() {
                return Err(validate::op_failure(format!(
                    "primary storage[uuid:{uuid}] cannot be deleted for still being attached to cluster(s) {:?}; detach it first",
                    p.attached_cluster_uuids
                )));
            }
            relations::delete(txn, ctx, KIND, &uuid)?;
            super::reservation::forget_storage(txn, &uuid)?;
            return Ok(PrimaryStorageResult::Deleted);
        }
        PrimaryStorageOp::Report {
            uuid,
            capacity,
            status,
        } => {
            let p = generic::modify(txn, ctx, &uuid, |_, p: &mut PrimaryStorage| {
                if capacity.available > capacity.total
                    || capacity.available_physical > capacity.total_physical
                {
                    return Err(validate::invalid_arg(format!(
                        "capacity report for primary storage[uuid:{uuid}] has available > total"
                    )));
                }
                p.total_capacity = capacity.total;
                p.total_physical_capacity = capacity.total_physical;
                p.available_physical_capacity = capacity.available_physical;
                p.system_used_capacity = capacity.system_used;
                p.status = status;
                Ok(())
            })?;
            // A measurement replaces the physical figures only: the virtual ones are derived
            // again from them and the volumes' reservations, which it never wipes.
            let reserved = super::reservation::reserved_on(txn, &uuid)?;
            let shares = if p.ps_type == PsType::LocalStorage {
                let mut shares = Vec::new();
                for h in &capacity.hosts {
                    shares.push(super::reservation::virtual_share(txn, &uuid, h.clone())?);
                }
                crate::resource::local_storage::replace(txn, &uuid, &shares)?;
                Some(shares)
            } else {
                None
            };
            generic::modify(txn, ctx, &uuid, |_, p: &mut PrimaryStorage| {
                p.available_capacity =
                    super::reservation::virtual_available(p, reserved, shares.as_deref());
                Ok(())
            })?
        }
        PrimaryStorageOp::Reconnect { uuid } => {
            generic::modify(txn, ctx, &uuid, |txn, p: &mut PrimaryStorage| {
                if p.state == PsState::Deleting {
                    return Err(validate::op_failure(format!(
                        "primary storage[uuid:{uuid}] is being deleted"
                    )));
                }
                // Nothing to ask is no news either way: the status stays what it was (the
                // tracker's rule), and the operator learns why.
                if super::capacity::hosts_to_ask(txn, p)?.is_empty() {
                    return Err(validate::refuse(
                        Code::PrimaryStorageDisconnected,
                        format!(
                            "the {} primary storage[uuid:{}, name:{}] has not attached to any clusters, or no hosts in the attached clusters are connected",
                            p.ps_type.as_str(),
                            p.uuid,
                            p.name
                        ),
                    ));
                }
                p.status = PsStatus::Connecting;
                Ok(())
            })?
        }
    };
    Ok(PrimaryStorageResult::Inventory(Box::new(p)))
}
