//! The `/zstack/api` envelope: request decoding and response encoding (spec 06 §1.2–1.5).

use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

use super::date::java_date;
use super::errors::ErrorCode;

/// Largest request body accepted; larger bodies are refused before any parsing.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Reply class used when a call is refused before its own handler runs (sync calls).
pub const GENERIC_REPLY: &str = "org.zstack.header.message.APIReply";
/// Event class used when an async call is refused before its own handler runs.
pub const GENERIC_EVENT: &str = "org.zstack.header.message.APIEvent";

/// A decoded API call: the message class and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// Fully qualified Java class name, e.g. `org.zstack.header.zone.APICreateZoneMsg`.
    pub class: String,
    /// The message's fields as sent (unknown fields are kept; handlers ignore them).
    pub body: Map<String, Value>,
    /// `session.uuid`, when a session object was sent.
    pub session_uuid: Option<String>,
    /// `systemTags`.
    pub system_tags: Vec<String>,
    /// `userTags`.
    pub user_tags: Vec<String>,
    /// `timeout` in milliseconds, when sent.
    pub timeout_ms: Option<u64>,
}

impl ApiRequest {
    /// The call's short name: `APICreateZoneMsg` → `CreateZone`.
    pub fn short_name(&self) -> &str {
        let simple = self.class.rsplit('.').next().unwrap_or(&self.class);
        let simple = simple.strip_prefix("API").unwrap_or(simple);
        simple.strip_suffix("Msg").unwrap_or(simple)
    }
}

/// Why a body could not be decoded into a message. ZStack answers these with HTTP 200 and the
/// plain text of the exception as the whole body; `Display` gives that text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Over [`MAX_REQUEST_BYTES`].
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON.
    #[error("com.google.gson.JsonSyntaxException: {0}")]
    Malformed(String),
    /// JSON, but not `{"<class>": {...}}`.
    #[error("Unable to deserialize: {0}")]
    Shape(String),
    /// A common field (`session`, `systemTags`, `userTags`, `timeout`) has the wrong type.
    #[error(
        "java.lang.IllegalStateException: field[{field}] of message[{class}] must be {expected}"
    )]
    FieldType {
        /// The message class.
        class: String,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

fn string_list(
    class: &str,
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, DecodeError> {
    let err = || DecodeError::FieldType {
        class: class.to_string(),
        field,
        expected: "a list of strings",
    };
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(err))
            .collect(),
        Some(_) => Err(err()),
    }
}

/// Decode a request body. The first key of the top-level object names the message class.
pub fn decode_request(bytes: &[u8]) -> Result<ApiRequest, DecodeError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_REQUEST_BYTES,
        });
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let Value::Object(top) = v else {
        return Err(DecodeError::Shape(
            "the body must be a JSON object {\"<message class>\": {...}}".into(),
        ));
    };
    let Some((class, inner)) = top.into_iter().next() else {
        return Err(DecodeError::Shape("the body names no message class".into()));
    };
    if class.is_empty()
        || class
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '$'))
    {
        return Err(DecodeError::Shape(format!("class {class}")));
    }
    let body = match inner {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Err(DecodeError::Shape(format!(
                "class {class}: message body must be an object"
            )))
        }
    };
    let session_uuid = match body.get("session") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s)) => match s.get("uuid") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()),
            Some(_) => {
                return Err(DecodeError::FieldType {
                    class,
                    field: "session.uuid",
                    expected: "a string",
                })
            }
        },
        Some(_) => {
            return Err(DecodeError::FieldType {
                class,
                field: "session",
                expected: "an object {\"uuid\": ...}",
            })
        }
    };
    let system_tags = string_list(&class, &body, "systemTags")?;
    let user_tags = string_list(&class, &body, "userTags")?;
    let timeout_ms = match body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| DecodeError::FieldType {
            class: class.clone(),
            field: "timeout",
            expected: "a non-negative integer (milliseconds)",
        })?),
    };
    Ok(ApiRequest {
        class,
        body,
        session_uuid,
        system_tags,
        user_tags,
        timeout_ms,
    })
}

/// `{"<class>": reply}` as ZStack's inner Gson writes it: compact, with `<>&='` escaped.
pub fn encode_result(class: &str, reply: &Value) -> String {
    let mut top = Map::new();
    top.insert(class.to_string(), reply.clone());
    let raw = Value::Object(top).to_string();
    // Those five characters never occur in JSON syntax, only inside strings, so escaping them
    // everywhere is exactly Gson's HTML-safe string escaping.
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003d"),
            '\'' => out.push_str("\\u0027"),
            c => out.push(c),
        }
    }
    out
}

/// A successful reply or event: the handler's fields followed by `"success": true`.
pub fn success(mut fields: Map<String, Value>) -> Value {
    fields.remove("success");
    fields.insert("success".into(), Value::Bool(true));
    Value::Object(fields)
}

/// A failed reply or event: `{"success": false, "error": {...}}`.
pub fn failure(error: &ErrorCode) -> Value {
    let mut m = Map::new();
    m.insert("success".into(), Value::Bool(false));
    m.insert(
        "error".into(),
        serde_json::to_value(error).unwrap_or_else(|e| Value::String(e.to_string())),
    );
    Value::Object(m)
}

/// State of an API call as `RestAPIResponse` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ApiState {
    /// Accepted, not finished.
    Processing,
    /// Finished, successfully or not (`success` inside `result` tells).
    Done,
}

/// The outer response object, fields in ZStack's order; absent fields omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestApiResponse {
    /// Job uuid (async calls only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Processing or Done.
    pub state: ApiState,
    /// When the call was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    /// When it finished (or, while processing, when last touched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_date: Option<String>,
    /// [`encode_result`] of the reply or event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl RestApiResponse {
    /// A sync call's answer.
    pub fn sync(now_ms: u64, result: String) -> Self {
        Self {
            uuid: None,
            state: ApiState::Done,
            created_date: Some(java_date(now_ms)),
            finished_date: Some(java_date(now_ms)),
            result: Some(result),
        }
    }

    /// An async call's immediate answer.
    pub fn accepted(job_uuid: &str, created_ms: u64) -> Self {
        Self {
            uuid: Some(job_uuid.to_string()),
            state: ApiState::Processing,
            created_date: Some(java_date(created_ms)),
            finished_date: None,
            result: None,
        }
    }

    /// The body bytes: compact JSON, no HTML escaping at this level.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"state\":\"Done\",\"result\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wire::errors::Code;

    #[test]
    fn decodes_the_spec_example() {
        let body = br#"{"org.zstack.header.zone.APICreateZoneMsg": {
            "name": "zone1", "description": "Test",
            "session": {"uuid": "b15610a241594f42a7183f82deedadba"},
            "systemTags": [], "userTags": ["u1"], "timeout": 1800000}}"#;
        let r = decode_request(body).unwrap();
        assert_eq!(r.class, "org.zstack.header.zone.APICreateZoneMsg");
        assert_eq!(r.short_name(), "CreateZone");
        assert_eq!(
            r.session_uuid.as_deref(),
            Some("b15610a241594f42a7183f82deedadba")
        );
        assert_eq!(r.user_tags, vec!["u1"]);
        assert_eq!(r.timeout_ms, Some(1_800_000));
        assert_eq!(r.body["name"], "zone1");
    }

    #[test]
    fn refuses_bad_bodies_with_plain_text() {
        assert!(matches!(
            decode_request(b"{"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode_request(b"[]"), Err(DecodeError::Shape(_))));
        assert!(matches!(decode_request(b"{}"), Err(DecodeError::Shape(_))));
        assert!(matches!(
            decode_request(br#"{"a.B": 3}"#),
            Err(DecodeError::Shape(_))
        ));
        assert!(matches!(
            decode_request(br#"{"a b": {}}"#),
            Err(DecodeError::Shape(_))
        ));
        let e = decode_request(br#"{"a.B": {"systemTags": "x"}}"#).unwrap_err();
        assert!(
            e.to_string().contains("field[systemTags] of message[a.B]"),
            "{e}"
        );
        assert!(decode_request(br#"{"a.B": {"session": "x"}}"#).is_err());
        assert!(decode_request(br#"{"a.B": {"timeout": -1}}"#).is_err());
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            decode_request(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn result_is_compact_ordered_and_html_escaped() {
        let mut inv = Map::new();
        inv.insert("uuid".into(), json!("f52f"));
        inv.insert("name".into(), json!("a<b>&c='d'"));
        inv.insert("isDefault".into(), json!(false));
        let mut fields = Map::new();
        fields.insert("inventory".into(), Value::Object(inv));
        let r = encode_result(
            "org.zstack.header.zone.APICreateZoneEvent",
            &success(fields),
        );
        assert_eq!(
            r,
            r#"{"org.zstack.header.zone.APICreateZoneEvent":{"inventory":{"uuid":"f52f","name":"a\u003cb\u003e\u0026c\u003d\u0027d\u0027","isDefault":false},"success":true}}"#
        );
        // Two parses give the original text back, as with ZStack.
        let outer = RestApiResponse::sync(0, r).to_body();
        let once: Value = serde_json::from_str(&outer).unwrap();
        let twice: Value = serde_json::from_str(once["result"].as_str().unwrap()).unwrap();
        assert_eq!(
            twice["org.zstack.header.zone.APICreateZoneEvent"]["inventory"]["name"],
            "a<b>&c='d'"
        );
        assert_eq!(&outer[..16], r#"{"state":"Done","#);
    }

    #[test]
    fn failure_and_accepted_shapes() {
        let f = encode_result(
            GENERIC_REPLY,
            &failure(&ErrorCode::new(Code::InvalidSession, "Session expired")),
        );
        assert!(f.starts_with(r#"{"org.zstack.header.message.APIReply":{"success":false,"error":{"code":"ID.1001""#), "{f}");
        let a = RestApiResponse::accepted("d0345d3ddcae485f8170572b15a2b581", 1_795_593_714_000)
            .to_body();
        assert_eq!(
            a,
            r#"{"uuid":"d0345d3ddcae485f8170572b15a2b581","state":"Processing","createdDate":"Nov 25, 2026 8:01:54 AM"}"#
        );
    }
}
