//! The one plan interpreter: a decoded call → session → plan → queries, reads, proposals and
//! probes, each done through [`Effects`]. The node implements the effects with Raft, RocksDB
//! and the network; tests implement them over an in-memory state. This module itself does no
//! IO and reads no clock: time, uuids and salts come from [`Effects::stamp`].
//!
//! Reads (queries, `Get*`, session validation, logins) are made linearizable by a read-index
//! barrier first. Writes need none: every write travels as ONE [`ApiCall`] entry whose apply
//! checks the session at its place in the log and writes the call's audit record with its
//! outcome, so a write costs one log entry (an async call whose job is a single command runs
//! in that same entry when nothing is queued on its resource).

use std::future::Future;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::audit::AuditRecord;
use crate::call::ApiCall;
use crate::call::CallOutcome;
use crate::call::JobTicket;
use crate::catalogue::CallKind;
use crate::catalogue::CallSpec;
use crate::families::identity;
use crate::families::identity::backoff;
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
    /// This node's failed-login counts (`None`: logins are not backed off).
    fn login_backoff(&self) -> Option<&identity::LoginBackoff> {
        None
    }
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
    /// The call's audit record as the serving node started it (`None`: not audited).
    pub audit: Option<AuditRecord>,
    /// The client's IP address (the TCP peer), which failed logins are also counted for.
    pub client_ip: Option<String>,
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
    /// Accepted now as a new durable job: answered as accepted whatever state it is in.
    Accepted(Box<ApiJob>),
    /// An existing job (a retry with the same job uuid): answered as it stands.
    Job(Box<ApiJob>),
}

/// A served call: its outcome, and its audit record when it still has to be written (a call
/// that proposed nothing: reads, refusals before any proposal). The record of a write went
/// into the write's own entry.
#[derive(Debug, Clone)]
pub struct Served {
    /// How it ended.
    pub outcome: Outcome,
    /// The finished audit record to buffer, if the call's entry did not carry it.
    pub audit: Option<AuditRecord>,
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

/// The resource a call's job serialises on: the resource it names (`uuid`), else what it
/// creates, else the first other resource it names (`l3NetworkUuid` of `AddIpRange`, the
/// primary storage of an attach), else nothing (the job's own uuid).
pub fn chain_of(body: &Map<String, Value>, creates: bool, new_uuid: &str) -> String {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(u) = s("uuid") {
        return u.to_ascii_lowercase();
    }
    if creates {
        return s("resourceUuid").unwrap_or_else(|| new_uuid.to_string());
    }
    // A call about a VM (attach a network, a volume) serialises with the VM's other calls,
    // whatever else it names and in whatever order the fields came.
    if let Some(u) = s("vmInstanceUuid") {
        return u.to_ascii_lowercase();
    }
    body.iter()
        .find(|(k, v)| k.ends_with("Uuid") && k.as_str() != "resourceUuid" && v.is_string())
        .and_then(|(_, v)| v.as_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// A call being served: what the interpreter carries from step to step.
struct Serving<'a, E: Effects> {
    fx: &'a E,
    spec: &'static CallSpec,
    opts: &'a CallOptions,
    audit: Option<AuditRecord>,
    stamp: Stamp,
}

impl<E: Effects> Serving<'_, E> {
    /// End a call that wrote nothing: its audit record goes back to the node to buffer.
    fn unwritten(mut self, outcome: Outcome) -> Served {
        if let (Some(r), Outcome::Done { reply, .. }) = (self.audit.as_mut(), &outcome) {
            r.finish(reply, self.fx.stamp().now_ms);
        }
        Served {
            outcome,
            audit: self.audit,
        }
    }

    fn written(outcome: Outcome) -> Served {
        Served {
            outcome,
            audit: None,
        }
    }

    async fn barrier(&self) -> Result<(), Refusal> {
        if self.opts.stale_ok {
            Ok(())
        } else {
            self.fx.barrier().await
        }
    }

    /// The caller, from local state; on a miss the node may only be behind the one that
    /// created the session, so look again after a barrier.
    async fn caller(&self, session_uuid: Option<&str>) -> Result<Caller, Refusal> {
        match self.fx.caller(self.spec, session_uuid, self.stamp.now_ms) {
            Ok(c) => Ok(c),
            Err(r) if !self.opts.stale_ok => {
                self.fx.barrier().await.map_err(|_| r)?;
                self.fx
                    .caller(self.spec, session_uuid, self.fx.stamp().now_ms)
            }
            Err(r) => Err(r),
        }
    }

    /// What failed logins naming `target` from this client are counted for.
    fn login_keys(&self, target: &LoginTarget) -> Vec<backoff::Key> {
        let mut keys = vec![backoff::Key::of(target)];
        if let Some(ip) = &self.opts.client_ip {
            keys.push(backoff::Key::Ip(ip.clone()));
        }
        keys
    }

    /// Refuse a login while its account (user) or client is backed off: before any password
    /// is verified, so the refusal is cheap and tells nothing about the password.
    fn login_gate(&self, target: &LoginTarget) -> Result<(), Refusal> {
        let Some(b) = self.fx.login_backoff() else {
            return Ok(());
        };
        b.check(&self.login_keys(target), self.stamp.now_ms)
            .map_err(|t| t.refusal(target))
    }

    /// Count a login's outcome: a wrong password for its keys, a right one resets its account.
    fn login_outcome(&self, target: &LoginTarget, result: &Result<(), &ApiError>) {
        let Some(b) = self.fx.login_backoff() else {
            return;
        };
        match result {
            Ok(()) => b.succeeded(&backoff::Key::of(target)),
            Err(e) if plan::refusal_of(e).code == Code::AuthenticationError => {
                match self.fx.read(backoff::Policy::read) {
                    Ok(policy) => b.failed(&self.login_keys(target), &policy, self.stamp.now_ms),
                    // Unreadable settings are a broken replica; its refusals say so elsewhere,
                    // so count with the defaults rather than not at all.
                    Err(_) => b.failed(
                        &self.login_keys(target),
                        &backoff::Policy::default(),
                        self.stamp.now_ms,
                    ),
                }
            }
            Err(_) => {}
        }
    }

    /// Propose `command` as this call's one entry.
    async fn write(
        self,
        call: &'static CallSpec,
        command: Command,
        session: Option<String>,
        job: Option<JobTicket>,
    ) -> Served {
        match self.propose_entry(call, command, session, job).await {
            Ok(outcome) => Self::written(outcome),
            Err(outcome) => self.unwritten(outcome),
        }
    }

    /// Propose one entry: `Ok` with the outcome when the entry was written (its audit record
    /// with it), `Err` with the outcome when nothing was.
    async fn propose_entry(
        &self,
        call: &'static CallSpec,
        command: Command,
        session: Option<String>,
        job: Option<JobTicket>,
    ) -> Result<Outcome, Outcome> {
        let kind = call.kind;
        let request_id = job.as_ref().map(|j| format!("job/{}", j.uuid));
        let is_job = job.is_some();
        let envelope = ApiCall {
            class: call.class.clone(),
            session,
            job,
            audit: self.audit.clone(),
            command: Box::new(command),
        }
        .command(Caller::admin());
        // The job uuid doubles as the Raft request id: a retried submit is applied once.
        match self.fx.propose(envelope, request_id).await {
            Ok(Response::Call(CallOutcome::Accepted(j))) => {
                self.fx.job_accepted();
                Ok(Outcome::Accepted(j))
            }
            Ok(Response::Call(CallOutcome::Job(j))) => Ok(Outcome::Job(j)),
            Ok(Response::Call(CallOutcome::Answer(resp))) => Ok(reply_of(call, &resp)),
            Ok(Response::Call(CallOutcome::Refused(e))) if is_job => {
                Ok(refused_early(kind, &plan::refusal_of(&e)))
            }
            Ok(Response::Call(CallOutcome::Refused(e))) => {
                Ok(failed(&call.reply_class, &plan::refusal_of(&e)))
            }
            // The envelope itself was refused: nothing, not even the record, was written.
            Ok(Response::Refused(e)) => Err(refused_early(kind, &plan::refusal_of(&e))),
            Ok(other) => Err(refused_early(
                kind,
                &Refusal::new(
                    Code::Internal,
                    format!("unexpected answer to an API call: {other:?}"),
                ),
            )),
            // Not committed (or not known to be): the record is buffered with the failure.
            Err(r) => Err(refused_early(kind, &r)),
        }
    }

    /// Place and propose, placing again while the commit-time re-check says the capacity
    /// went to someone else. Each attempt is one entry of its own, answered as a sync call
    /// would be: the reservation is done (or refused) when the entry is applied, so there is
    /// no job to poll, and a client retry names the same reservation (idempotent at apply).
    async fn place_and_propose(
        self,
        call: &'static CallSpec,
        place: plan::PlaceFn,
        session: Option<String>,
    ) -> Served {
        let request_uuid = match &self.opts.job_uuid {
            None => self.stamp.new_uuid.clone(),
            Some(v) => match job_uuid_header(v) {
                Ok(u) => u,
                Err(r) => return self.unwritten(refused_early(call.kind, &r)),
            },
        };
        let mut attempt = 0;
        loop {
            if let Err(r) = self.barrier().await {
                return self.unwritten(refused_early(call.kind, &r));
            }
            let command = match self.fx.read(|st| place(st, &request_uuid, attempt)) {
                Ok(c) => c,
                Err(e) => return self.unwritten(failed(&call.reply_class, &plan::refusal_of(&e))),
            };
            match self
                .propose_entry(call, command, session.clone(), None)
                .await
            {
                Ok(outcome) => {
                    attempt += 1;
                    if attempt < plan::PLACE_ATTEMPTS && lost_race(&outcome) {
                        continue;
                    }
                    return Self::written(outcome);
                }
                Err(outcome) => return self.unwritten(outcome),
            }
        }
    }
}

/// Whether a proposal was refused by the capacity re-check at apply.
fn lost_race(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Done { reply, .. } => {
            reply["success"] == json!(false)
                && reply["error"]["code"] == json!(Code::NoAvailableHost.as_str())
        }
        _ => false,
    }
}

/// Run one call.
pub async fn run<E: Effects>(
    fx: &E,
    spec: &'static CallSpec,
    req: ApiRequest,
    opts: &CallOptions,
) -> Served {
    let s = Serving {
        fx,
        spec,
        opts,
        audit: opts.audit.clone(),
        stamp: fx.stamp(),
    };
    serve(s, req, None).await
}

/// Run one call on behalf of `caller` without a session: a leader duty submitting the call a
/// scheduled job names, as the job's owner (the owner's permissions apply as if it had sent
/// it; there is no session to check at apply, the duty's term fence stands for it).
pub async fn run_on_behalf<E: Effects>(
    fx: &E,
    spec: &'static CallSpec,
    req: ApiRequest,
    caller: Caller,
    opts: &CallOptions,
) -> Served {
    let s = Serving {
        fx,
        spec,
        opts,
        audit: opts.audit.clone(),
        stamp: fx.stamp(),
    };
    serve(s, req, Some(caller)).await
}

async fn serve<E: Effects>(
    mut s: Serving<'_, E>,
    req: ApiRequest,
    on_behalf: Option<Caller>,
) -> Served {
    let spec = s.spec;
    let session = if plan::needs_session(spec) && on_behalf.is_none() {
        req.session_uuid.clone()
    } else {
        None
    };
    let caller = if let Some(c) = on_behalf {
        c
    } else if plan::needs_session(spec) {
        match s.caller(req.session_uuid.as_deref()).await {
            Ok(caller) => {
                if let Some(r) = s.audit.as_mut() {
                    let name = s.fx.read(|st| crate::audit::operator_name(st, &caller));
                    r.set_caller(&caller, name);
                }
                caller
            }
            Err(r) => return s.unwritten(refused_early(spec.kind, &r)),
        }
    } else {
        Caller::admin()
    };
    let plan = match plan::plan(&req, &caller, &s.stamp) {
        Ok(p) => p,
        Err(r) => return s.unwritten(refused_early(spec.kind, &r)),
    };
    if let Plan::LogIn { call, target, .. } = &plan {
        if let Err(r) = s.login_gate(target) {
            return s.unwritten(failed(&call.reply_class, &r));
        }
    }
    let is_read = matches!(
        plan,
        Plan::Query { .. } | Plan::Read { .. } | Plan::ValidateSession { .. } | Plan::LogIn { .. }
    );
    if is_read {
        if let Err(r) = s.barrier().await {
            return s.unwritten(refused_early(spec.kind, &r));
        }
        // The session was found in local state before the barrier; a logout (or expiry)
        // committed elsewhere meanwhile must end it here too, so look again now that this node
        // has caught up: a read is linearizable for its session as well as for its data.
        if !s.opts.stale_ok && session.is_some() {
            if let Err(r) = s.fx.caller(spec, session.as_deref(), s.fx.stamp().now_ms) {
                return s.unwritten(refused_early(spec.kind, &r));
            }
        }
    }
    let creates = crate::registry::call(&spec.name).is_some_and(|c| c.creates.is_some());
    match plan {
        Plan::Query { call, run, query } => {
            let outcome = match s.fx.query(run, query, caller).await {
                Ok(fields) => done(&call.reply_class, envelope::success(fields)),
                Err(e) => failed(&call.reply_class, &plan::refusal_of(&e)),
            };
            s.unwritten(outcome)
        }
        Plan::Read { call, read } => {
            let outcome = match s.fx.read(|st| read(st, &caller)) {
                Ok(fields) => done(&call.reply_class, envelope::success(fields)),
                Err(e) => failed(&call.reply_class, &plan::refusal_of(&e)),
            };
            s.unwritten(outcome)
        }
        Plan::ValidateSession { call, session_uuid } => {
            let now = s.stamp.now_ms;
            let valid = s.fx.read(|st| {
                identity::session_caller(st, &call.class, Some(&session_uuid), now).is_ok()
            });
            let mut m = Map::new();
            m.insert("validSession".into(), json!(valid));
            s.unwritten(done(&call.reply_class, envelope::success(m)))
        }
        Plan::LogIn {
            call,
            target,
            password,
        } => {
            let who = s.fx.read(|st| match &target {
                LoginTarget::Account { name } => {
                    identity::authenticate_account(st, name, &password)
                        .map(|a| (a.clone(), a, false))
                }
                LoginTarget::User {
                    account_uuid,
                    account_name,
                    user_name,
                } => identity::authenticate_user(
                    st,
                    account_uuid.as_deref(),
                    account_name.as_deref(),
                    user_name,
                    &password,
                )
                .map(|(a, u)| (a, u, true)),
            });
            s.login_outcome(&target, &who.as_ref().map(|_| ()));
            let (account, user, by_user) = match who {
                Ok(w) => w,
                Err(e) => return s.unwritten(failed(&call.reply_class, &plan::refusal_of(&e))),
            };
            let cmd = identity::login_command(&s.stamp.new_uuid, &account, &user, by_user);
            s.write(call, cmd, None, None).await
        }
        Plan::LogOut { call, session_uuid } => match session_uuid {
            Some(uuid) => {
                let cmd = identity::IdentityOp::DeleteSession { uuid }.command(Caller::admin());
                s.write(call, cmd, None, None).await
            }
            None => s.unwritten(done(&call.reply_class, envelope::success(Map::new()))),
        },
        Plan::ProbeThenPropose {
            call,
            command,
            probe,
            unreachable,
        } => {
            // The command is dry-run against local state first, so a call the state refuses
            // answers with its own error and never dials out; an unreachable host leaves
            // nothing behind (spec 03 §12.1). The dry run reads local state, so it waits for a
            // barrier first: a follower behind the call that created the cluster would
            // otherwise refuse the host as belonging to no cluster.
            if let Err(r) = s.barrier().await {
                return s.unwritten(refused_early(spec.kind, &r));
            }
            let now = s.stamp.now_ms;
            let target = s.fx.read(|st| {
                let mut overlay = crate::staged::Staged::over(st);
                probe(&mut overlay, now, &command)
            });
            match target {
                Err(e) => return s.unwritten(failed(&call.reply_class, &plan::refusal_of(&e))),
                Ok(Some(endpoint)) => {
                    if let Err(cause) = s.fx.probe(&endpoint).await {
                        let r = unreachable(&call.name, &endpoint, &cause);
                        return s.unwritten(failed(&call.reply_class, &r));
                    }
                }
                Ok(None) => {}
            }
            propose_call(s, call, *command, session, &req.body, creates).await
        }
        Plan::Propose { call, command } => {
            propose_call(s, call, *command, session, &req.body, creates).await
        }
        Plan::PlaceThenPropose { call, place } => s.place_and_propose(call, place, session).await,
    }
}

async fn propose_call<E: Effects>(
    s: Serving<'_, E>,
    call: &'static CallSpec,
    command: Command,
    session: Option<String>,
    body: &Map<String, Value>,
    creates: bool,
) -> Served {
    let job = match call.kind {
        CallKind::Sync => None,
        CallKind::Async => {
            let uuid = match &s.opts.job_uuid {
                None => s.stamp.new_uuid.clone(),
                Some(v) => match job_uuid_header(v) {
                    Ok(u) => u,
                    Err(r) => return s.unwritten(refused_early(call.kind, &r)),
                },
            };
            Some(JobTicket {
                uuid,
                api_name: call.name.clone(),
                reply_class: call.reply_class.clone(),
                chain: chain_of(body, creates, &s.stamp.new_uuid),
                flow: crate::registry::call(&call.name)
                    .and_then(|c| c.flow)
                    .map(String::from),
            })
        }
    };
    s.write(call, command, session, job).await
}
