//! A fault-injecting TCP proxy for node-to-node (Raft/gRPC) traffic.
//!
//! Every node advertises the address of its own [`Proxy`] as its Raft address, so all traffic
//! *to* node `j` enters through `j`'s proxy. Membership is replicated, so every peer dials the
//! same address for `j`; to still cut individual links (e.g. leader ↔ follower but not
//! follower ↔ follower) the proxy finds out which node opened each connection: the peer's
//! ephemeral port → the socket inode in `/proc/net/tcp{,6}` → the registered node process that
//! holds that inode in `/proc/<pid>/fd`. A blocked link `(from, to)` kills live connections
//! from `from` into `to`'s proxy and closes new ones at once. A gRPC request and its response
//! travel on the connection the caller opened, so blocking `(a, b)` and `(b, a)` cuts both
//! directions completely: a real partition, not a dropped message here and there.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Node id used for connections whose source could not be identified.
pub const UNKNOWN_SOURCE: u64 = 0;

struct Conn {
    from: u64,
    to: u64,
    client: TcpStream,
    upstream: TcpStream,
}

#[derive(Default)]
struct LinkState {
    blocked: HashSet<(u64, u64)>,
    /// pid → node id of the running node processes.
    pids: HashMap<u32, u64>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    /// node → added delay/loss on every connection to or from it.
    shaping: HashMap<u64, Shaping>,
}

/// User-space link shaping of one node's proxied traffic: every chunk forwarded to or from the
/// node waits `delay_ms` ± `jitter_ms`; with probability `loss_pct` % a chunk is held another
/// 200 ms, the stall a TCP retransmission of a lost segment would cause (a byte stream cannot
/// lose bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaping {
    /// Added delay per chunk, ms.
    pub delay_ms: u32,
    /// Uniform jitter, ± ms.
    pub jitter_ms: u32,
    /// Chance of a retransmission-like stall, percent.
    pub loss_pct: f64,
}

/// Stall standing in for a lost segment's retransmission.
const LOSS_STALL: Duration = Duration::from_millis(200);

/// Link rules and live connections shared by all proxies of one cluster.
#[derive(Default)]
pub struct Links {
    state: Mutex<LinkState>,
    /// Connections refused because their link was blocked.
    pub refused: AtomicU64,
    /// Connections cut by a block.
    pub cut: AtomicU64,
    /// Connections whose source node could not be identified.
    pub unidentified: AtomicU64,
}

impl Links {
    /// A fresh, fully connected link table.
    pub fn new() -> Arc<Self> {
        Arc::new(Links::default())
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panicking proxy thread must not wedge the test's fault control.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that node `id` now runs as process `pid` (call after every (re)start).
    pub fn register_pid(&self, id: u64, pid: u32) {
        let mut s = self.lock();
        s.pids.retain(|_, n| *n != id);
        s.pids.insert(pid, id);
    }

    /// Block traffic from `from` to `to` (one direction) and cut its live connections.
    pub fn block(&self, from: u64, to: u64) {
        let mut s = self.lock();
        s.blocked.insert((from, to));
        let doomed: Vec<u64> = s
            .conns
            .iter()
            .filter(|(_, c)| c.from == from && c.to == to)
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            if let Some(c) = s.conns.remove(&k) {
                let _ = c.client.shutdown(Shutdown::Both);
                let _ = c.upstream.shutdown(Shutdown::Both);
                self.cut.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Block both directions between `a` and `b`.
    pub fn partition_pair(&self, a: u64, b: u64) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Cut `id` off from every node in `others`, both directions.
    pub fn isolate(&self, id: u64, others: &[u64]) {
        for &o in others.iter().filter(|o| **o != id) {
            self.partition_pair(id, o);
        }
    }

    /// Remove every rule (blocks and shaping).
    pub fn heal(&self) {
        let mut s = self.lock();
        s.blocked.clear();
        s.shaping.clear();
    }

    /// Add delay/loss to every connection to or from node `id` (replacing earlier shaping).
    pub fn shape(&self, id: u64, shaping: Shaping) {
        self.lock().shaping.insert(id, shaping);
    }

    /// The shaping of the link `a` ↔ `b` (the first shaped end wins).
    fn shaping_of(&self, a: u64, b: u64) -> Option<Shaping> {
        let s = self.lock();
        s.shaping.get(&a).or_else(|| s.shaping.get(&b)).copied()
    }

    /// Is `(from, to)` blocked?
    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.lock().blocked.contains(&(from, to))
    }

    /// Live proxied connections as (from, to) pairs.
    pub fn live(&self) -> Vec<(u64, u64)> {
        self.lock().conns.values().map(|c| (c.from, c.to)).collect()
    }

    fn pids(&self) -> Vec<(u32, u64)> {
        self.lock().pids.iter().map(|(p, n)| (*p, *n)).collect()
    }
}

/// Find the socket inode of the TCP connection whose local port is `local_port` and remote
/// port is `remote_port` (both on loopback).
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = |s: &str| {
                s.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if port(f[1]) == Some(local_port) && port(f[2]) == Some(remote_port) {
                if let Ok(inode) = f[9].parse::<u64>() {
                    if inode != 0 {
                        return Some(inode);
                    }
                }
            }
        }
    }
    None
}

/// Which registered process holds socket `inode`.
fn owner_of(inode: u64, pids: &[(u32, u64)]) -> Option<u64> {
    let want = format!("socket:[{inode}]");
    for (pid, node) in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for e in dir.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                if target.as_os_str() == want.as_str() {
                    return Some(*node);
                }
            }
        }
    }
    None
}

/// Identify the node that opened a connection from `peer` to the proxy port `proxy_port`.
pub fn identify_source(peer: SocketAddr, proxy_port: u16, links: &Links) -> Option<u64> {
    // The client's socket can lag a moment behind accept() in /proc; retry briefly.
    for _ in 0..5 {
        if let Some(inode) = socket_inode(peer.port(), proxy_port) {
            if let Some(n) = owner_of(inode, &links.pids()) {
                return Some(n);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// One listening proxy in front of node `target`.
pub struct Proxy {
    target: u64,
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on `listen` (port 0 = any free port) and forward to `upstream`.
    pub fn start(
        target: u64,
        listen: SocketAddr,
        upstream: SocketAddr,
        links: Arc<Links>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let listen = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{target}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let links = links.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("proxy-{target}-conn"))
                        .spawn(move || serve(client, target, listen.port(), upstream, links));
                }
            })?;
        Ok(Proxy {
            target,
            listen,
            stop,
            accept: Some(accept),
        })
    }

    /// The address peers dial (advertise this as the node's Raft address).
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The node behind this proxy.
    pub fn target(&self) -> u64 {
        self.target
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(client: TcpStream, target: u64, proxy_port: u16, upstream: SocketAddr, links: Arc<Links>) {
    let Ok(peer) = client.peer_addr() else { return };
    let from = match identify_source(peer, proxy_port, &links) {
        Some(n) => n,
        None => {
            links.unidentified.fetch_add(1, Ordering::Relaxed);
            UNKNOWN_SOURCE
        }
    };
    if links.is_blocked(from, target) {
        links.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1)) else {
        // Node down: closing the client mimics a refused connection.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        up.try_clone(),
        client.try_clone(),
        up.try_clone(),
    ) else {
        return;
    };
    // Check-and-register under one lock so a concurrent block() cannot miss this connection.
    let key = {
        let mut s = links.lock();
        if s.blocked.contains(&(from, target)) {
            drop(s);
            links.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
            return;
        }
        s.next_conn += 1;
        let key = s.next_conn;
        s.conns.insert(
            key,
            Conn {
                from,
                to: target,
                client: c3,
                upstream: u3,
            },
        );
        key
    };
    let links2 = links.clone();
    let t = std::thread::Builder::new()
        .name("proxy-pipe".into())
        .spawn(move || pipe(c2, u2, (from, target), &links2));
    pipe(up, client, (from, target), &links);
    if let Ok(t) = t {
        let _ = t.join();
    }
    links.lock().conns.remove(&key);
}

/// Copy `from` → `to` until either side ends, then shut both down so the other pipe ends too.
/// Chunks wait as the link's [`Shaping`] says.
fn pipe(mut from: TcpStream, mut to: TcpStream, link: (u64, u64), links: &Links) {
    let mut buf = [0u8; 64 * 1024];
    let mut rng = (link.0 << 32) ^ link.1 ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(s) = links.shaping_of(link.0, link.1) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let jitter = if s.jitter_ms > 0 {
                        (rng % (2 * s.jitter_ms as u64 + 1)) as i64 - s.jitter_ms as i64
                    } else {
                        0
                    };
                    let mut wait =
                        Duration::from_millis((s.delay_ms as i64 + jitter).max(0) as u64);
                    if ((rng >> 20) % 10_000) as f64 / 100.0 < s.loss_pct {
                        wait += LOSS_STALL;
                    }
                    std::thread::sleep(wait);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let mut w = c;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn roundtrip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    }

    #[test]
    fn identifies_this_process_and_blocks_and_heals() {
        let links = Links::new();
        // This test process plays node 7.
        links.register_pid(7, std::process::id());
        let p = Proxy::start(
            1,
            "127.0.0.1:0".parse().unwrap(),
            echo_server(),
            links.clone(),
        )
        .unwrap();
        assert_eq!(roundtrip(p.addr()).unwrap(), b"ping");

        // A live connection is cut by a block.
        let mut live = TcpStream::connect(p.addr()).unwrap();
        live.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        live.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        live.read_exact(&mut buf).unwrap();
        assert!(
            links.live().contains(&(7, 1)),
            "source identified via /proc: {:?}",
            links.live()
        );
        links.block(7, 1);
        let r = live.write_all(b"ping").and_then(|_| live.read(&mut buf));
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "cut connection still delivered data: {r:?}"
        );
        // New connections are refused while blocked...
        assert!(roundtrip(p.addr()).is_err());
        assert!(links.refused.load(Ordering::Relaxed) >= 1);
        // ...but another source's link is unaffected by (7, 1).
        assert!(!links.is_blocked(8, 1));
        links.heal();
        assert_eq!(roundtrip(p.addr()).unwrap(), b"ping");
        assert_eq!(links.unidentified.load(Ordering::Relaxed), 0);
    }
}
