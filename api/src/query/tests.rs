use serde_json::json;

use super::*;

const VM_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "state",
    "memorySize",
    "hostUuid",
    "createDate",
    "vmNics",
    "cpuNum",
];

fn vms() -> Vec<Value> {
    vec![
        json!({"uuid":"a1","name":"web-1","state":"Running","memorySize":2048,"hostUuid":"h1","createDate":"Jan 6, 2017 3:51:16 AM","vmNics":[{"ip":"192.168.0.5","l3NetworkUuid":"l3a"},{"ip":"10.0.0.5","l3NetworkUuid":"l3b"}],"cpuNum":2,"__systemTag__":["ha::NeverStop"]}),
        json!({"uuid":"a2","name":"Web-2","state":"Stopped","memorySize":1024,"hostUuid":null,"createDate":"Jan 6, 2017 11:00:00 AM","vmNics":[{"ip":"192.168.0.6","l3NetworkUuid":"l3a"}],"cpuNum":1}),
        json!({"uuid":"a3","name":"db-1","state":"Running","memorySize":8192,"hostUuid":"h2","createDate":"Dec 31, 2016 11:59:59 PM","vmNics":[],"cpuNum":8}),
    ]
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn uuids(out: &QueryOutput) -> Vec<&str> {
    out.inventories
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v["uuid"].as_str().unwrap())
        .collect()
}

fn query(conds: Value) -> Query {
    parse_query("APIQueryVmInstanceMsg", &body(json!({"conditions": conds}))).unwrap()
}

fn run_vms(q: &Query) -> QueryOutput {
    run(q, VM_FIELDS, vms()).unwrap()
}

#[test]
fn every_operator() {
    let cases = [
        (
            json!([{"name":"state","op":"=","value":"Running"}]),
            vec!["a1", "a3"],
        ),
        (
            json!([{"name":"state","op":"=","value":"running"}]),
            vec!["a1", "a3"],
        ),
        (
            json!([{"name":"state","op":"!=","value":"Running"}]),
            vec!["a2"],
        ),
        (
            json!([{"name":"memorySize","op":">","value":"2048"}]),
            vec!["a3"],
        ),
        (
            json!([{"name":"memorySize","op":">=","value":"2048"}]),
            vec!["a1", "a3"],
        ),
        (
            json!([{"name":"memorySize","op":"<","value":"2048"}]),
            vec!["a2"],
        ),
        (
            json!([{"name":"memorySize","op":"<=","value":2048}]),
            vec!["a1", "a2"],
        ),
        (
            json!([{"name":"uuid","op":"in","value":"a1,a3,zz"}]),
            vec!["a1", "a3"],
        ),
        (
            json!([{"name":"uuid","op":"not in","value":"a1,a3"}]),
            vec!["a2"],
        ),
        (json!([{"name":"hostUuid","op":"is null"}]), vec!["a2"]),
        (
            json!([{"name":"hostUuid","op":"is not null"}]),
            vec!["a1", "a3"],
        ),
        (
            json!([{"name":"name","op":"like","value":"web-%"}]),
            vec!["a1", "a2"],
        ),
        (
            json!([{"name":"name","op":"not like","value":"web%"}]),
            vec!["a3"],
        ),
        (
            json!([{"name":"vmNics.ip","op":"like","value":"192.168.%"}]),
            vec!["a1", "a2"],
        ),
        (
            json!([{"name":"vmNics.ip","op":"=","value":"10.0.0.5"}]),
            vec!["a1"],
        ),
        (json!([{"name":"vmNics.ip","op":"is null"}]), vec!["a3"]),
        (
            json!([{"name":"createDate","op":">","value":"Jan 1, 2017 12:00:00 AM"}]),
            vec!["a1", "a2"],
        ),
        (
            json!([{"name":"__systemTag__","op":"=","value":"ha::NeverStop"}]),
            vec!["a1"],
        ),
        (
            json!([{"name":"state","op":"=","value":"Running"},{"name":"cpuNum","op":">","value":"4"}]),
            vec!["a3"],
        ),
        (
            json!([{"name":"hostUuid","op":"!=","value":"h1"}]),
            vec!["a3"],
        ),
    ];
    for (conds, want) in cases {
        let out = run_vms(&query(conds.clone()));
        assert_eq!(uuids(&out), want, "{conds}");
        assert!(out
            .inventories
            .unwrap()
            .iter()
            .all(|v| v.get("__systemTag__").is_none()));
    }
}

#[test]
fn paging_sorting_counting_and_fields() {
    let q = parse_query(
        "m",
        &body(json!({"conditions":[],"sortBy":"memorySize","sortDirection":"desc","start":1,"limit":1,"replyWithCount":true})),
    )
    .unwrap();
    let out = run_vms(&q);
    assert_eq!(uuids(&out), vec!["a1"]);
    assert_eq!(out.total, Some(3));

    let q = parse_query("m", &body(json!({"conditions":[],"sortBy":"createDate"}))).unwrap();
    assert_eq!(uuids(&run_vms(&q)), vec!["a3", "a1", "a2"]);

    let q = parse_query(
        "m",
        &body(json!({"conditions":[{"name":"state","op":"=","value":"Running"}],"count":true})),
    )
    .unwrap();
    assert_eq!(
        run_vms(&q),
        QueryOutput {
            inventories: None,
            total: Some(2)
        }
    );

    let q = parse_query(
        "m",
        &body(json!({"conditions":[],"fields":["uuid","state"],"limit":1})),
    )
    .unwrap();
    let out = run_vms(&q);
    assert_eq!(
        out.inventories.unwrap(),
        vec![json!({"uuid":"a1","state":"Running"})]
    );
    assert_eq!(out.total, None);
    assert_eq!(query(json!([])).limit, DEFAULT_LIMIT);
}

#[test]
fn refusals_are_sys_1007_with_zstack_text() {
    let err = |b: Value| parse_query("APIQueryVmInstanceMsg", &body(b)).unwrap_err();
    let e = err(json!({}));
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.details.contains("ApiMessageParamValidator"));
    assert_eq!(
        err(json!({"conditions":[{"name":"state","op":"~=","value":"x"}]})).details,
        "unknown QueryOp type[~=]"
    );
    assert!(err(json!({"conditions":[{"name":"state","op":"="}]}))
        .details
        .contains("cannot be null"));
    assert!(err(json!({"conditions":"x"})).details.len() > 10);
    assert!(err(json!({"conditions":[],"limit":-1}))
        .details
        .contains("limit"));
    assert!(err(json!({"conditions":[],"start":"a"}))
        .details
        .contains("start"));
    assert!(err(json!({"conditions":[],"sortDirection":"up"}))
        .details
        .contains("sortDirection"));
    assert!(err(json!({"conditions":[],"count":"yes"}))
        .details
        .contains("count"));
    assert!(err(json!({"conditions":[],"fields":[1]})).details.len() > 10);
    assert!(
        err(json!({"conditions":[],"filterName":"nocolon"}))
            .details
            .len()
            > 10
    );
    assert_eq!(
        err(json!({"conditions":[],"filterName":"t:c"})).code,
        Code::NotSupported
    );

    let unknown =
        |q: Value| run(&parse_query("m", &body(q)).unwrap(), VM_FIELDS, vms()).unwrap_err();
    assert!(
        unknown(json!({"conditions":[{"name":"nope","op":"=","value":"1"}]}))
            .details
            .contains("nope")
    );
    assert!(unknown(json!({"conditions":[],"sortBy":"nope"}))
        .details
        .contains("nope"));
    assert!(unknown(json!({"conditions":[],"fields":["nope"]}))
        .details
        .contains("nope"));
}

#[test]
fn duplicate_conditions_collapse() {
    let q = query(
        json!([{"name":"state","op":"=","value":"Running"},{"name":"state","op":"=","value":"Running"}]),
    );
    assert_eq!(q.conditions.len(), 1);
}

#[test]
fn rest_shorthands_in_zstack_order() {
    let c = |s: &str| parse_rest_condition(s).unwrap();
    assert_eq!(c("name!=a").op, QueryOp::NotEq);
    assert_eq!(c("memorySize>=1").op, QueryOp::Ge);
    assert_eq!(c("uuid!?=a,b").op, QueryOp::NotIn);
    assert_eq!(c("name!~=w%").op, QueryOp::NotLike);
    assert_eq!(
        c("vmNics.ip~=192.%"),
        Condition {
            name: "vmNics.ip".into(),
            op: QueryOp::Like,
            value: Some("192.%".into())
        }
    );
    assert_eq!(c("uuid?=a,b").op, QueryOp::In);
    assert_eq!(
        c(" name = x ").value.as_deref(),
        Some(" x "),
        "the value is not trimmed"
    );
    assert_eq!(c(" name = x ").name, "name");
    assert_eq!(
        c("hostUuid is null"),
        Condition {
            name: "hostUuid".into(),
            op: QueryOp::IsNull,
            value: None
        }
    );
    assert_eq!(c("hostUuid not null").op, QueryOp::IsNotNull);
    assert!(parse_rest_condition("nothing")
        .unwrap_err()
        .details
        .contains("doesn't contain any query operator"));
    assert!(parse_rest_condition("=x").is_err());
}

mod sort_key {
    use proptest::prelude::*;
    use serde_json::json;
    use serde_json::Value;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-zA-Z0-9 .,:-]{0,8}".prop_map(Value::String),
            (-1000i64..1000).prop_map(|n| Value::String(n.to_string())),
            (0u64..4_000_000_000_000)
                .prop_map(|ms| Value::String(crate::wire::date::java_date(ms))),
            Just(json!([1, 2])),
        ]
    }

    proptest! {
        /// The cached key orders every pair exactly as the comparator it replaces.
        #[test]
        fn cached_keys_compare_like_sort_key_cmp(a in value(), b in value()) {
            let (ka, kb) = (super::super::SortKey::of(Some(&a)), super::super::SortKey::of(Some(&b)));
            prop_assert_eq!(ka.cmp(&kb), super::super::sort_key_cmp(Some(&a), Some(&b)));
        }
    }
}
