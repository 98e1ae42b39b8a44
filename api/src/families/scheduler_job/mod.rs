//! Scheduled jobs (ZStack's `org.zstack.scheduler`, spec 05 §5): a job names what to do to a
//! resource (start, stop or reboot a VM, snapshot a volume), a trigger says when (every N
//! seconds from a start time, N times or forever), and a job runs at each slot of every
//! trigger it is attached to. The leader's timer duty (`ha::duties::scheduler_timer`) resolves
//! each slot with ONE committed [`SchedulerOp::Resolve`] keyed by (trigger, slot) — refused
//! when that slot is resolved already — and only then submits the job's API call on behalf of
//! the job's owner, with an API-job uuid fixed by that commit; so a leader change neither
//! repeats nor loses a slot, and a resubmitted call is the same job. The skip rule is
//! [`schedule`]'s.
//!
//! Jobs belong to their creator's account; a job whose VM is destroyed is paused (disabled),
//! and one whose VM or volume is expunged goes with it (declared relations, so the VM family
//! is never named).

#[cfg(test)]
mod cases;
mod model;
pub mod schedule;
#[cfg(test)]
mod tests;
mod wire;

pub use model::request_of;
pub use model::ExecutionStatus;
pub use model::JobType;
pub use model::SchedulerJob;
pub use model::SchedulerJobHistory;
pub use model::SchedulerOp;
pub use model::SchedulerResult;
pub use model::SchedulerTrigger;
pub use model::HISTORY_KIND;
pub use model::JOB_KIND;
pub use model::TRIGGER_KIND;

use crate::family::prelude::*;

const JOB: JavaClass = JavaClass::leaf("org.zstack.scheduler.SchedulerJobInventory");
const TRIGGER: JavaClass = JavaClass::leaf("org.zstack.scheduler.SchedulerTriggerInventory");
const HISTORY: JavaClass = JavaClass::leaf("org.zstack.scheduler.SchedulerJobHistoryInventory");

/// The scheduler family.
pub struct SchedulerJobs;

impl Family for SchedulerJobs {
    type Op = SchedulerOp;
    type Out = SchedulerResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&JOB)),
        name: "scheduler_job",
        tables: &[model::JOB_TABLE, model::TRIGGER_TABLE, model::HISTORY_TABLE],
        kinds: &[
            KindDecl {
                relations: &[
                    Relation::cascade("targetResourceUuid", "VmInstance")
                        .with_parent_state(model::on_target_state),
                    Relation::cascade("targetResourceUuid", "Volume"),
                    Relation::new(
                        "triggersUuid",
                        model::TRIGGER_KIND,
                        OnDelete::Detach(model::detach_trigger),
                    ),
                ],
                ..KindDecl::new(model::JOB_KIND, model::JOB_TABLE, &[model::JOB_VO])
            },
            KindDecl {
                inventory: Some(resource::stored_inventory::<SchedulerTrigger>),
                ..KindDecl::new(
                    model::TRIGGER_KIND,
                    model::TRIGGER_TABLE,
                    &[model::TRIGGER_VO],
                )
            },
            KindDecl {
                relations: &[Relation::cascade("schedulerJobUuid", model::JOB_KIND)],
                ..KindDecl::new(
                    model::HISTORY_KIND,
                    model::HISTORY_TABLE,
                    &[model::HISTORY_VO],
                )
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateSchedulerJob",
                wire::create_job,
                &[route(Po, "/v1/scheduler/jobs", P)],
            )
            .creating(model::JOB_VO),
            CallDecl::new(
                "UpdateSchedulerJob",
                wire::update_job,
                routes!(actions "/v1/scheduler/jobs"),
            ),
            delete_call!("DeleteSchedulerJob", "/v1/scheduler/jobs", SchedulerOp::DeleteJob),
            query_call!("QuerySchedulerJob", "/v1/scheduler/jobs", SchedulerJob),
            CallDecl::new(
                "ChangeSchedulerState",
                |p| generic::plan_change_state(p, |uuid, event| SchedulerOp::ChangeJobState { uuid, event }),
                &[route(Pu, "/v1/schedulers/{uuid}", A)],
            ),
            CallDecl::new(
                "GetNoTriggerSchedulerJobs",
                wire::no_trigger_jobs,
                &[route(G, "/v1/scheduler/jobs/no-trigger", N)],
            ),
            CallDecl::new(
                "CreateSchedulerTrigger",
                wire::create_trigger,
                &[route(Po, "/v1/scheduler/triggers", P)],
            )
            .creating(model::TRIGGER_VO)
            .replying(inventories!(Schema::Class(&TRIGGER))),
            CallDecl::new(
                "UpdateSchedulerTrigger",
                wire::update_trigger,
                routes!(actions "/v1/scheduler/triggers"),
            )
            .replying(inventories!(Schema::Class(&TRIGGER))),
            delete_call!(
                "DeleteSchedulerTrigger",
                "/v1/scheduler/triggers",
                SchedulerOp::DeleteTrigger
            ),
            query_call!("QuerySchedulerTrigger", "/v1/scheduler/triggers", SchedulerTrigger)
                .replying(inventories!(Schema::Class(&TRIGGER))),
            CallDecl::new(
                "AddSchedulerJobToSchedulerTrigger",
                |p| {
                    generic::plan_pair(p, "schedulerJobUuid", "schedulerTriggerUuid", |job_uuid, trigger_uuid| {
                        SchedulerOp::AddJobToTrigger { job_uuid, trigger_uuid }
                    })
                },
                &[route(
                    Po,
                    "/v1/scheduler/jobs/{schedulerJobUuid}/scheduler/triggers/{schedulerTriggerUuid}",
                    P,
                )],
            ),
            CallDecl::new(
                "RemoveSchedulerJobFromSchedulerTrigger",
                |p| {
                    generic::plan_pair(p, "schedulerJobUuid", "schedulerTriggerUuid", |job_uuid, trigger_uuid| {
                        SchedulerOp::RemoveJobFromTrigger { job_uuid, trigger_uuid }
                    })
                },
                &[route(
                    D,
                    "/v1/scheduler/jobs/{schedulerJobUuid}/scheduler/triggers/{schedulerTriggerUuid}",
                    N,
                )],
            ),
            query_call!(
                "QuerySchedulerJobHistory",
                "/v1/scheduler/job-histories",
                SchedulerJobHistory
            )
            .replying(inventories!(Schema::Class(&HISTORY))),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };

    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for SchedulerResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            SchedulerResult::Job(j) => Some(resource::inventory(j.as_ref())),
            SchedulerResult::Trigger(t) => Some(resource::inventory(t.as_ref())),
            SchedulerResult::Completed(h) => Some(resource::inventory(h.as_ref())),
            SchedulerResult::Deleted | SchedulerResult::Resolved(_) => None,
        }
    }
}
