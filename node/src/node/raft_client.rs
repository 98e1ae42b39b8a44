//! Running requests on the leader from any node: proposals (local on the leader, forwarded
//! otherwise, retried with the same request id), the read index and the linearizable read
//! barrier, waiting for the local state machine to apply an index.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use openraft::LogIdOptionExt;
use openraft::ReadPolicy;
use raft_store::openraft;
use raft_store::openraft::async_runtime::WatchReceiver;
use raft_store::ApplyOutcome;
use raft_store::MemberNode;
use raft_store::NodeId;
use raft_store::Proposal;

use super::now_ms;
use super::Node;
use crate::error::NodeError;
use crate::network::PeerError;
use crate::network::Rpc;

/// Where a request that must run on the leader goes.
pub(super) enum Target {
    /// This node is the leader.
    Local,
    /// Node `id`, reached at its Raft address `addr`.
    Remote { id: NodeId, addr: String },
}

impl Node {
    /// Member `id` of the current membership config (its addresses), if it is one.
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
    pub(super) async fn on_leader<T, F, Fut>(
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
}

/// A failed call to the leader: a refusal is final, anything else is worth a retry.
pub(super) fn peer_unavailable(e: PeerError) -> NodeError {
    match e {
        PeerError::Refused { .. } => NodeError::Peer(e.to_string()),
        e => NodeError::Unavailable(e.to_string()),
    }
}
