//! Wall-clock stamps of proposals and audit records, with the chaos tests' clock-offset hook.

use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::SystemTime;

/// Milliseconds since the Unix epoch (plus the test clock offset, see [`clock_offset_ms`]).
pub fn now_ms() -> u64 {
    let wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    wall.saturating_add(clock_offset_ms()).max(0) as u64
}

/// Environment variable naming a file that holds a wall-clock offset in milliseconds (a signed
/// integer). Chaos tests use it to make one node's wall clock jump (docs/reliability.md explains
/// why a hook rather than libfaketime). Unset (production): the offset is 0 and no task runs.
pub const CLOCK_OFFSET_FILE_ENV: &str = "ZSNODE_CLOCK_OFFSET_FILE";

/// The current wall-clock offset in ms: 0 unless [`CLOCK_OFFSET_FILE_ENV`] is set, in which case
/// a background thread re-reads the file every 100 ms (a missing or unparsable file means 0).
/// Only wall-clock stamps move; monotonic timers (Raft elections, heartbeats) are unaffected, as
/// on a real host whose clock is stepped.
pub fn clock_offset_ms() -> i64 {
    static OFFSET: OnceLock<Option<Arc<AtomicI64>>> = OnceLock::new();
    let cell = OFFSET.get_or_init(|| {
        let path = std::env::var_os(CLOCK_OFFSET_FILE_ENV)?;
        let read = move |p: &std::ffi::OsStr| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let cell = Arc::new(AtomicI64::new(read(&path)));
        let c2 = cell.clone();
        let spawned = std::thread::Builder::new()
            .name("clock-offset".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                c2.store(read(&path), Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the clock-offset reader");
        }
        Some(cell)
    });
    cell.as_ref().map_or(0, |c| c.load(Ordering::Relaxed))
}
