//! The leader's duties over the cloud model: the job executor (every flow), the admin
//! bootstrap and the sweepers. The management-node registry lives in `crate::registry`.

pub mod backup_storage_tracker;
pub mod executor;
pub mod host_tracker;
pub mod scheduler_timer;
pub mod storage_tracker;
pub mod sweepers;
pub mod tracker_metrics;
pub mod vm_reconciler;

use std::time::Duration;
use std::time::Instant;

use crate::context::LeaderContext;

/// A positive integer `host/<name>` global config, `fallback` when unset or unreadable.
pub(crate) fn host_setting(ctx: &LeaderContext, name: &str, fallback: u64) -> u64 {
    ctx.read(|v| api::settings::int_value(v, "host", name))
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(fallback)
}

/// Wait until `host/ping.interval` has passed since `started` (re-read every second, so an
/// operator shortening it does not wait out the old period) or `early` holds. `false` when
/// leadership ended meanwhile.
pub(crate) async fn wait_round(
    ctx: &LeaderContext,
    started: Instant,
    early: impl Fn(&LeaderContext) -> bool,
) -> bool {
    loop {
        let interval = Duration::from_secs(host_setting(ctx, "ping.interval", 60));
        let left = interval.saturating_sub(started.elapsed());
        if left.is_zero() || early(ctx) {
            return true;
        }
        tokio::select! {
            _ = ctx.cancelled().cancelled() => return false,
            _ = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
        }
    }
}
