//! Image stores and AddImage through a real `zsnode` and a real `zsagent` (image store role):
//! the backup storage is Connected with its directory's statvfs capacity; AddImage downloads
//! from an HTTP server this test runs, with progress visible through GetTaskProgress, the md5
//! verified, and size/format as `qemu-img` reads them; a 404, an HTML page and a checksum
//! mismatch each fail the job and leave no record and no file.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::data_dir;
use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const IP: &str = "127.0.0.51";

/// A small HTTP server: `/img.qcow2` sent slowly (so progress can be watched), `/page.html`
/// an HTML page, anything else 404.
async fn http_server(image: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let image = std::sync::Arc::new(image);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let image = image.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                if path == "/img.qcow2" {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        image.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    // About 8 s in all: long enough to watch the progress move.
                    for chunk in image.chunks(128 << 10) {
                        if s.write_all(chunk).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                } else if path == "/page.html" {
                    let body = "<!DOCTYPE html><html><body>not an image</body></html>";
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
            });
        }
    });
    port
}

/// A qcow2 image holding 4 MiB of random data: (bytes, md5, virtual size).
fn make_image(dir: &Path) -> (Vec<u8>, String, u64) {
    let raw = dir.join("src.raw");
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&raw, data).unwrap();
    let q = dir.join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q)
        .status()
        .unwrap();
    assert!(st.success());
    let md5 = String::from_utf8(Command::new("md5sum").arg(&q).output().unwrap().stdout).unwrap();
    let md5 = md5.split_whitespace().next().unwrap().to_string();
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&q)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    (
        std::fs::read(&q).unwrap(),
        md5,
        info["virtual-size"].as_u64().unwrap(),
    )
}

impl Rest {
    async fn post(&self, path: &str, params: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(json!({ "params": params })),
        )
        .await
    }

    async fn images(&self) -> Vec<Value> {
        let (s, v) = self.send(reqwest::Method::GET, "/images", None).await;
        assert_eq!(s, 200, "{v}");
        v["inventories"].as_array().unwrap().clone()
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_downloaded_into_image_stores_with_progress() {
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest {
        c: c.clone(),
        base: base.clone(),
        session: session.clone(),
    };
    let _agent = common::TestAgent::install(&data_dir(td.path(), 1), &td.path().join("agent"), IP);
    let (s, v) = rest.post("/zones", json!({"name": "z"})).await;
    assert_eq!(s, 200, "{v}");
    let zone = v["inventory"]["uuid"].as_str().unwrap().to_string();

    let bs_dir = td.path().join("bs");
    let (s, v) = rest
        .post(
            "/backup-storage/image-store",
            json!({"name": "store", "url": bs_dir.to_str().unwrap(), "hostname": IP,
                   "username": "root", "password": "bs-secret"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bs = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .post(&format!("/zones/{zone}/backup-storage/{bs}"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let inv = loop {
        let (_, v) = rest
            .send(reqwest::Method::GET, &format!("/backup-storage/{bs}"), None)
            .await;
        let inv = v["inventories"][0].clone();
        if inv["status"] == "Connected" {
            break inv;
        }
        assert!(
            Instant::now() < deadline,
            "image store not Connected: {inv}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let out = Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(&bs_dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    assert_eq!(
        inv["totalCapacity"],
        it.next().unwrap() * it.next().unwrap(),
        "{inv}"
    );

    let (image, md5, vsize) = make_image(td.path());
    let port = http_server(image.clone()).await;
    let url = format!("http://127.0.0.1:{port}/img.qcow2");

    // Accepted as a job; its progress polled until it is done.
    let r = c
        .post(format!("{base}/images"))
        .header("Authorization", format!("OAuth {session}"))
        .json(
            &json!({"params": {"name": "img", "url": url, "format": "qcow2",
            "mediaType": "RootVolumeTemplate", "backupStorageUuids": [bs],
            "systemTags": [format!("md5::{md5}")]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: Value = r.json().await.unwrap();
    let location = v["location"].as_str().unwrap().to_string();
    let job = location.rsplit('/').next().unwrap().to_string();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let (_, p) = rest
            .send(
                reqwest::Method::GET,
                &format!("/task-progresses/{job}"),
                None,
            )
            .await;
        if let Some(pct) = p["inventories"][0]["content"].as_str() {
            seen.insert(pct.parse::<u64>().unwrap_or(0));
        }
        let r = c.get(&location).send().await.unwrap();
        if r.status().as_u16() != 202 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "AddImage did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("progress values seen: {seen:?}");
    let inv = &done["inventory"];
    assert_eq!(inv["status"], "Ready", "{done}");
    assert_eq!(inv["md5Sum"], md5.as_str(), "{inv}");
    assert_eq!(inv["size"], vsize, "{inv}");
    assert_eq!(inv["actualSize"], image.len() as u64, "{inv}");
    assert_eq!(inv["format"], "qcow2");
    let within: Vec<&u64> = seen.iter().filter(|p| **p > 0 && **p < 100).collect();
    assert!(
        within.len() >= 3,
        "fewer than 3 progress values while downloading: {seen:?}"
    );
    let install = inv["backupStorageRefs"][0]["installPath"].as_str().unwrap();
    assert!(Path::new(install).starts_with(&bs_dir), "{install}");
    assert_eq!(std::fs::read(install).unwrap(), image);

    // Refusals: each fails the job, leaves no record and no file.
    let before = files_under(&bs_dir);
    for (name, url, tags, needle) in [
        (
            "missing",
            format!("http://127.0.0.1:{port}/nothing.qcow2"),
            json!([]),
            "404",
        ),
        (
            "page",
            format!("http://127.0.0.1:{port}/page.html"),
            json!([]),
            "HTML",
        ),
        (
            "corrupt",
            url.clone(),
            json!(["md5::00000000000000000000000000000000"]),
            "md5",
        ),
    ] {
        let (s, v) = rest
            .post(
                "/images",
                json!({"name": name, "url": url, "format": "qcow2",
                       "mediaType": "RootVolumeTemplate", "backupStorageUuids": [bs],
                       "systemTags": tags}),
            )
            .await;
        assert_eq!(s, 503, "{name}: {v}");
        let details = v["error"]["details"].as_str().unwrap_or_default();
        assert!(
            details.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: {details}"
        );
    }
    let names: Vec<Value> = rest
        .images()
        .await
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("img")], "a failed add left a record");
    assert_eq!(files_under(&bs_dir), before, "a failed add left a file");

    // Delete keeps the file while the image is recoverable (deletion policy Delay); expunge
    // removes it from the store.
    let uuid = inv["uuid"].as_str().unwrap();
    let (s, v) = rest
        .send(reqwest::Method::DELETE, &format!("/images/{uuid}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        Path::new(install).exists(),
        "a recoverable image lost its file"
    );
    let (s, v) = rest
        .send(
            reqwest::Method::PUT,
            &format!("/images/{uuid}/actions"),
            Some(json!({"expungeImage": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!Path::new(install).exists(), "expunge left the file");
    assert!(rest.images().await.is_empty(), "{:?}", rest.images().await);
}
