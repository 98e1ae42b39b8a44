//! `zsctl` against a real 3-node cluster: every command, `--json`, errors and exit codes; and
//! every node's `/metrics` parses with a Prometheus text-format parser.

use std::process::{Command, Output};
use std::time::Duration;

use chaos_tests::cluster::{locate_binary, Cluster, ClusterOpts, ADMIN_TOKEN};

fn zsctl(node: &str, args: &[&str]) -> Output {
    zsctl_as(node, args, Some(ADMIN_TOKEN))
}

/// `zsctl` with `token` in `ZSCTL_TOKEN` (none: no credential at all).
fn zsctl_as(node: &str, args: &[&str], token: Option<&str>) -> Output {
    let bin = locate_binary("zsctl", "ops", "ZSCTL_BIN").expect("zsctl binary");
    let mut cmd = Command::new(bin);
    cmd.arg("--node")
        .arg(node)
        .args(args)
        .env_remove("ZSCTL_TOKEN")
        .env_remove("ZSCTL_TOKEN_FILE");
    if let Some(t) = token {
        cmd.env("ZSCTL_TOKEN", t);
    }
    let out = cmd.output().expect("run zsctl");
    eprintln!(
        "$ zsctl {args:?} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "zsctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn zsctl_commands_against_a_real_cluster() {
    let mut c = Cluster::start(ClusterOpts {
        proxies: false,
        ..Default::default()
    })
    .expect("cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).expect("leader");
    // A dead first address must be skipped: the list is tried in order.
    let nodes = format!("http://127.0.0.1:1,{}", c.client(2).base());

    let human = zsctl(&nodes, &["status"]);
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("leader {leader}")) && text.contains("ROLE"),
        "{text}"
    );

    let st = json(&zsctl(&nodes, &["--json", "status"]));
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(3));
    let members = json(&zsctl(&nodes, &["--json", "member", "list"]));
    assert_eq!(members.as_array().map(Vec::len), Some(3));

    // Leadership transfer to a chosen node, then to "the best follower".
    let target = c
        .ids()
        .into_iter()
        .find(|i| *i != leader)
        .expect("follower");
    assert!(
        zsctl(&nodes, &["leader", "transfer", "--to", &target.to_string()])
            .status
            .success()
    );
    let now = c
        .wait_leader(Duration::from_secs(20))
        .expect("leader after transfer");
    assert_eq!(now, target, "leadership did not move to {target}");
    assert!(zsctl(&nodes, &["leader", "transfer"]).status.success());
    let after = c
        .wait_leader(Duration::from_secs(20))
        .expect("leader after second transfer");
    assert_ne!(after, target, "default transfer did not move leadership");

    // Key-value round trip and a snapshot download from a follower.
    assert!(zsctl(&nodes, &["kv", "put", "greeting", "hello"])
        .status
        .success());
    let get = zsctl(&nodes, &["kv", "get", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.snap");
    let follower = c.ids().into_iter().find(|i| *i != after).expect("follower");
    let snap = json(&zsctl(
        c.client(follower).base(),
        &["--json", "snapshot", "save", file.to_str().expect("utf8")],
    ));
    let bytes = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(
        bytes > 0 && snap["bytes"].as_u64() == Some(bytes),
        "{snap} vs {bytes}"
    );
    assert!(!dir.path().join("backup.snap.tmp").exists());

    // Without the admin credential, or with a wrong one, every administration command is
    // refused with a message naming what to send.
    for args in [
        &["status"][..],
        &["member", "list"],
        &["kv", "get", "greeting"],
        &["snapshot", "save", "/dev/null"],
        &["leader", "transfer"],
        &["join-token", "create"],
    ] {
        for token in [None, Some("zsadm_wrong-token-0000000000000000")] {
            let out = zsctl_as(c.client(1).base(), args, token);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} with {token:?} succeeded");
            assert!(err.contains("401"), "{args:?}: {err}");
            assert!(
                err.contains("admin token") || err.contains("credential"),
                "{args:?}: {err}"
            );
        }
    }
    let jt = json(&zsctl(
        &nodes,
        &[
            "--json",
            "join-token",
            "create",
            "--ttl",
            "60",
            "--node-id",
            "9",
        ],
    ));
    assert!(
        jt["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("zsjoin1.")),
        "{jt}"
    );
    assert_eq!(jt["node_id"], 9);

    // Refusals: clear message, non-zero exit, cluster unchanged.
    let dup = zsctl(
        &nodes,
        &[
            "member",
            "add",
            "--id",
            "2",
            "--raft-addr",
            "127.0.0.1:9",
            "--api-addr",
            "127.0.0.1:9",
        ],
    );
    assert!(
        !dup.status.success(),
        "adding a duplicate node id succeeded"
    );
    assert!(String::from_utf8_lossy(&dup.stderr).contains("zsctl: error:"));
    let init = zsctl(&nodes, &["cluster", "init"]);
    assert!(
        !init.status.success(),
        "re-initialising a running cluster succeeded"
    );
    assert!(
        String::from_utf8_lossy(&init.stderr).contains("409"),
        "expected HTTP 409"
    );
    let dead = zsctl("http://127.0.0.1:1", &["--timeout", "2", "status"]);
    assert_eq!(dead.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dead.stderr).contains("unreachable"));
    let members_after = json(&zsctl(&nodes, &["--json", "member", "list"]));
    assert_eq!(
        members_after.as_array().map(Vec::len),
        Some(3),
        "membership changed by refused requests"
    );

    // Remove a follower, then check the cluster still answers with two members.
    let victim = c.ids().into_iter().find(|i| *i != after).expect("follower");
    assert!(zsctl(&nodes, &["member", "remove", &victim.to_string()])
        .status
        .success());
    let left = json(&zsctl(
        c.client(after).base(),
        &["--json", "member", "list"],
    ));
    assert_eq!(left.as_array().map(Vec::len), Some(2), "{left}");

    // A dead member is shown as unreachable, in the table and in JSON.
    let down = c
        .ids()
        .into_iter()
        .find(|i| *i != after && *i != victim)
        .expect("remaining follower");
    c.kill9(down).expect("kill follower");
    let leader_url = c.client(after).base().to_string();
    let table = zsctl(&leader_url, &["status"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("unreachable"));
    let st = json(&zsctl(&leader_url, &["--json", "status"]));
    let row = st["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|r| r["id"].as_u64() == Some(down)))
        .expect("dead node still listed")
        .clone();
    assert_eq!(row["reachable"], serde_json::Value::Bool(false), "{row}");
    c.restart(down).expect("restart follower");
    c.wait_ready(down, Duration::from_secs(60))
        .expect("ready again");

    // Every node's /metrics parses as Prometheus text and has the core series.
    for id in c.ids() {
        let text = c.client(id).metrics().expect("metrics");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
        for name in [
            "zstack_raft_term",
            "zstack_raft_applied_index",
            "zstack_raft_commit_index",
        ] {
            assert!(
                scrape.samples.iter().any(|s| s.metric == name),
                "node {id} lacks {name}"
            );
        }
        assert!(
            scrape
                .samples
                .iter()
                .all(|s| s.metric.starts_with("zstack_")),
            "unprefixed metric on node {id}"
        );
    }
}
