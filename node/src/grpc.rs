//! The node-to-node gRPC service: Raft RPCs, forwarded proposals and administration, read
//! index, status. Every call's header is checked before anything else.

use std::sync::Arc;

use openraft::raft::AppendEntriesRequest;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use raft_store::codec;
use raft_store::openraft;
use raft_store::Proposal;
use raft_store::SnapshotMeta;
use raft_store::TypeConfig;
use raft_store::Vote;
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

    fn check(&self, header: Option<&pb::Header>) -> Result<(), Status> {
        check_header(self.node.id, &self.node.cluster_id, header)
    }

    fn open<T: DeserializeOwned>(&self, req: Request<pb::Envelope>) -> Result<T, Status> {
        let env = req.into_inner();
        self.check(env.header.as_ref())?;
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
        reply(&stringify(self.node.raft.append_entries(rpc).await))
    }

    async fn vote(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let rpc: VoteRequest<TypeConfig> = self.open(req)?;
        reply(&stringify(self.node.raft.vote(rpc).await))
    }

    async fn pre_vote(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Reply>, Status> {
        let rpc: VoteRequest<TypeConfig> = self.open(req)?;
        reply(&stringify(self.node.raft.pre_vote(rpc).await))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::Envelope>,
    ) -> Result<Response<pb::Reply>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = self.open(req)?;
        reply(&stringify(self.node.raft.handle_transfer_leader(rpc).await))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Reply>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        self.check(first.header.as_ref())?;
        let (vote, meta): (Vote, SnapshotMeta) = codec::decode(&first.meta)
            .map_err(|e| Status::invalid_argument(format!("undecodable snapshot meta: {e}")))?;
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
