//! `zsagent` as a process over real mutual TLS: who may call it, term fencing across restarts,
//! the host binding, domain-list versions, primary storage, and the simulator.

use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use proto::agent::v1 as pb;
use proto::agent::v1::agent_client::AgentClient;
use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::Issuer;
use rcgen::KeyPair;
use rcgen::SanType;
use tonic::transport::Certificate;
use tonic::transport::Channel;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;
use tonic::Code;

const CLUSTER: &str = "c1";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// (cert PEM, key PEM) with these DNS names and URI, for server or client use.
fn leaf(ca: &Ca, dns: &[&str], uri: &str, client: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.subject_alt_names
        .push(SanType::URI(uri.to_string().try_into().unwrap()));
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_pki(dir: &Path, ca: &Ca, host: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = leaf(
        ca,
        &["zsagent", host],
        &proto::agent::agent_uri(CLUSTER, host),
        false,
    );
    std::fs::write(dir.join("ca.crt"), &ca.pem).unwrap();
    std::fs::write(dir.join("agent.crt"), c).unwrap();
    std::fs::write(dir.join("agent.key"), k).unwrap();
    std::fs::set_permissions(
        dir.join("agent.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

struct AgentProc {
    child: Child,
    data: PathBuf,
    listen: SocketAddr,
    extra: Vec<String>,
}

impl AgentProc {
    fn start(data: &Path, listen: SocketAddr, extra: &[&str]) -> Self {
        let mut a = Self {
            child: Command::new("true").spawn().unwrap(),
            data: data.to_path_buf(),
            listen,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        a.restart();
        a
    }

    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Command::new(env!("CARGO_BIN_EXE_zsagent"))
            .arg("run")
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.extra)
            // Many agents share 127.0.0.1 here: no export server unless a test asks for one.
            .args(if self.extra.iter().any(|a| a == "--export-port") {
                &[][..]
            } else {
                &["--export-port", "0"][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.listen).is_err() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("zsagent exited: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "zsagent did not listen on {}",
                self.listen
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(ca_pem: &str, id: (&str, &str), addr: SocketAddr) -> AgentClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .identity(Identity::from_pem(id.0, id.1))
        .domain_name("zsagent");
    let ch = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    AgentClient::new(ch)
}

fn node_id(ca: &Ca, id: u64) -> (String, String) {
    leaf(
        ca,
        &["zsnode"],
        &format!("urn:zstack:{CLUSTER}:node:{id}"),
        true,
    )
}

fn header(term: u64, leader: u64, host: &str) -> Option<pb::Header> {
    Some(pb::Header {
        cluster_id: CLUSTER.into(),
        protocol_version: proto::agent::PROTOCOL_VERSION,
        term,
        leader_id: leader,
        host_uuid: host.into(),
    })
}

fn ping(term: u64, leader: u64, host: &str, known: u64) -> pb::PingRequest {
    pb::PingRequest {
        header: header(term, leader, host),
        known_domains_version: known,
    }
}

fn attach(term: u64, leader: u64, host: &str) -> pb::AttachRequest {
    pb::AttachRequest {
        header: header(term, leader, ""),
        host_uuid: host.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leader_is_refused_also_after_the_agent_restarts() {
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "127.0.0.1");
    let addr: SocketAddr = "127.0.0.1:17301".parse().unwrap();
    let mut agent = AgentProc::start(d.path(), addr, &["--libvirt-uri", "test:///default"]);
    let n1 = node_id(&ca, 1);
    let n2 = node_id(&ca, 2);
    let mut old = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    let mut new = client(&ca.pem, (&n2.0, &n2.1), addr).await;

    let r = old.attach(attach(5, 1, "h1")).await.unwrap().into_inner();
    let f = r.facts.unwrap();
    assert_eq!(f.virtualization, "test");
    assert!(f.cpu_threads > 0 && f.memory_bytes > 0);
    assert_eq!(r.term, 5);
    let boot1 = r.boot_id;
    old.ping(ping(5, 1, "h1", 0)).await.unwrap();

    // Node 2 wins term 6 and talks to the agent: node 1 (term 5) is deposed.
    let p = new.ping(ping(6, 2, "h1", 0)).await.unwrap().into_inner();
    assert_eq!(p.term, 6);
    let e = old.ping(ping(5, 1, "h1", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "stale leader term 5: this agent has seen term 6"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("term")).unwrap(),
        "6\n"
    );

    agent.restart();
    let mut old = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    let mut new = client(&ca.pem, (&n2.0, &n2.1), addr).await;
    let e = old.ping(ping(5, 1, "h1", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("has seen term 6"), "{e:?}");
    let e = old.attach(attach(5, 1, "h1")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let p = new.ping(ping(6, 2, "h1", 0)).await.unwrap().into_inner();
    assert_ne!(p.boot_id, boot1, "a restarted agent has a new boot id");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_node_of_the_cluster_speaking_for_itself_gets_in() {
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "127.0.0.1");
    let addr: SocketAddr = "127.0.0.1:17302".parse().unwrap();
    let _agent = AgentProc::start(d.path(), addr, &["--libvirt-uri", "test:///default"]);
    let n1 = node_id(&ca, 1);
    let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;

    // Node 1's certificate claiming to be leader 2.
    let e = c.attach(attach(1, 2, "h1")).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("names node 1"), "{e:?}");
    // Another cluster in the header.
    let mut req = attach(1, 1, "h1");
    req.header.as_mut().unwrap().cluster_id = "other".into();
    let e = c.attach(req).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Another protocol version.
    let mut req = attach(1, 1, "h1");
    req.header.as_mut().unwrap().protocol_version = 99;
    let e = c.attach(req).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(!e.message().contains("term"), "not a term refusal: {e:?}");
    // No header.
    let e = c.ping(pb::PingRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // None of those refusals raised the term.
    assert!(!d.path().join("term").exists());

    // A certificate from another CA does not get past the handshake.
    let rogue = self::ca();
    let r = node_id(&rogue, 1);
    let mut rc = client(&ca.pem, (&r.0, &r.1), addr).await;
    let e = rc.attach(attach(9, 1, "h1")).await.unwrap_err();
    assert!(
        // TLS 1.3: the client may finish its side before the server rejects its certificate, so
        // the refusal arrives as a closed connection.
        matches!(
            e.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{e:?}"
    );
    assert!(
        !d.path().join("term").exists(),
        "the rogue term was not recorded"
    );

    // A client certificate naming no node (an agent certificate used as a client).
    let (ac, ak) = leaf(
        &ca,
        &["zsagent"],
        &proto::agent::agent_uri(CLUSTER, "x"),
        true,
    );
    let mut ac = client(&ca.pem, (&ac, &ak), addr).await;
    let e = ac.attach(attach(9, 1, "h1")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // The right caller: bound to h1, and then a second record for the same machine is refused.
    c.attach(attach(1, 1, "h1")).await.unwrap();
    let e = c.attach(attach(1, 1, "h2")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already serves host h1"), "{e:?}");
    let e = c.ping(ping(1, 1, "h2", 0)).await.unwrap_err();
    assert!(e.message().contains("serves host h1, not h2"), "{e:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("host-uuid")).unwrap(),
        "h1\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_carry_domain_changes_and_storage_capacity() {
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "127.0.0.1");
    let addr: SocketAddr = "127.0.0.1:17303".parse().unwrap();
    let mut agent = AgentProc::start(d.path(), addr, &["--libvirt-uri", "test:///default"]);
    let n1 = node_id(&ca, 1);
    let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    let e = c.ping(ping(1, 1, "h1", 0)).await.unwrap_err();
    assert!(e.message().contains("not attached"), "{e:?}");
    c.attach(attach(1, 1, "h1")).await.unwrap();

    let p = c.ping(ping(1, 1, "h1", 0)).await.unwrap().into_inner();
    assert!(!p.domains_unchanged);
    assert_eq!(p.domains.len(), 1, "{:?}", p.domains);
    assert_eq!(p.domains[0].state, "Running");
    let v = p.domains_version;
    let p = c.ping(ping(1, 1, "h1", v)).await.unwrap().into_inner();
    assert!(p.domains_unchanged && p.domains.is_empty());
    assert_eq!(p.domains_version, v);
    assert!(p.storages.is_empty());

    let ps = d.path().join("ps-local");
    let r = c
        .prepare_primary_storage(pb::PreparePrimaryStorageRequest {
            header: header(1, 1, "h1"),
            primary_storage_uuid: "ps1".into(),
            r#type: "LocalStorage".into(),
            url: ps.to_str().unwrap().into(),
            mount_point: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let cap = r.capacity.unwrap();
    assert!(
        cap.healthy && cap.total_bytes > 0 && cap.available_bytes > 0,
        "{cap:?}"
    );
    assert!(ps.is_dir());
    let e = c
        .prepare_primary_storage(pb::PreparePrimaryStorageRequest {
            header: header(1, 1, "h1"),
            primary_storage_uuid: "ps2".into(),
            r#type: "Ceph".into(),
            url: "/x".into(),
            mount_point: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Prepared storages survive a restart and are measured on every ping.
    agent.restart();
    let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    let p = c.ping(ping(1, 1, "h1", v)).await.unwrap().into_inner();
    assert!(!p.domains_unchanged, "a restarted agent's version is new");
    assert_eq!(p.storages.len(), 1);
    assert_eq!(p.storages[0].primary_storage_uuid, "ps1");
    assert!(p.storages[0].healthy);
    std::fs::remove_dir_all(&ps).unwrap();
    let p = c.ping(ping(1, 1, "h1", 0)).await.unwrap().into_inner();
    assert!(
        !p.storages[0].healthy && p.storages[0].error.contains("gone"),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulator_serves_one_host_per_address() {
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "zsagent");
    let base: SocketAddr = "127.1.7.1:17304".parse().unwrap();
    let _agent = AgentProc::start(d.path(), base, &["--simulate", "3"]);
    let n1 = node_id(&ca, 1);
    for i in 1..=3u8 {
        let addr = SocketAddr::new([127, 1, 7, i].into(), 17304);
        // The listener may still be coming up on later addresses.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;
        let r = c
            .attach(attach(1, 1, &format!("h{i}")))
            .await
            .unwrap()
            .into_inner();
        let f = r.facts.unwrap();
        assert_eq!(f.hostname, format!("sim-127.1.7.{i}"));
        assert_eq!(f.virtualization, "simulated");
        assert_eq!(f.cpu_threads, 32);
        let p = c
            .ping(ping(1, 1, &format!("h{i}"), 0))
            .await
            .unwrap()
            .into_inner();
        assert!(p.domains.is_empty());
        // Each address is its own host: another host's uuid is refused here.
        let other = if i == 1 { 2 } else { 1 };
        let e = c
            .ping(ping(1, 1, &format!("h{other}"), 0))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn detach_undoes_an_attach_so_the_host_can_be_added_again() {
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "127.0.0.1");
    let addr: SocketAddr = "127.0.0.1:17305".parse().unwrap();
    let _agent = AgentProc::start(d.path(), addr, &["--libvirt-uri", "test:///default"]);
    let n1 = node_id(&ca, 1);
    let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    c.attach(attach(1, 1, "h1")).await.unwrap();
    let detach = |h: &str| pb::DetachRequest {
        header: header(1, 1, ""),
        host_uuid: h.into(),
    };
    // Another host's detach leaves the binding alone.
    assert!(
        !c.detach(detach("h2"))
            .await
            .unwrap()
            .into_inner()
            .was_attached
    );
    assert!(
        c.detach(detach("h1"))
            .await
            .unwrap()
            .into_inner()
            .was_attached
    );
    assert!(
        !c.detach(detach("h1"))
            .await
            .unwrap()
            .into_inner()
            .was_attached
    );
    assert!(!d.path().join("host-uuid").exists());
    c.attach(attach(1, 1, "h2")).await.unwrap();
    // This agent runs without an export server: exports are refused, saying why.
    let e = c
        .export_image(pb::ExportImageRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            image_uuid: "i1".into(),
            format: String::new(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--export-port 0"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_store_downloads_and_a_host_caches_the_image_on_its_primary_storage() {
    use futures::StreamExt;
    let d = tempfile::tempdir().unwrap();
    let ca = self::ca();
    write_pki(&d.path().join("pki"), &ca, "127.0.0.1");
    let addr: SocketAddr = "127.0.0.1:17306".parse().unwrap();
    let export_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let _agent = AgentProc::start(
        d.path(),
        addr,
        &[
            "--libvirt-uri",
            "test:///default",
            "--export-port",
            &export_port,
        ],
    );
    let n1 = node_id(&ca, 1);
    let mut c = client(&ca.pem, (&n1.0, &n1.1), addr).await;
    let src = d.path().join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg("16M")
        .status()
        .unwrap();
    assert!(st.success());
    let bs_dir = d.path().join("bs");
    let cap = c
        .connect_image_store(pb::ConnectImageStoreRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            url: bs_dir.to_str().unwrap().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cap.total_bytes > 0 && cap.available_bytes > 0);
    let image = "0123456789abcdef0123456789abcdef";
    let mut s = c
        .download_image(pb::DownloadImageRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            image_uuid: image.into(),
            url: format!("file://{}", src.display()),
            md5: String::new(),
            format: "qcow2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = s.next().await {
        last = Some(m.unwrap());
    }
    let f = last.unwrap().image.unwrap();
    assert_eq!((f.format.as_str(), f.virtual_size), ("qcow2", 16 << 20));
    assert!(f.path.starts_with(bs_dir.to_str().unwrap()), "{}", f.path);

    // The host role: its primary storage gets a verified copy in its image cache.
    c.attach(attach(1, 1, "h1")).await.unwrap();
    let ps = d.path().join("ps");
    c.prepare_primary_storage(pb::PreparePrimaryStorageRequest {
        header: header(1, 1, "h1"),
        primary_storage_uuid: "ps1".into(),
        r#type: "LocalStorage".into(),
        url: ps.to_str().unwrap().into(),
        mount_point: String::new(),
    })
    .await
    .unwrap();
    let cache = |md5: &str| pb::CacheImageRequest {
        header: header(1, 1, "h1"),
        primary_storage_uuid: "ps1".into(),
        image_uuid: image.into(),
        source_url: format!("file://{}", f.path),
        md5: md5.into(),
    };
    let r = c.cache_image(cache(&f.md5)).await.unwrap().into_inner();
    let cached = r.image.unwrap();
    assert!(
        cached
            .path
            .starts_with(ps.join("imagecache").to_str().unwrap()),
        "{}",
        cached.path
    );
    assert_eq!(
        std::fs::read(&cached.path).unwrap(),
        std::fs::read(&f.path).unwrap()
    );
    // Idempotent.
    let again = c.cache_image(cache(&f.md5)).await.unwrap().into_inner();
    assert_eq!(again.image.unwrap().path, cached.path);
    // Not a prepared primary storage: refused.
    let mut bad = cache("");
    bad.primary_storage_uuid = "ps9".into();
    let e = c.cache_image(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // The image store exports the image over plain HTTP on its export port.
    let export = |format: &str| pb::ExportImageRequest {
        header: header(1, 1, ""),
        backup_storage_uuid: "bs1".into(),
        image_uuid: image.into(),
        format: format.into(),
        name: "tiny".into(),
    };
    let x = c.export_image(export("")).await.unwrap().into_inner();
    assert_eq!(x.http_port.to_string(), export_port);
    assert_eq!(
        (x.md5.as_str(), x.format.as_str()),
        (f.md5.as_str(), "qcow2")
    );
    assert!(
        x.path.starts_with("/exports/bs1/") && x.path.ends_with("/tiny.qcow2"),
        "{}",
        x.path
    );
    let url = format!("http://127.0.0.1:{export_port}{}", x.path);
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.as_ref(), std::fs::read(&f.path).unwrap().as_slice());
    assert_eq!(
        c.export_image(export("qcow2")).await.unwrap().into_inner(),
        x
    );
    let e = c.export_image(export("vmdk")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut other = export("");
    other.image_uuid = "fedcba9876543210fedcba9876543210".into();
    assert_eq!(
        c.export_image(other).await.unwrap_err().code(),
        Code::NotFound
    );
    // Deleting the image deletes its export.
    c.delete_image(pb::DeleteImageRequest {
        header: header(1, 1, ""),
        backup_storage_uuid: "bs1".into(),
        image_uuid: image.into(),
    })
    .await
    .unwrap();
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    let gone = c
        .delete_exported_image(pb::DeleteExportedImageRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            image_uuid: image.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!gone.deleted, "nothing was left to delete");
    // The image again, for the disconnect below to leave in place.
    let mut s = c
        .download_image(pb::DownloadImageRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            image_uuid: image.into(),
            url: format!("file://{}", src.display()),
            md5: String::new(),
            format: "qcow2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = s.next().await {
        m.unwrap();
    }
    // Both roles in one agent: forgetting the store says what else it serves (host h1 and a
    // second store), and keeps the image files; a store it does not know is no error.
    c.connect_image_store(pb::ConnectImageStoreRequest {
        header: header(1, 1, ""),
        backup_storage_uuid: "bs2".into(),
        url: d.path().join("bs2").to_str().unwrap().into(),
    })
    .await
    .unwrap();
    let disconnect = |bs: &str| pb::DisconnectImageStoreRequest {
        header: header(1, 1, ""),
        backup_storage_uuid: bs.into(),
    };
    let r = c
        .disconnect_image_store(disconnect("bs1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.was_connected, r.image_stores, r.host_uuid.as_str()),
        (true, 1, "h1")
    );
    assert!(
        std::path::Path::new(&f.path).exists(),
        "the image file stays"
    );
    let stores = std::fs::read_to_string(d.path().join("imagestores.json")).unwrap();
    assert!(
        !stores.contains("bs1") && stores.contains("bs2"),
        "{stores}"
    );
    let e = c
        .download_image(pb::DownloadImageRequest {
            header: header(1, 1, ""),
            backup_storage_uuid: "bs1".into(),
            image_uuid: image.into(),
            url: format!("file://{}", src.display()),
            md5: String::new(),
            format: "qcow2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let r = c
        .disconnect_image_store(disconnect("bs1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.was_connected, r.image_stores), (false, 1));
    c.disconnect_image_store(disconnect("bs2")).await.unwrap();
    c.detach(pb::DetachRequest {
        header: header(1, 1, ""),
        host_uuid: "h1".into(),
    })
    .await
    .unwrap();
    let r = c
        .disconnect_image_store(disconnect("bs2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.image_stores, r.host_uuid.as_str()),
        (0, ""),
        "nothing left"
    );
}
