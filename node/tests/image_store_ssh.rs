//! AddImageStoreBackupStorage end to end with nothing pre-installed: a real `zsnode` logs in
//! to a real sshd host (a network namespace, tests/common/ssh_host.rs) with the operator's
//! password, installs this build's `zsagent` there exactly as AddKVMHost does, and the agent's
//! image store role connects the image directory (Connected with its real capacity); AddImage
//! downloads into it from an HTTP server this test runs. Also: a wrong password, a directory
//! the login cannot create, a closed SSH port and an agent of another cluster's CA each fail
//! with an error naming the cause and leave no record, no agent process and no install; delete
//! removes the agent the add installed (the image files stay); one agent serves a second store
//! and a KVM host on the same machine, and deleting the store that installed it keeps it for
//! them. Needs root; skipped with a note otherwise.

mod common;
#[path = "common/ssh_host.rs"]
mod ssh_host;

use std::net::Ipv4Addr;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use ssh_host::SshHost;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

impl Rest {
    async fn create(&self, path: &str, params: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(json!({ "params": params })),
        )
        .await
    }

    async fn action(&self, path: &str, action: &str, fields: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(json!({ action: fields })))
            .await
    }

    async fn delete(&self, path: &str) {
        let (s, v) = self.send(reqwest::Method::DELETE, path, None).await;
        assert_eq!(s, 200, "DELETE {path}: {v}");
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        let (s, v) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "{v}");
        v["inventories"].as_array().unwrap().clone()
    }

    async fn store(&self, uuid: &str) -> Value {
        self.list(&format!("/backup-storage/image-store/{uuid}"))
            .await
            .first()
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn set_config(&self, category: &str, name: &str, value: &str) {
        let (s, v) = self
            .action(
                &format!("/global-configurations/{category}/{name}/actions"),
                "updateGlobalConfig",
                json!({ "value": value }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

fn store_params(name: &str, h: &SshHost, url: &Path, port: u16, password: &str) -> Value {
    json!({"name": name, "url": url.to_str().unwrap(), "hostname": h.ip.to_string(),
           "sshPort": port, "username": h.user, "password": password})
}

/// Where the installer puts the agent of a non-root login.
fn install_dir(h: &SshHost) -> PathBuf {
    h.home.join(".zstack-agent")
}

/// `zsagent run` processes of the installed agent in the host's namespace.
fn agents(h: &SshHost) -> Vec<u32> {
    let exe = format!("{}/bin/zsagent run ", install_dir(h).display());
    h.ns_pids()
        .into_iter()
        .filter(|&p| ssh_host::cmdline(p).starts_with(&exe))
        .collect()
}

/// Nothing of an install left: no agent or supervisor process of the login, no install dir,
/// no unit naming it.
fn nothing_installed(h: &SshHost) -> bool {
    let unit =
        std::fs::read_to_string("/etc/systemd/system/zstack-agent.service").unwrap_or_default();
    agents(h).is_empty()
        && !h
            .ns_pids()
            .into_iter()
            .any(|p| ssh_host::cmdline(p).contains("zsagent-supervisor"))
        && !install_dir(h).exists()
        && !unit.contains(&install_dir(h).display().to_string())
}

async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `statvfs` total bytes of the file system holding `dir`.
fn fs_total(dir: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// An HTTP server on every root-namespace address (the host reaches it through its veth's
/// root end): `/img.qcow2` is `image`, anything else 404.
async fn http_server(image: Vec<u8>) -> u16 {
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let image = std::sync::Arc::new(image);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let image = image.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                if req.split_whitespace().nth(1) == Some("/img.qcow2") {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        image.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&image).await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
            });
        }
    });
    port
}

/// A small qcow2 image: (bytes, md5).
fn make_image(dir: &Path) -> (Vec<u8>, String) {
    let q = dir.join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let md5 = String::from_utf8(Command::new("md5sum").arg(&q).output().unwrap().stdout).unwrap();
    (
        std::fs::read(&q).unwrap(),
        md5.split_whitespace().next().unwrap().to_string(),
    )
}

/// A `zsagent` of another cluster (its own CA) answering on the host's agent port, started
/// by this test inside the host's namespace; killed on drop.
struct ForeignAgent(std::process::Child);

impl ForeignAgent {
    fn start(h: &SshHost, dir: &Path) -> ForeignAgent {
        // Another cluster: a node founded in its own directory, only to issue the certificate.
        let other = dir.join("other-cluster");
        std::fs::create_dir_all(&other).unwrap();
        drop(spawn(&other, 1, &["--init"]));
        let pki = dir.join("foreign-agent/pki");
        let out = Command::new(env!("CARGO_BIN_EXE_zsnode"))
            .args(["pki", "agent-cert", "--host", &h.ip.to_string(), "--out"])
            .arg(&pki)
            .arg("--data-dir")
            .arg(common::data_dir(&other, 1))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let addr = format!("{}:{}", h.ip, proto::agent::DEFAULT_PORT);
        let log = std::fs::File::create(dir.join("foreign-agent/agent.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns])
            .arg(common::zsagent_bin())
            .args(["run", "--listen", &addr, "--libvirt-uri", "test:///default"])
            .arg("--data-dir")
            .arg(dir.join("foreign-agent"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let a = ForeignAgent(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "foreign agent not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }
}

impl Drop for ForeignAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A failed add: an error whose details carry `needle`, never the password, and nothing left.
async fn refused(rest: &Rest, h: &SshHost, params: Value, needle: &str) -> String {
    let (s, v) = rest.create("/backup-storage/image-store", params).await;
    assert_ne!(s, 200, "{v}");
    assert_eq!(v["error"]["code"], "SYS.1006", "{v}");
    let details = v["error"]["details"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(details.contains(needle), "{needle:?} not in {details}");
    assert!(!v.to_string().contains(&h.password), "{v}");
    assert!(
        rest.list("/backup-storage").await.is_empty(),
        "a record is left"
    );
    eventually(Duration::from_secs(10), "nothing installed", || {
        nothing_installed(h)
    })
    .await;
    details
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_store_installed_over_ssh() {
    if !ssh_host::is_root() {
        eprintln!("skipped: image_store_ssh needs root (network namespaces, useradd, sshd)");
        return;
    }
    let t0 = Instant::now();
    let _ = common::zsagent_bin();
    let h = SshHost::start().expect("test SSH host");
    let td = tempfile::tempdir().unwrap();
    let node = spawn(
        td.path(),
        1,
        &["--init", "--agent-libvirt-uri", "test:///default"],
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest { c, base, session };
    // The tracker runs every second: it must not disturb a store its job is connecting.
    rest.set_config("host", "ping.interval", "1").await;
    let images = h.home.join("images");
    let wrong = "not-the-password";

    // An agent of another cluster answers on the port: refused as such, nothing installed
    // over it (it keeps running, its credentials untouched).
    {
        let foreign = ForeignAgent::start(&h, td.path());
        let details = refused(
            &rest,
            &h,
            store_params("foreign", &h, &images, h.port, &h.password),
            "not an agent of this cluster",
        )
        .await;
        eprintln!("foreign agent: {details}");
        let pid = foreign.0.id();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "the foreign agent was stopped"
        );
        assert!(!images.exists());
    }

    // Wrong password: the login is refused, naming user@ip.
    let details = refused(
        &rest,
        &h,
        store_params("bad-pw", &h, &images, h.port, wrong),
        &format!("wrong username or password for {}@{}", h.user, h.ip),
    )
    .await;
    assert!(!details.contains(wrong));
    // Nothing answers SSH.
    refused(
        &rest,
        &h,
        store_params("closed", &h, &images, 1, &h.password),
        &format!("cannot reach {}:1", h.ip),
    )
    .await;
    // A directory the login cannot create: the agent installed for it is removed again.
    let forbidden = PathBuf::from(format!("/root/zs-bs-{}", std::process::id()));
    refused(
        &rest,
        &h,
        store_params("forbidden", &h, &forbidden, h.port, &h.password),
        &format!("cannot create {}", forbidden.display()),
    )
    .await;
    assert!(!forbidden.exists());
    eprintln!("refusals done at {:?}", t0.elapsed());

    // For real: installed, Connected with the directory's capacity.
    let start = Instant::now();
    let (s, v) = rest
        .create(
            "/backup-storage/image-store",
            store_params("store", &h, &images, h.port, &h.password),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let inv = &v["inventory"];
    assert_eq!(inv["status"], "Connected", "{inv}");
    assert!(!v.to_string().contains(&h.password), "{v}");
    assert!(images.is_dir());
    assert_eq!(inv["totalCapacity"], fs_total(&images), "{inv}");
    assert!(inv["availableCapacity"].as_u64().unwrap() > 0, "{inv}");
    let bs = inv["uuid"].as_str().unwrap().to_string();
    eprintln!("store added (install + connect) in {:?}", start.elapsed());
    let pids = agents(&h);
    assert_eq!(pids.len(), 1, "{pids:?}");
    let agent = pids[0];
    assert!(
        ssh_host::pids_of_uid(h.uid).contains(&agent),
        "runs as the login"
    );
    let cmd = ssh_host::cmdline(agent);
    assert!(cmd.contains(&format!("--listen {}:7272", h.ip)), "{cmd}");
    let stores = std::fs::read_to_string(install_dir(&h).join("data/imagestores.json")).unwrap();
    assert!(stores.contains(&bs), "{stores}");
    let key = std::fs::metadata(install_dir(&h).join("pki/agent.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    // The tracker's rounds keep it Connected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rest.store(&bs).await["status"], "Connected");

    // AddImage downloads into it.
    let (s, v) = rest.create("/zones", json!({"name": "z"})).await;
    assert_eq!(s, 200, "{v}");
    let zone = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .create(&format!("/zones/{zone}/backup-storage/{bs}"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (image, md5) = make_image(td.path());
    let port = http_server(image.clone()).await;
    let o = h.ip.octets();
    let root_side = Ipv4Addr::new(o[0], o[1], o[2], 254);
    let (s, v) = rest
        .create(
            "/images",
            json!({"name": "img", "url": format!("http://{root_side}:{port}/img.qcow2"),
                   "format": "qcow2", "mediaType": "RootVolumeTemplate",
                   "backupStorageUuids": [bs], "systemTags": [format!("md5::{md5}")]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let img = &v["inventory"];
    assert_eq!(img["status"], "Ready", "{img}");
    assert_eq!(img["md5Sum"], md5.as_str());
    let path = PathBuf::from(img["backupStorageRefs"][0]["installPath"].as_str().unwrap());
    assert!(path.starts_with(&images), "{}", path.display());
    assert_eq!(std::fs::read(&path).unwrap(), image);
    eprintln!("image downloaded at {:?}", t0.elapsed());

    // Delete: the agent the add installed goes (process, supervisor, dir); the files stay.
    rest.delete(&format!("/backup-storage/{bs}")).await;
    assert!(rest.list("/backup-storage").await.is_empty());
    eventually(
        Duration::from_secs(10),
        "deleted store's agent removed",
        || nothing_installed(&h),
    )
    .await;
    assert_eq!(std::fs::read(&path).unwrap(), image, "the image file stays");
    eprintln!("deleted, agent removed at {:?}", t0.elapsed());

    // One agent, three users: a store installs it again, a second store and a KVM host on the
    // same machine attach it (no second install).
    let (s, v) = rest
        .create(
            "/backup-storage/image-store",
            store_params("store-a", &h, &images, h.port, &h.password),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let a = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let agent = agents(&h);
    assert_eq!(agent.len(), 1);
    let (s, v) = rest
        .create(
            "/backup-storage/image-store",
            store_params(
                "store-b",
                &h,
                &h.home.join("images-b"),
                h.port,
                "another-password",
            ),
        )
        .await;
    assert_eq!(s, 200, "attached without logging in: {v}");
    let b = v["inventory"]["uuid"].as_str().unwrap().to_string();
    rest.set_config("kvm", "allowTestDriver", "true").await;
    let (s, v) = rest
        .create(
            "/clusters",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let cluster = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .create(
            "/hosts/kvm",
            json!({"clusterUuid": cluster, "name": "kvm", "managementIp": h.ip.to_string(),
                   "sshPort": h.port, "username": h.user, "password": h.password}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["status"], "Connected", "{v}");
    let host = v["inventory"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(agents(&h), agent, "the host attached the store's agent");
    // Deleting the store that installed it keeps it: it serves the host and the other store.
    rest.delete(&format!("/backup-storage/{a}")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(agents(&h), agent, "the shared agent was removed");
    assert_eq!(rest.store(&b).await["status"], "Connected");
    let hosts = rest.list(&format!("/hosts/{host}")).await;
    assert_eq!(hosts[0]["status"], "Connected", "{hosts:?}");
    let stores = std::fs::read_to_string(install_dir(&h).join("data/imagestores.json")).unwrap();
    assert!(!stores.contains(&a) && stores.contains(&b), "{stores}");
    // A store that only attached it leaves it too.
    rest.delete(&format!("/backup-storage/{b}")).await;
    assert_eq!(agents(&h), agent);
    eprintln!("done in {:?}", t0.elapsed());
}
