//! Prometheus text exposition of Raft progress and request counters (names prefixed `zstack_`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use ha::duties::tracker_metrics::TrackerMetrics;

use raft_store::openraft::LogIdOptionExt;
use raft_store::openraft::ServerState;

use crate::node::role_name;
use crate::node::Node;

/// Upper bounds (seconds) of the proposal latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A cumulative-on-render latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        match BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let mut cumulative = 0;
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                cumulative += c.load(Relaxed);
                (*b, cumulative)
            })
            .collect();
        cumulative += self.overflow.load(Relaxed);
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        histogram(out, name, help, &buckets, cumulative, sum);
    }
}

/// A histogram from cumulative `(upper bound, count)` buckets, the total count and the sum.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: &[(f64, u64)],
    count: u64,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (b, c) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

fn render_host_tracker(out: &mut String, t: &TrackerMetrics) {
    let (b, n, sum) = t.round.snapshot();
    histogram(
        out,
        "zstack_host_tracker_round_seconds",
        "Wall time of one host ping round on this node as leader.",
        &b,
        n,
        sum,
    );
    gauge(
        out,
        "zstack_host_tracker_last_round_seconds",
        "Wall time of the last host ping round.",
        t.last_round_micros.load(Relaxed) as f64 / 1e6,
    );
    let (b, n, sum) = t.ping_rtt.snapshot();
    histogram(
        out,
        "zstack_host_tracker_ping_seconds",
        "Round trip of each answered host ping.",
        &b,
        n,
        sum,
    );
    gauge(
        out,
        "zstack_host_tracker_hosts",
        "Hosts the last ping round covered.",
        t.hosts.load(Relaxed),
    );
    counter(
        out,
        "zstack_host_tracker_missed_deadlines_total",
        "Ping rounds that took longer than host/ping.interval.",
        t.missed_deadlines.load(Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP zstack_host_tracker_pings_total Host pings and attaches by result."
    );
    let _ = writeln!(out, "# TYPE zstack_host_tracker_pings_total counter");
    let _ = writeln!(
        out,
        "zstack_host_tracker_pings_total{{result=\"ok\"}} {}",
        t.pings_ok.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "zstack_host_tracker_pings_total{{result=\"missed\"}} {}",
        t.pings_missed.load(Relaxed)
    );
}

/// Counters the node updates while serving.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Latency of proposals committed and applied on this node as leader.
    pub proposal_latency: Histogram,
    /// Requests this node forwarded to the leader (writes, admin).
    pub forwarded: AtomicU64,
    /// HTTP requests by (route, method, status).
    pub http: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// The host tracker duty's figures (recorded by the duty in `ha`).
    pub host_tracker: Arc<TrackerMetrics>,
}

impl Metrics {
    /// Count one HTTP request.
    pub fn count_http(&self, route: &str, method: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// Render every metric of `node`.
pub fn render(node: &Node) -> String {
    let m = node.raft_metrics();
    let mut out = String::with_capacity(4096);
    let last_log = m.last_log_index.unwrap_or(0);
    gauge(&mut out, "zstack_node_id", "This node's Raft id.", node.id);
    gauge(
        &mut out,
        "zstack_raft_term",
        "Current Raft term.",
        m.current_term,
    );
    gauge(
        &mut out,
        "zstack_raft_leader_id",
        "Id of the leader this node knows, 0 when none.",
        m.current_leader.unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "# HELP zstack_raft_role 1 for this node's current Raft role."
    );
    let _ = writeln!(out, "# TYPE zstack_raft_role gauge");
    for s in [
        ServerState::Leader,
        ServerState::Follower,
        ServerState::Candidate,
        ServerState::Learner,
        ServerState::Shutdown,
    ] {
        let _ = writeln!(
            out,
            "zstack_raft_role{{role=\"{}\"}} {}",
            role_name(s),
            u8::from(m.state == s)
        );
    }
    gauge(
        &mut out,
        "zstack_raft_last_log_index",
        "Index of the last log entry.",
        last_log,
    );
    gauge(
        &mut out,
        "zstack_raft_commit_index",
        "Committed index.",
        m.local_committed.index().unwrap_or(0),
    );
    gauge(
        &mut out,
        "zstack_raft_applied_index",
        "Applied index.",
        m.last_applied.index().unwrap_or(0),
    );
    gauge(
        &mut out,
        "zstack_raft_voters",
        "Number of voters in the current configuration.",
        m.membership_config.membership().voter_ids().count(),
    );
    if let Some(repl) = &m.replication {
        let _ = writeln!(out, "# HELP zstack_raft_replication_lag Entries a follower is behind the leader's log (leader only).");
        let _ = writeln!(out, "# TYPE zstack_raft_replication_lag gauge");
        for (id, matched) in repl {
            let lag = last_log.saturating_sub(matched.index().unwrap_or(0));
            let _ = writeln!(
                out,
                "zstack_raft_replication_lag{{follower=\"{id}\"}} {lag}"
            );
        }
        let _ = writeln!(out, "# HELP zstack_raft_replication_matched_index Highest index known replicated to a follower (leader only).");
        let _ = writeln!(out, "# TYPE zstack_raft_replication_matched_index gauge");
        for (id, matched) in repl {
            let _ = writeln!(
                out,
                "zstack_raft_replication_matched_index{{follower=\"{id}\"}} {}",
                matched.index().unwrap_or(0)
            );
        }
    }
    node.metrics().proposal_latency.render(
        &mut out,
        "zstack_proposal_latency_seconds",
        "Time from proposal to applied response on the leader.",
    );
    let _ = writeln!(
        out,
        "# HELP zstack_forwarded_requests_total Requests forwarded to the leader."
    );
    let _ = writeln!(out, "# TYPE zstack_forwarded_requests_total counter");
    let _ = writeln!(
        out,
        "zstack_forwarded_requests_total {}",
        node.metrics().forwarded.load(Relaxed)
    );
    counter(
        &mut out,
        "zstack_audit_records_total",
        "API audit records this node committed through Raft.",
        node.audit().records.load(Relaxed),
    );
    counter(
        &mut out,
        "zstack_audit_dropped_total",
        "API audit records this node dropped (buffer full or batch not committed).",
        node.audit().dropped.load(Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP zstack_http_requests_total HTTP requests by route, method and status."
    );
    let _ = writeln!(out, "# TYPE zstack_http_requests_total counter");
    if let Ok(http) = node.metrics().http.lock() {
        for ((route, method, status), n) in http.iter() {
            let _ = writeln!(
                out,
                "zstack_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
    }
    let fs = node.log().flush_stats();
    let _ = writeln!(
        out,
        "# HELP zstack_wal_syncs_total WAL fsyncs performed by the log flusher."
    );
    let _ = writeln!(out, "# TYPE zstack_wal_syncs_total counter");
    let _ = writeln!(out, "zstack_wal_syncs_total {}", fs.syncs.load(Relaxed));
    let _ = writeln!(
        out,
        "# HELP zstack_wal_appends_total Log appends made durable by the flusher."
    );
    let _ = writeln!(out, "# TYPE zstack_wal_appends_total counter");
    let _ = writeln!(out, "zstack_wal_appends_total {}", fs.appends.load(Relaxed));
    let _ = writeln!(
        out,
        "# HELP zstack_wal_sync_seconds_total Time spent in WAL fsync."
    );
    let _ = writeln!(out, "# TYPE zstack_wal_sync_seconds_total counter");
    let _ = writeln!(
        out,
        "zstack_wal_sync_seconds_total {}",
        fs.sync_micros.load(Relaxed) as f64 / 1e6
    );
    if let Some(d) = node.duties() {
        let s = *d.borrow();
        gauge(
            &mut out,
            "zstack_leader_duties_running",
            "Leader duty tasks running on this node.",
            s.running,
        );
    }
    render_host_tracker(&mut out, &node.metrics().host_tracker);
    gauge(
        &mut out,
        "zstack_raft_election_timeout_min_seconds",
        "Minimum election timeout chosen from measured fsync latency.",
        node.timing().election_min.as_secs_f64(),
    );
    gauge(
        &mut out,
        "zstack_raft_heartbeat_interval_seconds",
        "Heartbeat interval chosen from measured fsync latency.",
        node.timing().heartbeat.as_secs_f64(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_parseable_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(30));
        let mut out = String::new();
        h.render(&mut out, "zstack_test_seconds", "test");
        let scrape =
            prometheus_parse::Scrape::parse(out.lines().map(|l| Ok(l.to_string()))).unwrap();
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == "zstack_test_seconds")
            .expect("histogram sample");
        match &sample.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let count_at = |le: f64| {
                    buckets
                        .iter()
                        .find(|b| (b.less_than - le).abs() < 1e-12)
                        .map(|b| b.count)
                };
                assert_eq!(count_at(0.0005), Some(1.0));
                assert_eq!(count_at(0.005), Some(2.0));
                assert_eq!(count_at(10.0), Some(2.0));
            }
            other => panic!("not a histogram: {other:?}"),
        }
        assert!(out.contains("zstack_test_seconds_count 3"));
        assert!(escape("a\"b") == "a\\\"b");
    }
}
