//! Where the test cluster's nodes live and how their network is cut.
//!
//! * **netns**: every node runs in its own network namespace, attached by a veth pair to a
//!   bridge created for this cluster; the bridge's root-side address (`.254`) lets the test
//!   process reach every node's HTTP API directly. Faults are real network faults: blackhole
//!   routes inside a namespace drop a direction of traffic, a veth set down isolates a node,
//!   `tc` shapes a link. Everything is removed on drop; leftovers of a crashed earlier run (same
//!   name prefix, dead owner pid) are removed when the next cluster is created.
//! * **proxy**: the nodes run on 127.0.0.1 and node-to-node traffic goes through per-node TCP
//!   proxies ([`crate::proxy`]) that cut links and add delay/loss in user space.
//!
//! [`selected`] picks netns when running as root and a probe `ip netns add/del` succeeds, else
//! proxy; `CHAOS_TOPOLOGY=netns|proxy` overrides. The choice and its reason are reported.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};

/// Which topology a cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One network namespace per node on a private bridge.
    Netns,
    /// Nodes on 127.0.0.1, Raft traffic through per-node fault proxies.
    Proxy,
}

impl Topology {
    /// `netns` or `proxy`.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Netns => "netns",
            Topology::Proxy => "proxy",
        }
    }
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The topology chaos runs use here and why (computed once per process).
pub fn selected() -> (Topology, String) {
    static SEL: OnceLock<(Topology, String)> = OnceLock::new();
    SEL.get_or_init(|| {
        let forced = std::env::var("CHAOS_TOPOLOGY").ok();
        match forced.as_deref() {
            Some("proxy") => (Topology::Proxy, "CHAOS_TOPOLOGY=proxy".into()),
            Some("netns") => (Topology::Netns, "CHAOS_TOPOLOGY=netns".into()),
            _ => match probe_netns() {
                Ok(()) => (Topology::Netns, "root and `ip netns add/del` works".into()),
                Err(e) => (Topology::Proxy, format!("netns unavailable: {e:#}")),
            },
        }
    })
    .clone()
}

/// Are we root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn probe_netns() -> Result<()> {
    if !is_root() {
        bail!("not root");
    }
    let name = format!("{PREFIX}{:06x}probe", std::process::id());
    run(&["ip", "netns", "add", &name])?;
    run(&["ip", "netns", "del", &name])?;
    Ok(())
}

/// Run a command; an error carries its stderr.
pub fn run(args: &[&str]) -> Result<()> {
    output(args).map(|_| ())
}

/// Run a command and return its stdout; an error carries its stderr.
fn output(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prefix of every bridge, veth, namespace (and tempdir holding a tmpfs mount) we create:
/// `zc<owner pid, 6 hex><cluster no, 2 hex>...`.
pub const PREFIX: &str = "zc";
/// Tempdir prefix of clusters whose data dirs may carry tmpfs mounts.
pub const TEMPDIR_PREFIX: &str = "zs-chaos-zc";

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The owner pid encoded in one of our names, if it is ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let hex = rest.get(..6)?;
    u32::from_str_radix(hex, 16).ok()
}

/// Remove namespaces, links and tmpfs mounts left behind by crashed runs (owner pid dead).
/// Resources of live processes (including parallel test runs) are left alone.
pub fn cleanup_stale() {
    let stale = |name: &str| owner_pid(name).is_some_and(|p| !pid_alive(p));
    // Mounts first: a tmpfs under a stale tempdir.
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        for line in mounts.lines() {
            let mut f = line.split_whitespace();
            let (Some(_), Some(mp)) = (f.next(), f.next()) else {
                continue;
            };
            if let Some(i) = mp.find(TEMPDIR_PREFIX) {
                let tail = &mp[i + TEMPDIR_PREFIX.len() - PREFIX.len()..];
                if stale(tail) {
                    eprintln!("chaos: removing stale mount {mp}");
                    let _ = run(&["umount", "-l", mp]);
                }
            }
        }
    }
    if let Ok(list) = output(&["ip", "netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if stale(name) {
                eprintln!("chaos: removing stale namespace {name}");
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(list) = output(&["ip", "-o", "link", "show"]) {
        for line in list.lines() {
            // "12: zc0012ab01b: <...>" or "13: zc..h1@if12: <...>"
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if stale(name) {
                eprintln!("chaos: removing stale link {name}");
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// Subnets (third octet of 10.199.x.0/24) taken by clusters of this process.
fn subnets() -> &'static Mutex<HashSet<u8>> {
    static S: OnceLock<Mutex<HashSet<u8>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Pick a /24 of 10.199.0.0/16 that no interface on this host uses and no other cluster of this
/// process holds.
fn pick_subnet(seed: u32) -> Result<u8> {
    let used_on_host = output(&["ip", "-o", "-4", "addr", "show"]).unwrap_or_default();
    let mut mine = subnets().lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..250u32 {
        let x = ((seed + i) % 250) as u8;
        let needle = format!("10.199.{x}.");
        if !mine.contains(&x) && !used_on_host.contains(&needle) {
            mine.insert(x);
            return Ok(x);
        }
    }
    bail!("no free /24 in 10.199.0.0/16")
}

/// Link shaping of one node's veth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaping {
    /// Added one-way delay in ms.
    pub delay_ms: u32,
    /// Jitter in ms.
    pub jitter_ms: u32,
    /// Packet loss in percent.
    pub loss_pct: f64,
}

/// How `tc` shapes links here: `netem` when the kernel has `sch_netem`, else a token bucket
/// (`tbf`) whose rate limit and bounded queue give delay under load and tail drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapingMode {
    /// `tc qdisc ... netem delay .. loss ..`.
    Netem,
    /// `tc qdisc ... tbf rate .. latency ..` (kernel without sch_netem).
    Tbf,
}

/// One node's place in a [`Netns`] topology.
#[derive(Debug, Clone)]
pub struct NsNode {
    /// Namespace name.
    pub ns: String,
    /// Root-side veth (enslaved to the bridge).
    pub host_veth: String,
    /// Namespace-side veth.
    pub ns_veth: String,
    /// The node's address.
    pub ip: Ipv4Addr,
}

/// One cluster's namespaces, veths and bridge; removed on drop.
pub struct Netns {
    /// Bridge name.
    pub bridge: String,
    /// Third octet of the cluster's 10.199.x.0/24.
    pub subnet: u8,
    /// Node 1 at index 0, ...
    pub nodes: Vec<NsNode>,
    blocked: Mutex<HashSet<(u64, u64)>>,
    down: Mutex<HashSet<u64>>,
    shaped: Mutex<HashSet<u64>>,
    shaping_mode: OnceLock<ShapingMode>,
}

static CLUSTER_NO: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Create a bridge and `n` namespaces (nodes 1..=n) with veths on it.
    pub fn create(n: usize) -> Result<Netns> {
        cleanup_stale();
        let no = CLUSTER_NO.fetch_add(1, Ordering::Relaxed) % 256;
        let pid = std::process::id() & 0xff_ffff;
        let tag = format!("{PREFIX}{pid:06x}{no:02x}");
        let subnet = pick_subnet(pid.wrapping_mul(7).wrapping_add(no))?;
        let mut net = Netns {
            bridge: format!("{tag}b"),
            subnet,
            nodes: Vec::new(),
            blocked: Mutex::new(HashSet::new()),
            down: Mutex::new(HashSet::new()),
            shaped: Mutex::new(HashSet::new()),
            shaping_mode: OnceLock::new(),
        };
        // From here on `net`'s Drop removes whatever was created, also on error.
        let br = net.bridge.clone();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.199.{subnet}.254/24"),
            "dev",
            &br,
        ])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for i in 1..=n {
            let node = NsNode {
                ns: format!("{tag}n{i}"),
                host_veth: format!("{tag}h{i}"),
                ns_veth: format!("{tag}p{i}"),
                ip: Ipv4Addr::new(10, 199, subnet, i as u8),
            };
            net.nodes.push(node.clone());
            run(&["ip", "netns", "add", &node.ns])?;
            run(&[
                "ip",
                "link",
                "add",
                &node.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &node.ns_veth,
            ])?;
            run(&["ip", "link", "set", &node.host_veth, "master", &br])?;
            run(&["ip", "link", "set", &node.host_veth, "up"])?;
            run(&["ip", "link", "set", &node.ns_veth, "netns", &node.ns])?;
            run(&[
                "ip",
                "-n",
                &node.ns,
                "addr",
                "add",
                &format!("{}/24", node.ip),
                "dev",
                &node.ns_veth,
            ])?;
            run(&["ip", "-n", &node.ns, "link", "set", &node.ns_veth, "up"])?;
            run(&["ip", "-n", &node.ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn node(&self, id: u64) -> Result<&NsNode> {
        self.nodes
            .get((id as usize).wrapping_sub(1))
            .ok_or_else(|| anyhow!("no node {id} in the topology"))
    }

    /// Node `id`'s address.
    pub fn ip(&self, id: u64) -> Ipv4Addr {
        self.nodes[(id - 1) as usize].ip
    }

    /// Namespace of node `id`.
    pub fn ns(&self, id: u64) -> &str {
        &self.nodes[(id - 1) as usize].ns
    }

    /// Drop every packet node `from` sends to node `to` (a blackhole route in `from`'s
    /// namespace). Replies of connections `to` opened are dropped too, so established streams
    /// stall as on a real cut link.
    pub fn block(&self, from: u64, to: u64) -> Result<()> {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if b.contains(&(from, to)) {
            return Ok(());
        }
        let f = self.node(from)?;
        let t = self.node(to)?;
        run(&[
            "ip",
            "-n",
            &f.ns,
            "route",
            "add",
            "blackhole",
            &format!("{}/32", t.ip),
        ])?;
        b.insert((from, to));
        Ok(())
    }

    /// Is `(from, to)` blocked?
    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(from, to))
    }

    /// Take node `id`'s link down (nothing in or out, the test process included) or up.
    pub fn set_link(&self, id: u64, up: bool) -> Result<()> {
        let n = self.node(id)?;
        run(&[
            "ip",
            "link",
            "set",
            &n.host_veth,
            if up { "up" } else { "down" },
        ])?;
        let mut d = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if up {
            d.remove(&id);
        } else {
            d.insert(id);
        }
        Ok(())
    }

    /// How links are shaped here (probed on first use).
    pub fn shaping_mode(&self) -> ShapingMode {
        *self.shaping_mode.get_or_init(|| {
            let dev = &self.nodes[0].host_veth;
            let ok = run(&[
                "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms",
            ])
            .is_ok();
            if ok {
                let _ = run(&["tc", "qdisc", "del", "dev", dev, "root"]);
                ShapingMode::Netem
            } else {
                ShapingMode::Tbf
            }
        })
    }

    /// Shape both directions of node `id`'s link.
    pub fn shape(&self, id: u64, s: Shaping) -> Result<()> {
        let n = self.node(id)?.clone();
        let mode = self.shaping_mode();
        let args: Vec<String> = match mode {
            ShapingMode::Netem => {
                let mut a = vec!["netem".into(), "delay".into(), format!("{}ms", s.delay_ms)];
                if s.jitter_ms > 0 {
                    a.push(format!("{}ms", s.jitter_ms));
                }
                if s.loss_pct > 0.0 {
                    a.push("loss".into());
                    a.push(format!("{}%", s.loss_pct));
                }
                a
            }
            // A slow link: 256 kbit/s, a queue bounded at `delay` worth of traffic (beyond
            // it packets are dropped).
            ShapingMode::Tbf => vec![
                "tbf".into(),
                "rate".into(),
                "256kbit".into(),
                "burst".into(),
                "4kb".into(),
                "latency".into(),
                format!("{}ms", s.delay_ms.max(20)),
            ],
        };
        for (ns, dev) in [(None, &n.host_veth), (Some(&n.ns), &n.ns_veth)] {
            let mut cmd: Vec<&str> = vec!["tc"];
            if let Some(ns) = ns {
                cmd.extend(["-n", ns.as_str()]);
            }
            cmd.extend(["qdisc", "replace", "dev", dev.as_str(), "root"]);
            cmd.extend(args.iter().map(String::as_str));
            run(&cmd)?;
        }
        self.shaped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        Ok(())
    }

    /// Remove every block, bring every link up and remove all shaping.
    pub fn heal(&self) -> Result<()> {
        let mut errs = Vec::new();
        let blocked: Vec<(u64, u64)> = self
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (from, to) in blocked {
            let (f, t) = (self.node(from)?, self.node(to)?);
            if let Err(e) = run(&[
                "ip",
                "-n",
                &f.ns,
                "route",
                "del",
                "blackhole",
                &format!("{}/32", t.ip),
            ]) {
                errs.push(e);
            }
        }
        let down: Vec<u64> = self
            .down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for id in down {
            if let Err(e) = self.set_link(id, true) {
                errs.push(e);
            }
        }
        let shaped: Vec<u64> = self
            .shaped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for id in shaped {
            let n = self.node(id)?;
            for (ns, dev) in [(None, &n.host_veth), (Some(&n.ns), &n.ns_veth)] {
                let mut cmd: Vec<&str> = vec!["tc"];
                if let Some(ns) = ns {
                    cmd.extend(["-n", ns.as_str()]);
                }
                cmd.extend(["qdisc", "del", "dev", dev.as_str(), "root"]);
                if let Err(e) = run(&cmd) {
                    errs.push(e);
                }
            }
        }
        match errs.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e.context("heal netns topology")),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.nodes {
            // Deleting the namespace destroys its veth end, which removes the pair.
            let _ = run(&["ip", "netns", "del", &n.ns]);
            let _ = run(&["ip", "link", "del", &n.host_veth]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
        subnets()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.subnet);
    }
}

/// A tmpfs mounted by the test (a node's data dir with a fixed size, so "disk full" can be
/// produced by filling it); unmounted on drop.
pub struct TmpfsMount {
    /// Mount point.
    pub path: PathBuf,
}

impl TmpfsMount {
    /// Mount a `mib` MiB tmpfs at `path` (must exist). Needs root.
    pub fn mount(path: &Path, mib: u64) -> Result<TmpfsMount> {
        if !is_root() {
            bail!("mounting a tmpfs needs root");
        }
        let p = path.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m,mode=0755"),
            "tmpfs",
            p,
        ])?;
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Some(p) = self.path.to_str() {
            if run(&["umount", p]).is_err() {
                let _ = run(&["umount", "-l", p]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("zc00abcd01b"), Some(0xabcd));
        assert_eq!(owner_pid("zc00abcd01n3"), Some(0xabcd));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("zcxyz"), None);
    }

    #[test]
    fn names_fit_interface_limit() {
        // IFNAMSIZ is 16 including the NUL: 15 visible characters at most.
        let tag = format!("{PREFIX}{:06x}{:02x}", 0xff_ffffu32, 0xffu32);
        for name in [format!("{tag}b"), format!("{tag}h9"), format!("{tag}p9")] {
            assert!(name.len() <= 15, "{name} is too long for an interface");
        }
    }
}
