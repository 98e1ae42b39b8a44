//! Durable async API jobs (spec decision 3), each one a flow. An async call first commits a job
//! record and the client gets its uuid at once; the job's flow then runs step by step, every
//! step committed through Raft (a state change applied here) or performed by the leader outside
//! apply (a side effect whose outcome is committed as the step). The job record holds the
//! flow's position, so whichever node leads next resumes from the last committed step.
//!
//! The job uuid is the idempotency key: submitting it again returns the same job, and every
//! step op names the position it advances from, so a step re-proposed after a leader change
//! (once its Raft dedup record expired) is a no-op instead of a second step.
//!
//! Jobs start in submit order; jobs on the same resource (their `chain`) run one after another
//! (ZStack's per-resource chain queue): only the earliest unfinished job of a chain may run.

use std::panic::AssertUnwindSafe;

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::settings;
use crate::staged::Staged;
use crate::wire::envelope;
use crate::wire::envelope::ApiState;
use crate::wire::envelope::RestApiResponse;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// Job table: `j/<uuid>` → record; `p/<seq>/<uuid>` → marker of an unfinished job, in submit
/// order (so the executor never scans the finished jobs kept for the retention period);
/// `c/<chain>\0<seq>/<uuid>` → the unfinished jobs of one chain, in submit order.
pub const TABLE: &str = "api_job";

/// Version of the job record encoding; a record of another version is refused, never misread.
pub const RECORD_VERSION: u32 = 2;

fn record_key(uuid: &str) -> Vec<u8> {
    [b"j/".as_slice(), uuid.as_bytes()].concat()
}

fn pending_key(seq: u64, uuid: &str) -> Vec<u8> {
    format!("p/{seq:016x}/{uuid}").into_bytes()
}

fn chain_prefix(chain: &str) -> Vec<u8> {
    let mut k = b"c/".to_vec();
    k.extend_from_slice(chain.as_bytes());
    k.push(0);
    k
}

fn chain_key(chain: &str, seq: u64, uuid: &str) -> Vec<u8> {
    let mut k = chain_prefix(chain);
    k.extend_from_slice(format!("{seq:016x}/{uuid}").as_bytes());
    k
}

/// `Processing` until the flow ends, then `Done` (success or failure is inside the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, its flow not finished.
    Processing,
    /// Finished.
    Done,
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowSpec {
    /// One committed step: the call's command.
    Command(Box<Command>),
    /// A declared flow (`registry::flow`), with its inputs.
    Named {
        /// The flow's name.
        flow: String,
        /// Inputs the steps read.
        vars: Vars,
    },
}

/// A step that was committed, for `GetTaskProgress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMark {
    /// Step index.
    pub step: u32,
    /// Step name.
    pub name: String,
    /// When it was committed, ms.
    pub at: u64,
    /// Whether this was the step's rollback.
    pub undo: bool,
    /// Whether the step failed (its effects discarded; the rollback starts).
    #[serde(default)]
    pub failed: bool,
}

/// Where a running flow stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRun {
    /// What runs.
    pub spec: FlowSpec,
    /// Forward steps completed (and not yet undone).
    pub done: u32,
    /// Set once a step failed: the flow is rolling back and ends with this error.
    pub failure: Option<Refusal>,
    /// What steps passed on.
    pub vars: Vars,
    /// The last committed step's answer (the job's result).
    pub response: Option<Box<Response>>,
    /// Progress within the current step, percent.
    pub percent: Option<u8>,
}

/// A job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiJob {
    /// Record encoding version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The job uuid (`X-Job-UUID` or stamped).
    pub uuid: String,
    /// Short API name, e.g. `CreateZone`.
    pub api_name: String,
    /// Reply/event class the result is written in.
    pub reply_class: String,
    /// State.
    pub state: JobState,
    /// Accepted, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// ZStack's result text (`{"<class>":{...}}`) once done.
    pub result: Option<String>,
    /// Whether the call succeeded (once done).
    pub success: Option<bool>,
    /// Log index of the submit: the job's place in the start order.
    pub seq: u64,
    /// The resource the job serialises on.
    pub chain: String,
    /// Who asked.
    pub caller: Caller,
    /// The flow while it runs (cleared when done).
    pub flow: Option<FlowRun>,
    /// Committed steps, in order.
    pub history: Vec<StepMark>,
}

impl ApiJob {
    /// What `GET /zstack/api/result/{uuid}` answers.
    pub fn response(&self) -> RestApiResponse {
        RestApiResponse {
            uuid: Some(self.uuid.clone()),
            state: match self.state {
                JobState::Processing => ApiState::Processing,
                JobState::Done => ApiState::Done,
            },
            created_date: Some(crate::wire::date::java_date(self.create_date)),
            finished_date: Some(crate::wire::date::java_date(self.last_op_date)),
            result: self.result.clone(),
        }
    }

    /// Number of steps of the job's flow (1 for a single command).
    pub fn total_steps(&self) -> u32 {
        match &self.flow {
            Some(run) => steps_of(&run.spec).map(|s| s.len() as u32).unwrap_or(1),
            None => self.history.iter().filter(|m| !m.undo).count() as u32,
        }
    }
}

/// An accepted async call, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Job uuid.
    pub uuid: String,
    /// Short API name.
    pub api_name: String,
    /// Reply/event class.
    pub reply_class: String,
    /// The resource the job serialises on (empty: none, only its own uuid).
    pub chain: String,
    /// What it runs.
    pub flow: FlowSpec,
}

impl Submission {
    /// A job running one command.
    pub fn command(
        uuid: impl Into<String>,
        api_name: impl Into<String>,
        reply_class: impl Into<String>,
        chain: impl Into<String>,
        command: Command,
    ) -> Submission {
        Submission {
            uuid: uuid.into(),
            api_name: api_name.into(),
            reply_class: reply_class.into(),
            chain: chain.into(),
            flow: FlowSpec::Command(Box::new(command)),
        }
    }
}

/// Job commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOp {
    /// Record an accepted async call.
    Submit(Submission),
    /// Commit step `step` of a job (forward, or its rollback with `undo`); a no-op unless the
    /// job's flow stands exactly there.
    Step {
        /// Job uuid.
        uuid: String,
        /// Step index.
        step: u32,
        /// The step's rollback.
        undo: bool,
    },
    /// Record the outcome of side-effect step `step` (forward, or its rollback with `undo`);
    /// a no-op unless the job's flow stands exactly there.
    Effect {
        /// Job uuid.
        uuid: String,
        /// Step index.
        step: u32,
        /// The step's rollback.
        undo: bool,
        /// What the receiver answered: vars to merge, or why it failed.
        outcome: Result<Vars, Refusal>,
    },
    /// Progress within a long step.
    Progress {
        /// Job uuid.
        uuid: String,
        /// Step index.
        step: u32,
        /// Percent done.
        percent: u8,
    },
    /// Forget finished jobs older than `api/result.retention` at the command's stamp.
    Expire,
}

/// Answer of a job command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobResult {
    /// The job as it stands after the command.
    Job(Box<ApiJob>),
    /// Number of finished jobs forgotten.
    Expired(u64),
}

fn corrupt(uuid: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("api job {uuid}"),
        detail: detail.to_string(),
    }
}

fn decode(uuid: &str, raw: &[u8]) -> Result<ApiJob, ApiError> {
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    let v: Version = serde_json::from_slice(raw).map_err(|e| corrupt(uuid, e))?;
    if v.version != Some(RECORD_VERSION) {
        return Err(corrupt(
            uuid,
            format!(
                "job record of encoding version {:?}; this build reads version {RECORD_VERSION}",
                v.version
            ),
        ));
    }
    serde_json::from_slice(raw).map_err(|e| corrupt(uuid, e))
}

fn load(txn: &dyn StateTxn, uuid: &str) -> Result<Option<ApiJob>, ApiError> {
    txn.get(TABLE, &record_key(uuid))?
        .map(|raw| decode(uuid, &raw))
        .transpose()
}

/// The job with this uuid; refused when there is none.
fn existing(txn: &dyn StateTxn, uuid: &str) -> Result<ApiJob, ApiError> {
    load(txn, uuid)?.ok_or_else(|| {
        ApiError::Refused(Refusal::new(
            Code::ResourceNotFound,
            format!("no api job[uuid:{uuid}]"),
        ))
    })
}

/// Whether the job's flow stands at step `step`: running forward, or (`undo`) rolling back.
fn stands_at(job: &ApiJob, step: u32, undo: bool) -> bool {
    job.flow.as_ref().is_some_and(|run| {
        let at = if undo {
            run.done.checked_sub(1)
        } else {
            Some(run.done)
        };
        job.state == JobState::Processing && run.failure.is_some() == undo && at == Some(step)
    })
}

/// Step `step` is rolled back; a rollback that failed (`failure`) is noted and the rest still
/// rolls back (ZStack does the same).
fn step_rolled_back(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    mut job: ApiJob,
    step: u32,
    failure: Option<Refusal>,
) -> Result<ApiJob, ApiError> {
    if let Some(run) = job.flow.as_mut() {
        if let (Some(why), Some(f)) = (failure, run.failure.as_mut()) {
            f.details.push_str(&format!(
                "; rollback of step {step} failed: {}",
                why.details
            ));
        }
        run.done -= 1;
    }
    rolled_back(txn, ctx, job)
}

fn store(txn: &mut dyn StateTxn, job: &ApiJob) -> Result<(), ApiError> {
    let raw = serde_json::to_vec(job).map_err(|e| corrupt(&job.uuid, e))?;
    txn.put(TABLE, &record_key(&job.uuid), raw)?;
    let (p, c) = (
        pending_key(job.seq, &job.uuid),
        chain_key(&job.chain, job.seq, &job.uuid),
    );
    match job.state {
        JobState::Processing => {
            txn.put(TABLE, &p, Vec::new())?;
            txn.put(TABLE, &c, Vec::new())?;
        }
        JobState::Done => {
            txn.delete(TABLE, &p)?;
            txn.delete(TABLE, &c)?;
        }
    }
    Ok(())
}

/// Read a job (for polling on any node).
pub fn get(txn: &dyn StateTxn, uuid: &str) -> Result<Option<ApiJob>, ApiError> {
    load(txn, uuid)
}

/// Uuids of unfinished jobs in submit order (the executor's work list), at most `limit`.
pub fn pending(txn: &dyn StateTxn, limit: usize) -> Result<Vec<String>, ApiError> {
    Ok(txn
        .scan_prefix(TABLE, b"p/", limit)?
        .into_iter()
        .filter_map(|(k, _)| {
            let k = String::from_utf8_lossy(&k).into_owned();
            k.rsplit_once('/').map(|(_, u)| u.to_string())
        })
        .collect())
}

/// Whether some unfinished job serialises on `chain`.
pub fn chain_busy(txn: &dyn StateTxn, chain: &str) -> Result<bool, ApiError> {
    Ok(!txn.scan_prefix(TABLE, &chain_prefix(chain), 1)?.is_empty())
}

/// Render a command's response as ZStack's result text in `reply_class`.
#[cfg(test)]
pub(crate) fn render(txn: &dyn StateTxn, reply_class: &str, resp: &Response) -> (bool, String) {
    render_outcome(reply_class, resp.reply_in(txn))
}

fn render_outcome(
    reply_class: &str,
    outcome: Result<Map<String, Value>, Refusal>,
) -> (bool, String) {
    match outcome {
        Ok(fields) => (
            true,
            envelope::encode_result(reply_class, &envelope::success(fields)),
        ),
        Err(refusal) => (
            false,
            envelope::encode_result(reply_class, &envelope::failure(&refusal.to_error_code())),
        ),
    }
}

/// The steps of a declared flow (`None` for a single command).
fn steps_of(spec: &FlowSpec) -> Option<&'static [StepDef]> {
    match spec {
        FlowSpec::Command(_) => None,
        FlowSpec::Named { flow, .. } => crate::registry::flow(flow).map(|f| f.steps),
    }
}

/// The unknown-flow refusal (a job naming a flow this build does not declare).
fn unknown_flow(name: &str) -> Refusal {
    Refusal::new(
        Code::NotSupported,
        format!("flow[{name}] is not known to this management node"),
    )
}

/// What the leader must do next for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextAction {
    /// Propose this op (a committed step).
    Commit(JobOp),
    /// Perform this side effect, then propose [`JobOp::Effect`] with its outcome. `key` is the
    /// idempotency key the receiver dedupes on: the same for every attempt of this step.
    Effect {
        /// Idempotency key: `<job>/<step>/<do|undo>`.
        key: String,
        /// What to do.
        request: EffectRequest,
        /// Step index.
        step: u32,
        /// The step's rollback.
        undo: bool,
    },
    /// Nothing: the job is done.
    Finished,
}

/// The idempotency key of a side-effect step.
pub fn effect_key(job: &str, step: u32, undo: bool) -> String {
    format!("{job}/{step}/{}", if undo { "undo" } else { "do" })
}

/// The next action of a job, from its replicated state alone (so a new leader carries on
/// exactly where the last one stopped).
pub fn next_action(job: &ApiJob) -> NextAction {
    let Some(run) = job
        .flow
        .as_ref()
        .filter(|_| job.state == JobState::Processing)
    else {
        return NextAction::Finished;
    };
    let uuid = job.uuid.clone();
    let Some(steps) = steps_of(&run.spec) else {
        return match &run.spec {
            // A single command: its one committed step.
            FlowSpec::Command(_) => NextAction::Commit(JobOp::Step {
                uuid,
                step: 0,
                undo: false,
            }),
            // An unknown flow fails at its first step; the apply says why.
            FlowSpec::Named { .. } => NextAction::Commit(JobOp::Step {
                uuid,
                step: run.done,
                undo: run.failure.is_some(),
            }),
        };
    };
    let effect = |f: fn(&Vars) -> Result<EffectRequest, ApiError>, step: u32, undo: bool| {
        match f(&run.vars) {
            Ok(request) => NextAction::Effect {
                key: effect_key(&job.uuid, step, undo),
                request,
                step,
                undo,
            },
            // A request that cannot even be built fails the step, recorded like any failure.
            Err(e) => NextAction::Commit(JobOp::Effect {
                uuid: job.uuid.clone(),
                step,
                undo,
                outcome: Err(crate::plan::refusal_of(&e)),
            }),
        }
    };
    if run.failure.is_none() {
        let k = run.done;
        match steps.get(k as usize).map(|s| &s.action) {
            Some(Action::Effect(f)) => effect(*f, k, false),
            _ => NextAction::Commit(JobOp::Step {
                uuid,
                step: k,
                undo: false,
            }),
        }
    } else {
        let k = run.done.saturating_sub(1);
        match steps.get(k as usize).map(|s| &s.undo) {
            Some(Undo::Effect(f)) => effect(*f, k, true),
            _ => NextAction::Commit(JobOp::Step {
                uuid,
                step: k,
                undo: true,
            }),
        }
    }
}

/// Run a committed step's function on a write buffer: the writes are kept only if it
/// succeeds, and a panic fails the step instead of the replica.
fn run_commit(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
    name: &str,
    f: impl FnOnce(
        &mut dyn StateTxn,
        &ApplyCtx,
        &Caller,
        &mut Vars,
    ) -> Result<Option<Response>, ApiError>,
) -> Result<Result<Option<Response>, Refusal>, ApiError> {
    let mut staged = Staged::new(txn);
    let mut scratch = vars.clone();
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        f(&mut staged, ctx, caller, &mut scratch)
    }));
    let outcome = match ran {
        Ok(Err(ApiError::State(e))) => return Err(ApiError::State(e)),
        Ok(Ok(Some(Response::Refused(e)))) | Ok(Err(e)) => Err(crate::plan::refusal_of(&e)),
        Ok(Ok(resp)) => Ok(resp),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(Refusal::new(
                Code::Internal,
                format!("step[{name}] failed unexpectedly: {why}"),
            ))
        }
    };
    if outcome.is_ok() {
        staged.commit()?;
        *vars = scratch;
    }
    Ok(outcome)
}

/// The single committed step of a command job.
fn apply_command(
    command: &Command,
) -> impl FnOnce(
    &mut dyn StateTxn,
    &ApplyCtx,
    &Caller,
    &mut Vars,
) -> Result<Option<Response>, ApiError>
       + '_ {
    move |txn, ctx, _caller, _vars| Ok(Some(crate::registry::apply(txn, ctx, command.clone())?))
}

fn mark(job: &mut ApiJob, ctx: &ApplyCtx, step: u32, name: &str, undo: bool, failed: bool) {
    job.history.push(StepMark {
        step,
        name: name.to_string(),
        at: ctx.proposed_at_ms,
        undo,
        failed,
    });
}

/// After a forward step: done, or the next step.
fn advanced(txn: &mut dyn StateTxn, ctx: &ApplyCtx, mut job: ApiJob) -> Result<ApiJob, ApiError> {
    let total = job.total_steps();
    if let Some(run) = job.flow.as_mut() {
        run.done += 1;
        run.percent = None;
        if run.done >= total {
            let outcome = match run.response.as_deref() {
                Some(resp) => resp.reply_in(&*txn),
                None => Ok(Map::new()),
            };
            return finish(txn, ctx, job, outcome);
        }
    }
    Ok(job)
}

/// Start (or continue) the rollback: skip the steps that have nothing to undo; done when
/// every completed step is undone.
fn rolled_back(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    mut job: ApiJob,
) -> Result<ApiJob, ApiError> {
    let Some(run) = job.flow.as_mut() else {
        return Ok(job);
    };
    run.percent = None;
    if let Some(steps) = steps_of(&run.spec) {
        while run.done > 0
            && matches!(
                steps.get(run.done as usize - 1).map(|s| &s.undo),
                Some(Undo::Nothing)
            )
        {
            run.done -= 1;
        }
    } else {
        run.done = 0;
    }
    if run.done == 0 {
        let failure = run.failure.clone().unwrap_or_else(|| {
            Refusal::new(
                Code::Internal,
                "the flow rolled back without a recorded cause",
            )
        });
        return finish(txn, ctx, job, Err(failure));
    }
    Ok(job)
}

fn failed(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    mut job: ApiJob,
    why: Refusal,
) -> Result<ApiJob, ApiError> {
    if let Some(run) = job.flow.as_mut() {
        run.failure = Some(why);
    }
    rolled_back(txn, ctx, job)
}

/// End a job with the call's outcome and complete its audit record in the same entry.
fn finish(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    mut job: ApiJob,
    outcome: Result<Map<String, Value>, Refusal>,
) -> Result<ApiJob, ApiError> {
    let (success, result) = render_outcome(&job.reply_class, outcome.clone());
    job.state = JobState::Done;
    job.success = Some(success);
    job.result = Some(result);
    job.last_op_date = ctx.proposed_at_ms;
    job.flow = None;
    store(txn, &job)?;
    // The outcome enters the audit log in this same entry, so it survives whatever happens to
    // the node that accepted the call (see `audit`).
    crate::audit::finish_job(txn, ctx, &job, outcome, Some(&job.caller))?;
    Ok(job)
}

/// Record an accepted async call (the idempotent part of a submit).
pub(crate) fn submit(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    s: Submission,
) -> Result<ApiJob, ApiError> {
    let Submission {
        uuid,
        api_name,
        reply_class,
        chain,
        flow,
    } = s;
    crate::validate::uuid("X-Job-UUID", &uuid)?;
    if let FlowSpec::Command(c) = &flow {
        if matches!(**c, Command::Job(_)) {
            return Err(ApiError::Refused(Refusal::new(
                Code::InvalidArgument,
                "a job cannot wrap a job command",
            )));
        }
    }
    if let Some(existing) = load(txn, &uuid)? {
        // The idempotent retry: same uuid, same job, whatever was sent the second time.
        return Ok(existing);
    }
    let who = match &flow {
        FlowSpec::Command(c) => crate::audit::caller_of(c)
            .cloned()
            .unwrap_or_else(|| caller.clone()),
        FlowSpec::Named { .. } => caller.clone(),
    };
    let chain = if chain.is_empty() {
        uuid.clone()
    } else {
        chain
    };
    // A declared flow starts from its inputs.
    let vars = match &flow {
        FlowSpec::Named { vars, .. } => vars.clone(),
        FlowSpec::Command(_) => Vars::new(),
    };
    let job = ApiJob {
        version: RECORD_VERSION,
        uuid,
        api_name,
        reply_class,
        state: JobState::Processing,
        create_date: ctx.proposed_at_ms,
        last_op_date: ctx.proposed_at_ms,
        result: None,
        success: None,
        seq: ctx.index,
        chain,
        caller: who,
        flow: Some(FlowRun {
            spec: flow,
            done: 0,
            failure: None,
            vars,
            response: None,
            percent: None,
        }),
        history: Vec::new(),
    };
    store(txn, &job)?;
    Ok(job)
}

/// Whether the job is a single command whose chain has nothing else to wait for: it may run
/// in the entry that submits it.
pub(crate) fn runs_inline(txn: &dyn StateTxn, job: &ApiJob) -> Result<bool, ApiError> {
    // A single command, or a flow's first step when that is a state change (the call's own
    // command): refused input then fails the job in the entry that accepted it, before any
    // side effect, and the created record is visible as soon as the call is answered.
    let inline = match job.flow.as_ref() {
        Some(run) if run.done == 0 && run.failure.is_none() => match &run.spec {
            FlowSpec::Command(_) => true,
            FlowSpec::Named { .. } => steps_of(&run.spec)
                .and_then(|s| s.first())
                .is_some_and(|s| matches!(s.action, Action::Commit(_))),
        },
        _ => false,
    };
    if !inline || job.state != JobState::Processing {
        return Ok(false);
    }
    // The job itself is the chain's only unfinished job when nobody queued before it.
    let first = txn.scan_prefix(TABLE, &chain_prefix(&job.chain), 1)?;
    Ok(first
        .first()
        .is_some_and(|(k, _)| k.ends_with(job.uuid.as_bytes())))
}

/// Commit step `step` (forward or its rollback) if the job stands there.
pub(crate) fn step(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    step: u32,
    undo: bool,
) -> Result<ApiJob, ApiError> {
    let mut job = existing(txn, uuid)?;
    let Some(run) = job.flow.as_ref().filter(|_| stands_at(&job, step, undo)) else {
        return Ok(job);
    };
    let caller = job.caller.clone();
    let mut vars = run.vars.clone();
    let spec = run.spec.clone();
    let outcome = match (&spec, steps_of(&spec)) {
        (FlowSpec::Command(c), _) => {
            let name = job.api_name.clone();
            let r = run_commit(txn, ctx, &caller, &mut vars, &name, apply_command(c))?;
            mark(&mut job, ctx, step, &name, undo, r.is_err());
            r
        }
        (FlowSpec::Named { flow, .. }, None) => Err(unknown_flow(flow)),
        (FlowSpec::Named { .. }, Some(steps)) => {
            let def = &steps[step as usize];
            let f = match (undo, &def.action, &def.undo) {
                (false, Action::Commit(f), _) | (true, _, Undo::Commit(f)) => *f,
                // Not a committed step here: this op does not advance it.
                _ => return Ok(job),
            };
            let r = run_commit(txn, ctx, &caller, &mut vars, def.name, f)?;
            mark(&mut job, ctx, step, def.name, undo, r.is_err());
            r
        }
    };
    if let Some(run) = job.flow.as_mut() {
        run.vars = vars;
    }
    job.last_op_date = ctx.proposed_at_ms;
    let job = match (undo, outcome) {
        (false, Ok(resp)) => {
            if let (Some(run), Some(resp)) = (job.flow.as_mut(), resp) {
                run.response = Some(Box::new(resp));
            }
            advanced(txn, ctx, job)?
        }
        (false, Err(why)) => failed(txn, ctx, job, why)?,
        (true, r) => step_rolled_back(txn, ctx, job, step, r.err())?,
    };
    store(txn, &job)?;
    Ok(job)
}

/// Record a side effect's outcome if the job stands at that step.
fn effect_done(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    step: u32,
    undo: bool,
    outcome: Result<Vars, Refusal>,
) -> Result<ApiJob, ApiError> {
    let mut job = existing(txn, uuid)?;
    let Some(def) = job
        .flow
        .as_ref()
        .filter(|_| stands_at(&job, step, undo))
        .and_then(|run| steps_of(&run.spec)?.get(step as usize))
    else {
        return Ok(job);
    };
    let is_effect = if undo {
        matches!(def.undo, Undo::Effect(_))
    } else {
        matches!(def.action, Action::Effect(_))
    };
    // An outcome built from garbage vars arrives for any step kind (see `next_action`).
    if !is_effect && outcome.is_ok() {
        return Ok(job);
    }
    mark(&mut job, ctx, step, def.name, undo, outcome.is_err());
    job.last_op_date = ctx.proposed_at_ms;
    let job = match (undo, outcome) {
        (false, Ok(vars)) => {
            if let Some(run) = job.flow.as_mut() {
                run.vars.extend(vars);
            }
            advanced(txn, ctx, job)?
        }
        (false, Err(why)) => failed(txn, ctx, job, why)?,
        (true, r) => step_rolled_back(txn, ctx, job, step, r.err())?,
    };
    store(txn, &job)?;
    Ok(job)
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: JobOp,
) -> Result<JobResult, ApiError> {
    let job = match op {
        JobOp::Submit(s) => submit(txn, ctx, caller, s)?,
        JobOp::Step {
            uuid,
            step: s,
            undo,
        } => {
            caller.require_admin("job execution")?;
            step(txn, ctx, &uuid, s, undo)?
        }
        JobOp::Effect {
            uuid,
            step,
            undo,
            outcome,
        } => {
            caller.require_admin("job execution")?;
            effect_done(txn, ctx, &uuid, step, undo, outcome)?
        }
        JobOp::Progress {
            uuid,
            step,
            percent,
        } => {
            caller.require_admin("job execution")?;
            let mut job = existing(txn, &uuid)?;
            if let Some(run) = job
                .flow
                .as_mut()
                .filter(|r| r.failure.is_none() && r.done == step)
            {
                run.percent = Some(percent.min(100));
                job.last_op_date = ctx.proposed_at_ms;
                store(txn, &job)?;
            }
            job
        }
        JobOp::Expire => {
            caller.require_admin("job expiry")?;
            return expire(txn, ctx).map(JobResult::Expired);
        }
    };
    Ok(JobResult::Job(Box::new(job)))
}

fn expire(txn: &mut dyn StateTxn, ctx: &ApplyCtx) -> Result<u64, ApiError> {
    let retention_ms = settings::int_value(txn, "api", "result.retention")? as u64 * 1000;
    let mut n = 0;
    for (k, v) in txn.scan_prefix(TABLE, b"j/", usize::MAX)? {
        let uuid = String::from_utf8_lossy(&k[2..]).into_owned();
        let job = decode(&uuid, &v)?;
        if job.state == JobState::Done
            && job.last_op_date.saturating_add(retention_ms) <= ctx.proposed_at_ms
        {
            txn.delete(TABLE, &k)?;
            n += 1;
        }
    }
    Ok(n)
}

/// `TaskProgressInventory` entries of a job (`GetTaskProgress`): one `Task` per committed
/// step, in order, and while a step runs, a `Progress` with the percent of the whole job.
fn progress_inventories(job: &ApiJob, all: bool) -> Vec<Value> {
    let total = job.total_steps().max(1);
    let mut out: Vec<Value> = job
        .history
        .iter()
        .map(|m| {
            json!({
                "taskUuid": format!("{}-{}{}", job.uuid, m.step, if m.undo { "-undo" } else { "" }),
                "taskName": m.name,
                "type": "Task",
                "content": format!(
                    "{} of {total}{}{}",
                    m.step + 1,
                    if m.undo { " (rollback)" } else { "" },
                    if m.failed { " (failed)" } else { "" }
                ),
                "time": m.at,
            })
        })
        .collect();
    if let Some(run) = &job.flow {
        let within = f64::from(run.percent.unwrap_or(0)) / 100.0;
        let overall = ((f64::from(run.done) + within) / f64::from(total) * 100.0).floor() as u64;
        out.push(json!({
            "taskUuid": format!("{}-progress", job.uuid),
            "taskName": job.api_name,
            "type": "Progress",
            "content": overall.min(100).to_string(),
            "time": job.last_op_date,
        }));
    } else if job.state == JobState::Done {
        out.push(json!({
            "taskUuid": format!("{}-progress", job.uuid),
            "taskName": job.api_name,
            "type": "Progress",
            "content": "100",
            "time": job.last_op_date,
        }));
    }
    if !all {
        out = out.pop().into_iter().collect();
    }
    out
}

fn plan_task_progress(p: &crate::plan::PlanInput) -> Result<crate::plan::Plan, Refusal> {
    let api_id = p.string("apiId").unwrap_or_default().to_ascii_lowercase();
    if crate::validate::uuid("apiId", &api_id).is_err() {
        return Err(Refusal::new(
            Code::InvalidArgument,
            format!("parameter apiId[{api_id}] is not a valid uuid."),
        ));
    }
    let all = crate::params::boolean(p.body, "all").unwrap_or(false);
    Ok(crate::plan::Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| {
            let invs = match load(txn, &api_id)? {
                // A job is visible to the account that submitted it (and to the admin).
                Some(job) if caller.can_see(&job.caller.account_uuid) => {
                    progress_inventories(&job, all)
                }
                _ => Vec::new(),
            };
            let mut m = Map::new();
            m.insert("inventories".into(), Value::Array(invs));
            Ok(m)
        }),
    })
}

/// The job family: durable async API jobs and their flows (internal commands; polling is the
/// node's), and `GetTaskProgress`.
pub struct Jobs;

impl crate::family::Reply for JobResult {}

/// ZStack's class of a task's progress; its `subTasks` are progresses too (a static, so that
/// the class can name itself) and `opaque` is a JRE map.
static TASK_PROGRESS: crate::rest::schema::JavaClass = crate::rest::schema::JavaClass {
    name: "org.zstack.header.core.progress.TaskProgressInventory",
    fields: &[
        (
            "subTasks",
            crate::rest::schema::Schema::Class(&TASK_PROGRESS),
        ),
        ("opaque", crate::rest::schema::Schema::Jre),
    ],
};

impl crate::family::Family for Jobs {
    type Op = JobOp;
    type Out = JobResult;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl {
        replies: crate::family::inventories!(crate::rest::schema::Schema::Class(&TASK_PROGRESS)),
        calls: &[crate::family::CallDecl::new(
            "GetTaskProgress",
            plan_task_progress,
            &[crate::family::route(
                crate::rest::Method::Get,
                "/v1/task-progresses/{apiId}",
                crate::rest::Body::None,
            )],
        )],
        flows: &[crate::flow::selftest::SELFTEST],
        #[cfg(test)]
        cases: cases::cases,
        ..crate::family::FamilyDecl::internal("job", &[TABLE, crate::flow::selftest::TABLE])
    };
    const APPLY: crate::family::ApplyFn<Self> = apply;

    fn inner(op: &JobOp) -> Option<&Command> {
        match op {
            JobOp::Submit(Submission {
                flow: FlowSpec::Command(command),
                ..
            }) => Some(command),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod cases;
