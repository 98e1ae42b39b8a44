//! Secrets never in clear (issue 10): a 3-node cluster of real `zsnode` processes sharing one
//! data key is given a KVM host and an ImageStore backup storage with distinctive passwords
//! (plus a password change and a refused add), then every place the cluster keeps or shows
//! anything is searched for those passwords in clear, as base64 and as hex: every file under
//! every data dir, every key and value of every column family of each stopped node's RocksDB
//! (decoded by RocksDB itself, so SST compression hides nothing), the Raft log column family,
//! a downloaded snapshot, the audit log, every inventory and reply, and the node logs.
//!
//! The host's description (not a secret) travels the same path as its password did before
//! sealing; the test asserts it IS found in the stores, the snapshot, the audit log and the
//! inventories, so a search that looked in the wrong place would fail here.

mod common;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::free_port;
use common::login;
use common::spawn_env;
use common::Proc;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const HOST_PW: &str = "kvm-Pw-7f3a9c-SecretOne";
const HOST_PW_NEW: &str = "kvm-Pw2-b81e44-Rotated";
const BS_PW: &str = "bs-Pw-5d2e61-ImageStore";
const REFUSED_PW: &str = "refused-Pw-90ac13-Closed";
const PASSWORDS: [&str; 4] = [HOST_PW, HOST_PW_NEW, BS_PW, REFUSED_PW];
/// Stored in clear on purpose: the control that proves each search sees the data.
const CANARY: &str = "canary-desc-4e7b2f-visible";

/// Byte strings that betray `s`: itself, its base64 (at each of the three alignments it can
/// have inside a longer base64 text), hex in both cases, and Rust's `Debug` of its bytes.
fn encodings(s: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("plain".to_string(), s.as_bytes().to_vec())];
    for pad in 0..3 {
        let mut padded = vec![0u8; pad];
        padded.extend_from_slice(s.as_bytes());
        let enc = B64.encode(&padded);
        // Characters fed only by `s`'s bytes: skip the group holding the padding, stop at the
        // last complete group.
        let start = if pad == 0 { 0 } else { 4 };
        let end = (padded.len() / 3) * 4;
        out.push((format!("base64+{pad}"), enc.as_bytes()[start..end].to_vec()));
    }
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone().into_bytes()));
    out.push(("HEX".into(), hex.to_ascii_uppercase().into_bytes()));
    let debug = format!("{:?}", s.as_bytes());
    out.push((
        "byte list".into(),
        debug
            .trim_start_matches('[')
            .trim_end_matches(']')
            .as_bytes()
            .to_vec(),
    ));
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Which of `secrets` (in which encoding) `hay` carries.
fn leaks(hay: &[u8], secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for s in secrets {
        for (how, needle) in encodings(s) {
            if contains(hay, &needle) {
                found.push(format!("{s} ({how})"));
            }
        }
    }
    found
}

#[track_caller]
fn assert_clean(what: &str, hay: &[u8]) {
    let found = leaks(hay, &PASSWORDS);
    assert!(found.is_empty(), "{what} holds {found:?}");
}

#[track_caller]
fn assert_canary(what: &str, hay: &[u8]) {
    assert!(
        !leaks(hay, &[CANARY]).is_empty(),
        "{what} lacks the canary: the search does not see its data"
    );
}

/// The negative control of the search itself: it finds a password in every encoding it looks
/// for, inside surrounding bytes, as a leak would appear.
#[test]
fn the_search_finds_every_encoding() {
    for (how, needle) in encodings(HOST_PW) {
        let mut hay = b"prefix\x00\x01".to_vec();
        hay.extend_from_slice(&needle);
        hay.extend_from_slice(b"\xffsuffix");
        assert!(!leaks(&hay, &[HOST_PW]).is_empty(), "{how}");
    }
    // Embedded in a longer base64 text at every offset.
    for pad in 0..3 {
        let mut raw = b"xyz"[..pad].to_vec();
        raw.extend_from_slice(HOST_PW.as_bytes());
        raw.extend_from_slice(b"tail");
        assert!(
            !leaks(B64.encode(&raw).as_bytes(), &[HOST_PW]).is_empty(),
            "offset {pad}"
        );
    }
    // A sealed value of the password is not found.
    let sealed = api::secret::DataKey::generate().seal(HOST_PW);
    assert!(leaks(sealed.as_str().as_bytes(), &[HOST_PW]).is_empty());
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every key and value of every column family of the RocksDB at `db` (a stopped node's), read
/// through RocksDB from a copy, so compressed blocks are decoded and the original is untouched.
/// Returns (all pairs concatenated, the `log` column family's pairs, the compression options).
fn rocksdb_dump(db: &Path, scratch: &Path) -> (Vec<u8>, Vec<u8>, String) {
    let copy = scratch.join(db.strip_prefix("/").unwrap_or(db));
    std::fs::create_dir_all(&copy).unwrap();
    for f in files(db) {
        let to = copy.join(f.strip_prefix(db).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f, &to).unwrap();
    }
    let options = files(&copy)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("OPTIONS")
        })
        .map(|f| std::fs::read_to_string(f).unwrap())
        .flat_map(|t| {
            t.lines()
                .filter(|l| l.trim_start().starts_with("compression="))
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ");
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, &copy).expect("list column families");
    let store = rocksdb::DB::open_cf(&opts, &copy, &cfs).expect("open the copied store");
    let mut all = Vec::new();
    let mut log = Vec::new();
    let mut pairs = 0usize;
    for name in &cfs {
        let cf = store.cf_handle(name).unwrap();
        for item in store.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.unwrap();
            pairs += 1;
            let mut rec = name.as_bytes().to_vec();
            for part in [&k[..], &v[..]] {
                rec.push(0);
                rec.extend_from_slice(part);
            }
            rec.push(b'\n');
            if name == "log" {
                log.extend_from_slice(&rec);
            }
            all.extend_from_slice(&rec);
        }
    }
    assert!(cfs.iter().any(|c| c == "log") && pairs > 0, "{cfs:?}");
    (all, log, options)
}

/// The one door to the admin routes (`/cluster/*`): credentials are added here.
fn admin(c: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    c.request(method, url)
        .header("Authorization", format!("Bearer {}", common::ADMIN_TOKEN))
}

async fn add_member(c: &reqwest::Client, via: &Proc, p: &Proc) {
    let r = admin(
        c,
        reqwest::Method::POST,
        format!("http://{}/cluster/members", via.http),
    )
    .json(&json!({"id": p.id, "raft_addr": p.raft, "api_addr": p.http}))
    .send()
    .await
    .unwrap();
    let s = r.status().as_u16();
    assert_eq!(s, 200, "{}", r.text().await.unwrap_or_default());
}

async fn snapshot(c: &reqwest::Client, p: &Proc) -> Vec<u8> {
    let r = admin(
        c,
        reqwest::Method::GET,
        format!("http://{}/cluster/snapshot", p.http),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.unwrap().to_vec();
    assert!(bytes.starts_with(b"ZSSNAP"), "not a snapshot file");
    bytes
}

async fn wait_ready(c: &reqwest::Client, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = c
            .get(format!("http://{}/health/ready", p.http))
            .send()
            .await
        {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {} not ready", p.id);
}

/// A fake KVM host whose SSH port identifies itself.
async fn fake_ssh() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    (port, task)
}

/// Replies collected for the search.
#[derive(Default)]
struct Seen(Vec<u8>);

impl Seen {
    fn add(&mut self, v: &Value) {
        self.0.extend_from_slice(v.to_string().as_bytes());
        self.0.push(b'\n');
    }
}

fn rest(c: &reqwest::Client, p: &Proc, session: &str) -> Rest {
    Rest {
        c: c.clone(),
        base: format!("http://{}/zstack/v1", p.http),
        session: session.to_string(),
    }
}

async fn ok(r: &Rest, seen: &mut Seen, method: reqwest::Method, path: &str, body: Value) -> Value {
    let body = (!body.is_null()).then_some(body);
    let (s, v) = r.send(method, path, body).await;
    seen.add(&v);
    assert_eq!(s, 200, "{path}: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_kept_or_shown_in_clear_anywhere() {
    // Nodes 2 and 3 join (common::spawn): they receive node 1's data key with their credentials.
    let td = tempfile::tempdir().unwrap();
    // Debug logs everywhere but the HTTP/2 plumbing: more lines that could leak.
    let log = "debug,h2=info,hyper=info,hyper_util=info,tower=info,reqwest=info";
    // The default snapshot interval (5000 entries) keeps the whole log: its entries are
    // searched too. The downloaded snapshot is built on request.
    let slow = ["--request-timeout-ms", "15000"];
    let n1 = spawn_env(td.path(), 1, &[&["--init"][..], &slow].concat(), log);
    let n2 = spawn_env(td.path(), 2, &slow, log);
    let n3 = spawn_env(td.path(), 3, &slow, log);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_ready(&c, &n1).await;
    add_member(&c, &n1, &n2).await;
    add_member(&c, &n1, &n3).await;
    let key = node::secrets::load(&common::data_dir(td.path(), 1)).expect("node 1's data key");
    for (p, text) in [&n1, &n2, &n3]
        .iter()
        .zip((1..=3).map(|i| std::fs::read_to_string(td.path().join(format!("node{i}.log")))))
    {
        assert!(
            text.unwrap().contains(&format!("data_key_id={}", key.id())),
            "node {} does not hold the shared key",
            p.id
        );
    }

    let session = login(&c, &format!("http://{}/zstack/v1", n1.http)).await;
    let r1 = rest(&c, &n1, &session);
    let r2 = rest(&c, &n2, &session);
    let r3 = rest(&c, &n3, &session);
    let mut seen = Seen::default();
    use reqwest::Method as M;

    let zone = ok(
        &r1,
        &mut seen,
        M::POST,
        "/zones",
        json!({"params": {"name": "z"}}),
    )
    .await;
    let zone = zone["inventory"]["uuid"].as_str().unwrap().to_string();
    let cluster = ok(
        &r1,
        &mut seen,
        M::POST,
        "/clusters",
        json!({"params": {"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}}),
    )
    .await;
    let cluster = cluster["inventory"]["uuid"].as_str().unwrap().to_string();
    // A refused add (nothing answers on the port): the audit log records it, the reply names
    // the endpoint, neither the password.
    let closed = free_port();
    let (s, v) = r2
        .send(
            M::POST,
            "/hosts/kvm",
            Some(json!({"params": {"clusterUuid": cluster, "name": "gone",
                "managementIp": "127.0.0.1", "sshPort": closed, "username": "root",
                "password": REFUSED_PW}})),
        )
        .await;
    seen.add(&v);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("HOST.1000")),
        "{v}"
    );

    // The host's agent: libvirt's test driver, which the operator allows here.
    let _agent = common::TestAgent::install(
        &common::data_dir(td.path(), 1),
        &td.path().join("agent"),
        "127.0.0.1",
    );
    ok(
        &r1,
        &mut seen,
        M::PUT,
        "/global-configurations/kvm/allowTestDriver/actions",
        json!({"updateGlobalConfig": {"value": "true"}}),
    )
    .await;

    // The host, added through a follower (the serving node seals, the leader never sees
    // the plaintext), then its password changed through the other follower.
    let (ssh, ssh_task) = fake_ssh().await;
    let host = ok(
        &r2,
        &mut seen,
        M::POST,
        "/hosts/kvm",
        json!({"params": {"clusterUuid": cluster, "name": "kvm-1", "description": CANARY,
            "managementIp": "127.0.0.1", "sshPort": ssh, "username": "root",
            "password": HOST_PW}}),
    )
    .await;
    let host = host["inventory"]["uuid"].as_str().unwrap().to_string();
    let (ssh2, ssh2_task) = fake_ssh().await;
    let updated = ok(
        &r3,
        &mut seen,
        M::PUT,
        &format!("/hosts/kvm/{host}/actions"),
        json!({"updateKVMHost": {"password": HOST_PW_NEW, "sshPort": ssh2}}),
    )
    .await;
    assert_eq!(
        updated["inventory"]["sshPort"].as_u64(),
        Some(u64::from(ssh2))
    );
    // Another node opens the password the previous one sealed (the shared key).
    ok(
        &r1,
        &mut seen,
        M::PUT,
        &format!("/hosts/{host}/actions"),
        json!({"reconnectHost": {}}),
    )
    .await;

    let bs = ok(
        &r3,
        &mut seen,
        M::POST,
        "/backup-storage/image-store",
        json!({"params": {"name": "bs", "url": td.path().join("bs").to_str().unwrap(), "hostname": "127.0.0.1",
            "username": "root", "password": BS_PW, "sshPort": 22}}),
    )
    .await;
    let bs = bs["inventory"]["uuid"].as_str().unwrap().to_string();
    ok(
        &r1,
        &mut seen,
        M::PUT,
        &format!("/backup-storage/{bs}/actions"),
        json!({"updateBackupStorage": {"name": "bs-renamed", "description": "d"}}),
    )
    .await;

    // Every inventory of both kinds, from every node, through REST and the RPC endpoint.
    for r in [&r1, &r2, &r3] {
        for path in [
            "/hosts".to_string(),
            format!("/hosts/{host}"),
            "/backup-storage".to_string(),
            format!("/backup-storage/{bs}"),
            "/backup-storage/image-store".to_string(),
            format!("/backup-storage/image-store/{bs}"),
        ] {
            ok(r, &mut seen, M::GET, &path, Value::Null).await;
        }
    }
    for class in [
        "org.zstack.header.host.APIQueryHostMsg",
        "org.zstack.header.storage.backup.APIQueryBackupStorageMsg",
        "org.zstack.storage.backup.imagestore.APIQueryImageStoreBackupStorageMsg",
    ] {
        let body = json!({ class: {"conditions": [], "session": {"uuid": session}} });
        let v: Value = c
            .post(format!("http://{}/zstack/api", n2.http))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.add(&v);
    }
    assert_canary("the inventories", &seen.0);
    assert_clean("the replies and inventories", &seen.0);

    // The audit log: every call above is recorded, passwords as `*****`. Records of reads
    // are flushed in batches; wait for the refused add's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let audit = loop {
        let (s, v) = r1.send(M::GET, "/zwatch/audits", None).await;
        assert_eq!(s, 200, "{v}");
        let records = v["inventories"].as_array().cloned().unwrap_or_default();
        let refused = records.iter().any(|a| {
            a["apiName"] == "AddKVMHost" && a["success"] == false && a["errorCode"] == "HOST.1000"
        });
        if refused || Instant::now() > deadline {
            assert!(refused, "the refused add was not audited: {v}");
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let records = audit["inventories"].as_array().unwrap();
    for api in [
        "AddKVMHost",
        "UpdateKVMHost",
        "ReconnectHost",
        "AddImageStoreBackupStorage",
    ] {
        let r = records
            .iter()
            .find(|a| a["apiName"] == api)
            .unwrap_or_else(|| panic!("{api} not audited"));
        let dump = r["requestDump"].as_str().unwrap_or_default();
        if api != "ReconnectHost" {
            assert!(dump.contains(r#""password":"*****""#), "{api}: {dump}");
        }
    }
    let audit_bytes = audit.to_string().into_bytes();
    assert_canary("the audit log", &audit_bytes);
    assert_clean("the audit log", &audit_bytes);

    // Snapshots downloaded from the leader and a follower.
    for p in [&n1, &n2] {
        let snap = snapshot(&c, p).await;
        assert_canary(&format!("node {}'s snapshot", p.id), &snap);
        assert_clean(&format!("node {}'s snapshot", p.id), &snap);
    }

    // Stop every node cleanly (SIGTERM), so the logs are complete and RocksDB files closed.
    for p in [&n1, &n2, &n3] {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut procs = [n1, n2, n3];
    for p in procs.iter_mut() {
        while p.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(procs);
    ssh_task.abort();
    ssh2_task.abort();

    // Every file of every data dir, raw; the node logs (the harness's captured stderr).
    let mut logs = 0;
    for f in files(td.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".log") && name.starts_with("node") {
            logs += 1;
            assert!(
                bytes.len() > 10_000,
                "{name}: a debug log this short saw nothing"
            );
        }
        assert_clean(&f.display().to_string(), &bytes);
    }
    assert_eq!(logs, 3);

    // Every key and value of every column family, decoded by RocksDB; the Raft log alone.
    let scratch = tempfile::tempdir().unwrap();
    for id in 1..=3 {
        let db = common::data_dir(td.path(), id).join("raft").join("db");
        let (all, log, compression) = rocksdb_dump(&db, scratch.path());
        eprintln!("node {id}: RocksDB {compression}");
        assert_canary(&format!("node {id}'s RocksDB"), &all);
        assert_clean(&format!("node {id}'s RocksDB (decoded)"), &all);
        assert_canary(&format!("node {id}'s Raft log"), &log);
        assert_clean(&format!("node {id}'s Raft log"), &log);
    }
}
