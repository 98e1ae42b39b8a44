//! A damaged data directory must stop the node at open with an error naming what is wrong,
//! never serve wrong state.

use std::path::Path;

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use raft_store::kv::KvApplier;
use raft_store::kv::KvCommand;
use raft_store::Entry;
use raft_store::Proposal;
use raft_store::StoreError;
use raft_store::TypeConfig;

/// A store with entries 1..=10 in its log.
async fn store_with_log(dir: &Path) {
    let (mut log, _sm) = raft_store::open(dir, KvApplier).unwrap();
    let entries: Vec<Entry> = (1..=10)
        .map(|i| {
            Entry::new_normal(
                openraft::testing::log_id::<TypeConfig>(1, 1, i),
                Proposal::new(
                    None,
                    0,
                    &KvCommand::Delete {
                        key: format!("k{i}"),
                    },
                ),
            )
        })
        .collect();
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

/// Write one raw value into a column family, bypassing raft-store.
fn poke(dir: &Path, cf: &str, key: &[u8], value: &[u8]) {
    let db_dir = dir.join("db");
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &db_dir, cfs).unwrap();
    db.put_cf(db.cf_handle(cf).unwrap(), key, value).unwrap();
}

fn open_err(dir: &Path) -> StoreError {
    raft_store::open(dir, KvApplier).expect_err("a damaged store must not open")
}

#[tokio::test]
async fn undecodable_log_entry_is_named_by_index() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(
        td.path(),
        "log",
        &5u64.to_be_bytes(),
        &[1, 0xff, 0xff, 0xff],
    );
    let err = open_err(td.path());
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
    assert!(msg.contains("log entry at index 5"), "{msg}");
}

#[tokio::test]
async fn unknown_encoding_version_is_refused() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(td.path(), "log", &7u64.to_be_bytes(), &[9, 1, 2, 3]);
    let msg = open_err(td.path()).to_string();
    assert!(
        msg.contains("index 7") && msg.contains("unknown encoding version 9"),
        "{msg}"
    );
}

#[tokio::test]
async fn entry_stored_under_the_wrong_index_is_refused() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    let e = Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, 3));
    poke(
        td.path(),
        "log",
        &4u64.to_be_bytes(),
        &raft_store::codec::encode(&e),
    );
    let msg = open_err(td.path()).to_string();
    assert!(
        msg.contains("index 4") && msg.contains("says index 3"),
        "{msg}"
    );
}

#[tokio::test]
async fn gap_in_the_log_is_refused() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    let e = Entry::new_blank(openraft::testing::log_id::<TypeConfig>(1, 1, 20));
    poke(
        td.path(),
        "log",
        &20u64.to_be_bytes(),
        &raft_store::codec::encode(&e),
    );
    let msg = open_err(td.path()).to_string();
    assert!(msg.contains("gap in the log: expected index 11"), "{msg}");
}

#[tokio::test]
async fn corrupt_vote_and_applied_state_are_refused() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(td.path(), "meta", b"vote", b"\x01garbage");
    assert!(open_err(td.path()).to_string().contains("\"vote\""));

    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(td.path(), "sm", b"last_applied", b"\x02");
    let msg = open_err(td.path()).to_string();
    assert!(
        msg.contains("last_applied") && msg.contains("unknown encoding version 2"),
        "{msg}"
    );
}

#[tokio::test]
async fn foreign_or_newer_format_is_refused() {
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(td.path(), "meta", b"format", b"zstack-raft-store/99");
    let err = open_err(td.path());
    assert!(matches!(err, StoreError::Format { .. }), "{err}");
    assert!(err.to_string().contains("zstack-raft-store/99"));

    // A plain RocksDB directory that raft-store never initialised.
    let td = tempfile::tempdir().unwrap();
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    drop(rocksdb::DB::open(&o, td.path().join("db")).unwrap());
    assert!(open_err(td.path())
        .to_string()
        .contains("without a raft-store format marker"));
}

#[tokio::test]
async fn data_of_another_applier_format_is_refused() {
    // The state and log of an older (or different) encoding of the application's commands:
    // refused at open with both formats named, never read.
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    poke(td.path(), "meta", b"applier_format", b"raft-store-kv/0");
    let err = open_err(td.path());
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Format { .. }), "{msg}");
    assert!(
        msg.contains("raft-store-kv/0") && msg.contains("raft-store-kv/1"),
        "{msg}"
    );
    assert!(msg.contains("empty data directory"), "{msg}");

    // A store from before applier formats were recorded.
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    {
        let db_dir = td.path().join("db");
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_dir).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &db_dir, cfs).unwrap();
        db.delete_cf(db.cf_handle("meta").unwrap(), b"applier_format")
            .unwrap();
    }
    let msg = open_err(td.path()).to_string();
    assert!(msg.contains("predates format markers"), "{msg}");
}

#[tokio::test]
async fn damaged_rocksdb_files_are_refused() {
    // CURRENT pointing nowhere.
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    std::fs::write(td.path().join("db/CURRENT"), b"MANIFEST-999999\n").unwrap();
    let err = open_err(td.path());
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(&td.path().join("db").display().to_string()));

    // A truncated MANIFEST.
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    let manifest = std::fs::read_dir(td.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("MANIFEST-")
        })
        .unwrap();
    let len = std::fs::metadata(&manifest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&manifest)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    assert!(matches!(open_err(td.path()), StoreError::Open { .. }));

    // Files but no CURRENT (a half-copied directory).
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    std::fs::remove_file(td.path().join("db/CURRENT")).unwrap();
    let err = open_err(td.path());
    assert!(err.to_string().contains("no RocksDB CURRENT file"), "{err}");
}

#[tokio::test]
async fn damaged_current_snapshot_is_refused() {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;
    let td = tempfile::tempdir().unwrap();
    store_with_log(td.path()).await;
    let path = {
        let (_log, mut sm) = raft_store::open(td.path(), KvApplier).unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        snap.snapshot.path().to_path_buf()
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let msg = open_err(td.path()).to_string();
    assert!(
        msg.contains("checksum mismatch") && msg.contains(&path.display().to_string()),
        "{msg}"
    );
}

#[test]
fn reserved_table_names_are_refused() {
    struct Bad;
    impl raft_store::Applier for Bad {
        type Command = ();
        type Response = ();
        fn tables(&self) -> Vec<&'static str> {
            vec!["log"]
        }
        fn format(&self) -> &'static str {
            "bad/1"
        }
        fn apply(
            &self,
            _: &mut raft_store::Txn<'_>,
            _: &raft_store::ApplyContext,
            _: (),
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }
    let td = tempfile::tempdir().unwrap();
    assert!(matches!(
        raft_store::open(td.path(), Bad),
        Err(StoreError::ReservedTable(_))
    ));
}
