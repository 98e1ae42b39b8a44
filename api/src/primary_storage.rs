//! Primary storage (spec 03 §9): LocalStorage, NFS and SharedMountPoint (decision 7). A PS
//! belongs to one zone and is attached to clusters of that zone under the combination rules of
//! spec 03 §3.3. Capacity figures are reported by the agents later; they start at 0.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::relations;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
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

impl Resource for PrimaryStorage {
    const KIND: &'static str = "PrimaryStorage";
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("zoneUuid", |r| json!(r.zone_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("url", |r| json!(r.url)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("totalCapacity", |r| json!(r.total_capacity)),
        Field::new("availableCapacity", |r| json!(r.available_capacity)),
        Field::new("totalPhysicalCapacity", |r| {
            json!(r.total_physical_capacity)
        }),
        Field::new("availablePhysicalCapacity", |r| {
            json!(r.available_physical_capacity)
        }),
        Field::new("systemUsedCapacity", |r| json!(r.system_used_capacity)),
        Field::new("type", |r| json!(r.ps_type.as_str())),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("mountPath", |r| json!(r.mount_path)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("attachedClusterUuids", |r| json!(r.attached_cluster_uuids)),
    ];
    const INDEXED: &'static [&'static str] =
        &["name", "state", "zoneUuid", "type", "attachedClusterUuids"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
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
}

/// Answer of a primary-storage command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrimaryStorageResult {
    /// The PS after the change.
    Inventory(Box<PrimaryStorage>),
    /// Deleted (or already absent).
    Deleted,
}

impl PrimaryStorageResult {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            PrimaryStorageResult::Inventory(p) => Some(resource::inventory(p.as_ref())),
            PrimaryStorageResult::Deleted => None,
        }
    }
}

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
fn forget_cluster(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    cluster_uuid: &str,
) -> Result<bool, ApiError> {
    let Some((owner, mut p)) = resource::load::<PrimaryStorage>(txn, uuid)? else {
        return Ok(false);
    };
    p.attached_cluster_uuids.retain(|c| c != cluster_uuid);
    p.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &p)?;
    Ok(p.attached_cluster_uuids.is_empty())
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: PrimaryStorageOp,
) -> Result<PrimaryStorageResult, ApiError> {
    caller.require_admin("primary storage")?;
    let now = ctx.proposed_at_ms;
    match op {
        PrimaryStorageOp::Add {
            uuid,
            ps_type,
            zone_uuid,
            name,
            url,
            description,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            check_url(ps_type, &url)?;
            resource::require_ref(txn, "Zone", &zone_uuid)?;
            if resource::load::<PrimaryStorage>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("PrimaryStorage", &uuid));
            }
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
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
        }
        PrimaryStorageOp::Update {
            uuid,
            name,
            description,
            url,
        } => {
            let (owner, mut p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                p.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                p.description = Some(d);
            }
            if let Some(url) = url {
                check_url(p.ps_type, &url)?;
                for c in &p.attached_cluster_uuids {
                    url_free_in_cluster(txn, c, &url, &p.uuid)?;
                }
                p.mount_path = mount_path(p.ps_type, &p.uuid, &url);
                p.url = url;
            }
            p.last_op_date = now;
            resource::save(txn, &owner, &p)?;
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
        }
        PrimaryStorageOp::ChangeState { uuid, event } => {
            let (owner, mut p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
            p.state = match event {
                PsStateEvent::Enable => PsState::Enabled,
                PsStateEvent::Disable => PsState::Disabled,
                PsStateEvent::Maintain => PsState::Maintenance,
                PsStateEvent::Deleting => PsState::Deleting,
            };
            p.last_op_date = now;
            resource::save(txn, &owner, &p)?;
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
        }
        PrimaryStorageOp::Attach { uuid, cluster_uuid } => {
            let (owner, mut p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
            let c = resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            let c_zone = c.field("zoneUuid").unwrap_or_default();
            if c_zone != p.zone_uuid {
                return Err(validate::invalid_arg(format!(
                    "primary storage[uuid:{uuid}] is in zone[uuid:{}] but cluster[uuid:{cluster_uuid}] is in zone[uuid:{}], they must be in the same zone",
                    p.zone_uuid, c_zone
                )));
            }
            if p.attached_cluster_uuids.contains(&cluster_uuid) {
                return Err(validate::op_failure(format!(
                    "primary storage[uuid:{uuid}] has been attached to cluster[uuid:{cluster_uuid}]"
                )));
            }
            if p.state == PsState::Deleting {
                return Err(validate::op_failure(format!(
                    "primary storage[uuid:{uuid}] is being deleted"
                )));
            }
            url_free_in_cluster(txn, &cluster_uuid, &p.url, &p.uuid)?;
            let mut types: Vec<PsType> =
                resource::find::<PrimaryStorage>(txn, "attachedClusterUuids", &cluster_uuid)?
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
            p.attached_cluster_uuids.push(cluster_uuid);
            p.last_op_date = now;
            resource::save(txn, &owner, &p)?;
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
        }
        PrimaryStorageOp::Detach { uuid, cluster_uuid } => {
            let (owner, mut p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
            resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            if !p.attached_cluster_uuids.contains(&cluster_uuid) {
                return Err(validate::invalid_arg(format!(
                    "primary storage[uuid:{uuid}] has not been attached to cluster[uuid:{cluster_uuid}] yet"
                )));
            }
            // Stopping the VMs that use it in that cluster joins here with the VM family.
            p.attached_cluster_uuids.retain(|c| *c != cluster_uuid);
            p.last_op_date = now;
            resource::save(txn, &owner, &p)?;
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
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
            Ok(PrimaryStorageResult::Deleted)
        }
        PrimaryStorageOp::Report {
            uuid,
            capacity,
            status,
        } => {
            let (owner, mut p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
            if capacity.available > capacity.total
                || capacity.available_physical > capacity.total_physical
            {
                return Err(validate::invalid_arg(format!(
                    "capacity report for primary storage[uuid:{uuid}] has available > total"
                )));
            }
            p.total_capacity = capacity.total;
            p.available_capacity = capacity.available;
            p.total_physical_capacity = capacity.total_physical;
            p.available_physical_capacity = capacity.available_physical;
            p.system_used_capacity = capacity.system_used;
            p.status = status;
            p.last_op_date = now;
            resource::save(txn, &owner, &p)?;
            Ok(PrimaryStorageResult::Inventory(Box::new(p)))
        }
    }
}

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

/// Request → command for the primary-storage calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let add = |ps_type| -> Result<PrimaryStorageOp, Refusal> {
        Ok(PrimaryStorageOp::Add {
            uuid: params::new_uuid(b, new_uuid),
            ps_type,
            zone_uuid: params::required(b, "zoneUuid", call)?,
            name: params::required(b, "name", call)?,
            url: params::required(b, "url", call)?,
            description: params::string(b, "description"),
        })
    };
    let attach = || -> Result<(String, String), Refusal> {
        Ok((
            params::required(b, "primaryStorageUuid", call)?,
            params::required(b, "clusterUuid", call)?,
        ))
    };
    let op = match call.name.as_str() {
        "AddLocalPrimaryStorage" => add(PsType::LocalStorage),
        "AddNfsPrimaryStorage" => add(PsType::Nfs),
        "AddSharedMountPointPrimaryStorage" => add(PsType::SharedMountPoint),
        "UpdatePrimaryStorage" => {
            params::required(b, "uuid", call).map(|uuid| PrimaryStorageOp::Update {
                uuid,
                name: params::string(b, "name"),
                description: params::string(b, "description"),
                url: params::string(b, "url"),
            })
        }
        "ChangePrimaryStorageState" => params::required(b, "uuid", call).and_then(|uuid| {
            Ok(PrimaryStorageOp::ChangeState {
                uuid,
                event: params::state_event(
                    b,
                    call,
                    &[
                        ("enable", PsStateEvent::Enable),
                        ("disable", PsStateEvent::Disable),
                        ("maintain", PsStateEvent::Maintain),
                        ("deleting", PsStateEvent::Deleting),
                    ],
                )?,
            })
        }),
        "AttachPrimaryStorageToCluster" => {
            attach().map(|(uuid, cluster_uuid)| PrimaryStorageOp::Attach { uuid, cluster_uuid })
        }
        "DetachPrimaryStorageFromCluster" => {
            attach().map(|(uuid, cluster_uuid)| PrimaryStorageOp::Detach { uuid, cluster_uuid })
        }
        "DeletePrimaryStorage" => {
            params::required(b, "uuid", call).map(|uuid| PrimaryStorageOp::Delete { uuid })
        }
        _ => return None,
    };
    Some(op.map(|op| op.command(caller.clone())))
}

/// The primary-storage family.
pub struct PrimaryStorages;

impl crate::family::Family for PrimaryStorages {
    type Op = PrimaryStorageOp;
    type Out = PrimaryStorageResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "primary_storage",
            tables: &[TABLE],
            kinds: &[KindDecl {
                relations: &[
                    // A zone's primary storage goes with it (its clusters are gone by then).
                    Relation {
                        field: "zoneUuid",
                        parent: "Zone",
                        on_delete: OnDelete::Cascade,
                        on_parent_state: None,
                    },
                    Relation {
                        field: "attachedClusterUuids",
                        parent: "Cluster",
                        on_delete: OnDelete::Detach(forget_cluster),
                        on_parent_state: None,
                    },
                ],
                ..KindDecl::new(KIND, TABLE, &["PrimaryStorageVO"])
            }],
            calls: &[
                CallDecl::new(
                    "AddLocalPrimaryStorage",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/primary-storage/local-storage", P)],
                )
                .creating("PrimaryStorageVO"),
                CallDecl::new(
                    "AddNfsPrimaryStorage",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/primary-storage/nfs", P)],
                )
                .creating("PrimaryStorageVO"),
                CallDecl::new(
                    "AddSharedMountPointPrimaryStorage",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/primary-storage/smp", P)],
                )
                .creating("PrimaryStorageVO"),
                CallDecl::new(
                    "UpdatePrimaryStorage",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/primary-storage/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangePrimaryStorageState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/primary-storage/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "AttachPrimaryStorageToCluster",
                    |p| op_plan(plan, p),
                    &[route(
                        Po,
                        "/v1/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
                        P,
                    )],
                ),
                CallDecl::new(
                    "DetachPrimaryStorageFromCluster",
                    |p| op_plan(plan, p),
                    &[route(
                        D,
                        "/v1/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
                        N,
                    )],
                ),
                CallDecl::new(
                    "DeletePrimaryStorage",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/primary-storage/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryPrimaryStorage",
                    generic::plan_query::<PrimaryStorage>,
                    &[
                        route(G, "/v1/primary-storage", N),
                        route(G, "/v1/primary-storage/{uuid}", N),
                    ],
                ),
            ],
            flows: &[],
            #[cfg(test)]
            cases: cases::cases,
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: PrimaryStorageOp,
    ) -> Result<PrimaryStorageResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &PrimaryStorageResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::make_cluster;
    use crate::testing::make_zone;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    fn run(t: &mut MemTxn, op: PrimaryStorageOp) -> Result<PrimaryStorageResult, ApiError> {
        apply(t, &ctx(5), &Caller::admin(), op)
    }

    fn add_op(n: u32, ps_type: PsType, zone: &str, url: &str) -> PrimaryStorageOp {
        PrimaryStorageOp::Add {
            uuid: u(n),
            ps_type,
            zone_uuid: zone.into(),
            name: format!("ps-{n}"),
            url: url.into(),
            description: None,
        }
    }

    fn add(t: &mut MemTxn, n: u32, ps_type: PsType, zone: &str, url: &str) -> String {
        run(t, add_op(n, ps_type, zone, url)).unwrap();
        u(n)
    }

    fn attach(t: &mut MemTxn, ps: &str, cluster: &str) -> Result<PrimaryStorageResult, ApiError> {
        run(
            t,
            PrimaryStorageOp::Attach {
                uuid: ps.into(),
                cluster_uuid: cluster.into(),
            },
        )
    }

    fn code(r: Result<PrimaryStorageResult, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn add_update_state_and_inventory_shape() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let PrimaryStorageResult::Inventory(p) =
            run(&mut t, add_op(20, PsType::Nfs, &z, "192.168.0.1:/nfs/ps")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&resource::inventory(p.as_ref())).unwrap(),
            format!(
                r#"{{"uuid":"{u}","zoneUuid":"{z}","name":"ps-20","url":"192.168.0.1:/nfs/ps","totalCapacity":0,"availableCapacity":0,"totalPhysicalCapacity":0,"availablePhysicalCapacity":0,"systemUsedCapacity":0,"type":"NFS","state":"Enabled","status":"Connecting","mountPath":"/opt/zstack/nfsprimarystorage/prim-{u}","createDate":"{d}","lastOpDate":"{d}","attachedClusterUuids":[]}}"#,
                u = p.uuid,
                d = java_date(5000)
            )
        );
        let local = add(&mut t, 21, PsType::LocalStorage, &z, "/zstack_ps");
        let r = run(
            &mut t,
            PrimaryStorageOp::Update {
                uuid: local.clone(),
                name: Some("local".into()),
                description: Some("d".into()),
                url: Some("/data/ps".into()),
            },
        )
        .unwrap();
        let PrimaryStorageResult::Inventory(p) = r else {
            panic!()
        };
        assert_eq!(
            (p.name.as_str(), p.mount_path.as_str()),
            ("local", "/data/ps")
        );
        for (ev, st) in [
            (PsStateEvent::Maintain, PsState::Maintenance),
            (PsStateEvent::Disable, PsState::Disabled),
            (PsStateEvent::Deleting, PsState::Deleting),
            (PsStateEvent::Enable, PsState::Enabled),
        ] {
            let PrimaryStorageResult::Inventory(p) = run(
                &mut t,
                PrimaryStorageOp::ChangeState {
                    uuid: local.clone(),
                    event: ev,
                },
            )
            .unwrap() else {
                panic!()
            };
            assert_eq!(p.state, st);
        }
        let PrimaryStorageResult::Inventory(p) = run(
            &mut t,
            PrimaryStorageOp::Report {
                uuid: local,
                capacity: CapacityReport {
                    total: 100,
                    available: 40,
                    total_physical: 100,
                    available_physical: 50,
                    system_used: 10,
                },
                status: PsStatus::Connected,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((p.available_capacity, p.status), (40, PsStatus::Connected));
    }

    #[test]
    fn attach_rules_detach_delete() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let z2 = make_zone(&mut t, 2);
        let c = make_cluster(&mut t, 10, &z);
        let c_other_zone = make_cluster(&mut t, 11, &z2);
        let l1 = add(&mut t, 20, PsType::LocalStorage, &z, "/ps1");
        let l2 = add(&mut t, 21, PsType::LocalStorage, &z, "/ps2");
        let l_same_url = add(&mut t, 22, PsType::LocalStorage, &z, "/ps1");
        let nfs = add(&mut t, 23, PsType::Nfs, &z, "10.0.0.1:/a");
        let smp = add(&mut t, 24, PsType::SharedMountPoint, &z, "/mnt/smp");
        let before = t.tables.clone();
        assert_eq!(code(attach(&mut t, &l1, &c_other_zone)), "SYS.1007", "zone");
        assert_eq!(code(attach(&mut t, &u(99), &c)), "SYS.1003");
        assert_eq!(code(attach(&mut t, &l1, &u(98))), "SYS.1003");
        assert_eq!(t.tables, before);
        attach(&mut t, &l1, &c).unwrap();
        let before = t.tables.clone();
        assert_eq!(code(attach(&mut t, &l1, &c)), "SYS.1006", "twice");
        assert_eq!(
            code(attach(&mut t, &l_same_url, &c)),
            "SYS.1007",
            "same url"
        );
        assert_eq!(t.tables, before);
        attach(&mut t, &l2, &c).unwrap(); // Local × 2
        let before = t.tables.clone();
        assert_eq!(code(attach(&mut t, &nfs, &c)), "SYS.1006", "2 local + nfs");
        assert_eq!(code(attach(&mut t, &smp, &c)), "SYS.1006", "2 local + smp");
        assert_eq!(
            code(run(&mut t, PrimaryStorageOp::Delete { uuid: l1.clone() })),
            "SYS.1006",
            "delete while attached"
        );
        assert_eq!(t.tables, before);
        run(
            &mut t,
            PrimaryStorageOp::Detach {
                uuid: l2.clone(),
                cluster_uuid: c.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            code(run(
                &mut t,
                PrimaryStorageOp::Detach {
                    uuid: l2.clone(),
                    cluster_uuid: c.clone()
                }
            )),
            "SYS.1007",
            "not attached"
        );
        attach(&mut t, &nfs, &c).unwrap(); // Local + NFS
        assert_eq!(
            code(attach(&mut t, &smp, &c)),
            "SYS.1006",
            "local + nfs + smp"
        );
        assert_eq!(
            run(&mut t, PrimaryStorageOp::Delete { uuid: l2.clone() }).unwrap(),
            PrimaryStorageResult::Deleted
        );
        // Deleting the cluster detaches its storage.
        crate::testing::delete_cluster(&mut t, 6, &c);
        assert!(
            resource::find::<PrimaryStorage>(&t, "attachedClusterUuids", &u(10))
                .unwrap()
                .is_empty()
        );
        run(&mut t, PrimaryStorageOp::Delete { uuid: l1 }).unwrap();
        // Deleting the zone deletes the rest.
        crate::testing::delete_zone(&mut t, 7, &z);
        assert!(resource::list::<PrimaryStorage>(&t).unwrap().is_empty());
    }

    #[test]
    fn combinations() {
        use PsType::*;
        assert!(combination_allowed(&[
            LocalStorage,
            LocalStorage,
            LocalStorage
        ]));
        assert!(combination_allowed(&[Nfs, Nfs]));
        assert!(combination_allowed(&[SharedMountPoint]));
        assert!(combination_allowed(&[LocalStorage, Nfs]));
        assert!(combination_allowed(&[SharedMountPoint, LocalStorage]));
        assert!(!combination_allowed(&[SharedMountPoint, SharedMountPoint]));
        assert!(!combination_allowed(&[Nfs, SharedMountPoint]));
        assert!(!combination_allowed(&[LocalStorage, Nfs, Nfs]));
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let p = add(&mut t, 20, PsType::LocalStorage, &z, "/ps");
        let before = t.tables.clone();
        for (ty, url) in [
            (PsType::LocalStorage, "/"),
            (PsType::LocalStorage, "/dev/sda"),
            (PsType::LocalStorage, "relative/path"),
            (PsType::LocalStorage, "/usr/bin/"),
            (PsType::SharedMountPoint, "/proc"),
            (PsType::Nfs, "/no/host"),
            (PsType::Nfs, "1.1.1.1:relative"),
            (PsType::Nfs, "bad host:/x"),
        ] {
            assert_eq!(
                code(run(&mut t, add_op(21, ty, &z, url))),
                "SYS.1007",
                "{url}"
            );
        }
        assert_eq!(
            code(run(&mut t, add_op(21, PsType::Nfs, &u(99), "h:/x"))),
            "SYS.1003"
        );
        assert_eq!(
            code(run(&mut t, add_op(20, PsType::Nfs, &z, "h:/x"))),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                PrimaryStorageOp::Update {
                    uuid: p.clone(),
                    name: None,
                    description: None,
                    url: Some("/sys".into())
                }
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                PrimaryStorageOp::ChangeState {
                    uuid: u(99),
                    event: PsStateEvent::Enable
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                PrimaryStorageOp::Detach {
                    uuid: u(99),
                    cluster_uuid: u(98)
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(apply(
                &mut t,
                &ctx(5),
                &normal(),
                PrimaryStorageOp::Delete { uuid: p }
            )),
            "ID.1002"
        );
        assert_eq!(t.tables, before);
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Primary storage.
        m.push(ok(
            "AddLocalPrimaryStorage",
            &admin,
            json!({"zoneUuid": i.zone, "name": "local2", "url": "/ps2"}),
            |h, r| {
                assert_eq!(r["inventory"]["type"], "LocalStorage");
                assert_eq!(h.count("QueryPrimaryStorage", eq("name", "local2")), 1);
            },
        ));
        m.push(no(
            "AddLocalPrimaryStorage",
            &admin,
            json!({"zoneUuid": missing(), "name": "local2", "url": "/ps2"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "AddNfsPrimaryStorage",
            &admin,
            json!({"zoneUuid": i.zone, "name": "nfs2", "url": "10.0.0.8:/nfs2"}),
            |_, r| {
                assert_eq!(r["inventory"]["type"], "NFS");
                assert_eq!(r["inventory"]["url"], "10.0.0.8:/nfs2");
            },
        ));
        m.push(no(
            "AddNfsPrimaryStorage",
            &admin,
            json!({"zoneUuid": i.zone, "name": "nfs2"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "AddSharedMountPointPrimaryStorage",
            &admin,
            json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}),
            |_, r| assert_eq!(r["inventory"]["type"], "SharedMountPoint"),
        ));
        m.push(no(
            "AddSharedMountPointPrimaryStorage",
            &tenant,
            json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "UpdatePrimaryStorage",
            &admin,
            json!({"uuid": i.nfs, "description": "d"}),
            |_, r| assert_eq!(r["inventory"]["description"], "d"),
        ));
        m.push(no(
            "UpdatePrimaryStorage",
            &admin,
            json!({"uuid": missing(), "description": "d"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangePrimaryStorageState",
            &admin,
            json!({"uuid": i.nfs, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ));
        m.push(no(
            "ChangePrimaryStorageState",
            &admin,
            json!({"uuid": i.nfs, "stateEvent": "explode"}),
            Code::InvalidArgument,
        ));
        {
            let c = i.cluster.clone();
            m.push(ok(
                "AttachPrimaryStorageToCluster",
                &admin,
                json!({"primaryStorageUuid": i.nfs, "clusterUuid": i.cluster}),
                move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c])),
            ));
        }
        m.push(no(
            "AttachPrimaryStorageToCluster",
            &admin,
            json!({"primaryStorageUuid": i.nfs, "clusterUuid": missing()}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "DetachPrimaryStorageFromCluster",
            &admin,
            json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}),
            |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
        ));
        m.push(no(
            "DetachPrimaryStorageFromCluster",
            &tenant,
            json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}),
            Code::PermissionDenied,
        ));
        {
            let nfs = i.nfs.clone();
            m.push(ok(
                "DeletePrimaryStorage",
                &admin,
                json!({"uuid": i.nfs}),
                move |h, _| assert_eq!(h.count("QueryPrimaryStorage", eq("uuid", &nfs)), 0),
            ));
        }
        m.push(no(
            "DeletePrimaryStorage",
            &admin,
            json!({"uuid": i.local}),
            Code::OperationFailure,
        ));
        {
            let local = i.local.clone();
            m.push(ok(
                "QueryPrimaryStorage",
                &admin,
                json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
                move |_, r| {
                    assert_eq!(r["inventories"].as_array().unwrap().len(), 1);
                    assert_eq!(r["inventories"][0]["uuid"], local.as_str());
                },
            ));
        }
        {
            let smp = i.smp.clone();
            m.push(ok(
                "QueryPrimaryStorage",
                &admin,
                json!({"conditions": eq("type", "SharedMountPoint")}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], smp.as_str()),
            ));
        }
        m.push(no(
            "QueryPrimaryStorage",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m
    }
}
