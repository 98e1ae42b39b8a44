//! Installing the host agent on a KVM host over SSH, the way ZStack's AddKVMHost does: log in
//! with the operator's username and password, copy the agent's files, start it supervised.
//!
//! The system `ssh` binary does the work (no SSH library: OpenSSH is what operators debug with,
//! and its host-key handling is the one they trust). The password reaches `ssh` only through an
//! askpass script in a private temporary directory that prints it from a 0600 file; it is never
//! on a command line, in the environment of anything but that script's parent, or in a log.
//!
//! Supervision on the host: with systemd and a root login, a `zstack-agent.service` unit with
//! `Restart=always`; otherwise a `setsid` shell loop that restarts the agent 1 s after it exits,
//! its pid in `<install_dir>/supervisor.pid` (it leads the process group holding the agent, so
//! stopping it is one group signal). Output of both goes to `<install_dir>/agent.log`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The systemd unit a root deployment installs.
pub const UNIT: &str = "zstack-agent.service";
/// How long the agent must stay up after a start to count as started.
pub const START_SETTLE: Duration = Duration::from_secs(2);
/// How much of a log or stderr an error carries.
const TAIL_BYTES: usize = 2000;
/// Extra time an SSH session may take beyond connecting (uploads, the start check).
const SESSION_SLACK: Duration = Duration::from_secs(60);

/// Where and as whom to log in.
#[derive(Clone)]
pub struct SshTarget {
    /// Management IP (or host name) of the host.
    pub ip: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub username: String,
    /// Login password (only ever written to a private 0600 file for askpass).
    pub password: String,
    /// The known-hosts file to check and record host keys in (unknown hosts are accepted and
    /// recorded; a changed key is refused). Its directory is created if missing.
    pub known_hosts: PathBuf,
    /// Connect timeout (TCP connect and SSH banner exchange).
    pub timeout: Duration,
}

impl std::fmt::Debug for SshTarget {
    // Derived Debug would print the password into any log that formats a target.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("known_hosts", &self.known_hosts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SshTarget {
    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Where an installed file's content comes from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// A local file, streamed.
    Path(PathBuf),
    /// In-memory content (generated configuration, small scripts).
    Bytes(Vec<u8>),
}

/// One file of the agent's installation.
#[derive(Debug, Clone)]
pub struct InstallFile {
    /// Path relative to the install dir (`bin/zsagent`); no `..`, not absolute.
    pub rel_path: String,
    /// Content.
    pub source: FileSource,
    /// Permission bits (`0o700`, `0o600`).
    pub mode: u32,
}

/// What to install and how to run it.
#[derive(Debug, Clone)]
pub struct AgentInstall {
    /// Absolute remote directory owned by the agent (`/opt/zstack/zsagent`); created 0700.
    pub install_dir: String,
    /// Files to put into it.
    pub files: Vec<InstallFile>,
    /// The agent's argv. It runs with the install dir as working directory, and a relative
    /// `command[0]` names a file inside the install dir.
    pub command: Vec<String>,
}

/// What keeps the agent running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// The systemd unit [`UNIT`].
    Systemd,
    /// The `setsid` shell loop whose pid (= process group) is in `supervisor.pid`.
    Loop {
        /// The loop's pid.
        supervisor_pid: u32,
    },
}

/// A successful deployment.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// What the host is.
    pub facts: RemoteFacts,
    /// What supervises the agent.
    pub supervision: Supervision,
    /// The agent process (it has stayed up for [`START_SETTLE`]).
    pub agent_pid: u32,
}

/// What [`probe`] learns about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFacts {
    /// `uname -m` (`x86_64`, `aarch64`).
    pub arch: String,
    /// systemd is the init system (`/run/systemd/system` exists).
    pub systemd: bool,
    /// `/dev/kvm` exists.
    pub kvm: bool,
    /// The login user is root (only root installs a systemd unit).
    pub root: bool,
    /// The login user's `$HOME` (empty when unset): where a non-root install goes.
    pub home: String,
}

/// Why a deployment step failed. Messages are for operators: they name the host and say what
/// to fix.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// No SSH connection: refused, timed out, no route, name not resolved.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// `ip:port`.
        addr: String,
        /// ssh's message.
        reason: String,
    },
    /// The server refused the username/password.
    #[error("wrong username or password for {user}@{ip}")]
    AuthFailed {
        /// Login user.
        user: String,
        /// Host.
        ip: String,
    },
    /// The host's key differs from the one recorded in the known-hosts file.
    #[error(
        "the SSH host key of {addr} differs from the one recorded in {known_hosts}: the host was \
         reinstalled or someone is intercepting; remove its entry only if you know which"
    )]
    HostKeyChanged {
        /// `ip:port`.
        addr: String,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
    /// Something answers on the port but the SSH handshake failed.
    #[error("{addr} does not complete an SSH handshake: {reason}")]
    NotSsh {
        /// `ip:port`.
        addr: String,
        /// ssh's message.
        reason: String,
    },
    /// ssh failed in a way not classified above.
    #[error("ssh to {addr} failed: {stderr}")]
    Ssh {
        /// `ip:port`.
        addr: String,
        /// Tail of ssh's stderr.
        stderr: String,
    },
    /// The session did not finish in time.
    #[error("{what} on {addr} did not finish within {timeout:?}")]
    Timeout {
        /// `ip:port`.
        addr: String,
        /// The step.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// A command on the host failed.
    #[error("{cmd} on {addr} failed (exit code {code:?}): {stderr}")]
    RemoteCommand {
        /// `ip:port`.
        addr: String,
        /// What was run, summarised.
        cmd: String,
        /// Its exit code (none when killed by a signal).
        code: Option<i32>,
        /// Tail of its stderr.
        stderr: String,
    },
    /// The agent exited (or kept restarting) right after the start.
    #[error("the agent on {addr} did not start; end of its log: {log_tail}")]
    AgentDidNotStart {
        /// `ip:port`.
        addr: String,
        /// Tail of `agent.log`.
        log_tail: String,
    },
    /// The host answered something this module does not understand.
    #[error("unexpected answer from {addr} to {what}: {got}")]
    Protocol {
        /// `ip:port`.
        addr: String,
        /// The step.
        what: String,
        /// What came back (cut).
        got: String,
    },
    /// The request itself is unusable (relative install dir, empty command, ...).
    #[error("invalid deployment: {0}")]
    Invalid(String),
    /// A local file or process operation failed.
    #[error("{what}: {source}")]
    Local {
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn local(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DeployError {
    let what = what.into();
    move |source| DeployError::Local { what, source }
}

/// Learn the host's architecture, init system and KVM support.
pub async fn probe(t: &SshTarget) -> Result<RemoteFacts, DeployError> {
    let out = run(t, "probe", PROBE, None).await?;
    parse_facts(t, &out)
}

/// Install (or reinstall) the agent and (re)start it supervised. Safe to repeat: a previous
/// agent in the same install dir is stopped first, its files are replaced.
pub async fn deploy(t: &SshTarget, i: &AgentInstall) -> Result<Deployed, DeployError> {
    check_dir(&i.install_dir)?;
    let first = i
        .command
        .first()
        .ok_or_else(|| DeployError::Invalid("empty agent command".into()))?;
    for f in &i.files {
        check_rel(&f.rel_path)?;
    }
    let dir = i.install_dir.trim_end_matches('/');
    let qdir = sh_quote(dir);

    // One session stops the old agent, prepares the directory and reports the facts that
    // decide how the new one is supervised.
    let prepare = format!(
        "set -e\nd={qdir}\n{stop}\numask 077\nmkdir -p \"$d\"\nchmod 700 \"$d\"\n{PROBE}",
        stop = stop_script(),
    );
    let facts = parse_facts(t, &run(t, "stopping the old agent", &prepare, None).await?)?;

    for f in &i.files {
        let path = format!("{dir}/{}", f.rel_path.trim_start_matches("./"));
        let qpath = sh_quote(&path);
        // Write beside and rename: a running old binary is not overwritten in place ("text
        // file busy"), and a cut connection leaves no half-written file under the real name.
        let script = format!(
            "set -e\numask 077\np={qpath}\nmkdir -p \"$(dirname \"$p\")\"\ncat > \"$p.zsnew\"\n\
             chmod {mode:o} \"$p.zsnew\"\nmv -f \"$p.zsnew\" \"$p\"",
            mode = f.mode & 0o7777,
        );
        run(
            t,
            &format!("uploading {}", f.rel_path),
            &script,
            Some(&f.source),
        )
        .await?;
    }

    let mut argv = i.command.clone();
    if !first.starts_with('/') {
        argv[0] = format!("{dir}/{}", first.trim_start_matches("./"));
    }
    let systemd = facts.systemd && facts.root;
    let settle = START_SETTLE.as_secs().max(1);
    let start = if systemd {
        let unit = unit_file(dir, &argv);
        format!(
            "set -e\nd={qdir}\ncd \"$d\"\n: > agent.log\n\
             cat > /etc/systemd/system/{UNIT} <<'ZSAGENT_UNIT_EOF'\n{unit}ZSAGENT_UNIT_EOF\n\
             systemctl daemon-reload\nsystemctl enable --now {UNIT} >/dev/null 2>&1\n\
             sleep {settle}\n\
             pid=$(systemctl show -p MainPID --value {UNIT})\n\
             n=$(systemctl show -p NRestarts --value {UNIT})\n\
             if [ \"$(systemctl is-active {UNIT})\" = active ] && [ \"$n\" = 0 ] && [ \"$pid\" != 0 ]; then\n\
             echo \"started systemd $pid\"\nelse\necho failed\ntail -c {TAIL_BYTES} agent.log\nfi"
        )
    } else {
        let args: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
        // The loop is a session and group leader (setsid), so the agent it forks is in its
        // group and one group signal stops both; `$$` is written from inside because setsid
        // may fork. agent.pid is replaced atomically so a reader never sees it empty.
        let supervisor = "echo $$ > supervisor.pid; while :; do \"$@\" & echo $! > agent.pid.new; \
             mv -f agent.pid.new agent.pid; wait $!; \
             echo \"zsagent-supervisor: agent exited with status $?, restarting in 1 s\"; \
             sleep 1; done";
        format!(
            "set -e\nd={qdir}\ncd \"$d\"\n: > agent.log\nrm -f agent.pid supervisor.pid\n\
             setsid sh -c {sup} zsagent-supervisor {args} </dev/null >>agent.log 2>&1 &\n\
             i=0\nwhile [ ! -s agent.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
             first=$(cat agent.pid 2>/dev/null || true)\nsleep {settle}\n\
             now=$(cat agent.pid 2>/dev/null || true)\nsup=$(cat supervisor.pid 2>/dev/null || true)\n\
             if [ -n \"$first\" ] && [ \"$first\" = \"$now\" ] && kill -0 \"$first\" 2>/dev/null; then\n\
             echo \"started loop $first $sup\"\nelse\necho failed\ntail -c {TAIL_BYTES} agent.log\nfi",
            sup = sh_quote(supervisor),
            args = args.join(" "),
        )
    };
    let out = run(t, "starting the agent", &start, None).await?;
    let mut lines = out.splitn(2, '\n');
    let head = lines.next().unwrap_or("").trim();
    let rest = lines.next().unwrap_or("");
    let bad = |got: &str| DeployError::Protocol {
        addr: t.addr(),
        what: "starting the agent".into(),
        got: tail(got),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let supervision_and_pid = match words.as_slice() {
        ["started", "systemd", pid] => (Supervision::Systemd, pid.parse().map_err(|_| bad(head))?),
        ["started", "loop", pid, sup] => (
            Supervision::Loop {
                supervisor_pid: sup.parse().map_err(|_| bad(head))?,
            },
            pid.parse().map_err(|_| bad(head))?,
        ),
        ["failed"] => {
            return Err(DeployError::AgentDidNotStart {
                addr: t.addr(),
                log_tail: tail(rest.trim()),
            })
        }
        _ => return Err(bad(&out)),
    };
    let (supervision, agent_pid) = supervision_and_pid;
    tracing::info!(host = %t.addr(), install_dir = dir, ?supervision, agent_pid, "agent deployed");
    Ok(Deployed {
        facts,
        supervision,
        agent_pid,
    })
}

/// Stop the agent and remove its install dir. A host without a deployment is fine.
pub async fn undeploy(t: &SshTarget, install_dir: &str) -> Result<(), DeployError> {
    check_dir(install_dir)?;
    let script = format!(
        "set -e\nd={}\n{stop}\nif [ -f /etc/systemd/system/{UNIT} ] && [ \"$(id -u)\" = 0 ] && \
         grep -q \"^WorkingDirectory=$d\\$\" /etc/systemd/system/{UNIT}; then\n\
         rm -f /etc/systemd/system/{UNIT}\nsystemctl daemon-reload\nfi\nrm -rf \"$d\"",
        sh_quote(install_dir.trim_end_matches('/')),
        stop = stop_script(),
    );
    run(t, "removing the agent", &script, None).await?;
    tracing::info!(host = %t.addr(), install_dir, "agent undeployed");
    Ok(())
}

/// Prints the facts as `key=value` lines.
const PROBE: &str = "echo \"arch=$(uname -m)\"\n\
     if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi\n\
     if [ -e /dev/kvm ]; then echo kvm=1; else echo kvm=0; fi\n\
     if [ \"$(id -u)\" = 0 ]; then echo root=1; else echo root=0; fi\n\
     printf 'home=%s\\n' \"$HOME\"";

/// Stops whatever runs the agent of install dir `$d`: the unit if it belongs to `$d`, else the
/// supervisor loop's process group.
fn stop_script() -> String {
    // The pid file may be stale (host rebooted, pid reused): only a group whose leader is our
    // loop is signalled, and never pid 0 or 1, whose "groups" would be far more than the agent.
    format!(
        "if [ -f /etc/systemd/system/{UNIT} ] && [ \"$(id -u)\" = 0 ] && \
         grep -q \"^WorkingDirectory=$d\\$\" /etc/systemd/system/{UNIT}; then\n\
         systemctl disable --now {UNIT} >/dev/null 2>&1 || true\nfi\n\
         p=$(cat \"$d/supervisor.pid\" 2>/dev/null || true)\n\
         case \"$p\" in ''|*[!0-9]*) p= ;; esac\n\
         if [ -n \"$p\" ] && [ \"$p\" -gt 1 ] && tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q zsagent-supervisor; then\n\
         kill -TERM -$p 2>/dev/null || true\n\
         i=0\nwhile kill -0 -$p 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
         kill -KILL -$p 2>/dev/null || true\nfi\n\
         rm -f \"$d/supervisor.pid\" \"$d/agent.pid\""
    )
}

fn unit_file(dir: &str, argv: &[String]) -> String {
    // systemd's ExecStart quoting: double quotes with C escapes; `$` and `%` are expanded by
    // systemd itself and must be doubled to stay literal.
    let exec = argv
        .iter()
        .map(|a| {
            let mut q = String::from("\"");
            for c in a.chars() {
                match c {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    '$' => q.push_str("$$"),
                    '%' => q.push_str("%%"),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut u = String::new();
    let _ = write!(
        u,
        "[Unit]\nDescription=ZStack host agent\nAfter=network-online.target\n\n[Service]\n\
         WorkingDirectory={dir}\nExecStart={exec}\nRestart=always\nRestartSec=1\n\
         StandardOutput=append:{dir}/agent.log\nStandardError=append:{dir}/agent.log\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    u
}

fn parse_facts(t: &SshTarget, out: &str) -> Result<RemoteFacts, DeployError> {
    let get = |k: &str| {
        out.lines()
            .rev()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::trim)
    };
    let flag = |k: &str| get(k).map(|v| v == "1");
    match (get("arch"), flag("systemd"), flag("kvm"), flag("root")) {
        (Some(arch), Some(systemd), Some(kvm), Some(root)) if !arch.is_empty() => Ok(RemoteFacts {
            arch: arch.to_string(),
            systemd,
            kvm,
            root,
            home: get("home").unwrap_or_default().to_string(),
        }),
        _ => Err(DeployError::Protocol {
            addr: t.addr(),
            what: "probe".into(),
            got: tail(out),
        }),
    }
}

/// An install dir that `rm -rf` may safely remove: absolute, no `..`, not a top-level dir.
fn check_dir(dir: &str) -> Result<(), DeployError> {
    let d = dir.trim_end_matches('/');
    let parts: Vec<&str> = d.split('/').filter(|p| !p.is_empty()).collect();
    if !d.starts_with('/') || parts.len() < 2 || parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(DeployError::Invalid(format!(
            "install dir {dir:?} must be an absolute path at least two levels deep without . or .."
        )));
    }
    if d.contains('\n') {
        return Err(DeployError::Invalid(
            "install dir contains a newline".into(),
        ));
    }
    Ok(())
}

fn check_rel(p: &str) -> Result<(), DeployError> {
    if p.is_empty()
        || p.starts_with('/')
        || p.contains('\n')
        || p.split('/').any(|c| c == "..")
        || p.ends_with('/')
    {
        return Err(DeployError::Invalid(format!(
            "file path {p:?} must be relative to the install dir, without .."
        )));
    }
    Ok(())
}

/// POSIX single-quoting.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last [`TAIL_BYTES`] of `s` (on a char boundary).
fn tail(s: &str) -> String {
    let s = s.trim();
    if s.len() <= TAIL_BYTES {
        return s.to_string();
    }
    let mut i = s.len() - TAIL_BYTES;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    format!("...{}", &s[i..])
}

/// The private askpass directory of one ssh invocation; removed on drop.
struct Askpass {
    dir: tempfile::TempDir,
}

impl Askpass {
    fn new(password: &str) -> Result<Askpass, DeployError> {
        let dir = tempfile::Builder::new()
            .prefix("zs-askpass-")
            .tempdir()
            .map_err(local("creating the askpass directory"))?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(local("restricting the askpass directory"))?;
        let pw = dir.path().join("password");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pw)
            .map_err(local("writing the askpass password file"))?;
        f.write_all(password.as_bytes())
            .map_err(local("writing the askpass password file"))?;
        // Owner-only and executable: ssh execs it; nobody else may read the path it prints.
        let script = dir.path().join("askpass");
        let mut s = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&script)
            .map_err(local("writing the askpass script"))?;
        let body = format!("#!/bin/sh\nexec cat {}\n", sh_quote(&pw.to_string_lossy()));
        s.write_all(body.as_bytes())
            .map_err(local("writing the askpass script"))?;
        Ok(Askpass { dir })
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("askpass")
    }
}

fn ssh_command(t: &SshTarget, askpass: &Askpass) -> Result<Command, DeployError> {
    if let Some(parent) = t.known_hosts.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(local(format!(
                    "creating the known-hosts directory {}",
                    parent.display()
                )))?;
        }
    }
    let mut c = Command::new("ssh");
    // -F /dev/null: the caller's ~/.ssh/config must not change how hosts are reached.
    c.arg("-F").arg("/dev/null");
    for o in [
        "BatchMode=no",
        "PubkeyAuthentication=no",
        "PreferredAuthentications=password,keyboard-interactive",
        "NumberOfPasswordPrompts=1",
        "StrictHostKeyChecking=accept-new",
        "GlobalKnownHostsFile=/dev/null",
        "ForwardAgent=no",
        "ForwardX11=no",
        "ClearAllForwardings=yes",
        // Hides the "Permanently added" notice that would otherwise open every stderr tail.
        "LogLevel=ERROR",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
    ] {
        c.arg("-o").arg(o);
    }
    c.arg("-o")
        .arg(format!("ConnectTimeout={}", t.timeout.as_secs().max(1)));
    c.arg("-o").arg(format!(
        "UserKnownHostsFile=\"{}\"",
        t.known_hosts.display()
    ));
    c.arg("-p").arg(t.port.to_string());
    c.arg("-l").arg(&t.username);
    c.arg("--").arg(&t.ip);
    c.env("SSH_ASKPASS", askpass.script())
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(
            "DISPLAY",
            std::env::var_os("DISPLAY").unwrap_or_else(|| ":0".into()),
        )
        .env_remove("SSH_AUTH_SOCK")
        .kill_on_drop(true);
    Ok(c)
}

/// Run `script` with `sh` on the host; `input` becomes its stdin. Returns its stdout.
async fn run(
    t: &SshTarget,
    what: &str,
    script: &str,
    input: Option<&FileSource>,
) -> Result<String, DeployError> {
    let askpass = Askpass::new(&t.password)?;
    let mut c = ssh_command(t, &askpass)?;
    // Through `sh -c` whatever the login shell is; ssh joins its arguments with spaces and the
    // login shell re-parses them, hence one quoted word.
    c.arg(format!("sh -c {}", sh_quote(script)));
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    tracing::debug!(host = %t.addr(), user = %t.username, step = what, "ssh");
    let mut child = c.spawn().map_err(local("starting ssh"))?;
    let stdin = child.stdin.take();
    let feed = async {
        let (Some(mut w), Some(src)) = (stdin, input) else {
            return Ok::<(), DeployError>(());
        };
        // A remote that fails early closes its stdin: the write error is then only a symptom,
        // the exit status and stderr say why, so it is ignored here.
        match src {
            FileSource::Bytes(b) => {
                let _ = w.write_all(b).await;
            }
            FileSource::Path(p) => {
                let mut f = tokio::fs::File::open(p)
                    .await
                    .map_err(local(format!("opening {}", p.display())))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f
                        .read(&mut buf)
                        .await
                        .map_err(local(format!("reading {}", p.display())))?;
                    if n == 0 || w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = w.shutdown().await;
        Ok(())
    };
    let limit = t.timeout + SESSION_SLACK;
    let out = tokio::time::timeout(limit, async {
        let (fed, out) = tokio::join!(feed, child.wait_with_output());
        fed?;
        out.map_err(local("waiting for ssh"))
    })
    .await
    .map_err(|_| DeployError::Timeout {
        addr: t.addr(),
        what: what.to_string(),
        timeout: limit,
    })??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Err(classify(t, what, out.status.code(), &stderr))
}

/// Turn a failed ssh run into an operator error. ssh itself exits 255; our scripts never do.
fn classify(t: &SshTarget, what: &str, code: Option<i32>, stderr: &str) -> DeployError {
    let addr = t.addr();
    let reason = tail(stderr);
    if code != Some(255) {
        return DeployError::RemoteCommand {
            addr,
            cmd: what.to_string(),
            code,
            stderr: reason,
        };
    }
    let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    // "Permission denied (" with the parenthesised method list is ssh's own wording; a remote
    // tool's "Permission denied" has none.
    if has(&["Permission denied ("]) {
        DeployError::AuthFailed {
            user: t.username.clone(),
            ip: t.ip.clone(),
        }
    } else if has(&[
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "Host key verification failed",
    ]) {
        DeployError::HostKeyChanged {
            addr,
            known_hosts: t.known_hosts.clone(),
        }
    } else if has(&[
        "kex_exchange_identification",
        "banner exchange",
        "Protocol major versions differ",
        "Bad remote protocol",
        "invalid format",
        "Connection corrupted",
        "message authentication code incorrect",
    ]) {
        DeployError::NotSsh { addr, reason }
    } else if has(&[
        "Connection refused",
        "Connection timed out",
        "Operation timed out",
        "No route to host",
        "Network is unreachable",
        "Host is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "Temporary failure in name resolution",
    ]) {
        DeployError::Unreachable { addr, reason }
    } else {
        DeployError::Ssh {
            addr,
            stderr: reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            ip: "10.0.0.1".into(),
            port: 22,
            username: "root".into(),
            password: "secret".into(),
            known_hosts: PathBuf::from("/tmp/kh"),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn classifies_ssh_failures() {
        let t = target();
        let c = |code, e: &str| classify(&t, "x", Some(code), e);
        assert!(matches!(
            c(
                255,
                "root@10.0.0.1: Permission denied (publickey,password)."
            ),
            DeployError::AuthFailed { .. }
        ));
        assert!(matches!(
            c(
                255,
                "ssh: connect to host 10.0.0.1 port 22: Connection refused"
            ),
            DeployError::Unreachable { .. }
        ));
        assert!(matches!(
            c(
                255,
                "kex_exchange_identification: Connection closed by remote host"
            ),
            DeployError::NotSsh { .. }
        ));
        assert!(matches!(
            c(
                255,
                "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed."
            ),
            DeployError::HostKeyChanged { .. }
        ));
        assert!(matches!(
            c(
                1,
                "mkdir: cannot create directory '/opt/x': Permission denied"
            ),
            DeployError::RemoteCommand { code: Some(1), .. }
        ));
        let msg = c(255, "Permission denied (password).").to_string();
        assert_eq!(msg, "wrong username or password for root@10.0.0.1");
    }

    #[test]
    fn install_dirs_that_rm_rf_could_hurt_are_refused() {
        for d in ["", "/", "/opt", "opt/zs", "/opt/../etc", "/opt/./x"] {
            assert!(check_dir(d).is_err(), "{d}");
        }
        assert!(check_dir("/opt/zstack/zsagent").is_ok());
        assert!(check_rel("../x").is_err());
        assert!(check_rel("bin/zsagent").is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert!(format!("{:?}", target()).contains("<redacted>"));
        assert!(!format!("{:?}", target()).contains("secret"));
    }
}
