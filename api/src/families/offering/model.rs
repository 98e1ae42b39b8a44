//! Offering records, commands and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The instance-offering table.
pub const INSTANCE_TABLE: &str = "instance_offering";
/// The disk-offering table.
pub const DISK_TABLE: &str = "disk_offering";
/// The instance-offering kind.
pub const INSTANCE_KIND: &str = "InstanceOffering";
/// The disk-offering kind.
pub const DISK_KIND: &str = "DiskOffering";
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
    /// Selectable for new VMs, or not (existing VMs keep their own copy of the figures).
    pub state: EnableState,
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
    /// Selectable for new volumes, or not.
    pub state: EnableState,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Primary-storage allocation strategy, when set.
    pub allocator_strategy: Option<String>,
}

crate::described_record!(InstanceOffering, DiskOffering);

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
        /// New name and description.
        rename: Rename,
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
        /// New name and description.
        rename: Rename,
    },
    /// `ChangeInstanceOfferingState` (`disk == false`) / `ChangeDiskOfferingState`.
    ChangeState {
        /// Disk offering (true) or instance offering.
        disk: bool,
        /// Offering.
        uuid: String,
        /// enable or disable.
        event: EnableEvent,
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

fn strategy(s: &str) -> Result<(), ApiError> {
    if ALLOCATOR_STRATEGIES.contains(&s) {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "unsupported allocatorStrategy[{s}], valid values are {ALLOCATOR_STRATEGIES:?}"
        )))
    }
}

/// A size in bytes a create names: positive.
fn positive(field: &str, v: i64) -> Result<(), ApiError> {
    if v <= 0 {
        return Err(validate::invalid_arg(format!(
            "field[{field}] must be a positive number of bytes, got {v}"
        )));
    }
    Ok(())
}

pub(super) fn apply(
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
            generic::check_fields(&uuid, &name, description.as_deref())?;
            if !(1..=MAX_CPU).contains(&cpu_num) {
                return Err(validate::invalid_arg(format!(
                    "field[cpuNum] must be in range of [1, {MAX_CPU}], got {cpu_num}"
                )));
            }
            positive("memorySize", memory_size)?;
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
            resource::refuse_duplicate::<InstanceOffering>(txn, &uuid)?;
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
                state: EnableState::Enabled,
            };
            resource::save(txn, &caller.account_uuid, &o)?;
            Ok(OfferingResult::Instance(o))
        }
        OfferingOp::UpdateInstance {
            uuid,
            rename,
            allocator_strategy,
        } => Ok(OfferingResult::Instance(generic::modify(
            txn,
            ctx,
            &uuid,
            |_, o: &mut InstanceOffering| {
                rename.apply_to(o)?;
                if let Some(s) = allocator_strategy {
                    strategy(&s)?;
                    o.allocator_strategy = s;
                }
                Ok(())
            },
        )?)),
        OfferingOp::CreateDisk {
            uuid,
            name,
            description,
            disk_size,
            sort_key,
            allocation_strategy,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            positive("diskSize", disk_size)?;
            if let Some(s) = allocation_strategy
                .as_deref()
                .filter(|s| !DISK_ALLOCATOR_STRATEGIES.contains(s))
            {
                return Err(validate::invalid_arg(format!(
                    "unsupported allocationStrategy[{s}], valid values are {DISK_ALLOCATOR_STRATEGIES:?}"
                )));
            }
            resource::refuse_duplicate::<DiskOffering>(txn, &uuid)?;
            let o = DiskOffering {
                uuid,
                name,
                description,
                disk_size: disk_size as u64,
                sort_key: sort_key.unwrap_or(0),
                state: EnableState::Enabled,
                create_date: now,
                last_op_date: now,
                allocator_strategy: allocation_strategy,
            };
            resource::save(txn, &caller.account_uuid, &o)?;
            Ok(OfferingResult::Disk(o))
        }
        OfferingOp::UpdateDisk { uuid, rename } => Ok(OfferingResult::Disk(generic::rename(
            txn, ctx, &uuid, rename,
        )?)),
        OfferingOp::ChangeState { disk, uuid, event } => {
            let state = event.target();
            Ok(if disk {
                OfferingResult::Disk(generic::modify(
                    txn,
                    ctx,
                    &uuid,
                    |_, o: &mut DiskOffering| {
                        o.state = state;
                        Ok(())
                    },
                )?)
            } else {
                OfferingResult::Instance(generic::modify(
                    txn,
                    ctx,
                    &uuid,
                    |_, o: &mut InstanceOffering| {
                        o.state = state;
                        Ok(())
                    },
                )?)
            })
        }
        OfferingOp::Delete { disk, uuid } => {
            // Immediate (no recycle bin); VMs and volumes keep their own copy of the figures,
            // so deleting an offering in use is allowed.
            let kind = if disk { DISK_KIND } else { INSTANCE_KIND };
            relations::delete(txn, ctx, kind, &uuid)?;
            Ok(OfferingResult::Deleted)
        }
    }
}
