//! The host ping tracker (a leader duty): every `host/ping.interval` the leader pings each
//! host's agent; heartbeats live only in this duty's memory and only status changes are
//! committed (`HostOp::Track`, term-fenced). A host is `Disconnected` after
//! `host/ping.maxFailure` missed pings in a row, and reconnected without an operator: every
//! round re-attaches a host that is not `Connected`, and a successful attach commits
//! `Connected` with the facts its agent reported. A new leader starts with an empty book and
//! attaches every host once (idempotent on the agent), which also tells it each agent's boot id.
//!
//! The self-fencing lease of the HA issue hangs off the same pings: each one carries the
//! term, and the agent keeps the instant of the last one it accepted.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::host::Host;
use api::families::host::HostFacts;
use api::families::host::HostOp;
use api::families::host::HostStatus;
use api::Caller;
use api::IntoCommand;
use futures::StreamExt;

use crate::context::LeaderContext;
use crate::duties::tracker_metrics::TrackerMetrics;
use crate::BoxFuture;
use crate::Duty;
use crate::DutyError;

/// A host as the tracker sees it in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedHost {
    /// Host uuid.
    pub uuid: String,
    /// Management address (the agent listens there).
    pub management_ip: String,
    /// Committed status.
    pub status: HostStatus,
    /// The facts the committed record holds.
    pub facts: HostFacts,
}

/// What an attach answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Changes whenever the agent process restarts.
    pub boot_id: String,
    /// The host's facts now.
    pub facts: HostFacts,
}

/// Why an agent gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentFailure {
    /// Unreachable, timed out, refused: counts as a missed ping.
    Missed(String),
    /// The agent has seen a newer leader: this term is over; nothing is counted.
    StaleTerm(String),
}

/// How the tracker reaches agents (the node implements it with its mutual-TLS agent client).
pub trait HostAgents: Send + Sync + 'static {
    /// Bind the host's agent to its record and read its facts.
    fn attach(
        &self,
        host: &TrackedHost,
        term: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Attached, AgentFailure>>;
    /// One ping. `known_domains_version` is the version of the domain list last received
    /// from this agent (0: none), so an agent whose domains did not change sends none back.
    fn ping(
        &self,
        host: &TrackedHost,
        term: u64,
        known_domains_version: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Pinged, AgentFailure>>;
}

/// What a ping answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinged {
    /// Changes whenever the agent process restarts.
    pub boot_id: String,
    /// The version of the agent's domain list now.
    pub domains_version: u64,
}

/// The tracker's memory of one host, this term only.
#[derive(Debug, Clone, Default)]
struct Beat {
    boot_id: Option<String>,
    failures: u64,
    /// Only meaningful with `boot_id`: a restarted agent numbers its domain list afresh.
    domains_version: u64,
}

/// The duty.
pub struct HostTracker {
    agents: Arc<dyn HostAgents>,
    metrics: Arc<TrackerMetrics>,
}

impl HostTracker {
    /// A tracker reaching agents through `agents`.
    pub fn new(agents: Arc<dyn HostAgents>) -> Self {
        Self {
            agents,
            metrics: Arc::default(),
        }
    }

    /// Record round and ping figures into `metrics` (shared with whoever exposes them).
    pub fn with_metrics(mut self, metrics: Arc<TrackerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The facts a host record holds, in the agent's terms (to tell whether a report is news).
pub fn facts_of(h: &Host) -> HostFacts {
    HostFacts {
        cpu_threads: h.cpu_num,
        cpu_sockets: h.cpu_sockets,
        memory_bytes: h.total_memory_capacity,
        architecture: h.architecture.clone().unwrap_or_default(),
        os_distribution: h.os_distribution.clone().unwrap_or_default(),
        os_release: h.os_release.clone().unwrap_or_default(),
        os_version: h.os_version.clone().unwrap_or_default(),
    }
}

fn hosts(ctx: &LeaderContext) -> Vec<TrackedHost> {
    ctx.read(|v| api::resource::list::<Host>(v))
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "host tracker cannot list hosts");
            Vec::new()
        })
        .into_iter()
        // A Connecting host is in a job's hands (AddKVMHost, ReconnectHost): not tracked yet.
        .filter(|(_, h)| h.status != HostStatus::Connecting)
        .map(|(_, h)| TrackedHost {
            facts: facts_of(&h),
            uuid: h.uuid,
            management_ip: h.management_ip,
            status: h.status,
        })
        .collect()
}

/// What one host's round decided: its new beat and the report to commit, if any.
struct Outcome {
    uuid: String,
    beat: Beat,
    report: Option<(HostStatus, Option<HostFacts>)>,
}

async fn attach(
    agents: &dyn HostAgents,
    metrics: &TrackerMetrics,
    h: &TrackedHost,
    term: u64,
    timeout: Duration,
    mut beat: Beat,
    max_failures: u64,
) -> Outcome {
    let r = agents.attach(h, term, timeout).await;
    count(metrics, r.is_ok());
    match r {
        Ok(a) => {
            let news = h.status != HostStatus::Connected || a.facts != h.facts;
            let report = news.then(|| {
                let facts = (a.facts != h.facts).then_some(a.facts.clone());
                (HostStatus::Connected, facts)
            });
            if h.status != HostStatus::Connected {
                tracing::info!(host = %h.uuid, ip = %h.management_ip, "host agent attached; reconnecting the host");
            }
            Outcome {
                uuid: h.uuid.clone(),
                beat: Beat {
                    boot_id: Some(a.boot_id),
                    failures: 0,
                    // The attach reply carries no domain list: the first ping fetches it.
                    domains_version: 0,
                },
                report,
            }
        }
        Err(e) => missed(h, beat_after(&mut beat, &e), e, max_failures),
    }
}

fn beat_after(beat: &mut Beat, e: &AgentFailure) -> Beat {
    if matches!(e, AgentFailure::Missed(_)) {
        beat.failures += 1;
        beat.boot_id = None;
    }
    beat.clone()
}

fn missed(h: &TrackedHost, beat: Beat, e: AgentFailure, max_failures: u64) -> Outcome {
    let report = match &e {
        AgentFailure::Missed(why) => {
            tracing::debug!(host = %h.uuid, failures = beat.failures, error = %why, "host ping missed");
            (h.status == HostStatus::Connected && beat.failures >= max_failures).then(|| {
                tracing::warn!(host = %h.uuid, ip = %h.management_ip, failures = beat.failures, error = %why, "host missed its pings; marking it Disconnected");
                (HostStatus::Disconnected, None)
            })
        }
        AgentFailure::StaleTerm(why) => {
            tracing::warn!(host = %h.uuid, error = %why, "host agent has seen a newer leader");
            None
        }
    };
    Outcome {
        uuid: h.uuid.clone(),
        beat,
        report,
    }
}

fn count(metrics: &TrackerMetrics, ok: bool) {
    if ok {
        metrics.pings_ok.fetch_add(1, Relaxed);
    } else {
        metrics.pings_missed.fetch_add(1, Relaxed);
    }
}

async fn track_one(
    agents: Arc<dyn HostAgents>,
    metrics: Arc<TrackerMetrics>,
    h: TrackedHost,
    term: u64,
    timeout: Duration,
    mut beat: Beat,
    max_failures: u64,
) -> Outcome {
    let known = beat.boot_id.clone();
    match known {
        Some(boot) if h.status == HostStatus::Connected => {
            let sent = Instant::now();
            let r = agents.ping(&h, term, beat.domains_version, timeout).await;
            count(&metrics, r.is_ok());
            match r {
                Ok(now) if now.boot_id == boot => {
                    metrics.ping_rtt.observe(sent.elapsed());
                    Outcome {
                        uuid: h.uuid.clone(),
                        beat: Beat {
                            boot_id: Some(now.boot_id),
                            failures: 0,
                            domains_version: now.domains_version,
                        },
                        report: None,
                    }
                }
                // The agent restarted: attach again (it may run on changed hardware).
                Ok(_) => attach(&*agents, &metrics, &h, term, timeout, beat, max_failures).await,
                Err(e) => missed(&h, beat_after(&mut beat, &e), e, max_failures),
            }
        }
        _ => attach(&*agents, &metrics, &h, term, timeout, beat, max_failures).await,
    }
}

impl HostTracker {
    /// One round over every host; answers how many reports were committed.
    async fn round(&self, ctx: &Arc<LeaderContext>, book: &mut HashMap<String, Beat>) -> usize {
        let max_failures = super::host_setting(ctx, "ping.maxFailure", 3);
        let timeout = Duration::from_secs(super::host_setting(ctx, "ping.timeout", 10));
        let parallel = super::host_setting(ctx, "ping.parallelismDegree", 100) as usize;
        let hosts = hosts(ctx);
        // A set, not a scan per entry: at 10 000 hosts a scan is 10^8 comparisons a round.
        let live: std::collections::HashSet<&str> = hosts.iter().map(|h| h.uuid.as_str()).collect();
        book.retain(|uuid, _| live.contains(uuid.as_str()));
        let term = ctx.term();
        let outcomes: Vec<Outcome> = futures::stream::iter(hosts.into_iter().map(|h| {
            let beat = book.get(&h.uuid).cloned().unwrap_or_default();
            track_one(
                self.agents.clone(),
                self.metrics.clone(),
                h,
                term,
                timeout,
                beat,
                max_failures,
            )
        }))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
        let mut committed = 0;
        for o in outcomes {
            book.insert(o.uuid.clone(), o.beat);
            let Some((status, facts)) = o.report else {
                continue;
            };
            let cmd = HostOp::Track {
                uuid: o.uuid.clone(),
                status,
                facts,
            }
            .command(Caller::admin());
            match ctx.propose_as_leader(cmd, None).await {
                Ok(_) => committed += 1,
                // The host may have been deleted meanwhile, or leadership ended: the next
                // round (or the next leader) sees the state as it is then.
                Err(e) => {
                    tracing::info!(host = %o.uuid, error = %e.0, "host status report not committed");
                    // Make the next round try again rather than believe the report landed.
                    if let Some(b) = book.get_mut(&o.uuid) {
                        b.boot_id = None;
                    }
                }
            }
        }
        committed
    }
}

impl Duty for HostTracker {
    fn name(&self) -> &str {
        "host-tracker"
    }

    fn run(self: Arc<Self>, ctx: Arc<LeaderContext>) -> BoxFuture<'static, Result<(), DutyError>> {
        Box::pin(async move {
            let mut book = HashMap::new();
            loop {
                let started = Instant::now();
                let reports = self.round(&ctx, &mut book).await;
                let took = started.elapsed();
                let interval = Duration::from_secs(super::host_setting(&ctx, "ping.interval", 60));
                let m = &self.metrics;
                m.round.observe(took);
                m.last_round_micros.store(took.as_micros() as u64, Relaxed);
                m.hosts.store(book.len() as u64, Relaxed);
                if took > interval {
                    m.missed_deadlines.fetch_add(1, Relaxed);
                }
                tracing::debug!(
                    term = ctx.term(),
                    hosts = book.len(),
                    reports,
                    took_ms = took.as_millis() as u64,
                    "host ping round"
                );
                if !super::wait_round(&ctx, started, |_| false).await {
                    return Ok(());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    use api::families::host::HostState;
    use api::secret::Sealed;

    use super::*;
    use crate::context::NoReceivers;
    use crate::testing::MemNode;
    use crate::CancellationToken;

    /// A scripted agent edge: up or down, a boot id, the facts it reports, and the terms seen.
    struct Scripted {
        up: AtomicBool,
        boot: Mutex<String>,
        facts: HostFacts,
        attaches: Mutex<Vec<u64>>,
        known_versions: Mutex<Vec<u64>>,
    }

    impl HostAgents for Scripted {
        fn attach(
            &self,
            _h: &TrackedHost,
            term: u64,
            _t: Duration,
        ) -> BoxFuture<'static, Result<Attached, AgentFailure>> {
            self.attaches.lock().unwrap().push(term);
            let r = if self.up.load(Ordering::SeqCst) {
                Ok(Attached {
                    boot_id: self.boot.lock().unwrap().clone(),
                    facts: self.facts.clone(),
                })
            } else {
                Err(AgentFailure::Missed("connection refused".into()))
            };
            Box::pin(async move { r })
        }

        fn ping(
            &self,
            _h: &TrackedHost,
            _term: u64,
            known: u64,
            _t: Duration,
        ) -> BoxFuture<'static, Result<Pinged, AgentFailure>> {
            self.known_versions.lock().unwrap().push(known);
            let r = if self.up.load(Ordering::SeqCst) {
                Ok(Pinged {
                    boot_id: self.boot.lock().unwrap().clone(),
                    domains_version: 7,
                })
            } else {
                Err(AgentFailure::Missed("deadline exceeded".into()))
            };
            Box::pin(async move { r })
        }
    }

    fn host(uuid: &str) -> Host {
        Host {
            uuid: uuid.into(),
            name: "h".into(),
            description: None,
            zone_uuid: "z".into(),
            cluster_uuid: "c".into(),
            management_ip: "127.0.0.2".into(),
            state: HostState::Enabled,
            status: HostStatus::Connected,
            total_cpu_capacity: 0,
            available_cpu_capacity: 0,
            cpu_sockets: 0,
            total_memory_capacity: 0,
            available_memory_capacity: 0,
            cpu_num: 0,
            username: "root".into(),
            password: Sealed::from_stored("zsenc:v1:00000000:AAAA".into()),
            ssh_port: 22,
            create_date: 1,
            last_op_date: 1,
            os_distribution: None,
            os_release: None,
            os_version: None,
            architecture: None,
            allocated_cpu: 0,
            allocated_memory: 0,
            reservation_count: 0,
        }
    }

    fn stored(node: &MemNode, uuid: &str) -> Host {
        let st = node.state.lock().unwrap();
        api::resource::require::<Host>(&*st, uuid).unwrap().1
    }

    #[tokio::test]
    async fn status_follows_the_pings_and_only_changes_are_committed() {
        let node = Arc::new(MemNode::new(Arc::new(NoReceivers)));
        let uuid = "0123456789abcdef0123456789abcdef";
        {
            let mut st = node.state.lock().unwrap();
            api::resource::save(&mut *st, "admin", &host(uuid)).unwrap();
        }
        let facts = HostFacts {
            cpu_threads: 4,
            cpu_sockets: 1,
            memory_bytes: 8 << 30,
            architecture: "x86_64".into(),
            os_distribution: "debian".into(),
            os_release: "bookworm".into(),
            os_version: "12".into(),
        };
        let agent = Arc::new(Scripted {
            up: AtomicBool::new(true),
            boot: Mutex::new("boot-1".into()),
            facts: facts.clone(),
            attaches: Mutex::new(Vec::new()),
            known_versions: Mutex::new(Vec::new()),
        });
        let tracker = HostTracker::new(agent.clone());
        let ctx = Arc::new(LeaderContext::new(
            1,
            CancellationToken::new(),
            node.clone(),
        ));
        let mut book = HashMap::new();
        // First round of a term: attach, commit the facts.
        assert_eq!(tracker.round(&ctx, &mut book).await, 1);
        let h = stored(&node, uuid);
        assert_eq!((h.cpu_num, h.total_memory_capacity), (4, 8 << 30));
        assert_eq!(facts_of(&h), facts);
        // Healthy pings commit nothing; after the first, each sends back the domain list
        // version the previous one answered, so the agent need not resend unchanged domains.
        for _ in 0..3 {
            assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        }
        assert_eq!(*agent.known_versions.lock().unwrap(), vec![0, 7, 7]);
        let m = &tracker.metrics;
        assert_eq!(m.pings_ok.load(Relaxed), 4);
        assert_eq!(m.ping_rtt.snapshot().1, 3);
        // Down: two misses are tolerated, the third (ping.maxFailure = 3) disconnects.
        agent.up.store(false, Ordering::SeqCst);
        assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        assert_eq!(stored(&node, uuid).status, HostStatus::Connected);
        assert_eq!(tracker.round(&ctx, &mut book).await, 1);
        assert_eq!(stored(&node, uuid).status, HostStatus::Disconnected);
        assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        // Back (restarted): reconnected without an operator; facts unchanged, so not resent.
        *agent.boot.lock().unwrap() = "boot-2".into();
        agent.up.store(true, Ordering::SeqCst);
        assert_eq!(tracker.round(&ctx, &mut book).await, 1);
        assert_eq!(stored(&node, uuid).status, HostStatus::Connected);
        assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        // A new term's tracker starts from the state: it attaches once under its own term.
        let ctx2 = Arc::new(LeaderContext::new(
            2,
            CancellationToken::new(),
            node.clone(),
        ));
        let mut book2 = HashMap::new();
        assert_eq!(tracker.round(&ctx2, &mut book2).await, 0);
        assert_eq!(agent.attaches.lock().unwrap().last(), Some(&2));
    }

    #[tokio::test]
    async fn a_deposed_leaders_tracker_commits_nothing() {
        let node = Arc::new(MemNode::new(Arc::new(NoReceivers)));
        let uuid = "0123456789abcdef0123456789abcdee";
        {
            let mut st = node.state.lock().unwrap();
            api::resource::save(&mut *st, "admin", &host(uuid)).unwrap();
        }
        let agent = Arc::new(Scripted {
            up: AtomicBool::new(false),
            boot: Mutex::new("b".into()),
            facts: facts_of(&host(uuid)),
            attaches: Mutex::new(Vec::new()),
            known_versions: Mutex::new(Vec::new()),
        });
        let tracker = HostTracker::new(agent);
        let cancel = CancellationToken::new();
        let ctx = Arc::new(LeaderContext::new(1, cancel.clone(), node.clone()));
        let mut book = HashMap::new();
        tracker.round(&ctx, &mut book).await;
        tracker.round(&ctx, &mut book).await;
        cancel.cancel();
        // The third miss would disconnect the host, but this term is over.
        assert_eq!(tracker.round(&ctx, &mut book).await, 0);
        assert_eq!(stored(&node, uuid).status, HostStatus::Connected);
    }
}
