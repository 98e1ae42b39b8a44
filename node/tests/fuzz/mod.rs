//! Shared by the node-level fuzz tests (`fuzz_grpc.rs`, `fuzz_http.rs`): real nodes started in
//! the test process (`node::start_with_host_agent` on a tempdir), a panic hook that counts panics
//! in their tasks, liveness checks, and the fingerprint of what refused input must not change.
//!
//! Each test binary is its own process, so a panic counted by one target is never blamed on the
//! other. Case counts: a modest default; `FUZZ_CASES=<n>` sets the cases per target,
//! `FUZZ_LONG=1` multiplies the defaults by 50. Each target prints one
//! `fuzz: target=... cases=... crashes=0 ...` line (run with `--nocapture` to see them).
#![allow(dead_code)] // Each test binary uses a different part.

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

/// Panics anywhere in this process (node tasks included) since the hook was installed.
pub static PANICS: AtomicUsize = AtomicUsize::new(0);

pub fn count_panics() {
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
pub fn cases(default: u32) -> u32 {
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

pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases,
        // Inputs are checked against a live node; shrinking a failure re-runs it there, which is
        // what we want, but a persisted regression file would name no source to replay against.
        failure_persistence: None,
        max_shrink_iters: 200,
        ..PtConfig::default()
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// One in-process node.
pub struct TestNode {
    pub running: RunningNode,
    pub raft_addr: String,
    pub http_addr: String,
    pub cluster_id: String,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub fn node(&self) -> &Arc<node::node::Node> {
        &self.running.node
    }

    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

/// Every host "answers": calls that add hosts get past the probe to the rest of their checks,
/// without this test reaching out to whatever addresses the generators produce.
pub struct AcceptingAgent;

impl node::host_agent::HostAgent for AcceptingAgent {
    fn probe<'a>(
        &'a self,
        _endpoint: &'a node::host_agent::HostEndpoint,
        _password: &'a api::secret::Secret,
    ) -> futures::future::BoxFuture<'a, Result<(), node::host_agent::AgentError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The admin token of the fuzzed nodes (the `/cluster` and `/kv` routes need it).
pub const ADMIN_TOKEN: &str = "zsadm_fuzz-admin-token-0123456789abcdef";

fn admin_token_file(dir: &std::path::Path) -> PathBuf {
    let f = dir.join("admin.token");
    std::fs::write(&f, ADMIN_TOKEN).expect("write admin token");
    f
}

/// Start an initialised single-node cluster and wait until it is ready (a leader, the admin
/// account created).
pub async fn start_node(cluster_id: &str) -> TestNode {
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
            https_addr: Some(format!("127.0.0.1:{}", free_port()).parse().expect("addr")),
            admin_token_file: Some(admin_token_file(dir.path())),
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

pub async fn wait_ready(n: &TestNode) {
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

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

pub async fn login(c: &reqwest::Client, http: &str) -> Option<String> {
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
pub async fn assert_live(
    c: &reqwest::Client,
    n: &TestNode,
    what: &str,
) -> Result<(), TestCaseError> {
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

pub fn assert_no_panic(what: &str) -> Result<(), TestCaseError> {
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
pub const BACKGROUND_TABLES: &[&str] = &[api::families::management_node::TABLE];

/// Tables a refused input may still write to: a refused ZStack call is audited (its record is
/// flushed through Raft, as a proposal with a request id, hence raft-store's `dedup` records).
pub const BOOKKEEPING_TABLES: &[&str] = &[api::audit::TABLE, api::audit::INDEX_TABLE, "dedup"];

/// What a refused input must not change: the Raft vote, the membership and every state table
/// but the bookkeeping ones. Applied and log indexes are left out because audit flushes and
/// leader duties append entries of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub vote: String,
    pub membership: String,
    pub tables: BTreeMap<String, Vec<raft_store::Pair>>,
}

pub fn fingerprint(n: &TestNode, also_skip: &[&str]) -> Fingerprint {
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

pub fn diff(a: &Fingerprint, b: &Fingerprint) -> String {
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

pub fn files_in(dir: &Path) -> Vec<String> {
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
