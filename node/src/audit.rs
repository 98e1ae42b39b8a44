//! The serving side of the API audit log (`api::audit` has the model and the durability
//! argument): one record per API call, built when the call ends, buffered in a bounded channel
//! and proposed in batches by [`run_flusher`].
//!
//! The buffer never blocks an API call: when it is full the record is dropped, counted in
//! `zstack_audit_dropped_total` and logged (at most once a second). Records still buffered when
//! the process dies are lost; for mutations that only loses who/where, because their outcome is
//! written by the job's own apply step.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use api::audit::clip;
use api::audit::is_session_call;
use api::audit::AuditOp;
use api::audit::AuditRecord;
use api::audit::AuditState;
use api::audit::MAX_TEXT;
use api::identity;
use api::job::ApiJob;
use api::wire::envelope::ApiRequest;
use api::Caller;
use api::IntoCommand;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::node::now_ms;
use crate::node::Node;
use crate::state_view::StateView;

/// Records the buffer holds before dropping new ones.
pub const BUFFER: usize = 8192;
/// Records per proposed batch.
pub const BATCH: usize = 256;
/// How long the flusher waits for more records after the first of a batch.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts (each bounded by the node's request timeout) before a batch is given up.
const ATTEMPTS: usize = 3;
/// Bound on the final flush at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// The bounded buffer between API handlers and the flusher.
pub struct AuditBuffer {
    tx: mpsc::Sender<AuditRecord>,
    rx: Mutex<Option<mpsc::Receiver<AuditRecord>>>,
    /// Records proposed and committed by this node.
    pub records: AtomicU64,
    /// Records dropped (buffer full, or a batch that could not be committed).
    pub dropped: AtomicU64,
    last_warning_ms: AtomicU64,
}

impl Default for AuditBuffer {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            records: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
        }
    }
}

impl AuditBuffer {
    /// Queue a record without waiting; a full buffer drops it (counted, warned).
    pub fn push(&self, record: AuditRecord) {
        if let Err(e) = self.tx.try_send(record) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "audit buffer full",
                mpsc::error::TrySendError::Closed(_) => "audit flusher stopped",
            };
            self.drop_records(1, why);
        }
    }

    fn drop_records(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Relaxed) + n;
        // Warn at most once a second: a full buffer under load would otherwise flood the log.
        let now = now_ms();
        let last = self.last_warning_ms.load(Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped = n,
                dropped_total = total,
                reason = why,
                "audit records dropped"
            );
        }
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|s| clip(s, MAX_TEXT).to_string())
}

/// What is known about a call when it arrives; completed into a record when it ends.
pub struct CallAudit {
    started_ms: u64,
    started: Instant,
    class: String,
    api_name: String,
    client_ip: Option<String>,
    request_dump: String,
    /// The resource the request names, if any.
    target: Option<String>,
    /// The account or user name a login names (the caller is unknown until it succeeds).
    login_name: Option<String>,
}

impl CallAudit {
    /// Start the audit of a decoded request.
    pub fn new(req: &ApiRequest, client_ip: Option<String>) -> Self {
        let api_name = clip(req.short_name(), MAX_TEXT).to_string();
        let target = text(req.body.get("uuid")).or_else(|| text(req.body.get("resourceUuid")));
        let login_name =
            text(req.body.get("userName")).or_else(|| text(req.body.get("accountName")));
        Self {
            started_ms: now_ms(),
            started: Instant::now(),
            class: clip(&req.class, MAX_TEXT).to_string(),
            target: if is_session_call(&api_name) {
                None
            } else {
                target
            },
            login_name: if api_name.starts_with("LogIn") {
                login_name
            } else {
                None
            },
            api_name,
            client_ip,
            request_dump: api::audit::request_dump(&req.body),
        }
    }

    fn record(self, node: &Node, who: Option<&Caller>) -> AuditRecord {
        let operator = who.and_then(|c| operator_name(node, c)).or(self.login_name);
        AuditRecord {
            uuid: crate::zstack_api::new_uuid(),
            api_name: self.api_name,
            message_class: self.class,
            resource_uuid: self.target,
            account_uuid: who.map(|c| c.account_uuid.clone()),
            user_uuid: who.map(|c| c.user_uuid.clone()),
            operator,
            client_ip: self.client_ip,
            request_dump: Some(self.request_dump),
            success: None,
            error_code: None,
            error_description: None,
            error_details: None,
            job_uuid: None,
            state: AuditState::Processing,
            create_date: self.started_ms,
            finish_date: None,
            duration: None,
            node_id: Some(node.id),
            accepted: true,
        }
    }

    /// Record a call that finished with `reply` (`{..., "success": bool, "error"?: {...}}`):
    /// every sync call, and async calls refused before a job existed.
    pub fn done(self, node: &Node, who: Option<&Caller>, reply: &Value) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let mut r = self.record(node, who);
        r.state = AuditState::Done;
        r.finish_date = Some(r.create_date.saturating_add(elapsed));
        r.duration = Some(elapsed);
        r.set_reply(reply);
        node.audit().push(r);
    }

    /// Record an async call accepted as `job`: `Processing` under the job's uuid, completed by
    /// the job's apply step whichever of the two commits first.
    pub fn accepted(self, node: &Node, who: Option<&Caller>, job: &ApiJob) {
        let mut r = self.record(node, who);
        r.uuid = job.uuid.clone();
        r.job_uuid = Some(job.uuid.clone());
        r.create_date = job.create_date;
        node.audit().push(r);
    }
}

/// The name of whoever `caller` is: the user's for user sessions, else the account's (one
/// local read; `None` if it is gone).
fn operator_name(node: &Node, caller: &Caller) -> Option<String> {
    let view = StateView(&node.sm);
    if caller.user_uuid != caller.account_uuid {
        if let Ok(Some((_, u))) = api::resource::load::<identity::User>(&view, &caller.user_uuid) {
            return Some(u.name);
        }
    }
    api::resource::load::<identity::Account>(&view, &caller.account_uuid)
        .ok()
        .flatten()
        .map(|(_, a)| a.name)
}

/// Propose one batch, retrying with the same request id (applied once) a few times.
async fn flush(node: &Node, records: Vec<AuditRecord>) {
    let n = records.len() as u64;
    let cmd = AuditOp::Append { records }.command(Caller::admin());
    let rid = node.new_request_id();
    for attempt in 1..=ATTEMPTS {
        match node.propose(&cmd, Some(rid.clone())).await {
            Ok((_, api::Response::Refused(e))) => {
                // A bug in the record builder, not a transient failure: retrying cannot help.
                tracing::error!(error = %e, "audit batch refused");
                break;
            }
            Ok(_) => {
                node.audit().records.fetch_add(n, Relaxed);
                return;
            }
            Err(e) => {
                tracing::debug!(attempt, error = %e, "audit batch not committed yet");
            }
        }
    }
    node.audit()
        .drop_records(n, "audit batch could not be committed");
}

/// Collect buffered records into batches (up to [`BATCH`], or what arrived within
/// [`FLUSH_INTERVAL`] of the first) and propose them until `shutdown`, then flush what is left
/// within a bound.
pub async fn run_flusher(node: Arc<Node>, shutdown: CancellationToken) {
    let rx = node.audit().rx.lock().ok().and_then(|mut g| g.take());
    let Some(mut rx) = rx else {
        tracing::error!("audit flusher started twice; records stay buffered");
        return;
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        flush(&node, batch).await;
    }
    let mut rest = Vec::new();
    while let Ok(r) = rx.try_recv() {
        rest.push(r);
    }
    let n = rest.len() as u64;
    let final_flush = async {
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(BATCH));
            flush(&node, std::mem::replace(&mut rest, tail)).await;
        }
    };
    if n > 0
        && tokio::time::timeout(SHUTDOWN_FLUSH, final_flush)
            .await
            .is_err()
    {
        tracing::warn!(records = n, "audit records not flushed before shutdown");
    }
}
