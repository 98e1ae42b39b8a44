//! The scheduler's timer: while this node leads, every trigger's slots are resolved as they
//! fall due (`api::families::scheduler_job::schedule` has the fire/skip rule), each with ONE
//! fenced `Resolve` command keyed by (trigger, slot). Only once that commit succeeded are the
//! firing's API calls submitted, on behalf of each job's owner, with the API-job uuids the
//! commit fixed. A leader that dies in between leaves `Submitted` records whose API job does
//! not exist; the next leader submits them then (same job uuid, so at most one job ever runs
//! per execution), and records every finished API job's outcome on its execution.

use std::sync::Arc;
use std::time::Duration;

use api::families::scheduler_job::schedule;
use api::families::scheduler_job::schedule::Decision;
use api::families::scheduler_job::ExecutionStatus;
use api::families::scheduler_job::SchedulerJobHistory;
use api::families::scheduler_job::SchedulerOp;
use api::families::scheduler_job::SchedulerResult;
use api::families::scheduler_job::SchedulerTrigger;
use api::interpret::CallOptions;
use api::interpret::Effects;
use api::interpret::Outcome;
use api::job::JobState;
use api::plan::HostEndpoint;
use api::plan::QueryFn;
use api::plan::Stamp;
use api::query::Query;
use api::secret::DataKey;
use api::wire::envelope::ApiRequest;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use api::ApiError;
use api::Caller;
use api::Command;
use api::IntoCommand;
use api::Response;
use api::StateTxn;
use serde_json::Map;
use serde_json::Value;

use crate::context::LeaderContext;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// Longest sleep between rounds: a trigger created or changed meanwhile is seen this late.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// The duty.
pub struct SchedulerTimer {
    key: Arc<DataKey>,
}

impl SchedulerTimer {
    /// A timer whose submitted calls are stamped with the cluster's data key (they carry no
    /// secret; the stamp needs one).
    pub fn new(key: Arc<DataKey>) -> Self {
        Self { key }
    }

    /// One round: resolve what is due, run and settle executions. Returns when to look again.
    async fn round(&self, ctx: &Arc<LeaderContext>) -> Result<u64, DutyError> {
        let now = ctx.now_ms();
        let triggers: Vec<SchedulerTrigger> = ctx
            .read(|v| api::resource::list::<SchedulerTrigger>(v))
            .map_err(|e| DutyError(e.to_string()))?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let mut wake = now + MAX_SLEEP.as_millis() as u64;
        for t in triggers {
            match schedule::decide(&t.schedule(), t.next_slot, now) {
                Decision::Completed => {}
                Decision::Wait { until_ms } => wake = wake.min(until_ms),
                Decision::Resolve { slot, fire } => {
                    let cmd = SchedulerOp::Resolve {
                        trigger_uuid: t.uuid.clone(),
                        slot,
                        fire,
                        base_uuid: new_uuid(),
                    }
                    .command(Caller::admin());
                    // Keyed by (trigger, slot): a retry of this very proposal is answered
                    // from the dedup record; any other commit of the slot is refused at apply.
                    let rid = format!("scheduler/{}/{slot}", t.uuid);
                    match ctx.propose_as_leader(cmd, Some(rid)).await {
                        Ok(_) => {
                            if fire {
                                tracing::info!(trigger = %t.uuid, slot, "scheduler slot fired");
                            } else {
                                tracing::info!(trigger = %t.uuid, slot, "scheduler slots up to this one skipped (missed)");
                            }
                        }
                        Err(e) => {
                            tracing::info!(trigger = %t.uuid, slot, error = %e.0, "scheduler slot not resolved");
                        }
                    }
                }
            }
        }
        self.settle(ctx).await?;
        Ok(wake)
    }

    /// Every `Submitted` execution: submit its call when its API job does not exist yet,
    /// record the outcome of one that finished.
    async fn settle(&self, ctx: &Arc<LeaderContext>) -> Result<(), DutyError> {
        let pending: Vec<(String, SchedulerJobHistory, Option<api::job::ApiJob>)> = ctx
            .read(|v| -> Result<_, ApiError> {
                let mut out = Vec::new();
                for (owner, h) in api::resource::find::<SchedulerJobHistory>(
                    v,
                    "status",
                    ExecutionStatus::Submitted.as_str(),
                )? {
                    let job = match &h.api_job_uuid {
                        Some(u) => api::job::get(v, u)?,
                        None => None,
                    };
                    out.push((owner, h, job));
                }
                Ok(out)
            })
            .map_err(|e| DutyError(e.to_string()))?;
        for (owner, h, job) in pending {
            if ctx.cancelled().is_cancelled() {
                return Ok(());
            }
            match job {
                Some(j) if j.state == JobState::Done => {
                    let success = j.success.unwrap_or(false);
                    self.complete(ctx, &h, success, j.result.unwrap_or_default())
                        .await?;
                }
                Some(_) => {}
                None => self.submit(ctx, &owner, &h).await?,
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        ctx: &LeaderContext,
        h: &SchedulerJobHistory,
        success: bool,
        result: String,
    ) -> Result<(), DutyError> {
        let cmd = SchedulerOp::Complete {
            uuid: h.uuid.clone(),
            success,
            result,
        }
        .command(Caller::admin());
        match ctx
            .propose_as_leader(cmd, Some(format!("scheduler/complete/{}", h.uuid)))
            .await
        {
            Ok(Response::SchedulerJob(SchedulerResult::Completed(_))) => Ok(()),
            Ok(other) => Err(DutyError(format!("unexpected answer: {other:?}"))),
            Err(e) => Err(e),
        }
    }

    /// Submit the execution's API call as its job's owner.
    async fn submit(
        &self,
        ctx: &Arc<LeaderContext>,
        owner: &str,
        h: &SchedulerJobHistory,
    ) -> Result<(), DutyError> {
        let (spec, req) = match build_request(h) {
            Ok(r) => r,
            Err(why) => return self.complete(ctx, h, false, why).await,
        };
        let caller = Caller {
            account_uuid: owner.to_string(),
            user_uuid: owner.to_string(),
            admin: owner == api::ADMIN_ACCOUNT_UUID,
        };
        let opts = CallOptions {
            job_uuid: h.api_job_uuid.clone(),
            ..CallOptions::default()
        };
        let fx = DutyEffects {
            ctx,
            key: self.key.clone(),
        };
        let served = api::interpret::run_on_behalf(&fx, spec, req, caller, &opts).await;
        match served.outcome {
            Outcome::Accepted(j) | Outcome::Job(j) => {
                tracing::info!(execution = %h.uuid, api_job = %j.uuid, "scheduled call submitted");
                if j.state == JobState::Done {
                    let success = j.success.unwrap_or(false);
                    self.complete(ctx, h, success, j.result.unwrap_or_default())
                        .await?;
                }
                Ok(())
            }
            Outcome::Done { reply, .. } => {
                if ctx.cancelled().is_cancelled() {
                    // Possibly not a refusal but this leader's end: the next one resubmits.
                    return Ok(());
                }
                let unavailable =
                    reply["error"]["code"] == Code::ManagementNodeUnavailable.as_str();
                if unavailable {
                    return Err(DutyError(format!("scheduled call not submitted: {reply}")));
                }
                let success = reply["success"] == Value::Bool(true);
                self.complete(ctx, h, success, reply.to_string()).await
            }
        }
    }
}

/// The call an execution names, as a request (`Err`: why it cannot be one, e.g. a call this
/// build does not implement, recorded as the execution's failure).
fn build_request(
    h: &SchedulerJobHistory,
) -> Result<(&'static api::catalogue::CallSpec, ApiRequest), String> {
    let dump = h
        .request_dump
        .as_deref()
        .ok_or_else(|| "the execution names no call".to_string())?;
    let v: Value = serde_json::from_str(dump).map_err(|e| format!("bad request dump: {e}"))?;
    let (name, body) = v
        .as_object()
        .and_then(|m| m.iter().next())
        .ok_or_else(|| "empty request dump".to_string())?;
    let spec = api::catalogue::catalogue()
        .by_name(name)
        .ok_or_else(|| format!("{name} is not a ZStack call"))?;
    let body = body.as_object().cloned().unwrap_or_default();
    Ok((
        spec,
        ApiRequest {
            class: spec.class.clone(),
            body,
            session_uuid: None,
            system_tags: Vec::new(),
            user_tags: Vec::new(),
            timeout_ms: None,
        },
    ))
}

fn new_uuid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The interpreter's effects for a duty: reads of the leader's local state (caught up at
/// establish), proposals fenced by its term, no queries or host probes (no scheduled call
/// needs one).
struct DutyEffects<'a> {
    ctx: &'a LeaderContext,
    key: Arc<DataKey>,
}

impl Effects for DutyEffects<'_> {
    fn read<T>(&self, f: impl FnOnce(&dyn StateTxn) -> T) -> T {
        self.ctx.read(f)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            now_ms: self.ctx.now_ms(),
            new_uuid: new_uuid(),
            salt: rand::random(),
            key: self.key.clone(),
        }
    }

    async fn barrier(&self) -> Result<(), Refusal> {
        Ok(())
    }

    async fn propose(&self, cmd: Command, request_id: Option<String>) -> Result<Response, Refusal> {
        self.ctx
            .propose_as_leader(cmd, request_id)
            .await
            .map_err(|e| Refusal::new(Code::ManagementNodeUnavailable, e.0))
    }

    async fn query(
        &self,
        _run: QueryFn,
        _query: Query,
        _caller: Caller,
    ) -> Result<Map<String, Value>, ApiError> {
        Err(ApiError::Refused(Refusal::new(
            Code::NotSupported,
            "a scheduled job cannot run a query",
        )))
    }

    async fn probe(&self, _endpoint: &HostEndpoint) -> Result<(), String> {
        Err("a scheduled job cannot probe a host".into())
    }

    fn renew_session(&self, _session_uuid: String) {}

    fn job_accepted(&self) {}
}

impl Duty for SchedulerTimer {
    fn name(&self) -> &str {
        "scheduler-timer"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            loop {
                let wake = match self.round(&ctx).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(term = ctx.term(), error = %e.0, "scheduler round failed");
                        ctx.now_ms() + MAX_SLEEP.as_millis() as u64
                    }
                };
                let left = Duration::from_millis(wake.saturating_sub(ctx.now_ms()))
                    .clamp(Duration::from_millis(20), MAX_SLEEP);
                tokio::select! {
                    _ = ctx.cancelled().cancelled() => return Ok(()),
                    _ = tokio::time::sleep(left) => {}
                }
            }
        })
    }
}
