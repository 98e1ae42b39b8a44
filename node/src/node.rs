//! The running node: Raft handle, state machine, peers, and the operations the HTTP and gRPC
//! front ends share (propose with forwarding, linearizable reads, membership administration).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use openraft::ChangeMembers;
use openraft::LogIdOptionExt;
use openraft::RaftMetrics;
use openraft::ReadPolicy;
use openraft::ServerState;
use raft_store::openraft;
use raft_store::openraft::async_runtime::WatchReceiver;
use raft_store::ApplyOutcome;
use raft_store::LogStore;
use raft_store::MemberNode;
use raft_store::NodeId;
use raft_store::Proposal;
use raft_store::StateMachineStore;
use raft_store::TypeConfig;
use tokio::sync::watch;

use crate::applier::ModelApplier;
use crate::config::validate_host_port;
use crate::error::NodeError;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::network::PeerError;
use crate::network::Peers;
use crate::network::Rpc;
use crate::timing::Timing;
use crate::wire::AdminRequest;
use crate::wire::NodeStatus;
use crate::wire::PROTOCOL_VERSION;

/// The Raft handle of this node.
pub type Raft = raft_store::Raft<ModelApplier>;
/// The state machine store of this node.
pub type Sm = StateMachineStore<ModelApplier>;

/// Bound on membership and leadership administration (catching a learner up takes a while).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a status probe of a peer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

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
    static OFFSET: OnceLock<Option<Arc<std::sync::atomic::AtomicI64>>> = OnceLock::new();
    let cell = OFFSET.get_or_init(|| {
        let path = std::env::var_os(CLOCK_OFFSET_FILE_ENV)?;
        let read = move |p: &std::ffi::OsStr| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let cell = Arc::new(std::sync::atomic::AtomicI64::new(read(&path)));
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

/// Role name as the HTTP contract spells it.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}

/// Where a request that must run on the leader goes.
enum Target {
    Local,
    Remote { id: NodeId, addr: String },
}

/// One management node.
pub struct Node {
    /// Raft node id.
    pub id: NodeId,
    /// Cluster id.
    pub cluster_id: String,
    /// Identity recorded in the data directory.
    pub identity: Identity,
    /// Advertised addresses.
    pub advertise: MemberNode,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine (for local reads and snapshots).
    pub sm: Sm,
    /// The log store (for WAL sync counters).
    pub log: LogStore,
    /// Node-to-node client.
    pub peers: Arc<Peers>,
    /// Request counters and histograms.
    pub metrics: Metrics,
    /// Commit index known when the node started; ready once applied reaches it.
    pub startup_commit: u64,
    /// Bound on client requests.
    pub request_timeout: Duration,
    /// Raft timing chosen at start-up.
    pub timing: Timing,
    /// Leader-duty supervisor state, once the supervisor runs.
    pub duties: OnceLock<watch::Receiver<ha::SupervisorState>>,
    /// One membership change at a time.
    admin_lock: tokio::sync::Mutex<()>,
    /// Distinguishes request ids generated by this process from those of earlier runs.
    boot_nonce: u64,
    seq: AtomicU64,
    /// Wakes the leader's job executor when this node accepted an async call.
    pub job_wakeup: Arc<tokio::sync::Notify>,
    /// Finished-call audit records waiting for the batch flusher.
    pub audit: crate::audit::AuditBuffer,
    /// Reaches KVM hosts (probes before AddKVMHost/ReconnectHost/UpdateKVMHost are proposed).
    pub host_agent: Arc<dyn crate::host_agent::HostAgent>,
}

impl Node {
    /// Assemble a node from its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: Identity,
        advertise: MemberNode,
        raft: Raft,
        sm: Sm,
        log: LogStore,
        peers: Arc<Peers>,
        request_timeout: Duration,
        timing: Timing,
    ) -> Self {
        let startup_commit = raft
            .metrics()
            .borrow_watched()
            .local_committed
            .index()
            .unwrap_or(0);
        let job_wakeup = sm.applier().jobs_submitted();
        Self {
            id: identity.node_id,
            cluster_id: identity.cluster_id.clone(),
            identity,
            advertise,
            raft,
            sm,
            log,
            peers,
            metrics: Metrics::default(),
            startup_commit,
            request_timeout,
            timing,
            duties: OnceLock::new(),
            admin_lock: tokio::sync::Mutex::new(()),
            boot_nonce: rand::random(),
            seq: AtomicU64::new(0),
            job_wakeup,
            audit: crate::audit::AuditBuffer::default(),
            host_agent: Arc::new(crate::host_agent::SshPortProbe::default()),
        }
    }

    /// A snapshot of openraft's metrics.
    pub fn raft_metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Local applied index.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow_watched()
            .last_applied
            .index()
            .unwrap_or(0)
    }

    /// A fresh request id for a proposal the client did not name.
    pub fn new_request_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("n{}-{:016x}-{n}", self.id, self.boot_nonce)
    }

    /// This node's identity and progress.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft_metrics();
        let host_name = self
            .advertise
            .api_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| self.advertise.api_addr.clone());
        NodeStatus {
            node_id: self.id,
            cluster_id: self.cluster_id.clone(),
            protocol_version: PROTOCOL_VERSION,
            uuid: self.identity.uuid.clone(),
            host_name,
            role: role_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: m.local_committed.index().unwrap_or(0),
            applied_index: m.last_applied.index().unwrap_or(0),
            raft_addr: self.advertise.raft_addr.clone(),
            api_addr: self.advertise.api_addr.clone(),
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    fn member(&self, id: NodeId) -> Option<MemberNode> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Run `f` against the current leader until it succeeds, fails for a reason retrying cannot
    /// fix, or `timeout` passes. Leadership is re-resolved before every attempt; with
    /// `attempt_cap`, one attempt gets at most that long, so a request stuck on a leader that was
    /// partitioned away or paused moves on to its successor instead of waiting out the timeout.
    async fn on_leader<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        attempt_cap: Option<Duration>,
        mut f: F,
    ) -> Result<T, NodeError>
    where
        F: FnMut(Target, Duration) -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = NodeError::Unavailable(format!("{what}: no leader known"));
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(NodeError::Unavailable(format!(
                    "{what}: gave up after {timeout:?}; last error: {}",
                    last.details()
                )));
            }
            let leader = self.raft.metrics().borrow_watched().current_leader;
            let budget = attempt_cap.map_or(remaining, |c| remaining.min(c));
            let attempt = match leader {
                None => Err(NodeError::Unavailable(format!("{what}: no leader known"))),
                Some(l) if l == self.id => f(Target::Local, budget).await,
                Some(l) => match self.member(l) {
                    Some(n) => {
                        f(
                            Target::Remote {
                                id: l,
                                addr: n.raft_addr,
                            },
                            budget,
                        )
                        .await
                    }
                    None => Err(NodeError::Unavailable(format!(
                        "{what}: leader {l} has no address yet"
                    ))),
                },
            };
            match attempt {
                Ok(v) => return Ok(v),
                Err(NodeError::Unavailable(e)) => {
                    last = NodeError::Unavailable(e);
                    // Wait for a metrics change (a new leader) or a short pause, whichever first.
                    let mut rx = self.raft.metrics();
                    let pause = remaining.min(Duration::from_millis(50));
                    let _ = tokio::time::timeout(pause, rx.changed()).await;
                    if rx.borrow_watched().current_leader == leader {
                        tokio::time::sleep(
                            deadline
                                .saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(20)),
                        )
                        .await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Longest single attempt of a write or read barrier: past two minimum election timeouts a
    /// healthy cluster has elected a new leader, so re-resolving beats waiting.
    fn attempt_cap(&self) -> Duration {
        (self.timing.election_min * 2).max(Duration::from_secs(1))
    }

    /// Propose a command through Raft from any node: run locally on the leader or forward to it,
    /// retrying with the same request id (raft-store dedups it) until the request timeout.
    pub async fn propose(
        &self,
        cmd: &api::Command,
        request_id: Option<String>,
    ) -> Result<(ApplyOutcome, api::Response), NodeError> {
        let rid = request_id.unwrap_or_else(|| self.new_request_id());
        let proposal = Proposal::new(Some(rid), now_ms(), cmd);
        let outcome = self
            .on_leader(
                "write",
                self.request_timeout,
                Some(self.attempt_cap()),
                |target, remaining| {
                    let proposal = proposal.clone();
                    async move {
                        match target {
                            Target::Local => self.propose_local(proposal, remaining).await,
                            Target::Remote { id, addr } => {
                                self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
                                let r: Result<ApplyOutcome, NodeError> = self
                                    .peers
                                    .call(id, &addr, Rpc::Forward, &proposal, remaining)
                                    .await
                                    .map_err(peer_unavailable)?;
                                r
                            }
                        }
                    }
                },
            )
            .await?;
        let response: api::Response = outcome.decode().map_err(|e| {
            NodeError::Internal(format!(
                "undecodable apply response at index {}: {e}",
                outcome.index
            ))
        })?;
        Ok((outcome, response))
    }

    /// Propose on this node, which must be the leader.
    pub async fn propose_local(
        &self,
        proposal: Proposal,
        timeout: Duration,
    ) -> Result<ApplyOutcome, NodeError> {
        let started = Instant::now();
        let r = tokio::time::timeout(timeout, self.raft.client_write(proposal)).await;
        match r {
            Err(_) => Err(NodeError::Unavailable(format!(
                "proposal not committed within {timeout:?} (no quorum?)"
            ))),
            Ok(Ok(resp)) => {
                self.metrics.proposal_latency.observe(started.elapsed());
                Ok(resp.data)
            }
            Ok(Err(e)) => Err(NodeError::Unavailable(format!(
                "proposal failed on node {}: {e}",
                self.id
            ))),
        }
    }

    /// The leader's read index, confirmed with a quorum; this node must be the leader.
    pub async fn read_index_local(&self, timeout: Duration) -> Result<u64, NodeError> {
        match tokio::time::timeout(timeout, self.raft.get_read_log_id(ReadPolicy::ReadIndex)).await
        {
            Err(_) => Err(NodeError::Unavailable(format!(
                "leadership not confirmed by a quorum within {timeout:?}"
            ))),
            Ok(Ok((read_log_id, _))) => Ok(read_log_id.index()),
            Ok(Err(e)) => Err(NodeError::Unavailable(format!(
                "read index on node {}: {e}",
                self.id
            ))),
        }
    }

    /// Make a following local read linearizable: obtain the read index from the leader (or
    /// ourselves), then wait until this node has applied it. Returns the local applied index.
    pub async fn linearizable_barrier(&self) -> Result<u64, NodeError> {
        // SEEDED BUG (test builds only): skip the read index, serve local state as linearizable.
        #[cfg(feature = "seeded-bugs")]
        if crate::seeded::stale_read() {
            return Ok(self.applied_index());
        }
        let deadline = Instant::now() + self.request_timeout;
        let index = self
            .on_leader(
                "linearizable read",
                self.request_timeout,
                Some(self.attempt_cap()),
                |target, remaining| async move {
                    match target {
                        Target::Local => self.read_index_local(remaining).await,
                        Target::Remote { id, addr } => {
                            let r: Result<u64, NodeError> = self
                                .peers
                                .call(id, &addr, Rpc::ReadIndex, &(), remaining)
                                .await
                                .map_err(peer_unavailable)?;
                            r
                        }
                    }
                },
            )
            .await?;
        self.wait_applied(index, deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// Wait until the local state machine applied `index`; returns the applied index.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<u64, NodeError> {
        let applied = self.applied_index();
        if applied >= index {
            return Ok(applied);
        }
        match self
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
        {
            Ok(m) => Ok(m.last_applied.index().unwrap_or(0)),
            Err(e) => Err(NodeError::Unavailable(format!(
                "node {} has not applied index {index} within {timeout:?}: {e}",
                self.id
            ))),
        }
    }

    /// Initialise a single-voter cluster with this node.
    pub async fn init_cluster(&self) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Unavailable(format!("raft stopped: {e}")))?;
        if initialized {
            return Err(NodeError::Conflict(format!(
                "node {} is already initialised (member of a cluster)",
                self.id
            )));
        }
        let members = BTreeMap::from([(self.id, self.advertise.clone())]);
        self.raft.initialize(members).await.map_err(|e| match e {
            openraft::errors::RaftError::APIError(e) => {
                NodeError::Conflict(format!("cannot initialise: {e}"))
            }
            e => NodeError::Unavailable(format!("cannot initialise: {e}")),
        })
    }

    /// Run an administration request on the leader, forwarding it if needed; returns JSON.
    pub async fn admin(&self, req: AdminRequest) -> Result<serde_json::Value, NodeError> {
        let json = self
            .on_leader(
                "administration",
                ADMIN_TIMEOUT,
                None,
                |target, remaining| {
                    let req = req.clone();
                    async move {
                        match target {
                            Target::Local => self.admin_local(req).await,
                            Target::Remote { id, addr } => {
                                self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
                                let r: Result<String, NodeError> = self
                                    .peers
                                    .call(id, &addr, Rpc::Admin, &req, remaining)
                                    .await
                                    .map_err(peer_unavailable)?;
                                r
                            }
                        }
                    }
                },
            )
            .await?;
        serde_json::from_str(&json)
            .map_err(|e| NodeError::Internal(format!("undecodable admin reply: {e}")))
    }

    /// Execute an administration request; this node must be the leader. Returns JSON text.
    pub async fn admin_local(&self, req: AdminRequest) -> Result<String, NodeError> {
        if !self.raft.is_leader() {
            return Err(NodeError::Unavailable(format!(
                "node {} is not the leader",
                self.id
            )));
        }
        let _one_at_a_time = self.admin_lock.lock().await;
        let v = match req {
            AdminRequest::AddMember {
                id,
                raft_addr,
                api_addr,
            } => self.add_member(id, raft_addr, api_addr).await?,
            AdminRequest::RemoveMember { id } => self.remove_member(id).await?,
            AdminRequest::TransferLeader { to } => self.transfer_leader(to).await?,
        };
        Ok(v.to_string())
    }

    fn membership_settled(&self, m: &RaftMetrics<TypeConfig>) -> Result<(), NodeError> {
        if m.membership_config.membership().get_joint_config().len() > 1 {
            return Err(NodeError::Unavailable(
                "a membership change is still in progress".into(),
            ));
        }
        Ok(())
    }

    async fn add_member(
        &self,
        id: NodeId,
        raft_addr: String,
        api_addr: String,
    ) -> Result<serde_json::Value, NodeError> {
        if id == 0 {
            return Err(NodeError::BadRequest("node id 0 is reserved".into()));
        }
        validate_host_port(&raft_addr)
            .map_err(|e| NodeError::BadRequest(format!("raft_addr: {e}")))?;
        validate_host_port(&api_addr)
            .map_err(|e| NodeError::BadRequest(format!("api_addr: {e}")))?;
        let m = self.raft_metrics();
        self.membership_settled(&m)?;
        let membership = m.membership_config.membership();
        let is_voter = membership.voter_ids().any(|v| v == id);
        let mut already_learner = false;
        if let Some(n) = membership.get_node(&id) {
            if n.raft_addr != raft_addr || n.api_addr != api_addr {
                return Err(NodeError::Conflict(format!(
                    "node id {id} already belongs to a member at {n}; node ids are never reused"
                )));
            }
            if is_voter {
                return Err(NodeError::Conflict(format!(
                    "node {id} is already a voting member"
                )));
            }
            already_learner = true;
        }
        for (nid, n) in membership.nodes() {
            if *nid != id && (n.raft_addr == raft_addr || n.api_addr == api_addr) {
                return Err(NodeError::Conflict(format!(
                    "address already used by member {nid} ({n})"
                )));
            }
        }

        // Ask the newcomer who it is before touching the membership: it refuses a foreign
        // cluster id, another protocol version or another node id itself.
        let st: NodeStatus = self
            .peers
            .call(id, &raft_addr, Rpc::Status, &(), PROBE_TIMEOUT)
            .await
            .map_err(|e| match e {
                PeerError::Refused { detail, .. } => NodeError::Conflict(format!(
                    "node {id} at {raft_addr} refused to join: {detail}"
                )),
                e => NodeError::Peer(format!(
                    "cannot reach node {id} to check it before adding: {e}"
                )),
            })?;
        if st.node_id != id
            || st.cluster_id != self.cluster_id
            || st.protocol_version != PROTOCOL_VERSION
        {
            return Err(NodeError::Conflict(format!(
                "node at {raft_addr} is node {} of cluster {:?} (protocol v{}), expected node {id} of {:?} (v{PROTOCOL_VERSION})",
                st.node_id, st.cluster_id, st.protocol_version, self.cluster_id
            )));
        }
        if !already_learner && !st.members.is_empty() {
            return Err(NodeError::Conflict(format!(
                "node {id} already belongs to a cluster with members {:?}; start it with a fresh data dir",
                st.members
            )));
        }

        let node = MemberNode {
            raft_addr,
            api_addr,
        };
        if !already_learner {
            tracing::info!(id, %node, "adding learner");
            self.change(self.raft.add_learner(id, node.clone(), true), "add learner")
                .await?;
        }
        tracing::info!(id, "learner caught up; promoting to voter");
        self.change(
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
            "promote to voter",
        )
        .await?;
        Ok(serde_json::json!({
            "id": id,
            "raft_addr": node.raft_addr,
            "api_addr": node.api_addr,
            "voter": true,
            "voters": self.raft.voter_ids().collect::<Vec<_>>(),
            "served_by": self.id,
        }))
    }

    async fn change<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, openraft::errors::RaftError<TypeConfig, E>>>,
        what: &str,
    ) -> Result<T, NodeError> {
        match tokio::time::timeout(ADMIN_TIMEOUT, fut).await {
            Err(_) => Err(NodeError::Unavailable(format!(
                "{what}: not done within {ADMIN_TIMEOUT:?}"
            ))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(openraft::errors::RaftError::APIError(e))) => {
                Err(NodeError::Unavailable(format!("{what}: {e}")))
            }
            Ok(Err(e)) => Err(NodeError::Unavailable(format!("{what}: {e}"))),
        }
    }

    async fn remove_member(&self, id: NodeId) -> Result<serde_json::Value, NodeError> {
        let m = self.raft_metrics();
        self.membership_settled(&m)?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(NodeError::NotFound(format!("node {id} is not a member")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(NodeError::Conflict(format!(
                    "refusing to remove node {id}: it is the last voter"
                )));
            }
            // Joint consensus needs a majority of the current AND of the new configuration; if
            // either is unreachable the change could never commit and would wedge membership.
            let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let mut reachable = BTreeSet::new();
            for v in &voters {
                if *v == self.id {
                    reachable.insert(*v);
                    continue;
                }
                if let Some(n) = membership.get_node(v) {
                    let probe: Result<NodeStatus, _> = self
                        .peers
                        .call(*v, &n.raft_addr, Rpc::Status, &(), PROBE_TIMEOUT)
                        .await;
                    if probe.is_ok() {
                        reachable.insert(*v);
                    }
                }
            }
            let current_ok = reachable.len() > voters.len() / 2;
            let new_reachable = remaining.iter().filter(|v| reachable.contains(v)).count();
            let new_ok = new_reachable > remaining.len() / 2;
            if !current_ok || !new_ok {
                return Err(NodeError::Conflict(format!(
                    "refusing to remove node {id}: reachable voters {reachable:?} are not a majority of \
                     the current voters {voters:?} and of the remaining voters {remaining:?}"
                )));
            }
            tracing::info!(id, "removing voter");
            self.change(
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
                "remove voter",
            )
            .await?;
        } else {
            tracing::info!(id, "removing learner");
            self.change(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
                "remove learner",
            )
            .await?;
        }
        Ok(serde_json::json!({
            "removed": id,
            "voters": self.raft.voter_ids().collect::<Vec<_>>(),
            "served_by": self.id,
        }))
    }

    async fn transfer_leader(&self, to: Option<NodeId>) -> Result<serde_json::Value, NodeError> {
        let m = self.raft_metrics();
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let target = match to {
            Some(t) if !voters.contains(&t) => {
                return Err(NodeError::BadRequest(format!(
                    "node {t} is not a voter; voters: {voters:?}"
                )))
            }
            Some(t) => t,
            None => {
                // The most up-to-date other voter takes over with the least catch-up.
                let replication = m.replication.clone().unwrap_or_default();
                voters
                    .iter()
                    .copied()
                    .filter(|v| *v != self.id)
                    .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))
                    .ok_or_else(|| {
                        NodeError::Conflict("no other voter to transfer leadership to".into())
                    })?
            }
        };
        if target != self.id {
            tracing::info!(to = target, "transferring leadership");
            self.raft
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| NodeError::Unavailable(format!("raft stopped: {e}")))?;
            let waited = self
                .raft
                .wait(Some(ADMIN_TIMEOUT.min(Duration::from_secs(10))))
                .current_leader(target, "leader transfer")
                .await;
            if let Err(e) = waited {
                return Err(NodeError::Unavailable(format!(
                    "node {target} did not take over: {e}"
                )));
            }
        }
        Ok(serde_json::json!({ "leader_id": target, "served_by": self.id }))
    }
}

fn peer_unavailable(e: PeerError) -> NodeError {
    match e {
        PeerError::Refused { .. } => NodeError::Peer(e.to_string()),
        e => NodeError::Unavailable(e.to_string()),
    }
}
