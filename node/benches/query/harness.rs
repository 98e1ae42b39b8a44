//! Query benchmark: `QueryImage` shaped like the UI's VM list (`uuid=`, `name like 'vm-123%'`,
//! `name like '%vm-12345%'`, page of 20 sorted by `createDate desc` with `replyWithCount`) over
//! N image records, at two levels:
//!
//! - `level=engine`: the records are applied to a RocksDB state machine through raft-store's
//!   apply path (the node's `ModelApplier`, batches of 256 entries), then the `QueryImage` plan's query
//!   runs in-process on the local state (no HTTP, no Raft).
//! - `level=cluster`: a 3-node in-process cluster (real gRPC and HTTP on 127.0.0.1, one RocksDB
//!   per node) is loaded with concurrent `Node::propose` calls of the real `AddImage` command,
//!   then `APIQueryImageMsg` goes over `POST /zstack/api` with a session, with and without
//!   `X-ZStack-Consistency: stale`, at 1 and 16 concurrent clients.
//!
//! Each case prints one line (`bench=query ...`), each peer comparison a `bench=query_ratio`
//! line. Every reply is checked (success and total match a brute-force count over the names);
//! a mismatch panics. Shared by `benches/query/main.rs` and the smoke test
//! `tests/query_bench.rs`, which runs it on a few thousand records without timing checks.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::backup_storage::BackupStorageOp;
use api::families::image::ImageOp;
use api::Caller;
use api::Command;
use futures::stream;
use futures::StreamExt;
use node::applier::ModelApplier;
use node::config::NodeConfig;
use node::node::Node;
use node::state_view::StateView;
use raft_store::openraft::entry::RaftEntry;
use raft_store::openraft::storage::RaftStateMachine;
use raft_store::Entry;
use raft_store::Proposal;
use raft_store::TypeConfig;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

const QUERY_CLASS: &str = "org.zstack.header.image.APIQueryImageMsg";
const ADMIN_PASSWORD: &str = api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512;
const BS_UUID: &str = "b5000000000000000000000000000001";
/// Page the UI asks for.
const PAGE: usize = 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Image records to load.
    pub records: usize,
    /// Minimum time per case.
    pub case_time: Duration,
    /// Minimum queries per case.
    pub min_ops: usize,
    /// Concurrent proposals while loading the cluster.
    pub load_clients: usize,
    /// Concurrent query clients of the cluster cases.
    pub clients: Vec<usize>,
    /// Run the engine level.
    pub engine: bool,
    /// Run the cluster level.
    pub cluster: bool,
    /// Where data dirs go.
    pub dir: std::path::PathBuf,
}

/// Every line printed, for the caller to keep or check.
pub type Lines = Vec<String>;

fn emit(lines: &mut Lines, l: String) {
    println!("{l}");
    lines.push(l);
}

fn name_of(i: usize) -> String {
    format!("vm-{i}")
}

fn uuid_of(i: usize) -> String {
    // Spread over the key space like random uuids, deterministic for reruns.
    let x = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ 0x1234;
    format!("{x:032x}")
}

fn add_image(i: usize) -> Command {
    api::IntoCommand::command(
        ImageOp::Add {
            uuid: uuid_of(i),
            name: name_of(i),
            description: Some(format!("benchmark image {i}")),
            url: format!("http://images.example.com/tpl/vm-{i}.qcow2"),
            media_type: None,
            guest_os_type: None,
            format: None,
            platform: None,
            architecture: None,
            system: false,
            virtio: None,
            backup_storage_uuids: vec![BS_UUID.to_string()],
        },
        Caller::admin(),
    )
}

fn add_bs() -> Command {
    api::IntoCommand::command(
        BackupStorageOp::AddImageStore {
            uuid: BS_UUID.into(),
            name: "bs".into(),
            description: None,
            url: "/data/images".into(),
            hostname: "bs1.example.com".into(),
            username: "root".into(),
            password: api::secret::DataKey::generate().seal("password"),
            ssh_port: 22,
        },
        Caller::admin(),
    )
}

/// One query case: the request body per iteration and the expected total.
#[derive(Clone)]
struct Case {
    name: &'static str,
    /// (conditions, expected total) for iteration i.
    params: Arc<Vec<(Value, u64)>>,
}

impl Case {
    fn body(&self, i: usize) -> (Map<String, Value>, u64) {
        let (conds, total) = &self.params[i % self.params.len()];
        let mut m = Map::new();
        m.insert("conditions".into(), conds.clone());
        // What ZStack's UI sends for a list page.
        m.insert("limit".into(), json!(PAGE));
        m.insert("start".into(), json!(0));
        m.insert("replyWithCount".into(), json!(true));
        m.insert("sortBy".into(), json!("createDate"));
        m.insert("sortDirection".into(), json!("desc"));
        (m, *total)
    }
}

/// A cheap deterministic sequence of record numbers to look up.
fn picks(n: usize, count: usize) -> Vec<usize> {
    (0..count)
        .map(|k| (k.wrapping_mul(7919).wrapping_add(104_729)) % n)
        .collect()
}

fn cases(n: usize) -> Vec<Case> {
    let names: Vec<String> = (0..n).map(name_of).collect();
    let count = |f: &dyn Fn(&str) -> bool| names.iter().filter(|s| f(s)).count() as u64;
    let ids = picks(n, 64);
    // Prefixes of about 0.1 % of the table: `vm-123%` matches vm-123, vm-1230.., vm-12300.. .
    let digits = n.to_string().len();
    let prefix_len = digits.saturating_sub(3).max(1);
    let prefixes: Vec<String> = ids
        .iter()
        .filter(|i| i.to_string().len() + 1 >= digits)
        .map(|i| {
            let s = i.to_string();
            format!("vm-{}", &s[..s.len().min(prefix_len)])
        })
        .collect();
    let uuid_params = |op: &str| -> Arc<Vec<(Value, u64)>> {
        Arc::new(
            ids.iter()
                .map(|i| (json!([{"name": "uuid", "op": op, "value": uuid_of(*i)}]), 1))
                .collect(),
        )
    };
    let prefix_params = |wild: &str, extra: Option<Value>| -> Arc<Vec<(Value, u64)>> {
        Arc::new(
            prefixes
                .iter()
                .map(|p| {
                    let total = count(&|s: &str| s.starts_with(p.as_str()));
                    let pat = format!("{wild}{}%", &p[wild.len()..]);
                    let mut conds = vec![];
                    conds.extend(extra.clone());
                    conds.push(json!({"name": "name", "op": "like", "value": pat}));
                    (Value::Array(conds), total)
                })
                .collect(),
        )
    };
    vec![
        Case {
            name: "uuid",
            params: uuid_params("="),
        },
        // Same answer, but `like` on uuid has no index: the full-scan peer of `uuid`.
        Case {
            name: "uuid_scan",
            params: uuid_params("like"),
        },
        Case {
            name: "name_prefix",
            params: prefix_params("", None),
        },
        // `_m-123%` matches exactly what `vm-123%` does here but has no literal prefix: the
        // full-scan peer of `name_prefix` (and what `name_prefix` cost before the prefix range).
        Case {
            name: "name_prefix_scan",
            params: prefix_params("_", None),
        },
        // A low-selectivity indexed condition first (every image is Enabled), as the UI's
        // `type=UserVm`: the planner must still pick the name range.
        Case {
            name: "state_and_name_prefix",
            params: prefix_params(
                "",
                Some(json!({"name": "state", "op": "=", "value": "Enabled"})),
            ),
        },
        Case {
            name: "name_infix",
            params: Arc::new(
                ids.iter()
                    .map(|i| {
                        let needle = name_of(*i);
                        let total = count(&|s: &str| s.contains(needle.as_str()));
                        (
                            json!([{"name": "name", "op": "like", "value": format!("%{needle}%")}]),
                            total,
                        )
                    })
                    .collect(),
            ),
        },
    ]
}

/// Latencies and wall time of one case.
struct Sample {
    lat_us: Vec<u64>,
    wall: Duration,
}

impl Sample {
    fn qps(&self) -> f64 {
        self.lat_us.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn pct(&self, p: f64) -> u64 {
        let mut v = self.lat_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0;
        }
        v[(((v.len() - 1) as f64) * p).round() as usize]
    }
}

fn check(case: &str, reply: &Value, total: u64) {
    assert_eq!(reply["success"], true, "{case}: {reply}");
    assert_eq!(reply["total"], json!(total), "{case}: wrong total");
    let page = reply["inventories"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(page, total.min(PAGE as u64), "{case}: wrong page size");
}

// ------------------------------------------------------------------------------------------
// Engine level

fn engine(cfg: &Config, lines: &mut Lines) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(&cfg.dir).expect("tempdir");
    let (_log, mut sm) = raft_store::open(dir.path(), ModelApplier::default()).expect("open store");
    let mut index = 0u64;
    let mut entry = |cmd: &Command| {
        index += 1;
        Entry::new_normal(
            raft_store::openraft::testing::log_id::<TypeConfig>(1, 1, index),
            Proposal::new(Some(format!("r{index}")), 1_700_000_000_000 + index, cmd),
        )
    };
    let mut all = vec![entry(&add_bs())];
    all.extend((0..cfg.records).map(|i| entry(&add_image(i))));
    let started = Instant::now();
    for chunk in all.chunks(256) {
        let items: Vec<_> = chunk.iter().cloned().map(|e| Ok((e, None))).collect();
        rt.block_on(sm.apply(stream::iter(items))).expect("apply");
    }
    let secs = started.elapsed().as_secs_f64();
    emit(
        lines,
        format!(
            "bench=query_load level=engine records={} secs={secs:.2} records_per_s={:.0}",
            cfg.records,
            cfg.records as f64 / secs
        ),
    );
    let view = StateView(&sm);
    let admin = Caller::admin();
    let run = |body: &Map<String, Value>| -> Value {
        let q = api::query::parse_query(QUERY_CLASS, body).expect("query parses");
        let mut m =
            api::resource::generic::visible_query::<api::families::image::Image>(&view, &q, &admin)
                .map(api::plan::query_reply)
                .expect("query runs");
        m.insert("success".into(), json!(true));
        Value::Object(m)
    };
    // Every record applied (no refusal).
    let mut all_q = Map::new();
    all_q.insert("conditions".into(), json!([]));
    all_q.insert("count".into(), json!(true));
    assert_eq!(run(&all_q)["total"], json!(cfg.records), "records loaded");
    let mut qps = Vec::new();
    for case in cases(cfg.records) {
        let mut lat_us = Vec::new();
        let start = Instant::now();
        let mut i = 0;
        while i < cfg.min_ops || start.elapsed() < cfg.case_time {
            let (body, total) = case.body(i);
            let t = Instant::now();
            let reply = run(&body);
            lat_us.push(t.elapsed().as_micros() as u64);
            check(case.name, &reply, total);
            i += 1;
        }
        let s = Sample {
            lat_us,
            wall: start.elapsed(),
        };
        emit(
            lines,
            format!(
                "bench=query level=engine records={} case={} mode=local clients=1 ops={} qps={:.1} p50_us={} p99_us={}",
                cfg.records,
                case.name,
                s.lat_us.len(),
                s.qps(),
                s.pct(0.5),
                s.pct(0.99)
            ),
        );
        qps.push((case.name.to_string(), s.qps()));
    }
    let get = |n: &str| qps.iter().find(|(c, _)| c == n).map_or(f64::NAN, |x| x.1);
    for (case, peer) in [
        ("uuid", "uuid_scan"),
        ("name_prefix", "name_prefix_scan"),
        ("state_and_name_prefix", "name_prefix_scan"),
        ("name_prefix", "name_infix"),
    ] {
        emit(
            lines,
            format!(
                "bench=query_ratio level=engine records={} case={case} peer={peer} qps_ratio={:.1}",
                cfg.records,
                get(case) / get(peer)
            ),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Cluster level

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Start node `id`; with `join`, it obtains its credentials from that member. Retried on
/// fresh ports when one was taken between probing and binding (other tests run meanwhile).
async fn start_node(
    dir: &std::path::Path,
    id: u64,
    join: Option<&node::RunningNode>,
) -> node::RunningNode {
    for _ in 0..4 {
        match try_start_node(dir, id, join).await {
            Err(node::error::StartError::Bind { what, addr, source }) => {
                eprintln!("node {id}: {what} {addr} taken ({source}); retrying on fresh ports");
            }
            r => return r.expect("node starts"),
        }
    }
    try_start_node(dir, id, join).await.expect("node starts")
}

async fn try_start_node(
    dir: &std::path::Path,
    id: u64,
    join: Option<&node::RunningNode>,
) -> Result<node::RunningNode, node::error::StartError> {
    let raft = free_addr();
    let http = free_addr();
    let https = free_addr();
    let join = join.map(|m| node::config::JoinConfig {
        url: format!("https://{}", m.https_addr),
        token: node::config::SecretString(
            node::pki::token::issue(m.node.credentials(), 600, id, node::pki::token::now_unix())
                .expect("join token"),
        ),
    });
    node::start(NodeConfig {
        https_addr: https,
        https_cert: None,
        http_enabled: true,
        join,
        admin_token: Some(node::config::SecretString(ADMIN_TOKEN.into())),
        node_id: id,
        data_dir: dir.join(format!("n{id}")),
        raft_addr: raft,
        http_addr: http,
        advertise_raft_addr: raft.to_string(),
        advertise_http_addr: http.to_string(),
        cluster_id: "query-bench".into(),
        init: id == 1,
        request_timeout: Duration::from_secs(30),
        snapshot_logs: 5_000,
        flow_selftest_receiver: None,
        flow_step_pause: std::time::Duration::ZERO,
        agent_binary: node::agent_installer::default_agent_binary(),
        agent_libvirt_uri: node::config::DEFAULT_AGENT_LIBVIRT_URI.into(),
    })
    .await
}

/// Admin token of the benchmark cluster.
const ADMIN_TOKEN: &str = "zsadm_query-bench-admin-token-0123456789";

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POST one RPC call; the reply object inside `result`.
async fn rpc(
    http: &reqwest::Client,
    addr: &str,
    class: &str,
    body: Map<String, Value>,
    stale: bool,
) -> Value {
    let mut r = http
        .post(format!("http://{addr}/zstack/api"))
        .json(&json!({ class: body }));
    if stale {
        r = r.header("X-ZStack-Consistency", "stale");
    }
    let outer: Value = r.send().await.expect("send").json().await.expect("json");
    let inner: Value =
        serde_json::from_str(outer["result"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    inner
        .as_object()
        .and_then(|m| m.values().next().cloned())
        .unwrap_or(outer)
}

async fn cluster(cfg: &Config, lines: &mut Lines) {
    let dir = tempfile::tempdir_in(&cfg.dir).expect("tempdir");
    let n1 = start_node(dir.path(), 1, None).await;
    let http = reqwest::Client::builder()
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
            );
            h
        })
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let a1 = n1.node.advertise().api_addr.clone();
    until("node 1 ready", || async {
        http.get(format!("http://{a1}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let mut nodes = vec![n1];
    for id in [2, 3] {
        let n = start_node(dir.path(), id, Some(&nodes[0])).await;
        let body = json!({"id": id, "raft_addr": n.node.advertise().raft_addr,
                          "api_addr": n.node.advertise().api_addr});
        let r = http
            .post(format!("http://{a1}/cluster/members"))
            .json(&body)
            .send()
            .await
            .expect("add member");
        assert!(r.status().is_success(), "{:?}", r.text().await);
        nodes.push(n);
    }
    let handles: Vec<Arc<Node>> = nodes.iter().map(|n| n.node.clone()).collect();
    let leader_id = handles[0].raft_metrics().current_leader.expect("a leader");
    let leader = handles.iter().find(|n| n.id == leader_id).unwrap().clone();
    let follower = handles.iter().find(|n| n.id != leader_id).unwrap().clone();

    // The admin is created by the leader's bootstrap duty.
    let deadline = Instant::now() + Duration::from_secs(60);
    let session = loop {
        let mut b = Map::new();
        b.insert("accountName".into(), json!("admin"));
        b.insert("password".into(), json!(ADMIN_PASSWORD));
        let class = "org.zstack.header.identity.APILogInByAccountMsg";
        let r = rpc(&http, &follower.advertise().api_addr, class, b, false).await;
        if let Some(u) = r["inventory"]["uuid"].as_str() {
            break u.to_string();
        }
        assert!(Instant::now() < deadline, "admin login: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let (_, r) = leader.propose(&add_bs(), None).await.expect("add bs");
    assert!(!matches!(r, api::Response::Refused(_)), "{r:?}");
    // Load: concurrent proposals of the real command, spread over the three nodes.
    let started = Instant::now();
    let refused = stream::iter(0..cfg.records)
        .map(|i| {
            let n = handles[i % handles.len()].clone();
            async move {
                let (_, r) = n.propose(&add_image(i), None).await.expect("propose");
                matches!(r, api::Response::Refused(_))
            }
        })
        .buffer_unordered(cfg.load_clients)
        .filter(|r| futures::future::ready(*r))
        .count()
        .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(refused, 0, "refused AddImage commands");
    emit(
        lines,
        format!(
            "bench=query_load level=cluster records={} clients={} secs={secs:.2} records_per_s={:.0}",
            cfg.records,
            cfg.load_clients,
            cfg.records as f64 / secs
        ),
    );
    let last = leader.applied_index();
    for n in &handles {
        n.wait_applied(last, Duration::from_secs(120))
            .await
            .expect("replicas catch up");
    }

    let mut results: Vec<(String, f64)> = Vec::new();
    let targets = [("follower", follower.clone()), ("leader", leader.clone())];
    for case in cases(cfg.records) {
        if case.name.ends_with("_scan") || case.name == "state_and_name_prefix" {
            continue; // engine-level peers
        }
        for (target, node) in &targets {
            if *target == "leader" && case.name != "uuid" {
                continue;
            }
            for &clients in &cfg.clients {
                for (mode, stale) in [("local", true), ("linearizable", false)] {
                    let s = drive(
                        cfg,
                        &http,
                        &node.advertise().api_addr,
                        &session,
                        &case,
                        clients,
                        stale,
                    )
                    .await;
                    emit(
                        lines,
                        format!(
                            "bench=query level=cluster records={} case={} mode={mode} target={target} clients={clients} ops={} qps={:.1} p50_us={} p99_us={}",
                            cfg.records,
                            case.name,
                            s.lat_us.len(),
                            s.qps(),
                            s.pct(0.5),
                            s.pct(0.99)
                        ),
                    );
                    results.push((format!("{}/{target}/{clients}/{mode}", case.name), s.qps()));
                }
                let get = |m: &str| {
                    results
                        .iter()
                        .find(|(k, _)| *k == format!("{}/{target}/{clients}/{m}", case.name))
                        .map_or(f64::NAN, |x| x.1)
                };
                emit(
                    lines,
                    format!(
                        "bench=query_ratio level=cluster records={} case={} target={target} clients={clients} linearizable_over_local={:.2}",
                        cfg.records,
                        case.name,
                        get("linearizable") / get("local")
                    ),
                );
            }
        }
    }
    let get = |k: &str| {
        results
            .iter()
            .find(|(x, _)| x == k)
            .map_or(f64::NAN, |x| x.1)
    };
    for &clients in &cfg.clients {
        for mode in ["local", "linearizable"] {
            emit(
                lines,
                format!(
                    "bench=query_ratio level=cluster records={} case=name_prefix peer=name_infix target=follower clients={clients} mode={mode} qps_ratio={:.1}",
                    cfg.records,
                    get(&format!("name_prefix/follower/{clients}/{mode}"))
                        / get(&format!("name_infix/follower/{clients}/{mode}"))
                ),
            );
        }
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// Run one case with `clients` concurrent callers until the budget is spent.
async fn drive(
    cfg: &Config,
    http: &reqwest::Client,
    addr: &str,
    session: &str,
    case: &Case,
    clients: usize,
    stale: bool,
) -> Sample {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..clients).map(|_| {
        let next = next.clone();
        async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= cfg.min_ops && start.elapsed() >= cfg.case_time {
                    break;
                }
                let (mut body, total) = case.body(i);
                body.insert("session".into(), json!({"uuid": session}));
                let t = Instant::now();
                let reply = rpc(http, addr, QUERY_CLASS, body, stale).await;
                lat.push(t.elapsed().as_micros() as u64);
                check(case.name, &reply, total);
            }
            lat
        }
    });
    let lat_us: Vec<u64> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    Sample {
        lat_us,
        wall: start.elapsed(),
    }
}

/// Run the benchmark; returns every printed line.
pub fn run(cfg: &Config) -> Lines {
    let mut lines = Vec::new();
    emit(
        &mut lines,
        format!(
            "bench=env cores={} records={} case_secs={:.1} resource=Image page={PAGE} sort=createDate:desc",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cfg.records,
            cfg.case_time.as_secs_f64()
        ),
    );
    if cfg.engine {
        engine(cfg, &mut lines);
    }
    if cfg.cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(cluster(cfg, &mut lines));
    }
    lines
}
