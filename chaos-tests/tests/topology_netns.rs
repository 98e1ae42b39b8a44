//! The netns topology cuts what it says it cuts: a blocked direction stops TCP between two
//! namespaces, a link set down makes a node unreachable from the test process, heal restores
//! everything, and dropping the topology removes its namespaces and bridge. Skipped (with a
//! message) where network namespaces are not available.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use chaos_tests::topology::{self, Netns, Topology};

const PORT: u16 = 9400;

/// Run `f` on a thread that has entered namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

/// A TCP listener inside `ns` that accepts forever.
fn listen_in(ns: &str, addr: SocketAddr) {
    let l = in_ns(ns, move || {
        TcpListener::bind(addr).expect("bind in namespace")
    });
    std::thread::spawn(move || for _c in l.incoming() {});
}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn connects_from(ns: &str, addr: SocketAddr) -> bool {
    in_ns(ns, move || connects(addr))
}

fn names_present(needle: &str) -> bool {
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ns.stdout).contains(needle)
        || String::from_utf8_lossy(&links.stdout).contains(needle)
}

#[test]
fn blocks_links_and_cleanup_are_real() {
    let (t, why) = topology::selected();
    if t != Topology::Netns {
        eprintln!("skipped: topology={t} ({why})");
        return;
    }
    let net = Netns::create(3).expect("create topology");
    let tag = net.bridge.trim_end_matches('b').to_string();
    let a2 = SocketAddr::from((net.ip(2), PORT));
    let a3 = SocketAddr::from((net.ip(3), PORT));
    listen_in(net.ns(2), a2);
    listen_in(net.ns(3), a3);
    let ns1 = net.ns(1).to_string();

    assert!(connects(a2), "test process reaches node 2 over the bridge");
    assert!(connects_from(&ns1, a2), "node 1 reaches node 2");

    // 1 -> 2 dropped: node 1's packets to 2 go nowhere.
    net.block(1, 2).unwrap();
    assert!(!connects_from(&ns1, a2), "1 -> 2 blocked");
    assert!(connects_from(&ns1, a3), "1 -> 3 unaffected");
    assert!(connects(a2), "the test process still reaches node 2");

    // 3 -> 1 dropped: node 1's SYN reaches 3 but 3's answer does not come back.
    net.block(3, 1).unwrap();
    assert!(
        !connects_from(&ns1, a3),
        "3 -> 1 blocked cuts 1's connection to 3"
    );

    net.heal().unwrap();
    assert!(connects_from(&ns1, a2) && connects_from(&ns1, a3), "healed");

    // Link down: nobody reaches node 2, not even the test process.
    net.set_link(2, false).unwrap();
    assert!(!connects(a2), "link down");
    assert!(!connects_from(&ns1, a2), "link down for peers too");
    net.heal().unwrap();
    assert!(connects(a2), "link back up");

    assert!(
        names_present(&tag),
        "resources exist while the topology lives"
    );
    drop(net);
    assert!(
        !names_present(&tag),
        "namespaces, veths and bridge removed on drop"
    );
}
