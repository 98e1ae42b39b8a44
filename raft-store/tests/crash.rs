//! Crash tests: a child process appends, applies, votes, purges and snapshots in a loop and is
//! killed with SIGKILL at random points. After every kill the parent reopens the store and
//! checks that nothing acknowledged is missing and no half-applied batch is visible.
//!
//! The child is this same test binary re-run with `RAFT_STORE_CRASH_CHILD` set.

use std::io::BufRead;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures::stream;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::type_config::TypeConfigExt;
use openraft::LogState;
use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use raft_store::kv::KvApplier;
use raft_store::kv::KvCommand;
use raft_store::kv::KV_TABLE;
use raft_store::Entry;
use raft_store::Proposal;
use raft_store::TypeConfig;
use rand::Rng;

const CHILD_ENV: &str = "RAFT_STORE_CRASH_CHILD";
const NODE: u64 = 1;
const KEYS: [&str; 3] = ["a", "b", "c"];

fn entry(term: u64, index: u64) -> Entry {
    // One command writes the index under three keys: a crash that exposed a partial apply would
    // leave the keys disagreeing.
    let pairs = KEYS
        .iter()
        .map(|k| (k.to_string(), index.to_be_bytes().to_vec()))
        .collect();
    let p = Proposal::new(
        Some(format!("r{index}")),
        index,
        &KvCommand::PutMany { pairs },
    );
    Entry::new_normal(
        openraft::testing::log_id::<TypeConfig>(term, NODE, index),
        p,
    )
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's loop. Runs until killed.
async fn child(dir: &Path) {
    let (mut log, mut sm) = raft_store::open(dir, KvApplier).expect("child open");
    let LogState { last_log_id, .. } = log.get_log_state().await.expect("log state");
    let mut next = last_log_id.map(|l| l.index() + 1).unwrap_or(1);
    let mut term = log
        .read_vote()
        .await
        .expect("vote")
        .map(|v| v.leader_id().term)
        .unwrap_or(1);
    let (applied, _) = sm.applied_state().await.expect("applied");
    let mut applied = applied.map(|l| l.index()).unwrap_or(0);
    say("READY".into());
    let mut rng = rand::rng();
    loop {
        if rng.random_ratio(1, 10) {
            term += 1;
            let vote = openraft::alias::VoteOf::<TypeConfig>::new(term, NODE);
            log.save_vote(&vote).await.expect("save vote");
            say(format!("VOTE {term}"));
        }
        let n = rng.random_range(1..=8u64);
        let entries: Vec<Entry> = (next..next + n).map(|i| entry(term, i)).collect();
        let (tx, rx) = TypeConfig::oneshot();
        log.append(entries, IOFlushed::signal(tx))
            .await
            .expect("append");
        rx.await.expect("callback").expect("flushed");
        next += n;
        say(format!("ACK {}", next - 1));

        // Apply what is durable, in randomly sized batches.
        let upto = rng.random_range(applied..next);
        if upto > applied {
            let batch = log
                .try_get_log_entries(applied + 1..=upto)
                .await
                .expect("read");
            sm.apply(stream::iter(batch.into_iter().map(|e| Ok((e, None)))))
                .await
                .expect("apply");
            applied = upto;
        }
        if rng.random_ratio(1, 25) && applied > 0 {
            let mut b = sm.get_snapshot_builder().await;
            let snap = b.build_snapshot().await.expect("snapshot");
            let last = snap.meta.last_log_id.expect("non-empty snapshot");
            if last.index() > 20 {
                log.purge(openraft::testing::log_id::<TypeConfig>(
                    last.committed_leader_id().term,
                    NODE,
                    last.index() - 20,
                ))
                .await
                .expect("purge");
            }
        }
    }
}

/// Kills the child if the parent panics, so a failed assertion never leaves it running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Seen {
    acked: u64,
    vote: u64,
}

fn kv_index(sm: &raft_store::StateMachineStore<KvApplier>, key: &str) -> Option<u64> {
    sm.get(KV_TABLE, key.as_bytes())
        .expect("read kv")
        .map(|v| u64::from_be_bytes(v.try_into().expect("8-byte value")))
}

/// Reopen the store after a kill and check every invariant; returns the last log index.
async fn check(dir: &Path, seen: &Seen) -> u64 {
    let (mut log, mut sm) = raft_store::open(dir, KvApplier).expect("reopen after SIGKILL");
    let st = log.get_log_state().await.expect("log state");
    let last = st.last_log_id.as_ref().map(|l| l.index()).unwrap_or(0);
    assert!(
        last >= seen.acked,
        "acknowledged index {} lost: last log index is {last}",
        seen.acked
    );

    let vote = log
        .read_vote()
        .await
        .expect("vote")
        .map(|v| v.leader_id().term)
        .unwrap_or(0);
    assert!(
        vote >= seen.vote,
        "vote term {} was acknowledged, {vote} survived",
        seen.vote
    );

    let first = st
        .last_purged_log_id
        .as_ref()
        .map(|l| l.index() + 1)
        .unwrap_or(1);
    let entries = log
        .try_get_log_entries(first..=last)
        .await
        .expect("read log");
    assert_eq!(
        entries.len() as u64,
        last + 1 - first,
        "gap in log {first}..={last}"
    );
    for (e, want) in entries.iter().zip(first..) {
        assert_eq!(e.index(), want);
        assert_eq!(
            e.payload,
            entry(e.log_id().committed_leader_id().term, want).payload,
            "entry {want} content"
        );
    }

    let (applied, _) = sm.applied_state().await.expect("applied");
    let applied = applied.map(|l| l.index()).unwrap_or(0);
    assert!(applied <= last, "applied {applied} beyond last log {last}");
    let values: Vec<Option<u64>> = KEYS.iter().map(|k| kv_index(&sm, k)).collect();
    let want = if applied == 0 { None } else { Some(applied) };
    assert!(
        values.iter().all(|v| *v == want),
        "half-applied batch visible: keys {values:?}, last_applied {applied}"
    );
    if applied > 0 {
        let dedup = sm
            .dump()
            .expect("dump")
            .tables
            .into_iter()
            .find(|(t, _)| t == "dedup")
            .expect("dedup table");
        let rid = format!("r/r{applied}");
        assert!(
            dedup.1.iter().any(|(k, _)| k == rid.as_bytes()),
            "dedup record of the last applied entry is missing"
        );
    }
    if let Some(snap) = sm.get_current_snapshot().await.expect("snapshot") {
        let s = snap.meta.last_log_id.map(|l| l.index()).unwrap_or(0);
        assert!(s <= applied.max(s), "snapshot beyond state");
        assert!(
            first <= s + 21,
            "log purged past the snapshot: first {first}, snapshot {s}"
        );
    }
    last
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when spawned by `sigkill_at_random_points`.
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(child(Path::new(&dir)));
}

#[test]
fn sigkill_at_random_points() {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = rand::rng();
    let mut seen = Seen::default();
    let mut during_open = 0;
    for round in 0..kills {
        let child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let shared = Arc::new(Mutex::new((false, seen.acked, seen.vote)));
        let out = child.0.stdout.take().unwrap();
        let sh = shared.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = sh.lock().unwrap();
                if line.ends_with("READY") {
                    s.0 = true;
                } else if let Some(i) = line.strip_prefix("ACK ") {
                    s.1 = s.1.max(i.parse().unwrap());
                } else if let Some(t) = line.strip_prefix("VOTE ") {
                    s.2 = s.2.max(t.parse().unwrap());
                }
            }
        });
        if round % 5 == 4 {
            // Every fifth kill lands while the child is still opening the store.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
            during_open += 1;
        } else {
            let t0 = std::time::Instant::now();
            while !shared.lock().unwrap().0 {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "child never became ready"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(1..120)));
        }
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        reader.join().unwrap();
        let s = shared.lock().unwrap();
        seen.acked = s.1;
        seen.vote = s.2;
        drop(s);
        let last = rt.block_on(check(&dir, &seen));
        eprintln!(
            "round {round}: acked {} last {last} vote {}",
            seen.acked, seen.vote
        );
    }
    assert!(seen.acked > 0, "the child never acknowledged an append");
    println!(
        "crash test: kills={kills} kills_during_open={during_open} last_acked={}",
        seen.acked
    );
}
