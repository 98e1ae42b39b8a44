//! Snapshot round trip: build on one store, stream it in small chunks to a fresh store,
//! install, restart, and compare the full state byte for byte. Damaged streams are refused and
//! leave the receiver's state as it was.

use std::io::Read;

use futures::stream;
use openraft::entry::RaftEntry;
use openraft::storage::RaftStateMachine;
use openraft::Membership;
use openraft::RaftSnapshotBuilder;
use raft_store::kv::KvApplier;
use raft_store::kv::KvCommand;
use raft_store::Entry;
use raft_store::MemberNode;
use raft_store::Proposal;
use raft_store::SnapshotFile;
use raft_store::StateMachineStore;
use raft_store::StoreError;
use raft_store::TypeConfig;

fn log_id(index: u64) -> raft_store::LogId {
    openraft::testing::log_id::<TypeConfig>(3, 1, index)
}

fn put(index: u64, key: String, value: Vec<u8>) -> Entry {
    Entry::new_normal(
        log_id(index),
        Proposal::new(
            Some(format!("req-{index}")),
            1_000 + index,
            &KvCommand::Put { key, value },
        ),
    )
}

async fn apply(sm: &mut StateMachineStore<KvApplier>, entries: Vec<Entry>) {
    sm.apply(stream::iter(entries.into_iter().map(|e| Ok((e, None)))))
        .await
        .unwrap();
}

/// A store with a membership entry and a few thousand keys of varied sizes, some deleted.
async fn populated(dir: &std::path::Path) -> StateMachineStore<KvApplier> {
    let (_log, mut sm) = raft_store::open(dir, KvApplier).unwrap();
    let members = [1u64, 2, 3]
        .into_iter()
        .map(|i| {
            (
                i,
                MemberNode {
                    raft_addr: format!("127.0.0.1:{}", 7070 + i),
                    api_addr: format!("127.0.0.1:{}", 8080 + i),
                },
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let membership = Membership::new(vec![members.keys().copied().collect()], members).unwrap();
    apply(&mut sm, vec![Entry::new_membership(log_id(1), membership)]).await;
    let mut index = 1;
    for chunk in 0..30 {
        let entries = (0..100)
            .map(|i| {
                index += 1;
                let n = chunk * 100 + i;
                put(
                    index,
                    format!("key/{n:05}"),
                    vec![(n % 251) as u8; (n % 700) as usize],
                )
            })
            .collect();
        apply(&mut sm, entries).await;
    }
    let deletes = (0..3000)
        .step_by(7)
        .map(|n| {
            index += 1;
            Entry::new_normal(
                log_id(index),
                Proposal::new(
                    None,
                    0,
                    &KvCommand::Delete {
                        key: format!("key/{n:05}"),
                    },
                ),
            )
        })
        .collect();
    apply(&mut sm, deletes).await;
    sm
}

/// Stream `file` into `receiver` in `chunk`-byte pieces, like the network transport does.
fn stream_into(
    file: &SnapshotFile,
    receiver: &StateMachineStore<KvApplier>,
    chunk: usize,
    tamper: Option<usize>,
) -> Result<(SnapshotFile, raft_store::SnapshotMeta), StoreError> {
    let mut f = file.open().unwrap();
    let mut sink = receiver.begin_receive().unwrap();
    let mut offset = 0u64;
    let mut buf = vec![0u8; chunk];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let piece = &mut buf[..n];
        if let Some(at) = tamper {
            if (offset as usize..offset as usize + n).contains(&at) {
                piece[at - offset as usize] ^= 0x40;
            }
        }
        sink.write_chunk(offset, piece)?;
        offset += n as u64;
    }
    sink.finish()
}

#[tokio::test]
async fn build_stream_install_restart_identical() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut a = populated(a_dir.path()).await;
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let len = snap.snapshot.len().unwrap();
    assert!(len > 100_000, "snapshot unexpectedly small: {len}");

    let (_b_log, mut b) = raft_store::open(b_dir.path(), KvApplier).unwrap();
    let (file, meta) = stream_into(&snap.snapshot, &b, 997, None).unwrap();
    assert_eq!(meta, snap.meta);
    b.install_snapshot(&meta, file).await.unwrap();
    drop((_b_log, b));

    // Restart right after install.
    let (_b_log, mut b) = raft_store::open(b_dir.path(), KvApplier).unwrap();
    let want = a.dump().unwrap();
    let got = b.dump().unwrap();
    assert_eq!(got.last_applied, want.last_applied);
    assert_eq!(got.membership, want.membership);
    assert_eq!(
        got.tables, want.tables,
        "state differs after install + restart"
    );
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.applied_state().await.unwrap()
    );
    let cur = b
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("installed snapshot is current");
    assert_eq!(cur.meta, snap.meta);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    snap.snapshot.open().unwrap().read_to_end(&mut x).unwrap();
    cur.snapshot.open().unwrap().read_to_end(&mut y).unwrap();
    assert_eq!(x, y, "the receiver keeps the very bytes it was sent");

    // The receiver's state keeps working: applying further entries continues from there.
    apply(&mut b, vec![put(10_000, "after".into(), b"x".to_vec())]).await;
    assert_eq!(b.get("kv", b"after").unwrap(), Some(b"x".to_vec()));
}

#[tokio::test]
async fn damaged_streams_are_refused_and_change_nothing() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut a = populated(a_dir.path()).await;
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let len = snap.snapshot.len().unwrap() as usize;

    let (_b_log, mut b) = raft_store::open(b_dir.path(), KvApplier).unwrap();
    apply(&mut b, vec![put(1, "mine".into(), b"before".to_vec())]).await;
    let before = b.dump().unwrap();

    // A flipped bit anywhere: header, body, trailer.
    for at in [10, len / 2, len - 2] {
        let err = stream_into(&snap.snapshot, &b, 4096, Some(at)).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { .. }),
            "flip at {at}: {err}"
        );
    }
    // A truncated stream.
    let mut sink = b.begin_receive().unwrap();
    let mut bytes = Vec::new();
    snap.snapshot
        .open()
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    sink.write_chunk(0, &bytes[..len - 100]).unwrap();
    let err = sink.finish().unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // Chunks out of order.
    let mut sink = b.begin_receive().unwrap();
    sink.write_chunk(0, &bytes[..100]).unwrap();
    assert!(sink.write_chunk(200, &bytes[200..300]).is_err());
    drop(sink);
    // None of the refused streams left a temporary file behind (each one used to stay until the
    // node's next start).
    let incoming: Vec<_> = std::fs::read_dir(b_dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("incoming"))
        .collect();
    assert!(incoming.is_empty(), "refused streams left {incoming:?}");

    // A verified file whose meta does not match what openraft asks to install.
    let (file, mut meta) = stream_into(&snap.snapshot, &b, 65536, None).unwrap();
    meta.last_log_id = Some(log_id(1));
    assert!(b.install_snapshot(&meta, file).await.is_err());

    assert_eq!(
        b.dump().unwrap(),
        before,
        "a refused snapshot changed the state"
    );
    assert!(b.get_current_snapshot().await.unwrap().is_none());
}
