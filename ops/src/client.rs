//! Blocking HTTP client for one `zsnode` and for a list of them (try each until one answers).
//!
//! The wire types are the node's own, from `proto::http` (re-exported here); every field a node
//! might omit has a serde default so an older or newer node still decodes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::http::{AddMemberRequest, ErrorReply, TransferLeaderRequest, REQUEST_ID_HEADER};
pub use proto::http::{
    ApiErrorBody, ClusterStatus, Consistency, MemberInfo, ReadReply, Readiness, WriteReply,
};
use serde::{Deserialize, Serialize};

/// Everything that can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The node could not be reached (connect refused, timeout, reset).
    #[error("node {node} is unreachable: {detail}")]
    Unreachable {
        /// Base URL of the node.
        node: String,
        /// What the transport said.
        detail: String,
    },
    /// The node answered with an error status.
    #[error("{node} answered HTTP {status}: {}", .error.summary())]
    Api {
        /// Base URL of the node.
        node: String,
        /// HTTP status code.
        status: u16,
        /// The error body (or a synthesised one when the body was not the error JSON).
        error: ApiErrorBody,
    },
    /// The node answered something that is not the documented JSON.
    #[error("{node} sent an undecodable reply to {what}: {detail}")]
    Decode {
        /// Base URL of the node.
        node: String,
        /// Which request.
        what: String,
        /// Decoder message.
        detail: String,
    },
    /// A local file operation failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No node in the list answered.
    #[error("no node answered (tried {tried}): {last}")]
    NoNodeAnswered {
        /// The nodes tried, comma separated.
        tried: String,
        /// The last error seen.
        last: Box<OpsError>,
    },
    /// Bad input from the operator.
    #[error("{0}")]
    Usage(String),
}

impl OpsError {
    /// True when the node could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            OpsError::Unreachable { .. } | OpsError::NoNodeAnswered { .. }
        )
    }

    /// HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OpsError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Turn `host:port` or a URL into a base URL without a trailing slash.
pub fn base_url(addr: &str) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

/// Split a comma-separated node list (`ZSCTL_NODE` style) into base URLs.
pub fn parse_node_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(base_url)
        .collect()
}

/// Percent-encode a key for use as one path segment (keys are arbitrary strings).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How a client proves itself and whom it trusts.
#[derive(Clone, Default)]
pub struct Auth {
    /// The cluster admin token (`Authorization: Bearer`), or an admin session
    /// (`Authorization: OAuth <uuid>`) when it starts with `OAuth `.
    pub token: Option<String>,
    /// PEM CA certificate(s) trusted for `https://` nodes (the cluster CA, `pki/ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl Auth {
    /// An admin-token credential.
    pub fn token(token: impl Into<String>) -> Self {
        Auth {
            token: Some(token.into()),
            ca_pem: None,
        }
    }

    fn header(&self) -> Result<Option<reqwest::header::HeaderValue>, OpsError> {
        let Some(t) = &self.token else {
            return Ok(None);
        };
        let t = t.trim();
        let v = if t.len() > 6 && t[..6].eq_ignore_ascii_case("oauth ") {
            t.to_string()
        } else {
            format!("Bearer {t}")
        };
        let mut v = reqwest::header::HeaderValue::from_str(&v).map_err(|_| {
            OpsError::Usage("the admin token holds characters a header cannot carry".into())
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

/// A blocking client for one node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    timeouts: Timeouts,
    auth: Auth,
    http: reqwest::blocking::Client,
    // Streaming a snapshot may take long; it gets its own client without a total timeout.
    slow: reqwest::blocking::Client,
}

/// Timeouts of a [`NodeClient`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect timeout.
    pub connect: Duration,
    /// Whole-request timeout (not applied to snapshot downloads).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // The node promises an answer (maybe 503) within ~5 s; leave headroom for forwarding.
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(15),
        }
    }
}

impl NodeClient {
    /// A client for the node at `addr` (`host:port` or URL) with default timeouts.
    pub fn new(addr: &str) -> Result<Self, OpsError> {
        Self::with_timeouts(addr, Timeouts::default())
    }

    /// A client with explicit timeouts and no credential.
    pub fn with_timeouts(addr: &str, t: Timeouts) -> Result<Self, OpsError> {
        Self::with_auth(addr, t, Auth::default())
    }

    /// A client sending `auth`'s credential on every request.
    pub fn with_auth(addr: &str, t: Timeouts, auth: Auth) -> Result<Self, OpsError> {
        let base = base_url(addr);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = auth.header()? {
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let ca = match &auth.ca_pem {
            Some(pem) => Some(
                reqwest::Certificate::from_pem(pem)
                    .map_err(|e| OpsError::Usage(format!("CA certificate: {e}")))?,
            ),
            None => None,
        };
        let build = |total: Option<Duration>| {
            let mut b = reqwest::blocking::Client::builder()
                .connect_timeout(t.connect)
                .pool_idle_timeout(Duration::from_secs(30))
                .default_headers(headers.clone())
                // Operators and tests talk to loopback nodes; a system proxy must not interfere.
                .no_proxy();
            if let Some(ca) = &ca {
                b = b
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca.clone());
            }
            b = b.timeout(total);
            b.build()
                .map_err(|e| OpsError::Usage(format!("cannot build HTTP client: {e}")))
        };
        Ok(NodeClient {
            http: build(Some(t.request))?,
            slow: build(None)?,
            base,
            timeouts: t,
            auth,
        })
    }

    /// A client for another node with this one's timeouts and credential.
    pub fn sibling(&self, addr: &str) -> Result<Self, OpsError> {
        Self::with_auth(addr, self.timeouts, self.auth.clone())
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn transport(&self, e: reqwest::Error) -> OpsError {
        // Show the root cause (e.g. "Connection refused") rather than reqwest's outer wrapper.
        let mut detail = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            detail = s.to_string();
            src = s.source();
        }
        if e.is_timeout() {
            detail = format!("timed out ({detail})");
        }
        OpsError::Unreachable {
            node: self.base.clone(),
            detail,
        }
    }

    fn check(
        &self,
        resp: reqwest::blocking::Response,
    ) -> Result<reqwest::blocking::Response, OpsError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().unwrap_or_default();
        let error = match serde_json::from_str::<ErrorReply>(&text) {
            Ok(reply) => reply.error,
            Err(_) => ApiErrorBody {
                code: String::new(),
                description: if text.trim().is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text.trim().chars().take(300).collect()
                },
                details: String::new(),
            },
        };
        Err(OpsError::Api {
            node: self.base.clone(),
            status: status.as_u16(),
            error,
        })
    }

    fn json<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        resp: reqwest::blocking::Response,
    ) -> Result<T, OpsError> {
        let resp = self.check(resp)?;
        let bytes = resp.bytes().map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| OpsError::Decode {
            node: self.base.clone(),
            what: what.to_string(),
            detail: format!(
                "{e}; body: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, OpsError> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .map_err(|e| self.transport(e))?;
        self.json(&format!("GET {path}"), resp)
    }

    fn send_json<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, OpsError> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().map_err(|e| self.transport(e))?;
        let what = format!("{method} {path}");
        let resp = self.check(resp)?;
        let bytes = resp.bytes().map_err(|e| self.transport(e))?;
        // Admin endpoints may answer with an empty body; treat that as JSON null.
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| OpsError::Decode {
            node: self.base.clone(),
            what,
            detail: e.to_string(),
        })
    }

    /// `GET /health/live`: Ok when the process answers 200.
    pub fn live(&self) -> Result<(), OpsError> {
        let resp = self
            .http
            .get(self.url("/health/live"))
            .send()
            .map_err(|e| self.transport(e))?;
        self.check(resp).map(|_| ())
    }

    /// `GET /health/ready`; a 503 with the readiness body is returned as `ready: false`.
    pub fn ready(&self) -> Result<Readiness, OpsError> {
        let resp = self
            .http
            .get(self.url("/health/ready"))
            .send()
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| self.transport(e))?;
        match serde_json::from_slice::<Readiness>(&bytes) {
            Ok(r) => Ok(r),
            Err(_) if status.is_success() => Ok(Readiness {
                ready: true,
                reason: "ok".into(),
                node_id: 0,
            }),
            Err(_) => Ok(Readiness {
                ready: false,
                reason: format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    String::from_utf8_lossy(&bytes).trim()
                ),
                node_id: 0,
            }),
        }
    }

    /// `GET /cluster/status`.
    pub fn status(&self) -> Result<ClusterStatus, OpsError> {
        self.get_json("/cluster/status")
    }

    /// `GET /cluster/management-nodes` (raw JSON: the inventory shape belongs to `api`).
    pub fn management_nodes(&self) -> Result<serde_json::Value, OpsError> {
        self.get_json("/cluster/management-nodes")
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> Result<String, OpsError> {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .send()
            .map_err(|e| self.transport(e))?;
        self.check(resp)?.text().map_err(|e| self.transport(e))
    }

    /// `POST /cluster/join-tokens`: a token admitting one new node.
    pub fn create_join_token(
        &self,
        ttl_seconds: Option<u64>,
        node_id: Option<u64>,
    ) -> Result<serde_json::Value, OpsError> {
        #[derive(Serialize)]
        struct Body {
            #[serde(skip_serializing_if = "Option::is_none")]
            ttl_seconds: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            node_id: Option<u64>,
        }
        self.send_json(
            reqwest::Method::POST,
            "/cluster/join-tokens",
            Some(&Body {
                ttl_seconds,
                node_id,
            }),
        )
    }

    /// `POST /cluster/init`.
    pub fn init(&self) -> Result<serde_json::Value, OpsError> {
        self.send_json(reqwest::Method::POST, "/cluster/init", None::<&()>)
    }

    /// `POST /cluster/members`: add as learner, catch up, promote to voter.
    pub fn add_member(
        &self,
        id: u64,
        raft_addr: &str,
        api_addr: &str,
    ) -> Result<serde_json::Value, OpsError> {
        let body = AddMemberRequest {
            id,
            raft_addr: raft_addr.to_string(),
            api_addr: api_addr.to_string(),
        };
        self.send_json(reqwest::Method::POST, "/cluster/members", Some(&body))
    }

    /// `DELETE /cluster/members/{id}`.
    pub fn remove_member(&self, id: u64) -> Result<serde_json::Value, OpsError> {
        self.send_json(
            reqwest::Method::DELETE,
            &format!("/cluster/members/{id}"),
            None::<&()>,
        )
    }

    /// `POST /cluster/leader/transfer`.
    pub fn transfer_leader(&self, to: u64) -> Result<serde_json::Value, OpsError> {
        self.send_json(
            reqwest::Method::POST,
            "/cluster/leader/transfer",
            Some(&TransferLeaderRequest { to: Some(to) }),
        )
    }

    /// `PUT /kv/{key}` with an optional request id.
    pub fn put(
        &self,
        key: &str,
        value: &[u8],
        request_id: Option<&str>,
    ) -> Result<WriteReply, OpsError> {
        let mut req = self
            .http
            .put(self.url(&format!("/kv/{}", encode_key(key))))
            .body(value.to_vec());
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID_HEADER, id);
        }
        let resp = req.send().map_err(|e| self.transport(e))?;
        self.json(&format!("PUT /kv/{key}"), resp)
    }

    /// `DELETE /kv/{key}` with an optional request id.
    pub fn delete(&self, key: &str, request_id: Option<&str>) -> Result<WriteReply, OpsError> {
        let mut req = self
            .http
            .delete(self.url(&format!("/kv/{}", encode_key(key))));
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID_HEADER, id);
        }
        let resp = req.send().map_err(|e| self.transport(e))?;
        self.json(&format!("DELETE /kv/{key}"), resp)
    }

    /// `GET /kv/{key}?consistency=...`.
    pub fn get(&self, key: &str, consistency: Consistency) -> Result<ReadReply, OpsError> {
        self.get_json(&format!(
            "/kv/{}?consistency={}",
            encode_key(key),
            consistency.as_str()
        ))
    }

    /// Stream `GET /cluster/snapshot` into `dest` crash-safely: write `dest.tmp`, fsync, rename,
    /// fsync the directory. Returns the byte count.
    pub fn save_snapshot(&self, dest: &Path) -> Result<u64, OpsError> {
        let resp = self
            .slow
            .get(self.url("/cluster/snapshot"))
            .send()
            .map_err(|e| self.transport(e))?;
        let mut resp = self.check(resp)?;
        write_atomically(dest, |file| {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = resp.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])?;
                total += n as u64;
            }
            Ok(total)
        })
    }
}

/// Write a file via `<dest>.tmp` + fsync + rename + directory fsync, so `dest` is either the old
/// file or the complete new one, never a torn download.
pub fn write_atomically(
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<u64>,
) -> Result<u64, OpsError> {
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpsError::Io { what, path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("cannot create", &tmp))?;
    let total = match fill(&mut file) {
        Ok(n) => n,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&tmp);
            return Err(OpsError::Io {
                what: "cannot write",
                path: tmp,
                source: e,
            });
        }
    };
    file.sync_all().map_err(io("cannot fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, dest).map_err(io("cannot rename into place", dest))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The rename is durable only once the directory entry is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot fsync directory", &dir))?;
    Ok(total)
}

/// A list of nodes; requests go to the first one that answers.
#[derive(Debug, Clone)]
pub struct Nodes {
    clients: Vec<NodeClient>,
}

impl Nodes {
    /// Clients for each address (at least one), without a credential.
    pub fn new(addrs: &[String], t: Timeouts) -> Result<Self, OpsError> {
        Self::with_auth(addrs, t, Auth::default())
    }

    /// Clients for each address sending `auth`.
    pub fn with_auth(addrs: &[String], t: Timeouts, auth: Auth) -> Result<Self, OpsError> {
        if addrs.is_empty() {
            return Err(OpsError::Usage(
                "no node address given (--node or ZSCTL_NODE)".into(),
            ));
        }
        let clients = addrs
            .iter()
            .map(|a| NodeClient::with_auth(a, t, auth.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Nodes { clients })
    }

    /// The individual clients.
    pub fn clients(&self) -> &[NodeClient] {
        &self.clients
    }

    /// Run `f` against each node in order until one is reachable; an answered error is final
    /// (another node would forward to the same leader and answer the same).
    pub fn first<T>(
        &self,
        mut f: impl FnMut(&NodeClient) -> Result<T, OpsError>,
    ) -> Result<(T, &NodeClient), OpsError> {
        let mut last = None;
        for c in &self.clients {
            match f(c) {
                Ok(v) => return Ok((v, c)),
                Err(e) if e.is_unreachable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        let tried = self
            .clients
            .iter()
            .map(|c| c.base().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(OpsError::NoNodeAnswered {
            tried,
            last: Box::new(last.unwrap_or_else(|| OpsError::Usage("empty node list".into()))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_lists() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(
            parse_node_list(" 127.0.0.1:1, http://127.0.0.1:2 ,,"),
            vec![
                "http://127.0.0.1:1".to_string(),
                "http://127.0.0.1:2".to_string()
            ]
        );
        assert_eq!(encode_key("a/b c-1"), "a%2Fb%20c-1");
    }

    #[test]
    fn status_decodes_contract_json() {
        let j = r#"{"node_id":1,"cluster_id":"zs","role":"Leader","term":3,"leader_id":1,
            "last_log_index":10,"commit_index":10,"applied_index":9,
            "members":[{"id":1,"raft_addr":"127.0.0.1:7070","api_addr":"127.0.0.1:8080","voter":true,"matched_index":10,"lag":0},
                       {"id":2,"raft_addr":"127.0.0.1:7071","api_addr":"127.0.0.1:8081","voter":false,"matched_index":null,"lag":null}],
            "served_by":1}"#;
        let s: ClusterStatus = serde_json::from_str(j).unwrap();
        assert_eq!(s.leader_id, Some(1));
        assert_eq!(s.member(2).unwrap().lag, None);
        assert!(!s.member(2).unwrap().voter);
    }

    #[test]
    fn error_summary() {
        let e = ApiErrorBody {
            code: "SYS.1000".into(),
            description: "no quorum".into(),
            details: String::new(),
        };
        assert_eq!(e.summary(), "SYS.1000: no quorum");
        let e = ApiErrorBody {
            code: String::new(),
            description: String::new(),
            details: "x".into(),
        };
        assert_eq!(e.summary(), "(no description) (x)");
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("snap.bin");
        std::fs::write(&dest, b"old").unwrap();
        let n = write_atomically(&dest, |f| f.write_all(b"new contents").map(|_| 12)).unwrap();
        assert_eq!(n, 12);
        assert_eq!(std::fs::read(&dest).unwrap(), b"new contents");
        assert!(!dir.path().join("snap.bin.tmp").exists());
        // A failing writer leaves the old file untouched and no temp file behind.
        let err = write_atomically(&dest, |_| Err(std::io::Error::other("boom"))).unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"new contents");
        assert!(!dir.path().join("snap.bin.tmp").exists());
    }

    #[test]
    fn unreachable_node_is_reported_and_next_one_tried() {
        // Port 1 on loopback: nothing listens there, so connect is refused immediately.
        let t = Timeouts {
            connect: Duration::from_millis(500),
            request: Duration::from_secs(1),
        };
        let nodes = Nodes::new(&["127.0.0.1:1".into(), "127.0.0.1:1".into()], t).unwrap();
        let err = nodes.first(|c| c.status()).unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains("no node answered"), "{err}");
    }
}
