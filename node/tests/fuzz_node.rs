//! Node-level fuzzing of every decoder a node exposes: the node-to-node gRPC service (each RPC's
//! payload, headers, snapshot streams) and the HTTP API (ZStack RPC envelopes, REST v1 routes,
//! `/cluster/*` and `/kv/*` bodies, query strings and headers). Real nodes run in this process
//! (`node::start` on a tempdir), so a panic anywhere in them is seen by a panic hook and a Raft
//! core that stopped is seen in its metrics.
//!
//! What must hold for every generated input: no panic, Raft still running, `/health/live` still
//! 200, a clear refusal (a gRPC status other than Internal/Unknown, an HTTP status below 500 with
//! the protocol's error shape) for malformed input, and nothing changed in the replicated state
//! for refused input.
//!
//! Syntactically valid Raft messages from a "peer" may legitimately change Raft state (a Vote
//! with a higher term makes any node adopt it). So every generated gRPC input is first classified
//! by decoding it here with the node's own codec, the way the service will:
//! - inputs the service must refuse (bad header, undecodable payload, a forwarded proposal whose
//!   command does not decode, a broken snapshot stream) go to the *target*, a ready single-node
//!   cluster whose vote, log and state are compared before and after each case;
//! - inputs that decode go to the *victim*, a second single-node cluster with another cluster id
//!   (so nothing it learns can reach the target), where only liveness and the answer's shape are
//!   checked: those are the valid-but-hostile messages a peer holding a cluster certificate could
//!   send, and they must not crash a node either.
//!
//! Case counts: a modest default; `FUZZ_CASES=<n>` sets the cases per target, `FUZZ_LONG=1`
//! multiplies the defaults by 50. Each target prints one `fuzz: target=... cases=... crashes=0`
//! line (run with `--nocapture` to see them).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Once;
use std::time::Duration;
use std::time::Instant;

use node::config::Cli;
use node::config::FileConfig;
use node::config::NodeConfig;
use node::RunningNode;
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use proptest::test_runner::TestCaseError;
use proptest::test_runner::TestRunner;
use proto::cluster::v1 as pb;
use proto::cluster::v1::cluster_client::ClusterClient;
use proto::cluster::AdminRequest;
use proto::cluster::PROTOCOL_VERSION;
use raft_store::codec;
use raft_store::openraft;
use raft_store::openraft::raft::AppendEntriesRequest;
use raft_store::openraft::raft::TransferLeaderRequest;
use raft_store::openraft::raft::VoteRequest;
use raft_store::openraft::LogIdOptionExt;
use raft_store::openraft::RaftLogReader;
use raft_store::Proposal;
use raft_store::TypeConfig;
use raft_store::Vote;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------------
// Shared harness
// ---------------------------------------------------------------------------------------------

/// Panics anywhere in this process (node tasks included) since the hook was installed.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Cases per target: `FUZZ_CASES`, else the default (times 50 with `FUZZ_LONG=1`).
fn cases(default: u32) -> u32 {
    if let Some(n) = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    let long = std::env::var("FUZZ_LONG").is_ok_and(|v| !v.is_empty() && v != "0");
    if long {
        default * 50
    } else {
        default
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        // Inputs are checked against a live node; shrinking a failure re-runs it there, which is
        // what we want, but a persisted regression file would name no source to replay against.
        failure_persistence: None,
        max_shrink_iters: 200,
        ..PtConfig::default()
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// One in-process node.
struct TestNode {
    running: RunningNode,
    raft_addr: String,
    http_addr: String,
    cluster_id: String,
    _dir: tempfile::TempDir,
}

impl TestNode {
    fn node(&self) -> &Arc<node::node::Node> {
        &self.running.node
    }

    fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

/// Every host "answers": calls that add hosts get past the probe to the rest of their checks,
/// without this test reaching out to whatever addresses the generators produce.
struct AcceptingAgent;

impl node::host_agent::HostAgent for AcceptingAgent {
    fn probe<'a>(
        &'a self,
        _endpoint: &'a node::host_agent::HostEndpoint,
    ) -> futures::future::BoxFuture<'a, Result<(), node::host_agent::AgentError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Start an initialised single-node cluster and wait until it is ready (a leader, the admin
/// account created).
async fn start_node(cluster_id: &str) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    for _attempt in 0..5 {
        let raft_addr = format!("127.0.0.1:{}", free_port());
        let http_addr = format!("127.0.0.1:{}", free_port());
        let cli = Cli {
            node_id: Some(1),
            data_dir: Some(dir.path().join("data")),
            raft_addr: Some(raft_addr.parse().expect("addr")),
            http_addr: Some(http_addr.parse().expect("addr")),
            cluster_id: Some(cluster_id.to_string()),
            init: true,
            request_timeout_ms: Some(5_000),
            ..Cli::default()
        };
        let config: NodeConfig = NodeConfig::merge(cli, FileConfig::default()).expect("config");
        match node::start_with_host_agent(config, Arc::new(AcceptingAgent)).await {
            Ok(running) => {
                let n = TestNode {
                    running,
                    raft_addr,
                    http_addr,
                    cluster_id: cluster_id.to_string(),
                    _dir: dir,
                };
                wait_ready(&n).await;
                return n;
            }
            // Another process may take a probed port before the node binds it.
            Err(node::error::StartError::Bind { .. }) => continue,
            Err(e) => panic!("node did not start: {e}"),
        }
    }
    panic!("no free ports for a node after 5 attempts");
}

async fn wait_ready(n: &TestNode) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if n.node().readiness().ready {
            // The leader duty that creates the admin account runs right after election.
            let c = http_client();
            if login(&c, &n.http_addr).await.is_some() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node never became ready: {:?}", n.node().readiness());
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

async fn login(c: &reqwest::Client, http: &str) -> Option<String> {
    let body = serde_json::json!({"logInByAccount": {
        "accountName": "admin",
        "password": api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512,
    }});
    let r = c
        .put(format!("http://{http}/zstack/v1/accounts/login"))
        .json(&body)
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["inventory"]["uuid"].as_str().map(str::to_string)
}

/// The node is still serving: its Raft core runs and `/health/live` answers 200.
async fn assert_live(c: &reqwest::Client, n: &TestNode, what: &str) -> Result<(), TestCaseError> {
    if let Err(e) = &n.node().raft_metrics().running_state {
        return Err(TestCaseError::fail(format!(
            "{what}: the Raft core of node {} stopped: {e}",
            n.cluster_id
        )));
    }
    let r = c
        .get(format!("http://{}/health/live", n.http_addr))
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: /health/live unreachable: {e}")))?;
    prop_assert_eq!(r.status().as_u16(), 200, "{}: /health/live", what);
    Ok(())
}

fn assert_no_panic(what: &str) -> Result<(), TestCaseError> {
    let n = PANICS.load(Ordering::SeqCst);
    if n != 0 {
        return Err(TestCaseError::fail(format!(
            "{what}: {n} panic(s) in the node (see the panic message above)"
        )));
    }
    Ok(())
}

/// Tables the node's leader duties write on their own schedule (the management-node heartbeat),
/// whatever the input.
const BACKGROUND_TABLES: &[&str] = &[api::families::management_node::TABLE];

/// Tables a refused input may still write to: a refused ZStack call is audited (its record is
/// flushed through Raft, as a proposal with a request id, hence raft-store's `dedup` records).
const BOOKKEEPING_TABLES: &[&str] = &[api::audit::TABLE, api::audit::INDEX_TABLE, "dedup"];

/// What a refused input must not change: the Raft vote, the membership and every state table
/// but the bookkeeping ones. Applied and log indexes are left out because audit flushes and
/// leader duties append entries of their own.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    vote: String,
    membership: String,
    tables: BTreeMap<String, Vec<raft_store::Pair>>,
}

fn fingerprint(n: &TestNode, also_skip: &[&str]) -> Fingerprint {
    let m = n.node().raft_metrics();
    // Table by table rather than one dump: the skipped tables (the audit log above all) grow
    // with every case, and reading them each time would make long runs quadratic.
    let tables = api::tables()
        .into_iter()
        .filter(|t| {
            !BOOKKEEPING_TABLES.contains(t)
                && !BACKGROUND_TABLES.contains(t)
                && !also_skip.contains(t)
        })
        .map(|t| {
            let rows = n
                .node()
                .sm
                .scan_prefix(t, b"", usize::MAX)
                .expect("scan a state table");
            (t.to_string(), rows)
        })
        .collect();
    Fingerprint {
        vote: format!("{:?}", m.vote),
        membership: format!("{:?}", m.membership_config.membership()),
        tables,
    }
}

fn diff(a: &Fingerprint, b: &Fingerprint) -> String {
    let mut out = Vec::new();
    if a.vote != b.vote {
        out.push(format!("vote {} -> {}", a.vote, b.vote));
    }
    if a.membership != b.membership {
        out.push(format!("membership {} -> {}", a.membership, b.membership));
    }
    for (t, rows) in &a.tables {
        let other = b.tables.get(t).cloned().unwrap_or_default();
        if *rows != other {
            out.push(format!(
                "table {t}: {} rows -> {} rows",
                rows.len(),
                other.len()
            ));
        }
    }
    out.join("; ")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------------

/// The one place a fuzz test builds a node-to-node gRPC client (credentials go here).
fn fuzz_channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(20))
        .connect_lazy()
}

fn grpc_client(addr: &str) -> ClusterClient<Channel> {
    ClusterClient::new(fuzz_channel(addr))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
    Forward,
    ReadIndex,
    Status,
    Admin,
}

const RPCS: [Rpc; 8] = [
    Rpc::AppendEntries,
    Rpc::Vote,
    Rpc::PreVote,
    Rpc::TransferLeader,
    Rpc::Forward,
    Rpc::ReadIndex,
    Rpc::Status,
    Rpc::Admin,
];

/// Does `payload` decode as what the service decodes for `rpc` (and, for a forwarded proposal,
/// does its command decode as an application command)?
fn decodes(rpc: Rpc, payload: &[u8]) -> bool {
    match rpc {
        Rpc::AppendEntries => codec::decode::<AppendEntriesRequest<TypeConfig>>(payload).is_ok(),
        Rpc::Vote | Rpc::PreVote => codec::decode::<VoteRequest<TypeConfig>>(payload).is_ok(),
        Rpc::TransferLeader => codec::decode::<TransferLeaderRequest<TypeConfig>>(payload).is_ok(),
        Rpc::Forward => codec::decode::<Proposal>(payload)
            .is_ok_and(|p| codec::decode::<api::Command>(&p.command).is_ok()),
        Rpc::ReadIndex | Rpc::Status => codec::decode::<()>(payload).is_ok(),
        Rpc::Admin => codec::decode::<AdminRequest>(payload).is_ok(),
    }
}

/// Real, valid encodings of each RPC's message, built from the target's own log and vote.
struct Seeds {
    by_rpc: Vec<Vec<Vec<u8>>>,
    /// (vote, meta) of a real snapshot and the snapshot file's bytes.
    snapshot_meta: Vec<u8>,
    snapshot_file: Vec<u8>,
}

async fn seeds(n: &TestNode) -> Seeds {
    let node = n.node();
    let m = node.raft_metrics();
    let last = m.last_log_index.unwrap_or(0);
    let mut log = node.log().clone();
    let entries = log
        .try_get_log_entries(0..=last)
        .await
        .expect("read the target's log");
    let term = m.current_term;
    let last_log_id = m.last_applied;
    let peer_vote = Vote::new_committed(term + 1, 2);
    let mut append = Vec::new();
    append.push(codec::encode(&AppendEntriesRequest::<TypeConfig> {
        vote: peer_vote,
        prev_log_id: last_log_id,
        entries: vec![],
        leader_commit: last_log_id,
    }));
    for w in entries.windows(3).step_by(2) {
        let prev = entries
            .iter()
            .take_while(|e| e.log_id.index() < w[0].log_id.index())
            .last()
            .map(|e| e.log_id);
        append.push(codec::encode(&AppendEntriesRequest::<TypeConfig> {
            vote: peer_vote,
            prev_log_id: prev,
            entries: w.to_vec(),
            leader_commit: Some(w[2].log_id),
        }));
    }
    let vote = vec![
        codec::encode(&VoteRequest::<TypeConfig>::new(
            Vote::new(term + 1, 2),
            last_log_id,
        )),
        codec::encode(&VoteRequest::<TypeConfig>::new(Vote::new(term, 2), None)),
    ];
    let transfer = vec![codec::encode(&TransferLeaderRequest::<TypeConfig>::new(
        peer_vote,
        1,
        last_log_id,
    ))];
    let mut forward = Vec::new();
    for e in &entries {
        if let openraft::EntryPayload::Normal(p) = &e.payload {
            forward.push(codec::encode(p));
        }
    }
    forward.push(codec::encode(&Proposal {
        request_id: Some("fuzz".into()),
        proposed_at_ms: 1,
        command: vec![1, 0, 0, 0],
    }));
    let unit = vec![codec::encode(&())];
    let admin = vec![
        codec::encode(&AdminRequest::AddMember {
            id: 7,
            raft_addr: "127.0.0.1:1".into(),
            api_addr: "127.0.0.1:2".into(),
        }),
        codec::encode(&AdminRequest::RemoveMember { id: 7 }),
        codec::encode(&AdminRequest::TransferLeader { to: Some(9) }),
    ];

    // A real snapshot of the target.
    let applied = m.last_applied.index().unwrap_or(0);
    node.raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    node.raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.index().unwrap_or(0) >= applied,
            "snapshot built",
        )
        .await
        .expect("snapshot built");
    let snap = node
        .raft
        .get_snapshot()
        .await
        .expect("get snapshot")
        .expect("a snapshot");
    let snapshot_file = std::fs::read(snap.snapshot.path()).expect("read snapshot file");
    let snapshot_meta = codec::encode(&(Vote::new_committed(term + 1, 2), snap.meta.clone()));

    let mut by_rpc = Vec::new();
    for rpc in RPCS {
        by_rpc.push(match rpc {
            Rpc::AppendEntries => append.clone(),
            Rpc::Vote | Rpc::PreVote => vote.clone(),
            Rpc::TransferLeader => transfer.clone(),
            Rpc::Forward => forward.clone(),
            Rpc::ReadIndex | Rpc::Status => unit.clone(),
            Rpc::Admin => admin.clone(),
        });
    }
    Seeds {
        by_rpc,
        snapshot_meta,
        snapshot_file,
    }
}

/// How a valid encoding is broken.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    Random(Vec<u8>),
    Empty,
    Truncate(usize),
    FlipBits(Vec<(usize, u8)>),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Append(Vec<u8>),
    Version(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // bincode varint prefixes of big lengths: a string or vec claiming more than there is.
    let big_len = prop_oneof![
        any::<u16>().prop_map(|n| {
            let mut v = vec![0xfb];
            v.extend_from_slice(&n.to_le_bytes());
            v
        }),
        any::<u32>().prop_map(|n| {
            let mut v = vec![0xfc];
            v.extend_from_slice(&n.to_le_bytes());
            v
        }),
        any::<u64>().prop_map(|n| {
            let mut v = vec![0xfd];
            v.extend_from_slice(&n.to_le_bytes());
            v
        }),
        Just(vec![0xfd, 0, 0, 0, 0, 0, 1, 0, 0]),
        Just(vec![0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xfe]),
        Just(vec![0xff]),
    ];
    prop_oneof![
        1 => Just(Mutation::None),
        2 => prop::collection::vec(any::<u8>(), 0..96).prop_map(Mutation::Random),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|mut v| {
            v.insert(0, codec::ENCODING_V1);
            Mutation::Random(v)
        }),
        1 => Just(Mutation::Empty),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        3 => prop::collection::vec((any::<usize>(), 1u8..=255), 1..4).prop_map(Mutation::FlipBits),
        3 => (any::<usize>(), big_len.clone()).prop_map(|(at, b)| Mutation::Overwrite(at, b)),
        1 => (any::<usize>(), big_len).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
        1 => (2u8..=255).prop_map(Mutation::Version),
    ]
}

fn mutate(base: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = base.to_vec();
    match m {
        Mutation::None => {}
        Mutation::Random(r) => v = r.clone(),
        Mutation::Empty => v.clear(),
        Mutation::Truncate(at) => v.truncate(at % v.len().max(1)),
        Mutation::FlipBits(flips) => {
            for (at, mask) in flips {
                if !v.is_empty() {
                    let i = at % v.len();
                    v[i] ^= mask;
                }
            }
        }
        Mutation::Overwrite(at, bytes) => {
            // Past the version byte: that one has its own mutation.
            let start = 1 + at % v.len().max(1);
            for (i, b) in bytes.iter().enumerate() {
                match v.get_mut(start + i) {
                    Some(x) => *x = *b,
                    None => v.push(*b),
                }
            }
        }
        Mutation::Insert(at, bytes) => {
            let at = (1 + at % v.len().max(1)).min(v.len());
            v.splice(at..at, bytes.iter().copied());
        }
        Mutation::Append(bytes) => v.extend_from_slice(bytes),
        Mutation::Version(b) => {
            if let Some(x) = v.first_mut() {
                *x = *b;
            }
        }
    }
    v
}

#[derive(Debug, Clone)]
enum HeaderCase {
    Good,
    Missing,
    Cluster(String),
    Version(u32),
    To(u64),
    FromSelf,
}

fn header_case() -> impl Strategy<Value = HeaderCase> {
    prop_oneof![
        12 => Just(HeaderCase::Good),
        1 => Just(HeaderCase::Missing),
        1 => ".{0,24}"
            .prop_filter("another cluster", |c| !c.starts_with("fuzz-"))
            .prop_map(HeaderCase::Cluster),
        1 => any::<u32>().prop_filter("not ours", |v| *v != PROTOCOL_VERSION).prop_map(HeaderCase::Version),
        1 => (2u64..).prop_map(HeaderCase::To),
        1 => Just(HeaderCase::FromSelf),
    ]
}

fn header(cluster_id: &str, h: &HeaderCase) -> (Option<pb::Header>, bool) {
    let good = pb::Header {
        cluster_id: cluster_id.to_string(),
        protocol_version: PROTOCOL_VERSION,
        from: 2,
        to: 1,
    };
    match h {
        HeaderCase::Good => (Some(good), true),
        HeaderCase::Missing => (None, false),
        HeaderCase::Cluster(c) => {
            let ok = c == cluster_id;
            (
                Some(pb::Header {
                    cluster_id: c.clone(),
                    ..good
                }),
                ok,
            )
        }
        HeaderCase::Version(v) => (
            Some(pb::Header {
                protocol_version: *v,
                ..good
            }),
            false,
        ),
        HeaderCase::To(t) => (Some(pb::Header { to: *t, ..good }), false),
        HeaderCase::FromSelf => (Some(pb::Header { from: 1, ..good }), false),
    }
}

#[derive(Debug, Clone)]
struct UnaryCase {
    rpc: usize,
    seed: usize,
    mutation: Mutation,
    header: HeaderCase,
}

/// How a snapshot stream is broken.
#[derive(Debug, Clone)]
enum StreamCase {
    /// No message at all.
    Empty,
    /// The first message only, no data.
    HeaderOnly,
    /// The real file in chunks of `chunk` bytes, with these defects.
    File {
        chunk: usize,
        meta: Mutation,
        data: Mutation,
        /// (chunk number, new offset) pairs.
        offsets: Vec<(usize, u64)>,
        /// Drop this chunk number.
        drop: Option<usize>,
        /// Data in the first message too (the service ignores it; the offsets must still fit).
        header_data: bool,
    },
}

fn stream_case() -> impl Strategy<Value = StreamCase> {
    prop_oneof![
        1 => Just(StreamCase::Empty),
        1 => Just(StreamCase::HeaderOnly),
        8 => (
            1usize..4096,
            prop_oneof![3 => Just(Mutation::None), 1 => mutation()],
            prop_oneof![2 => Just(Mutation::None), 3 => mutation()],
            prop::collection::vec((0usize..64, any::<u64>()), 0..2),
            proptest::option::weighted(0.2, 0usize..64),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(chunk, meta, data, offsets, drop, header_data)| StreamCase::File {
                chunk,
                meta,
                data,
                offsets,
                drop,
                header_data,
            }),
    ]
}

#[derive(Debug, Clone)]
enum GrpcCase {
    Unary(UnaryCase),
    Snapshot(HeaderCase, StreamCase),
}

fn grpc_case() -> impl Strategy<Value = GrpcCase> {
    prop_oneof![
        8 => (0..RPCS.len(), any::<usize>(), mutation(), header_case()).prop_map(
            |(rpc, seed, mutation, header)| GrpcCase::Unary(UnaryCase { rpc, seed, mutation, header })
        ),
        2 => (header_case(), stream_case()).prop_map(|(h, s)| GrpcCase::Snapshot(h, s)),
    ]
}

/// The messages of a snapshot stream and whether the service must refuse them.
fn snapshot_stream(
    seeds: &Seeds,
    cluster_id: &str,
    h: &HeaderCase,
    s: &StreamCase,
) -> (Vec<pb::SnapshotChunk>, bool) {
    let (header, header_ok) = header(cluster_id, h);
    match s {
        StreamCase::Empty => (vec![], true),
        StreamCase::HeaderOnly => (
            vec![pb::SnapshotChunk {
                header,
                meta: seeds.snapshot_meta.clone(),
                offset: 0,
                data: vec![],
            }],
            true,
        ),
        StreamCase::File {
            chunk,
            meta,
            data,
            offsets,
            drop,
            header_data,
        } => {
            let meta_bytes = mutate(&seeds.snapshot_meta, meta);
            let file = mutate(&seeds.snapshot_file, data);
            let mut chunks = vec![pb::SnapshotChunk {
                header,
                meta: meta_bytes.clone(),
                offset: 0,
                data: vec![],
            }];
            let mut offset = 0u64;
            let mut pieces: Vec<(u64, Vec<u8>)> = file
                .chunks(*chunk)
                .map(|c| {
                    let o = offset;
                    offset += c.len() as u64;
                    (o, c.to_vec())
                })
                .collect();
            if *header_data {
                if let Some((_, first)) = pieces.first() {
                    chunks[0].data = first.clone();
                }
            }
            for (i, o) in offsets {
                if !pieces.is_empty() {
                    let i = i % pieces.len();
                    pieces[i].0 = *o;
                }
            }
            if let Some(d) = drop {
                if !pieces.is_empty() {
                    let d = d % pieces.len();
                    pieces.remove(d);
                }
            }
            // What the service accepts: offsets contiguous from 0, the exact file, matching meta.
            let mut expect = 0u64;
            let mut contiguous = true;
            let mut received = Vec::new();
            for (o, c) in &pieces {
                if *o != expect {
                    contiguous = false;
                    break;
                }
                expect += c.len() as u64;
                received.extend_from_slice(c);
            }
            let valid = header_ok
                && contiguous
                && received == seeds.snapshot_file
                && meta_bytes == seeds.snapshot_meta;
            for (o, c) in pieces {
                chunks.push(pb::SnapshotChunk {
                    header: None,
                    meta: vec![],
                    offset: o,
                    data: c,
                });
            }
            (chunks, !valid)
        }
    }
}

/// A refusal is a clear status; Internal/Unknown mean a handler failed, Unavailable/Cancelled a
/// dropped connection (a panic in the handler).
fn clear_refusal(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange
            | tonic::Code::ResourceExhausted
    )
}

async fn unary(
    client: &mut ClusterClient<Channel>,
    rpc: Rpc,
    env: pb::Envelope,
) -> Result<tonic::Response<pb::Reply>, tonic::Status> {
    match rpc {
        Rpc::AppendEntries => client.append_entries(env).await,
        Rpc::Vote => client.vote(env).await,
        Rpc::PreVote => client.pre_vote(env).await,
        Rpc::TransferLeader => client.transfer_leader(env).await,
        Rpc::Forward => client.forward(env).await,
        Rpc::ReadIndex => client.read_index(env).await,
        Rpc::Status => client.status(env).await,
        Rpc::Admin => client.admin(env).await,
    }
}

#[derive(Default, Debug)]
struct Tally {
    refused: u64,
    accepted: u64,
    by_target: BTreeMap<String, u64>,
}

#[test]
fn grpc_decoders_refuse_malformed_input_and_survive_hostile_input() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let (target, victim) = rt.block_on(async {
        let t = start_node("fuzz-target").await;
        let v = start_node("fuzz-victim").await;
        (t, v)
    });
    let seeds = rt.block_on(seeds(&target));
    let http = http_client();
    let _in_runtime = rt.enter();
    let target_client = grpc_client(&target.raft_addr);
    let victim_client = grpc_client(&victim.raft_addr);
    let snap_dir = target.data_dir().join("raft").join("snapshots");
    let snap_files = files_in(&snap_dir);
    let before = std::cell::RefCell::new(fingerprint(&target, &[]));
    let tally = std::cell::RefCell::new(Tally::default());

    let n = cases(400);
    let result = runner(n).run(&grpc_case(), |case| {
        rt.block_on(async {
            let (refuse, to_victim, answer, name) = match &case {
                GrpcCase::Unary(u) => {
                    let rpc = RPCS[u.rpc];
                    let list = &seeds.by_rpc[u.rpc];
                    let payload = mutate(&list[u.seed % list.len()], &u.mutation);
                    let valid = decodes(rpc, &payload);
                    let (h, header_ok) = header(
                        if valid && header_ok_case(&u.header) {
                            &victim.cluster_id
                        } else {
                            &target.cluster_id
                        },
                        &u.header,
                    );
                    let to_victim = valid && header_ok;
                    let env = pb::Envelope { header: h, payload };
                    let mut client = if to_victim {
                        victim_client.clone()
                    } else {
                        target_client.clone()
                    };
                    let answer = unary(&mut client, rpc, env).await.map(|_| ());
                    (!to_victim, to_victim, answer, format!("{rpc:?}"))
                }
                GrpcCase::Snapshot(h, s) => {
                    let (_, refuse_probe) = snapshot_stream(&seeds, &target.cluster_id, h, s);
                    let to_victim = !refuse_probe;
                    let cluster = if to_victim {
                        &victim.cluster_id
                    } else {
                        &target.cluster_id
                    };
                    let (chunks, _) = snapshot_stream(&seeds, cluster, h, s);
                    let mut client = if to_victim {
                        victim_client.clone()
                    } else {
                        target_client.clone()
                    };
                    let answer = client
                        .install_snapshot(tokio_stream::iter(chunks))
                        .await
                        .map(|_| ());
                    (!to_victim, to_victim, answer, "InstallSnapshot".to_string())
                }
            };
            {
                let mut t = tally.borrow_mut();
                if refuse {
                    t.refused += 1;
                } else {
                    t.accepted += 1;
                }
                *t.by_target.entry(name.clone()).or_default() += 1;
            }
            assert_no_panic(&name)?;
            if refuse {
                match &answer {
                    Ok(()) => {
                        return Err(TestCaseError::fail(format!(
                            "{name}: malformed input was answered OK"
                        )))
                    }
                    Err(s) if !clear_refusal(s) => {
                        return Err(TestCaseError::fail(format!(
                            "{name}: refused with {:?} {:?}, not a clear refusal",
                            s.code(),
                            s.message()
                        )))
                    }
                    Err(_) => {}
                }
                let after = fingerprint(&target, &[]);
                if after != *before.borrow() {
                    return Err(TestCaseError::fail(format!(
                        "{name}: refused input changed the target: {}",
                        diff(&before.borrow(), &after)
                    )));
                }
                let files = files_in(&snap_dir);
                prop_assert_eq!(&files, &snap_files, "{}: snapshot dir changed", name);
                assert_live(&http, &target, &name).await?;
            } else {
                if let Err(s) = &answer {
                    if matches!(s.code(), tonic::Code::Internal | tonic::Code::Unknown) {
                        return Err(TestCaseError::fail(format!(
                            "{name}: valid input answered {:?} {:?}",
                            s.code(),
                            s.message()
                        )));
                    }
                }
                assert_live(&http, &victim, &name).await?;
                // Leader duties of the target may have written meanwhile (nothing reached it).
                *before.borrow_mut() = fingerprint(&target, &[]);
            }
            let _ = to_victim;
            Ok(())
        })
    });
    let t = tally.into_inner();
    println!(
        "fuzz: target=grpc cases={n} crashes={} refused={} accepted_by_victim={} per_rpc={:?} elapsed_ms={}",
        PANICS.load(Ordering::SeqCst),
        t.refused,
        t.accepted,
        t.by_target,
        started.elapsed().as_millis()
    );
    if let Err(e) = result {
        panic!("gRPC fuzzing failed: {e}");
    }
    rt.block_on(async {
        let http = http_client();
        assert_live(&http, &target, "end")
            .await
            .expect("target live");
        assert_live(&http, &victim, "end")
            .await
            .expect("victim live");
        target.running.shutdown().await;
        victim.running.shutdown().await;
    });
}

fn header_ok_case(h: &HeaderCase) -> bool {
    matches!(h, HeaderCase::Good)
}

/// Regressions found by the gRPC fuzzing, each as one fixed input: a forwarded proposal whose
/// command the state machine cannot decode (before the fix it was committed, and its apply
/// stopped the Raft core of every replica), a 10-byte payload claiming a 1 TiB string (the
/// allocation aborted the process), a refused snapshot stream (its temporary file stayed on
/// disk), and a message over the size limit.
#[test]
fn grpc_regressions() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let target = rt.block_on(start_node("fuzz-regressions"));
    let _in_runtime = rt.enter();
    let mut client = grpc_client(&target.raft_addr);
    let http = http_client();
    let h = header(&target.cluster_id, &HeaderCase::Good).0;
    rt.block_on(async {
        let before = fingerprint(&target, &[]);
        let poison = Proposal {
            request_id: Some("poison".into()),
            proposed_at_ms: 1,
            command: vec![codec::ENCODING_V1, 0xff, 0xff, 0xff],
        };
        // A length prefix claiming 2^40 bytes where a string starts.
        let huge = |prefix: &[u8]| {
            let mut v = vec![codec::ENCODING_V1];
            v.extend_from_slice(prefix);
            v.push(0xfd);
            v.extend_from_slice(&(1u64 << 40).to_le_bytes());
            v
        };
        for (rpc, payload) in [
            (Rpc::Forward, codec::encode(&poison)),
            // Proposal { request_id: Some(_), .. }
            (Rpc::Forward, huge(&[1])),
            // AdminRequest::AddMember { id: 5, raft_addr: _, .. }
            (Rpc::Admin, huge(&[0, 5])),
        ] {
            let env = pb::Envelope {
                header: h.clone(),
                payload,
            };
            let s = unary(&mut client, rpc, env).await.expect_err("refused");
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{rpc:?}: {s:?}");
        }
        // Give a committed poison entry time to reach the apply.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_live(&http, &target, "after poison")
            .await
            .expect("live");
        assert_eq!(diff(&before, &fingerprint(&target, &[])), "");

        let snap_dir = target.data_dir().join("raft").join("snapshots");
        let files = files_in(&snap_dir);
        let torn = vec![
            pb::SnapshotChunk {
                header: h.clone(),
                meta: vec![codec::ENCODING_V1],
                offset: 0,
                data: vec![],
            },
            pb::SnapshotChunk {
                header: None,
                meta: vec![],
                offset: 0,
                data: b"ZSSNAP\0\x01 not a snapshot".to_vec(),
            },
        ];
        let s = client
            .install_snapshot(tokio_stream::iter(torn))
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert_eq!(files_in(&snap_dir), files, "a refused stream left a file");

        let oversized = pb::Envelope {
            header: h.clone(),
            payload: vec![0; node::network::MAX_MESSAGE + 1],
        };
        let s = client.status(oversized).await.expect_err("refused");
        assert!(clear_refusal(&s), "oversized: {s:?}");
        assert_live(&http, &target, "after oversized")
            .await
            .expect("live");
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics in the node");
    rt.block_on(target.running.shutdown());
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// The one place a fuzz test builds a request to the node's own admin routes (`/cluster/*`,
/// `/kv/*`): their credential goes here.
fn node_api_request(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    c.request(method, url)
}

/// Values that break parameter decoders: wrong JSON types, extremes, odd unicode, nesting.
fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(1.5)),
            Just(json!(-0.0)),
            Just(json!(1e308)),
            Just(json!(4294967296u64)),
            Just(json!(65536)),
        ],
        ".{0,16}".prop_map(Value::String),
        prop_oneof![
            Just(""),
            Just(" "),
            Just("\\u{0}nul"),
            Just("\u{0}"),
            Just("💥🦀"),
            Just("\u{202e}rtl"),
            Just("a\u{301}\u{301}\u{301}"),
            Just("%"),
            Just("%00"),
            Just("' or 1=1 --"),
            Just("../../etc/passwd"),
            Just("1.2.3.4"),
            Just("999.1.1.1"),
            Just("10.0.0.0/33"),
            Just("-1"),
            Just("18446744073709551616"),
            Just("true"),
            Just("null"),
            Just("Enabled"),
            Just("enable"),
            Just("KVM"),
            Just("0123456789abcdef0123456789abcdef"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        (1usize..6, "[a-z💥]").prop_map(|(k, c)| Value::String(c.repeat(k * 5000))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{0,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A plausible value of a declared parameter type.
fn plausible(
    ty: api::catalogue::ParamType,
    allowed: Option<&Vec<String>>,
    pick: usize,
) -> serde_json::Value {
    use api::catalogue::ParamType;
    use serde_json::json;
    if let Some(a) = allowed.filter(|a| !a.is_empty()) {
        return json!(a[pick % a.len()]);
    }
    match ty {
        ParamType::String => json!(format!("fuzz-{pick}")),
        ParamType::Integer => json!(pick % 4096),
        ParamType::Boolean => json!(pick.is_multiple_of(2)),
        ParamType::Array => json!([]),
        ParamType::Object => json!({}),
    }
}

/// Calls that the API implements (every routed call), by name.
fn implemented() -> Vec<&'static api::catalogue::CallSpec> {
    let mut names: Vec<&str> = api::rest::routes().iter().map(|r| r.call).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| api::catalogue::catalogue().by_name(n))
        // Logging the fixture's own session out would turn every later case into a session
        // refusal and test nothing deeper.
        .filter(|c| !c.name.starts_with("LogOut"))
        .collect()
}

/// Body fields of a call: plausible values for the declared parameters, then `edits` applied
/// (a parameter set to a hostile value, or removed), with uuids of real resources mixed in.
fn fields(
    spec: &api::catalogue::CallSpec,
    pick: usize,
    edits: &[(usize, Option<serde_json::Value>)],
    uuids: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (i, p) in spec.params.iter().enumerate() {
        if p.name == "session" || p.name == "conditions" {
            continue;
        }
        let mut v = plausible(p.ty, p.allowed.as_ref(), pick.wrapping_add(i));
        if p.name.to_ascii_lowercase().ends_with("uuid") && !uuids.is_empty() {
            v = serde_json::json!(uuids[pick.wrapping_add(i) % uuids.len()]);
        }
        if p.required || (pick >> (i % 16)) & 1 == 1 {
            m.insert(p.name.clone(), v);
        }
    }
    if spec.is_query() {
        m.insert("conditions".into(), serde_json::json!([]));
    }
    let names: Vec<String> = spec.params.iter().map(|p| p.name.clone()).collect();
    for (at, edit) in edits {
        let name = if names.is_empty() || at % 5 == 0 {
            // An undeclared field.
            format!("x{}", at % 7)
        } else {
            names[at % names.len()].clone()
        };
        match edit {
            Some(v) => {
                m.insert(name, v.clone());
            }
            None => {
                m.remove(&name);
            }
        }
    }
    m
}

/// Text-level damage to a JSON document.
#[derive(Debug, Clone)]
enum TextMutation {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, String),
    DeepNesting(usize),
    Raw(Vec<u8>),
}

fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        6 => Just(TextMutation::None),
        1 => any::<usize>().prop_map(TextMutation::Truncate),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(a, b)| TextMutation::Flip(a, b)),
        1 => (
            any::<usize>(),
            prop_oneof![
                Just(r#""\ud800""#.to_string()),
                Just(",".to_string()),
                Just(r#"{"a":1,"a":2}"#.to_string()),
                Just("1e999".to_string()),
                Just("-".to_string()),
                Just("\u{0}".to_string()),
                Just("\"".to_string()),
                "[{}\\[\\]\",:0-9a-z]{0,8}",
            ]
        )
            .prop_map(|(a, s)| TextMutation::Insert(a, s)),
        1 => (100usize..3000).prop_map(TextMutation::DeepNesting),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(TextMutation::Raw),
    ]
}

fn damage(text: Vec<u8>, m: &TextMutation) -> Vec<u8> {
    let mut v = text;
    match m {
        TextMutation::None => {}
        TextMutation::Truncate(at) => v.truncate(at % v.len().max(1)),
        TextMutation::Flip(at, mask) => {
            if !v.is_empty() {
                let i = at % v.len();
                v[i] ^= mask;
            }
        }
        TextMutation::Insert(at, s) => {
            let at = at % (v.len() + 1);
            v.splice(at..at, s.bytes());
        }
        TextMutation::DeepNesting(depth) => {
            let mut deep = "[".repeat(*depth).into_bytes();
            deep.extend_from_slice(&"]".repeat(*depth).into_bytes());
            // Replace the innermost object's end with the nested arrays.
            match v.iter().rposition(|b| *b == b'}') {
                Some(i) if i > 0 => {
                    let mut ins = b",\"deep\":".to_vec();
                    ins.extend_from_slice(&deep);
                    v.splice(i..i, ins);
                }
                _ => v = deep,
            }
        }
        TextMutation::Raw(r) => v = r.clone(),
    }
    v
}

#[derive(Debug, Clone)]
enum SessionCase {
    Admin,
    Missing,
    Random(String),
    WrongType(serde_json::Value),
}

fn session_case() -> impl Strategy<Value = SessionCase> {
    prop_oneof![
        6 => Just(SessionCase::Admin),
        1 => Just(SessionCase::Missing),
        1 => "[0-9a-f]{32}|.{0,40}".prop_map(SessionCase::Random),
        1 => hostile_value().prop_map(SessionCase::WrongType),
    ]
}

/// One ZStack RPC request.
#[derive(Debug, Clone)]
struct RpcCase {
    /// Index into the implemented calls; `None`: another class (first key).
    call: Option<usize>,
    other_class: String,
    pick: usize,
    edits: Vec<(usize, Option<serde_json::Value>)>,
    /// The message is this instead of an object of fields.
    not_object: Option<serde_json::Value>,
    session: SessionCase,
    extra_top_keys: Vec<(String, serde_json::Value)>,
    text: TextMutation,
    put: bool,
    job_uuid: Option<String>,
}

fn edits() -> impl Strategy<Value = Vec<(usize, Option<serde_json::Value>)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            proptest::option::weighted(0.85, hostile_value()),
        ),
        0..4,
    )
}

fn rpc_case(n_calls: usize) -> impl Strategy<Value = RpcCase> {
    (
        proptest::option::weighted(0.85, 0..n_calls),
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z.]{0,40}",
            Just("org.zstack.header.vm.APICreateVmInstanceMsg".to_string()),
            Just("org.zstack.header.zone.APICreateZoneMsgX".to_string()),
        ],
        any::<usize>(),
        edits(),
        proptest::option::weighted(0.08, hostile_value()),
        session_case(),
        prop::collection::vec(("[a-zA-Z.]{0,12}", hostile_value()), 0..2),
        text_mutation(),
        any::<bool>(),
        proptest::option::weighted(0.1, "[0-9a-f]{32}|.{0,40}"),
    )
        .prop_map(
            |(
                call,
                other_class,
                pick,
                edits,
                not_object,
                session,
                extra_top_keys,
                text,
                put,
                job_uuid,
            )| {
                RpcCase {
                    call,
                    other_class,
                    pick,
                    edits,
                    not_object,
                    session,
                    extra_top_keys,
                    text,
                    put,
                    job_uuid,
                }
            },
        )
}

/// A fixture node for the HTTP targets: admin session and a few real resources.
struct HttpFixture {
    n: TestNode,
    session: String,
    uuids: Vec<String>,
    calls: Vec<&'static api::catalogue::CallSpec>,
    c: reqwest::Client,
}

async fn http_fixture() -> HttpFixture {
    let n = start_node("fuzz-http").await;
    let c = http_client();
    let session = login(&c, &n.http_addr).await.expect("admin session");
    let mut f = HttpFixture {
        n,
        session,
        uuids: vec![],
        calls: implemented(),
        c,
    };
    // A zone and a cluster in it, so uuid parameters sometimes name real resources and calls
    // get past "not found" into their deeper checks.
    for (path, params) in [("/zstack/v1/zones", serde_json::json!({"name": "fz"}))] {
        let (status, v) = f.rest_create(path, params).await;
        assert_eq!(status, 200, "{v}");
        f.uuids
            .push(v["inventory"]["uuid"].as_str().expect("uuid").to_string());
    }
    let zone = f.uuids[0].clone();
    let (status, v) = f
        .rest_create(
            "/zstack/v1/clusters",
            serde_json::json!({"name": "fc", "zoneUuid": zone, "hypervisorType": "KVM"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    f.uuids
        .push(v["inventory"]["uuid"].as_str().expect("uuid").to_string());
    f
}

impl HttpFixture {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.n.http_addr)
    }

    async fn rest_create(&self, path: &str, params: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .c
            .post(self.url(path))
            .header("Authorization", format!("OAuth {}", self.session))
            .json(&serde_json::json!({ "params": params }))
            .send()
            .await
            .expect("create");
        let (status, v) = (r.status().as_u16(), r.json().await.unwrap_or_default());
        if status != 202 {
            return (status, v);
        }
        self.poll_rest(v["location"].as_str().unwrap_or_default())
            .await
    }

    /// Follow a REST job to its end.
    async fn poll_rest(&self, location: &str) -> (u16, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.c.get(location).send().await {
                let status = r.status().as_u16();
                if status != 202 {
                    return (status, r.json().await.unwrap_or_default());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("REST job {location} did not finish");
    }

    /// Follow an RPC job to its end; the finished `result` object.
    async fn poll_rpc(&self, uuid: &str) -> Result<serde_json::Value, TestCaseError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let r = self
                .c
                .get(self.url(&format!("/zstack/api/result/{uuid}")))
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("poll {uuid}: {e}")))?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            prop_assert_eq!(status, 200, "poll of job {}: {}", uuid, text);
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("poll {uuid}: {e}: {text}")))?;
            if v["state"] == "Done" {
                return result_object(&v);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(TestCaseError::fail(format!(
            "RPC job {uuid} did not finish"
        )))
    }

    /// What a refused HTTP input must leave unchanged. On top of the audit bookkeeping, the
    /// job table is left out: ZStack delivers the refusal of an async call as a finished,
    /// failed job the client polls (spec 06 §1.6), so that record is the refusal itself.
    fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.n, &[api::job::TABLE])
    }
}

/// The reply object inside a finished RPC answer (`{"state":"Done","result":"{\"<class>\":{..}}"}`).
fn result_object(v: &serde_json::Value) -> Result<serde_json::Value, TestCaseError> {
    let text = v["result"]
        .as_str()
        .ok_or_else(|| TestCaseError::fail(format!("no result in {v}")))?;
    let r: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("result is not JSON ({e}): {text}")))?;
    let obj = r
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| TestCaseError::fail(format!("result is not {{class: reply}}: {r}")))?;
    Ok(obj.values().next().cloned().unwrap_or_default())
}

impl HttpTally {
    fn code(&mut self, e: &serde_json::Value) {
        let code = e["code"].as_str().unwrap_or("(none)").to_string();
        *self.codes.entry(code).or_default() += 1;
    }
}

/// A ZStack error object: code, description and details, and not an internal error.
fn check_error_object(what: &str, e: &serde_json::Value) -> Result<(), TestCaseError> {
    for k in ["code", "description", "details"] {
        prop_assert!(e[k].is_string(), "{}: error without {}: {}", what, k, e);
    }
    let code = e["code"].as_str().unwrap_or_default();
    prop_assert!(!code.is_empty(), "{}: empty error code: {}", what, e);
    // SYS.1000 is "an internal error happened", SYS.1006 "unavailable": neither is a refusal of
    // the input, and the fixture node is a ready leader.
    prop_assert!(
        code != "SYS.1000" && code != "SYS.1006",
        "{}: refused as {}: {}",
        what,
        code,
        e
    );
    Ok(())
}

fn rpc_body(f: &HttpFixture, case: &RpcCase) -> Vec<u8> {
    use serde_json::json;
    let (class, spec) = match case.call {
        Some(i) => (f.calls[i].class.clone(), Some(f.calls[i])),
        None => (case.other_class.clone(), None),
    };
    let mut inner = match (&case.not_object, spec) {
        (Some(v), _) => v.clone(),
        (None, Some(spec)) => {
            serde_json::Value::Object(fields(spec, case.pick, &case.edits, &f.uuids))
        }
        (None, None) => serde_json::Value::Object(fields(
            f.calls[case.pick % f.calls.len()],
            case.pick,
            &case.edits,
            &f.uuids,
        )),
    };
    if let Some(obj) = inner.as_object_mut() {
        match &case.session {
            SessionCase::Admin => {
                obj.insert("session".into(), json!({"uuid": f.session}));
            }
            SessionCase::Missing => {}
            SessionCase::Random(s) => {
                obj.insert("session".into(), json!({"uuid": s}));
            }
            SessionCase::WrongType(v) => {
                obj.insert("session".into(), v.clone());
            }
        }
    }
    let mut top = serde_json::Map::new();
    top.insert(class, inner);
    for (k, v) in &case.extra_top_keys {
        top.insert(k.clone(), v.clone());
    }
    damage(
        serde_json::to_vec(&serde_json::Value::Object(top)).unwrap_or_default(),
        &case.text,
    )
}

#[derive(Default, Debug)]
struct HttpTally {
    refused: u64,
    accepted: u64,
    statuses: BTreeMap<u16, u64>,
    codes: BTreeMap<String, u64>,
}

impl HttpTally {
    fn line(&self, target: &str, cases: u32, started: Instant) -> String {
        format!(
            "fuzz: target={target} cases={cases} crashes={} refused={} accepted={} statuses={:?} error_codes={:?} elapsed_ms={}",
            PANICS.load(Ordering::SeqCst),
            self.refused,
            self.accepted,
            self.statuses,
            self.codes,
            started.elapsed().as_millis()
        )
    }
}

/// After a refused input: nothing changed, the node is live and did not panic.
async fn after_refusal(
    f: &HttpFixture,
    before: &Fingerprint,
    what: &str,
) -> Result<(), TestCaseError> {
    assert_no_panic(what)?;
    // A refused write's audit record travels through Raft; let it land before comparing.
    let after = f.fingerprint();
    if after != *before {
        return Err(TestCaseError::fail(format!(
            "{what}: refused input changed the state: {}",
            diff(before, &after)
        )));
    }
    assert_live(&f.c, &f.n, what).await
}

async fn run_rpc_case(
    f: &HttpFixture,
    case: &RpcCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    let body = rpc_body(f, case);
    let mut req = if case.put {
        f.c.put(f.url("/zstack/api"))
    } else {
        f.c.post(f.url("/zstack/api"))
    };
    if let Some(j) = &case.job_uuid {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(j) {
            req = req.header("X-Job-UUID", v);
        }
    }
    let r = req
        .body(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("RPC call failed: {e}")))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "RPC {status} {}",
        &text.chars().take(300).collect::<String>()
    );
    // ZStack answers every processed or undecodable call with 200; 413 is the size limit.
    prop_assert!(status == 200 || status == 413, "{}", what);
    let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let reply = match v {
        // Undecodable: the exception text, as ZStack does.
        None => {
            prop_assert!(!text.trim().is_empty(), "{}: empty answer", what);
            None
        }
        Some(v) if v["state"] == "Done" => Some(result_object(&v)?),
        Some(v) if v["state"] == "Processing" => {
            let uuid = v["uuid"].as_str().unwrap_or_default().to_string();
            Some(f.poll_rpc(&uuid).await?)
        }
        Some(v) => return Err(TestCaseError::fail(format!("{what}: unknown answer {v}"))),
    };
    match reply {
        Some(r) if r["success"] == true => {
            tally.accepted += 1;
            assert_no_panic(&what)?;
            assert_live(&f.c, &f.n, &what).await?;
            *before = f.fingerprint();
        }
        Some(r) => {
            tally.refused += 1;
            prop_assert!(
                r["success"] == false,
                "{}: reply without success: {}",
                what,
                r
            );
            tally.code(&r["error"]);
            check_error_object(&what, &r["error"])?;
            after_refusal(f, before, &what).await?;
        }
        None => {
            tally.refused += 1;
            after_refusal(f, before, &what).await?;
        }
    }
    Ok(())
}

/// A path segment as a generator makes it: a real uuid, a hostile string (percent-encoded) or
/// raw text put into the URL as it is.
#[derive(Debug, Clone)]
enum Segment {
    Real(usize),
    Encoded(String),
    Raw(&'static str),
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => any::<usize>().prop_map(Segment::Real),
        3 => prop_oneof![".{0,40}", "[0-9a-f]{32}", Just(String::new()), "💥{1,3}"].prop_map(Segment::Encoded),
        1 => prop_oneof![
            Just("%zz"),
            Just("%FF%FE"),
            Just("%00"),
            Just(".."),
            Just("."),
            Just("a/b"),
            Just("%2F"),
            Just(";x=1"),
            Just("~"),
        ]
        .prop_map(Segment::Raw),
    ]
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment_text(f: &HttpFixture, s: &Segment) -> String {
    match s {
        Segment::Real(i) => f.uuids[i % f.uuids.len()].clone(),
        Segment::Encoded(t) => encode_segment(t),
        Segment::Raw(t) => t.to_string(),
    }
}

fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("q".to_string()),
        Just("".to_string()),
        Just("limit".to_string()),
        Just("start".to_string()),
        Just("count".to_string()),
        Just("replyWithCount".to_string()),
        Just("sort".to_string()),
        Just("fields".to_string()),
        Just("groupBy".to_string()),
        Just("filterName".to_string()),
        Just("consistency".to_string()),
        Just("deleteMode".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    let value = prop_oneof![
        ".{0,24}",
        Just("name=fz".to_string()),
        Just("uuid?=a,b".to_string()),
        Just("name~=%f%".to_string()),
        Just("name!?=".to_string()),
        Just("name".to_string()),
        Just("zoneUuid=".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("+name".to_string()),
        Just("-".to_string()),
        Just("true".to_string()),
        Just("yes".to_string()),
        Just("stale".to_string()),
        Just("Permissive".to_string()),
        Just(",,,".to_string()),
    ];
    let pair = (key, value).prop_map(|(k, v)| {
        let k: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
        let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
        format!("{k}={v}")
    });
    let raw = prop_oneof![
        Just("%zz".to_string()),
        Just("&&".to_string()),
        Just("=".to_string()),
        Just("q".to_string()),
        Just("q=%FF".to_string()),
        Just("limit=1&limit=x".to_string()),
        Just("consistency=stale&consistency=linearizable".to_string()),
    ];
    prop::collection::vec(prop_oneof![4 => pair, 1 => raw], 0..4).prop_map(|v| v.join("&"))
}

#[derive(Debug, Clone)]
enum AuthCase {
    Admin,
    Missing,
    OAuth(String),
    Header(Vec<u8>),
}

fn auth_case() -> impl Strategy<Value = AuthCase> {
    prop_oneof![
        6 => Just(AuthCase::Admin),
        1 => Just(AuthCase::Missing),
        1 => ".{0,40}".prop_map(AuthCase::OAuth),
        1 => prop_oneof![
            Just(b"Bearer x".to_vec()),
            Just(b"OAuth".to_vec()),
            Just(b"OAuth ".to_vec()),
            Just(b"oauth abc".to_vec()),
            Just(b"ZStack a:b".to_vec()),
            Just(b"".to_vec()),
            prop::collection::vec(0x20u8..=0xff, 0..40),
        ]
        .prop_map(AuthCase::Header),
    ]
}

#[derive(Debug, Clone)]
enum RestBody {
    Fields {
        pick: usize,
        edits: Vec<(usize, Option<serde_json::Value>)>,
        wrapper: Option<String>,
    },
    Value(serde_json::Value),
    Empty,
}

#[derive(Debug, Clone)]
struct RestCase {
    route: usize,
    method: Option<&'static str>,
    vars: Vec<Segment>,
    extra_segment: Option<Segment>,
    query: String,
    body: RestBody,
    text: TextMutation,
    auth: AuthCase,
    job_uuid: Option<String>,
    stale: bool,
}

fn rest_case() -> impl Strategy<Value = RestCase> {
    (
        any::<usize>(),
        proptest::option::weighted(
            0.1,
            prop_oneof![
                Just("GET"),
                Just("POST"),
                Just("PUT"),
                Just("DELETE"),
                Just("PATCH"),
                Just("HEAD"),
                Just("OPTIONS"),
                Just("FUZZ"),
            ],
        ),
        prop::collection::vec(segment(), 3),
        proptest::option::weighted(0.05, segment()),
        query_string(),
        prop_oneof![
            6 => (
                any::<usize>(),
                edits(),
                proptest::option::weighted(0.1, "[a-zA-Z]{0,12}"),
            )
                .prop_map(|(pick, edits, wrapper)| RestBody::Fields { pick, edits, wrapper }),
            1 => hostile_value().prop_map(RestBody::Value),
            1 => Just(RestBody::Empty),
        ],
        text_mutation(),
        auth_case(),
        proptest::option::weighted(0.1, "[0-9a-f]{32}|.{0,40}"),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(route, method, vars, extra_segment, query, body, text, auth, job_uuid, stale)| {
                RestCase {
                    route,
                    method,
                    vars,
                    extra_segment,
                    query,
                    body,
                    text,
                    auth,
                    job_uuid,
                    stale,
                }
            },
        )
}

fn method_name(m: api::rest::Method) -> &'static str {
    match m {
        api::rest::Method::Get => "GET",
        api::rest::Method::Post => "POST",
        api::rest::Method::Put => "PUT",
        api::rest::Method::Delete => "DELETE",
    }
}

async fn run_rest_case(
    f: &HttpFixture,
    case: &RestCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    use serde_json::json;
    let routes = api::rest::routes();
    let route = &routes[case.route % routes.len()];
    let spec = api::catalogue::catalogue().by_name(route.call);
    let mut vars = case.vars.iter();
    let mut path = String::from("/zstack");
    for part in route.path.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        if part.starts_with('{') {
            let seg = vars.next().cloned().unwrap_or(Segment::Real(0));
            path.push_str(&segment_text(f, &seg));
        } else {
            path.push_str(part);
        }
    }
    if let Some(extra) = &case.extra_segment {
        path.push('/');
        path.push_str(&segment_text(f, extra));
    }
    let mut url = f.url(&path);
    if !case.query.is_empty() {
        url.push('?');
        url.push_str(&case.query);
    }
    let body = match (&case.body, spec) {
        (RestBody::Empty, _) => vec![],
        (RestBody::Value(v), _) => serde_json::to_vec(v).unwrap_or_default(),
        (
            RestBody::Fields {
                pick,
                edits,
                wrapper,
            },
            Some(spec),
        ) => {
            let fields = serde_json::Value::Object(fields(spec, *pick, edits, &f.uuids));
            let key = match (wrapper, route.body) {
                (Some(w), _) => w.clone(),
                (None, api::rest::Body::Params) => "params".to_string(),
                (None, _) => api::rest::action_name(route.call),
            };
            serde_json::to_vec(&json!({ key: fields })).unwrap_or_default()
        }
        (RestBody::Fields { .. }, None) => vec![],
    };
    let body = damage(body, &case.text);
    let method_text = case.method.unwrap_or(method_name(route.method));
    let method = reqwest::Method::from_bytes(method_text.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("method {method_text}: {e}")))?;
    let mut req = f.c.request(method, &url).body(body);
    match &case.auth {
        AuthCase::Admin => req = req.header("Authorization", format!("OAuth {}", f.session)),
        AuthCase::Missing => {}
        AuthCase::OAuth(s) => {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("OAuth {s}")) {
                req = req.header("Authorization", v);
            }
        }
        AuthCase::Header(b) => {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(b) {
                req = req.header("Authorization", v);
            }
        }
    }
    if let Some(j) = &case.job_uuid {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(j) {
            req = req.header("X-Job-UUID", v);
        }
    }
    if case.stale {
        req = req.header("X-ZStack-Consistency", "stale");
    }
    let r = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("REST {method_text} {url}: {e}")))?;
    let mut status = r.status().as_u16();
    let mut text = r.text().await.unwrap_or_default();
    if status == 202 {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(location) = v["location"].as_str() {
            let (s, v) = f.poll_rest(location).await;
            status = s;
            text = v.to_string();
        }
    }
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "REST {method_text} {url} -> {status} {}",
        text.chars().take(300).collect::<String>()
    );
    match status {
        200..=299 => {
            tally.accepted += 1;
            assert_no_panic(&what)?;
            assert_live(&f.c, &f.n, &what).await?;
            *before = f.fingerprint();
            return Ok(());
        }
        // ZStack's REST refusal of a processed call: `{"error": {...}}`.
        503 => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{what}: 503 body is not JSON: {e}")))?;
            tally.code(&v["error"]);
            check_error_object(&what, &v["error"])?;
        }
        // Refused before the API: plain text (spec 06 §3) or a JSON error, never empty.
        400..=499 => {
            // (A HEAD answer has no body by definition.)
            prop_assert!(
                method_text == "HEAD" || !text.trim().is_empty(),
                "{}: empty refusal",
                what
            );
        }
        _ => return Err(TestCaseError::fail(format!("{what}: unexpected status"))),
    }
    tally.refused += 1;
    after_refusal(f, before, &what).await
}

/// One request to the node's own routes.
#[derive(Debug, Clone)]
enum NodeCase {
    AddMember(serde_json::Value, TextMutation),
    RemoveMember(Segment),
    Transfer(serde_json::Value, TextMutation),
    Init(Vec<u8>),
    ManagementNodes(String),
    Status(String),
    KvPut {
        key: Segment,
        body: Vec<u8>,
        big: bool,
        rid: Option<Vec<u8>>,
    },
    KvDelete(Segment, Option<Vec<u8>>),
    KvGet(Segment, String),
    SelfTest(serde_json::Value),
    Other(&'static str, Segment),
}

fn add_member_body() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        (hostile_value(), hostile_value(), hostile_value())
            .prop_map(|(id, r, a)| json!({"id": id, "raft_addr": r, "api_addr": a})),
        (any::<u64>(), ".{0,30}", ".{0,30}")
            .prop_map(|(id, r, a)| json!({"id": id, "raft_addr": r, "api_addr": a})),
        hostile_value(),
    ]
}

fn rid() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::weighted(
        0.5,
        prop_oneof![
            "[a-z0-9-]{1,40}".prop_map(String::into_bytes),
            Just(vec![]),
            Just(vec![b'r'; 201]),
            Just(vec![b'r'; 200]),
            prop::collection::vec(0x20u8..=0xff, 1..40),
        ],
    )
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    use serde_json::json;
    prop_oneof![
        2 => (add_member_body(), text_mutation()).prop_map(|(b, t)| NodeCase::AddMember(b, t)),
        1 => segment().prop_map(NodeCase::RemoveMember),
        2 => (
            prop_oneof![
                hostile_value().prop_map(|v| json!({ "to": v })),
                any::<u64>().prop_map(|v| json!({ "to": v })),
                hostile_value(),
            ],
            text_mutation()
        )
            .prop_map(|(b, t)| NodeCase::Transfer(b, t)),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(NodeCase::Init),
        1 => query_string().prop_map(NodeCase::ManagementNodes),
        1 => query_string().prop_map(NodeCase::Status),
        4 => (segment(), prop::collection::vec(any::<u8>(), 0..256), proptest::bool::weighted(0.01), rid())
            .prop_map(|(key, body, big, rid)| NodeCase::KvPut { key, body, big, rid }),
        1 => (segment(), rid()).prop_map(|(k, r)| NodeCase::KvDelete(k, r)),
        2 => (segment(), query_string()).prop_map(|(k, q)| NodeCase::KvGet(k, q)),
        1 => hostile_value().prop_map(NodeCase::SelfTest),
        1 => (
            prop_oneof![
                Just("PATCH /kv/"),
                Just("POST /kv/"),
                Just("GET /cluster/members/"),
                Just("PUT /cluster/init/"),
                Just("DELETE /cluster/"),
                Just("GET /health/"),
                Just("FUZZ /kv/"),
                Just("GET /nope/"),
            ],
            segment()
        )
            .prop_map(|(m, s)| NodeCase::Other(m, s)),
    ]
}

/// An add-member body that would really add a (non-existent) node, which then holds the admin
/// lock for its 30 s catch-up: made invalid by id 0, the case the generator wanted to reach.
fn defuse_add(v: serde_json::Value) -> serde_json::Value {
    let parsed: Option<proto::http::AddMemberRequest> = serde_json::from_value(v.clone()).ok();
    match parsed {
        Some(a)
            if a.id != 0
                && node::config::validate_host_port(&a.raft_addr).is_ok()
                && node::config::validate_host_port(&a.api_addr).is_ok() =>
        {
            serde_json::json!({"id": 0, "raft_addr": a.raft_addr, "api_addr": a.api_addr})
        }
        _ => v,
    }
}

async fn run_node_case(
    f: &HttpFixture,
    case: &NodeCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    use reqwest::Method;
    let json = |v: &serde_json::Value, t: &TextMutation| {
        damage(serde_json::to_vec(v).unwrap_or_default(), t)
    };
    let (method, path, body, rid): (Method, String, Vec<u8>, Option<Vec<u8>>) = match case {
        NodeCase::AddMember(v, t) => {
            let mut b = json(&defuse_add(v.clone()), t);
            // Damage may turn the body into a valid request again.
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                b = serde_json::to_vec(&defuse_add(v)).unwrap_or_default();
            }
            (Method::POST, "/cluster/members".into(), b, None)
        }
        NodeCase::RemoveMember(s) => {
            let mut seg = segment_text(f, s);
            if seg.trim_start_matches('0').trim_start_matches('+') == "1" {
                seg = "0".into();
            }
            (
                Method::DELETE,
                format!("/cluster/members/{seg}"),
                vec![],
                None,
            )
        }
        NodeCase::Transfer(v, t) => (
            Method::POST,
            "/cluster/leader/transfer".into(),
            json(v, t),
            None,
        ),
        NodeCase::Init(b) => (Method::POST, "/cluster/init".into(), b.clone(), None),
        NodeCase::ManagementNodes(q) => (
            Method::GET,
            format!("/cluster/management-nodes?{q}"),
            vec![],
            None,
        ),
        NodeCase::Status(q) => (Method::GET, format!("/cluster/status?{q}"), vec![], None),
        NodeCase::KvPut {
            key,
            body,
            big,
            rid,
        } => {
            let body = if *big {
                vec![b'v'; (2 << 20) + 1]
            } else {
                body.clone()
            };
            (
                Method::PUT,
                format!("/kv/{}", segment_text(f, key)),
                body,
                rid.clone(),
            )
        }
        NodeCase::KvDelete(key, rid) => (
            Method::DELETE,
            format!("/kv/{}", segment_text(f, key)),
            vec![],
            rid.clone(),
        ),
        NodeCase::KvGet(key, q) => (
            Method::GET,
            format!("/kv/{}?{q}", segment_text(f, key)),
            vec![],
            None,
        ),
        NodeCase::SelfTest(v) => (
            Method::POST,
            "/cluster/flow-selftest".into(),
            json(v, &TextMutation::None),
            None,
        ),
        NodeCase::Other(mp, s) => {
            let (m, p) = mp.split_once(' ').unwrap_or(("GET", "/"));
            let m = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
            (m, format!("{p}{}", segment_text(f, s)), vec![], None)
        }
    };
    let url = f.url(&path);
    let mut req = node_api_request(&f.c, method.clone(), &url).body(body);
    if let Some(r) = rid.and_then(|r| reqwest::header::HeaderValue::from_bytes(&r).ok()) {
        req = req.header("X-Request-Id", r);
    }
    let r = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{method} {url}: {e}")))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "{method} {url} -> {status} {}",
        text.chars().take(300).collect::<String>()
    );
    prop_assert!(status < 500, "{}", what);
    if (200..300).contains(&status) {
        tally.accepted += 1;
        assert_no_panic(&what)?;
        assert_live(&f.c, &f.n, &what).await?;
        *before = f.fingerprint();
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{what}: error body is not JSON: {e}")))?;
    tally.code(&v["error"]);
    check_error_object(&what, &v["error"])?;
    prop_assert!(v["served_by"].is_u64(), "{}: no served_by", what);
    tally.refused += 1;
    after_refusal(f, before, &what).await
}

#[test]
fn http_decoders_refuse_malformed_input() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(http_fixture());
    let before = std::cell::RefCell::new(f.fingerprint());

    // ZStack RPC envelopes.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&rpc_case(f.calls.len()), |case| {
        rt.block_on(run_rpc_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_zstack_rpc", n, started));
    if let Err(e) = r {
        panic!("ZStack RPC fuzzing failed: {e}");
    }

    // REST v1: every route, with broken paths, query strings, bodies and headers.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&rest_case(), |case| {
        rt.block_on(run_rest_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_rest", n, started));
    if let Err(e) = r {
        panic!("REST fuzzing failed: {e}");
    }

    // The node's own routes: /cluster/*, /kv/*, health, unknown paths and methods.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&node_case(), |case| {
        rt.block_on(run_node_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_cluster_kv", n, started));
    if let Err(e) = r {
        panic!("cluster/kv fuzzing failed: {e}");
    }

    rt.block_on(async {
        assert_live(&f.c, &f.n, "end").await.expect("live");
        f.n.running.shutdown().await;
    });
}

/// Regressions found by the HTTP fuzzing: axum's own refusals on the node's routes (a path
/// that is not UTF-8, a query string that does not parse, a method the route does not serve, a
/// body over the limit) came out as plain text or an empty body instead of the node's JSON
/// error.
#[test]
fn http_regressions() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = rt.block_on(start_node("fuzz-http-regressions"));
    let c = http_client();
    rt.block_on(async {
        use reqwest::Method;
        for (method, path, body, status) in [
            (Method::DELETE, "/cluster/members/%FF%FE", vec![], 400),
            (Method::GET, "/kv/%FF", vec![], 400),
            (
                Method::GET,
                "/kv/k?consistency=stale&consistency=linearizable",
                vec![],
                400,
            ),
            (
                Method::GET,
                "/cluster/management-nodes?consistency=%FF",
                vec![],
                400,
            ),
            (Method::PATCH, "/kv/k", vec![], 405),
            (Method::GET, "/cluster/init", vec![], 405),
            (Method::PUT, "/kv/k", vec![b'v'; (2 << 20) + 1], 413),
        ] {
            let url = format!("http://{}{path}", n.http_addr);
            let r = node_api_request(&c, method.clone(), &url)
                .body(body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), status, "{method} {path}");
            let v: serde_json::Value = r.json().await.expect("a JSON error body");
            for k in ["code", "description", "details"] {
                assert!(v["error"][k].is_string(), "{method} {path}: {v}");
            }
            assert_eq!(v["served_by"], 1, "{method} {path}: {v}");
        }
        // The ZStack REST mirror keeps ZStack's plain-text refusals (spec 06 §3).
        let r = c
            .get(format!("http://{}/zstack/v1/zones?limit=x", n.http_addr))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 400);
        let text = r.text().await.expect("text");
        assert!(text.contains("'limit' must be an integer"), "{text}");
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics in the node");
    rt.block_on(n.running.shutdown());
}
