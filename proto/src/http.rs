//! JSON bodies of the node's cluster HTTP API (`/health`, `/cluster`, `/kv`): `zsnode` serialises
//! them (node/src/http.rs) and `zsctl` decodes them (ops/src/client.rs).
//!
//! Keys are snake_case and appear in field declaration order; `Option` fields are written as
//! `null`, never left out. Every field of a reply a node might omit has a serde default, so an
//! older or newer node still decodes. Admin replies (`/cluster/init`, `/cluster/members`,
//! `/cluster/leader/transfer`) and `/cluster/management-nodes` are free-form JSON and not
//! declared here (the inventory shape belongs to `api`).

use base64::Engine as _;
use serde::Deserialize;
use serde::Serialize;

/// Header carrying the client's idempotency key for writes (HTTP header names are
/// case-insensitive; this is the form the node matches).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The `error` object of a failed request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// ZStack error code, e.g. `SYS.1001`.
    #[serde(default)]
    pub code: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Details (may be empty).
    #[serde(default)]
    pub details: String,
}

impl ApiErrorBody {
    /// `CODE: description (details)` with empty parts left out.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if !self.code.is_empty() {
            s.push_str(&self.code);
            s.push_str(": ");
        }
        s.push_str(if self.description.is_empty() {
            "(no description)"
        } else {
            &self.description
        });
        if !self.details.is_empty() {
            s.push_str(" (");
            s.push_str(&self.details);
            s.push(')');
        }
        s
    }
}

/// Body of every error reply: `{"error":{"code","description","details"},"served_by"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong.
    pub error: ApiErrorBody,
    /// The node that produced the error.
    #[serde(default)]
    pub served_by: u64,
}

/// `GET /health/ready` (HTTP 200 when ready, 503 otherwise, same body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Ready to serve.
    pub ready: bool,
    /// Why not (or what makes it ready).
    #[serde(default)]
    pub reason: String,
    /// The answering node.
    #[serde(default)]
    pub node_id: u64,
}

/// One member as seen in `/cluster/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: u64,
    /// Advertised Raft address.
    #[serde(default)]
    pub raft_addr: String,
    /// Advertised HTTP address (`host:port`).
    #[serde(default)]
    pub api_addr: String,
    /// Voter (true) or learner.
    #[serde(default)]
    pub voter: bool,
    /// Last log index the leader knows this member holds (leader's view only).
    #[serde(default)]
    pub matched_index: Option<u64>,
    /// Entries behind the leader's last log index (leader's view only).
    #[serde(default)]
    pub lag: Option<u64>,
}

/// `GET /cluster/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node's id.
    pub node_id: u64,
    /// Cluster id.
    #[serde(default)]
    pub cluster_id: String,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    #[serde(default)]
    pub role: String,
    /// Current Raft term.
    #[serde(default)]
    pub term: u64,
    /// Leader this node knows of.
    #[serde(default)]
    pub leader_id: Option<u64>,
    /// Last log index.
    #[serde(default)]
    pub last_log_index: u64,
    /// Commit index.
    #[serde(default)]
    pub commit_index: u64,
    /// Applied index.
    #[serde(default)]
    pub applied_index: u64,
    /// Members of the cluster.
    #[serde(default)]
    pub members: Vec<MemberInfo>,
    /// The node that served the request.
    #[serde(default)]
    pub served_by: u64,
}

impl ClusterStatus {
    /// The member record of `id`, if any.
    pub fn member(&self, id: u64) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// Body of `POST /cluster/members`: add a node (learner, catch up, voter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMemberRequest {
    /// Node id.
    pub id: u64,
    /// Its Raft address.
    pub raft_addr: String,
    /// Its HTTP address.
    pub api_addr: String,
}

/// Body of `POST /cluster/leader/transfer` (an empty body means `to: None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeaderRequest {
    /// Target voter; the most caught-up other voter when `None`.
    pub to: Option<u64>,
}

/// Read consistency of `GET /kv/{key}?consistency=...` and `/cluster/management-nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Read index through the leader, then local read (the default).
    Linearizable,
    /// Local state machine as it is.
    Stale,
}

impl Consistency {
    /// The query parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
        }
    }

    /// Parse a query parameter value (`None` for anything else).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linearizable" => Some(Consistency::Linearizable),
            "stale" => Some(Consistency::Stale),
            _ => None,
        }
    }
}

/// Reply to `PUT` / `DELETE /kv/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    /// Raft log index of the write.
    pub index: u64,
    /// The request id had been applied before; this is the original result.
    #[serde(default)]
    pub duplicate: bool,
    /// Previous value, base64 ([`encode_value`]).
    #[serde(default)]
    pub previous: Option<String>,
    /// Node that served the request.
    #[serde(default)]
    pub served_by: u64,
    /// Its applied index when answering.
    #[serde(default)]
    pub applied_index: u64,
}

/// Reply to `GET /kv/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// Value, base64 ([`encode_value`]); null when absent.
    #[serde(default)]
    pub value: Option<String>,
    /// Node that served the request.
    #[serde(default)]
    pub served_by: u64,
    /// Its applied index when answering.
    #[serde(default)]
    pub applied_index: u64,
}

impl ReadReply {
    /// The decoded value (None when absent or not valid base64).
    pub fn value_bytes(&self) -> Option<Vec<u8>> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
    }
}

/// A key-value value as the replies carry it: standard base64 with padding.
pub fn encode_value(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes `zsnode` wrote before these types existed (hand-built `json!` objects):
    /// key order, nulls for absent options.
    #[test]
    fn json_is_the_http_contract() {
        let status = ClusterStatus {
            node_id: 1,
            cluster_id: "zs".into(),
            role: "Leader".into(),
            term: 3,
            leader_id: Some(1),
            last_log_index: 10,
            commit_index: 10,
            applied_index: 9,
            members: vec![
                MemberInfo {
                    id: 1,
                    raft_addr: "127.0.0.1:7070".into(),
                    api_addr: "127.0.0.1:8080".into(),
                    voter: true,
                    matched_index: Some(10),
                    lag: Some(0),
                },
                MemberInfo {
                    id: 2,
                    raft_addr: "127.0.0.1:7071".into(),
                    api_addr: "127.0.0.1:8081".into(),
                    voter: false,
                    matched_index: None,
                    lag: None,
                },
            ],
            served_by: 1,
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            concat!(
                r#"{"node_id":1,"cluster_id":"zs","role":"Leader","term":3,"leader_id":1,"#,
                r#""last_log_index":10,"commit_index":10,"applied_index":9,"members":["#,
                r#"{"id":1,"raft_addr":"127.0.0.1:7070","api_addr":"127.0.0.1:8080","voter":true,"matched_index":10,"lag":0},"#,
                r#"{"id":2,"raft_addr":"127.0.0.1:7071","api_addr":"127.0.0.1:8081","voter":false,"matched_index":null,"lag":null}"#,
                r#"],"served_by":1}"#
            )
        );
        let follower = ClusterStatus {
            leader_id: None,
            ..status.clone()
        };
        assert!(serde_json::to_string(&follower)
            .unwrap()
            .contains(r#""leader_id":null"#));

        let ready = Readiness {
            ready: false,
            reason: "no leader known".into(),
            node_id: 2,
        };
        assert_eq!(
            serde_json::to_string(&ready).unwrap(),
            r#"{"ready":false,"reason":"no leader known","node_id":2}"#
        );

        let error = ErrorReply {
            error: ApiErrorBody {
                code: "SYS.1006".into(),
                description: "unavailable".into(),
                details: "no leader".into(),
            },
            served_by: 3,
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"error":{"code":"SYS.1006","description":"unavailable","details":"no leader"},"served_by":3}"#
        );

        let write = WriteReply {
            index: 7,
            duplicate: false,
            previous: Some(encode_value(b"old")),
            served_by: 1,
            applied_index: 6,
        };
        assert_eq!(
            serde_json::to_string(&write).unwrap(),
            r#"{"index":7,"duplicate":false,"previous":"b2xk","served_by":1,"applied_index":6}"#
        );
        let read = ReadReply {
            key: "k".into(),
            value: None,
            served_by: 2,
            applied_index: 7,
        };
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"key":"k","value":null,"served_by":2,"applied_index":7}"#
        );

        let add = AddMemberRequest {
            id: 4,
            raft_addr: "h:1".into(),
            api_addr: "h:2".into(),
        };
        assert_eq!(
            serde_json::to_string(&add).unwrap(),
            r#"{"id":4,"raft_addr":"h:1","api_addr":"h:2"}"#
        );
        let to = TransferLeaderRequest { to: Some(2) };
        assert_eq!(serde_json::to_string(&to).unwrap(), r#"{"to":2}"#);
    }

    #[test]
    fn replies_decode_with_fields_missing_and_requests_do_not() {
        let s: ClusterStatus = serde_json::from_str(r#"{"node_id":5}"#).unwrap();
        assert_eq!(s.node_id, 5);
        assert!(s.members.is_empty() && s.member(5).is_none());
        let e: ErrorReply = serde_json::from_str(r#"{"error":{"code":"X"}}"#).unwrap();
        assert_eq!(e.error.summary(), "X: (no description)");
        assert!(serde_json::from_str::<ErrorReply>(r#"{"ready":true}"#).is_err());
        assert!(serde_json::from_str::<AddMemberRequest>(r#"{"id":4}"#).is_err());
        let t: TransferLeaderRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(t.to, None);
        let r = ReadReply {
            value: Some(encode_value(b"\x00v")),
            ..Default::default()
        };
        assert_eq!(r.value_bytes().as_deref(), Some(&b"\x00v"[..]));
        for c in [Consistency::Linearizable, Consistency::Stale] {
            assert_eq!(Consistency::parse(c.as_str()), Some(c));
        }
        assert_eq!(Consistency::parse("Stale"), None);
    }
}
