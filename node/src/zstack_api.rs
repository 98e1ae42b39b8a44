//! ZStack's API on every node: the RPC endpoint (`POST|PUT /zstack/api`,
//! `GET|PUT /zstack/api/result/{uuid}`, spec 06 §1) and the REST v1 mirror (`/zstack/v1/...`,
//! §3) with its OpenAPI document. The `api` crate decides everything about a call; this module
//! resolves the session, stamps time, uuids and salts, reads state after a linearizable
//! barrier, proposes commands, and writes each protocol's exact envelope back.

use std::net::SocketAddr;
use std::sync::Arc;

use api::calls;
use api::calls::LoginTarget;
use api::calls::Plan;
use api::calls::Stamp;
use api::catalogue::CallKind;
use api::catalogue::CallSpec;
use api::identity;
use api::job;
use api::job::ApiJob;
use api::rest;
use api::wire::envelope;
use api::wire::envelope::ApiRequest;
use api::wire::envelope::RestApiResponse;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use api::Caller;
use api::Command;
use api::Response as ApiResponse;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::any;
use axum::routing::get;
use axum::routing::post;
use axum::Extension;
use axum::Json;
use axum::Router;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::audit::CallAudit;
use crate::error::NodeError;
use crate::node::now_ms;
use crate::node::Node;
use crate::state_view::StateView;

/// Header a client may set to choose the job uuid of an async call (its idempotency key).
pub const JOB_UUID_HEADER: &str = "x-job-uuid";
/// Header asking for a local (possibly stale) read instead of a linearizable one.
pub const CONSISTENCY_HEADER: &str = "x-zstack-consistency";

/// Routes of both endpoints, to merge into the node's router.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/zstack/api", post(rpc_call).put(rpc_call))
        .route("/zstack/api/", post(rpc_call).put(rpc_call))
        .route("/zstack/api/result/{uuid}", get(rpc_result).put(rpc_result))
        .route(
            "/zstack/api/result/{uuid}/",
            get(rpc_result).put(rpc_result),
        )
        .route("/zstack/v1/openapi.json", get(openapi))
        .route("/zstack/v1/api-jobs/{uuid}", any(rest_job))
        .route("/zstack/v1/{*path}", any(rest_call))
        // Oversized bodies are refused with 413 before any parsing.
        .layer(DefaultBodyLimit::max(envelope::MAX_REQUEST_BYTES))
}

/// A fresh 32-hex uuid.
pub fn new_uuid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// How a call ended, before it is written in one protocol or the other.
enum Outcome {
    /// Finished: the reply object (`{..., "success": bool}`) in `class`.
    Done { class: String, reply: Value },
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
fn refused_early(kind: CallKind, r: &Refusal) -> Outcome {
    failed(calls::generic_class(kind), r)
}

fn unavailable(e: &NodeError) -> Refusal {
    let code = match e {
        NodeError::Unavailable(_) => Code::ManagementNodeUnavailable,
        _ => Code::Internal,
    };
    Refusal::new(code, e.to_string())
}

fn stale_ok(headers: &HeaderMap) -> bool {
    headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("stale"))
}

fn reply_of(call: &CallSpec, resp: &ApiResponse) -> Outcome {
    match calls::reply_fields(resp) {
        Ok(fields) => done(&call.reply_class, envelope::success(fields)),
        Err(r) => failed(&call.reply_class, &r),
    }
}

/// Run one call end to end and record it in the audit log.
async fn execute(
    node: &Arc<Node>,
    headers: &HeaderMap,
    spec: &'static CallSpec,
    req: ApiRequest,
    client_ip: Option<String>,
) -> Outcome {
    let audit = CallAudit::new(&req, client_ip);
    let mut who = None;
    let outcome = run_call(node, headers, spec, req, &mut who).await;
    audited(node, audit, who.as_ref(), &outcome);
    outcome
}

/// Hand a finished call's record to the audit buffer (never blocks).
fn audited(node: &Node, audit: CallAudit, who: Option<&Caller>, outcome: &Outcome) {
    match outcome {
        Outcome::Done { reply, .. } => audit.done(node, who, reply),
        Outcome::Job(j) => audit.accepted(node, who, j),
    }
}

/// The remote address the connection came from (absent when served without connect info).
fn client_ip(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<String> {
    connect.map(|Extension(ConnectInfo(a))| a.ip().to_string())
}

/// One call: session → caller (reported through `who` for the audit), plan, then read or
/// propose.
async fn run_call(
    node: &Arc<Node>,
    headers: &HeaderMap,
    spec: &'static CallSpec,
    req: ApiRequest,
    who: &mut Option<Caller>,
) -> Outcome {
    if !stale_ok(headers) {
        if let Err(e) = node.linearizable_barrier().await {
            return refused_early(spec.kind, &unavailable(&e));
        }
    }
    let view = StateView(&node.sm);
    let now = now_ms();
    let caller = if calls::needs_session(spec) {
        match identity::session_caller(&view, &spec.class, req.session_uuid.as_deref(), now) {
            Ok((caller, session)) => {
                if identity::needs_renewal(&view, &session, now).unwrap_or(false) {
                    renew_in_background(node, session.uuid);
                }
                *who = Some(caller.clone());
                caller
            }
            Err(e) => return refused_early(spec.kind, &calls::refusal_of(&e)),
        }
    } else {
        Caller::admin()
    };
    let stamp = Stamp {
        now_ms: now,
        new_uuid: new_uuid(),
        salt: rand::random(),
    };
    let plan = match calls::plan(&req, &caller, &stamp) {
        Ok(p) => p,
        Err(r) => return refused_early(spec.kind, &r),
    };
    match plan {
        Plan::Query {
            call,
            target,
            query,
        } => {
            // A query may scan a whole table (`name like '%x%'` over 100k records takes
            // seconds): run it off the async workers so Raft and other calls keep going.
            let n = node.clone();
            let ran = tokio::task::spawn_blocking(move || {
                calls::run_query(&StateView(&n.sm), target, &query, &caller)
            })
            .await;
            match ran {
                Ok(Ok(fields)) => done(&call.reply_class, envelope::success(fields)),
                Ok(Err(e)) => failed(&call.reply_class, &calls::refusal_of(&e)),
                Err(e) => failed(
                    &call.reply_class,
                    &Refusal::new(Code::Internal, format!("query task failed: {e}")),
                ),
            }
        }
        Plan::Read { call, read } => match calls::run_read(&view, &read, &caller) {
            Ok(fields) => done(&call.reply_class, envelope::success(fields)),
            Err(e) => failed(&call.reply_class, &calls::refusal_of(&e)),
        },
        Plan::ValidateSession { call, session_uuid } => {
            let valid =
                identity::session_caller(&view, &call.class, Some(&session_uuid), now).is_ok();
            let mut m = Map::new();
            m.insert("validSession".into(), json!(valid));
            done(&call.reply_class, envelope::success(m))
        }
        Plan::LogIn {
            call,
            target,
            password,
        } => login(node, &view, call, target, &password).await,
        Plan::LogOut { call, session_uuid } => {
            if let Some(uuid) = session_uuid {
                let cmd = Command::Identity {
                    caller: Caller::admin(),
                    op: identity::IdentityOp::DeleteSession { uuid },
                };
                if let Err(e) = node.propose(&cmd, None).await {
                    return failed(&call.reply_class, &unavailable(&e));
                }
            }
            done(&call.reply_class, envelope::success(Map::new()))
        }
        Plan::ProbeHostThenPropose { call, command } => {
            if let Err(r) = probe_host(node, call, &command, now).await {
                // Refused before any job exists: nothing at all is written for this call.
                return failed(&call.reply_class, &r);
            }
            match call.kind {
                CallKind::Async => submit(node, headers, call, *command, &stamp).await,
                CallKind::Sync => match node.propose(&command, None).await {
                    Ok((_, resp)) => reply_of(call, &resp),
                    Err(e) => failed(&call.reply_class, &unavailable(&e)),
                },
            }
        }
        // SEEDED BUG (test builds only): acknowledge a write that is never proposed.
        #[cfg(feature = "seeded-bugs")]
        Plan::Propose { call, .. } if crate::seeded::drop_write() => {
            done(&call.reply_class, envelope::success(Map::new()))
        }
        Plan::Propose { call, command } => match call.kind {
            CallKind::Async => submit(node, headers, call, *command, &stamp).await,
            CallKind::Sync => match node.propose(&command, None).await {
                Ok((_, resp)) => reply_of(call, &resp),
                Err(e) => failed(&call.reply_class, &unavailable(&e)),
            },
        },
    }
}

/// Reach the host a probed call names before its command is proposed (spec 03 §12.1: a host
/// that cannot be reached leaves nothing behind). The command is dry-run against local state
/// first, so a call the state refuses answers with its own error and never dials out.
async fn probe_host(
    node: &Node,
    call: &CallSpec,
    command: &Command,
    now_ms: u64,
) -> Result<(), Refusal> {
    let target = api::host::probe_target(&mut StateView(&node.sm), now_ms, command)
        .map_err(|e| calls::refusal_of(&e))?;
    let Some(endpoint) = target else {
        return Ok(());
    };
    node.host_agent().probe(&endpoint).await.map_err(|e| {
        tracing::info!(call = %call.name, host = %endpoint.management_ip, port = endpoint.ssh_port, error = %e, "host probe failed; call refused");
        api::host::unreachable_refusal(&call.name, &endpoint, &e.to_string())
    })
}

/// Extend an active session without delaying the call that found it due (the call itself is
/// already authorised; a failed renewal is retried by the next call).
fn renew_in_background(node: &Arc<Node>, session_uuid: String) {
    let node = node.clone();
    tokio::spawn(async move {
        let cmd = Command::Identity {
            caller: Caller::admin(),
            op: identity::IdentityOp::RenewSession {
                uuid: session_uuid.clone(),
                duration_s: None,
            },
        };
        if let Err(e) = node.propose(&cmd, None).await {
            tracing::debug!(session = %session_uuid, error = %e, "session renewal failed; next call retries");
        }
    });
}

async fn login(
    node: &Node,
    view: &StateView<'_>,
    call: &'static CallSpec,
    target: LoginTarget,
    password: &str,
) -> Outcome {
    let who = match &target {
        LoginTarget::Account { name } => {
            identity::authenticate_account(view, name, password).map(|a| (a.clone(), a, false))
        }
        LoginTarget::User {
            account_uuid,
            account_name,
            user_name,
        } => identity::authenticate_user(
            view,
            account_uuid.as_deref(),
            account_name.as_deref(),
            user_name,
            password,
        )
        .map(|(a, u)| (a, u, true)),
    };
    let (account, user, by_user) = match who {
        Ok(w) => w,
        Err(e) => return failed(&call.reply_class, &calls::refusal_of(&e)),
    };
    let cmd = calls::login_command(&new_uuid(), &account, &user, by_user);
    match node.propose(&cmd, None).await {
        Ok((_, resp)) => reply_of(call, &resp),
        Err(e) => failed(&call.reply_class, &unavailable(&e)),
    }
}

/// Accept an async call: commit its job record and answer with the job. A retry with the same
/// `X-Job-UUID` finds the same job (and its result, if it already finished).
async fn submit(
    node: &Node,
    headers: &HeaderMap,
    call: &'static CallSpec,
    command: Command,
    stamp: &Stamp,
) -> Outcome {
    let job_uuid = match headers.get(JOB_UUID_HEADER).map(|v| v.to_str()) {
        None => stamp.new_uuid.clone(),
        Some(Ok(v)) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            v.to_ascii_lowercase()
        }
        Some(_) => {
            return refused_early(
                call.kind,
                &Refusal::new(
                    Code::InvalidArgument,
                    "X-Job-UUID must be 32 hexadecimal characters",
                ),
            )
        }
    };
    let cmd = Command::Job {
        caller: Caller::admin(),
        op: job::JobOp::Submit {
            uuid: job_uuid.clone(),
            api_name: call.name.clone(),
            reply_class: call.reply_class.clone(),
            command: Box::new(command),
        },
    };
    // The job uuid doubles as the Raft request id: a retried submit is applied once.
    match node.propose(&cmd, Some(format!("job/{job_uuid}"))).await {
        Ok((_, ApiResponse::Job(job::JobResult::Job(j)))) => {
            node.job_wakeup().notify_waiters();
            Outcome::Job(j)
        }
        Ok((_, ApiResponse::Refused(e))) => refused_early(call.kind, &calls::refusal_of(&e)),
        Ok((_, other)) => refused_early(
            call.kind,
            &Refusal::new(
                Code::Internal,
                format!("unexpected answer to a job submit: {other:?}"),
            ),
        ),
        Err(e) => refused_early(call.kind, &unavailable(&e)),
    }
}

/// Read a job; when it is unknown or unfinished locally, a barrier makes sure this node is not
/// merely behind the node that accepted it.
async fn find_job(node: &Node, uuid: &str) -> Result<Option<ApiJob>, String> {
    let read = || job::get(&StateView(&node.sm), uuid).map_err(|e| e.to_string());
    let found = read()?;
    if matches!(found, Some(ref j) if j.state == job::JobState::Done) {
        return Ok(found);
    }
    match node.linearizable_barrier().await {
        Ok(_) => read(),
        Err(_) => Ok(found),
    }
}

// ---- RPC ----

fn rpc_body(text: String) -> Response {
    // ZStack sets no content type; clients must not depend on one.
    (StatusCode::OK, text).into_response()
}

fn rpc_render(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Done { class, reply } => rpc_body(
            RestApiResponse::sync(now_ms(), envelope::encode_result(&class, &reply)).to_body(),
        ),
        Outcome::Job(j) => match j.state {
            job::JobState::Processing => {
                rpc_body(RestApiResponse::accepted(&j.uuid, j.create_date).to_body())
            }
            job::JobState::Done => rpc_body(j.response().to_body()),
        },
    }
}

async fn rpc_call(
    State(node): State<Arc<Node>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let req = match envelope::decode_request(&bytes) {
        Ok(r) => r,
        // ZStack answers an undecodable body with HTTP 200 and the exception text.
        Err(e) => return rpc_body(e.to_string()),
    };
    let ip = client_ip(connect);
    let spec = match calls::call_of(&req) {
        Ok(s) => s,
        Err(r) => {
            // An unknown or unimplemented call is still a call: audit its refusal.
            let outcome = refused_early(CallKind::Sync, &r);
            audited(&node, CallAudit::new(&req, ip), None, &outcome);
            return rpc_render(outcome);
        }
    };
    rpc_render(execute(&node, &headers, spec, req, ip).await)
}

async fn rpc_result(State(node): State<Arc<Node>>, Path(uuid): Path<String>) -> Response {
    match find_job(&node, &uuid.to_ascii_lowercase()).await {
        Ok(Some(j)) => rpc_body(j.response().to_body()),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("No api result[uuid:{uuid}] found"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

// ---- REST v1 ----

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn location(headers: &HeaderMap, job_uuid: &str) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("http://{host}/zstack/v1/api-jobs/{job_uuid}")
}

async fn rest_call(
    State(node): State<Arc<Node>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/zstack")
        .unwrap_or(uri.path())
        .to_string();
    let query = raw_query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let rr = rest::RestRequest {
        method: method.as_str().to_string(),
        path,
        query,
        authorization: headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: bytes.to_vec(),
    };
    let (route, spec, req) = match rest::translate(&rr) {
        Ok(t) => t,
        Err(e) => return (status(e.status), e.message).into_response(),
    };
    let timeout_ms = node.request_timeout().as_millis() as u64;
    match execute(&node, &headers, spec, req, client_ip(connect)).await {
        Outcome::Done { reply, .. } => {
            let r = rest::reply(route, spec, &reply);
            (status(r.status), Json(r.body)).into_response()
        }
        Outcome::Job(j) => match (&j.state, &j.result) {
            (job::JobState::Done, Some(result)) => {
                let r = rest::job_reply(Some(route), Some(spec), result);
                (status(r.status), Json(r.body)).into_response()
            }
            _ => (
                StatusCode::ACCEPTED,
                Json(json!({"apiTimeout": timeout_ms, "location": location(&headers, &j.uuid)})),
            )
                .into_response(),
        },
    }
}

async fn rest_job(
    State(node): State<Arc<Node>>,
    method: Method,
    Path(uuid): Path<String>,
) -> Response {
    if method != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET method is allowed for querying job status",
        )
            .into_response();
    }
    match find_job(&node, &uuid.to_ascii_lowercase()).await {
        Ok(Some(j)) => match (&j.state, &j.result) {
            (job::JobState::Done, Some(result)) => {
                let route = rest::route_of(&j.api_name);
                let spec = api::catalogue::catalogue().by_name(&j.api_name);
                let r = rest::job_reply(route, spec, result);
                (status(r.status), Json(r.body)).into_response()
            }
            _ => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
        },
        Ok(None) => (StatusCode::NOT_FOUND, "the job has been expired").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn openapi() -> Response {
    Json(rest::openapi()).into_response()
}
