//! An API call's write as ONE log entry: the session check, the call's command (or, for an
//! async call, its job — run at once when it is a single command whose resource has nothing
//! queued), and the call's audit record with its outcome, applied together.
//!
//! The serving node therefore needs no read-index barrier before a write: the session is
//! checked where the command is applied, at the entry's place in the log, so a session
//! revoked anywhere before it is refused; and the audit record cannot be lost by the serving
//! node dying after the acknowledgement.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

use crate::audit::AuditRecord;
use crate::families::identity;
use crate::job;
use crate::job::ApiJob;
use crate::job::Submission;
use crate::staged::Staged;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// How an async call's job is submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTicket {
    /// Job uuid (the idempotency key).
    pub uuid: String,
    /// Short API name.
    pub api_name: String,
    /// Reply/event class.
    pub reply_class: String,
    /// The resource the job serialises on.
    pub chain: String,
    /// The declared flow the job runs, the call's command being its first step (`None`: the
    /// command is the whole job).
    #[serde(default)]
    pub flow: Option<String>,
}

/// One API call's write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    /// The request's message class (named in a session refusal).
    pub class: String,
    /// The session the request carried: checked at apply, and its account and user must be
    /// the caller the command names.
    pub session: Option<String>,
    /// For an async call: its job.
    pub job: Option<JobTicket>,
    /// The serving node's audit record (who, from where, what), completed here.
    pub audit: Option<AuditRecord>,
    /// The call's command.
    pub command: Box<Command>,
}

/// What an API call's write answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallOutcome {
    /// Refused before the call ran (session): nothing but the audit record was written.
    Refused(ApiError),
    /// A sync call's answer.
    Answer(Box<Response>),
    /// An async call accepted by this entry as a new job (done already when it ran inline;
    /// it is still answered as accepted, as ZStack does, and its first poll finds it done).
    Accepted(Box<ApiJob>),
    /// An async call whose job existed already (a client's retry with the same job uuid).
    Job(Box<ApiJob>),
}

fn check_session(
    txn: &dyn StateTxn,
    ctx: &ApplyCtx,
    class: &str,
    session: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    let (found, _) = identity::session_caller(txn, class, Some(session), ctx.proposed_at_ms)?;
    if &found != caller {
        return Err(ApiError::Refused(Refusal::new(
            Code::InvalidSession,
            format!("session[uuid:{session}] does not belong to the caller of this call"),
        )));
    }
    Ok(())
}

/// The audit record's outcome, from a reply object or a refusal.
fn completed(
    mut r: AuditRecord,
    ctx: &ApplyCtx,
    reply: Result<Map<String, Value>, Refusal>,
) -> AuditRecord {
    let reply = match reply {
        Ok(fields) => crate::wire::envelope::success(fields),
        Err(e) => crate::wire::envelope::failure(&e.to_error_code()),
    };
    r.finish(&reply, ctx.proposed_at_ms);
    r
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    call: ApiCall,
) -> Result<CallOutcome, ApiError> {
    caller.require_admin("API call envelopes")?;
    let ApiCall {
        class,
        session,
        job,
        audit,
        command,
    } = call;
    if let Some(r) = &audit {
        // The serving node built it; one it got wrong must not enter the log half-checked.
        crate::audit::check(r)?;
    }
    if let Some(s) = &session {
        if let Err(e) = check_session(txn, ctx, &class, s, command.caller()) {
            if matches!(e, ApiError::State(_)) {
                return Err(e);
            }
            if let Some(r) = audit {
                crate::audit::upsert(txn, completed(r, ctx, Err(crate::plan::refusal_of(&e))))?;
            }
            return Ok(CallOutcome::Refused(e));
        }
    }
    let Some(ticket) = job else {
        // A sync write: the command's writes are kept only if it succeeded; the audit record
        // is written either way.
        let mut staged = Staged::new(txn);
        let resp = crate::registry::apply(&mut staged, ctx, *command)?;
        if resp.keeps_writes() {
            staged.commit()?;
        }
        if let Some(r) = audit {
            crate::audit::upsert(txn, completed(r, ctx, resp.reply()))?;
        }
        return Ok(CallOutcome::Answer(Box::new(resp)));
    };
    let submission = match ticket.flow {
        None => Submission::command(
            ticket.uuid,
            ticket.api_name,
            ticket.reply_class,
            ticket.chain,
            *command,
        ),
        Some(flow) => Submission {
            uuid: ticket.uuid,
            api_name: ticket.api_name,
            reply_class: ticket.reply_class,
            chain: ticket.chain,
            flow: job::FlowSpec::Named {
                flow,
                vars: crate::flow::command_vars(&command)?,
            },
        },
    };
    let existed = job::get(txn, &submission.uuid)?.is_some();
    let mut j = match job::submit(txn, ctx, caller, submission) {
        Ok(j) => j,
        Err(ApiError::State(e)) => return Err(ApiError::State(e)),
        Err(e) => {
            if let Some(r) = audit {
                crate::audit::upsert(txn, completed(r, ctx, Err(crate::plan::refusal_of(&e))))?;
            }
            return Ok(CallOutcome::Refused(e));
        }
    };
    if existed {
        return Ok(CallOutcome::Job(Box::new(j)));
    }
    if job::runs_inline(txn, &j)? {
        j = job::step(txn, ctx, &j.uuid, 0, false)?;
    }
    if let Some(mut r) = audit {
        // Keyed by the job, so the job's own completion (here or in a later step) and this
        // record merge into one.
        r.uuid = j.uuid.clone();
        r.job_uuid = Some(j.uuid.clone());
        r.create_date = j.create_date;
        crate::audit::upsert(txn, r)?;
    }
    Ok(CallOutcome::Accepted(Box::new(j)))
}

/// The API-call family: the envelope of every API write (internal; the interpreter builds it).
pub struct Calls;

impl crate::family::Reply for CallOutcome {
    fn reply(&self) -> crate::family::ReplyFields {
        match self {
            CallOutcome::Refused(e) => Err(crate::plan::refusal_of(e)),
            CallOutcome::Answer(resp) => resp.reply(),
            CallOutcome::Accepted(_) | CallOutcome::Job(_) => Ok(Map::new()),
        }
    }
}

impl crate::family::Family for Calls {
    type Op = ApiCall;
    type Out = CallOutcome;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl::internal("call", &[]);
    const APPLY: crate::family::ApplyFn<Self> = apply;

    fn inner(op: &ApiCall) -> Option<&Command> {
        Some(&op.command)
    }

    fn inner_response(out: &CallOutcome) -> Option<&Response> {
        match out {
            CallOutcome::Answer(resp) => Some(resp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditState;
    use crate::families::identity::IdentityOp;
    use crate::families::zone::ZoneOp;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::wire::envelope::decode_request;
    use crate::IntoCommand;

    const JOB: &str = "0123456789abcdef0123456789abcdef";
    const SESSION: &str = "5e5510115e5510115e5510115e551011";

    fn world() -> MemTxn {
        let mut t = MemTxn::default();
        let password =
            identity::hash_password(identity::DEFAULT_ADMIN_PASSWORD_SHA512, &[1; 16]).unwrap();
        crate::testing::admin_apply(&mut t, 1, IdentityOp::EnsureAdmin { password });
        crate::testing::admin_apply(
            &mut t,
            2,
            IdentityOp::CreateSession {
                uuid: SESSION.into(),
                account_uuid: crate::ADMIN_ACCOUNT_UUID.into(),
                user_uuid: crate::ADMIN_ACCOUNT_UUID.into(),
                user_type: "AccountVO".into(),
            },
        );
        t
    }

    fn record(uuid: &str) -> AuditRecord {
        let req = decode_request(
            br#"{"org.zstack.header.zone.APICreateZoneMsg":{"name":"z","session":{"uuid":"s"}}}"#,
        )
        .unwrap();
        AuditRecord::for_request(&req, uuid.into(), Some("127.0.0.1".into()), 1, 2_500)
    }

    fn create_zone(uuid: &str) -> Box<Command> {
        Box::new(
            ZoneOp::Create {
                uuid: uuid.into(),
                name: "z".into(),
                description: None,
                is_default: false,
            }
            .command(Caller::admin()),
        )
    }

    fn call(session: &str, job: Option<(&str, &str)>, zone: &str) -> ApiCall {
        ApiCall {
            class: "org.zstack.header.zone.APICreateZoneMsg".into(),
            session: Some(session.into()),
            job: job.map(|(uuid, chain)| JobTicket {
                uuid: uuid.into(),
                api_name: "CreateZone".into(),
                reply_class: "org.zstack.header.zone.APICreateZoneEvent".into(),
                chain: chain.into(),
                flow: None,
            }),
            audit: Some(record(&"f".repeat(32))),
            command: create_zone(zone),
        }
    }

    fn outcome(t: &mut MemTxn, at: u64, c: ApiCall) -> CallOutcome {
        match crate::apply(t, &ctx(at), c.command(Caller::admin())).unwrap() {
            Response::Call(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_async_call_on_an_idle_resource_runs_and_is_audited_in_its_own_entry() {
        let mut t = world();
        let zone = "a".repeat(32);
        let CallOutcome::Accepted(j) = outcome(&mut t, 3, call(SESSION, Some((JOB, &zone)), &zone))
        else {
            panic!()
        };
        assert_eq!((j.state, j.success), (job::JobState::Done, Some(true)));
        assert!(
            crate::resource::load::<crate::families::zone::Zone>(&t, &zone)
                .unwrap()
                .is_some()
        );
        let a = crate::audit::get(&t, JOB)
            .unwrap()
            .expect("audited in the same entry");
        assert_eq!((a.state, a.success), (AuditState::Done, Some(true)));
        assert_eq!(a.client_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(a.resource_uuid.as_deref(), Some(zone.as_str()));
        // The same job again (a client retry): the same job, nothing new.
        let CallOutcome::Job(again) = outcome(&mut t, 4, call(SESSION, Some((JOB, &zone)), &zone))
        else {
            panic!()
        };
        assert_eq!(again, j);
    }

    #[test]
    fn a_job_behind_another_on_its_resource_waits_its_turn() {
        let mut t = world();
        let zone = "b".repeat(32);
        let first = job::Submission::command(
            "1".repeat(32),
            "UpdateZone",
            "c",
            zone.clone(),
            *create_zone(&zone),
        );
        job::submit(&mut t, &ctx(3), &Caller::admin(), first).unwrap();
        let CallOutcome::Accepted(j) = outcome(
            &mut t,
            4,
            call(SESSION, Some((JOB, &zone)), &"c".repeat(32)),
        ) else {
            panic!()
        };
        assert_eq!(
            j.state,
            job::JobState::Processing,
            "queued behind the first job"
        );
        assert_eq!(
            job::pending(&t, 10).unwrap(),
            vec!["1".repeat(32), JOB.to_string()]
        );
        let a = crate::audit::get(&t, JOB).unwrap().unwrap();
        assert_eq!(a.state, AuditState::Processing);
    }

    #[test]
    fn an_unknown_or_expired_session_is_refused_where_the_command_is_applied() {
        let mut t = world();
        let zone = "d".repeat(32);
        let before_zones = t.tables.get(crate::families::zone::TABLE).cloned();
        let CallOutcome::Refused(e) =
            outcome(&mut t, 3, call(&"0".repeat(32), Some((JOB, &zone)), &zone))
        else {
            panic!()
        };
        assert_eq!(e.code(), "ID.1001");
        assert_eq!(
            t.tables.get(crate::families::zone::TABLE).cloned(),
            before_zones
        );
        assert!(
            job::get(&t, JOB).unwrap().is_none(),
            "no job for a refused call"
        );
        let a = crate::audit::get(&t, &"f".repeat(32))
            .unwrap()
            .expect("the refusal is audited");
        assert_eq!(a.error_code.as_deref(), Some("ID.1001"));
        // A session that belongs to someone else than the command's caller.
        let mut c = call(SESSION, None, &zone);
        c.command =
            Box::new(ZoneOp::Delete { uuid: zone.clone() }.command(crate::testing::normal()));
        assert!(matches!(outcome(&mut t, 4, c), CallOutcome::Refused(_)));
    }
}
