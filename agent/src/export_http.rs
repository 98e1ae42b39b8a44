//! The export HTTP server: plain HTTP on the agent's export port (default
//! [`DEFAULT_EXPORT_PORT`]), serving exported images (`image_export`) and nothing else.
//!
//! `GET|HEAD /exports/<backup storage uuid>/<token>/<file>` answers the file with its
//! `Content-Length` (streamed from disk); anything else is 404 (405 for other methods), with
//! no listing and no hint whether a store, a token or a file was wrong. The random token in
//! the path is the capability, as in ZStack's image store export: whoever holds the URL may
//! download the image until the export is deleted. No TLS, so the URL should not cross an
//! untrusted network; that is the trade ZStack makes for `curl`/browser-friendly downloads.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::Path;
use axum::extract::State;
use axum::http::header;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::image_export;
use crate::image_service::SharedImageStores;

/// The export port unless configured otherwise (the gRPC port + 1).
pub const DEFAULT_EXPORT_PORT: u16 = 7273;

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The file a request names, if it is an export of a store connected here.
fn file_of(stores: &SharedImageStores, bs: &str, token: &str, file: &str) -> Option<PathBuf> {
    let bs_ok = !bs.is_empty()
        && bs.len() <= 64
        && bs
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !bs_ok {
        return None;
    }
    image_export::resolve(&stores.root_of(bs)?, token, file)
}

async fn download(
    method: Method,
    State(stores): State<SharedImageStores>,
    Path((bs, token, file)): Path<(String, String, String)>,
) -> Response {
    let Some(path) = file_of(&stores, &bs, &token, &file) else {
        return not_found();
    };
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // Deleted between the check and the open.
        Err(_) => return not_found(),
    };
    let len = match f.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return not_found(),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20))
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    // `file` passed `is_file_name`: no quote or control character can be in it.
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The server's routes over the agent's image stores.
pub fn router(stores: SharedImageStores) -> Router {
    Router::new()
        .route("/exports/{bs}/{token}/{file}", get(download))
        .fallback(|| async { not_found() })
        .with_state(stores)
}

/// Serve exports on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stores: SharedImageStores,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(stores))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::image_service::ImageStores;

    #[tokio::test]
    async fn serves_exports_with_their_length_and_nothing_else() {
        let td = tempfile::tempdir().unwrap();
        let root = td.path().join("bs");
        let stores = Arc::new(ImageStores::in_memory());
        stores.connect("bs1", root.to_str().unwrap()).unwrap();
        let token = "0123456789abcdef0123456789abcdef";
        let dir = root.join("exports").join(token);
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.join("img.qcow2"), &body).unwrap();
        std::fs::write(root.join("secret.txt"), b"not served").unwrap();

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, stores, std::future::pending()));
        let c = reqwest::Client::new();
        let url = format!("http://{addr}/exports/bs1/{token}/img.qcow2");

        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(body.len() as u64));
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());

        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert!(r.bytes().await.unwrap().is_empty());

        for path in [
            format!("/exports/bs2/{token}/img.qcow2"),
            format!("/exports/bs1/{token}/other.qcow2"),
            "/exports/bs1/00000000000000000000000000000000/img.qcow2".to_string(),
            format!("/exports/bs1/{token}/..%2F..%2Fsecret.txt"),
            "/exports/bs1/../secret.txt".to_string(),
            format!("/exports/bs1/{token}"),
            "/".to_string(),
        ] {
            let r = c.get(format!("http://{addr}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        let r = c.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert!(dir.join("img.qcow2").exists());
    }
}
