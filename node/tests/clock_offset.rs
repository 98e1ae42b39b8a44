//! The test clock hook (`ZSNODE_CLOCK_OFFSET_FILE`): stamps from `now_ms` move with the offset
//! in the file and follow changes to it; the chaos tests' clock-jump fault relies on this.
//! (Its own test binary: the hook is configured once per process from the environment.)

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use node::node::{clock_offset_ms, now_ms, CLOCK_OFFSET_FILE_ENV};

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Wait (bounded generously; only the value is asserted) until the reader saw `want`.
fn wait_offset(want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while clock_offset_ms() != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    clock_offset_ms()
}

#[test]
fn stamps_follow_the_offset_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offset");
    std::fs::write(&file, "3600000").unwrap();
    std::env::set_var(CLOCK_OFFSET_FILE_ENV, &file);

    assert_eq!(wait_offset(3_600_000), 3_600_000);
    let before = wall_ms();
    let stamp = now_ms() as i64;
    let after = wall_ms();
    assert!(
        stamp >= before + 3_600_000 && stamp <= after + 3_600_000,
        "stamp {stamp} not one hour ahead of [{before}, {after}]"
    );

    // A backward jump, then garbage (read as no offset).
    std::fs::write(&file, "-120000\n").unwrap();
    assert_eq!(wait_offset(-120_000), -120_000);
    let before = wall_ms();
    let stamp = now_ms() as i64;
    let after = wall_ms();
    assert!(stamp >= before - 120_000 && stamp <= after - 120_000);

    std::fs::write(&file, "not a number").unwrap();
    assert_eq!(wait_offset(0), 0);
}
