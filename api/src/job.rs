//! Durable async API jobs (spec decision 3). An async call first commits a job record and the
//! client gets its uuid at once; the leader's job executor then proposes `Run`, which applies
//! the call's command and stores ZStack's result text in the same entry. A job interrupted by a
//! leader change is still `Processing` in the replicated state, so the next leader's executor
//! simply runs it. The job uuid is the idempotency key: submitting it again returns the same
//! job, and running a finished job changes nothing.

use serde::Deserialize;
use serde::Serialize;

use crate::global_config;
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

/// Job table: `j/<uuid>` → record, `p/<uuid>` → marker of a job not yet run (so the executor
/// never scans the finished jobs kept for the retention period).
pub const TABLE: &str = "api_job";

fn record_key(uuid: &str) -> Vec<u8> {
    [b"j/".as_slice(), uuid.as_bytes()].concat()
}

fn pending_key(uuid: &str) -> Vec<u8> {
    [b"p/".as_slice(), uuid.as_bytes()].concat()
}

/// `Processing` until run, then `Done` (success or failure is inside the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, not run yet.
    Processing,
    /// Finished.
    Done,
}

/// A job record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiJob {
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
    /// The command still to run (cleared when done).
    pub command: Option<Box<Command>>,
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
}

/// Job commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOp {
    /// Record an accepted async call.
    Submit {
        /// Job uuid.
        uuid: String,
        /// Short API name.
        api_name: String,
        /// Reply/event class.
        reply_class: String,
        /// The call's command.
        command: Box<Command>,
    },
    /// Run a submitted job (the leader's job executor proposes this).
    Run {
        /// Job uuid.
        uuid: String,
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

fn load(txn: &dyn StateTxn, uuid: &str) -> Result<Option<ApiJob>, ApiError> {
    txn.get(TABLE, &record_key(uuid))?
        .map(|raw| {
            serde_json::from_slice(&raw).map_err(|e| ApiError::Corrupt {
                what: format!("api job {uuid}"),
                detail: e.to_string(),
            })
        })
        .transpose()
}

fn store(txn: &mut dyn StateTxn, job: &ApiJob) -> Result<(), ApiError> {
    let raw = serde_json::to_vec(job).map_err(|e| ApiError::Corrupt {
        what: format!("api job {}", job.uuid),
        detail: e.to_string(),
    })?;
    txn.put(TABLE, &record_key(&job.uuid), raw)?;
    match job.state {
        JobState::Processing => txn.put(TABLE, &pending_key(&job.uuid), Vec::new())?,
        JobState::Done => txn.delete(TABLE, &pending_key(&job.uuid))?,
    }
    Ok(())
}

/// Read a job (for polling on any node).
pub fn get(txn: &dyn StateTxn, uuid: &str) -> Result<Option<ApiJob>, ApiError> {
    load(txn, uuid)
}

/// Uuids of jobs not yet run, in uuid order (the executor's work list), at most `limit`.
pub fn pending(txn: &dyn StateTxn, limit: usize) -> Result<Vec<String>, ApiError> {
    Ok(txn
        .scan_prefix(TABLE, b"p/", limit)?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k[2..]).into_owned())
        .collect())
}

/// Render a command's response as ZStack's result text in `reply_class`.
pub(crate) fn render(reply_class: &str, resp: &Response) -> (bool, String) {
    match resp.reply() {
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

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: JobOp,
) -> Result<JobResult, ApiError> {
    match op {
        JobOp::Submit {
            uuid,
            api_name,
            reply_class,
            command,
        } => {
            crate::validate::uuid("X-Job-UUID", &uuid)?;
            if matches!(*command, Command::Job(_)) {
                return Err(ApiError::Refused(Refusal::new(
                    Code::InvalidArgument,
                    "a job cannot wrap a job command",
                )));
            }
            if let Some(existing) = load(txn, &uuid)? {
                // The idempotent retry: same uuid, same job, whatever was sent the second time.
                return Ok(JobResult::Job(Box::new(existing)));
            }
            let job = ApiJob {
                uuid,
                api_name,
                reply_class,
                state: JobState::Processing,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
                result: None,
                success: None,
                command: Some(command),
            };
            store(txn, &job)?;
            Ok(JobResult::Job(Box::new(job)))
        }
        JobOp::Run { uuid } => {
            caller.require_admin("job execution")?;
            let Some(mut job) = load(txn, &uuid)? else {
                return Err(ApiError::Refused(Refusal::new(
                    Code::ResourceNotFound,
                    format!("no api job[uuid:{uuid}]"),
                )));
            };
            let Some(command) = job
                .command
                .take()
                .filter(|_| job.state == JobState::Processing)
            else {
                return Ok(JobResult::Job(Box::new(job)));
            };
            let who = crate::audit::caller_of(&command).cloned();
            // The call's writes are staged so that a refusal leaves only the job's own record.
            let mut staged = Staged::new(txn);
            let resp = crate::apply(&mut staged, ctx, *command)?;
            if resp.keeps_writes() {
                staged.commit()?;
            }
            let (success, result) = render(&job.reply_class, &resp);
            job.state = JobState::Done;
            job.success = Some(success);
            job.result = Some(result);
            job.last_op_date = ctx.proposed_at_ms;
            store(txn, &job)?;
            // The outcome enters the audit log in this same entry, so it survives whatever
            // happens to the node that accepted the call (see `audit`).
            crate::audit::finish_job(txn, ctx, &job, &resp, who.as_ref())?;
            Ok(JobResult::Job(Box::new(job)))
        }
        JobOp::Expire => {
            caller.require_admin("job expiry")?;
            let retention_ms =
                global_config::int_value(txn, "api", "result.retention")? as u64 * 1000;
            let mut n = 0;
            for (k, v) in txn.scan_prefix(TABLE, b"j/", usize::MAX)? {
                let job: ApiJob = serde_json::from_slice(&v).map_err(|e| ApiError::Corrupt {
                    what: format!("api job {}", String::from_utf8_lossy(&k)),
                    detail: e.to_string(),
                })?;
                if job.state == JobState::Done
                    && job.last_op_date.saturating_add(retention_ms) <= ctx.proposed_at_ms
                {
                    txn.delete(TABLE, &k)?;
                    n += 1;
                }
            }
            Ok(JobResult::Expired(n))
        }
    }
}

/// The job family: durable async API jobs (internal commands; polling is the node's).
pub struct Jobs;

impl crate::family::Family for Jobs {
    type Op = JobOp;
    type Out = JobResult;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl::internal("job", &[TABLE]);

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: JobOp,
    ) -> Result<JobResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(_out: &JobResult) -> Result<serde_json::Map<String, serde_json::Value>, Refusal> {
        Ok(serde_json::Map::new())
    }

    fn inner(op: &JobOp) -> Option<&Command> {
        match op {
            JobOp::Submit { command, .. } => Some(command),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::zone::ZoneOp;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::IntoCommand;

    const JOB: &str = "0123456789abcdef0123456789abcdef";

    fn create_zone(uuid: &str, name: &str) -> Box<Command> {
        Box::new(
            ZoneOp::Create {
                uuid: uuid.into(),
                name: name.into(),
                description: None,
                is_default: false,
            }
            .command(Caller::admin()),
        )
    }

    fn submit(t: &mut MemTxn, at: u64, job: &str, cmd: Box<Command>) -> ApiJob {
        let op = JobOp::Submit {
            uuid: job.into(),
            api_name: "CreateZone".into(),
            reply_class: "org.zstack.header.zone.APICreateZoneEvent".into(),
            command: cmd,
        };
        match apply(t, &ctx(at), &Caller::admin(), op).unwrap() {
            JobResult::Job(j) => *j,
            other => panic!("{other:?}"),
        }
    }

    fn run(t: &mut MemTxn, at: u64, job: &str) -> ApiJob {
        match apply(
            t,
            &ctx(at),
            &Caller::admin(),
            JobOp::Run { uuid: job.into() },
        )
        .unwrap()
        {
            JobResult::Job(j) => *j,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn submit_run_poll_and_idempotent_retries() {
        let mut t = MemTxn::default();
        let zone = "a".repeat(32);
        let j = submit(&mut t, 1, JOB, create_zone(&zone, "z1"));
        assert_eq!(j.state, JobState::Processing);
        assert_eq!(pending(&t, 10).unwrap(), vec![JOB.to_string()]);
        let body = j.response().to_body();
        assert!(
            body.starts_with(&format!(r#"{{"uuid":"{JOB}","state":"Processing""#)),
            "{body}"
        );
        // A retry with the same job uuid returns the same job and queues nothing new.
        let again = submit(&mut t, 2, JOB, create_zone(&"b".repeat(32), "other"));
        assert_eq!(again, j);
        let done = run(&mut t, 3, JOB);
        assert_eq!((done.state, done.success), (JobState::Done, Some(true)));
        let result = done.result.clone().unwrap();
        assert!(
            result.starts_with(
                r#"{"org.zstack.header.zone.APICreateZoneEvent":{"inventory":{"uuid":""#
            ),
            "{result}"
        );
        assert!(result.ends_with(r#""success":true}}"#));
        assert!(pending(&t, 10).unwrap().is_empty());
        // Running it again (a new leader re-running an already finished job) changes nothing.
        assert_eq!(run(&mut t, 4, JOB), done);
        assert_eq!(
            crate::resource::list::<crate::families::zone::Zone>(&t)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn refused_call_keeps_only_the_job_record() {
        let mut t = MemTxn::default();
        submit(&mut t, 1, JOB, create_zone("not-a-uuid", "z"));
        let done = run(&mut t, 2, JOB);
        assert_eq!(done.success, Some(false));
        let r = done.result.unwrap();
        assert!(
            r.contains(r#""success":false,"error":{"code":"SYS.1007""#),
            "{r}"
        );
        assert!(crate::resource::list::<crate::families::zone::Zone>(&t)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refusals_and_expiry() {
        let mut t = MemTxn::default();
        let bad = JobOp::Submit {
            uuid: "x".into(),
            api_name: "A".into(),
            reply_class: "c".into(),
            command: create_zone(&"a".repeat(32), "z"),
        };
        assert_eq!(
            apply(&mut t, &ctx(1), &Caller::admin(), bad)
                .unwrap_err()
                .code(),
            "SYS.1007"
        );
        let nested = JobOp::Submit {
            uuid: JOB.into(),
            api_name: "A".into(),
            reply_class: "c".into(),
            command: Box::new(JobOp::Expire.command(Caller::admin())),
        };
        assert_eq!(
            apply(&mut t, &ctx(1), &Caller::admin(), nested)
                .unwrap_err()
                .code(),
            "SYS.1007"
        );
        assert_eq!(
            apply(
                &mut t,
                &ctx(1),
                &Caller::admin(),
                JobOp::Run { uuid: JOB.into() }
            )
            .unwrap_err()
            .code(),
            "SYS.1003"
        );
        submit(&mut t, 1, JOB, create_zone(&"a".repeat(32), "z"));
        run(&mut t, 2, JOB);
        let mut later = ctx(3);
        assert_eq!(
            apply(&mut t, &later, &Caller::admin(), JobOp::Expire).unwrap(),
            JobResult::Expired(0)
        );
        later.proposed_at_ms += 864_000 * 1000;
        assert_eq!(
            apply(&mut t, &later, &Caller::admin(), JobOp::Expire).unwrap(),
            JobResult::Expired(1)
        );
        assert!(get(&t, JOB).unwrap().is_none());
    }
}
