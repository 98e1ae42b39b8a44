//! The serving side of the API audit log (`api::audit` has the model and the durability
//! argument). A call that writes carries its record in its own log entry (`api::call`); the
//! record of a call that writes nothing (queries, reads, refusals before any proposal) is
//! buffered here in a bounded channel and proposed in batches by [`run_flusher`].
//!
//! The buffer never blocks an API call: when it is full the record is dropped, counted in
//! `zstack_audit_dropped_total` and logged (at most once a second). Records still buffered when
//! the process dies are lost; those are only of calls that changed nothing.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use api::audit::AuditOp;
use api::audit::AuditRecord;
use api::Caller;
use api::IntoCommand;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::node::now_ms;
use crate::node::Node;

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

    /// Count a record that went into its call's own log entry.
    pub fn committed_in_entry(&self) {
        self.records.fetch_add(1, Relaxed);
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
