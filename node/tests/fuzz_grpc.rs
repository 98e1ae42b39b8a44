//! Node-level fuzzing of the node-to-node gRPC service: every RPC's payload (random bytes,
//! truncated, bit-flipped and length-inflated encodings of real messages built from a live node's
//! log), wrong headers, and broken snapshot streams (empty, header only, bad offsets, dropped or
//! damaged chunks, a meta that does not match the file).
//!
//! What must hold: no panic, Raft still running, `/health/live` 200; refused input gets a clear
//! status (InvalidArgument, FailedPrecondition, OutOfRange, ResourceExhausted; never Internal or
//! Unknown, and never a dropped connection) and changes nothing (vote, membership, state tables,
//! snapshot directory).
//!
//! Syntactically valid Raft messages from a "peer" may legitimately change Raft state (a Vote
//! with a higher term makes any node adopt it). So every generated input is first classified by
//! decoding it here with the node's own codec, the way the service will:
//! - inputs the service must refuse (bad header, undecodable payload, a forwarded proposal whose
//!   command does not decode, a broken snapshot stream) go to the *target*, a ready single-node
//!   cluster whose vote, membership and state are compared before and after each case;
//! - inputs that decode go to the *victim*, a second single-node cluster with another cluster id
//!   (so nothing it learns can reach the target), where only liveness and the answer's shape are
//!   checked: those are the valid-but-hostile messages a peer holding a cluster certificate could
//!   send, and they must not crash a node either.

mod fuzz;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use fuzz::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
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

/// The one place a fuzz test builds a node-to-node gRPC client (credentials go here).
/// A channel to `n`'s Raft port authenticated as node 2 of its cluster (a certificate from its
/// CA): the fuzzer is a member gone rogue, so its messages get past mutual TLS and the peer
/// identity check to the decoders (the good header says `from: 2`).
fn fuzz_channel(n: &fuzz::TestNode) -> Channel {
    let pki = n.data_dir().join("pki");
    let ca = std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt");
    let ca_key = std::fs::read_to_string(pki.join("ca.key")).expect("ca.key");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = node::pki::issue_node_cert(&ca, &ca_key, &n.cluster_id, 2, &[], &key).expect("cert");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .identity(tonic::transport::Identity::from_pem(
            cert,
            key.serialize_pem(),
        ))
        .domain_name(node::pki::PEER_NAME);
    tonic::transport::Endpoint::from_shared(format!("https://{}", n.raft_addr))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .timeout(Duration::from_secs(20))
        .connect_lazy()
}

fn grpc_client(n: &fuzz::TestNode) -> ClusterClient<Channel> {
    ClusterClient::new(fuzz_channel(n))
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
    let target_client = grpc_client(&target);
    let victim_client = grpc_client(&victim);
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
    let mut client = grpc_client(&target);
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
