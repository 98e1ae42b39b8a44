//! End-to-end tests: real `zsnode` processes on 127.0.0.1 driven over HTTP.

mod common;

use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::spawn;
use common::Proc;
use serde_json::json;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(common::admin_headers())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    match c.get(&url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(&url).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn put_kv(c: &reqwest::Client, p: &Proc, key: &str, value: &str, rid: &str) -> (u16, Value) {
    match c
        .put(format!("http://{}/kv/{key}", p.http))
        .header("X-Request-Id", rid)
        .body(value.to_string())
        .send()
        .await
    {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn b64(s: &str) -> Value {
    use base64::Engine;
    json!(base64::engine::general_purpose::STANDARD.encode(s))
}

async fn wait_live(c: &reqwest::Client, p: &Proc) {
    wait_until(
        &format!("node {} live", p.id),
        Duration::from_secs(15),
        || async { get(c, format!("http://{}/health/live", p.http)).await.0 == 200 },
    )
    .await;
}

async fn add_member(c: &reqwest::Client, via: &Proc, p: &Proc) -> (u16, Value) {
    post(
        c,
        format!("http://{}/cluster/members", via.http),
        json!({"id": p.id, "raft_addr": p.raft, "api_addr": p.http}),
    )
    .await
}

async fn leader_of(c: &reqwest::Client, nodes: &[&Proc]) -> Option<u64> {
    for p in nodes {
        let (s, v) = get(c, format!("http://{}/cluster/status", p.http)).await;
        if s == 200 && v["role"] == "Leader" {
            return v["node_id"].as_u64();
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_read_linearizably_and_survive_leader_loss() {
    let td = tempfile::tempdir().unwrap();
    let c = client();
    // A generous request bound: this host's CPUs are shared with compilers, and a write that
    // waits out an election must not be reported as a test failure.
    let slow = ["--request-timeout-ms", "15000"];
    let n1 = spawn(td.path(), 1, &["--init", slow[0], slow[1]]);
    let n2 = spawn(td.path(), 2, &slow);
    let n3 = spawn(td.path(), 3, &slow);
    for p in [&n1, &n2, &n3] {
        wait_live(&c, p).await;
    }
    wait_until("node 1 ready", Duration::from_secs(10), || async {
        get(&c, format!("http://{}/health/ready", n1.http)).await.0 == 200
    })
    .await;
    // Membership changes through any node: node 3 is added through follower node 2.
    let (s, v) = add_member(&c, &n1, &n2).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = add_member(&c, &n2, &n3).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["voters"], json!([1, 2, 3]));

    // Writes through a follower are forwarded; a retry with the same request id is deduped.
    let (s, w) = put_kv(&c, &n2, "k0", "v0", "req-0").await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["served_by"], 2);
    assert_eq!(w["duplicate"], false);
    let (s, again) = put_kv(&c, &n3, "k0", "other", "req-0").await;
    assert_eq!(s, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["index"], w["index"]);

    let mut acked = vec![("k0".to_string(), "v0".to_string())];
    for i in 1..20 {
        let via = [&n1, &n2, &n3][i % 3];
        let (key, val) = (format!("k{i}"), format!("v{i}"));
        let (s, v) = put_kv(&c, via, &key, &val, &format!("req-{i}")).await;
        assert_eq!(s, 200, "{v}");
        acked.push((key, val));
    }
    // Linearizable reads from every node see every acknowledged write.
    for p in [&n1, &n2, &n3] {
        for (k, v) in &acked {
            let (s, r) = get(&c, format!("http://{}/kv/{k}", p.http)).await;
            assert_eq!(s, 200, "{r}");
            assert_eq!(r["value"], b64(v), "node {} key {k}", p.id);
            assert_eq!(r["served_by"], p.id);
        }
    }

    // Every /metrics line parses with a real Prometheus text parser.
    for p in [&n1, &n2] {
        let text = common::metrics(&c, p).await;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
        let names: Vec<_> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        for want in [
            "zstack_raft_term",
            "zstack_raft_applied_index",
            "zstack_forwarded_requests_total",
            "zstack_http_requests_total",
            "zstack_proposal_latency_seconds_count",
        ] {
            assert!(names.contains(&want), "node {} metrics lack {want}", p.id);
        }
        assert!(text
            .lines()
            .all(|l| l.is_empty() || l.starts_with('#') || l.starts_with("zstack_")));
    }

    // The registry duty records all three management nodes.
    wait_until(
        "three management node records",
        Duration::from_secs(10),
        || async {
            let (s, v) = get(&c, format!("http://{}/cluster/management-nodes", n3.http)).await;
            s == 200 && v["inventories"].as_array().map(|a| a.len()) == Some(3)
        },
    )
    .await;

    // Leadership transfer requested through a follower.
    let nodes = vec![n1, n2, n3];
    let old = leader_of(&c, &nodes.iter().collect::<Vec<_>>())
        .await
        .expect("a leader");
    let to = if old == 3 { 2 } else { 3 };
    let via = nodes.iter().find(|p| p.id != old && p.id != to).unwrap();
    let (s, v) = post(
        &c,
        format!("http://{}/cluster/leader/transfer", via.http),
        json!({"to": to}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["leader_id"], to);
    wait_until(
        "transferred leadership",
        Duration::from_secs(10),
        || async { leader_of(&c, &nodes.iter().collect::<Vec<_>>()).await == Some(to) },
    )
    .await;

    // Kill -9 the leader: a new one is elected and nothing acknowledged is lost.
    let mut nodes = nodes;
    let leader = leader_of(&c, &nodes.iter().collect::<Vec<_>>())
        .await
        .expect("a leader");
    nodes.retain(|p| p.id != leader);
    let survivors: Vec<&Proc> = nodes.iter().collect();
    let killed_at = Instant::now();
    wait_until("a new leader", Duration::from_secs(10), || async {
        matches!(leader_of(&c, &survivors).await, Some(l) if l != leader)
    })
    .await;
    let (s, v) = put_kv(&c, survivors[0], "after", "failover", "req-after").await;
    assert_eq!(s, 200, "{v}");
    eprintln!(
        "leader {leader} killed; first write after {:?}",
        killed_at.elapsed()
    );
    acked.push(("after".into(), "failover".into()));
    for p in &survivors {
        for (k, v) in &acked {
            let (s, r) = get(&c, format!("http://{}/kv/{k}", p.http)).await;
            assert_eq!(s, 200, "{r}");
            assert_eq!(r["value"], b64(v), "node {} key {k} after failover", p.id);
        }
    }

    // The dead node is removed through a follower or the leader; two voters remain.
    let r = c
        .delete(format!(
            "http://{}/cluster/members/{leader}",
            survivors[1].http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["voters"].as_array().map(|a| a.len()), Some(2), "{v}");

    // With the other survivor dead, removing it is refused: no reachable majority of the
    // current configuration could ever commit the change.
    let leader = leader_of(&c, &survivors).await.expect("a leader");
    let mut nodes = nodes;
    let victim = nodes.iter().position(|p| p.id != leader).unwrap();
    let victim_id = nodes[victim].id;
    drop(nodes.remove(victim));
    let boss = nodes.iter().find(|p| p.id == leader).unwrap();
    let r = c
        .delete(format!("http://{}/cluster/members/{victim_id}", boss.http))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap()
            .contains("not a majority"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_membership_requests_are_refused_and_change_nothing() {
    let td = tempfile::tempdir().unwrap();
    let c = client();
    let n1 = spawn(td.path(), 1, &["--init"]);
    let foreign = spawn(td.path(), 2, &["--cluster-id", "another-cluster"]);
    let n3 = spawn(td.path(), 3, &[]);
    for p in [&n1, &foreign, &n3] {
        wait_live(&c, p).await;
    }
    wait_until("node 1 leader", Duration::from_secs(10), || async {
        leader_of(&c, &[&n1]).await == Some(1)
    })
    .await;
    let status = || async {
        get(&c, format!("http://{}/cluster/status", n1.http))
            .await
            .1["members"]
            .clone()
    };
    let before = status().await;

    // Removing the last voter.
    let r = c
        .delete(format!("http://{}/cluster/members/1", n1.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["details"]
            .as_str()
            .unwrap()
            .contains("last voter"),
        "{body}"
    );

    // A node of another cluster.
    let (s, v) = add_member(&c, &n1, &foreign).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap()
            .contains("mutual TLS refused"),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "SYS.1001");

    // A duplicate node id (1) at another address.
    let (s, v) = post(
        &c,
        format!("http://{}/cluster/members", n1.http),
        json!({"id": 1, "raft_addr": n3.raft, "api_addr": n3.http}),
    )
    .await;
    assert_eq!(s, 409, "{v}");

    // An address whose node has another id than claimed.
    let (s, v) = post(
        &c,
        format!("http://{}/cluster/members", n1.http),
        json!({"id": 7, "raft_addr": n3.raft, "api_addr": n3.http}),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap()
            .contains("not node 7"),
        "{v}"
    );

    // Bad input.
    let (s, v) = post(
        &c,
        format!("http://{}/cluster/members", n1.http),
        json!({"id": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "SYS.1007");
    let (s, _) = get(&c, format!("http://{}/kv/a?consistency=sometimes", n1.http)).await;
    assert_eq!(s, 400);

    // Re-initialising is a conflict.
    let (s, _) = post(&c, format!("http://{}/cluster/init", n1.http), json!({})).await;
    assert_eq!(s, 409);

    assert_eq!(
        status().await,
        before,
        "a refused request changed the membership"
    );

    // A data dir belongs to one node id and cluster: another id is refused at start-up.
    let out = Command::new(env!("CARGO_BIN_EXE_zsnode"))
        .args([
            "--id",
            "9",
            "--raft-addr",
            "127.0.0.1:1",
            "--http-addr",
            "127.0.0.1:1",
        ])
        .arg("--data-dir")
        .arg(td.path().join("n1"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to node 1"), "{stderr}");

    // An uninitialised node alone cannot serve writes: bounded 503, never a hang.
    let started = Instant::now();
    let (s, v) = put_kv(&c, &n3, "k", "v", "r").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "SYS.1006");
    assert!(started.elapsed() < Duration::from_secs(8));
    let (s, _) = get(&c, format!("http://{}/health/ready", n3.http)).await;
    assert_eq!(s, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_member_catches_up_through_a_snapshot_and_snapshot_downloads() {
    let td = tempfile::tempdir().unwrap();
    let c = client();
    let n1 = spawn(
        td.path(),
        1,
        &[
            "--init",
            "--snapshot-logs",
            "20",
            "--request-timeout-ms",
            "15000",
        ],
    );
    let n2 = spawn(
        td.path(),
        2,
        &["--snapshot-logs", "20", "--request-timeout-ms", "15000"],
    );
    wait_live(&c, &n1).await;
    wait_live(&c, &n2).await;
    wait_until("node 1 leader", Duration::from_secs(10), || async {
        leader_of(&c, &[&n1]).await == Some(1)
    })
    .await;
    for i in 0..60 {
        let (s, v) = put_kv(
            &c,
            &n1,
            &format!("s{i}"),
            &format!("{i}"),
            &format!("s-{i}"),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    // The log behind the snapshot is purged, so node 2 can only catch up from the snapshot.
    let (s, v) = add_member(&c, &n1, &n2).await;
    assert_eq!(s, 200, "{v}");
    for i in [0, 31, 59] {
        let (s, r) = get(&c, format!("http://{}/kv/s{i}", n2.http)).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["value"], b64(&i.to_string()));
    }
    let log = std::fs::read_to_string(td.path().join("node2.log")).unwrap();
    assert!(
        log.contains("received snapshot"),
        "node 2 did not receive a snapshot:\n{log}"
    );

    let r = c
        .get(format!("http://{}/cluster/snapshot", n2.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"ZSSNAP"), "not a snapshot file");
}
