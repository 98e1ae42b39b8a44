//! `node::host_deploy` against a real sshd: each test gets its own network namespace, sshd and
//! login user (tests/common/ssh_host.rs), deploys a shell-script "agent" into the user's home
//! and checks the processes on the host. Needs root; skipped with a note otherwise.

#[path = "common/ssh_host.rs"]
mod ssh_host;

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use node::host_deploy;
use node::host_deploy::AgentInstall;
use node::host_deploy::DeployError;
use node::host_deploy::FileSource;
use node::host_deploy::InstallFile;
use node::host_deploy::SshTarget;
use node::host_deploy::Supervision;
use ssh_host::SshHost;

/// Writes its argv where the test can read it, then stays up as `sleep 1000`.
const AGENT: &str =
    "#!/bin/sh\nprintf '%s\\n' \"$@\" > argv.txt\necho \"agent $$ up\"\nexec sleep 1000\n";

fn host() -> Option<SshHost> {
    if !ssh_host::is_root() {
        eprintln!("skipped: host_deploy tests need root (network namespaces, useradd, sshd)");
        return None;
    }
    match SshHost::start() {
        Ok(h) => Some(h),
        Err(e) => panic!("cannot start the test SSH host: {e}"),
    }
}

fn target(h: &SshHost) -> SshTarget {
    SshTarget {
        ip: h.ip.to_string(),
        port: h.port,
        username: h.user.clone(),
        password: h.password.clone(),
        known_hosts: h.known_hosts(),
        timeout: Duration::from_secs(5),
    }
}

fn install(h: &SshHost, script: &str) -> AgentInstall {
    AgentInstall {
        install_dir: format!("{}/zsagent", h.home.display()),
        files: vec![
            InstallFile {
                rel_path: "bin/agent.sh".into(),
                source: FileSource::Bytes(script.as_bytes().to_vec()),
                mode: 0o700,
            },
            InstallFile {
                rel_path: "agent.conf".into(),
                source: FileSource::Bytes(b"listen = 7070\n".to_vec()),
                mode: 0o600,
            },
        ],
        command: vec![
            "bin/agent.sh".into(),
            "--config".into(),
            "agent.conf".into(),
            "two words".into(),
        ],
    }
}

/// The test user's processes whose argv contains `needle`.
fn procs(h: &SshHost, needle: &str) -> Vec<u32> {
    ssh_host::pids_of_uid(h.uid)
        .into_iter()
        .filter(|&p| ssh_host::cmdline(p).contains(needle))
        .collect()
}

fn agents(h: &SshHost) -> Vec<u32> {
    procs(h, "sleep 1000")
}

fn supervisors(h: &SshHost) -> Vec<u32> {
    procs(h, "zsagent-supervisor")
}

async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn deploy_supervises_and_undeploy_removes() {
    let Some(h) = host() else { return };
    let t = target(&h);
    let facts = host_deploy::probe(&t).await.unwrap();
    assert_eq!(facts.arch, std::env::consts::ARCH);
    assert!(!facts.systemd, "no systemd in the test host");
    assert!(!facts.root);
    assert_eq!(facts.kvm, Path::new("/dev/kvm").exists());

    let i = install(&h, AGENT);
    let dir = Path::new(&i.install_dir).to_path_buf();
    let d = host_deploy::deploy(&t, &i).await.unwrap();
    let Supervision::Loop { supervisor_pid } = d.supervision else {
        panic!("expected the setsid loop, got {:?}", d.supervision)
    };
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(mode_of(&dir.join("bin/agent.sh")), 0o700);
    assert_eq!(mode_of(&dir.join("agent.conf")), 0o600);
    // Relative args resolve inside the install dir (it is the working directory); one argv
    // element with a space stays one.
    let argv = std::fs::read_to_string(dir.join("argv.txt")).unwrap();
    assert_eq!(argv, "--config\nagent.conf\ntwo words\n");
    // The agent runs as the login user, inside the host's network namespace, supervised.
    assert_eq!(agents(&h), vec![d.agent_pid]);
    assert_eq!(supervisors(&h), vec![supervisor_pid]);
    let in_ns = h.ns_pids();
    assert!(in_ns.contains(&d.agent_pid), "agent not in {}", h.ns);
    assert!(in_ns.contains(&supervisor_pid));
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap();
    assert!(log.contains("up"), "agent.log: {log}");

    // Redeploy: the old loop and agent are replaced, not joined.
    let d2 = host_deploy::deploy(&t, &i).await.unwrap();
    let Supervision::Loop {
        supervisor_pid: sup2,
    } = d2.supervision
    else {
        panic!("expected the setsid loop")
    };
    assert_ne!(sup2, supervisor_pid);
    assert_eq!(agents(&h), vec![d2.agent_pid]);
    assert_eq!(supervisors(&h), vec![sup2]);

    // A dead agent is restarted by the loop after its back-off.
    // SAFETY: a single positive pid of the test user's agent.
    unsafe {
        libc::kill(d2.agent_pid as libc::pid_t, libc::SIGKILL);
    }
    eventually(
        "the supervisor to restart the agent",
        Duration::from_secs(10),
        || {
            let a = agents(&h);
            a.len() == 1 && a[0] != d2.agent_pid
        },
    )
    .await;
    assert_eq!(supervisors(&h), vec![sup2]);
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap();
    assert!(log.contains("restarting in 1 s"), "agent.log: {log}");

    host_deploy::undeploy(&t, &i.install_dir).await.unwrap();
    assert!(agents(&h).is_empty());
    assert!(supervisors(&h).is_empty());
    assert!(!dir.exists());
    // Nothing there any more is fine too.
    host_deploy::undeploy(&t, &i.install_dir).await.unwrap();
}

#[tokio::test]
async fn agent_that_exits_is_reported_with_its_log() {
    let Some(h) = host() else { return };
    let t = target(&h);
    let i = install(&h, "#!/bin/sh\necho 'cannot open /dev/kvm' >&2\nexit 3\n");
    let e = host_deploy::deploy(&t, &i).await.unwrap_err();
    match &e {
        DeployError::AgentDidNotStart { log_tail, .. } => {
            assert!(log_tail.contains("cannot open /dev/kvm"), "{e}")
        }
        other => panic!("expected AgentDidNotStart, got {other:?}"),
    }
    host_deploy::undeploy(&t, &i.install_dir).await.unwrap();
    assert!(supervisors(&h).is_empty());
}

#[tokio::test]
async fn wrong_password_is_an_auth_failure_and_changes_nothing() {
    let Some(h) = host() else { return };
    let mut t = target(&h);
    t.password = format!("{}x", h.password);
    let i = install(&h, AGENT);
    let e = host_deploy::deploy(&t, &i).await.unwrap_err();
    assert!(
        matches!(e, DeployError::AuthFailed { .. }),
        "expected AuthFailed, got {e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("wrong username or password for {}@{}", h.user, h.ip)
    );
    assert!(!Path::new(&i.install_dir).exists());
    assert!(agents(&h).is_empty());
    // The password is in no error text (nor the wrong one).
    assert!(!format!("{e:?}").contains(&h.password));
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let Some(h) = host() else { return };
    let mut t = target(&h);
    t.port = 2222;
    let e = host_deploy::probe(&t).await.unwrap_err();
    match &e {
        DeployError::Unreachable { addr, .. } => assert_eq!(addr, &format!("{}:2222", h.ip)),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(e.to_string().contains(&format!("{}:2222", h.ip)), "{e}");
}

#[tokio::test]
async fn changed_host_key_is_refused() {
    let Some(h) = host() else { return };
    let t = target(&h);
    // Another key recorded for this address: what a reinstalled (or impersonated) host shows.
    let other = h.dir.path().join("otherkey");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut f = pubkey.split_whitespace();
    let line = format!("{} {} {}\n", h.ip, f.next().unwrap(), f.next().unwrap());
    std::fs::write(h.known_hosts(), line).unwrap();
    let e = host_deploy::probe(&t).await.unwrap_err();
    assert!(
        matches!(e, DeployError::HostKeyChanged { .. }),
        "expected HostKeyChanged, got {e:?}"
    );
}
