//! Raft timing sized from the data directory's measured fsync latency: the leader's heartbeat
//! and every election must comfortably outlast a log append, or a slow disk turns into
//! needless elections.

use std::io::Write;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

/// Measured fsync latency and the timing chosen from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Median fsync of a small write.
    pub fsync_median: Duration,
    /// Slowest fsync observed.
    pub fsync_max: Duration,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Minimum election timeout (the maximum is twice this).
    pub election_min: Duration,
}

/// Measure fsync on `dir` (8 small synced writes to a scratch file) and derive the timing.
pub fn measure(dir: &Path) -> std::io::Result<Timing> {
    let path = dir.join(".fsync-probe");
    let mut samples = Vec::with_capacity(8);
    {
        let mut f = std::fs::File::create(&path)?;
        let block = [0x5au8; 4096];
        for _ in 0..8 {
            f.write_all(&block)?;
            let t = Instant::now();
            f.sync_data()?;
            samples.push(t.elapsed());
        }
    }
    std::fs::remove_file(&path)?;
    samples.sort();
    Ok(derive(
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    ))
}

/// Timing from fsync latencies: heartbeat = 5 × worst fsync within [100 ms, 300 ms]; minimum
/// election timeout = max(4 heartbeats, 20 × worst fsync) within [400 ms, 1500 ms]. The floors
/// keep a busy (shared-CPU) host from mistaking scheduling delay for a dead leader while keeping
/// failover (election timeout + one round) well under 2 s.
pub fn derive(median: Duration, max: Duration) -> Timing {
    let clamp = |d: Duration, lo: u64, hi: u64| {
        d.clamp(Duration::from_millis(lo), Duration::from_millis(hi))
    };
    let heartbeat = clamp(max * 5, 100, 300);
    let election_min = clamp((heartbeat * 4).max(max * 20), 400, 1500);
    Timing {
        fsync_median: median,
        fsync_max: max,
        heartbeat,
        election_min,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_slow_disks() {
        let fast = derive(Duration::from_micros(200), Duration::from_millis(1));
        assert_eq!(fast.heartbeat, Duration::from_millis(100));
        assert_eq!(fast.election_min, Duration::from_millis(400));
        let slow = derive(Duration::from_millis(20), Duration::from_millis(50));
        assert_eq!(slow.heartbeat, Duration::from_millis(250));
        assert_eq!(slow.election_min, Duration::from_millis(1000));
        let td = tempfile::tempdir().unwrap();
        let m = measure(td.path()).unwrap();
        assert!(m.election_min >= m.heartbeat * 2);
    }
}
