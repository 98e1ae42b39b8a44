//! What the host tracker measures about itself, kept in plain atomics so the node can render
//! it into its Prometheus exposition without `ha` knowing about Prometheus or the node.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Upper bounds (seconds) of the round-time histogram. Fine steps around one second, because
/// "does a round fit in a 1 s interval" is the question the buckets must answer, and out to
/// the default 60 s interval.
pub const ROUND_BUCKETS: [f64; 24] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8,
    0.9, 1.0, 1.25, 1.5, 2.0, 5.0, 15.0, 60.0,
];

/// Upper bounds (seconds) of the per-ping round-trip histogram.
pub const PING_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram; bucket counts are per bucket (not cumulative) until rendered.
#[derive(Debug)]
pub struct Buckets<const N: usize> {
    bounds: &'static [f64; N],
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Buckets<N> {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64; N]) -> Self {
        Self {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        match self.bounds.iter().position(|b| s <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// `(upper bound, cumulative count)` per bucket, then the total count and the sum in
    /// seconds: the shape of a Prometheus histogram.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                cumulative += c.load(Relaxed);
                (*b, cumulative)
            })
            .collect();
        cumulative += self.overflow.load(Relaxed);
        (
            buckets,
            cumulative,
            self.sum_micros.load(Relaxed) as f64 / 1e6,
        )
    }
}

/// The tracker's figures on this node (they only move while it leads).
#[derive(Debug)]
pub struct TrackerMetrics {
    /// Wall time of each round, from the first ping to the last report committed.
    pub round: Buckets<{ ROUND_BUCKETS.len() }>,
    /// Round trip of each successful ping.
    pub ping_rtt: Buckets<{ PING_BUCKETS.len() }>,
    /// Hosts the last round covered.
    pub hosts: AtomicU64,
    /// Rounds that took longer than `host/ping.interval`.
    pub missed_deadlines: AtomicU64,
    /// Pings (and attaches) answered.
    pub pings_ok: AtomicU64,
    /// Pings (and attaches) not answered in time or refused.
    pub pings_missed: AtomicU64,
    /// Duration of the last round, in microseconds.
    pub last_round_micros: AtomicU64,
}

impl Default for TrackerMetrics {
    fn default() -> Self {
        Self {
            round: Buckets::new(&ROUND_BUCKETS),
            ping_rtt: Buckets::new(&PING_BUCKETS),
            hosts: AtomicU64::new(0),
            missed_deadlines: AtomicU64::new(0),
            pings_ok: AtomicU64::new(0),
            pings_missed: AtomicU64::new(0),
            last_round_micros: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_cumulative_and_counts_overflow() {
        let b = Buckets::new(&PING_BUCKETS);
        b.observe(Duration::from_micros(100));
        b.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(30));
        let (buckets, count, sum) = b.snapshot();
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last().unwrap().1, 2);
        assert_eq!(count, 3);
        assert!((sum - 30.0031).abs() < 1e-6);
    }
}
