//! KVM hosts (spec 03 §4): physical servers of a KVM cluster, reached over SSH.
//!
//! Until the host agent exists (the next issue), "connecting" a host means the node that
//! received the call reached the host's SSH port and read an SSH identification line
//! ([`probe_target`] tells it where to look); only then is the command proposed, so a host
//! that cannot be reached never leaves a record behind (spec 03 §12.1 step 12). Capacity
//! fields stay 0 until the agent reports the host's facts.

#[cfg(test)]
mod cases;
pub mod flows;
mod model;
pub mod placement;
mod probe;
pub mod reservation;
#[cfg(test)]
mod reservation_tests;
mod services;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::Host;
pub use model::HostFacts;
pub use model::HostOp;
pub use model::HostResult;
pub use model::HostState;
pub use model::HostStateEvent;
pub use model::HostStatus;
pub use model::DEFAULT_SSH_PORT;
pub use model::KIND;
pub use model::KVM;
pub use model::TABLE;
pub use probe::probe_target;
pub use probe::unreachable_refusal;
pub use probe::PROBED_CALLS;
pub use reservation::HostReservation;
pub use reservation::RESERVATION_TABLE;

use crate::family::prelude::*;

/// ZStack's class of a host: every host is a KVM host, and Gson writes the runtime class.
/// The classes of the other families' inventories the creation dry runs answer (named here,
/// not imported: families never import each other).
const CANDIDATE_CLUSTER: JavaClass = JavaClass::leaf("org.zstack.header.cluster.ClusterInventory");
const CANDIDATE_ZONE: JavaClass = JavaClass::leaf("org.zstack.header.zone.ZoneInventory");
const CANDIDATE_PS: JavaClass =
    JavaClass::leaf("org.zstack.header.storage.primary.PrimaryStorageInventory");
const KVM_HOST: JavaClass = JavaClass::leaf("org.zstack.kvm.KVMHostInventory");

/// The host family.
pub struct Hosts;

impl Family for Hosts {
    type Op = HostOp;
    type Out = HostResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[
            ServiceDecl {
                name: services::ALLOCATE,
                run: services::allocate,
            },
            ServiceDecl {
                name: services::RELEASE,
                run: services::release,
            },
            ServiceDecl {
                name: services::CANDIDATES,
                run: services::candidates,
            },
            ServiceDecl {
                name: services::RENAME_RESERVATION,
                run: services::rename_reservation,
            },
        ],
        replies: inventories!(Schema::Class(&KVM_HOST)),
        name: "host",
        tables: &[TABLE, RESERVATION_TABLE],
        kinds: &[KindDecl {
            // A cluster's hosts go with it (spec 03 §3.6); no VMs exist yet, so nothing else
            // hangs off a host but its tags.
            relations: &[Relation::cascade("clusterUuid", "Cluster")
                .with_parent_state(model::cluster_state_changed)],
            // Primary storage asks its clusters' Connected hosts to measure it.
            inventory: Some(resource::stored_inventory::<Host>),
            ..KindDecl::new(KIND, TABLE, &["HostVO", "KVMHostVO"])
        }],
        calls: &[
            CallDecl::new(
                "AddKVMHost",
                wire::add_kvm,
                &[route(Po, "/v1/hosts/kvm", P)],
            )
            .creating("HostVO")
            .running(flows::ADD_KVM),
            CallDecl::new(
                "UpdateKVMHost",
                wire::update_kvm,
                routes!(actions "/v1/hosts/kvm"),
            ),
            CallDecl::new(
                "ChangeHostState",
                wire::change_state,
                routes!(actions "/v1/hosts"),
            )
            .running(flows::CHANGE_STATE),
            delete_call!("DeleteHost", "/v1/hosts", HostOp::Delete).running(flows::DELETE),
            CallDecl::new(
                "ReconnectHost",
                wire::reconnect,
                routes!(actions "/v1/hosts"),
            )
            .running(flows::RECONNECT),
            query_call!("QueryHost", "/v1/hosts", Host),
            CallDecl::new(
                "AllocateHostResource",
                placement::allocate,
                &[route(Po, "/v1/hosts/{uuid}/allocate-resource", P)],
            ),
            CallDecl::new(
                "GetCpuMemoryCapacity",
                placement::cpu_memory_capacity,
                &[route(G, "/v1/hosts/capacities/cpu-memory", N)],
            ),
            CallDecl::new(
                "GetCandidateZonesClustersHostsForCreatingVm",
                placement::candidate_hosts,
                &[route(G, "/v1/vm-instances/candidate-destinations", N)],
            )
            .replying(&[
                ("hosts", Schema::Class(&KVM_HOST)),
                ("clusters", Schema::Class(&CANDIDATE_CLUSTER)),
                ("zones", Schema::Class(&CANDIDATE_ZONE)),
                // Map<String, List<String>>: cluster → primary storage uuids.
                ("clusterPsMap", Schema::Jre),
            ]),
            CallDecl::new(
                "GetCandidatePrimaryStoragesForCreatingVm",
                placement::candidate_storages,
                &[route(G, "/v1/vm-instances/candidate-storages", N)],
            )
            .replying(&[
                ("rootVolumePrimaryStorages", Schema::Class(&CANDIDATE_PS)),
                ("dataVolumePrimaryStorages", Schema::MapOf(&CANDIDATE_PS)),
            ]),
            CallDecl::new(
                "GetHostAllocatorStrategies",
                placement::allocator_strategies,
                &[RestRoute {
                    rename: Some(("hostAllocatorStrategies", "strategies")),
                    ..route(G, "/v1/hosts/allocators/strategies", N)
                }],
            )
            // List<String>, under its RPC and its REST name.
            .replying(&[
                ("hostAllocatorStrategies", Schema::Jre),
                ("strategies", Schema::Jre),
            ]),
        ],
        flows: &[
            flows::ADD_KVM_FLOW,
            flows::RECONNECT_FLOW,
            flows::DELETE_FLOW,
            flows::CHANGE_STATE_FLOW,
        ],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
