//! The HTTP API (axum): health, metrics, cluster administration and the key-value test API.
//! JSON keys are snake_case; errors are `{"error":{"code","description","details"},"served_by"}`.
//! The bodies `zsctl` reads are declared once, in `proto::http`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::MatchedPath;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::delete;
use axum::routing::get;
use axum::routing::post;
use axum::routing::put;
use axum::Json;
use axum::Router;
use proto::cluster::AdminRequest;
use proto::http::encode_value;
use proto::http::AddMemberRequest;
use proto::http::ApiErrorBody;
use proto::http::Consistency;
use proto::http::ErrorReply;
use proto::http::ReadReply;
use proto::http::TransferLeaderRequest;
use proto::http::WriteReply;
use proto::http::REQUEST_ID_HEADER;
use raft_store::openraft::LogIdOptionExt;
use serde::Deserialize;
use serde_json::json;

use crate::duties::read_management_nodes;
use crate::error::NodeError;
use crate::node::Node;

/// Longest accepted request id.
const MAX_REQUEST_ID: usize = 200;

/// An error reply naming the node that produced it.
pub struct HttpError {
    error: NodeError,
    served_by: u64,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorReply {
            error: ApiErrorBody {
                code: self.error.code().to_string(),
                description: self.error.description().to_string(),
                details: self.error.details().to_string(),
            },
            served_by: self.served_by,
        };
        (status, Json(body)).into_response()
    }
}

impl HttpError {
    /// An error answered by node `served_by`.
    pub fn new(error: NodeError, served_by: u64) -> Self {
        Self { error, served_by }
    }
}

type HttpResult = Result<Response, HttpError>;

fn err(node: &Node, error: NodeError) -> HttpError {
    HttpError {
        error,
        served_by: node.id,
    }
}

/// Build the router serving `node`.
pub fn router(node: Arc<Node>) -> Router {
    // Everything that administers the cluster or bypasses the ZStack API's own sessions.
    let admin = Router::new()
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/management-nodes", get(management_nodes))
        .route("/cluster/init", post(init))
        .route("/cluster/members", post(add_member))
        .route("/cluster/members/{id}", delete(remove_member))
        .route("/cluster/leader/transfer", post(transfer_leader))
        .route("/cluster/snapshot", get(snapshot))
        .route("/kv/{*key}", put(kv_put).delete(kv_delete).get(kv_get))
        .route("/cluster/flow-selftest", post(selftest_start))
        .route("/cluster/flow-selftest/{key}", get(selftest_markers))
        .route("/cluster/join-tokens", post(create_join_token))
        .route("/cluster/hosts/{uuid}/domains", get(host_domains))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::admin_auth::require_admin,
        ));
    let node_routes = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/cluster/ca", get(cluster_ca))
        .route("/cluster/join", post(join))
        .merge(admin)
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            json_errors,
        ));
    // The ZStack routes keep ZStack's own error shapes (plain text before the API, spec 06).
    node_routes
        .merge(crate::zstack_api::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .with_state(node)
}

async fn count_requests(
    State(node): State<Arc<Node>>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = path
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    node.metrics()
        .count_http(&route, &method, resp.status().as_u16());
    resp
}

/// Longest refusal text of axum's own kept in the JSON error.
const MAX_REJECTION_TEXT: usize = 4096;

/// axum refuses some requests itself, in plain text: a path or query string that does not
/// decode, a body over the size limit, a method the route does not serve. The node's own routes
/// answer every error as `{"error":{code,description,details},"served_by"}`, so such an answer
/// is rewritten into that shape with its status kept.
async fn json_errors(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), MAX_REJECTION_TEXT).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let details = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let error = match status.as_u16() {
        404 => NodeError::NotFound(details),
        500.. => NodeError::Internal(details),
        _ => NodeError::BadRequest(details),
    };
    let body = ErrorReply {
        error: ApiErrorBody {
            code: error.code().to_string(),
            description: error.description().to_string(),
            details: error.details().to_string(),
        },
        served_by: node.id,
    };
    (status, Json(body)).into_response()
}

/// Largest body read (and dropped) before a 404 is answered.
const MAX_UNROUTED_BODY: usize = 4 << 20;

async fn not_found(State(node): State<Arc<Node>>, req: Request) -> Response {
    node.metrics()
        .count_http("unmatched", req.method().as_str(), 404);
    let e = NodeError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ));
    // Read the body first: answering while the client is still sending makes the server close
    // the connection under it, and the client sees a reset instead of this 404 (fuzzing found
    // it with `PUT /kv/` and a large body).
    let _ = axum::body::to_bytes(req.into_body(), MAX_UNROUTED_BODY).await;
    err(&node, e).into_response()
}

async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

async fn ready(State(node): State<Arc<Node>>) -> Response {
    let readiness = node.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&node),
    )
        .into_response()
}

async fn cluster_status(State(node): State<Arc<Node>>) -> Response {
    Json(node.cluster_status()).into_response()
}

/// Query parameters of reads.
#[derive(Debug, Deserialize)]
pub struct ReadParams {
    /// `linearizable` (default) or `stale` ([`Consistency`]).
    pub consistency: Option<String>,
}

/// Apply the requested consistency before a local read; returns the applied index.
async fn read_barrier(node: &Node, params: &ReadParams) -> Result<u64, HttpError> {
    let consistency = match params.consistency.as_deref() {
        None => Consistency::Linearizable,
        Some(other) => Consistency::parse(other).ok_or_else(|| {
            err(
                node,
                NodeError::BadRequest(format!(
                    "consistency must be linearizable or stale, not {other:?}"
                )),
            )
        })?,
    };
    match consistency {
        Consistency::Linearizable => node.linearizable_barrier().await.map_err(|e| err(node, e)),
        Consistency::Stale => Ok(node.applied_index()),
    }
}

async fn management_nodes(
    State(node): State<Arc<Node>>,
    Query(params): Query<ReadParams>,
) -> HttpResult {
    let applied = read_barrier(&node, &params).await?;
    let inventories = read_management_nodes(&node).map_err(|e| err(&node, e))?;
    Ok(
        Json(json!({"inventories": inventories, "served_by": node.id, "applied_index": applied}))
            .into_response(),
    )
}

async fn init(State(node): State<Arc<Node>>) -> HttpResult {
    node.init_cluster().await.map_err(|e| err(&node, e))?;
    Ok(stamp(
        &node,
        json!({"initialized": true, "node_id": node.id}),
    ))
}

/// Name the node that answered this HTTP request and its applied index; the leader that
/// executed a forwarded administration request stays visible as `executed_by`.
fn stamp(node: &Node, mut v: serde_json::Value) -> Response {
    if let Some(obj) = v.as_object_mut() {
        if let Some(leader) = obj.remove("served_by") {
            obj.insert("executed_by".into(), leader);
        }
        obj.insert("served_by".into(), json!(node.id));
        obj.insert("applied_index".into(), json!(node.applied_index()));
    }
    Json(v).into_response()
}

fn parse_json<T: serde::de::DeserializeOwned>(node: &Node, body: &Bytes) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| err(node, NodeError::BadRequest(format!("request body: {e}"))))
}

async fn add_member(State(node): State<Arc<Node>>, body: Bytes) -> HttpResult {
    let b: AddMemberRequest = parse_json(&node, &body)?;
    let v = node
        .admin(AdminRequest::AddMember {
            id: b.id,
            raft_addr: b.raft_addr,
            api_addr: b.api_addr,
        })
        .await
        .map_err(|e| err(&node, e))?;
    Ok(stamp(&node, v))
}

async fn remove_member(State(node): State<Arc<Node>>, Path(id): Path<String>) -> HttpResult {
    let id: u64 = id.parse().map_err(|_| {
        err(
            &node,
            NodeError::BadRequest(format!("node id {id:?} is not a number")),
        )
    })?;
    let v = node
        .admin(AdminRequest::RemoveMember { id })
        .await
        .map_err(|e| err(&node, e))?;
    Ok(stamp(&node, v))
}

async fn transfer_leader(State(node): State<Arc<Node>>, body: Bytes) -> HttpResult {
    let b: TransferLeaderRequest = if body.iter().all(|c| c.is_ascii_whitespace()) {
        TransferLeaderRequest::default()
    } else {
        parse_json(&node, &body)?
    };
    let v = node
        .admin(AdminRequest::TransferLeader { to: b.to })
        .await
        .map_err(|e| err(&node, e))?;
    Ok(stamp(&node, v))
}

async fn snapshot(State(node): State<Arc<Node>>) -> HttpResult {
    let unavailable = |e: String| err(&node, NodeError::Unavailable(e));
    let applied = node.applied_index();
    node.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| unavailable(format!("raft stopped: {e}")))?;
    node.raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(
            |m| m.snapshot.index().unwrap_or(0) >= applied,
            "snapshot built",
        )
        .await
        .map_err(|e| unavailable(format!("snapshot not built: {e}")))?;
    let snap = node
        .raft
        .get_snapshot()
        .await
        .map_err(|e| unavailable(format!("raft stopped: {e}")))?
        .ok_or_else(|| unavailable("no snapshot available".into()))?;
    let len = snap
        .snapshot
        .len()
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))?;
    // Hold the handle: a newer snapshot may unlink the path while we stream.
    let file = snap
        .snapshot
        .open()
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let last = snap.meta.last_log_id.index().unwrap_or(0);
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
        .header(axum::http::header::CONTENT_LENGTH, len)
        .header("x-snapshot-last-log-index", last)
        .header("x-served-by", node.id)
        .body(Body::from_stream(stream))
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))
}

fn request_id(node: &Node, headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(v) = headers.get(REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| {
        err(
            node,
            NodeError::BadRequest("X-Request-Id must be printable ASCII".into()),
        )
    })?;
    if s.is_empty() || s.len() > MAX_REQUEST_ID {
        return Err(err(
            node,
            NodeError::BadRequest(format!(
                "X-Request-Id must be 1 to {MAX_REQUEST_ID} characters"
            )),
        ));
    }
    // Prefix client ids so they can never collide with ids the nodes generate.
    Ok(Some(format!("c-{s}")))
}

async fn kv_write(node: &Node, headers: &HeaderMap, op: api::kv::KvOp) -> HttpResult {
    let rid = request_id(node, headers)?;
    let (outcome, response) = node
        .propose(&api::IntoCommand::command(op, api::Caller::admin()), rid)
        .await
        .map_err(|e| err(node, e))?;
    let previous = match response {
        api::Response::Kv(api::kv::KvResult::Applied { previous }) => previous,
        api::Response::Refused(e) => return Err(err(node, NodeError::BadRequest(e.to_string()))),
        other => {
            return Err(err(
                node,
                NodeError::Internal(format!("unexpected response {other:?}")),
            ));
        }
    };
    // No wait for the local state machine: a default (linearizable) read anywhere already sees
    // this write, and waiting on a follower would add up to a heartbeat to every write.
    let applied = node.applied_index();
    Ok(Json(WriteReply {
        index: outcome.index,
        duplicate: outcome.duplicate,
        previous: previous.as_deref().map(encode_value),
        served_by: node.id,
        applied_index: applied,
    })
    .into_response())
}

async fn kv_put(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResult {
    api::kv::validate_key(&key).map_err(|e| err(&node, NodeError::BadRequest(e.to_string())))?;
    api::kv::validate_value(&body).map_err(|e| err(&node, NodeError::BadRequest(e.to_string())))?;
    kv_write(
        &node,
        &headers,
        api::kv::KvOp::Put {
            key,
            value: body.to_vec(),
        },
    )
    .await
}

async fn kv_delete(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> HttpResult {
    api::kv::validate_key(&key).map_err(|e| err(&node, NodeError::BadRequest(e.to_string())))?;
    kv_write(&node, &headers, api::kv::KvOp::Delete { key }).await
}

async fn kv_get(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(params): Query<ReadParams>,
) -> HttpResult {
    api::kv::validate_key(&key).map_err(|e| err(&node, NodeError::BadRequest(e.to_string())))?;
    let applied = read_barrier(&node, &params).await?;
    let value = node
        .sm
        .get(api::kv::TABLE, api::kv::storage_key(&key))
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))?;
    Ok(Json(ReadReply {
        key,
        value: value.as_deref().map(encode_value),
        served_by: node.id,
        applied_index: applied,
    })
    .into_response())
}

/// Body of `POST /cluster/flow-selftest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfTestRequest {
    /// The run's key (its markers and the receiver's record are keyed by it).
    key: String,
    /// Step (1, 2 or 3) made to fail, if any.
    fail_at: Option<u8>,
    /// Pause the receiver applies before answering, ms.
    pause_ms: Option<u64>,
    /// Job uuid (the idempotency key; default: a fresh one).
    job_uuid: Option<String>,
}

fn selftest_enabled(node: &Node) -> Result<(), HttpError> {
    if node.receivers().has_selftest() {
        Ok(())
    } else {
        Err(err(
            node,
            NodeError::NotFound(
                "the flow self-test is not enabled on this node (start it with --flow-selftest-receiver)"
                    .into(),
            ),
        ))
    }
}

/// Submit one run of the flow engine's self-test flow (`api::flow::selftest`); poll it like
/// any job (`/zstack/api/result/{job_uuid}`, `GetTaskProgress`).
async fn selftest_start(State(node): State<Arc<Node>>, body: Bytes) -> HttpResult {
    selftest_enabled(&node)?;
    let req: SelfTestRequest = serde_json::from_slice(&body).map_err(|e| {
        err(
            &node,
            NodeError::BadRequest(format!("bad self-test request: {e}")),
        )
    })?;
    if !matches!(req.fail_at, None | Some(1..=3)) {
        return Err(err(
            &node,
            NodeError::BadRequest("fail_at must be 1, 2 or 3".into()),
        ));
    }
    let job_uuid = match req.job_uuid {
        Some(u) => api::interpret::job_uuid_header(&u)
            .map_err(|e| err(&node, NodeError::BadRequest(e.details)))?,
        None => crate::zstack_api::new_uuid(),
    };
    let mut vars = api::flow::Vars::new();
    vars.insert("key".into(), req.key.clone());
    if let Some(f) = req.fail_at {
        vars.insert("fail_at".into(), f.to_string());
    }
    if let Some(p) = req.pause_ms {
        vars.insert("pause_ms".into(), p.to_string());
    }
    let op = api::job::JobOp::Submit(api::job::Submission {
        uuid: job_uuid.clone(),
        api_name: "FlowSelfTest".into(),
        reply_class: api::wire::envelope::GENERIC_EVENT.into(),
        chain: req.key,
        flow: api::job::FlowSpec::Named {
            flow: api::flow::selftest::FLOW.into(),
            vars,
        },
    });
    let (_, resp) = node
        .propose(
            &api::IntoCommand::command(op, api::Caller::admin()),
            Some(format!("job/{job_uuid}")),
        )
        .await
        .map_err(|e| err(&node, e))?;
    match resp {
        api::Response::Job(api::job::JobResult::Job(j)) => {
            node.job_wakeup().notify_waiters();
            Ok(Json(json!({
                "job_uuid": j.uuid,
                "state": format!("{:?}", j.state),
                "served_by": node.id,
            }))
            .into_response())
        }
        api::Response::Refused(e) => Err(err(&node, NodeError::BadRequest(e.to_string()))),
        other => Err(err(
            &node,
            NodeError::Internal(format!(
                "unexpected answer to a self-test submit: {other:?}"
            )),
        )),
    }
}

/// The markers a self-test run left in the replicated state (linearizable read).
async fn selftest_markers(State(node): State<Arc<Node>>, Path(key): Path<String>) -> HttpResult {
    selftest_enabled(&node)?;
    node.linearizable_barrier()
        .await
        .map_err(|e| err(&node, e))?;
    let markers = api::flow::selftest::markers(&crate::state_view::StateView(&node.sm), &key)
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))?;
    let markers: serde_json::Map<String, serde_json::Value> =
        markers.into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(Json(json!({"key": key, "markers": markers, "served_by": node.id})).into_response())
}

/// The cluster CA certificate (public): what a joining node pins, what clients trust.
async fn cluster_ca(State(node): State<Arc<Node>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        node.credentials().ca_pem.clone(),
    )
        .into_response()
}

/// Largest join request body.
const MAX_JOIN_BODY: usize = 32 * 1024;

/// Admit a new node: its join token is its credential (no admin token needed).
async fn join(State(node): State<Arc<Node>>, body: Bytes) -> HttpResult {
    if body.len() > MAX_JOIN_BODY {
        return Err(err(
            &node,
            NodeError::BadRequest(format!("join request larger than {MAX_JOIN_BODY} bytes")),
        ));
    }
    let req: crate::pki::join::JoinRequest = parse_json(&node, &body)?;
    let members: Vec<u64> = node
        .raft_metrics()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    match crate::pki::join::admit(
        node.credentials(),
        &req,
        &members,
        crate::pki::token::now_unix(),
    ) {
        Ok(reply) => {
            tracing::info!(joining_node = req.node_id, raft_addr = %req.raft_addr, "issued credentials to a joining node");
            Ok(Json(reply).into_response())
        }
        Err(e) => {
            tracing::warn!(joining_node = req.node_id, reason = %e, "join refused");
            let e = match e {
                crate::pki::PkiError::Token(_) => NodeError::Forbidden(e.to_string()),
                other => NodeError::BadRequest(other.to_string()),
            };
            Err(err(&node, e))
        }
    }
}

/// Body of `POST /cluster/join-tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinTokenRequest {
    /// Lifetime, seconds (default one hour, at most a day).
    ttl_seconds: Option<u64>,
    /// The only node id the token admits (default: any unused id).
    node_id: Option<u64>,
}

async fn create_join_token(State(node): State<Arc<Node>>, body: Bytes) -> HttpResult {
    let req: JoinTokenRequest = if body.iter().all(|c| c.is_ascii_whitespace()) {
        JoinTokenRequest::default()
    } else {
        parse_json(&node, &body)?
    };
    let now = crate::pki::token::now_unix();
    let ttl = req
        .ttl_seconds
        .unwrap_or(crate::pki::token::DEFAULT_TTL_SECS);
    let token = crate::pki::token::issue(node.credentials(), ttl, req.node_id.unwrap_or(0), now)
        .map_err(|e| err(&node, NodeError::BadRequest(e.to_string())))?;
    Ok(Json(json!({
        "token": token,
        "expires_at": now + ttl,
        "node_id": req.node_id.unwrap_or(0),
        "served_by": node.id,
    }))
    .into_response())
}

/// Serve `app` over TLS on `listener` until `stop`; each connection's client address is
/// given to handlers as `ConnectInfo`, as on the plain-HTTP listener.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    stop: tokio_util::sync::CancellationToken,
) {
    use tower::ServiceExt;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = app.map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// `GET /cluster/hosts/{uuid}/domains` (admin, leader only): what the host's hypervisor runs
/// now, as its agent lists it — the ground truth to compare the cloud's VM records with. The
/// leader asks in its own term, so the read raises no agent's term and a deposed leader is
/// refused by the agent like any of its calls; another node answers 409 naming the leader.
async fn host_domains(State(node): State<Arc<Node>>, Path(uuid): Path<String>) -> HttpResult {
    let m = node.raft_metrics();
    if m.current_leader != Some(node.id) {
        return Err(err(
            &node,
            NodeError::Conflict(format!(
                "only the leader drives agents; ask node {:?}",
                m.current_leader
            )),
        ));
    }
    let host = api::resource::inventory_of(&crate::state_view::StateView(&node.sm), "Host", &uuid)
        .map_err(|e| err(&node, NodeError::Internal(e.to_string())))?
        .ok_or_else(|| err(&node, NodeError::NotFound(format!("host {uuid}"))))?;
    let ip = host["managementIp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let agents = node
        .receivers()
        .agents()
        .ok_or_else(|| err(&node, NodeError::Unavailable("no agent clients".into())))?;
    let target = crate::agent_client::AgentTarget {
        addr: crate::agent_client::agent_addr(&ip, proto::agent::DEFAULT_PORT),
        host_uuid: uuid.clone(),
    };
    let r = agents
        .list_domains(&target, m.current_term, Duration::from_secs(10))
        .await
        .map_err(|e| err(&node, NodeError::Peer(e.to_string())))?;
    let domains: Vec<serde_json::Value> = r
        .domains
        .iter()
        .map(|d| {
            json!({"name": d.name, "uuid": d.uuid, "state": d.state, "vcpus": d.vcpus,
                   "memoryBytes": d.memory_bytes, "vncPort": d.vnc_port, "diskFiles": d.disk_files,
                   "nicMacs": d.nic_macs})
        })
        .collect();
    Ok(Json(json!({
        "hostUuid": uuid,
        "term": m.current_term,
        "domainsVersion": r.domains_version,
        "domains": domains,
    }))
    .into_response())
}
