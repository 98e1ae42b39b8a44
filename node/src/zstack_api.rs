//! ZStack's API on every node: the RPC endpoint (`POST|PUT /zstack/api`,
//! `GET|PUT /zstack/api/result/{uuid}`, spec 06 §1) and the REST v1 mirror (`/zstack/v1/...`,
//! §3) with its OpenAPI document. The `api` crate decides everything about a call; this module
//! resolves the session, stamps time, uuids and salts, reads state after a linearizable
//! barrier, proposes commands, and writes each protocol's exact envelope back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use api::audit::AuditRecord;
use api::catalogue::CallKind;
use api::catalogue::CallSpec;
use api::families::identity;
use api::interpret;
use api::interpret::CallOptions;
use api::interpret::Effects;
use api::interpret::Outcome;
use api::job;
use api::job::ApiJob;
use api::plan;
use api::plan::HostEndpoint;
use api::plan::QueryFn;
use api::plan::Stamp;
use api::query::Query;
use api::rest;
use api::wire::envelope;
use api::wire::envelope::ApiRequest;
use api::wire::envelope::RestApiResponse;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use api::ApiError;
use api::Caller;
use api::Command;
use api::IntoCommand;
use api::Response as ApiResponse;
use api::StateTxn;
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

use crate::error::NodeError;
use crate::node::now_ms;
use crate::node::Node;
use crate::state_view::StateView;

/// Header a client may set to choose the job uuid of an async call (its idempotency key).
pub const JOB_UUID_HEADER: &str = "x-job-uuid";
/// ZStack's `X-JSON-Schema`: any value asks for `schema` in REST replies (its server tests
/// only for the header's presence; the SDK sends `true`).
pub const JSON_SCHEMA_HEADER: &str = "x-json-schema";
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

fn unavailable(e: &NodeError) -> Refusal {
    let code = match e {
        NodeError::Unavailable(_) => Code::ManagementNodeUnavailable,
        _ => Code::Internal,
    };
    Refusal::new(code, e.to_string())
}

/// The interpreter's effects on this node: Raft for proposals and barriers, local RocksDB
/// state for reads, the host agent for probes.
struct ServingEffects<'a> {
    node: &'a Arc<Node>,
}

impl Effects for ServingEffects<'_> {
    fn read<T>(&self, f: impl FnOnce(&dyn StateTxn) -> T) -> T {
        f(&StateView(&self.node.sm))
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            now_ms: now_ms(),
            new_uuid: new_uuid(),
            salt: rand::random(),
            key: self.node.data_key().clone(),
        }
    }

    async fn barrier(&self) -> Result<(), Refusal> {
        self.node
            .linearizable_barrier()
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }

    async fn propose(
        &self,
        cmd: Command,
        request_id: Option<String>,
    ) -> Result<ApiResponse, Refusal> {
        // SEEDED BUG (test builds only): acknowledge a write that is never proposed.
        #[cfg(feature = "seeded-bugs")]
        if let Some(fake) = crate::seeded::fake_acknowledgement(&cmd) {
            return Ok(fake);
        }
        self.node
            .propose(&cmd, request_id)
            .await
            .map(|(_, r)| r)
            .map_err(|e| unavailable(&e))
    }

    fn query(
        &self,
        run: QueryFn,
        query: Query,
        caller: Caller,
    ) -> impl Future<Output = Result<Map<String, Value>, ApiError>> {
        // A query may scan a whole table (`name like '%x%'` over 100k records takes
        // seconds): run it off the async workers so Raft and other calls keep going.
        let n = self.node.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                run(&StateView(&n.sm), &query, &caller).map(plan::query_reply)
            })
            .await
            .unwrap_or_else(|e| {
                Err(ApiError::Refused(Refusal::new(
                    Code::Internal,
                    format!("query task failed: {e}"),
                )))
            })
        }
    }

    async fn probe(&self, endpoint: &HostEndpoint) -> Result<(), String> {
        // Opened here, where it is handed to the host agent, and nowhere else.
        let password = self.node.data_key().open(&endpoint.password).map_err(|e| {
            tracing::warn!(host = %endpoint.management_ip, error = %e, "cannot open a host's SSH password; call refused");
            format!("this node cannot open its SSH password: {e}")
        })?;
        self.node
            .host_agent()
            .probe(endpoint, &password)
            .await
            .map_err(|e| {
                tracing::info!(host = %endpoint.management_ip, port = endpoint.ssh_port, error = %e, "host probe failed; call refused");
                format!("its SSH port cannot be reached: {e}")
            })
    }

    fn renew_session(&self, session_uuid: String) {
        renew_in_background(self.node, session_uuid);
    }

    fn job_accepted(&self) {
        self.node.job_wakeup().notify_waiters();
    }

    fn login_backoff(&self) -> Option<&identity::LoginBackoff> {
        Some(self.node.login_backoff())
    }
}

fn stale_ok(headers: &HeaderMap) -> bool {
    headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("stale"))
}

/// Run one call end to end; its audit record goes into the call's own entry when it writes,
/// else into the node's audit buffer.
async fn execute(
    node: &Arc<Node>,
    headers: &HeaderMap,
    spec: &'static CallSpec,
    req: ApiRequest,
    client_ip: Option<String>,
) -> Outcome {
    let opts = CallOptions {
        stale_ok: stale_ok(headers),
        job_uuid: headers
            .get(JOB_UUID_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string()),
        audit: Some(AuditRecord::for_request(
            &req,
            new_uuid(),
            client_ip.clone(),
            node.id,
            now_ms(),
        )),
        client_ip,
    };
    let served = interpret::run(&ServingEffects { node }, spec, req, &opts).await;
    match served.audit {
        Some(record) => node.audit().push(record),
        None => node.audit().committed_in_entry(),
    }
    served.outcome
}

/// The remote address the connection came from (absent when served without connect info).
fn client_ip(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<String> {
    connect.map(|Extension(ConnectInfo(a))| a.ip().to_string())
}

/// Extend an active session without delaying the call that found it due (the call itself is
/// already authorised; a failed renewal is retried by the next call).
fn renew_in_background(node: &Arc<Node>, session_uuid: String) {
    let node = node.clone();
    tokio::spawn(async move {
        let cmd = identity::IdentityOp::RenewSession {
            uuid: session_uuid.clone(),
            duration_s: None,
        }
        .command(Caller::admin());
        if let Err(e) = node.propose(&cmd, None).await {
            tracing::debug!(session = %session_uuid, error = %e, "session renewal failed; next call retries");
        }
    });
}

/// Read a job; when it is unknown or unfinished locally, a barrier makes sure this node is not
/// merely behind the node that accepted it.
async fn find_job(node: &Node, uuid: &str) -> Result<Option<ApiJob>, String> {
    // SEEDED BUG (test builds only): a poll of a write acknowledged without being proposed
    // finds it done.
    #[cfg(feature = "seeded-bugs")]
    if let Some(fake) = crate::seeded::faked_job(uuid) {
        return Ok(Some(fake));
    }
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
        // A new job is answered as accepted even when it already ran (ZStack's protocol: the
        // client polls; its first poll finds the result).
        Outcome::Accepted(j) => {
            rpc_body(RestApiResponse::accepted(&j.uuid, j.create_date).to_body())
        }
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
    let spec = match plan::call_of(&req) {
        Ok(s) => s,
        Err(r) => {
            // An unknown or unimplemented call is still a call: audit its refusal.
            let outcome = interpret::refused_early(CallKind::Sync, &r);
            if let Outcome::Done { reply, .. } = &outcome {
                let mut record = AuditRecord::for_request(&req, new_uuid(), ip, node.id, now_ms());
                record.finish(reply, now_ms());
                node.audit().push(record);
            }
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
    let json_schema = headers.contains_key(JSON_SCHEMA_HEADER);
    let timeout_ms = node.request_timeout().as_millis() as u64;
    let accepted = |uuid: &str| {
        (
            StatusCode::ACCEPTED,
            Json(json!({"apiTimeout": timeout_ms, "location": location(&headers, uuid)})),
        )
            .into_response()
    };
    match execute(&node, &headers, spec, req, client_ip(connect)).await {
        // ZStack answers every async call 202 and delivers even a refusal through the poll
        // (`crate::rest_answers`).
        Outcome::Done { reply, .. } if spec.kind == CallKind::Async => {
            let uuid = headers
                .get(JOB_UUID_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| interpret::job_uuid_header(v).ok())
                .unwrap_or_else(new_uuid);
            node.early_answers()
                .put(uuid.clone(), spec.name.clone(), reply);
            accepted(&uuid)
        }
        Outcome::Done { reply, .. } => {
            let r = rest::reply(route, spec, &reply, json_schema);
            (status(r.status), Json(r.body)).into_response()
        }
        Outcome::Job(j) if j.state == job::JobState::Done && j.result.is_some() => {
            let result = j.result.as_deref().unwrap_or_default();
            let r = rest::job_reply(Some(route), Some(spec), result, json_schema);
            (status(r.status), Json(r.body)).into_response()
        }
        Outcome::Accepted(j) | Outcome::Job(j) => accepted(&j.uuid),
    }
}

async fn rest_job(
    State(node): State<Arc<Node>>,
    method: Method,
    headers: HeaderMap,
    Path(uuid): Path<String>,
) -> Response {
    if method != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET method is allowed for querying job status",
        )
            .into_response();
    }
    let json_schema = headers.contains_key(JSON_SCHEMA_HEADER);
    let uuid = uuid.to_ascii_lowercase();
    if let Some((api_name, reply)) = node.early_answers().get(&uuid) {
        let spec = api::catalogue::catalogue().by_name(&api_name);
        let r = match (rest::route_of(&api_name), spec) {
            (Some(route), Some(spec)) => rest::reply(route, spec, &reply, json_schema),
            _ => rest::unrouted_reply(&reply),
        };
        return (status(r.status), Json(r.body)).into_response();
    }
    match find_job(&node, &uuid).await {
        Ok(Some(j)) => match (&j.state, &j.result) {
            (job::JobState::Done, Some(result)) => {
                let route = rest::route_of(&j.api_name);
                let spec = api::catalogue::catalogue().by_name(&j.api_name);
                let r = rest::job_reply(route, spec, result, json_schema);
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
