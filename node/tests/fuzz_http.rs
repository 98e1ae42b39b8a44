//! Node-level fuzzing of the HTTP API: ZStack RPC envelopes (`/zstack/api`: wrong first key,
//! nested garbage, each parameter of every implemented call set to a wrong type, a huge string,
//! odd unicode or an out-of-range number, damaged JSON text), the REST v1 routes (broken path
//! variables, query strings, bodies, `Authorization` and `X-Job-UUID` headers, other methods),
//! and the node's own routes (`/cluster/*` bodies and path ids, `/kv/*` keys, values and
//! `X-Request-Id`, query strings, unknown paths and methods).
//!
//! What must hold: no panic, Raft still running, `/health/live` 200, and for refused input the
//! protocol's error shape and no change in state:
//! - ZStack RPC: HTTP 200 with either the exception text (undecodable, as ZStack) or a reply with
//!   `success: false` and an error object with code, description and details;
//! - REST v1: a non-empty 4xx (ZStack's plain-text refusals before the API, spec 06 §3), 500
//!   with Gson's `JsonSyntaxException` text for a body that is not a JSON object (as ZStack), or
//!   503 with `{"error": {code, description, details}}`, ZStack's status for a refused call;
//! - node routes: a 4xx with `{"error": {code, description, details}, "served_by"}`.
//!
//! No answer may be any other 5xx, and no error may be SYS.1000 (internal) or SYS.1012 (management
//! node unavailable): the fixture node is a ready leader. SYS.1006 is ZStack's operation failure,
//! a business refusal like deleting a host that is not in Maintenance, and is fine.

mod fuzz;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use fuzz::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The one place a fuzz test builds a request to the node's own admin routes (`/cluster/*`,
/// `/kv/*`): their credential goes here.
fn node_api_request(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    c.request(method, url)
        .header("Authorization", format!("Bearer {}", fuzz::ADMIN_TOKEN))
}

/// Values that break parameter decoders: wrong JSON types, extremes, odd unicode, nesting.
fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(1.5)),
            Just(json!(-0.0)),
            Just(json!(1e308)),
            Just(json!(4294967296u64)),
            Just(json!(65536)),
        ],
        ".{0,16}".prop_map(Value::String),
        prop_oneof![
            Just(""),
            Just(" "),
            Just("\\u{0}nul"),
            Just("\u{0}"),
            Just("💥🦀"),
            Just("\u{202e}rtl"),
            Just("a\u{301}\u{301}\u{301}"),
            Just("%"),
            Just("%00"),
            Just("' or 1=1 --"),
            Just("../../etc/passwd"),
            Just("1.2.3.4"),
            Just("999.1.1.1"),
            Just("10.0.0.0/33"),
            Just("-1"),
            Just("18446744073709551616"),
            Just("true"),
            Just("null"),
            Just("Enabled"),
            Just("enable"),
            Just("KVM"),
            Just("0123456789abcdef0123456789abcdef"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        (1usize..6, "[a-z💥]").prop_map(|(k, c)| Value::String(c.repeat(k * 5000))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{0,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A plausible value of a declared parameter type.
fn plausible(
    ty: api::catalogue::ParamType,
    allowed: Option<&Vec<String>>,
    pick: usize,
) -> serde_json::Value {
    use api::catalogue::ParamType;
    use serde_json::json;
    if let Some(a) = allowed.filter(|a| !a.is_empty()) {
        return json!(a[pick % a.len()]);
    }
    match ty {
        ParamType::String => json!(format!("fuzz-{pick}")),
        ParamType::Integer => json!(pick % 4096),
        ParamType::Boolean => json!(pick.is_multiple_of(2)),
        ParamType::Array => json!([]),
        ParamType::Object => json!({}),
    }
}

/// Calls that the API implements (every routed call), by name.
fn implemented() -> Vec<&'static api::catalogue::CallSpec> {
    let mut names: Vec<&str> = api::rest::routes().iter().map(|r| r.call).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| api::catalogue::catalogue().by_name(n))
        // Logging the fixture's own session out would turn every later case into a session
        // refusal and test nothing deeper.
        .filter(|c| !c.name.starts_with("LogOut"))
        .collect()
}

/// Body fields of a call: plausible values for the declared parameters, then `edits` applied
/// (a parameter set to a hostile value, or removed), with uuids of real resources mixed in.
fn fields(
    spec: &api::catalogue::CallSpec,
    pick: usize,
    edits: &[(usize, Option<serde_json::Value>)],
    uuids: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (i, p) in spec.params.iter().enumerate() {
        if p.name == "session" || p.name == "conditions" {
            continue;
        }
        let mut v = plausible(p.ty, p.allowed.as_ref(), pick.wrapping_add(i));
        if p.name.to_ascii_lowercase().ends_with("uuid") && !uuids.is_empty() {
            v = serde_json::json!(uuids[pick.wrapping_add(i) % uuids.len()]);
        }
        if p.required || (pick >> (i % 16)) & 1 == 1 {
            m.insert(p.name.clone(), v);
        }
    }
    if spec.is_query() {
        m.insert("conditions".into(), serde_json::json!([]));
    }
    let names: Vec<String> = spec.params.iter().map(|p| p.name.clone()).collect();
    for (at, edit) in edits {
        let name = if names.is_empty() || at % 5 == 0 {
            // An undeclared field.
            format!("x{}", at % 7)
        } else {
            names[at % names.len()].clone()
        };
        match edit {
            Some(v) => {
                m.insert(name, v.clone());
            }
            None => {
                m.remove(&name);
            }
        }
    }
    m
}

/// Text-level damage to a JSON document.
#[derive(Debug, Clone)]
enum TextMutation {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, String),
    DeepNesting(usize),
    Raw(Vec<u8>),
}

fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        6 => Just(TextMutation::None),
        1 => any::<usize>().prop_map(TextMutation::Truncate),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(a, b)| TextMutation::Flip(a, b)),
        1 => (
            any::<usize>(),
            prop_oneof![
                Just(r#""\ud800""#.to_string()),
                Just(",".to_string()),
                Just(r#"{"a":1,"a":2}"#.to_string()),
                Just("1e999".to_string()),
                Just("-".to_string()),
                Just("\u{0}".to_string()),
                Just("\"".to_string()),
                "[{}\\[\\]\",:0-9a-z]{0,8}",
            ]
        )
            .prop_map(|(a, s)| TextMutation::Insert(a, s)),
        1 => (100usize..3000).prop_map(TextMutation::DeepNesting),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(TextMutation::Raw),
    ]
}

fn damage(text: Vec<u8>, m: &TextMutation) -> Vec<u8> {
    let mut v = text;
    match m {
        TextMutation::None => {}
        TextMutation::Truncate(at) => v.truncate(at % v.len().max(1)),
        TextMutation::Flip(at, mask) => {
            if !v.is_empty() {
                let i = at % v.len();
                v[i] ^= mask;
            }
        }
        TextMutation::Insert(at, s) => {
            let at = at % (v.len() + 1);
            v.splice(at..at, s.bytes());
        }
        TextMutation::DeepNesting(depth) => {
            let mut deep = "[".repeat(*depth).into_bytes();
            deep.extend_from_slice(&"]".repeat(*depth).into_bytes());
            // Replace the innermost object's end with the nested arrays.
            match v.iter().rposition(|b| *b == b'}') {
                Some(i) if i > 0 => {
                    let mut ins = b",\"deep\":".to_vec();
                    ins.extend_from_slice(&deep);
                    v.splice(i..i, ins);
                }
                _ => v = deep,
            }
        }
        TextMutation::Raw(r) => v = r.clone(),
    }
    v
}

#[derive(Debug, Clone)]
enum SessionCase {
    Admin,
    Missing,
    Random(String),
    WrongType(serde_json::Value),
}

fn session_case() -> impl Strategy<Value = SessionCase> {
    prop_oneof![
        6 => Just(SessionCase::Admin),
        1 => Just(SessionCase::Missing),
        1 => "[0-9a-f]{32}|.{0,40}".prop_map(SessionCase::Random),
        1 => hostile_value().prop_map(SessionCase::WrongType),
    ]
}

/// One ZStack RPC request.
#[derive(Debug, Clone)]
struct RpcCase {
    /// Index into the implemented calls; `None`: another class (first key).
    call: Option<usize>,
    other_class: String,
    pick: usize,
    edits: Vec<(usize, Option<serde_json::Value>)>,
    /// The message is this instead of an object of fields.
    not_object: Option<serde_json::Value>,
    session: SessionCase,
    extra_top_keys: Vec<(String, serde_json::Value)>,
    text: TextMutation,
    put: bool,
    job_uuid: Option<String>,
}

fn edits() -> impl Strategy<Value = Vec<(usize, Option<serde_json::Value>)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            proptest::option::weighted(0.85, hostile_value()),
        ),
        0..4,
    )
}

fn rpc_case(n_calls: usize) -> impl Strategy<Value = RpcCase> {
    (
        proptest::option::weighted(0.85, 0..n_calls),
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z.]{0,40}",
            Just("org.zstack.header.vm.APICreateVmInstanceMsg".to_string()),
            Just("org.zstack.header.zone.APICreateZoneMsgX".to_string()),
        ],
        any::<usize>(),
        edits(),
        proptest::option::weighted(0.08, hostile_value()),
        session_case(),
        prop::collection::vec(("[a-zA-Z.]{0,12}", hostile_value()), 0..2),
        text_mutation(),
        any::<bool>(),
        proptest::option::weighted(0.1, "[0-9a-f]{32}|.{0,40}"),
    )
        .prop_map(
            |(
                call,
                other_class,
                pick,
                edits,
                not_object,
                session,
                extra_top_keys,
                text,
                put,
                job_uuid,
            )| {
                RpcCase {
                    call,
                    other_class,
                    pick,
                    edits,
                    not_object,
                    session,
                    extra_top_keys,
                    text,
                    put,
                    job_uuid,
                }
            },
        )
}

/// A fixture node for the HTTP targets: admin session and a few real resources.
struct HttpFixture {
    n: TestNode,
    session: String,
    uuids: Vec<String>,
    calls: Vec<&'static api::catalogue::CallSpec>,
    c: reqwest::Client,
}

async fn http_fixture() -> HttpFixture {
    let n = start_node("fuzz-http").await;
    let c = http_client();
    let session = login(&c, &n.http_addr).await.expect("admin session");
    let mut f = HttpFixture {
        n,
        session,
        uuids: vec![],
        calls: implemented(),
        c,
    };
    // A zone and a cluster in it, so uuid parameters sometimes name real resources and calls
    // get past "not found" into their deeper checks.
    for (path, params) in [("/zstack/v1/zones", serde_json::json!({"name": "fz"}))] {
        let (status, v) = f.rest_create(path, params).await;
        assert_eq!(status, 200, "{v}");
        f.uuids
            .push(v["inventory"]["uuid"].as_str().expect("uuid").to_string());
    }
    let zone = f.uuids[0].clone();
    let (status, v) = f
        .rest_create(
            "/zstack/v1/clusters",
            serde_json::json!({"name": "fc", "zoneUuid": zone, "hypervisorType": "KVM"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    f.uuids
        .push(v["inventory"]["uuid"].as_str().expect("uuid").to_string());
    f
}

impl HttpFixture {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.n.http_addr)
    }

    async fn rest_create(&self, path: &str, params: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .c
            .post(self.url(path))
            .header("Authorization", format!("OAuth {}", self.session))
            .json(&serde_json::json!({ "params": params }))
            .send()
            .await
            .expect("create");
        let (status, v) = (r.status().as_u16(), r.json().await.unwrap_or_default());
        if status != 202 {
            return (status, v);
        }
        self.poll_rest(v["location"].as_str().unwrap_or_default())
            .await
    }

    /// Follow a REST job to its end.
    async fn poll_rest(&self, location: &str) -> (u16, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.c.get(location).send().await {
                let status = r.status().as_u16();
                if status != 202 {
                    return (status, r.json().await.unwrap_or_default());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("REST job {location} did not finish");
    }

    /// Follow an RPC job to its end; the finished `result` object.
    async fn poll_rpc(&self, uuid: &str) -> Result<serde_json::Value, TestCaseError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let r = self
                .c
                .get(self.url(&format!("/zstack/api/result/{uuid}")))
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("poll {uuid}: {e}")))?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            prop_assert_eq!(status, 200, "poll of job {}: {}", uuid, text);
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("poll {uuid}: {e}: {text}")))?;
            if v["state"] == "Done" {
                return result_object(&v);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(TestCaseError::fail(format!(
            "RPC job {uuid} did not finish"
        )))
    }

    /// What a refused HTTP input must leave unchanged. On top of the audit bookkeeping, the
    /// job table is left out: an async call accepted as a job whose flow then fails is counted
    /// as refused here (its polled result is an error), and its failed job record is the
    /// result the client polls (spec 06 §1.6). A call refused before its job exists writes none.
    fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.n, &[api::job::TABLE])
    }
}

/// The reply object inside a finished RPC answer (`{"state":"Done","result":"{\"<class>\":{..}}"}`).
fn result_object(v: &serde_json::Value) -> Result<serde_json::Value, TestCaseError> {
    let text = v["result"]
        .as_str()
        .ok_or_else(|| TestCaseError::fail(format!("no result in {v}")))?;
    let r: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("result is not JSON ({e}): {text}")))?;
    let obj = r
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| TestCaseError::fail(format!("result is not {{class: reply}}: {r}")))?;
    Ok(obj.values().next().cloned().unwrap_or_default())
}

impl HttpTally {
    fn code(&mut self, e: &serde_json::Value) {
        let code = e["code"].as_str().unwrap_or("(none)").to_string();
        *self.codes.entry(code).or_default() += 1;
    }
}

/// A ZStack error object: code, description and details, and not an internal error.
fn check_error_object(what: &str, e: &serde_json::Value) -> Result<(), TestCaseError> {
    for k in ["code", "description", "details"] {
        prop_assert!(e[k].is_string(), "{}: error without {}: {}", what, k, e);
    }
    let code = e["code"].as_str().unwrap_or_default();
    prop_assert!(!code.is_empty(), "{}: empty error code: {}", what, e);
    // SYS.1000 is "an internal error happened", SYS.1012 "management node unavailable": neither
    // is a refusal of the input, and the fixture node is a ready leader. (SYS.1006, operation
    // failure, is a state refusal such as deleting a Connected host: a valid answer.)
    prop_assert!(
        code != "SYS.1000" && code != "SYS.1012",
        "{}: refused as {}: {}",
        what,
        code,
        e
    );
    Ok(())
}

fn rpc_body(f: &HttpFixture, case: &RpcCase) -> Vec<u8> {
    use serde_json::json;
    let (class, spec) = match case.call {
        Some(i) => (f.calls[i].class.clone(), Some(f.calls[i])),
        None => (case.other_class.clone(), None),
    };
    let mut inner = match (&case.not_object, spec) {
        (Some(v), _) => v.clone(),
        (None, Some(spec)) => {
            serde_json::Value::Object(fields(spec, case.pick, &case.edits, &f.uuids))
        }
        (None, None) => serde_json::Value::Object(fields(
            f.calls[case.pick % f.calls.len()],
            case.pick,
            &case.edits,
            &f.uuids,
        )),
    };
    if let Some(obj) = inner.as_object_mut() {
        match &case.session {
            SessionCase::Admin => {
                obj.insert("session".into(), json!({"uuid": f.session}));
            }
            SessionCase::Missing => {}
            SessionCase::Random(s) => {
                obj.insert("session".into(), json!({"uuid": s}));
            }
            SessionCase::WrongType(v) => {
                obj.insert("session".into(), v.clone());
            }
        }
    }
    let mut top = serde_json::Map::new();
    top.insert(class, inner);
    for (k, v) in &case.extra_top_keys {
        top.insert(k.clone(), v.clone());
    }
    damage(
        serde_json::to_vec(&serde_json::Value::Object(top)).unwrap_or_default(),
        &case.text,
    )
}

#[derive(Default, Debug)]
struct HttpTally {
    refused: u64,
    accepted: u64,
    statuses: BTreeMap<u16, u64>,
    codes: BTreeMap<String, u64>,
}

impl HttpTally {
    fn line(&self, target: &str, cases: u32, started: Instant) -> String {
        format!(
            "fuzz: target={target} cases={cases} crashes={} refused={} accepted={} statuses={:?} error_codes={:?} elapsed_ms={}",
            PANICS.load(Ordering::SeqCst),
            self.refused,
            self.accepted,
            self.statuses,
            self.codes,
            started.elapsed().as_millis()
        )
    }
}

/// After a refused input: nothing changed, the node is live and did not panic.
async fn after_refusal(
    f: &HttpFixture,
    before: &Fingerprint,
    what: &str,
) -> Result<(), TestCaseError> {
    assert_no_panic(what)?;
    // A refused write's audit record travels through Raft; let it land before comparing.
    let after = f.fingerprint();
    if after != *before {
        return Err(TestCaseError::fail(format!(
            "{what}: refused input changed the state: {}",
            diff(before, &after)
        )));
    }
    assert_live(&f.c, &f.n, what).await
}

async fn run_rpc_case(
    f: &HttpFixture,
    case: &RpcCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    let body = rpc_body(f, case);
    let mut req = if case.put {
        f.c.put(f.url("/zstack/api"))
    } else {
        f.c.post(f.url("/zstack/api"))
    };
    if let Some(j) = &case.job_uuid {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(j) {
            req = req.header("X-Job-UUID", v);
        }
    }
    let r = req
        .body(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("RPC call failed: {e}")))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "RPC {status} {}",
        &text.chars().take(300).collect::<String>()
    );
    // ZStack answers every processed or undecodable call with 200; 413 is the size limit.
    prop_assert!(status == 200 || status == 413, "{}", what);
    let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let reply = match v {
        // Undecodable: the exception text, as ZStack does.
        None => {
            prop_assert!(!text.trim().is_empty(), "{}: empty answer", what);
            None
        }
        Some(v) if v["state"] == "Done" => Some(result_object(&v)?),
        Some(v) if v["state"] == "Processing" => {
            let uuid = v["uuid"].as_str().unwrap_or_default().to_string();
            Some(f.poll_rpc(&uuid).await?)
        }
        Some(v) => return Err(TestCaseError::fail(format!("{what}: unknown answer {v}"))),
    };
    match reply {
        Some(r) if r["success"] == true => {
            tally.accepted += 1;
            assert_no_panic(&what)?;
            assert_live(&f.c, &f.n, &what).await?;
            *before = f.fingerprint();
        }
        Some(r) => {
            tally.refused += 1;
            prop_assert!(
                r["success"] == false,
                "{}: reply without success: {}",
                what,
                r
            );
            tally.code(&r["error"]);
            check_error_object(&what, &r["error"])?;
            after_refusal(f, before, &what).await?;
        }
        None => {
            tally.refused += 1;
            after_refusal(f, before, &what).await?;
        }
    }
    Ok(())
}

/// A path segment as a generator makes it: a real uuid, a hostile string (percent-encoded) or
/// raw text put into the URL as it is.
#[derive(Debug, Clone)]
enum Segment {
    Real(usize),
    Encoded(String),
    Raw(&'static str),
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => any::<usize>().prop_map(Segment::Real),
        3 => prop_oneof![".{0,40}", "[0-9a-f]{32}", Just(String::new()), "💥{1,3}"].prop_map(Segment::Encoded),
        1 => prop_oneof![
            Just("%zz"),
            Just("%FF%FE"),
            Just("%00"),
            Just(".."),
            Just("."),
            Just("a/b"),
            Just("%2F"),
            Just(";x=1"),
            Just("~"),
        ]
        .prop_map(Segment::Raw),
    ]
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment_text(f: &HttpFixture, s: &Segment) -> String {
    match s {
        Segment::Real(i) => f.uuids[i % f.uuids.len()].clone(),
        Segment::Encoded(t) => encode_segment(t),
        Segment::Raw(t) => t.to_string(),
    }
}

fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("q".to_string()),
        Just("".to_string()),
        Just("limit".to_string()),
        Just("start".to_string()),
        Just("count".to_string()),
        Just("replyWithCount".to_string()),
        Just("sort".to_string()),
        Just("fields".to_string()),
        Just("groupBy".to_string()),
        Just("filterName".to_string()),
        Just("consistency".to_string()),
        Just("deleteMode".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    let value = prop_oneof![
        ".{0,24}",
        Just("name=fz".to_string()),
        Just("uuid?=a,b".to_string()),
        Just("name~=%f%".to_string()),
        Just("name!?=".to_string()),
        Just("name".to_string()),
        Just("zoneUuid=".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("+name".to_string()),
        Just("-".to_string()),
        Just("true".to_string()),
        Just("yes".to_string()),
        Just("stale".to_string()),
        Just("Permissive".to_string()),
        Just(",,,".to_string()),
    ];
    let pair = (key, value).prop_map(|(k, v)| {
        let k: String = form_urlencoded::byte_serialize(k.as_bytes()).collect();
        let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
        format!("{k}={v}")
    });
    let raw = prop_oneof![
        Just("%zz".to_string()),
        Just("&&".to_string()),
        Just("=".to_string()),
        Just("q".to_string()),
        Just("q=%FF".to_string()),
        Just("limit=1&limit=x".to_string()),
        Just("consistency=stale&consistency=linearizable".to_string()),
    ];
    prop::collection::vec(prop_oneof![4 => pair, 1 => raw], 0..4).prop_map(|v| v.join("&"))
}

#[derive(Debug, Clone)]
enum AuthCase {
    Admin,
    Missing,
    OAuth(String),
    Header(Vec<u8>),
}

fn auth_case() -> impl Strategy<Value = AuthCase> {
    prop_oneof![
        6 => Just(AuthCase::Admin),
        1 => Just(AuthCase::Missing),
        1 => ".{0,40}".prop_map(AuthCase::OAuth),
        1 => prop_oneof![
            Just(b"Bearer x".to_vec()),
            Just(b"OAuth".to_vec()),
            Just(b"OAuth ".to_vec()),
            Just(b"oauth abc".to_vec()),
            Just(b"ZStack a:b".to_vec()),
            Just(b"".to_vec()),
            prop::collection::vec(0x20u8..=0xff, 0..40),
        ]
        .prop_map(AuthCase::Header),
    ]
}

#[derive(Debug, Clone)]
enum RestBody {
    Fields {
        pick: usize,
        edits: Vec<(usize, Option<serde_json::Value>)>,
        wrapper: Option<String>,
    },
    Value(serde_json::Value),
    Empty,
}

#[derive(Debug, Clone)]
struct RestCase {
    route: usize,
    method: Option<&'static str>,
    vars: Vec<Segment>,
    extra_segment: Option<Segment>,
    query: String,
    body: RestBody,
    text: TextMutation,
    auth: AuthCase,
    job_uuid: Option<String>,
    stale: bool,
}

fn rest_case() -> impl Strategy<Value = RestCase> {
    (
        any::<usize>(),
        proptest::option::weighted(
            0.1,
            prop_oneof![
                Just("GET"),
                Just("POST"),
                Just("PUT"),
                Just("DELETE"),
                Just("PATCH"),
                Just("HEAD"),
                Just("OPTIONS"),
                Just("FUZZ"),
            ],
        ),
        prop::collection::vec(segment(), 3),
        proptest::option::weighted(0.05, segment()),
        query_string(),
        prop_oneof![
            6 => (
                any::<usize>(),
                edits(),
                proptest::option::weighted(0.1, "[a-zA-Z]{0,12}"),
            )
                .prop_map(|(pick, edits, wrapper)| RestBody::Fields { pick, edits, wrapper }),
            1 => hostile_value().prop_map(RestBody::Value),
            1 => Just(RestBody::Empty),
        ],
        text_mutation(),
        auth_case(),
        proptest::option::weighted(0.1, "[0-9a-f]{32}|.{0,40}"),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(route, method, vars, extra_segment, query, body, text, auth, job_uuid, stale)| {
                RestCase {
                    route,
                    method,
                    vars,
                    extra_segment,
                    query,
                    body,
                    text,
                    auth,
                    job_uuid,
                    stale,
                }
            },
        )
}

fn method_name(m: api::rest::Method) -> &'static str {
    match m {
        api::rest::Method::Get => "GET",
        api::rest::Method::Post => "POST",
        api::rest::Method::Put => "PUT",
        api::rest::Method::Delete => "DELETE",
    }
}

async fn run_rest_case(
    f: &HttpFixture,
    case: &RestCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    use serde_json::json;
    let routes = api::rest::routes();
    let route = &routes[case.route % routes.len()];
    let spec = api::catalogue::catalogue().by_name(route.call);
    let mut vars = case.vars.iter();
    let mut path = String::from("/zstack");
    for part in route.path.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        if part.starts_with('{') {
            let seg = vars.next().cloned().unwrap_or(Segment::Real(0));
            path.push_str(&segment_text(f, &seg));
        } else {
            path.push_str(part);
        }
    }
    if let Some(extra) = &case.extra_segment {
        path.push('/');
        path.push_str(&segment_text(f, extra));
    }
    let mut url = f.url(&path);
    if !case.query.is_empty() {
        url.push('?');
        url.push_str(&case.query);
    }
    let body = match (&case.body, spec) {
        (RestBody::Empty, _) => vec![],
        (RestBody::Value(v), _) => serde_json::to_vec(v).unwrap_or_default(),
        (
            RestBody::Fields {
                pick,
                edits,
                wrapper,
            },
            Some(spec),
        ) => {
            let fields = serde_json::Value::Object(fields(spec, *pick, edits, &f.uuids));
            let key = match (wrapper, route.body) {
                (Some(w), _) => w.clone(),
                (None, api::rest::Body::Params) => "params".to_string(),
                (None, _) => api::rest::action_name(route.call),
            };
            serde_json::to_vec(&json!({ key: fields })).unwrap_or_default()
        }
        (RestBody::Fields { .. }, None) => vec![],
    };
    let body = damage(body, &case.text);
    let method_text = case.method.unwrap_or(method_name(route.method));
    let method = reqwest::Method::from_bytes(method_text.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("method {method_text}: {e}")))?;
    let mut req = f.c.request(method, &url).body(body);
    match &case.auth {
        AuthCase::Admin => req = req.header("Authorization", format!("OAuth {}", f.session)),
        AuthCase::Missing => {}
        AuthCase::OAuth(s) => {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("OAuth {s}")) {
                req = req.header("Authorization", v);
            }
        }
        AuthCase::Header(b) => {
            if let Ok(v) = reqwest::header::HeaderValue::from_bytes(b) {
                req = req.header("Authorization", v);
            }
        }
    }
    if let Some(j) = &case.job_uuid {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(j) {
            req = req.header("X-Job-UUID", v);
        }
    }
    if case.stale {
        req = req.header("X-ZStack-Consistency", "stale");
    }
    let r = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("REST {method_text} {url}: {e}")))?;
    let mut status = r.status().as_u16();
    let mut text = r.text().await.unwrap_or_default();
    if status == 202 {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(location) = v["location"].as_str() {
            let (s, v) = f.poll_rest(location).await;
            status = s;
            text = v.to_string();
        }
    }
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "REST {method_text} {url} -> {status} {}",
        text.chars().take(300).collect::<String>()
    );
    match status {
        200..=299 => {
            tally.accepted += 1;
            assert_no_panic(&what)?;
            assert_live(&f.c, &f.n, &what).await?;
            *before = f.fingerprint();
            return Ok(());
        }
        // ZStack's REST refusal of a processed call: `{"error": {...}}`.
        503 => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("{what}: 503 body is not JSON: {e}")))?;
            tally.code(&v["error"]);
            check_error_object(&what, &v["error"])?;
        }
        // Refused before the API: plain text (spec 06 §3) or a JSON error, never empty.
        400..=499 => {
            // (A HEAD answer has no body by definition.)
            prop_assert!(
                method_text == "HEAD" || !text.trim().is_empty(),
                "{}: empty refusal",
                what
            );
        }
        // ZStack's answer to a REST body that is not a JSON object: its Gson throws before
        // anything else is checked and the REST server answers 500 with the exception message
        // (spec 06 §3); the node answers the same, naming Gson's exception.
        500 if text.starts_with("com.google.gson.JsonSyntaxException") => {}
        _ => return Err(TestCaseError::fail(format!("{what}: unexpected status"))),
    }
    tally.refused += 1;
    after_refusal(f, before, &what).await
}

/// One request to the node's own routes.
#[derive(Debug, Clone)]
enum NodeCase {
    AddMember(serde_json::Value, TextMutation),
    RemoveMember(Segment),
    Transfer(serde_json::Value, TextMutation),
    Init(Vec<u8>),
    ManagementNodes(String),
    Status(String),
    KvPut {
        key: Segment,
        body: Vec<u8>,
        big: bool,
        rid: Option<Vec<u8>>,
    },
    KvDelete(Segment, Option<Vec<u8>>),
    KvGet(Segment, String),
    SelfTest(serde_json::Value),
    Other(&'static str, Segment),
}

fn add_member_body() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        (hostile_value(), hostile_value(), hostile_value())
            .prop_map(|(id, r, a)| json!({"id": id, "raft_addr": r, "api_addr": a})),
        (any::<u64>(), ".{0,30}", ".{0,30}")
            .prop_map(|(id, r, a)| json!({"id": id, "raft_addr": r, "api_addr": a})),
        hostile_value(),
    ]
}

fn rid() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::weighted(
        0.5,
        prop_oneof![
            "[a-z0-9-]{1,40}".prop_map(String::into_bytes),
            Just(vec![]),
            Just(vec![b'r'; 201]),
            Just(vec![b'r'; 200]),
            prop::collection::vec(0x20u8..=0xff, 1..40),
        ],
    )
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    use serde_json::json;
    prop_oneof![
        2 => (add_member_body(), text_mutation()).prop_map(|(b, t)| NodeCase::AddMember(b, t)),
        1 => segment().prop_map(NodeCase::RemoveMember),
        2 => (
            prop_oneof![
                hostile_value().prop_map(|v| json!({ "to": v })),
                any::<u64>().prop_map(|v| json!({ "to": v })),
                hostile_value(),
            ],
            text_mutation()
        )
            .prop_map(|(b, t)| NodeCase::Transfer(b, t)),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(NodeCase::Init),
        1 => query_string().prop_map(NodeCase::ManagementNodes),
        1 => query_string().prop_map(NodeCase::Status),
        4 => (segment(), prop::collection::vec(any::<u8>(), 0..256), proptest::bool::weighted(0.01), rid())
            .prop_map(|(key, body, big, rid)| NodeCase::KvPut { key, body, big, rid }),
        1 => (segment(), rid()).prop_map(|(k, r)| NodeCase::KvDelete(k, r)),
        2 => (segment(), query_string()).prop_map(|(k, q)| NodeCase::KvGet(k, q)),
        1 => hostile_value().prop_map(NodeCase::SelfTest),
        1 => (
            prop_oneof![
                Just("PATCH /kv/"),
                Just("POST /kv/"),
                Just("GET /cluster/members/"),
                Just("PUT /cluster/init/"),
                Just("DELETE /cluster/"),
                Just("GET /health/"),
                Just("FUZZ /kv/"),
                Just("GET /nope/"),
            ],
            segment()
        )
            .prop_map(|(m, s)| NodeCase::Other(m, s)),
    ]
}

/// An add-member body that would really add a (non-existent) node, which then holds the admin
/// lock for its 30 s catch-up: made invalid by id 0, the case the generator wanted to reach.
fn defuse_add(v: serde_json::Value) -> serde_json::Value {
    let parsed: Option<proto::http::AddMemberRequest> = serde_json::from_value(v.clone()).ok();
    match parsed {
        Some(a)
            if a.id != 0
                && node::config::validate_host_port(&a.raft_addr).is_ok()
                && node::config::validate_host_port(&a.api_addr).is_ok() =>
        {
            serde_json::json!({"id": 0, "raft_addr": a.raft_addr, "api_addr": a.api_addr})
        }
        _ => v,
    }
}

async fn run_node_case(
    f: &HttpFixture,
    case: &NodeCase,
    before: &mut Fingerprint,
    tally: &mut HttpTally,
) -> Result<(), TestCaseError> {
    use reqwest::Method;
    let json = |v: &serde_json::Value, t: &TextMutation| {
        damage(serde_json::to_vec(v).unwrap_or_default(), t)
    };
    let (method, path, body, rid): (Method, String, Vec<u8>, Option<Vec<u8>>) = match case {
        NodeCase::AddMember(v, t) => {
            let mut b = json(&defuse_add(v.clone()), t);
            // Damage may turn the body into a valid request again.
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                b = serde_json::to_vec(&defuse_add(v)).unwrap_or_default();
            }
            (Method::POST, "/cluster/members".into(), b, None)
        }
        NodeCase::RemoveMember(s) => {
            let mut seg = segment_text(f, s);
            if seg.trim_start_matches('0').trim_start_matches('+') == "1" {
                seg = "0".into();
            }
            (
                Method::DELETE,
                format!("/cluster/members/{seg}"),
                vec![],
                None,
            )
        }
        NodeCase::Transfer(v, t) => (
            Method::POST,
            "/cluster/leader/transfer".into(),
            json(v, t),
            None,
        ),
        NodeCase::Init(b) => (Method::POST, "/cluster/init".into(), b.clone(), None),
        NodeCase::ManagementNodes(q) => (
            Method::GET,
            format!("/cluster/management-nodes?{q}"),
            vec![],
            None,
        ),
        NodeCase::Status(q) => (Method::GET, format!("/cluster/status?{q}"), vec![], None),
        NodeCase::KvPut {
            key,
            body,
            big,
            rid,
        } => {
            let body = if *big {
                vec![b'v'; (2 << 20) + 1]
            } else {
                body.clone()
            };
            (
                Method::PUT,
                format!("/kv/{}", segment_text(f, key)),
                body,
                rid.clone(),
            )
        }
        NodeCase::KvDelete(key, rid) => (
            Method::DELETE,
            format!("/kv/{}", segment_text(f, key)),
            vec![],
            rid.clone(),
        ),
        NodeCase::KvGet(key, q) => (
            Method::GET,
            format!("/kv/{}?{q}", segment_text(f, key)),
            vec![],
            None,
        ),
        NodeCase::SelfTest(v) => (
            Method::POST,
            "/cluster/flow-selftest".into(),
            json(v, &TextMutation::None),
            None,
        ),
        NodeCase::Other(mp, s) => {
            let (m, p) = mp.split_once(' ').unwrap_or(("GET", "/"));
            let m = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
            (m, format!("{p}{}", segment_text(f, s)), vec![], None)
        }
    };
    let url = f.url(&path);
    let mut req = node_api_request(&f.c, method.clone(), &url).body(body);
    if let Some(r) = rid.and_then(|r| reqwest::header::HeaderValue::from_bytes(&r).ok()) {
        req = req.header("X-Request-Id", r);
    }
    let r = req
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{method} {url}: {e}")))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    *tally.statuses.entry(status).or_default() += 1;
    let what = format!(
        "{method} {url} -> {status} {}",
        text.chars().take(300).collect::<String>()
    );
    prop_assert!(status < 500, "{}", what);
    if (200..300).contains(&status) {
        tally.accepted += 1;
        assert_no_panic(&what)?;
        assert_live(&f.c, &f.n, &what).await?;
        *before = f.fingerprint();
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{what}: error body is not JSON: {e}")))?;
    tally.code(&v["error"]);
    check_error_object(&what, &v["error"])?;
    prop_assert!(v["served_by"].is_u64(), "{}: no served_by", what);
    tally.refused += 1;
    after_refusal(f, before, &what).await
}

#[test]
fn http_decoders_refuse_malformed_input() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(http_fixture());
    let before = std::cell::RefCell::new(f.fingerprint());

    // ZStack RPC envelopes.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&rpc_case(f.calls.len()), |case| {
        rt.block_on(run_rpc_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_zstack_rpc", n, started));
    if let Err(e) = r {
        panic!("ZStack RPC fuzzing failed: {e}");
    }

    // REST v1: every route, with broken paths, query strings, bodies and headers.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&rest_case(), |case| {
        rt.block_on(run_rest_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_rest", n, started));
    if let Err(e) = r {
        panic!("REST fuzzing failed: {e}");
    }

    // The node's own routes: /cluster/*, /kv/*, health, unknown paths and methods.
    let started = Instant::now();
    let tally = std::cell::RefCell::new(HttpTally::default());
    let n = cases(300);
    let r = runner(n).run(&node_case(), |case| {
        rt.block_on(run_node_case(
            &f,
            &case,
            &mut before.borrow_mut(),
            &mut tally.borrow_mut(),
        ))
    });
    println!("{}", tally.borrow().line("http_cluster_kv", n, started));
    if let Err(e) = r {
        panic!("cluster/kv fuzzing failed: {e}");
    }

    rt.block_on(async {
        assert_live(&f.c, &f.n, "end").await.expect("live");
        f.n.running.shutdown().await;
    });
}

/// Regressions found by the HTTP fuzzing: axum's own refusals on the node's routes (a path
/// that is not UTF-8, a query string that does not parse, a method the route does not serve, a
/// body over the limit) came out as plain text or an empty body instead of the node's JSON
/// error.
#[test]
fn http_regressions() {
    count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = rt.block_on(start_node("fuzz-http-regressions"));
    let c = http_client();
    rt.block_on(async {
        use reqwest::Method;
        for (method, path, body, status) in [
            (Method::DELETE, "/cluster/members/%FF%FE", vec![], 400),
            (Method::GET, "/kv/%FF", vec![], 400),
            (
                Method::GET,
                "/kv/k?consistency=stale&consistency=linearizable",
                vec![],
                400,
            ),
            (
                Method::GET,
                "/cluster/management-nodes?consistency=%FF",
                vec![],
                400,
            ),
            (Method::PATCH, "/kv/k", vec![], 405),
            (Method::GET, "/cluster/init", vec![], 405),
            (Method::PUT, "/kv/k", vec![b'v'; (2 << 20) + 1], 413),
        ] {
            let url = format!("http://{}{path}", n.http_addr);
            let r = node_api_request(&c, method.clone(), &url)
                .body(body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), status, "{method} {path}");
            let v: serde_json::Value = r.json().await.expect("a JSON error body");
            for k in ["code", "description", "details"] {
                assert!(v["error"][k].is_string(), "{method} {path}: {v}");
            }
            assert_eq!(v["served_by"], 1, "{method} {path}: {v}");
        }
        // The ZStack REST mirror keeps ZStack's plain-text refusals (spec 06 §3).
        let r = c
            .get(format!("http://{}/zstack/v1/zones?limit=x", n.http_addr))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 400);
        let text = r.text().await.expect("text");
        assert!(text.contains("'limit' must be an integer"), "{text}");
    });
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics in the node");
    rt.block_on(n.running.shutdown());
}
