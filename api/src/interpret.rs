//! The one plan interpreter: a decoded call → session → plan → queries, reads, proposals and
//! probes, each done through [`Effects`]. The node implements the effects with Raft, RocksDB
//! and the network; tests implement them over an in-memory state. This module itself does no
//! IO and reads no clock: time, uuids and salts come from [`Effects::stamp`].

use std::future::Future;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::catalogue::CallKind;
use crate::catalogue::CallSpec;
use crate::identity;
use crate::job;
use crate::job::ApiJob;
use crate::plan;
use crate::plan::HostEndpoint;
use crate::plan::LoginTarget;
use crate::plan::Plan;
use crate::plan::QueryFn;
use crate::plan::Stamp;
use crate::query::Query;
use crate::registry::IntoCommand;
use crate::wire::envelope;
use crate::wire::envelope::ApiRequest;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// What the interpreter needs from whoever serves the call.
pub trait Effects {
    /// Read the serving node's local state.
    fn read<T>(&self, f: impl FnOnce(&dyn StateTxn) -> T) -> T;
    /// Now, a fresh uuid and a salt.
    fn stamp(&self) -> Stamp;
    /// Make the following local reads linearizable.
    fn barrier(&self) -> impl Future<Output = Result<(), Refusal>>;
    /// Propose a command through Raft and wait until it is applied.
    fn propose(
        &self,
        cmd: Command,
        request_id: Option<String>,
    ) -> impl Future<Output = Result<Response, Refusal>>;
    /// Run a query on local state (the node moves it off its async workers).
    fn query(
        &self,
        run: QueryFn,
        query: Query,
        caller: Caller,
    ) -> impl Future<Output = Result<Map<String, Value>, ApiError>>;
    /// Reach a host before a command naming it is proposed.
    fn probe(&self, endpoint: &HostEndpoint) -> impl Future<Output = Result<(), String>>;
    /// Extend a session in the background (a failure is retried by the next call).
    fn renew_session(&self, session_uuid: String);
    /// An async job was accepted.
    fn job_accepted(&self);
    /// Who is calling: the account and user of the request's session (`ID.1001` when it is
    /// unknown or expired). A session due for renewal is renewed in the background.
    fn caller(
        &self,
        spec: &CallSpec,
        session_uuid: Option<&str>,
        now_ms: u64,
    ) -> Result<Caller, Refusal> {
        let (caller, renew) = self
            .read(|s| {
                let (caller, session) =
                    identity::session_caller(s, &spec.class, session_uuid, now_ms)?;
                let renew = identity::needs_renewal(s, &session, now_ms).unwrap_or(false);
                Ok((caller, renew.then_some(session.uuid)))
            })
            .map_err(|e: ApiError| plan::refusal_of(&e))?;
        if let Some(uuid) = renew {
            self.renew_session(uuid);
        }
        Ok(caller)
    }
}

/// Per-request options the transport supplies.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Serve reads from local state without a barrier (`X-ZStack-Consistency: stale`).
    pub stale_ok: bool,
    /// The client's `X-Job-UUID`, if it sent one (checked here).
    pub job_uuid: Option<String>,
}

/// How a call ended, before it is written in one protocol or the other.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Finished: the reply object (`{..., "success": bool}`) in `class`.
    Done {
        /// Reply or event class.
        class: String,
        /// The reply object.
        reply: Value,
    },
    /// Accepted as a durable job.
    Job(Box<ApiJob>),
}

fn done(class: &str, reply: Value) -> Outcome {
    Outcome::Done {
        class: class.to_string(),
        reply,
    }
}

fn failed(class: &str, r: &Refusal) -> Outcome {
    done(class, envelope::failure(&r.to_error_code()))
}

/// A refusal before the call's handler ran goes out in the generic reply/event class (spec 06
/// §1.6 (2)). Async calls refused this early are answered `Done` at once rather than with a
/// job to poll: no job record is written for a request that was never accepted.
pub fn refused_early(kind: CallKind, r: &Refusal) -> Outcome {
    failed(plan::generic_class(kind), r)
}

fn reply_of(call: &CallSpec, resp: &Response) -> Outcome {
    match resp.reply() {
        Ok(fields) => done(&call.reply_class, envelope::success(fields)),
        Err(r) => failed(&call.reply_class, &r),
    }
}

/// Run one call. `who` receives the caller once the session is resolved (for the audit).
pub async fn run<E: Effects>(
    fx: &E,
    spec: &'static CallSpec,
    req: ApiRequest,
    opts: &CallOptions,
    who: &mut Option<Caller>,
) -> Outcome {
    if !opts.stale_ok {
        if let Err(r) = fx.barrier().await {
            return refused_early(spec.kind, &r);
        }
    }
    let stamp = fx.stamp();
    let caller = if plan::needs_session(spec) {
        match fx.caller(spec, req.session_uuid.as_deref(), stamp.now_ms) {
            Ok(caller) => {
                *who = Some(caller.clone());
                caller
            }
            Err(r) => return refused_early(spec.kind, &r),
        }
    } else {
        Caller::admin()
    };
    let plan = match plan::plan(&req, &caller, &stamp) {
        Ok(p) => p,
        Err(r) => return refused_early(spec.kind, &r),
    };
    match plan {
        Plan::Query { call, run, query } => match fx.query(run, query, caller).await {
            Ok(fields) => done(&call.reply_class, envelope::success(fields)),
            Err(e) => failed(&call.reply_class, &plan::refusal_of(&e)),
        },
        Plan::Read { call, read } => match fx.read(|s| read(s, &caller)) {
            Ok(fields) => done(&call.reply_class, envelope::success(fields)),
            Err(e) => failed(&call.reply_class, &plan::refusal_of(&e)),
        },
        Plan::ValidateSession { call, session_uuid } => {
            let valid = fx.read(|s| {
                identity::session_caller(s, &call.class, Some(&session_uuid), stamp.now_ms).is_ok()
            });
            let mut m = Map::new();
            m.insert("validSession".into(), json!(valid));
            done(&call.reply_class, envelope::success(m))
        }
        Plan::LogIn {
            call,
            target,
            password,
        } => login(fx, call, target, &password, &stamp).await,
        Plan::LogOut { call, session_uuid } => {
            if let Some(uuid) = session_uuid {
                let cmd = identity::IdentityOp::DeleteSession { uuid }.command(Caller::admin());
                if let Err(r) = fx.propose(cmd, None).await {
                    return failed(&call.reply_class, &r);
                }
            }
            done(&call.reply_class, envelope::success(Map::new()))
        }
        Plan::ProbeThenPropose {
            call,
            command,
            probe,
            unreachable,
        } => {
            // The command is dry-run against local state first, so a call the state refuses
            // answers with its own error and never dials out; an unreachable host leaves
            // nothing behind (spec 03 §12.1).
            let target = fx.read(|s| {
                let mut overlay = crate::staged::Staged::over(s);
                probe(&mut overlay, stamp.now_ms, &command)
            });
            match target {
                Err(e) => return failed(&call.reply_class, &plan::refusal_of(&e)),
                Ok(Some(endpoint)) => {
                    if let Err(cause) = fx.probe(&endpoint).await {
                        return failed(
                            &call.reply_class,
                            &unreachable(&call.name, &endpoint, &cause),
                        );
                    }
                }
                Ok(None) => {}
            }
            propose_call(fx, call, *command, opts, &stamp).await
        }
        Plan::Propose { call, command } => propose_call(fx, call, *command, opts, &stamp).await,
    }
}

async fn propose_call<E: Effects>(
    fx: &E,
    call: &'static CallSpec,
    command: Command,
    opts: &CallOptions,
    stamp: &Stamp,
) -> Outcome {
    match call.kind {
        CallKind::Async => submit(fx, call, command, opts, stamp).await,
        CallKind::Sync => match fx.propose(command, None).await {
            Ok(resp) => reply_of(call, &resp),
            Err(r) => failed(&call.reply_class, &r),
        },
    }
}

async fn login<E: Effects>(
    fx: &E,
    call: &'static CallSpec,
    target: LoginTarget,
    password: &str,
    stamp: &Stamp,
) -> Outcome {
    let who = fx.read(|s| match &target {
        LoginTarget::Account { name } => {
            identity::authenticate_account(s, name, password).map(|a| (a.clone(), a, false))
        }
        LoginTarget::User {
            account_uuid,
            account_name,
            user_name,
        } => identity::authenticate_user(
            s,
            account_uuid.as_deref(),
            account_name.as_deref(),
            user_name,
            password,
        )
        .map(|(a, u)| (a, u, true)),
    });
    let (account, user, by_user) = match who {
        Ok(w) => w,
        Err(e) => return failed(&call.reply_class, &plan::refusal_of(&e)),
    };
    let cmd = identity::login_command(&stamp.new_uuid, &account, &user, by_user);
    match fx.propose(cmd, None).await {
        Ok(resp) => reply_of(call, &resp),
        Err(r) => failed(&call.reply_class, &r),
    }
}

/// Check a client's `X-Job-UUID` (32 hex characters, any case).
pub fn job_uuid_header(v: &str) -> Result<String, Refusal> {
    if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(Refusal::new(
            Code::InvalidArgument,
            "X-Job-UUID must be 32 hexadecimal characters",
        ))
    }
}

/// Accept an async call: commit its job record and answer with the job. A retry with the same
/// `X-Job-UUID` finds the same job (and its result, if it already finished).
async fn submit<E: Effects>(
    fx: &E,
    call: &'static CallSpec,
    command: Command,
    opts: &CallOptions,
    stamp: &Stamp,
) -> Outcome {
    let job_uuid = match &opts.job_uuid {
        None => stamp.new_uuid.clone(),
        Some(v) => match job_uuid_header(v) {
            Ok(u) => u,
            Err(r) => return refused_early(call.kind, &r),
        },
    };
    let cmd = job::JobOp::Submit {
        uuid: job_uuid.clone(),
        api_name: call.name.clone(),
        reply_class: call.reply_class.clone(),
        command: Box::new(command),
    }
    .command(Caller::admin());
    // The job uuid doubles as the Raft request id: a retried submit is applied once.
    match fx.propose(cmd, Some(format!("job/{job_uuid}"))).await {
        Ok(Response::Job(job::JobResult::Job(j))) => {
            fx.job_accepted();
            Outcome::Job(j)
        }
        Ok(Response::Refused(e)) => refused_early(call.kind, &plan::refusal_of(&e)),
        Ok(other) => refused_early(
            call.kind,
            &Refusal::new(
                Code::Internal,
                format!("unexpected answer to a job submit: {other:?}"),
            ),
        ),
        Err(r) => refused_early(call.kind, &r),
    }
}
