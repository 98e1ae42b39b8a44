//! DELIBERATE BUGS for the chaos checkers' self-tests (`chaos-tests/tests/seeded_bugs.rs`).
//! Compiled only with the `seeded-bugs` feature, which refuses release builds; the binary is
//! `zsnode-seeded`, never `zsnode`. `ZSNODE_SEEDED_BUG` picks the bug at start:
//! - `stale-read`: linearizable reads skip the read-index barrier and serve local state;
//! - `drop-acked-write`: a fraction (`ZSNODE_SEEDED_BUG_RATE`, default 0.2) of mutating API
//!   calls is answered as successful without its command ever being proposed;
//! - `unfenced-duty`: leader duties are not fenced by their term: a duty's proposal is
//!   forwarded to whichever node leads (as client writes are), outlives the term it was made
//!   in, and apply does not refuse a command of another term than its entry's;
//! - `overbook`: a host reservation's apply takes the capacity without re-checking it, so
//!   placements computed concurrently on different nodes can overbook a host.

use std::sync::OnceLock;

/// The selectable bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Serve local state as if linearizable.
    StaleRead,
    /// Acknowledge some writes without committing them.
    DropAckedWrite,
    /// Apply a deposed leader's duty commands instead of refusing them.
    UnfencedDuty,
    /// Take host reservations without the committed capacity re-check.
    Overbook,
}

/// Environment variable selecting the bug.
pub const BUG_ENV: &str = "ZSNODE_SEEDED_BUG";
/// Environment variable with the fraction of dropped writes (`drop-acked-write`).
pub const RATE_ENV: &str = "ZSNODE_SEEDED_BUG_RATE";

fn config() -> &'static (Option<Bug>, f64) {
    static CONFIG: OnceLock<(Option<Bug>, f64)> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let bug = match std::env::var(BUG_ENV).as_deref() {
            Ok("stale-read") => Some(Bug::StaleRead),
            Ok("drop-acked-write") => Some(Bug::DropAckedWrite),
            Ok("unfenced-duty") => Some(Bug::UnfencedDuty),
            Ok("overbook") => Some(Bug::Overbook),
            Ok("") | Err(_) => None,
            Ok(other) => {
                tracing::error!(value = other, "unknown {BUG_ENV}; no bug seeded");
                None
            }
        };
        let rate = std::env::var(RATE_ENV)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.2);
        if let Some(b) = bug {
            tracing::warn!(bug = ?b, rate, "SEEDED BUG ACTIVE: this node is deliberately incorrect");
        }
        (bug, rate)
    })
}

/// Is `stale-read` selected?
pub fn stale_read() -> bool {
    config().0 == Some(Bug::StaleRead)
}

/// Should this mutating call be acknowledged without being committed?
pub fn drop_write() -> bool {
    let (bug, rate) = *config();
    bug == Some(Bug::DropAckedWrite) && rand::random::<f64>() < rate
}

/// `drop-acked-write`: the answer a mutating call gets without being proposed: its job
/// "done" with an empty success result (what the client sees as acknowledged).
pub fn fake_acknowledgement(cmd: &api::Command) -> Option<api::Response> {
    let api::Command::Call(call) = cmd else {
        return None;
    };
    let ticket = call.op.job.as_ref()?;
    if !drop_write() {
        return None;
    }
    let now = crate::node::now_ms();
    let result = api::wire::envelope::encode_result(
        &ticket.reply_class,
        &api::wire::envelope::success(serde_json::Map::new()),
    );
    let job = api::job::ApiJob {
        version: api::job::RECORD_VERSION,
        uuid: ticket.uuid.clone(),
        api_name: ticket.api_name.clone(),
        reply_class: ticket.reply_class.clone(),
        state: api::job::JobState::Done,
        create_date: now,
        last_op_date: now,
        result: Some(result),
        success: Some(true),
        seq: 0,
        chain: ticket.chain.clone(),
        caller: call.op.command.caller().clone(),
        flow: None,
        history: Vec::new(),
    };
    // Accepted async calls are answered as accepted and found done by the first poll: the
    // poll must find this one done too, or the client never sees it acknowledged.
    faked()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(job.uuid.clone(), job.clone());
    Some(api::Response::Call(api::call::CallOutcome::Accepted(
        Box::new(job),
    )))
}

type Faked = std::sync::Mutex<std::collections::HashMap<String, api::job::ApiJob>>;

fn faked() -> &'static Faked {
    static FAKED: OnceLock<Faked> = OnceLock::new();
    FAKED.get_or_init(Default::default)
}

/// `drop-acked-write`: the fake job a poll of `uuid` finds, if this node faked it.
pub fn faked_job(uuid: &str) -> Option<api::job::ApiJob> {
    faked()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uuid)
        .cloned()
}

/// Is `unfenced-duty` selected?
pub fn unfenced_duty() -> bool {
    config().0 == Some(Bug::UnfencedDuty)
}

/// Switch on the bugs that live in the model (`unfenced-duty`, `overbook`); called once at
/// start-up.
pub fn install() {
    match config().0 {
        Some(Bug::UnfencedDuty) => {
            api::leader::seeded::UNFENCED.store(true, std::sync::atomic::Ordering::Relaxed)
        }
        Some(Bug::Overbook) => api::families::host::reservation::seeded::OVERBOOK
            .store(true, std::sync::atomic::Ordering::Relaxed),
        _ => {}
    }
}
