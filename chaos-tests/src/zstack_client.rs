//! A small blocking client of ZStack's RPC protocol (spec 06 §1–2): `POST /zstack/api` with
//! `{"<class>": {...}}`, sync replies, async calls answered with a job uuid and polled at
//! `GET /zstack/api/result/{uuid}`, login by account, and the `X-Job-UUID` header that makes a
//! retried async call the same job (applied once).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use serde_json::json;
use serde_json::Value;

/// SHA-512 of `password`: what ZStack clients send for the built-in admin (spec 06 §2).
pub const ADMIN_PASSWORD: &str = "b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86";

/// The account login message.
pub const LOGIN_BY_ACCOUNT: &str = "org.zstack.header.identity.APILogInByAccountMsg";

/// Why a call produced no reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Nothing (or no complete answer) came back: connection refused, reset, or timed out. The
    /// call may or may not have been applied.
    #[error("{base}: transport error: {reason}")]
    Transport {
        /// The node.
        base: String,
        /// What failed.
        reason: String,
        /// The connection itself failed (nothing was sent): safe to fail over at once.
        connect: bool,
    },
    /// An answer that is not the protocol's (plain-text body, HTTP error, bad JSON).
    #[error("{base}: unexpected answer (HTTP {status}): {body}")]
    Protocol {
        /// The node.
        base: String,
        /// HTTP status.
        status: u16,
        /// The body, shortened.
        body: String,
    },
}

/// A reply object (the value inside `result`) with its class.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The reply or event class, e.g. `org.zstack.header.zone.APICreateZoneEvent`.
    pub class: String,
    /// `{..., "success": bool, "error"?: {...}}`.
    pub body: Value,
}

impl Reply {
    /// `success` of the reply.
    pub fn success(&self) -> bool {
        self.body["success"] == true
    }

    /// The error code (`SYS.1012`, `ID.1001`, ...) of a failed reply.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// `inventory` of a create/update event.
    pub fn inventory(&self) -> &Value {
        &self.body["inventory"]
    }

    /// `inventories` of a query reply (empty when absent).
    pub fn inventories(&self) -> &[Value] {
        self.body["inventories"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The immediate answer to an async call.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Already finished (or refused before a job existed).
    Done(Reply),
    /// Accepted as job `uuid`; poll it.
    Processing(String),
}

/// `http://host:port` from either that or a bare `host:port`.
pub fn base_url(node: &str) -> String {
    let n = node.trim_end_matches('/');
    if n.starts_with("http://") || n.starts_with("https://") {
        n.to_string()
    } else {
        format!("http://{n}")
    }
}

/// A fresh job uuid (32 lowercase hex digits), unique across processes and runs.
pub fn new_job_uuid() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}{:016x}",
        mix(nanos ^ ((std::process::id() as u64) << 32)),
        mix(seq.wrapping_add(nanos))
    )
}

/// splitmix64's finaliser: a cheap, well-spread 64-bit hash.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The blocking client. Every method takes the node's base URL (`http://ip:port` or
/// `ip:port`) and a per-request timeout, so callers choose where each call goes.
#[derive(Clone)]
pub struct ZsClient {
    http: reqwest::blocking::Client,
}

impl ZsClient {
    /// A client whose requests time out after `default_timeout` unless a call says otherwise.
    pub fn new(default_timeout: Duration) -> anyhow::Result<Self> {
        Ok(ZsClient {
            http: reqwest::blocking::Client::builder()
                .timeout(default_timeout)
                .connect_timeout(Duration::from_secs(1).min(default_timeout))
                .build()?,
        })
    }

    /// The underlying HTTP client (for REST calls).
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    fn transport(base: &str, e: reqwest::Error) -> CallError {
        CallError::Transport {
            base: base.to_string(),
            connect: e.is_connect(),
            reason: e.to_string(),
        }
    }

    /// POST a body to `/zstack/api`; the outer envelope, or the plain-text body (ZStack's
    /// answer to an undecodable request) as a JSON string.
    pub fn post(
        &self,
        node: &str,
        body: &Value,
        job: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let base = base_url(node);
        let mut r = self
            .http
            .post(format!("{base}/zstack/api"))
            .timeout(timeout)
            .json(body);
        if let Some(j) = job {
            r = r.header("X-Job-UUID", j);
        }
        let resp = r.send().map_err(|e| Self::transport(&base, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| Self::transport(&base, e))?;
        if status != 200 {
            return Err(CallError::Protocol {
                base,
                status,
                body: text.chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The reply inside an outer envelope's `result`.
    pub fn inner(node: &str, outer: &Value) -> Result<Reply, CallError> {
        let bad = || CallError::Protocol {
            base: base_url(node),
            status: 200,
            body: outer.to_string().chars().take(300).collect(),
        };
        let result: Value = outer["result"]
            .as_str()
            .and_then(|r| serde_json::from_str(r).ok())
            .ok_or_else(bad)?;
        let (class, v) = result
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(bad)?;
        Ok(Reply {
            class: class.clone(),
            body: v.clone(),
        })
    }

    fn body(class: &str, mut fields: Value, session: Option<&str>) -> Value {
        if let Some(s) = session {
            fields["session"] = json!({ "uuid": s });
        }
        json!({ class: fields })
    }

    /// Run a sync call (queries, logins): its reply.
    pub fn sync(
        &self,
        node: &str,
        class: &str,
        fields: Value,
        session: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let outer = self.post(node, &Self::body(class, fields, session), None, timeout)?;
        if outer["state"] != "Done" {
            return Err(CallError::Protocol {
                base: base_url(node),
                status: 200,
                body: outer.to_string().chars().take(300).collect(),
            });
        }
        Self::inner(node, &outer)
    }

    /// Send an async call as job `job` (the `X-Job-UUID`: a retry with the same uuid is the
    /// same job, applied once).
    pub fn submit(
        &self,
        node: &str,
        class: &str,
        fields: Value,
        session: &str,
        job: &str,
        timeout: Duration,
    ) -> Result<Submitted, CallError> {
        let outer = self.post(
            node,
            &Self::body(class, fields, Some(session)),
            Some(job),
            timeout,
        )?;
        match outer["state"].as_str() {
            Some("Done") => Ok(Submitted::Done(Self::inner(node, &outer)?)),
            Some("Processing") => Ok(Submitted::Processing(
                outer["uuid"].as_str().unwrap_or(job).to_string(),
            )),
            _ => Err(CallError::Protocol {
                base: base_url(node),
                status: 200,
                body: outer.to_string().chars().take(300).collect(),
            }),
        }
    }

    /// Poll job `job` once: `Some(reply)` when done, `None` while processing or unknown (404).
    pub fn poll(
        &self,
        node: &str,
        job: &str,
        timeout: Duration,
    ) -> Result<Option<Reply>, CallError> {
        let base = base_url(node);
        let resp = self
            .http
            .get(format!("{base}/zstack/api/result/{job}"))
            .timeout(timeout)
            .send()
            .map_err(|e| Self::transport(&base, e))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let text = resp.text().map_err(|e| Self::transport(&base, e))?;
        let v: Value = match (status, serde_json::from_str(&text)) {
            (200, Ok(v)) => v,
            _ => {
                return Err(CallError::Protocol {
                    base,
                    status,
                    body: text.chars().take(300).collect(),
                })
            }
        };
        if v["state"] == "Done" {
            Self::inner(node, &v).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Poll job `job` on `node` every 50 ms until it is done or `deadline` passes (`Ok(None)`).
    pub fn wait_job(
        &self,
        node: &str,
        job: &str,
        deadline: Instant,
    ) -> Result<Option<Reply>, CallError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(r) = self.poll(node, job, left)? {
                return Ok(Some(r));
            }
            std::thread::sleep(Duration::from_millis(50).min(left));
        }
    }

    /// Run an async call accepted by `node` and polled on `poll_node` until done (or `timeout`,
    /// then `Ok(None)`: still pending).
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &self,
        node: &str,
        poll_node: &str,
        class: &str,
        fields: Value,
        session: &str,
        job: &str,
        timeout: Duration,
    ) -> Result<Option<Reply>, CallError> {
        let deadline = Instant::now() + timeout;
        match self.submit(node, class, fields, session, job, timeout)? {
            Submitted::Done(r) => Ok(Some(r)),
            Submitted::Processing(uuid) => self.wait_job(poll_node, &uuid, deadline),
        }
    }

    /// Log in as the built-in admin through `node`: the reply (check `success`).
    pub fn login_once(&self, node: &str, timeout: Duration) -> Result<Reply, CallError> {
        self.sync(
            node,
            LOGIN_BY_ACCOUNT,
            json!({"accountName": "admin", "password": ADMIN_PASSWORD}),
            None,
            timeout,
        )
    }

    /// Log in as admin through any of `nodes` (trying each in turn), waiting up to `timeout`
    /// for the admin to exist (the first leader's bootstrap duty creates it). The session uuid.
    pub fn login(&self, nodes: &[String], timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no node to log in through");
        for i in 0.. {
            let node = &nodes[i % nodes.len().max(1)];
            let left = deadline.saturating_duration_since(Instant::now());
            match self.login_once(
                node,
                left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
            ) {
                Ok(r) if r.success() => {
                    if let Some(s) = r.inventory()["uuid"].as_str() {
                        return Ok(s.to_string());
                    }
                    last = format!("login reply without a session: {}", r.body);
                }
                Ok(r) => last = format!("{node}: {}", r.body),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        anyhow::bail!("admin login failed for {timeout:?}: {last}")
    }
}
