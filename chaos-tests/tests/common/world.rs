//! What the process-level VM tests share: a fake sshd banner for host adds, an HTTP server
//! for image downloads, and ZStack calls that must succeed.
#![allow(dead_code)] // Each test uses a different part.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

pub fn fake_ssh(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    port
}

/// Serves any path with `body`, at once.
pub fn http(body: Vec<u8>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        use std::io::Read;
        use std::io::Write;
        for mut s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    port
}

pub fn call(api: &ZsClient, node: &str, class: &str, fields: Value, s: &str, j: &str) -> Value {
    let r = api
        .call(node, node, class, fields, s, j, Duration::from_secs(90))
        .unwrap()
        .unwrap_or_else(|| panic!("{class} job {j} not done"))
        .body;
    assert_eq!(r["success"], true, "{class}: {r}");
    r
}

pub fn query(api: &ZsClient, node: &str, class: &str, s: &str) -> Vec<Value> {
    api.sync(node, class, json!({"conditions": []}), Some(s), TIMEOUT)
        .unwrap()
        .inventories()
        .to_vec()
}

pub fn wait_connected(api: &ZsClient, node: &str, class: &str, s: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = query(api, node, class, s);
        if !all.is_empty() && all.iter().all(|x| x["status"] == "Connected") {
            return;
        }
        assert!(Instant::now() < deadline, "{class}: not Connected: {all:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}
