//! A throwaway SSH host for deployment tests: Debian's sshd in a network namespace of its own,
//! reached over a veth pair from the root namespace, accepting password logins of a dedicated
//! user. Needs root; everything (sshd, the user's processes, the user, the namespace) is removed
//! on drop, and leftovers of crashed runs (dead owner pid) when the next host starts.
//!
//! Addressing follows chaos-tests' netns topology: a free 10.199.x.0/24, the root side `.254`,
//! the host `.1`.
#![allow(dead_code)] // Each test uses a different part.

use std::io::Read;
use std::io::Write;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// Namespace names are `zsh<owner pid>_<n>`; users carry the owner pid in their GECOS field.
const NS_PREFIX: &str = "zsh";
const USER_COMMENT: &str = "zs-host-deploy-test pid=";

static HOST_NO: AtomicU32 = AtomicU32::new(0);
/// Serialises subnet picking and user creation among this process's hosts (`useradd` locks
/// /etc/passwd and fails rather than waits when another one holds it).
static SETUP: Mutex<()> = Mutex::new(());

/// Are we root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// One test host; dropped = gone.
pub struct SshHost {
    /// Network namespace sshd runs in.
    pub ns: String,
    /// The host's address (inside `ns`).
    pub ip: Ipv4Addr,
    /// sshd's port.
    pub port: u16,
    /// The login user (not root).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Its password.
    pub password: String,
    /// Its home directory.
    pub home: PathBuf,
    /// sshd's config, host key and log; a known-hosts file for the test.
    pub dir: tempfile::TempDir,
    veth: String,
    user_created: bool,
    ns_created: bool,
    sshd: Option<Child>,
}

fn run(args: &[&str]) -> Result<String, String> {
    run_in(args, None)
}

fn run_in(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("run {}: {e}", args[0]))?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes())
            .map_err(|e| format!("stdin of {}: {e}", args[0]))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn random_alnum(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut r = rand::rng();
    (0..n)
        .map(|_| CHARS[r.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Pids of processes whose real uid is `uid`.
pub fn pids_of_uid(uid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if real == Some(uid) {
            v.push(pid);
        }
    }
    v
}

/// A process's argv joined by spaces ("" once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// SIGKILL every process of `uid`, until none is left (a supervisor may fork meanwhile).
/// Only ever a test user's uid: root and our own uid are refused.
fn kill_uid(uid: u32) {
    // SAFETY: geteuid has no preconditions.
    if uid == 0 || uid == unsafe { libc::geteuid() } {
        return;
    }
    let me = std::process::id();
    for _ in 0..50 {
        let pids: Vec<u32> = pids_of_uid(uid)
            .into_iter()
            .filter(|&p| p > 1 && p != me)
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // SAFETY: kill has no memory preconditions; `p` is a single positive pid of the
            // test user (never 0 or -1, which would address groups or everything).
            unsafe {
                libc::kill(p as libc::pid_t, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Remove namespaces and users of earlier runs whose process is gone.
fn cleanup_stale() {
    let stale = |pid: Option<u32>| pid.is_some_and(|p| !pid_alive(p));
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let owner = name
                .strip_prefix(NS_PREFIX)
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse::<u32>().ok());
            if stale(owner) {
                eprintln!("ssh_host: removing stale namespace {name}");
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 5 || !f[0].starts_with("zst") {
                continue;
            }
            let owner = f[4]
                .strip_prefix(USER_COMMENT)
                .and_then(|p| p.parse::<u32>().ok());
            let uid = f[2].parse::<u32>().unwrap_or(0);
            if stale(owner) && uid != 0 {
                eprintln!("ssh_host: removing stale user {}", f[0]);
                kill_uid(uid);
                let _ = run(&["userdel", "-r", f[0]]);
            }
        }
    }
}

fn pick_subnet(seed: u32) -> Result<u8, String> {
    let used = run(&["ip", "-o", "-4", "addr", "show"]).unwrap_or_default();
    for i in 0..250u32 {
        let x = ((seed + i) % 250) as u8;
        if !used.contains(&format!("10.199.{x}.")) {
            return Ok(x);
        }
    }
    Err("no free /24 in 10.199.0.0/16".into())
}

impl SshHost {
    /// Create the namespace, the user and start sshd; returns once sshd answers.
    pub fn start() -> Result<SshHost, String> {
        let pid = std::process::id();
        let no = HOST_NO.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("zs-sshhost-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut h = SshHost {
            ns: format!("{NS_PREFIX}{pid}_{no}"),
            ip: Ipv4Addr::UNSPECIFIED,
            port: 22,
            user: format!("zst{}", random_alnum(8).to_lowercase()),
            uid: 0,
            password: random_alnum(24),
            home: PathBuf::new(),
            dir,
            veth: format!("zsv{pid}_{no}"),
            user_created: false,
            ns_created: false,
            sshd: None,
        };
        // From here on Drop removes whatever was created, also on error.
        {
            let _g = SETUP.lock().unwrap_or_else(|p| p.into_inner());
            cleanup_stale();
            let subnet = pick_subnet(pid.wrapping_mul(13).wrapping_add(no * 7 + 101))?;
            h.ip = Ipv4Addr::new(10, 199, subnet, 1);
            let peer = format!("zsp{pid}_{no}");
            run(&["ip", "netns", "add", &h.ns])?;
            h.ns_created = true;
            run(&[
                "ip", "link", "add", &h.veth, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &peer, "netns", &h.ns])?;
            run(&[
                "ip",
                "addr",
                "add",
                &format!("10.199.{subnet}.254/24"),
                "dev",
                &h.veth,
            ])?;
            run(&["ip", "link", "set", &h.veth, "up"])?;
            let cidr = format!("{}/24", h.ip);
            run(&["ip", "-n", &h.ns, "addr", "add", &cidr, "dev", &peer])?;
            run(&["ip", "-n", &h.ns, "link", "set", &peer, "up"])?;
            run(&["ip", "-n", &h.ns, "link", "set", "lo", "up"])?;

            let comment = format!("{USER_COMMENT}{pid}");
            run(&["useradd", "-m", "-s", "/bin/sh", "-c", &comment, &h.user])?;
            h.user_created = true;
            run_in(&["chpasswd"], Some(&format!("{}:{}\n", h.user, h.password)))?;
        }
        h.uid = run(&["id", "-u", &h.user])?
            .trim()
            .parse()
            .map_err(|e| format!("uid of {}: {e}", h.user))?;
        h.home = PathBuf::from(format!("/home/{}", h.user));

        let key = h.dir.path().join("hostkey");
        let key_s = key.display().to_string();
        run(&["ssh-keygen", "-q", "-t", "ed25519", "-f", &key_s, "-N", ""])?;
        let cfg = h.dir.path().join("sshd_config");
        let config = format!(
            "Port {port}\nListenAddress {ip}\nHostKey {key}\nPidFile {pidfile}\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nUsePAM yes\n\
             PubkeyAuthentication no\nPermitRootLogin no\nAllowUsers {user}\n\
             AuthorizedKeysFile none\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\n",
            port = h.port,
            ip = h.ip,
            key = key_s,
            pidfile = h.dir.path().join("sshd.pid").display(),
            user = h.user,
        );
        std::fs::write(&cfg, config).map_err(|e| format!("sshd_config: {e}"))?;
        // sshd's privilege-separation directory; Debian creates it only in its init script.
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let log = std::fs::File::create(h.dir.path().join("sshd.log"))
            .map_err(|e| format!("sshd.log: {e}"))?;
        let cfg_s = cfg.display().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&cfg_s)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start sshd: {e}"))?;
        h.sshd = Some(child);
        h.wait_banner(Duration::from_secs(15))?;
        Ok(h)
    }

    fn wait_banner(&mut self, within: Duration) -> Result<(), String> {
        let addr = SocketAddr::from((self.ip, self.port));
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.sshd.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("sshd exited ({st}): {}", self.sshd_log()));
                }
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sshd did not answer on {addr}: {}",
                    self.sshd_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// sshd's log so far.
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A private known-hosts file for this host's tests.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Pids in the host's network namespace.
    pub fn ns_pids(&self) -> Vec<u32> {
        run(&["ip", "netns", "pids", &self.ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.user_created {
            kill_uid(self.uid);
            for _ in 0..20 {
                if run(&["userdel", "-r", &self.user]).is_ok() {
                    break;
                }
                kill_uid(self.uid);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if self.ns_created {
            // Whatever still lives in the namespace was started by sshd for the test.
            let me = std::process::id();
            for p in self.ns_pids() {
                if p > 1 && p != me {
                    // SAFETY: a single positive pid (never 0 or -1).
                    unsafe {
                        libc::kill(p as libc::pid_t, libc::SIGKILL);
                    }
                }
            }
            // The veth pair goes with the namespace; the explicit delete covers a failed move.
            let _ = run(&["ip", "netns", "del", &self.ns]);
            let _ = run(&["ip", "link", "del", &self.veth]);
        }
    }
}
