//! The storage calls through a real `zsnode` (REST v1) and a real `zsagent` that is both a
//! KVM host (libvirt's test driver) and an image store:
//!
//! - GetPrimaryStorageCapacity / GetBackupStorageCapacity answer what the agent measured
//!   (`statvfs` of the storage directories), summed as the family's rules say;
//! - ReconnectPrimaryStorage / ReconnectBackupStorage re-measure at once; with the agent
//!   killed they fail naming the cause and leave the storage Disconnected, and after a
//!   restart they bring it back Connected;
//! - ExportImageFromBackupStorage makes the image downloadable over the agent's export port
//!   (GET and HEAD, the bytes md5-identical to the source, another format converted), with
//!   clear refusals for bad input; DeleteExportedImageFromBackupStorage and DeleteImage stop
//!   serving it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::data_dir;
use common::login;
use common::spawn;
use common::Rest;
use common::TestAgent;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const IP: &str = "127.0.0.71";

impl Rest {
    async fn post(&self, path: &str, params: Value) -> (u16, Value) {
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

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// The one inventory of `GET base/{uuid}`.
    async fn one(&self, base: &str, uuid: &str) -> Value {
        self.get(&format!("{base}/{uuid}")).await["inventories"][0].clone()
    }

    async fn await_status(&self, base: &str, uuid: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let inv = self.one(base, uuid).await;
            if inv["status"] == want {
                return inv;
            }
            assert!(Instant::now() < deadline, "{base}/{uuid} not {want}: {inv}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A fake SSH server on `ip` (AddKVMHost probes the port; the agent is pre-installed).
async fn fake_ssh(ip: &str) -> u16 {
    let l = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    port
}

/// An HTTP server answering every request with `image`.
async fn image_server(image: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let image = std::sync::Arc::new(image);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let image = image.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&image).await;
            });
        }
    });
    port
}

fn md5_hex(b: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(b))
}

/// A qcow2 image of 4 MiB of data: its bytes and virtual size.
fn make_image(dir: &Path) -> (Vec<u8>, u64) {
    let raw = dir.join("src.raw");
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&raw, data).unwrap();
    let q = dir.join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q)
        .status()
        .unwrap();
    assert!(st.success());
    (std::fs::read(&q).unwrap(), 4 << 20)
}

/// (total, available) bytes of the file system holding `dir`, as `statvfs` reports it.
fn statvfs(dir: &Path) -> (u64, u64) {
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0] * v[2], v[1] * v[2])
}

/// Free space is live; the tracker commits moves beyond 0.1 % of the disk only.
fn close(reported: u64, measured: u64, total: u64) -> bool {
    reported.abs_diff(measured) <= 2 * (total / 1000).max(1 << 20) + (64 << 20)
}

fn error_of(s: u16, v: &Value) -> (String, String) {
    assert_eq!(s, 503, "expected a failure: {v}");
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_capacity_reconnect_and_image_export_over_real_agents() {
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest {
        c: c.clone(),
        base,
        session,
    };
    let mut agent = TestAgent::install(&data_dir(td.path(), 1), &td.path().join("agent"), IP);
    let (s, v) = rest
        .action(
            "/global-configurations/kvm/allowTestDriver/actions",
            "updateGlobalConfig",
            json!({"value": "true"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // A zone, a cluster, the host, local primary storage and an image store on the agent.
    let (_, v) = rest.post("/zones", json!({"name": "z"})).await;
    let zone = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (_, v) = rest
        .post(
            "/clusters",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        )
        .await;
    let cluster = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let ssh = fake_ssh(IP).await;
    let (s, v) = rest
        .post(
            "/hosts/kvm",
            json!({"clusterUuid": cluster, "name": "h", "managementIp": IP, "sshPort": ssh,
                   "username": "root", "password": "host-secret"}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Connected")),
        "{v}"
    );
    let ps_dir = td.path().join("ps");
    let (s, v) = rest
        .post(
            "/primary-storage/local-storage",
            json!({"zoneUuid": zone, "name": "local", "url": ps_dir.to_str().unwrap()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let ps = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .post(
            &format!("/clusters/{cluster}/primary-storage/{ps}"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bs_dir = td.path().join("bs");
    let (s, v) = rest
        .post(
            "/backup-storage/image-store",
            json!({"name": "store", "url": bs_dir.to_str().unwrap(), "hostname": IP,
                   "username": "root", "password": "bs-secret"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bs = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .post(&format!("/zones/{zone}/backup-storage/{bs}"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let ps_inv = rest
        .await_status("/primary-storage", &ps, "Connected")
        .await;
    let bs_inv = rest.await_status("/backup-storage", &bs, "Connected").await;

    // ---- Capacity: what the agent's statvfs says, through every scope.
    let (fs_total, fs_avail) = statvfs(td.path());
    for q in [
        format!("primaryStorageUuids={ps}"),
        format!("clusterUuids={cluster}"),
        format!("zoneUuids={zone}"),
        "all=true".to_string(),
    ] {
        let v = rest.get(&format!("/primary-storage/capacities?{q}")).await;
        assert_eq!(v["totalCapacity"], fs_total, "{q}: {v}");
        assert_eq!(v["totalPhysicalCapacity"], fs_total, "{q}: {v}");
        let avail = v["availablePhysicalCapacity"].as_u64().unwrap();
        assert!(
            close(avail, fs_avail, fs_total),
            "{q}: {avail} vs {fs_avail}"
        );
        assert_eq!(
            v["availablePhysicalCapacity"],
            ps_inv["availablePhysicalCapacity"]
        );
        assert_eq!(v["availableCapacity"], ps_inv["availableCapacity"]);
    }
    for q in [
        format!("backupStorageUuids={bs}"),
        format!("zoneUuids={zone}"),
        "all=true".into(),
    ] {
        let v = rest.get(&format!("/backup-storage/capacities?{q}")).await;
        assert_eq!(v["totalCapacity"], fs_total, "{q}: {v}");
        assert_eq!(
            v["availableCapacity"], bs_inv["availableCapacity"],
            "{q}: {v}"
        );
        let avail = v["availableCapacity"].as_u64().unwrap();
        assert!(
            close(avail, fs_avail, fs_total),
            "{q}: {avail} vs {fs_avail}"
        );
    }
    let (s, v) = rest
        .send(reqwest::Method::GET, "/primary-storage/capacities", None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("SYS.1007")),
        "{v}"
    );

    // ---- Reconnect with the agent up: measured now, Connected.
    let (s, v) = rest
        .action(
            &format!("/primary-storage/{ps}/actions"),
            "reconnectPrimaryStorage",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["status"], "Connected", "{v}");
    assert_eq!(v["inventory"]["totalPhysicalCapacity"], fs_total, "{v}");
    let (s, v) = rest
        .action(
            &format!("/backup-storage/{bs}/actions"),
            "reconnectBackupStorage",
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["status"], "Connected", "{v}");
    assert_eq!(v["inventory"]["totalCapacity"], fs_total, "{v}");

    // ---- An image, then its export.
    let (image, vsize) = make_image(td.path());
    let md5 = md5_hex(&image);
    let port = image_server(image.clone()).await;
    let (s, v) = rest
        .post(
            "/images",
            json!({"name": "tiny linux", "url": format!("http://127.0.0.1:{port}/img.qcow2"),
                   "format": "qcow2", "backupStorageUuids": [bs],
                   "systemTags": [format!("md5::{md5}")]}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Ready")),
        "{v}"
    );
    let img = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let install = v["inventory"]["backupStorageRefs"][0]["installPath"]
        .as_str()
        .unwrap()
        .to_string();
    let bs_actions = format!("/backup-storage/{bs}/actions");
    let export = |format: Option<&str>| {
        let mut f = json!({"imageUuid": img});
        if let Some(x) = format {
            f["exportFormat"] = json!(x);
        }
        f
    };
    let (s, v) = rest
        .action(&bs_actions, "exportImageFromBackupStorage", export(None))
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["imageUrl"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("http://{IP}:7273/exports/{bs}/"))
            && url.ends_with("/tiny_linux.qcow2"),
        "{url}"
    );
    assert_eq!(v["exportMd5Sum"], md5.as_str(), "{v}");
    let got = c.get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.content_length(), Some(image.len() as u64));
    assert_eq!(
        md5_hex(&got.bytes().await.unwrap()),
        md5,
        "served bytes differ"
    );
    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()[reqwest::header::CONTENT_LENGTH],
        image.len().to_string().as_str()
    );
    let copy = &rest.one("/images", &img).await["backupStorageRefs"][0];
    assert_eq!(
        (copy["exportUrl"].as_str(), copy["exportMd5Sum"].as_str()),
        (Some(url.as_str()), Some(md5.as_str())),
        "{copy}"
    );
    // A retry is the same export; a guessed token is nothing.
    let (s, v) = rest
        .action(&bs_actions, "exportImageFromBackupStorage", export(None))
        .await;
    assert_eq!(
        (s, v["imageUrl"].as_str()),
        (200, Some(url.as_str())),
        "{v}"
    );
    let token = url.rsplit('/').nth(1).unwrap();
    let guessed = url.replace(token, &"0".repeat(32));
    assert_eq!(c.get(&guessed).send().await.unwrap().status(), 404);

    // Another format: converted by qemu-img, replacing the qcow2 export.
    let (s, v) = rest
        .action(
            &bs_actions,
            "exportImageFromBackupStorage",
            export(Some("raw")),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let raw_url = v["imageUrl"].as_str().unwrap().to_string();
    assert!(raw_url.ends_with("/tiny_linux.raw"), "{raw_url}");
    let raw = c.get(&raw_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(raw.len() as u64, vsize);
    assert_eq!(v["exportMd5Sum"], md5_hex(&raw).as_str());
    let raw_file = td.path().join("exported.raw");
    std::fs::write(&raw_file, &raw).unwrap();
    let cmp = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw"])
        .arg(&install)
        .arg(&raw_file)
        .output()
        .unwrap();
    assert!(cmp.status.success(), "{cmp:?}");
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        404,
        "the qcow2 export was replaced"
    );

    // Bad input: clear errors, nothing exported or recorded.
    let (_, v) = rest
        .post(
            "/backup-storage/image-store",
            json!({"name": "store2", "url": td.path().join("bs2").to_str().unwrap(),
                   "hostname": IP, "username": "root", "password": "bs-secret"}),
        )
        .await;
    let bs2 = v["inventory"]["uuid"].as_str().unwrap().to_string();
    for (path, fields, code, needle) in [
        (
            bs_actions.clone(),
            json!({"imageUuid": "9".repeat(32)}),
            "SYS.1003",
            "9999",
        ),
        (
            format!("/backup-storage/{}/actions", "8".repeat(32)),
            json!({"imageUuid": img}),
            "SYS.1003",
            "8888",
        ),
        (
            format!("/backup-storage/{bs2}/actions"),
            json!({"imageUuid": img}),
            "SYS.1007",
            "is not on backup storage",
        ),
        (
            bs_actions.clone(),
            json!({"imageUuid": img, "exportFormat": "vmdk"}),
            "SYS.1007",
            "exportFormat",
        ),
    ] {
        let (s, v) = rest
            .action(&path, "exportImageFromBackupStorage", fields)
            .await;
        let (got, details) = error_of(s, &v);
        assert_eq!(got, code, "{path}: {v}");
        assert!(details.contains(needle), "{needle:?} not in {details}");
    }
    let copy = &rest.one("/images", &img).await["backupStorageRefs"][0];
    assert_eq!(copy["exportUrl"].as_str(), Some(raw_url.as_str()), "{copy}");

    // DeleteExported: no longer served, the record forgets it; again is a success.
    let unexport = format!("/backup-storage/{bs}/exported-images/{img}");
    for _ in 0..2 {
        let (s, v) = rest.send(reqwest::Method::DELETE, &unexport, None).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(c.get(&raw_url).send().await.unwrap().status(), 404);
    let copy = &rest.one("/images", &img).await["backupStorageRefs"][0];
    assert!(copy.get("exportUrl").is_none(), "{copy}");

    // Deleting an exported image (Delay) stops serving it; expunging removes its file.
    let (s, v) = rest
        .action(&bs_actions, "exportImageFromBackupStorage", export(None))
        .await;
    assert_eq!(s, 200, "{v}");
    let url = v["imageUrl"].as_str().unwrap().to_string();
    let (s, v) = rest
        .send(reqwest::Method::DELETE, &format!("/images/{img}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        404,
        "a deleted image is served"
    );
    assert!(
        Path::new(&install).exists(),
        "a recoverable image lost its file"
    );
    let (s, v) = rest
        .action(&format!("/images/{img}/actions"), "expungeImage", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!Path::new(&install).exists(), "expunge left the file");

    // ---- The agent dies: reconnect fails naming the cause, the storages are Disconnected.
    agent.kill();
    let (s, v) = rest
        .action(
            &format!("/primary-storage/{ps}/actions"),
            "reconnectPrimaryStorage",
            json!({}),
        )
        .await;
    let (code, details) = error_of(s, &v);
    assert_eq!(code, "PS.1003", "{v}");
    assert!(
        details.contains(IP) && details.contains("unreachable"),
        "{details}"
    );
    assert_eq!(
        rest.one("/primary-storage", &ps).await["status"],
        "Disconnected"
    );
    let (s, v) = rest
        .action(&bs_actions, "reconnectBackupStorage", json!({}))
        .await;
    let (code, details) = error_of(s, &v);
    assert_eq!(code, "SYS.1006", "{v}");
    assert!(
        details.contains(IP) && details.contains("does not answer"),
        "{details}"
    );
    assert_eq!(
        rest.one("/backup-storage", &bs).await["status"],
        "Disconnected"
    );

    // Back: reconnect brings both back at once.
    agent.start();
    let (s, v) = rest
        .action(
            &format!("/primary-storage/{ps}/actions"),
            "reconnectPrimaryStorage",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Connected")),
        "{v}"
    );
    let (s, v) = rest
        .action(&bs_actions, "reconnectBackupStorage", json!({}))
        .await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Connected")),
        "{v}"
    );
}
