//! Scheduler records, commands and their apply: jobs (what to do to which resource), triggers
//! (when), the job↔trigger links (held by the job, `triggersUuid`), and the execution history
//! the leader's timer writes when it resolves a trigger's slot.

use serde::Deserialize;
use serde::Serialize;

use super::schedule::Schedule;
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

/// The job table.
pub const JOB_TABLE: &str = "scheduler_job";
/// The trigger table.
pub const TRIGGER_TABLE: &str = "scheduler_trigger";
/// The execution-history table.
pub const HISTORY_TABLE: &str = "scheduler_job_history";
/// Kind names.
pub const JOB_KIND: &str = "SchedulerJob";
/// Kind of triggers.
pub const TRIGGER_KIND: &str = "SchedulerTrigger";
/// Kind of history records.
pub const HISTORY_KIND: &str = "SchedulerJobHistory";
/// Resource types tags name them by.
pub const JOB_VO: &str = "SchedulerJobVO";
/// Of triggers.
pub const TRIGGER_VO: &str = "SchedulerTriggerVO";
/// Of history records.
pub const HISTORY_VO: &str = "SchedulerJobHistoryVO";

/// The kinds a job's target may be (named by kind, never by the owning family's module).
const VM_KIND: &str = "VmInstance";
const VOLUME_KIND: &str = "Volume";

/// What a job does when its trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobType {
    /// `StartVmInstance` of the target VM.
    StartVm,
    /// `StopVmInstance`.
    StopVm,
    /// `RebootVmInstance`.
    RebootVm,
    /// `CreateVolumeSnapshot` of the target volume.
    VolumeSnapshot,
}

impl JobType {
    /// Every type this build runs, by wire name.
    pub const ALL: &'static [(&'static str, JobType)] = &[
        ("startVm", JobType::StartVm),
        ("stopVm", JobType::StopVm),
        ("rebootVm", JobType::RebootVm),
        ("volumeSnapshot", JobType::VolumeSnapshot),
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::StartVm => "startVm",
            JobType::StopVm => "stopVm",
            JobType::RebootVm => "rebootVm",
            JobType::VolumeSnapshot => "volumeSnapshot",
        }
    }

    /// ZStack's job class (`jobClassName`).
    pub fn class_name(self) -> &'static str {
        match self {
            JobType::StartVm => "org.zstack.scheduler.StartVmInstanceJob",
            JobType::StopVm => "org.zstack.scheduler.StopVmInstanceJob",
            JobType::RebootVm => "org.zstack.scheduler.RebootVmInstanceJob",
            JobType::VolumeSnapshot => "org.zstack.scheduler.CreateVolumeSnapshotJob",
        }
    }

    /// The kind its target must be.
    pub fn target_kind(self) -> &'static str {
        match self {
            JobType::VolumeSnapshot => VOLUME_KIND,
            _ => VM_KIND,
        }
    }

    /// The API call a firing submits on the job owner's behalf.
    pub fn api_name(self) -> &'static str {
        match self {
            JobType::StartVm => "StartVmInstance",
            JobType::StopVm => "StopVmInstance",
            JobType::RebootVm => "RebootVmInstance",
            JobType::VolumeSnapshot => "CreateVolumeSnapshot",
        }
    }
}

/// A scheduled job (`SchedulerJobVO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerJob {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The VM (or volume) it acts on.
    pub target_resource_uuid: String,
    /// What it does.
    pub job_type: JobType,
    /// `parameters` of the create (the snapshot's name and description), as text pairs.
    pub parameters: Vec<(String, String)>,
    /// Enabled jobs fire; a disabled (paused) one does not.
    pub state: EnableState,
    /// The triggers it is attached to, in attach order.
    pub triggers_uuid: Vec<String>,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(SchedulerJob);

/// A trigger (`SchedulerTriggerVO`): a simple schedule plus how far the timer got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerTrigger {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Seconds between slots.
    pub interval_secs: u64,
    /// Slots in all; `None` repeats forever.
    pub repeat_count: Option<u64>,
    /// Slot 0, seconds since the epoch.
    pub start_time_secs: u64,
    /// The first slot not yet resolved (fired or skipped): the timer's progress, replicated so
    /// a new leader neither repeats nor loses a slot.
    pub next_slot: u64,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(SchedulerTrigger);

impl SchedulerTrigger {
    /// Its slots.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            start_ms: self.start_time_secs.saturating_mul(1000),
            interval_ms: self.interval_secs.saturating_mul(1000),
            count: self.repeat_count,
        }
    }

    /// Whether every slot is resolved.
    pub fn completed(&self) -> bool {
        !self.schedule().has_slot(self.next_slot)
    }
}

/// What became of one job at one slot (or a run of skipped slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// Not run: missed (no leader reached it in time), or the job was paused at firing.
    Skipped,
    /// Its API call is being submitted / runs.
    Submitted,
    /// The API call succeeded.
    Succeeded,
    /// The API call failed (or could not be submitted).
    Failed,
}

impl ExecutionStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Skipped => "Skipped",
            ExecutionStatus::Submitted => "Submitted",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Failed => "Failed",
        }
    }
}

/// One execution record (`SchedulerJobHistoryVO`), owned by the job's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerJobHistory {
    /// 32 hex chars (`id`).
    pub uuid: String,
    /// The job.
    pub scheduler_job_uuid: String,
    /// The trigger whose slot it was.
    pub trigger_uuid: String,
    /// The job's type then.
    pub job_type: JobType,
    /// The job's target then.
    pub target_resource_uuid: String,
    /// The (first) slot.
    pub slot: u64,
    /// The last slot of a run of skipped slots (`slot` otherwise).
    pub last_slot: u64,
    /// When `slot` was due, ms.
    pub start_time: u64,
    /// When it was resolved, ms.
    pub execute_time: u64,
    /// What became of it.
    pub status: ExecutionStatus,
    /// The API job the firing submitted (its uuid fixed at the firing's commit, so a new
    /// leader resubmitting it is the same job).
    pub api_job_uuid: Option<String>,
    /// The call submitted: `{"<api name>": {body}}` as text.
    pub request_dump: Option<String>,
    /// The API job's result, or why it was skipped or failed.
    pub result_dump: Option<String>,
    /// Last change, ms.
    pub last_op_date: u64,
}

/// Scheduler commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerOp {
    /// `CreateSchedulerJob`.
    CreateJob {
        /// Stamped, or the client's `resourceUuid`.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Target VM or volume.
        target_resource_uuid: String,
        /// What to do.
        job_type: JobType,
        /// Text parameters.
        parameters: Vec<(String, String)>,
    },
    /// `UpdateSchedulerJob`.
    UpdateJob {
        /// Job.
        uuid: String,
        /// Name and description.
        rename: Rename,
        /// New parameters, when given.
        parameters: Option<Vec<(String, String)>>,
    },
    /// `DeleteSchedulerJob`.
    DeleteJob {
        /// Job.
        uuid: String,
    },
    /// `ChangeSchedulerState` (of a job).
    ChangeJobState {
        /// Job.
        uuid: String,
        /// enable / disable.
        event: EnableEvent,
    },
    /// `CreateSchedulerTrigger`.
    CreateTrigger {
        /// Stamped, or the client's `resourceUuid`.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Seconds between slots.
        interval_secs: u64,
        /// Slots in all (`None`: forever).
        repeat_count: Option<u64>,
        /// Slot 0, seconds since the epoch.
        start_time_secs: u64,
    },
    /// `UpdateSchedulerTrigger`: name, description, and the schedule (which restarts at the
    /// first slot not in the past).
    UpdateTrigger {
        /// Trigger.
        uuid: String,
        /// Name and description.
        rename: Rename,
        /// New interval.
        interval_secs: Option<u64>,
        /// New count (`Some(None)`: forever).
        repeat_count: Option<Option<u64>>,
        /// New start.
        start_time_secs: Option<u64>,
    },
    /// `DeleteSchedulerTrigger`.
    DeleteTrigger {
        /// Trigger.
        uuid: String,
    },
    /// `AddSchedulerJobToSchedulerTrigger`.
    AddJobToTrigger {
        /// Job.
        job_uuid: String,
        /// Trigger.
        trigger_uuid: String,
    },
    /// `RemoveSchedulerJobFromSchedulerTrigger`.
    RemoveJobFromTrigger {
        /// Job.
        job_uuid: String,
        /// Trigger.
        trigger_uuid: String,
    },
    /// The timer duty (admin, fenced by its term): resolve every unresolved slot of a trigger
    /// up to `slot`: earlier ones skipped, `slot` fired (when `fire`) or skipped. Refused when
    /// `slot` is resolved already, so a (trigger, slot) commits once.
    Resolve {
        /// Trigger.
        trigger_uuid: String,
        /// The latest slot resolved.
        slot: u64,
        /// Whether `slot` fires.
        fire: bool,
        /// Stamped by the leader; the uuids of the records and API jobs derive from it.
        base_uuid: String,
    },
    /// The timer duty: the outcome of a submitted execution.
    Complete {
        /// History record.
        uuid: String,
        /// Whether the API call succeeded.
        success: bool,
        /// Its result or error.
        result: String,
    },
}

/// Answer of a scheduler command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerResult {
    /// A job after the change.
    Job(Box<SchedulerJob>),
    /// A trigger after the change.
    Trigger(Box<SchedulerTrigger>),
    /// Deleted (or absent).
    Deleted,
    /// A resolved slot: the executions whose API calls the leader now submits.
    Resolved(Vec<SchedulerJobHistory>),
    /// An execution completed.
    Completed(Box<SchedulerJobHistory>),
}

fn check_parameters(params: &[(String, String)]) -> Result<(), ApiError> {
    if params.len() > 32 || params.iter().any(|(k, v)| k.len() > 255 || v.len() > 2048) {
        return Err(validate::invalid_arg(
            "parameters: at most 32 entries, keys up to 255 and values up to 2048 characters",
        ));
    }
    Ok(())
}

/// Refuse a schedule that cannot run (ZStack's interceptor: an interval of at least one second
/// unless the trigger has a single slot).
pub(super) fn check_schedule(
    interval_secs: u64,
    repeat_count: Option<u64>,
) -> Result<(), ApiError> {
    if interval_secs == 0 && repeat_count != Some(1) {
        return Err(validate::invalid_arg(
            "schedulerInterval must be at least 1 second unless repeatCount is 1",
        ));
    }
    // Ten years: far beyond any sensible period, and slot arithmetic stays far from overflow.
    if interval_secs > 315_360_000 {
        return Err(validate::invalid_arg(format!(
            "schedulerInterval[{interval_secs}] must be at most 315360000 seconds"
        )));
    }
    Ok(())
}

/// The target, which must exist, be of the job type's kind and be visible to the caller.
fn check_target(
    txn: &dyn StateTxn,
    caller: &Caller,
    job_type: JobType,
    target: &str,
) -> Result<(), ApiError> {
    let r = resource::require_ref(txn, job_type.target_kind(), target)?;
    r.check_visible(caller)
}

fn load_job_visible(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
) -> Result<(String, SchedulerJob), ApiError> {
    resource::require_visible::<SchedulerJob>(txn, caller, uuid)
}

fn load_trigger_visible(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
) -> Result<(String, SchedulerTrigger), ApiError> {
    resource::require_visible::<SchedulerTrigger>(txn, caller, uuid)
}

/// The relation's detach: a deleted trigger leaves its jobs' lists.
pub(super) fn detach_trigger(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    job_uuid: &str,
    trigger_uuid: &str,
) -> Result<bool, ApiError> {
    let Some((owner, mut j)) = resource::load::<SchedulerJob>(txn, job_uuid)? else {
        return Ok(false);
    };
    j.triggers_uuid.retain(|t| t != trigger_uuid);
    j.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &j)?;
    Ok(j.triggers_uuid.is_empty())
}

/// The relation's state hook: a destroyed target VM pauses its jobs (ZStack disables them; they
/// stay disabled after a recover).
pub(super) fn on_target_state(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    job_uuid: &str,
    state: &str,
) -> Result<(), ApiError> {
    if state != "Destroyed" {
        return Ok(());
    }
    pause(txn, ctx, job_uuid)
}

fn pause(txn: &mut dyn StateTxn, ctx: &ApplyCtx, job_uuid: &str) -> Result<(), ApiError> {
    let Some((owner, mut j)) = resource::load::<SchedulerJob>(txn, job_uuid)? else {
        return Ok(());
    };
    if j.state != EnableState::Disabled {
        j.state = EnableState::Disabled;
        j.last_op_date = ctx.proposed_at_ms;
        resource::save(txn, &owner, &j)?;
    }
    Ok(())
}

/// The call a firing of `job` submits, as `{"<api name>": {body}}` text.
pub fn request_of(job: &SchedulerJob, trigger_uuid: &str, slot: u64) -> String {
    let param = |k: &str| {
        job.parameters
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let body = match job.job_type {
        JobType::VolumeSnapshot => serde_json::json!({
            "volumeUuid": job.target_resource_uuid,
            "name": param("snapshotName").unwrap_or_else(|| format!("{}-{slot}", job.name)),
            "description": param("snapshotDescription")
                .unwrap_or_else(|| format!("scheduler job[uuid:{}] trigger[uuid:{trigger_uuid}] slot {slot}", job.uuid)),
        }),
        _ => serde_json::json!({"uuid": job.target_resource_uuid}),
    };
    serde_json::json!({ job.job_type.api_name(): body }).to_string()
}

/// What the timer finds at firing time about the job's target: `Ok(())` to fire, else why not
/// and whether the job is paused for it.
fn target_at_firing(
    txn: &dyn StateTxn,
    job: &SchedulerJob,
) -> Result<Result<(), (String, bool)>, ApiError> {
    let kind = job.job_type.target_kind();
    let Some(r) = resource::lookup(txn, kind, &job.target_resource_uuid)? else {
        return Ok(Err((
            format!("{kind}[uuid:{}] not found", job.target_resource_uuid),
            false,
        )));
    };
    if kind == VM_KIND && r.field("state") == Some("Destroyed") {
        return Ok(Err((
            format!(
                "VM[uuid:{}] is destroyed; the job is paused",
                job.target_resource_uuid
            ),
            true,
        )));
    }
    Ok(Ok(()))
}

#[allow(clippy::too_many_arguments)]
fn history(
    uuid: String,
    job: &SchedulerJob,
    trigger: &SchedulerTrigger,
    slot: u64,
    last_slot: u64,
    ctx: &ApplyCtx,
    status: ExecutionStatus,
    api_job_uuid: Option<String>,
    request_dump: Option<String>,
    result_dump: Option<String>,
) -> SchedulerJobHistory {
    SchedulerJobHistory {
        uuid,
        scheduler_job_uuid: job.uuid.clone(),
        trigger_uuid: trigger.uuid.clone(),
        job_type: job.job_type,
        target_resource_uuid: job.target_resource_uuid.clone(),
        slot,
        last_slot,
        start_time: trigger.schedule().due_ms(slot),
        execute_time: ctx.proposed_at_ms,
        status,
        api_job_uuid,
        request_dump,
        result_dump,
        last_op_date: ctx.proposed_at_ms,
    }
}

fn resolve(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    trigger_uuid: &str,
    slot: u64,
    fire: bool,
    base_uuid: &str,
) -> Result<SchedulerResult, ApiError> {
    let (owner, mut t) = resource::require::<SchedulerTrigger>(txn, trigger_uuid)?;
    if t.completed() {
        return Err(validate::op_failure(format!(
            "scheduler trigger[uuid:{trigger_uuid}] has completed; slot {slot} is past its last"
        )));
    }
    if slot < t.next_slot {
        return Err(validate::op_failure(format!(
            "slot {slot} of scheduler trigger[uuid:{trigger_uuid}] was resolved already (next is {})",
            t.next_slot
        )));
    }
    if !t.schedule().has_slot(slot) {
        return Err(validate::invalid_arg(format!(
            "scheduler trigger[uuid:{trigger_uuid}] has no slot {slot}"
        )));
    }
    validate::uuid("baseUuid", base_uuid)?;
    let mut jobs = resource::find::<SchedulerJob>(txn, "triggersUuid", trigger_uuid)?;
    jobs.sort_by(|a, b| a.1.uuid.cmp(&b.1.uuid));
    let mut n = 0u32;
    let mut next_uuid = || {
        n += 1;
        crate::params::derive_uuid(base_uuid, n)
    };
    let mut submitted = Vec::new();
    let first = t.next_slot;
    for (job_owner, job) in jobs {
        if job.state != EnableState::Enabled {
            continue;
        }
        let skipped_to = if fire {
            slot.checked_sub(1)
        } else {
            Some(slot)
        };
        if let Some(last) = skipped_to.filter(|last| *last >= first) {
            let h = history(
                next_uuid(),
                &job,
                &t,
                first,
                last,
                ctx,
                ExecutionStatus::Skipped,
                None,
                None,
                Some("missed: no leader reached these slots within their window".into()),
            );
            resource::save(txn, &job_owner, &h)?;
        }
        if !fire {
            continue;
        }
        let h = match target_at_firing(txn, &job)? {
            Ok(()) => history(
                next_uuid(),
                &job,
                &t,
                slot,
                slot,
                ctx,
                ExecutionStatus::Submitted,
                Some(next_uuid()),
                Some(request_of(&job, trigger_uuid, slot)),
                None,
            ),
            Err((why, paused)) => {
                if paused {
                    pause(txn, ctx, &job.uuid)?;
                }
                let status = if paused {
                    ExecutionStatus::Skipped
                } else {
                    ExecutionStatus::Failed
                };
                history(
                    next_uuid(),
                    &job,
                    &t,
                    slot,
                    slot,
                    ctx,
                    status,
                    None,
                    None,
                    Some(why),
                )
            }
        };
        resource::save(txn, &job_owner, &h)?;
        if h.status == ExecutionStatus::Submitted {
            submitted.push(h);
        }
    }
    t.next_slot = slot + 1;
    resource::save(txn, &owner, &t)?;
    Ok(SchedulerResult::Resolved(submitted))
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: SchedulerOp,
) -> Result<SchedulerResult, ApiError> {
    match op {
        SchedulerOp::CreateJob {
            uuid,
            name,
            description,
            target_resource_uuid,
            job_type,
            parameters,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            check_parameters(&parameters)?;
            check_target(txn, caller, job_type, &target_resource_uuid)?;
            resource::refuse_duplicate::<SchedulerJob>(txn, &uuid)?;
            let j = SchedulerJob {
                uuid,
                name,
                description,
                target_resource_uuid,
                job_type,
                parameters,
                state: EnableState::Enabled,
                triggers_uuid: Vec::new(),
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            resource::save(txn, &caller.account_uuid, &j)?;
            Ok(SchedulerResult::Job(Box::new(j)))
        }
        SchedulerOp::UpdateJob {
            uuid,
            rename,
            parameters,
        } => {
            if let Some(p) = &parameters {
                check_parameters(p)?;
            }
            generic::modify_visible(txn, ctx, caller, &uuid, |_, j: &mut SchedulerJob| {
                rename.apply_to(j)?;
                if let Some(p) = parameters {
                    j.parameters = p;
                }
                Ok(())
            })
            .map(|j| SchedulerResult::Job(Box::new(j)))
        }
        SchedulerOp::DeleteJob { uuid } => {
            if resource::load::<SchedulerJob>(txn, &uuid)?.is_some() {
                resource::require_visible::<SchedulerJob>(txn, caller, &uuid)?;
                relations::delete(txn, ctx, JOB_KIND, &uuid)?;
            }
            Ok(SchedulerResult::Deleted)
        }
        SchedulerOp::ChangeJobState { uuid, event } => {
            generic::modify_visible(txn, ctx, caller, &uuid, |_, j: &mut SchedulerJob| {
                j.state = event.target();
                Ok(())
            })
            .map(|j| SchedulerResult::Job(Box::new(j)))
        }
        SchedulerOp::CreateTrigger {
            uuid,
            name,
            description,
            interval_secs,
            repeat_count,
            start_time_secs,
        } => {
            generic::check_fields(&uuid, &name, description.as_deref())?;
            check_schedule(interval_secs, repeat_count)?;
            resource::refuse_duplicate::<SchedulerTrigger>(txn, &uuid)?;
            let mut t = SchedulerTrigger {
                uuid,
                name,
                description,
                interval_secs,
                repeat_count,
                start_time_secs,
                next_slot: 0,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            t.next_slot = t.schedule().first_slot_from(ctx.proposed_at_ms);
            resource::save(txn, &caller.account_uuid, &t)?;
            Ok(SchedulerResult::Trigger(Box::new(t)))
        }
        SchedulerOp::UpdateTrigger {
            uuid,
            rename,
            interval_secs,
            repeat_count,
            start_time_secs,
        } => generic::modify_visible(txn, ctx, caller, &uuid, |_, t: &mut SchedulerTrigger| {
            rename.apply_to(t)?;
            let rescheduled =
                interval_secs.is_some() || repeat_count.is_some() || start_time_secs.is_some();
            let interval = interval_secs.unwrap_or(t.interval_secs);
            let count = repeat_count.unwrap_or(t.repeat_count);
            check_schedule(interval, count)?;
            if rescheduled {
                t.interval_secs = interval;
                t.repeat_count = count;
                t.start_time_secs = start_time_secs.unwrap_or(t.start_time_secs);
                // The new schedule starts at its first slot not in the past; what the old one
                // fired stays in the history.
                t.next_slot = t.schedule().first_slot_from(ctx.proposed_at_ms);
            }
            Ok(())
        })
        .map(|t| SchedulerResult::Trigger(Box::new(t))),
        SchedulerOp::DeleteTrigger { uuid } => {
            if resource::load::<SchedulerTrigger>(txn, &uuid)?.is_some() {
                resource::require_visible::<SchedulerTrigger>(txn, caller, &uuid)?;
                relations::delete(txn, ctx, TRIGGER_KIND, &uuid)?;
            }
            Ok(SchedulerResult::Deleted)
        }
        SchedulerOp::AddJobToTrigger {
            job_uuid,
            trigger_uuid,
        } => {
            let (owner, mut j) = load_job_visible(txn, caller, &job_uuid)?;
            let (_, t) = load_trigger_visible(txn, caller, &trigger_uuid)?;
            if t.completed() {
                return Err(validate::op_failure(format!(
                    "scheduler trigger[uuid:{trigger_uuid}] has completed; attach the job to a running trigger"
                )));
            }
            if j.triggers_uuid.contains(&trigger_uuid) {
                return Err(validate::op_failure(format!(
                    "scheduler job[uuid:{job_uuid}] has been attached to scheduler trigger[uuid:{trigger_uuid}]"
                )));
            }
            j.triggers_uuid.push(trigger_uuid);
            j.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &j)?;
            Ok(SchedulerResult::Job(Box::new(j)))
        }
        SchedulerOp::RemoveJobFromTrigger {
            job_uuid,
            trigger_uuid,
        } => {
            let (owner, mut j) = load_job_visible(txn, caller, &job_uuid)?;
            load_trigger_visible(txn, caller, &trigger_uuid)?;
            if !j.triggers_uuid.contains(&trigger_uuid) {
                return Err(validate::op_failure(format!(
                    "scheduler job[uuid:{job_uuid}] is not attached to scheduler trigger[uuid:{trigger_uuid}]"
                )));
            }
            j.triggers_uuid.retain(|t| *t != trigger_uuid);
            j.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &j)?;
            Ok(SchedulerResult::Job(Box::new(j)))
        }
        SchedulerOp::Resolve {
            trigger_uuid,
            slot,
            fire,
            base_uuid,
        } => {
            caller.require_admin("scheduler timer commands")?;
            resolve(txn, ctx, &trigger_uuid, slot, fire, &base_uuid)
        }
        SchedulerOp::Complete {
            uuid,
            success,
            result,
        } => {
            caller.require_admin("scheduler timer commands")?;
            let (owner, mut h) = resource::require::<SchedulerJobHistory>(txn, &uuid)?;
            if h.status != ExecutionStatus::Submitted {
                return Err(validate::op_failure(format!(
                    "scheduler job history[uuid:{uuid}] is {} already",
                    h.status.as_str()
                )));
            }
            h.status = if success {
                ExecutionStatus::Succeeded
            } else {
                ExecutionStatus::Failed
            };
            // Bounded like an audit dump: a result is for reading, not for storing a world.
            let mut result = result;
            if result.len() > 16 * 1024 {
                let mut cut = 16 * 1024;
                while !result.is_char_boundary(cut) {
                    cut -= 1;
                }
                result.truncate(cut);
            }
            h.result_dump = Some(result);
            h.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &h)?;
            Ok(SchedulerResult::Completed(Box::new(h)))
        }
    }
}
