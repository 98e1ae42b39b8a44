//! Property-based fuzzing of the wire decoders: arbitrary bytes and arbitrary JSON never make
//! the envelope, query or REST-condition parsers (or the evaluator) panic, and whatever they
//! accept is well-formed.

use api::query;
use api::wire::envelope::decode_request;
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("="),
            Just("!="),
            Just("in"),
            Just("like"),
            Just("is null"),
            Just(">"),
            Just("not in")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("conditions".to_string()),
                        Just("name".to_string()),
                        Just("op".to_string()),
                        Just("value".to_string()),
                        Just("limit".to_string()),
                        Just("start".to_string()),
                        Just("sortBy".to_string()),
                        Just("fields".to_string()),
                        Just("session".to_string()),
                        "[a-zA-Z.]{1,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// 2000 cases per property; `FUZZ_CASES=<n>` sets them, `FUZZ_LONG=1` multiplies by 50 (the same
/// knobs as the node-level fuzzing in node/tests/fuzz_grpc.rs and fuzz_http.rs).
fn cases() -> u32 {
    if let Some(n) = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    let long = std::env::var("FUZZ_LONG").is_ok_and(|v| !v.is_empty() && v != "0");
    if long {
        100_000
    } else {
        2000
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn envelope_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(&bytes);
    }

    #[test]
    fn envelope_and_query_never_panic_on_json(inner in json_value(), class in "[a-zA-Z.]{0,20}") {
        let mut top = serde_json::Map::new();
        top.insert(class, inner);
        let bytes = serde_json::to_vec(&Value::Object(top)).unwrap();
        if let Ok(req) = decode_request(&bytes) {
            prop_assert!(!req.class.is_empty());
            if let Ok(q) = query::parse_query(&req.class, &req.body) {
                for c in &q.conditions {
                    prop_assert!(c.value.is_some() || matches!(c.op, query::QueryOp::IsNull | query::QueryOp::IsNotNull));
                }
                let rows = vec![Value::Object(req.body.clone())];
                let schema: Vec<&str> = req.body.keys().map(String::as_str).collect();
                let _ = query::run(&q, &schema, rows);
            }
        }
    }

    #[test]
    fn rest_conditions_never_panic(s in ".{0,40}") {
        if let Ok(c) = query::parse_rest_condition(&s) {
            prop_assert!(!c.name.is_empty());
        }
    }

    #[test]
    fn like_never_panics(p in "[a%_\\\\]{0,10}", t in "[ab%_\\\\]{0,10}") {
        let row = serde_json::json!({"n": t});
        let c = query::Condition { name: "n".into(), op: query::QueryOp::Like, value: Some(p) };
        let _ = query::matches(&row, &c);
    }
}
