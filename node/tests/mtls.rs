//! Node-to-node gRPC is mutual TLS with the cluster CA: a peer without a certificate, or with
//! one of another CA, is refused in the handshake (no RPC runs); a member's certificate only
//! speaks for the node it names. Joining needs a valid token of this cluster; bad credentials
//! on disk stop a node from starting with a message naming the file, and leave nothing behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::spawn;
use proto::cluster::v1 as pb;
use proto::cluster::v1::cluster_client::ClusterClient;
use proto::cluster::PROTOCOL_VERSION;
use tonic::transport::Certificate;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Endpoint;
use tonic::transport::Identity;

/// A gRPC client of `addr` presenting `identity` (none: no client certificate) and trusting
/// `ca_pem`.
async fn client(
    addr: &str,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<ClusterClient<tonic::transport::Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(node::pki::PEER_NAME);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let ch = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(ClusterClient::new(ch))
}

fn status_request(from: u64) -> pb::Envelope {
    pb::Envelope {
        header: Some(pb::Header {
            cluster_id: "zstack".into(),
            protocol_version: PROTOCOL_VERSION,
            from,
            to: 0,
        }),
        payload: raft_store::codec::encode(&()),
    }
}

/// A certificate for node `id` of `cluster` signed by the CA in `ca_dir`'s `pki/`.
fn issue(ca_pem: &str, ca_key: &str, cluster: &str, id: u64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = node::pki::issue_node_cert(ca_pem, ca_key, cluster, id, &[], &key).unwrap();
    (cert, key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_of_the_cluster_ca_reach_the_raft_port() {
    let td = tempfile::tempdir().unwrap();
    let n1 = spawn(td.path(), 1, &["--init"]);
    let pki = td.path().join("n1/pki");
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(pki.join("ca.key")).unwrap();

    // Positive control: a certificate of this CA naming node 7, speaking as node 7.
    let mut ok = client(&n1.raft, &ca, Some(issue(&ca, &ca_key, "zstack", 7)))
        .await
        .expect("connect with a cluster certificate");
    ok.status(status_request(7))
        .await
        .expect("status as node 7");

    // The same certificate cannot speak for node 8.
    let e = ok.status(status_request(8)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("names node 7"), "{e:?}");
    // Nor can a cluster certificate of another cluster id.
    let mut other_id = client(&n1.raft, &ca, Some(issue(&ca, &ca_key, "other", 7)))
        .await
        .unwrap();
    let e = other_id.status(status_request(7)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // No client certificate: the handshake fails, no RPC runs.
    let refused = match client(&n1.raft, &ca, None).await {
        Err(e) => format!("{e:?}"),
        Ok(mut c) => format!("{:?}", c.status(status_request(7)).await.unwrap_err()),
    };
    assert!(!refused.contains("Ok"), "{refused}");
    // A certificate of another CA, even naming a member id of this cluster.
    let (other_ca, other_key) = node::pki::new_ca("zstack").unwrap();
    let foreign = issue(&other_ca, &other_key, "zstack", 2);
    let r = match client(&n1.raft, &ca, Some(foreign)).await {
        Err(e) => Err(format!("{e:?}")),
        Ok(mut c) => c
            .status(status_request(2))
            .await
            .map_err(|e| format!("{e:?}")),
    };
    let e = r.expect_err("a foreign CA's certificate was accepted");
    assert!(
        e.contains("Unavailable") || e.contains("transport") || e.contains("certificate"),
        "{e}"
    );
    // Plaintext gRPC on the Raft port gets nowhere either.
    let plain = Endpoint::from_shared(format!("http://{}", n1.raft))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let e = ClusterClient::new(ch)
            .status(status_request(7))
            .await
            .unwrap_err();
        assert_ne!(e.code(), tonic::Code::Ok);
    }
    // A truncated handshake (a TLS ClientHello cut short, then close) does not hurt the node.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(&n1.raft).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .await
            .unwrap();
        drop(s);
    }
    ok.status(status_request(7)).await.expect("still serving");
}

fn zsnode(dir: &std::path::Path, id: u64, args: &[&str]) -> std::process::Output {
    let free = |_| format!("127.0.0.1:{}", common::free_port());
    Command::new(env!("CARGO_BIN_EXE_zsnode"))
        .args(["--id", &id.to_string(), "--data-dir"])
        .arg(dir.join(format!("n{id}")))
        .args([
            "--raft-addr",
            &free(0),
            "--http-addr",
            &free(1),
            "--https-addr",
            &free(2),
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

fn join_token(dir: &std::path::Path, from: u64, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_zsnode"))
        .args(["pki", "join-token", "--data-dir"])
        .arg(dir.join(format!("n{from}")))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_join_tokens_and_bad_credential_files_are_refused_by_name() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path();
    let n1 = spawn(dir, 1, &["--init"]);
    let url = format!("https://{}", n1.https);
    let refused = |id: u64, token: &str, needle: &str| {
        let out = zsnode(dir, id, &["--join", &url, "--join-token", token]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "node {id} started with {token:?}");
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
        assert!(
            !dir.join(format!("n{id}/pki")).exists(),
            "a refused join left credentials behind"
        );
    };
    // Another cluster's token (its own CA): refused by the joining node before it sends it.
    let other = tempfile::tempdir().unwrap();
    let _foreign = spawn(other.path(), 1, &["--init"]);
    let foreign_token = join_token(other.path(), 1, &[]);
    refused(2, &foreign_token, "not the one the join token names");
    // A token bound to another node id.
    refused(
        3,
        &join_token(dir, 1, &["--node-id", "4"]),
        "admits node 4 only",
    );
    // A tampered token (the CA pin is right, the MAC is not).
    let good = join_token(dir, 1, &[]);
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = (parts[1].parse::<u64>().unwrap() + 3600).to_string();
    refused(5, &parts.join("."), "bad MAC");
    // Garbage.
    refused(6, "not-a-token", "not a join token");
    // An expired token (issued an hour ago for a minute).
    let creds = node::pki::load(&dir.join("n1"), "zstack", 1).unwrap();
    let now = node::pki::token::now_unix();
    let expired = node::pki::token::issue(&creds, 60, 0, now - 3600).unwrap();
    refused(8, &expired, "expired");
    // A member id cannot be issued again (a second machine configured as node 1).
    let twin = tempfile::tempdir().unwrap();
    let out = zsnode(twin.path(), 1, &["--join", &url, "--join-token", &good]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already a member"),
        "{err}"
    );
    assert!(!twin.path().join("n1/pki").exists());

    // A valid token: the node joins, its certificate names it.
    let n7 = spawn(dir, 7, &["--join", &url, "--join-token", &good]);
    let cert = std::fs::read_to_string(dir.join("n7/pki/node.crt")).unwrap();
    let der = rustls_pemfile::certs(&mut cert.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        node::pki::identity_of_der(&der).unwrap(),
        ("zstack".into(), 7)
    );
    drop(n7);

    // Credential files: a key others can read, a certificate of another node id.
    let key = dir.join("n7/pki/node.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = zsnode(dir, 7, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("node.key") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(dir.join("n1/pki/node.crt"), dir.join("n7/pki/node.crt")).unwrap();
    let out = zsnode(dir, 7, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("issued for node 1"),
        "{err}"
    );
}
