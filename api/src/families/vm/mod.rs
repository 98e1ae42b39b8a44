//! VM instances and their volumes (spec 02 §2.1–2.2, §3.1–3.2, §4.1–4.2): `CreateVmInstance`
//! places the VM through the host family's allocator (`host.allocate`), takes its addresses
//! from IPAM (`l3.allocate-ip`), has the host's agent copy the image into the primary
//! storage's cache, create the root volume and start the domain; start, stop, reboot, pause,
//! resume, destroy, expunge and recover are flows of the same kind (`flows.rs`).
//!
//! Volumes live in this family because a root volume is part of its VM's lifecycle (created,
//! recovered and expunged with it); the data-volume calls will join it here.

#[cfg(test)]
mod cases;
pub mod clone;
pub mod evacuate;
pub mod flows;
mod model;
pub mod nics;
pub mod reconcile;
pub mod snapshot_flows;
pub mod snapshots;
#[cfg(test)]
mod tests;
pub mod volume_flows;
#[cfg(test)]
mod volume_tests;
pub mod volumes;
mod wire;

pub use model::expunge_jobs;
pub use model::VmInstance;
pub use model::VmNic;
pub use model::VmOp;
pub use model::VmResult;
pub use model::VmState;
pub use model::Volume;
pub use model::VolumeStatus;
pub use model::KIND;
pub use model::TABLE;
pub use model::VOLUME_KIND;
pub use model::VOLUME_TABLE;
pub use volumes::expunge_jobs as volume_expunge_jobs;

use crate::family::prelude::*;
use crate::validate;
use crate::ApiError;

const VM_NIC: JavaClass = JavaClass::leaf("org.zstack.header.vm.VmNicInventory");
const VOLUME: JavaClass = JavaClass::leaf("org.zstack.header.volume.VolumeInventory");
const SNAPSHOT: JavaClass =
    JavaClass::leaf("org.zstack.header.storage.snapshot.VolumeSnapshotInventory");
/// A node of a snapshot tree: the snapshot and the nodes of its children (recursive, so a
/// static rather than a const).
static SNAPSHOT_LEAF: JavaClass = JavaClass {
    name: "org.zstack.header.storage.snapshot.SnapshotLeafInventory",
    fields: &[
        ("inventory", Schema::Class(&SNAPSHOT)),
        ("children", Schema::Class(&SNAPSHOT_LEAF)),
    ],
};
static SNAPSHOT_TREE: JavaClass = JavaClass {
    name: "org.zstack.header.storage.snapshot.VolumeSnapshotTreeInventory",
    fields: &[("tree", Schema::Class(&SNAPSHOT_LEAF))],
};
static SNAPSHOT_TREE_REPLY: &[(&str, Schema)] = &[
    ("inventory", Schema::Class(&SNAPSHOT_TREE)),
    ("inventories", Schema::Class(&SNAPSHOT_TREE)),
];
/// ZStack's `CloneVmInstanceInventory`: one clone's VM or error.
const CLONE_INVENTORY: JavaClass = JavaClass {
    name: "org.zstack.header.vm.CloneVmInstanceInventory",
    fields: &[
        ("inventory", Schema::Class(&VM)),
        ("error", Schema::Class(&ERROR_CODE)),
    ],
};
/// ZStack's error of a clone that was not made.
const ERROR_CODE: JavaClass = JavaClass::leaf("org.zstack.header.errorcode.ErrorCode");
/// ZStack's `CloneVmInstanceResults` (the `result` of `APICloneVmInstanceEvent`).
const CLONE_RESULTS: JavaClass = JavaClass {
    name: "org.zstack.header.vm.CloneVmInstanceResults",
    fields: &[("inventories", Schema::Class(&CLONE_INVENTORY))],
};
/// The hosts of a migration candidates reply (the host family's class, named not imported).
const KVM_HOST: JavaClass = JavaClass::leaf("org.zstack.kvm.KVMHostInventory");

/// ZStack's class of a VM and of the objects in it.
const VM: JavaClass = JavaClass {
    name: "org.zstack.header.vm.VmInstanceInventory",
    fields: &[
        ("vmNics", Schema::Class(&VM_NIC)),
        ("allVolumes", Schema::Class(&VOLUME)),
    ],
};

fn vm_refusal(what: &str, parent: &str, vm: &str) -> ApiError {
    validate::op_failure(format!(
        "{what}[uuid:{parent}] still has VM[uuid:{vm}]; destroy or migrate its VMs first"
    ))
}

fn host_has_vms(parent: &str, vm: &str) -> ApiError {
    vm_refusal("host", parent, vm)
}

fn cluster_has_vms(parent: &str, vm: &str) -> ApiError {
    vm_refusal("cluster", parent, vm)
}

fn zone_has_vms(parent: &str, vm: &str) -> ApiError {
    vm_refusal("zone", parent, vm)
}

fn l3_has_vms(parent: &str, vm: &str) -> ApiError {
    vm_refusal("L3 network", parent, vm)
}

fn has_volumes(ps: &str, volume: &str) -> ApiError {
    validate::op_failure(format!(
        "primary storage[uuid:{ps}] still holds volume[uuid:{volume}]; delete its VMs and volumes first"
    ))
}

/// The VM family.
pub struct Vms;

impl Family for Vms {
    type Op = VmOp;
    type Out = VmResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[
            ServiceDecl {
                name: evacuate::PLAN,
                run: evacuate::plan,
            },
            ServiceDecl {
                name: evacuate::FINISH,
                run: evacuate::finish,
            },
            ServiceDecl {
                name: evacuate::ABORT,
                run: evacuate::abort,
            },
        ],
        replies: inventories!(Schema::Class(&VM)),
        name: "vm",
        tables: &[TABLE, VOLUME_TABLE, snapshots::TABLE, snapshots::TREE_TABLE],
        kinds: &[
            KindDecl {
                relations: &[
                    Relation::new("hostUuid", "Host", OnDelete::Refuse(host_has_vms)),
                    Relation::new("clusterUuid", "Cluster", OnDelete::Refuse(cluster_has_vms)),
                    Relation::new("zoneUuid", "Zone", OnDelete::Refuse(zone_has_vms)),
                    Relation::new(
                        "vmNics.l3NetworkUuid",
                        "L3Network",
                        OnDelete::Refuse(l3_has_vms),
                    ),
                ],
                inventory: Some(resource::stored_inventory::<VmInstance>),
                ..KindDecl::new(KIND, TABLE, &[model::VO])
            },
            KindDecl {
                relations: &[
                    Relation::new("vmInstanceUuid", KIND, OnDelete::Cascade),
                    Relation::new(
                        "primaryStorageUuid",
                        "PrimaryStorage",
                        OnDelete::Refuse(has_volumes),
                    ),
                ],
                inventory: Some(resource::stored_inventory::<Volume>),
                ..KindDecl::new(VOLUME_KIND, VOLUME_TABLE, &[model::VOLUME_VO])
            },
            // A volume's snapshots and trees go with it (expunge, a Direct delete); its
            // snapshot files go with its file on the agent.
            KindDecl {
                relations: &[Relation::new("volumeUuid", VOLUME_KIND, OnDelete::Cascade)],
                inventory: Some(resource::stored_inventory::<snapshots::VolumeSnapshot>),
                ..KindDecl::new(snapshots::KIND, snapshots::TABLE, &[snapshots::VO])
            },
            KindDecl {
                relations: &[Relation::new("volumeUuid", VOLUME_KIND, OnDelete::Cascade)],
                inventory: Some(resource::stored_inventory::<snapshots::SnapshotTree>),
                ..KindDecl::new(
                    snapshots::TREE_KIND,
                    snapshots::TREE_TABLE,
                    &[snapshots::TREE_VO],
                )
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateVmInstance",
                wire::create,
                &[route(Po, "/v1/vm-instances", P)],
            )
            .creating(model::VO)
            .running(flows::CREATE),
            CallDecl::new(
                "StartVmInstance",
                wire::start,
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::START),
            CallDecl::new(
                "StopVmInstance",
                wire::stop,
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::STOP),
            CallDecl::new(
                "RebootVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Reboot { uuid }),
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::REBOOT),
            CallDecl::new(
                "PauseVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Pause { uuid }),
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::PAUSE),
            CallDecl::new(
                "ResumeVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Resume { uuid }),
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::RESUME),
            CallDecl::new(
                "DestroyVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Destroy { uuid }),
                routes!(delete "/v1/vm-instances"),
            )
            .running(flows::DESTROY),
            CallDecl::new(
                "ExpungeVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Expunge { uuid }),
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::EXPUNGE),
            CallDecl::new(
                "RecoverVmInstance",
                |p| wire::simple(p, |uuid| VmOp::Recover { uuid }),
                routes!(actions "/v1/vm-instances"),
            )
            .running(flows::RECOVER),
            CallDecl::new(
                "MigrateVm",
                wire::migrate,
                &[route(Pu, "/v1/vm-instances/{vmInstanceUuid}/actions", A)],
            )
            .running(flows::MIGRATE),
            CallDecl::new(
                "GetVmMigrationCandidateHosts",
                wire::migration_candidates,
                &[route(
                    G,
                    "/v1/vm-instances/{vmInstanceUuid}/migration-target-hosts",
                    N,
                )],
            )
            .replying(inventories!(Schema::Class(&KVM_HOST))),
            update_call!("UpdateVmInstance", "/v1/vm-instances", VmOp::Update),
            query_call!("QueryVmInstance", "/v1/vm-instances", VmInstance),
            query_call!("QueryVolume", "/v1/volumes", Volume)
                .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "CreateDataVolume",
                volumes::create,
                &[route(Po, "/v1/volumes/data", P)],
            )
            .creating(model::VOLUME_VO)
            .running(volume_flows::CREATE)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "AttachDataVolumeToVm",
                volumes::attach,
                &[route(
                    Po,
                    "/v1/volumes/{volumeUuid}/vm-instances/{vmInstanceUuid}",
                    P,
                )],
            )
            .running(volume_flows::ATTACH)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "DetachDataVolumeFromVm",
                volumes::detach,
                &[route(D, "/v1/volumes/{uuid}/vm-instances", N)],
            )
            .running(volume_flows::DETACH)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "DeleteDataVolume",
                |p| volumes::simple(p, |uuid| volumes::VolumeOp::Delete { uuid }),
                routes!(delete "/v1/volumes"),
            )
            .running(volume_flows::DELETE)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "RecoverDataVolume",
                |p| volumes::simple(p, |uuid| volumes::VolumeOp::Recover { uuid }),
                routes!(actions "/v1/volumes"),
            )
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "ExpungeDataVolume",
                |p| volumes::simple(p, |uuid| volumes::VolumeOp::Expunge { uuid }),
                routes!(actions "/v1/volumes"),
            )
            .running(volume_flows::EXPUNGE)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "ChangeVolumeState",
                volumes::change_state,
                routes!(actions "/v1/volumes"),
            )
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "ResizeDataVolume",
                volumes::resize_data,
                routes!(actions "/v1/volumes/data/resize"),
            )
            .running(volume_flows::RESIZE)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "ResizeRootVolume",
                volumes::resize_root,
                routes!(actions "/v1/volumes/resize"),
            )
            .running(volume_flows::RESIZE)
            .replying(inventories!(Schema::Class(&VOLUME))),
            CallDecl::new(
                "GetVmAttachableDataVolume",
                volumes::vm_attachable,
                &[route(
                    G,
                    "/v1/vm-instances/{vmInstanceUuid}/data-volume-candidates",
                    N,
                )],
            )
            .replying(&[("inventories", Schema::Class(&VOLUME))]),
            CallDecl::new(
                "GetDataVolumeAttachableVm",
                volumes::volume_attachable,
                &[route(
                    G,
                    "/v1/volumes/{volumeUuid}/candidate-vm-instances",
                    N,
                )],
            )
            .replying(&[("inventories", Schema::Class(&VM))]),
            CallDecl::new(
                "CreateVolumeSnapshot",
                snapshots::create,
                &[route(Po, "/v1/volumes/{volumeUuid}/volume-snapshots", P)],
            )
            .creating(snapshots::VO)
            .running(snapshot_flows::CREATE)
            .replying(inventories!(Schema::Class(&SNAPSHOT))),
            CallDecl::new(
                "RevertVolumeFromSnapshot",
                snapshots::revert,
                routes!(actions "/v1/volume-snapshots"),
            )
            .running(snapshot_flows::REVERT)
            .replying(inventories!(Schema::Class(&SNAPSHOT))),
            CallDecl::new(
                "DeleteVolumeSnapshot",
                snapshots::delete,
                routes!(delete "/v1/volume-snapshots"),
            )
            .running(snapshot_flows::DELETE),
            CallDecl::new(
                "UpdateVolumeSnapshot",
                snapshots::update,
                routes!(actions "/v1/volume-snapshots"),
            )
            .replying(inventories!(Schema::Class(&SNAPSHOT))),
            query_call!(
                "QueryVolumeSnapshot",
                "/v1/volume-snapshots",
                snapshots::VolumeSnapshot
            )
            .replying(inventories!(Schema::Class(&SNAPSHOT))),
            query_call!(
                "QueryVolumeSnapshotTree",
                "/v1/volume-snapshots/trees",
                snapshots::SnapshotTree
            )
            .replying(SNAPSHOT_TREE_REPLY),
            CallDecl::new(
                "GetVolumeSnapshotSize",
                snapshots::size,
                routes!(actions "/v1/volume-snapshots"),
            ),
            CallDecl::new(
                "AttachL3NetworkToVm",
                nics::attach,
                &[route(
                    Po,
                    "/v1/vm-instances/{vmInstanceUuid}/l3-networks/{l3NetworkUuid}",
                    P,
                )],
            )
            .running(nics::ATTACH),
            CallDecl::new(
                "DetachL3NetworkFromVm",
                nics::detach,
                &[route(D, "/v1/vm-instances/nics/{vmNicUuid}", N)],
            )
            .running(nics::DETACH),
            CallDecl::new(
                "CloneVmInstance",
                clone::clone,
                &[route(Pu, "/v1/vm-instances/{vmInstanceUuid}/actions", A)],
            )
            .running(clone::CLONE)
            .replying(&[("result", Schema::Class(&CLONE_RESULTS))]),
        ],
        flows: flows::FLOWS,
        #[cfg(test)]
        cases: cases::cases,
    };

    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for VmResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            VmResult::Inventory(v) => Some(resource::inventory(v.as_ref())),
            VmResult::Deleted => None,
            VmResult::Volume(v) => Some(resource::inventory(v.as_ref())),
            VmResult::Snapshot(s) => Some(resource::inventory(s.as_ref())),
            VmResult::Clones(_) => None,
        }
    }

    // A VM's reply carries its volumes (`allVolumes`), as its query does.
    fn reply_in(&self, txn: &dyn StateTxn) -> ReplyFields {
        match self {
            VmResult::Inventory(v) => match resource::full_inventory(txn, v.as_ref()) {
                Ok(inv) => inventory_reply(Some(inv)),
                Err(_) => self.reply(),
            },
            VmResult::Clones(outcomes) => {
                let mut m = serde_json::Map::new();
                m.insert("result".into(), clone::results(txn, outcomes));
                Ok(m)
            }
            _ => self.reply(),
        }
    }
}
