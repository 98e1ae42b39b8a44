//! The Raft transport and node-to-node client over tonic: one lazily connected, reused channel
//! per peer address, connect and request timeouts, and cluster/protocol headers on every call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::errors::NetworkError;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::v2::RaftNetworkV2;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::RaftNetworkFactory;
use proto::cluster::v1 as pb;
use proto::cluster::v1::cluster_client::ClusterClient;
use proto::cluster::PROTOCOL_VERSION;
use raft_store::codec;
use raft_store::openraft;
use raft_store::MemberNode;
use raft_store::NodeId;
use raft_store::SnapshotFile;
use raft_store::TypeConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Endpoint;

/// Largest gRPC message accepted either way (append batches of large values, snapshot chunks).
pub const MAX_MESSAGE: usize = 64 << 20;
/// Snapshot chunk size when openraft does not ask for one.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// Lower bound on the time allowed for one whole snapshot transfer.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No connection (refused, reset, DNS) or the peer is shutting down.
    #[error("node {to} at {addr} unreachable: {detail}")]
    Unreachable {
        /// Target id.
        to: u64,
        /// Target address.
        addr: String,
        /// Transport message.
        detail: String,
    },
    /// The call did not finish in time.
    #[error("node {to} at {addr} did not answer within {timeout:?}")]
    Timeout {
        /// Target id.
        to: u64,
        /// Target address.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
    /// The peer refused the call: other cluster, other protocol version, wrong node id.
    #[error("node at {addr} refused: {detail}")]
    Refused {
        /// Target address.
        addr: String,
        /// The peer's explanation.
        detail: String,
    },
    /// The peer failed while handling the call, or answered garbage.
    #[error("node at {addr} failed: {detail}")]
    Remote {
        /// Target address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
}

/// The node-to-node RPCs (one per `Cluster` service method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// Raft append entries.
    AppendEntries,
    /// Raft vote.
    Vote,
    /// Raft pre-vote.
    PreVote,
    /// Raft transfer-leader notification.
    TransferLeader,
    /// Forwarded proposal.
    Forward,
    /// Read index for a follower read.
    ReadIndex,
    /// Status probe.
    Status,
    /// Forwarded administration request.
    Admin,
}

/// Shared client side: identity headers and the channel cache.
pub struct Peers {
    self_id: NodeId,
    cluster_id: String,
    connect_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// Mutual TLS with the cluster CA: every channel presents this node's certificate.
    tls: ClientTlsConfig,
}

impl Peers {
    /// A client for node `self_id` of `cluster_id`, authenticating with `tls`.
    pub fn new(self_id: NodeId, cluster_id: String, tls: ClientTlsConfig) -> Self {
        Self {
            self_id,
            cluster_id,
            connect_timeout: Duration::from_millis(500),
            channels: Mutex::new(HashMap::new()),
            tls,
        }
    }

    /// This node's id.
    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    /// The header every call carries; `to` = 0 when the target's id is not known.
    pub fn header(&self, to: NodeId) -> pb::Header {
        pb::Header {
            cluster_id: self.cluster_id.clone(),
            protocol_version: PROTOCOL_VERSION,
            from: self.self_id,
            to,
        }
    }

    fn client(&self, to: NodeId, addr: &str) -> Result<ClusterClient<Channel>, PeerError> {
        let unreachable = |detail: String| PeerError::Unreachable {
            to,
            addr: addr.to_string(),
            detail,
        };
        let mut cache = self
            .channels
            .lock()
            .map_err(|_| unreachable("channel cache poisoned".into()))?;
        let channel = match cache.get(addr) {
            Some(c) => c.clone(),
            None => {
                // Lazy: connects on first use and reconnects by itself after a failure, so one
                // channel per address serves every Raft stream and forwarded request.
                let c = Endpoint::from_shared(format!("https://{addr}"))
                    .map_err(|e| unreachable(format!("bad address: {e}")))?
                    .tls_config(self.tls.clone())
                    .map_err(|e| unreachable(format!("TLS configuration: {e}")))?
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .connect_lazy();
                cache.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(ClusterClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Call `rpc` on node `to` at `addr` with an encoded payload; returns the encoded reply.
    pub async fn call_raw(
        &self,
        to: NodeId,
        addr: &str,
        rpc: Rpc,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        if to == self.self_id && to != 0 {
            // Never dial ourselves: a misconfigured membership would otherwise loop.
            return Err(PeerError::Refused {
                addr: addr.to_string(),
                detail: format!("refusing to send {rpc:?} to myself (node {to})"),
            });
        }
        let mut client = self.client(to, addr)?;
        let mut req = tonic::Request::new(pb::Envelope {
            header: Some(self.header(to)),
            payload,
        });
        req.set_timeout(timeout);
        let fut = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(req).await,
                Rpc::Vote => client.vote(req).await,
                Rpc::PreVote => client.pre_vote(req).await,
                Rpc::TransferLeader => client.transfer_leader(req).await,
                Rpc::Forward => client.forward(req).await,
                Rpc::ReadIndex => client.read_index(req).await,
                Rpc::Status => client.status(req).await,
                Rpc::Admin => client.admin(req).await,
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(PeerError::Timeout {
                to,
                addr: addr.to_string(),
                timeout,
            }),
            Ok(Err(status)) => Err(status_error(to, addr, status, timeout)),
            Ok(Ok(reply)) => Ok(reply.into_inner().payload),
        }
    }

    /// Call `rpc` with a typed request and decode the typed reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        addr: &str,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let raw = self
            .call_raw(to, addr, rpc, codec::encode(req), timeout)
            .await?;
        codec::decode(&raw).map_err(|e| PeerError::Remote {
            addr: addr.to_string(),
            detail: format!("undecodable {rpc:?} reply: {e}"),
        })
    }

    /// Stream a snapshot file to node `to`; returns the encoded reply.
    pub async fn send_snapshot(
        &self,
        to: NodeId,
        addr: &str,
        meta: Vec<u8>,
        file: SnapshotFile,
        chunk: usize,
    ) -> Result<Vec<u8>, PeerError> {
        if to == self.self_id {
            return Err(PeerError::Refused {
                addr: addr.to_string(),
                detail: "refusing to send a snapshot to myself".into(),
            });
        }
        let remote = |detail: String| PeerError::Remote {
            addr: addr.to_string(),
            detail,
        };
        let mut client = self.client(to, addr)?;
        let std_file = file
            .open()
            .map_err(|e| remote(format!("local snapshot: {e}")))?;
        let first = pb::SnapshotChunk {
            header: Some(self.header(to)),
            meta,
            offset: 0,
            data: Vec::new(),
        };
        let file = tokio::fs::File::from_std(std_file);
        // The stream reads the file lazily, so a large snapshot never sits in memory whole.
        let rest = futures::stream::unfold(
            (file, 0u64, false),
            move |(mut f, offset, done)| async move {
                if done {
                    return None;
                }
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match f.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            // Abort the stream; the receiver sees an incomplete file and refuses it.
                            tracing::warn!(error = %e, "reading snapshot for transfer failed");
                            return None;
                        }
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                let msg = pb::SnapshotChunk {
                    header: None,
                    meta: Vec::new(),
                    offset,
                    data: buf,
                };
                Some((msg, (f, offset + filled as u64, filled < chunk)))
            },
        );
        let stream = futures::stream::StreamExt::chain(futures::stream::iter([first]), rest);
        match client.install_snapshot(stream).await {
            Ok(r) => Ok(r.into_inner().payload),
            Err(status) => Err(status_error(to, addr, status, Duration::ZERO)),
        }
    }
}

fn status_error(to: NodeId, addr: &str, status: tonic::Status, timeout: Duration) -> PeerError {
    let addr = addr.to_string();
    // A failed TLS handshake surfaces as Unavailable, but retrying will not heal it: the
    // peer holds no certificate of this cluster's CA (another cluster), or refused ours.
    let m = status.message();
    let tls_refusal = [
        "certificate",
        "UnknownIssuer",
        "BadCertificate",
        "handshake",
    ]
    .iter()
    .any(|k| m.contains(k));
    if status.code() == tonic::Code::Unavailable && tls_refusal {
        return PeerError::Refused {
            addr,
            detail: format!(
                "mutual TLS refused ({m}): the peer is not a node of this cluster (its certificate is not from this cluster's CA), or it refused ours"
            ),
        };
    }
    match status.code() {
        tonic::Code::Unavailable => PeerError::Unreachable {
            to,
            addr,
            detail: status.message().to_string(),
        },
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            PeerError::Timeout { to, addr, timeout }
        }
        tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => PeerError::Refused {
            addr,
            detail: status.message().to_string(),
        },
        _ => PeerError::Remote {
            addr,
            detail: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

/// openraft's network factory.
pub struct NetworkFactory {
    peers: Arc<Peers>,
    min_rpc_timeout: Duration,
}

impl NetworkFactory {
    /// A factory sharing the node's channel cache. Raft RPCs get at least `min_rpc_timeout`:
    /// openraft offers one heartbeat interval, and a follower that is briefly slower than that
    /// (a big batch, a busy CPU) is not failed; timing it out only resends the same batch.
    pub fn new(peers: Arc<Peers>, min_rpc_timeout: Duration) -> Self {
        Self {
            peers,
            min_rpc_timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Connection {
        Connection {
            peers: self.peers.clone(),
            target,
            addr: node.raft_addr.clone(),
            min_rpc_timeout: self.min_rpc_timeout,
        }
    }
}

/// openraft's connection to one peer (cheap: the channel lives in [`Peers`]).
pub struct Connection {
    peers: Arc<Peers>,
    target: NodeId,
    addr: String,
    min_rpc_timeout: Duration,
}

fn rpc_error(e: PeerError) -> RPCError<TypeConfig> {
    match e {
        // Unreachable makes openraft back off instead of retrying in a tight loop; a refusal
        // (wrong cluster, wrong node) will not heal by retrying fast either.
        PeerError::Unreachable { .. } | PeerError::Refused { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        PeerError::Timeout { .. } | PeerError::Remote { .. } => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn remote_failed(addr: &str, detail: String) -> RPCError<TypeConfig> {
    rpc_error(PeerError::Remote {
        addr: addr.to_string(),
        detail,
    })
}

impl Connection {
    async fn raft_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let r: Result<Resp, String> = self
            .peers
            .call(
                self.target,
                &self.addr,
                rpc,
                req,
                option.hard_ttl().max(self.min_rpc_timeout),
            )
            .await
            .map_err(rpc_error)?;
        r.map_err(|e| remote_failed(&self.addr, e))
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: raft_store::Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = codec::encode(&(vote, snapshot.meta.clone()));
        let chunk = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK)
            .max(4096);
        let send =
            self.peers
                .send_snapshot(self.target, &self.addr, meta, snapshot.snapshot, chunk);
        // Bounded even if the peer stalls mid-stream without closing the connection.
        let limit = option.hard_ttl().max(SNAPSHOT_TIMEOUT);
        let raw = tokio::select! {
            r = tokio::time::timeout(limit, send) => match r {
                Ok(r) => r.map_err(|e| StreamingError::from(rpc_error(e)))?,
                Err(_) => {
                    return Err(StreamingError::from(rpc_error(PeerError::Timeout {
                        to: self.target,
                        addr: self.addr.clone(),
                        timeout: limit,
                    })))
                }
            },
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let r: Result<SnapshotResponse<TypeConfig>, String> = codec::decode(&raw).map_err(|e| {
            StreamingError::from(remote_failed(
                &self.addr,
                format!("undecodable snapshot reply: {e}"),
            ))
        })?;
        r.map_err(|e| StreamingError::from(remote_failed(&self.addr, e)))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(Rpc::TransferLeader, &req, &option).await
    }
}
