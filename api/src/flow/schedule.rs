//! Which jobs may run now, from the replicated state alone: unfinished jobs in submit order;
//! of each chain (the resource a job serialises on) only the earliest; at most a bound in
//! flight. A new leader computes the same answer as the old one did, so a job half-way
//! through its flow is always the first of its chain and resumes before anything queued
//! behind it.

use std::collections::BTreeSet;

use crate::job;
use crate::ApiError;
use crate::StateTxn;

/// How many unfinished jobs one pass looks at (the rest waits for the next pass).
pub const SCAN: usize = 4096;

/// Jobs to start now: not in `running`, the earliest of their chain, in submit order, so that
/// `running` plus the answer stays within `max_in_flight`.
pub fn runnable(
    txn: &dyn StateTxn,
    running: &BTreeSet<String>,
    max_in_flight: usize,
) -> Result<Vec<String>, ApiError> {
    let mut chains = BTreeSet::new();
    let mut out = Vec::new();
    let mut in_flight = running.len();
    for uuid in job::pending(txn, SCAN)? {
        if in_flight >= max_in_flight {
            break;
        }
        let Some(j) = job::get(txn, &uuid)? else {
            continue;
        };
        // Only the first unfinished job of a chain may run; the others wait behind it,
        // whether it is running already or about to start.
        if !chains.insert(j.chain.clone()) || running.contains(&uuid) {
            continue;
        }
        out.push(uuid);
        in_flight += 1;
    }
    Ok(out)
}
