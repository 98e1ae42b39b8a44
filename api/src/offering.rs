//! Instance offerings and disk offerings (spec 02 §2.6, §2.7, §3.6): templates for VMs and
//! volumes. `Enabled ⇄ Disabled`, then delete (immediate: no recycle bin; deleting one in use
//! is allowed because VMs and volumes keep their own copy of the figures).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
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

/// The instance-offering table.
pub const INSTANCE_TABLE: &str = "instance_offering";
/// The disk-offering table.
pub const DISK_TABLE: &str = "disk_offering";
/// Most vCPUs an offering may ask for.
pub const MAX_CPU: i64 = 1024;
/// Host allocator strategies (spec 02 §2.6 and [U] names); the first is the default.
pub const ALLOCATOR_STRATEGIES: &[&str] = &[
    "LeastVmPreferredHostAllocatorStrategy",
    "MinimumCPUUsageHostAllocatorStrategy",
    "MinimumMemoryUsageHostAllocatorStrategy",
    "MaxInstancePerHostHostAllocatorStrategy",
    "DefaultHostAllocatorStrategy",
    "LastHostPreferredAllocatorStrategy",
];
/// Primary-storage allocation strategies a disk offering may name ([U]).
pub const DISK_ALLOCATOR_STRATEGIES: &[&str] = &[
    "DefaultPrimaryStorageAllocationStrategy",
    "LeastVolumePreferredPrimaryStorageAllocationStrategy",
    "LocalPrimaryStorageStrategy",
];

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferingState {
    /// Selectable for new VMs/volumes.
    Enabled,
    /// Not selectable; existing users unaffected.
    Disabled,
}

/// An instance offering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceOffering {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// vCPUs.
    pub cpu_num: u32,
    /// Bytes.
    pub memory_size: u64,
    /// Bytes.
    pub reserved_memory_size: u64,
    /// Host allocator strategy.
    pub allocator_strategy: String,
    /// UI ordering.
    pub sort_key: i64,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Enabled or Disabled.
    pub state: OfferingState,
}

impl Resource for InstanceOffering {
    const KIND: &'static str = "InstanceOffering";
    const TABLE: &'static str = INSTANCE_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("cpuNum", |r| json!(r.cpu_num)),
        Field::new("cpuSpeed", |_| json!(0)),
        Field::new("memorySize", |r| json!(r.memory_size)),
        Field::new("reservedMemorySize", |r| json!(r.reserved_memory_size)),
        Field::new("type", |_| json!("UserVm")),
        Field::new("allocatorStrategy", |r| json!(r.allocator_strategy)),
        Field::new("sortKey", |r| json!(r.sort_key)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("state", |r| json!(r.state)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// A disk offering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskOffering {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Bytes.
    pub disk_size: u64,
    /// UI ordering.
    pub sort_key: i64,
    /// Enabled or Disabled.
    pub state: OfferingState,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Primary-storage allocation strategy, when set.
    pub allocator_strategy: Option<String>,
}

impl Resource for DiskOffering {
    const KIND: &'static str = "DiskOffering";
    const TABLE: &'static str = DISK_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("diskSize", |r| json!(r.disk_size)),
        Field::new("sortKey", |r| json!(r.sort_key)),
        Field::new("state", |r| json!(r.state)),
        Field::new("type", |_| json!("zstack")),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::maybe("allocatorStrategy", |r| {
            r.allocator_strategy.as_ref().map(|x| json!(x))
        }),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// State events of the `Change*OfferingState` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferingStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// Offering commands (both kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferingOp {
    /// `CreateInstanceOffering`.
    CreateInstance {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// vCPUs, 1..=1024.
        cpu_num: i64,
        /// Bytes, > 0.
        memory_size: i64,
        /// Bytes, 0..=memory.
        reserved_memory_size: Option<i64>,
        /// Host allocator strategy (default LeastVmPreferred).
        allocator_strategy: Option<String>,
        /// UI ordering.
        sort_key: Option<i64>,
        /// Must be `UserVm` when given.
        offering_type: Option<String>,
    },
    /// `UpdateInstanceOffering`.
    UpdateInstance {
        /// Offering.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New strategy.
        allocator_strategy: Option<String>,
    },
    /// `CreateDiskOffering`.
    CreateDisk {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Bytes, > 0.
        disk_size: i64,
        /// UI ordering.
        sort_key: Option<i64>,
        /// PS allocation strategy.
        allocation_strategy: Option<String>,
    },
    /// `UpdateDiskOffering`.
    UpdateDisk {
        /// Offering.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `ChangeInstanceOfferingState` (`disk == false`) / `ChangeDiskOfferingState`.
    ChangeState {
        /// Disk offering (true) or instance offering.
        disk: bool,
        /// Offering.
        uuid: String,
        /// Event.
        event: OfferingStateEvent,
    },
    /// `DeleteInstanceOffering` / `DeleteDiskOffering`.
    Delete {
        /// Disk offering (true) or instance offering.
        disk: bool,
        /// Offering.
        uuid: String,
    },
}

/// Answer of an offering command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferingResult {
    /// An instance offering after the change.
    Instance(InstanceOffering),
    /// A disk offering after the change.
    Disk(DiskOffering),
    /// Deleted (or already absent).
    Deleted,
}

impl OfferingResult {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            OfferingResult::Instance(o) => Some(resource::inventory(o)),
            OfferingResult::Disk(o) => Some(resource::inventory(o)),
            OfferingResult::Deleted => None,
        }
    }
}

fn strategy(s: &str) -> Result<(), ApiError> {
    if ALLOCATOR_STRATEGIES.contains(&s) {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "unsupported allocatorStrategy[{s}], valid values are {ALLOCATOR_STRATEGIES:?}"
        )))
    }
}

fn state_of(event: OfferingStateEvent) -> OfferingState {
    match event {
        OfferingStateEvent::Enable => OfferingState::Enabled,
        OfferingStateEvent::Disable => OfferingState::Disabled,
    }
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: OfferingOp,
) -> Result<OfferingResult, ApiError> {
    // Offerings are created by the admin and shared with normal accounts (spec 05).
    caller.require_admin("offering")?;
    let now = ctx.proposed_at_ms;
    match op {
        OfferingOp::CreateInstance {
            uuid,
            name,
            description,
            cpu_num,
            memory_size,
            reserved_memory_size,
            allocator_strategy,
            sort_key,
            offering_type,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if !(1..=MAX_CPU).contains(&cpu_num) {
                return Err(validate::invalid_arg(format!(
                    "field[cpuNum] must be in range of [1, {MAX_CPU}], got {cpu_num}"
                )));
            }
            if memory_size <= 0 {
                return Err(validate::invalid_arg(format!(
                    "field[memorySize] must be a positive number of bytes, got {memory_size}"
                )));
            }
            let reserved = reserved_memory_size.unwrap_or(0);
            if !(0..=memory_size).contains(&reserved) {
                return Err(validate::invalid_arg(format!(
                    "field[reservedMemorySize] must be in range of [0, memorySize], got {reserved}"
                )));
            }
            let allocator_strategy =
                allocator_strategy.unwrap_or_else(|| ALLOCATOR_STRATEGIES[0].to_string());
            strategy(&allocator_strategy)?;
            if let Some(t) = offering_type.as_deref().filter(|t| *t != "UserVm") {
                return Err(validate::invalid_arg(format!(
                    "unsupported instance offering type[{t}], only 'UserVm' is supported"
                )));
            }
            if resource::load::<InstanceOffering>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("InstanceOffering", &uuid));
            }
            let o = InstanceOffering {
                uuid,
                name,
                description,
                cpu_num: cpu_num as u32,
                memory_size: memory_size as u64,
                reserved_memory_size: reserved as u64,
                allocator_strategy,
                sort_key: sort_key.unwrap_or(0),
                create_date: now,
                last_op_date: now,
                state: OfferingState::Enabled,
            };
            resource::save(txn, &caller.account_uuid, &o)?;
            Ok(OfferingResult::Instance(o))
        }
        OfferingOp::UpdateInstance {
            uuid,
            name,
            description,
            allocator_strategy,
        } => {
            let (owner, mut o) = resource::require::<InstanceOffering>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                o.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                o.description = Some(d);
            }
            if let Some(s) = allocator_strategy {
                strategy(&s)?;
                o.allocator_strategy = s;
            }
            o.last_op_date = now;
            resource::save(txn, &owner, &o)?;
            Ok(OfferingResult::Instance(o))
        }
        OfferingOp::CreateDisk {
            uuid,
            name,
            description,
            disk_size,
            sort_key,
            allocation_strategy,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if disk_size <= 0 {
                return Err(validate::invalid_arg(format!(
                    "field[diskSize] must be a positive number of bytes, got {disk_size}"
                )));
            }
            if let Some(s) = allocation_strategy
                .as_deref()
                .filter(|s| !DISK_ALLOCATOR_STRATEGIES.contains(s))
            {
                return Err(validate::invalid_arg(format!(
                    "unsupported allocationStrategy[{s}], valid values are {DISK_ALLOCATOR_STRATEGIES:?}"
                )));
            }
            if resource::load::<DiskOffering>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("DiskOffering", &uuid));
            }
            let o = DiskOffering {
                uuid,
                name,
                description,
                disk_size: disk_size as u64,
                sort_key: sort_key.unwrap_or(0),
                state: OfferingState::Enabled,
                create_date: now,
                last_op_date: now,
                allocator_strategy: allocation_strategy,
            };
            resource::save(txn, &caller.account_uuid, &o)?;
            Ok(OfferingResult::Disk(o))
        }
        OfferingOp::UpdateDisk {
            uuid,
            name,
            description,
        } => {
            let (owner, mut o) = resource::require::<DiskOffering>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                o.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                o.description = Some(d);
            }
            o.last_op_date = now;
            resource::save(txn, &owner, &o)?;
            Ok(OfferingResult::Disk(o))
        }
        OfferingOp::ChangeState { disk, uuid, event } => {
            if disk {
                let (owner, mut o) = resource::require::<DiskOffering>(txn, &uuid)?;
                o.state = state_of(event);
                o.last_op_date = now;
                resource::save(txn, &owner, &o)?;
                Ok(OfferingResult::Disk(o))
            } else {
                let (owner, mut o) = resource::require::<InstanceOffering>(txn, &uuid)?;
                o.state = state_of(event);
                o.last_op_date = now;
                resource::save(txn, &owner, &o)?;
                Ok(OfferingResult::Instance(o))
            }
        }
        OfferingOp::Delete { disk, uuid } => {
            let kind = if disk {
                "DiskOffering"
            } else {
                "InstanceOffering"
            };
            crate::resource::relations::delete(txn, ctx, kind, &uuid)?;
            Ok(OfferingResult::Deleted)
        }
    }
}

/// Request → command for the offering calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let events = [
        ("enable", OfferingStateEvent::Enable),
        ("disable", OfferingStateEvent::Disable),
    ];
    let uuid = || params::required(b, "uuid", call);
    let op: Result<OfferingOp, Refusal> = match call.name.as_str() {
        "CreateInstanceOffering" => (|| {
            Ok(OfferingOp::CreateInstance {
                uuid: params::new_uuid(b, new_uuid),
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                cpu_num: params::required_int(b, "cpuNum", call)?,
                memory_size: params::required_int(b, "memorySize", call)?,
                reserved_memory_size: params::int(b, "reservedMemorySize", call)?,
                allocator_strategy: params::string(b, "allocatorStrategy"),
                sort_key: params::int(b, "sortKey", call)?,
                offering_type: params::string(b, "type"),
            })
        })(),
        "UpdateInstanceOffering" => uuid().map(|uuid| OfferingOp::UpdateInstance {
            uuid,
            name: params::string(b, "name"),
            description: params::string(b, "description"),
            allocator_strategy: params::string(b, "allocatorStrategy"),
        }),
        "CreateDiskOffering" => (|| {
            Ok(OfferingOp::CreateDisk {
                uuid: params::new_uuid(b, new_uuid),
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                disk_size: params::required_int(b, "diskSize", call)?,
                sort_key: params::int(b, "sortKey", call)?,
                allocation_strategy: params::string(b, "allocationStrategy"),
            })
        })(),
        "UpdateDiskOffering" => uuid().map(|uuid| OfferingOp::UpdateDisk {
            uuid,
            name: params::string(b, "name"),
            description: params::string(b, "description"),
        }),
        "ChangeInstanceOfferingState" | "ChangeDiskOfferingState" => (|| {
            Ok(OfferingOp::ChangeState {
                disk: call.name == "ChangeDiskOfferingState",
                uuid: uuid()?,
                event: params::state_event(b, call, &events)?,
            })
        })(),
        "DeleteInstanceOffering" | "DeleteDiskOffering" => uuid().map(|uuid| OfferingOp::Delete {
            disk: call.name == "DeleteDiskOffering",
            uuid,
        }),
        _ => return None,
    };
    Some(op.map(|op| op.command(caller.clone())))
}

/// The offering family: instance and disk offerings.
pub struct Offerings;

impl crate::family::Family for Offerings {
    type Op = OfferingOp;
    type Out = OfferingResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "offering",
            tables: &[INSTANCE_TABLE, DISK_TABLE],
            kinds: &[
                KindDecl::new("InstanceOffering", INSTANCE_TABLE, &["InstanceOfferingVO"]),
                KindDecl::new("DiskOffering", DISK_TABLE, &["DiskOfferingVO"]),
            ],
            calls: &[
                CallDecl::new(
                    "CreateInstanceOffering",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/instance-offerings", P)],
                )
                .creating("InstanceOfferingVO"),
                CallDecl::new(
                    "UpdateInstanceOffering",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/instance-offerings/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeInstanceOfferingState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/instance-offerings/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteInstanceOffering",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/instance-offerings/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryInstanceOffering",
                    generic::plan_query::<InstanceOffering>,
                    &[
                        route(G, "/v1/instance-offerings", N),
                        route(G, "/v1/instance-offerings/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "CreateDiskOffering",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/disk-offerings", P)],
                )
                .creating("DiskOfferingVO"),
                CallDecl::new(
                    "UpdateDiskOffering",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/disk-offerings/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeDiskOfferingState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/disk-offerings/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteDiskOffering",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/disk-offerings/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryDiskOffering",
                    generic::plan_query::<DiskOffering>,
                    &[
                        route(G, "/v1/disk-offerings", N),
                        route(G, "/v1/disk-offerings/{uuid}", N),
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
        op: OfferingOp,
    ) -> Result<OfferingResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &OfferingResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    fn run(t: &mut MemTxn, op: OfferingOp) -> Result<OfferingResult, ApiError> {
        apply(t, &ctx(8), &Caller::admin(), op)
    }

    fn inst(n: u32, cpu: i64, mem: i64) -> OfferingOp {
        OfferingOp::CreateInstance {
            uuid: u(n),
            name: format!("io-{n}"),
            description: None,
            cpu_num: cpu,
            memory_size: mem,
            reserved_memory_size: None,
            allocator_strategy: None,
            sort_key: None,
            offering_type: None,
        }
    }

    fn disk(n: u32, size: i64) -> OfferingOp {
        OfferingOp::CreateDisk {
            uuid: u(n),
            name: format!("do-{n}"),
            description: Some("d".into()),
            disk_size: size,
            sort_key: None,
            allocation_strategy: None,
        }
    }

    fn code(r: Result<OfferingResult, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn instance_offering_lifecycle_and_shape() {
        let mut t = MemTxn::default();
        let r = run(&mut t, inst(40, 2, 2 << 30)).unwrap();
        assert_eq!(
            serde_json::to_string(&r.inventory().unwrap()).unwrap(),
            format!(
                r#"{{"uuid":"{}","name":"io-40","cpuNum":2,"cpuSpeed":0,"memorySize":2147483648,"reservedMemorySize":0,"type":"UserVm","allocatorStrategy":"LeastVmPreferredHostAllocatorStrategy","sortKey":0,"createDate":"{d}","lastOpDate":"{d}","state":"Enabled"}}"#,
                u(40),
                d = java_date(8000)
            )
        );
        let OfferingResult::Instance(o) = run(
            &mut t,
            OfferingOp::UpdateInstance {
                uuid: u(40),
                name: Some("small".into()),
                description: Some("d".into()),
                allocator_strategy: Some("MinimumCPUUsageHostAllocatorStrategy".into()),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.allocator_strategy, "MinimumCPUUsageHostAllocatorStrategy");
        let OfferingResult::Instance(o) = run(
            &mut t,
            OfferingOp::ChangeState {
                disk: false,
                uuid: u(40),
                event: OfferingStateEvent::Disable,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.state, OfferingState::Disabled);
        assert_eq!(
            run(
                &mut t,
                OfferingOp::Delete {
                    disk: false,
                    uuid: u(40)
                }
            )
            .unwrap(),
            OfferingResult::Deleted
        );
        assert!(resource::list::<InstanceOffering>(&t).unwrap().is_empty());
    }

    #[test]
    fn disk_offering_lifecycle_and_shape() {
        let mut t = MemTxn::default();
        let r = run(&mut t, disk(41, 10 << 30)).unwrap();
        assert_eq!(
            serde_json::to_string(&r.inventory().unwrap()).unwrap(),
            format!(
                r#"{{"uuid":"{}","name":"do-41","description":"d","diskSize":10737418240,"sortKey":0,"state":"Enabled","type":"zstack","createDate":"{d}","lastOpDate":"{d}"}}"#,
                u(41),
                d = java_date(8000)
            )
        );
        run(
            &mut t,
            OfferingOp::UpdateDisk {
                uuid: u(41),
                name: Some("big".into()),
                description: None,
            },
        )
        .unwrap();
        let OfferingResult::Disk(o) = run(
            &mut t,
            OfferingOp::ChangeState {
                disk: true,
                uuid: u(41),
                event: OfferingStateEvent::Disable,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((o.state, o.name.as_str()), (OfferingState::Disabled, "big"));
        run(
            &mut t,
            OfferingOp::Delete {
                disk: true,
                uuid: u(41),
            },
        )
        .unwrap();
        assert!(resource::list::<DiskOffering>(&t).unwrap().is_empty());
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        run(&mut t, inst(40, 1, 1 << 20)).unwrap();
        run(&mut t, disk(41, 1 << 20)).unwrap();
        let before = t.tables.clone();
        assert_eq!(code(run(&mut t, inst(42, 0, 1 << 20))), "SYS.1007");
        assert_eq!(code(run(&mut t, inst(42, 1025, 1 << 20))), "SYS.1007");
        assert_eq!(code(run(&mut t, inst(42, 1, 0))), "SYS.1007");
        assert_eq!(code(run(&mut t, inst(40, 1, 1))), "SYS.1007", "dup uuid");
        let mut bad = inst(42, 1, 1 << 20);
        if let OfferingOp::CreateInstance {
            allocator_strategy, ..
        } = &mut bad
        {
            *allocator_strategy = Some("Whatever".into());
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007");
        let mut bad = inst(42, 1, 1 << 20);
        if let OfferingOp::CreateInstance {
            reserved_memory_size,
            ..
        } = &mut bad
        {
            *reserved_memory_size = Some(2 << 20);
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007");
        assert_eq!(
            code(run(
                &mut t,
                OfferingOp::UpdateInstance {
                    uuid: u(40),
                    name: None,
                    description: None,
                    allocator_strategy: Some("x".into())
                }
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                OfferingOp::UpdateInstance {
                    uuid: u(99),
                    name: None,
                    description: None,
                    allocator_strategy: None
                }
            )),
            "SYS.1003"
        );
        assert_eq!(code(run(&mut t, disk(43, 0))), "SYS.1007");
        assert_eq!(code(run(&mut t, disk(43, -5))), "SYS.1007");
        assert_eq!(
            code(run(
                &mut t,
                OfferingOp::UpdateDisk {
                    uuid: u(99),
                    name: None,
                    description: None
                }
            )),
            "SYS.1003"
        );
        for disk in [false, true] {
            assert_eq!(
                code(run(
                    &mut t,
                    OfferingOp::ChangeState {
                        disk,
                        uuid: u(99),
                        event: OfferingStateEvent::Enable
                    }
                )),
                "SYS.1003"
            );
            assert_eq!(
                code(apply(
                    &mut t,
                    &ctx(9),
                    &normal(),
                    OfferingOp::Delete { disk, uuid: u(40) }
                )),
                "ID.1002"
            );
        }
        assert_eq!(
            code(apply(&mut t, &ctx(9), &normal(), inst(44, 1, 1))),
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
        // ---- Offerings.
        m.push(ok(
            "CreateInstanceOffering",
            &admin,
            json!({"name": "big", "cpuNum": 4, "memorySize": 4294967296u64}),
            |h, r| {
                assert_eq!(r["inventory"]["cpuNum"], 4);
                assert_eq!(h.count("QueryInstanceOffering", eq("name", "big")), 1);
            },
        ));
        m.push(no(
            "CreateInstanceOffering",
            &admin,
            json!({"name": "x", "cpuNum": 0, "memorySize": 1}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateInstanceOffering",
            &admin,
            json!({"uuid": i.io, "description": "d"}),
            |_, r| assert_eq!(r["inventory"]["description"], "d"),
        ));
        m.push(no(
            "UpdateInstanceOffering",
            &admin,
            json!({"uuid": missing(), "description": "d"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangeInstanceOfferingState",
            &admin,
            json!({"uuid": i.io, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ));
        m.push(no(
            "ChangeInstanceOfferingState",
            &tenant,
            json!({"uuid": i.io, "stateEvent": "disable"}),
            Code::PermissionDenied,
        ));
        {
            let io = i.io.clone();
            m.push(ok(
                "DeleteInstanceOffering",
                &admin,
                json!({"uuid": i.io}),
                move |h, _| assert_eq!(h.count("QueryInstanceOffering", eq("uuid", &io)), 0),
            ));
        }
        m.push(no(
            "DeleteInstanceOffering",
            &tenant,
            json!({"uuid": i.io}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "QueryInstanceOffering",
            &admin,
            json!({"conditions": eq("cpuNum", "1")}),
            |_, r| assert_eq!(r["inventories"][0]["name"], "small"),
        ));
        m.push(no(
            "QueryInstanceOffering",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "CreateDiskOffering",
            &admin,
            json!({"name": "big-disk", "diskSize": 10737418240u64}),
            |_, r| assert_eq!(r["inventory"]["diskSize"], 10737418240u64),
        ));
        m.push(no(
            "CreateDiskOffering",
            &admin,
            json!({"name": "d", "diskSize": 0}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateDiskOffering",
            &admin,
            json!({"uuid": i.dof, "name": "disk1"}),
            |_, r| assert_eq!(r["inventory"]["name"], "disk1"),
        ));
        m.push(no(
            "UpdateDiskOffering",
            &admin,
            json!({"uuid": missing(), "name": "disk1"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangeDiskOfferingState",
            &admin,
            json!({"uuid": i.dof, "stateEvent": "disable"}),
            |h, r| {
                assert_eq!(r["inventory"]["state"], "Disabled");
                assert_eq!(h.count("QueryDiskOffering", eq("state", "Disabled")), 1);
            },
        ));
        m.push(no(
            "ChangeDiskOfferingState",
            &admin,
            json!({"uuid": i.dof, "stateEvent": "off"}),
            Code::InvalidArgument,
        ));
        {
            let d = i.dof.clone();
            m.push(ok(
                "DeleteDiskOffering",
                &admin,
                json!({"uuid": i.dof}),
                move |h, _| assert_eq!(h.count("QueryDiskOffering", eq("uuid", &d)), 0),
            ));
        }
        m.push(no(
            "DeleteDiskOffering",
            &tenant,
            json!({"uuid": i.dof}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "QueryDiskOffering",
            &admin,
            json!({"conditions": eq("name", "disk")}),
            |_, r| assert_eq!(r["inventories"][0]["diskSize"], 1073741824u64),
        ));
        m.push(no(
            "QueryDiskOffering",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m
    }
}
