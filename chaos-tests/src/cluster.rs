//! A cluster of real `zsnode` processes on 127.0.0.1 with per-node data dirs in a tempdir,
//! Raft traffic routed through fault-injecting proxies, and helpers to kill, restart and wait.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ops::{Auth, ClusterStatus, NodeClient, Timeouts};

use crate::proxy::{Links, Proxy};
use crate::topology::{self, Netns, Shaping, TmpfsMount, Topology};

/// Ports handed out in this process, so parallel helpers never pick the same one twice.
fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A currently free port on 127.0.0.1 (the OS picks it; we remember it to avoid reuse).
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let mut t = taken().lock().unwrap_or_else(|p| p.into_inner());
        if t.insert(port) {
            return Ok(port);
        }
    }
    bail!("could not find a free port")
}

/// A loopback address with a free port.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Find a built binary of the workspace: `$ENV_VAR`, else `target/<profile>/<name>` preferring
/// the profile this code was compiled in, else build it with cargo.
pub fn locate_binary(name: &str, package: &str, env_var: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{env_var}={} does not exist", p.display());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let (mine, other) = if cfg!(debug_assertions) {
        ("debug", "release")
    } else {
        ("release", "debug")
    };
    for profile in [mine, other] {
        let p = target.join(profile).join(name);
        if p.is_file() {
            warn_if_stale(&p);
            return Ok(p);
        }
    }
    eprintln!("chaos: {name} not built; running cargo build -p {package}");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args(["build", "-p", package, "--bin", name]);
    if mine == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build -p {package} failed: {status}");
    }
    let p = target.join(mine).join(name);
    if p.is_file() {
        Ok(p)
    } else {
        bail!("cargo build succeeded but {} is missing", p.display())
    }
}

/// Warn loudly when a binary is older than the workspace sources: the tests would exercise old
/// code. (We do not rebuild from inside `cargo test`: that would contend for cargo's lock.)
fn warn_if_stale(bin: &Path) {
    static WARNED: OnceLock<()> = OnceLock::new();
    if WARNED.set(()).is_err() {
        return;
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let mut newest = None;
    let mut stack: Vec<PathBuf> = ["node", "ops", "ha", "api", "raft-store"]
        .iter()
        .map(|c| workspace_root().join(c).join("src"))
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                if m > built && newest.as_ref().is_none_or(|(t, _)| m > *t) {
                    newest = Some((m, p));
                }
            }
        }
    }
    if let Some((_, src)) = newest {
        eprintln!(
            "chaos: WARNING: {} is older than {}; run `cargo build --workspace --bins` to test current code",
            bin.display(),
            src.display()
        );
    }
}

/// The `zsnode` binary to run.
pub fn zsnode_bin() -> Result<PathBuf> {
    locate_binary("zsnode", "node", "ZSNODE_BIN")
}

/// The `zsnode-seeded` binary: `zsnode` with the `seeded-bugs` feature (deliberate bugs chosen
/// by `ZSNODE_SEEDED_BUG`, for checker self-tests). `$ZSNODE_SEEDED_BIN`, else
/// `target/debug/zsnode-seeded` (the feature refuses release builds), else built with cargo.
pub fn seeded_zsnode_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ZSNODE_SEEDED_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("ZSNODE_SEEDED_BIN={} does not exist", p.display());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let p = target.join("debug").join("zsnode-seeded");
    if p.is_file() {
        warn_if_stale(&p);
        return Ok(p);
    }
    eprintln!("chaos: zsnode-seeded not built; running cargo build -p node --features seeded-bugs");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "-p", "node", "--features", "seeded-bugs"])
        .args(["--bin", "zsnode-seeded"])
        .status()
        .context("run cargo build")?;
    if !status.success() || !p.is_file() {
        bail!("cargo build of zsnode-seeded failed: {status}");
    }
    Ok(p)
}

/// Poll `f` every `every` until it returns `Ok(Some(v))` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(every);
    }
}

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    /// Number of nodes.
    pub nodes: usize,
    /// Route Raft traffic through fault proxies (needed for partitions).
    pub proxies: bool,
    /// Extra `zsnode` flags for every node.
    pub extra_args: Vec<String>,
    /// `RUST_LOG` of the nodes.
    pub rust_log: String,
    /// Per-request client timeout.
    pub request_timeout: Duration,
    /// Where the nodes run: [`Topology::Proxy`] (127.0.0.1, `proxies` decides whether Raft
    /// goes through fault proxies) or [`Topology::Netns`] (a namespace per node).
    pub topology: Topology,
    /// Mount a tmpfs of this many MiB on every node's data dir (needs root; without root the
    /// data dirs stay on disk and [`Cluster::tmpfs_skipped`] says why).
    pub data_tmpfs_mib: Option<u64>,
    /// Start nodes with `ZSNODE_CLOCK_OFFSET_FILE` so [`Cluster::set_clock_offset`] works.
    pub clock_hook: bool,
    /// Run this binary instead of [`zsnode_bin`] (e.g. [`seeded_zsnode_bin`]).
    pub bin: Option<PathBuf>,
    /// Extra environment variables of every node (e.g. `ZSNODE_SEEDED_BUG`).
    pub env: Vec<(String, String)>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            nodes: 3,
            proxies: true,
            extra_args: Vec::new(),
            rust_log: std::env::var("CHAOS_RUST_LOG").unwrap_or_else(|_| "info".into()),
            request_timeout: Duration::from_secs(10),
            topology: Topology::Proxy,
            data_tmpfs_mib: None,
            clock_hook: false,
            bin: None,
            env: Vec::new(),
        }
    }
}

/// The admin token of every test cluster (its founding node gets it with
/// `--admin-token-file`); every harness client sends it.
pub const ADMIN_TOKEN: &str = "zsadm_chaos-tests-admin-token-0123456789";

/// `Authorization` header value for the test clusters' administration endpoints.
pub fn admin_authorization() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// One node of the test cluster.
pub struct Node {
    /// Raft id.
    pub id: u64,
    /// HTTP address.
    pub http: SocketAddr,
    /// HTTPS address (joining nodes fetch their credentials here).
    pub https: SocketAddr,
    /// Raft listen address (the node binds it).
    pub raft_listen: SocketAddr,
    /// Advertised Raft address (the proxy's, when proxies are on).
    pub raft_advertised: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Network namespace (netns topology).
    pub ns: Option<String>,
    /// File holding the node's wall-clock offset in ms (with `clock_hook`).
    pub clock_file: Option<PathBuf>,
    /// stderr/stdout of every run, appended.
    pub log: PathBuf,
    child: Option<Child>,
    /// Client for its HTTP API.
    pub client: NodeClient,
}

impl Node {
    /// Is the process running (not killed or exited)?
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A running cluster; dropping it kills every node (and prints logs if the thread panicked).
pub struct Cluster {
    /// Nodes in id order (id = index + 1).
    pub nodes: Vec<Node>,
    /// Link rules shared by all proxies.
    pub links: Arc<Links>,
    _proxies: Vec<Proxy>,
    bin: PathBuf,
    opts: ClusterOpts,
    // Drop order matters: mounts are unmounted and namespaces removed before the tempdir goes.
    mounts: Vec<TmpfsMount>,
    /// Why the data dirs are not on tmpfs although asked for.
    pub tmpfs_skipped: Option<String>,
    /// The namespaces and bridge (netns topology).
    pub net: Option<Netns>,
    dir: Option<tempfile::TempDir>,
    /// Cluster id passed to every node.
    pub cluster_id: String,
}

impl Cluster {
    /// Start `opts.nodes` nodes: node 1 with `--init`, the others joined with `POST
    /// /cluster/members` one at a time; returns when all are ready with equal applied index.
    pub fn start(opts: ClusterOpts) -> Result<Self> {
        let bin = match &opts.bin {
            Some(b) => b.clone(),
            None => zsnode_bin()?,
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "{}{:06x}-",
                topology::TEMPDIR_PREFIX,
                std::process::id() & 0xff_ffff
            ))
            .tempdir()
            .context("create tempdir")?;
        let links = Links::new();
        let mut nodes = Vec::new();
        let mut proxies = Vec::new();
        let net = match opts.topology {
            Topology::Netns => Some(Netns::create(opts.nodes).context("create netns topology")?),
            Topology::Proxy => None,
        };
        if opts.data_tmpfs_mib.is_some() && opts.topology == Topology::Proxy && topology::is_root()
        {
            // Netns::create does this for the netns topology.
            topology::cleanup_stale();
        }
        let mut mounts = Vec::new();
        let mut tmpfs_skipped = None;
        for i in 0..opts.nodes {
            let id = i as u64 + 1;
            let data_dir = dir.path().join(format!("node{id}"));
            std::fs::create_dir_all(&data_dir)?;
            if let Some(mib) = opts.data_tmpfs_mib {
                if topology::is_root() {
                    mounts.push(TmpfsMount::mount(&data_dir, mib)?);
                } else {
                    tmpfs_skipped = Some("not root: cannot mount a tmpfs".to_string());
                }
            }
            let clock_file = if opts.clock_hook {
                let f = dir.path().join(format!("node{id}.clock"));
                std::fs::write(&f, "0")?;
                Some(f)
            } else {
                None
            };
            let (http, https, raft_listen, raft_advertised, ns) = if let Some(net) = &net {
                let ip = net.ip(id);
                let raft = SocketAddr::from((ip, 7000));
                let ns = Some(net.ns(id).to_string());
                (
                    SocketAddr::from((ip, 8080)),
                    SocketAddr::from((ip, 8443)),
                    raft,
                    raft,
                    ns,
                )
            } else {
                let http = free_addr()?;
                let https = free_addr()?;
                let raft_listen = free_addr()?;
                let raft_advertised = if opts.proxies {
                    let p = Proxy::start(id, free_addr()?, raft_listen, links.clone())
                        .context("start proxy")?;
                    let a = p.addr();
                    proxies.push(p);
                    a
                } else {
                    raft_listen
                };
                (http, https, raft_listen, raft_advertised, None)
            };
            let client = NodeClient::with_auth(
                &http.to_string(),
                Timeouts {
                    connect: Duration::from_secs(1),
                    request: opts.request_timeout,
                },
                Auth::token(ADMIN_TOKEN),
            )?;
            nodes.push(Node {
                id,
                http,
                https,
                raft_listen,
                raft_advertised,
                log: dir.path().join(format!("node{id}.log")),
                data_dir,
                ns,
                clock_file,
                child: None,
                client,
            });
        }
        let mut c = Cluster {
            nodes,
            links,
            _proxies: proxies,
            bin,
            opts,
            mounts,
            tmpfs_skipped,
            net,
            dir: Some(dir),
            cluster_id: "chaos".into(),
        };
        std::fs::write(c.dir().join("admin.token"), ADMIN_TOKEN)?;
        c.spawn(1, true)?;
        c.wait_ready(1, Duration::from_secs(30))?;
        // One token for every node that joins during the run (wiped nodes join again).
        let token = c
            .client(1)
            .create_join_token(Some(24 * 3600), None)
            .map_err(|e| anyhow!("create a join token: {e}"))?;
        let token = token["token"]
            .as_str()
            .ok_or_else(|| anyhow!("join token reply without a token: {token}"))?;
        std::fs::write(c.dir().join("join.token"), token)?;
        for id in 2..=c.nodes.len() as u64 {
            c.spawn(id, false)?;
            c.wait_live(id, Duration::from_secs(20))?;
            c.join(id)?;
        }
        c.wait_converged(Duration::from_secs(60))?;
        Ok(c)
    }

    /// The tempdir holding data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or_else(|| Path::new("."))
    }

    /// Node `id` (1-based).
    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// HTTP client of node `id`.
    pub fn client(&self, id: u64) -> &NodeClient {
        &self.node(id).client
    }

    /// All node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of nodes whose process is running.
    pub fn running(&mut self) -> Vec<u64> {
        self.nodes
            .iter_mut()
            .filter_map(|n| if n.is_running() { Some(n.id) } else { None })
            .collect()
    }

    /// Start node `id`'s process from its data dir.
    pub fn spawn(&mut self, id: u64, init: bool) -> Result<()> {
        // A node without credentials (first start, or wiped) joins through any running
        // member; one that has them ignores the flags.
        let join_token = self.dir().join("join.token");
        let admin_token = self.dir().join("admin.token");
        let join_via = if init || !join_token.exists() {
            None
        } else {
            let via = self.any_running_except(id).unwrap_or(1);
            Some(format!("https://{}", self.node(via).https))
        };
        let bin = self.bin.clone();
        let opts = self.opts.clone();
        let cluster_id = self.cluster_id.clone();
        let links = self.links.clone();
        let n = self.node_mut(id);
        if n.is_running() {
            bail!("node {id} is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .context("open node log")?;
        let log2 = log.try_clone()?;
        let mut cmd = match &n.ns {
            Some(ns) => {
                // `ip netns exec` enters the namespace and execs the node: same pid.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        if let Some(f) = &n.clock_file {
            cmd.env("ZSNODE_CLOCK_OFFSET_FILE", f);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(&n.data_dir)
            .arg("--raft-addr")
            .arg(n.raft_listen.to_string())
            .arg("--advertise-raft-addr")
            .arg(n.raft_advertised.to_string())
            .arg("--http-addr")
            .arg(n.http.to_string())
            .arg("--https-addr")
            .arg(n.https.to_string())
            .arg("--admin-token-file")
            .arg(&admin_token)
            .arg("--cluster-id")
            .arg(&cluster_id)
            .args(&opts.extra_args)
            .env("RUST_LOG", &opts.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log));
        if init {
            cmd.arg("--init");
        }
        if let Some(url) = join_via {
            cmd.arg("--join")
                .arg(url)
                .arg("--join-token-file")
                .arg(&join_token);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        links.register_pid(id, child.id());
        n.child = Some(child);
        Ok(())
    }

    /// Restart a stopped node from its data dir (no `--init`).
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.spawn(id, false)
    }

    /// `kill -9` node `id` and reap it.
    pub fn kill9(&mut self, id: u64) -> Result<()> {
        let n = self.node_mut(id);
        let Some(mut c) = n.child.take() else {
            bail!("node {id} is not running")
        };
        c.kill().with_context(|| format!("kill -9 node {id}"))?;
        c.wait()?;
        Ok(())
    }

    /// SIGTERM node `id` and wait up to `timeout` for a clean exit (then SIGKILL). Returns
    /// whether it exited by itself.
    pub fn sigterm(&mut self, id: u64, timeout: Duration) -> Result<bool> {
        let n = self.node_mut(id);
        let Some(mut c) = n.child.take() else {
            bail!("node {id} is not running")
        };
        // SAFETY: plain kill(2) on a child pid we own and have not reaped yet.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!("kill -TERM node {id}: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait()? {
                return Ok(status.success() || status.code().is_some());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        c.kill()?;
        c.wait()?;
        Ok(false)
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) node `id`: a stalled process, not a dead one.
    pub fn pause(&mut self, id: u64, frozen: bool) -> Result<()> {
        let pid = self
            .node(id)
            .pid()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: plain kill(2) on a child pid we own and have not reaped yet.
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            bail!(
                "signal {sig} to node {id}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Add node `id` through node 1 (or any running node) as a voter.
    pub fn join(&mut self, id: u64) -> Result<()> {
        let n = self.node(id);
        let (raft, api) = (n.raft_advertised.to_string(), n.http.to_string());
        let via = self.any_running_except(id)?;
        // Retry while the cluster is settling (e.g. the leader was just elected).
        wait_for(
            &format!("node {id} to join"),
            Duration::from_secs(60),
            Duration::from_millis(500),
            || match self.client(via).add_member(id, &raft, &api) {
                Ok(_) => Ok(Some(())),
                Err(e) => Err(anyhow!(e)),
            },
        )
    }

    fn any_running_except(&mut self, id: u64) -> Result<u64> {
        self.running()
            .into_iter()
            .find(|n| *n != id)
            .ok_or_else(|| anyhow!("no running node besides {id}"))
    }

    /// Wait until `/health/live` of node `id` answers.
    pub fn wait_live(&self, id: u64, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("node {id} live"),
            timeout,
            Duration::from_millis(100),
            || self.client(id).live().map(Some).map_err(|e| anyhow!(e)),
        )
    }

    /// Wait until `/health/ready` of node `id` says ready.
    pub fn wait_ready(&self, id: u64, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("node {id} ready"),
            timeout,
            Duration::from_millis(100),
            || {
                let r = self.client(id).ready().map_err(|e| anyhow!(e))?;
                if r.ready {
                    Ok(Some(()))
                } else {
                    Err(anyhow!("not ready: {}", r.reason))
                }
            },
        )
    }

    /// `/cluster/status` of every running node.
    pub fn statuses(&mut self) -> Vec<(u64, Result<ClusterStatus>)> {
        let ids = self.running();
        ids.into_iter()
            .map(|id| (id, self.client(id).status().map_err(|e| anyhow!(e))))
            .collect()
    }

    /// Wait until the nodes in `among` agree on one leader in `among` (with the leader itself
    /// reporting role Leader) and return its id.
    pub fn wait_leader_among(&self, among: &[u64], timeout: Duration) -> Result<u64> {
        wait_for(
            &format!("a leader among {among:?}"),
            timeout,
            Duration::from_millis(50),
            || {
                let mut leader = None;
                for &id in among {
                    let st = self.client(id).status().map_err(|e| anyhow!(e))?;
                    match (st.leader_id, leader) {
                        (None, _) => return Ok(None),
                        (Some(l), None) => leader = Some(l),
                        (Some(l), Some(prev)) if l != prev => return Ok(None),
                        _ => {}
                    }
                }
                let Some(l) = leader.filter(|l| among.contains(l)) else {
                    return Ok(None);
                };
                let st = self.client(l).status().map_err(|e| anyhow!(e))?;
                Ok((st.role == "Leader").then_some(l))
            },
        )
    }

    /// Wait for a leader agreed on by all running nodes.
    pub fn wait_leader(&mut self, timeout: Duration) -> Result<u64> {
        let running = self.running();
        self.wait_leader_among(&running, timeout)
    }

    /// Wait until every running node is ready, one leader is agreed, and all applied indexes
    /// are equal to the leader's commit index. Returns that index.
    pub fn wait_converged(&mut self, timeout: Duration) -> Result<u64> {
        let running = self.running();
        let leader = self.wait_leader_among(&running, timeout)?;
        wait_for(
            "applied indexes to converge",
            timeout,
            Duration::from_millis(100),
            || {
                let lst = self.client(leader).status().map_err(|e| anyhow!(e))?;
                let mut applied = Vec::new();
                for &id in &running {
                    let st = self.client(id).status().map_err(|e| anyhow!(e))?;
                    applied.push((id, st.applied_index));
                }
                if applied
                    .iter()
                    .all(|(_, a)| *a == lst.applied_index && *a >= lst.commit_index)
                {
                    for &id in &running {
                        if !self.client(id).ready().map_err(|e| anyhow!(e))?.ready {
                            return Ok(None);
                        }
                    }
                    Ok(Some(lst.applied_index))
                } else {
                    Err(anyhow!(
                        "applied indexes {applied:?}, leader {leader} commit {}",
                        lst.commit_index
                    ))
                }
            },
        )
    }

    /// Cut node `id` off from every other node (both directions). Clients still reach it.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.ids().into_iter().filter(|o| *o != id).collect();
        self.partition(&[id], &others)
            .unwrap_or_else(|e| panic!("isolate node {id}: {e:#}"));
    }

    /// Remove every partition, link cut and shaping.
    pub fn heal(&self) {
        self.heal_all()
            .unwrap_or_else(|e| panic!("heal the network: {e:#}"));
    }

    /// The topology the nodes run on.
    pub fn topology(&self) -> Topology {
        self.opts.topology
    }

    /// `http://ip:port` of every node's HTTP API.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.http))
            .collect()
    }

    /// Drop traffic from `from` to `to` (one direction).
    pub fn block(&self, from: u64, to: u64) -> Result<()> {
        match &self.net {
            Some(net) => net.block(from, to),
            None => {
                self.links.block(from, to);
                Ok(())
            }
        }
    }

    /// Cut every link between a node of `a` and a node of `b`, both directions.
    pub fn partition(&self, a: &[u64], b: &[u64]) -> Result<()> {
        for &x in a {
            for &y in b.iter().filter(|y| **y != x) {
                self.block(x, y)?;
                self.block(y, x)?;
            }
        }
        Ok(())
    }

    /// Take node `id`'s whole link down: neither peers nor clients reach it. With proxies
    /// (which only carry Raft traffic) this is [`Cluster::isolate`].
    pub fn link_down(&self, id: u64) -> Result<()> {
        match &self.net {
            Some(net) => net.set_link(id, false),
            None => {
                self.isolate(id);
                Ok(())
            }
        }
    }

    /// Add delay/loss to node `id`'s traffic: `tc` on its veth (netns), in the proxy otherwise.
    /// Returns how it was done (`netem`, `tbf` or `proxy`).
    pub fn shape(&self, id: u64, s: Shaping) -> Result<&'static str> {
        match &self.net {
            Some(net) => {
                net.shape(id, s)?;
                Ok(match net.shaping_mode() {
                    topology::ShapingMode::Netem => "netem",
                    topology::ShapingMode::Tbf => "tbf",
                })
            }
            None => {
                self.links.shape(
                    id,
                    crate::proxy::Shaping {
                        delay_ms: s.delay_ms,
                        jitter_ms: s.jitter_ms,
                        loss_pct: s.loss_pct,
                    },
                );
                Ok("proxy")
            }
        }
    }

    /// Remove every partition, link cut and shaping.
    pub fn heal_all(&self) -> Result<()> {
        self.links.heal();
        match &self.net {
            Some(net) => net.heal(),
            None => Ok(()),
        }
    }

    /// Step node `id`'s wall clock by `offset_ms` from real time (needs `clock_hook`).
    pub fn set_clock_offset(&self, id: u64, offset_ms: i64) -> Result<()> {
        let f = self
            .node(id)
            .clock_file
            .as_ref()
            .ok_or_else(|| anyhow!("cluster started without clock_hook"))?;
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, offset_ms.to_string())?;
        std::fs::rename(&tmp, f)?;
        Ok(())
    }

    /// Are the data dirs on a size-limited tmpfs (so [`Cluster::fill_disk`] works)?
    pub fn has_small_disks(&self) -> bool {
        !self.mounts.is_empty()
    }

    /// Fill node `id`'s data filesystem with a file until ENOSPC; returns the bytes written.
    pub fn fill_disk(&self, id: u64) -> Result<u64> {
        use std::io::Write;
        if !self.has_small_disks() {
            bail!("data dirs are not on a size-limited tmpfs");
        }
        let path = self.node(id).data_dir.join("chaos-disk-fill");
        let mut f = std::fs::File::create(&path).context("create fill file")?;
        let chunk = vec![0xa5u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(anyhow!(e).context("fill disk")),
            }
        }
        Ok(written)
    }

    /// Remove the fill file of [`Cluster::fill_disk`].
    pub fn free_disk(&self, id: u64) -> Result<()> {
        let path = self.node(id).data_dir.join("chaos-disk-fill");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Delete everything in node `id`'s data dir (the node must be stopped): it restarts as a
    /// fresh, uninitialised node.
    pub fn wipe(&mut self, id: u64) -> Result<()> {
        if self.node_mut(id).is_running() {
            bail!("node {id} is running; stop it before wiping its data");
        }
        let dir = self.node(id).data_dir.clone();
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
        Ok(())
    }

    /// The last `lines` lines of every node's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log)
                .unwrap_or_else(|e| format!("(cannot read log: {e})"));
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            out.push_str(&format!(
                "===== node {} log ({}; last {} of {} lines) =====\n",
                n.id,
                n.log.display(),
                all.len() - start,
                all.len()
            ));
            for l in &all[start..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Does node `id`'s log contain `needle`?
    pub fn log_contains(&self, id: u64, needle: &str) -> bool {
        std::fs::read_to_string(&self.node(id).log)
            .map(|t| t.contains(needle))
            .unwrap_or(false)
    }

    /// Keep the tempdir (data dirs and logs) after the test, returning its path.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.dir.take().map(|d| d.keep())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if failed {
            eprintln!("{}", self.log_tails(80));
        }
        if failed || std::env::var_os("CHAOS_KEEP").is_some() {
            if let Some(p) = self.keep() {
                eprintln!("chaos: kept data dirs and full logs in {}", p.display());
            }
        }
    }
}
