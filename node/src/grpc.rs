//! The node-to-node gRPC service: Raft RPCs, forwarded proposals and administration, read
//! index, status. Every call's header is checked before anything else.

use std::sync::Arc;

use openraft::raft::AppendEntriesRequest;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use raft_store::codec;
use raft_store::openraft;
use raft_store::LogId;
use raft_store::Proposal;
use raft_store::SnapshotMeta;
use raft_store::TypeConfig;
use raft_store::Vote;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use proto::cluster::v1 as pb;
use proto::cluster::v1::cluster_server::Cluster;
use proto::cluster::AdminRequest;
use proto::cluster::PROTOCOL_VERSION;

use crate::node::Node;

/// The `Cluster` service of one node.
pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    /// Serve `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The header's claims must hold, and `from` must be the node the peer's certificate
    /// names: a member cannot speak for another (the CA check itself ran in the handshake).
    fn check(
        &self,
        peer: Option<Arc<Vec<CertificateDer<'static>>>>,
        header: Option<&pb::Header>,
    ) -> Result<(), Status> {
        check_header(self.node.id, &self.node.cluster_id, header)?;
        let from = header.map(|h| h.from).unwrap_or(0);
        check_peer(
            &self.node.cluster_id,
            peer.as_deref().map(Vec::as_slice),
            from,
        )
    }

    fn open<T: DeserializeOwned>(&self, req: Request<pb::Envelope>) -> Result<T, Status> {
        let peer = req.peer_certs();
        let env = req.into_inner();
        self.check(peer, env.header.as_ref())?;
        codec::decode(&env.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable payload: {e}")))
    }
}

/// Refuse a call from another cluster, another protocol version, addressed to another node id,
/// or claiming to come from this node's own id.
pub fn check_header(
    self_id: u64,
    cluster_id: &str,
    header: Option<&pb::Header>,
) -> Result<(), Status> {
    let h = header.ok_or_else(|| Status::invalid_argument("request without a cluster header"))?;
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "protocol version mismatch: node {self_id} speaks v{PROTOCOL_VERSION}, node {} sent v{}",
            h.from, h.protocol_version
        )));
    }
    if h.cluster_id != cluster_id {
        return Err(Status::failed_precondition(format!(
            "cluster id mismatch: node {self_id} belongs to cluster {cluster_id:?}, node {} sent {:?}",
            h.from, h.cluster_id
        )));
    }
    if h.to != 0 && h.to != self_id {
        return Err(Status::failed_precondition(format!(
            "this is node {self_id}, not node {} (wrong address or duplicate node id)",
            h.to
        )));
    }
    if h.from == self_id {
        return Err(Status::failed_precondition(format!(
            "request from node id {self_id} to itself: two nodes share id {self_id}"
        )));
    }
    Ok(())
}

/// Refuse a peer that presented no certificate or one naming another cluster or node.
pub fn check_peer(
    cluster_id: &str,
    certs: Option<&[CertificateDer<'static>]>,
    from: u64,
) -> Result<(), Status> {
    let cert = certs.and_then(|c| c.first()).ok_or_else(|| {
        Status::unauthenticated("no client certificate: node-to-node calls need mutual TLS with a certificate of the cluster CA")
    })?;
    let (cluster, id) = crate::pki::identity_of_der(cert).map_err(Status::unauthenticated)?;
    if cluster != cluster_id {
        return Err(Status::permission_denied(format!(
            "peer certificate is for cluster {cluster:?}, not {cluster_id:?}"
        )));
    }
    if id != from {
        return Err(Status::permission_denied(format!(
            "peer certificate names node {id}, but the request claims to come from node {from}"
        )));
    }
    Ok(())
}

/// Largest term or log index a peer may name. Real values stay far below (one term per election,
/// one index per entry); openraft adds one to terms and indexes it is given, which overflows (a
/// panic in debug builds) for values near `u64::MAX`.
const MAX_PLAUSIBLE: u64 = u64::MAX >> 2;

fn plausible_log_id(what: &str, id: Option<&LogId>) -> Result<(), Status> {
    match id {
        Some(l) if l.index() > MAX_PLAUSIBLE || l.committed_leader_id().term > MAX_PLAUSIBLE => {
            Err(Status::invalid_argument(format!(
                "{what} {l} is out of range"
            )))
        }
        _ => Ok(()),
    }
}

fn plausible_vote(vote: &Vote) -> Result<(), Status> {
    if vote.leader_id.term > MAX_PLAUSIBLE {
        return Err(Status::invalid_argument(format!(
            "vote {vote} is out of range"
        )));
    }
    Ok(())
}

/// Refuse an AppendEntries no correct leader sends, before openraft sees it: openraft assumes
/// its peers follow the protocol (it checks that with debug assertions, which stop the Raft core
/// of a debug build, and relies on it in release). The entries must follow `prev_log_id` index
/// by index with increasing log ids, and nothing at or below this node's committed index may be
/// newer than the committed log id (committed entries never change, so a leader's copy of them
/// has their terms). The committed id is read from the metrics, which may lag the core: the
/// check can only be weaker than the core's own state, never refuse a correct request.
fn check_append(
    rpc: &AppendEntriesRequest<TypeConfig>,
    committed: Option<&LogId>,
) -> Result<(), Status> {
    plausible_vote(&rpc.vote)?;
    plausible_log_id("prev_log_id", rpc.prev_log_id.as_ref())?;
    plausible_log_id("leader_commit", rpc.leader_commit.as_ref())?;
    let mut prev = rpc.prev_log_id;
    for e in &rpc.entries {
        plausible_log_id("entry", Some(&e.log_id))?;
        let expected = prev.map_or(0, |p| p.index() + 1);
        if e.log_id.index() != expected || prev.is_some_and(|p| e.log_id <= p) {
            return Err(Status::invalid_argument(format!(
                "entry {} does not follow {}",
                e.log_id,
                prev.map_or("the start of the log".to_string(), |p| p.to_string())
            )));
        }
        prev = Some(e.log_id);
    }
    if let Some(c) = committed {
        let named = rpc
            .prev_log_id
            .iter()
            .chain(rpc.entries.iter().map(|e| &e.log_id));
        for id in named {
            if id.index() <= c.index() && id > c {
                return Err(Status::invalid_argument(format!(
                    "{id} contradicts the committed log (committed up to {c})"
                )));
            }
        }
    }
    Ok(())
}

fn reply<T: Serialize>(v: &T) -> Result<Response<pb::Reply>, Status> {
    Ok(Response::new(pb::Reply {
        payload: codec::encode(v),
    }))
}

fn stringify<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn append_entries(
        &self,
        req: Request<pb::Envelope>,
    ) -> Result<Response<pb::Reply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.open(req)?;
        check_append(&rpc, self.node.raft_metrics().local_committed.as_ref())?;
        reply(&stringify(self.node.raft.append_entries(rpc).await))
    }

    async fn vote(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let rpc: VoteRequest<TypeConfig> = self.open(req)?;
        plausible_vote(&rpc.vote)?;
        plausible_log_id("last_log_id", rpc.last_log_id.as_ref())?;
        reply(&stringify(self.node.raft.vote(rpc).await))
    }

    async fn pre_vote(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let rpc: VoteRequest<TypeConfig> = self.open(req)?;
        plausible_vote(&rpc.vote)?;
        plausible_log_id("last_log_id", rpc.last_log_id.as_ref())?;
        reply(&stringify(self.node.raft.pre_vote(rpc).await))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::Envelope>,
    ) -> Result<Response<pb::Reply>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = self.open(req)?;
        plausible_vote(rpc.from_leader())?;
        plausible_log_id("last_log_id", rpc.last_log_id())?;
        reply(&stringify(self.node.raft.handle_transfer_leader(rpc).await))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Reply>, Status> {
        let peer = req.peer_certs();
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        self.check(peer, first.header.as_ref())?;
        let (vote, meta): (Vote, SnapshotMeta) = codec::decode(&first.meta)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot meta: {e}")))?;
        plausible_vote(&vote)?;
        plausible_log_id("snapshot last_log_id", meta.last_log_id.as_ref())?;
        let mut sink = self
            .node
            .sm
            .begin_receive()
            .map_err(|e| Status::internal(format!("cannot receive snapshot: {e}")))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            sink.write_chunk(chunk.offset, &chunk.data)
                .map_err(|e| Status::invalid_argument(format!("snapshot chunk refused: {e}")))?;
        }
        let received = sink.written();
        // finish() fsyncs and verifies the checksum: a torn stream is refused here.
        let (file, file_meta) = sink
            .finish()
            .map_err(|e| Status::invalid_argument(format!("received snapshot is invalid: {e}")))?;
        if file_meta != meta {
            // Verified but not what was announced: refused, so it must not stay on disk.
            if let Err(e) = std::fs::remove_file(file.path()) {
                tracing::warn!(path = %file.path().display(), error = %e, "cannot remove a refused snapshot");
            }
            return Err(Status::invalid_argument(format!(
                "snapshot file describes {file_meta:?}, sender announced {meta:?}"
            )));
        }
        tracing::info!(from = first.header.as_ref().map(|h| h.from), bytes = received, last_log_id = ?meta.last_log_id, "received snapshot");
        let snapshot = openraft::Snapshot {
            meta,
            snapshot: file,
        };
        reply(&stringify(
            self.node.raft.install_full_snapshot(vote, snapshot).await,
        ))
    }

    async fn forward(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let timeout = self.node.request_timeout();
        let proposal: Proposal = self.open(req)?;
        // The state machine decodes the command only when applying it: a command it cannot
        // decode would be committed and then stop the apply of every replica, so the cluster.
        if let Err(e) = codec::decode::<api::Command>(&proposal.command) {
            return Err(Status::invalid_argument(format!(
                "undecodable command in the forwarded proposal: {e}"
            )));
        }
        reply(&self.node.propose_local(proposal, timeout).await)
    }

    async fn read_index(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let timeout = self.node.request_timeout();
        let () = self.open(req)?;
        reply(&self.node.read_index_local(timeout).await)
    }

    async fn status(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let () = self.open(req)?;
        reply(&self.node.status())
    }

    async fn admin(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let admin: AdminRequest = self.open(req)?;
        reply(&self.node.admin_local(admin).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cluster: &str, version: u32, from: u64, to: u64) -> pb::Header {
        pb::Header {
            cluster_id: cluster.into(),
            protocol_version: version,
            from,
            to,
        }
    }

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(term, 1, index)
    }

    fn append(prev: Option<LogId>, ids: &[LogId]) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(5, 2),
            prev_log_id: prev,
            entries: ids
                .iter()
                .map(|l| openraft::Entry {
                    log_id: *l,
                    payload: openraft::EntryPayload::Blank,
                })
                .collect(),
            leader_commit: prev,
        }
    }

    /// Found by node/tests/fuzz_grpc.rs: an AppendEntries naming a log id newer than the
    /// committed one at a committed index stopped the Raft core (an openraft debug assertion).
    #[test]
    fn append_entries_no_correct_leader_sends_are_refused() {
        let committed = log_id(3, 10);
        let ok = |r: &AppendEntriesRequest<TypeConfig>| check_append(r, Some(&committed)).is_ok();
        // A heartbeat, a catch-up from inside the committed log, new entries after it.
        assert!(ok(&append(Some(log_id(3, 10)), &[])));
        assert!(ok(&append(
            Some(log_id(2, 4)),
            &[log_id(2, 5), log_id(3, 6)]
        )));
        assert!(ok(&append(
            Some(log_id(3, 10)),
            &[log_id(5, 11), log_id(5, 12)]
        )));
        assert!(ok(&append(None, &[log_id(1, 0), log_id(1, 1)])));
        // At or below the committed index with a newer term.
        assert!(!ok(&append(Some(log_id(4, 9)), &[])));
        assert!(!ok(&append(
            Some(log_id(3, 8)),
            &[log_id(3, 9), log_id(4, 10)]
        )));
        // Gaps, repeats, decreasing ids, the wrong start.
        assert!(!ok(&append(Some(log_id(3, 10)), &[log_id(5, 12)])));
        assert!(!ok(&append(
            Some(log_id(3, 10)),
            &[log_id(5, 11), log_id(5, 11)]
        )));
        assert!(!ok(&append(Some(log_id(5, 10)), &[log_id(4, 11)])));
        assert!(!ok(&append(None, &[log_id(1, 3)])));
        // Terms and indexes openraft would overflow.
        assert!(!ok(&append(Some(log_id(u64::MAX, 10)), &[])));
        assert!(!ok(&append(Some(log_id(3, u64::MAX)), &[])));
        let mut high_vote = append(None, &[]);
        high_vote.vote = Vote::new(u64::MAX, 2);
        assert!(!ok(&high_vote));
        // Before anything is committed only the shape is checked.
        assert!(check_append(&append(Some(log_id(9, 3)), &[log_id(9, 4)]), None).is_ok());
    }

    #[test]
    fn header_checks() {
        let ok = header("c", PROTOCOL_VERSION, 2, 1);
        assert!(check_header(1, "c", Some(&ok)).is_ok());
        assert!(check_header(1, "c", Some(&header("c", PROTOCOL_VERSION, 2, 0))).is_ok());
        let refused = |h: pb::Header| {
            let e = check_header(1, "c", Some(&h)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition);
            e.message().to_string()
        };
        assert!(refused(header("other", PROTOCOL_VERSION, 2, 1)).contains("cluster id mismatch"));
        assert!(
            refused(header("c", PROTOCOL_VERSION + 1, 2, 1)).contains("protocol version mismatch")
        );
        assert!(refused(header("c", PROTOCOL_VERSION, 2, 9)).contains("not node 9"));
        assert!(refused(header("c", PROTOCOL_VERSION, 1, 1)).contains("two nodes share id"));
        assert_eq!(
            check_header(1, "c", None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
