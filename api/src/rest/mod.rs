//! The REST v1 mirror (`/zstack/v1/...`, spec 06 §3): routes of the implemented calls, the
//! translation of a REST request into the same [`ApiRequest`] the RPC endpoint decodes, the
//! mapping of replies back to REST bodies, and the OpenAPI document describing it all.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::catalogue;
use crate::catalogue::CallKind;
use crate::catalogue::CallSpec;
use crate::query;
use crate::wire::envelope::ApiRequest;

pub mod schema;

/// HTTP methods the mirror uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

impl Method {
    /// Parse an HTTP method name.
    pub fn parse(m: &str) -> Option<Method> {
        match m {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    fn lower(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }
}

/// Where a call's fields come from in a REST request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `{"params": {...}}` (creates).
    Params,
    /// `{"<actionName>": {...}}` (actions and updates).
    Action,
    /// None: path variables and query string only.
    None,
}

/// One REST route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Method.
    pub method: Method,
    /// Path under `/zstack`, with `{var}` placeholders copied into the message.
    pub path: &'static str,
    /// The call's short name.
    pub call: &'static str,
    /// Body style.
    pub body: Body,
    /// Reply field renamed for REST (`validSession` → `valid`), if any.
    pub rename: Option<(&'static str, &'static str)>,
}

/// Routes of every implemented call (from ZStack's `@RestRequest` annotations), as the
/// families declare them (`CallDecl::routes`), in registry order.
pub fn routes() -> &'static [Route] {
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        crate::registry::routes()
            .map(|(call, r)| Route {
                method: r.method,
                path: r.path,
                call: call.name,
                body: r.body,
                rename: r.rename,
            })
            .collect()
    })
}

/// `CreateZone` → `createZone`: the body key of an action.
pub fn action_name(call: &str) -> String {
    let mut c = call.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn match_path(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let t: Vec<&'static str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut vars = Vec::new();
    for (a, b) in t.into_iter().zip(p) {
        if let Some(name) = a.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            if b.is_empty() {
                return None;
            }
            vars.push((name, b.to_string()));
        } else if a != b {
            return None;
        }
    }
    Some(vars)
}

/// A REST request, as the HTTP layer hands it over.
#[derive(Debug, Clone, Default)]
pub struct RestRequest {
    /// HTTP method.
    pub method: String,
    /// Path under `/zstack`, e.g. `/v1/zones/abc`.
    pub path: String,
    /// Query-string pairs in order.
    pub query: Vec<(String, String)>,
    /// `Authorization` header, if any.
    pub authorization: Option<String>,
    /// JSON body (empty for none).
    pub body: Vec<u8>,
}

/// What a REST request failed on before reaching the API (plain-text 4xx in ZStack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    /// HTTP status.
    pub status: u16,
    /// Plain-text body.
    pub message: String,
}

fn bad(message: impl Into<String>) -> RestError {
    RestError {
        status: 400,
        message: message.into(),
    }
}

/// The session of an `Authorization: OAuth <uuid>` header.
pub fn session_of(header: Option<&str>) -> Result<String, RestError> {
    let h = header.ok_or_else(|| bad("missing header 'Authorization'"))?;
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme != "OAuth" {
        return Err(bad("Authorization type must be 'OAuth'"));
    }
    Ok(rest.trim().to_string())
}

fn parse_bool(name: &str, v: &str) -> Result<bool, RestError> {
    v.parse().map_err(|_| {
        bad(format!(
            "Invalid query parameter. '{name}' must be a boolean"
        ))
    })
}

fn parse_uint(name: &str, v: &str) -> Result<u64, RestError> {
    v.parse().map_err(|_| {
        bad(format!(
            "Invalid query parameter. '{name}' must be an integer"
        ))
    })
}

/// Query-string parameters → the fields of an `APIQuery*Msg`.
fn query_fields(
    pairs: &[(String, String)],
    vars: &[(&str, String)],
) -> Result<Map<String, Value>, RestError> {
    let mut conditions = Vec::new();
    for (name, value) in vars {
        conditions.push(json!({"name": name, "op": "=", "value": value}));
    }
    let mut m = Map::new();
    let mut fields_seen = false;
    for (k, v) in pairs {
        match k.as_str() {
            k if "q".starts_with(k) => {
                let c = query::parse_rest_condition(v).map_err(|r| bad(r.details))?;
                conditions.push(json!({"name": c.name, "op": c.op.as_str(), "value": c.value}));
            }
            "limit" | "start" => {
                m.insert(k.to_string(), json!(parse_uint(k, v)?));
            }
            "count" | "replyWithCount" => {
                m.insert(k.to_string(), json!(parse_bool(k, v)?));
            }
            "groupBy" | "filterName" => {
                m.insert(k.to_string(), json!(v));
            }
            "sort" => {
                let (dir, field) = match v.chars().next() {
                    Some('+') => ("asc", &v[1..]),
                    Some('-') => ("desc", &v[1..]),
                    _ => ("asc", v.as_str()),
                };
                m.insert("sortBy".into(), json!(field));
                m.insert("sortDirection".into(), json!(dir));
            }
            "fields" if !fields_seen => {
                fields_seen = true;
                let list: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .collect();
                m.insert("fields".into(), json!(list));
            }
            _ => {}
        }
    }
    m.insert("conditions".into(), Value::Array(conditions));
    Ok(m)
}

/// Resolve a REST request to its route and the equivalent RPC request.
pub fn translate(
    req: &RestRequest,
) -> Result<(&'static Route, &'static CallSpec, ApiRequest), RestError> {
    let method = Method::parse(&req.method).ok_or_else(|| RestError {
        status: 405,
        message: format!("method {} is not supported", req.method),
    })?;
    let candidates: Vec<(&'static Route, Vec<(&'static str, String)>)> = routes()
        .iter()
        .filter(|r| r.method == method)
        .filter_map(|r| match_path(r.path, &req.path).map(|v| (r, v)))
        .collect();
    if candidates.is_empty() {
        return Err(RestError {
            status: 404,
            message: format!("no api mapping to {}", req.path),
        });
    }
    // ZStack parses the body (Gson into a map) after finding the path's API and before
    // anything else; a body that is not a JSON object throws there, which its REST server
    // answers 500 with the exception's message.
    let body: Map<String, Value> = if req.body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return Err(RestError {
                    status: 500,
                    message: format!(
                        "com.google.gson.JsonSyntaxException: expected a JSON object but was {}",
                        match other {
                            Value::Array(_) => "an array",
                            Value::String(_) => "a string",
                            Value::Number(_) => "a number",
                            Value::Bool(_) => "a boolean",
                            _ => "null",
                        }
                    ),
                })
            }
            Err(e) => {
                return Err(RestError {
                    status: 500,
                    message: format!("com.google.gson.JsonSyntaxException: {e}"),
                })
            }
        }
    };
    // A route with literal segments wins over one that matches them with variables
    // (`/v1/l2-networks/vlan` over `/v1/l2-networks/{uuid}`).
    let fewest = candidates.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
    let candidates: Vec<_> = candidates
        .into_iter()
        .filter(|(_, v)| v.len() == fewest)
        .collect();
    // Several actions share one URL; the body's key picks one.
    let (route, vars) = if candidates.len() == 1 {
        candidates.into_iter().next().expect("one candidate")
    } else {
        candidates
            .into_iter()
            .find(|(r, _)| body.contains_key(&action_name(r.call)))
            .ok_or_else(|| {
                bad(format!(
                    "the body doesn't contain action mapping to the URL[{}]",
                    req.path
                ))
            })?
    };
    let spec = catalogue::catalogue()
        .by_name(route.call)
        .ok_or_else(|| RestError {
            status: 500,
            message: format!("route {} names unknown call {}", route.path, route.call),
        })?;
    let mut fields = if spec.is_query() {
        query_fields(&req.query, &vars)?
    } else {
        let mut m = match route.body {
            Body::Params => match body.get("params") {
                Some(Value::Object(p)) => p.clone(),
                None => Map::new(),
                Some(_) => return Err(bad("'params' must be an object")),
            },
            Body::Action => match body.get(&action_name(route.call)) {
                Some(Value::Object(p)) => p.clone(),
                None | Some(Value::Null) => Map::new(),
                Some(_) => {
                    return Err(bad(format!(
                        "'{}' must be an object",
                        action_name(route.call)
                    )))
                }
            },
            Body::None => Map::new(),
        };
        for (k, v) in &vars {
            m.insert(k.to_string(), json!(v));
        }
        // Extra parameters of body-less calls ride in the query string (`?deleteMode=...`).
        // A list parameter is repeated or comma-separated (`?zoneUuids=a&zoneUuids=b,c`),
        // as ZStack's REST server reads it.
        if route.body == Body::None {
            for (k, v) in &req.query {
                let is_list = spec
                    .params
                    .iter()
                    .any(|p| p.name == *k && p.ty == catalogue::ParamType::Array);
                if !is_list {
                    m.entry(k.clone()).or_insert_with(|| json!(v));
                    continue;
                }
                let items = v.split(',').map(str::trim).filter(|x| !x.is_empty());
                // (A path variable of that name, already a string, keeps its value.)
                if let Value::Array(list) = m.entry(k.clone()).or_insert_with(|| json!([])) {
                    list.extend(items.map(|x| json!(x)));
                }
            }
        }
        for tags in ["systemTags", "userTags"] {
            if let Some(t) = body.get(tags) {
                m.insert(tags.into(), t.clone());
            }
        }
        m
    };
    let session_uuid = if crate::plan::needs_session(spec) {
        let s = session_of(req.authorization.as_deref())?;
        fields.insert("session".into(), json!({"uuid": s}));
        Some(s)
    } else {
        None
    };
    let system_tags = string_list(fields.get("systemTags"));
    let user_tags = string_list(fields.get("userTags"));
    Ok((
        route,
        spec,
        ApiRequest {
            class: spec.class.clone(),
            body: fields,
            session_uuid,
            system_tags,
            user_tags,
            timeout_ms: None,
        },
    ))
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A REST answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RestReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

/// Map a finished call's reply object (`{"inventory":…,"success":true}` or a failure) to the
/// REST answer: 200 with the mapped fields, or 503 with the error. `json_schema`: the request
/// carried an `X-JSON-Schema` header (any value: ZStack tests only for its presence); a query
/// reply carries `schema` whether or not it was asked for, as ZStack's `writeResponse` does.
pub fn reply(route: &Route, spec: &CallSpec, reply: &Value, json_schema: bool) -> RestReply {
    let decl = (json_schema || spec.is_query()).then(|| crate::registry::replies(&spec.name));
    map_reply(route.rename, decl, reply)
}

fn map_reply(
    rename: Option<(&str, &str)>,
    decl: Option<crate::family::Replies>,
    reply: &Value,
) -> RestReply {
    let obj = reply.as_object().cloned().unwrap_or_default();
    if obj.get("success") == Some(&Value::Bool(false)) {
        // ZStack's `ApiResponse` with only `error` set; no schema on a failure.
        return RestReply {
            status: 503,
            body: json!({"error": obj.get("error").cloned().unwrap_or(Value::Null)}),
        };
    }
    let mut fields = Map::new();
    for (k, v) in obj {
        if k == "success" || k == "error" {
            continue;
        }
        let k = match rename {
            Some((from, to)) if from == k => to.to_string(),
            _ => k,
        };
        fields.insert(k, v);
    }
    // `schema` is built from the mapped fields (ZStack builds it from the response map).
    // ZStack's `ApiResponse` is a HashMap: its keys come out `schema`, `total`, then the
    // reply's other fields (`inventories`, `inventory`, ...), so they are written in that order.
    let mut body = Map::new();
    if let Some(decl) = decl {
        body.insert(
            "schema".into(),
            Value::Object(schema::build(&fields, decl).schema),
        );
    }
    if let Some(total) = fields.shift_remove("total") {
        body.insert("total".into(), total);
    }
    body.extend(fields);
    RestReply {
        status: 200,
        body: Value::Object(body),
    }
}

/// Map the stored RPC result text of a finished job (`{"<class>":{...}}`) to the REST answer;
/// without a known route (a job of a call no longer routed) the fields go out unrenamed, with
/// no schema (no declaration names their classes).
pub fn job_reply(
    route: Option<&Route>,
    spec: Option<&CallSpec>,
    result: &str,
    json_schema: bool,
) -> RestReply {
    let inner = serde_json::from_str::<Value>(result)
        .ok()
        .and_then(|v| v.as_object().and_then(|m| m.values().next().cloned()))
        .unwrap_or(Value::Null);
    match (route, spec) {
        (Some(r), Some(s)) => reply(r, s, &inner, json_schema),
        _ => unrouted_reply(&inner),
    }
}

/// The REST answer of a reply object of a call no longer routed: its fields unrenamed, with
/// no schema (no declaration names their classes).
pub fn unrouted_reply(reply: &Value) -> RestReply {
    map_reply(None, None, reply)
}

/// The first route of a call, to map its job results.
pub fn route_of(call: &str) -> Option<&'static Route> {
    routes().iter().find(|r| r.call == call)
}

/// OpenAPI 3 document of the mirror.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in routes() {
        let Some(spec) = catalogue::catalogue().by_name(route.call) else {
            continue;
        };
        let path_params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|v| v.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(format!("{}{}", route.call, paths.len())),
        );
        op.insert(
            "summary".into(),
            json!(format!("{} ({})", route.call, spec.class)),
        );
        let mut params = path_params;
        if crate::plan::needs_session(spec) {
            params.push(
                json!({"name": "Authorization", "in": "header", "required": true,
                "description": "OAuth <session uuid>", "schema": {"type": "string"}}),
            );
        }
        if spec.is_query() {
            for (name, ty) in [
                ("q", "string"),
                ("limit", "integer"),
                ("start", "integer"),
                ("count", "boolean"),
                ("replyWithCount", "boolean"),
                ("sort", "string"),
                ("fields", "string"),
            ] {
                params.push(
                    json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}}),
                );
            }
        }
        op.insert("parameters".into(), Value::Array(params));
        if route.body != Body::None {
            let props: Map<String, Value> = spec
                .params
                .iter()
                .map(|p| {
                    let ty = match p.ty {
                        catalogue::ParamType::String => "string",
                        catalogue::ParamType::Integer => "integer",
                        catalogue::ParamType::Boolean => "boolean",
                        catalogue::ParamType::Array => "array",
                        catalogue::ParamType::Object => "object",
                    };
                    let mut s = json!({"type": ty});
                    if let Some(a) = &p.allowed {
                        s["enum"] = json!(a);
                    }
                    (p.name.clone(), s)
                })
                .collect();
            let required: Vec<&str> = spec
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name.as_str())
                .collect();
            let key = match route.body {
                Body::Params => "params".to_string(),
                _ => action_name(route.call),
            };
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {key: {"type": "object", "properties": props, "required": required}},
                }}}}),
            );
        }
        let ok = if spec.kind == CallKind::Async {
            json!({"202": {"description": "accepted; poll `location`"}, "503": {"description": "refused"}})
        } else {
            json!({"200": {"description": "done"}, "503": {"description": "refused"}})
        };
        op.insert("responses".into(), ok);
        let entry = paths
            .entry(format!("/zstack{}", route.path))
            .or_insert_with(|| json!({}));
        // Several actions on one URL: describe the first, list the rest in its summary.
        if let Some(existing) = entry.get_mut(route.method.lower()) {
            let s = existing["summary"].as_str().unwrap_or("").to_string();
            existing["summary"] = json!(format!("{s}; or {}", route.call));
        } else {
            entry[route.method.lower()] = Value::Object(op);
        }
    }
    paths.insert(
        "/zstack/v1/api-jobs/{uuid}".into(),
        json!({"get": {"operationId": "QueryApiJob", "summary": "poll an async call",
            "parameters": [{"name": "uuid", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "done"}, "202": {"description": "processing"},
                "404": {"description": "the job has been expired"}, "503": {"description": "failed"}}}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": "ZStack-compatible management API (REST v1 mirror)", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infrastructure_routes_prefer_literal_segments_and_copy_path_variables() {
        let auth = Some("OAuth s");
        let (route, _, _) = translate(&req("GET", "/v1/l2-networks/vlan", &[], "", auth)).unwrap();
        assert_eq!(route.call, "QueryL2VlanNetwork");
        let (route, _, _) = translate(&req("GET", "/v1/l2-networks/abc", &[], "", auth)).unwrap();
        assert_eq!(route.call, "QueryL2Network");
        let (route, _, m) = translate(&req(
            "POST",
            "/v1/clusters/c1/primary-storage/p1",
            &[],
            "{}",
            auth,
        ))
        .unwrap();
        assert_eq!(route.call, "AttachPrimaryStorageToCluster");
        assert_eq!(
            (
                m.body["clusterUuid"].as_str(),
                m.body["primaryStorageUuid"].as_str()
            ),
            (Some("c1"), Some("p1"))
        );
        let (route, _, m) = translate(&req(
            "PUT",
            "/v1/images/i1/actions",
            &[],
            r#"{"recoverImage": {}}"#,
            auth,
        ))
        .unwrap();
        assert_eq!(
            (route.call, m.body["imageUuid"].as_str()),
            ("RecoverImage", Some("i1"))
        );
        let (route, _, _) = translate(&req(
            "GET",
            "/v1/l2-networks/vxlan-pool/vni-ranges",
            &[],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(route.call, "QueryVniRange");
        // Sync reads: path variables and the query string become the message's fields.
        let (route, _, m) = translate(&req(
            "GET",
            "/v1/l3-networks/l1/ip/free",
            &[("limit", "5"), ("start", "10.0.0.9")],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(route.call, "GetFreeIp");
        assert_eq!(
            (m.body["l3NetworkUuid"].as_str(), m.body["limit"].as_str()),
            (Some("l1"), Some("5"))
        );
        let (route, _, m) = translate(&req(
            "GET",
            "/v1/l3-networks/ip-ranges/r1/ip/free",
            &[],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(
            (route.call, m.body["ipRangeUuid"].as_str()),
            ("GetFreeIp", Some("r1"))
        );
        let (route, _, m) = translate(&req(
            "GET",
            "/v1/l3-networks/l1/ip/10.0.0.7/availability",
            &[("ipRangeCheck", "false")],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(
            (
                route.call,
                m.body["ip"].as_str(),
                m.body["ipRangeCheck"].as_str()
            ),
            ("CheckIpAvailability", Some("10.0.0.7"), Some("false"))
        );
        // List parameters: repeated or comma-separated; the literal route wins over the
        // query's `{uuid}`.
        let (route, _, m) = translate(&req(
            "GET",
            "/v1/primary-storage/capacities",
            &[
                ("zoneUuids", "z1"),
                ("zoneUuids", "z2, z3"),
                ("all", "true"),
            ],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(route.call, "GetPrimaryStorageCapacity");
        assert_eq!(m.body["zoneUuids"], json!(["z1", "z2", "z3"]));
        assert_eq!(m.body["all"], "true");
        let (route, _, _) =
            translate(&req("GET", "/v1/backup-storage/capacities", &[], "", auth)).unwrap();
        assert_eq!(route.call, "GetBackupStorageCapacity");
        // Actions sharing one URL are told apart by the body's key.
        let (route, _, m) = translate(&req(
            "PUT",
            "/v1/backup-storage/b1/actions",
            &[],
            r#"{"exportImageFromBackupStorage": {"imageUuid": "i1"}}"#,
            auth,
        ))
        .unwrap();
        assert_eq!(
            (
                route.call,
                m.body["backupStorageUuid"].as_str(),
                m.body["imageUuid"].as_str()
            ),
            ("ExportImageFromBackupStorage", Some("b1"), Some("i1"))
        );
        let (route, _, m) = translate(&req(
            "PUT",
            "/v1/backup-storage/b1/actions",
            &[],
            r#"{"reconnectBackupStorage": {}}"#,
            auth,
        ))
        .unwrap();
        assert_eq!(
            (route.call, m.body["uuid"].as_str()),
            ("ReconnectBackupStorage", Some("b1"))
        );
        let (route, _, m) = translate(&req(
            "DELETE",
            "/v1/backup-storage/b1/exported-images/i1",
            &[],
            "",
            auth,
        ))
        .unwrap();
        assert_eq!(
            (route.call, m.body["imageUuid"].as_str()),
            ("DeleteExportedImageFromBackupStorage", Some("i1"))
        );
    }

    fn req(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &str,
        auth: Option<&str>,
    ) -> RestRequest {
        RestRequest {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            authorization: auth.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn create_query_action_and_login_translate() {
        let (_, spec, r) = translate(&req(
            "POST",
            "/v1/zones",
            &[],
            r#"{"params":{"name":"z1"},"systemTags":["a"]}"#,
            Some("OAuth s1"),
        ))
        .unwrap();
        assert_eq!(spec.name, "CreateZone");
        assert_eq!(r.body["name"], "z1");
        assert_eq!(r.session_uuid.as_deref(), Some("s1"));
        assert_eq!(r.system_tags, vec!["a"]);

        let (_, spec, r) = translate(&req(
            "GET",
            "/v1/zones/abc",
            &[
                ("q", "name~=z%"),
                ("limit", "5"),
                ("sort", "-createDate"),
                ("fields", "uuid,name"),
                ("fields", "x"),
            ],
            "",
            Some("OAuth s"),
        ))
        .unwrap();
        assert_eq!(spec.name, "QueryZone");
        let q = query::parse_query(&spec.class, &r.body).unwrap();
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(
            (q.limit, q.sort_desc, q.sort_by.as_deref()),
            (5, true, Some("createDate"))
        );
        assert_eq!(q.fields, Some(vec!["uuid".into(), "name".into()]));

        let (_, spec, r) = translate(&req(
            "PUT",
            "/v1/zones/abc/actions",
            &[],
            r#"{"changeZoneState":{"stateEvent":"disable"}}"#,
            Some("OAuth s"),
        ))
        .unwrap();
        assert_eq!(spec.name, "ChangeZoneState");
        assert_eq!(
            (r.body["uuid"].as_str(), r.body["stateEvent"].as_str()),
            (Some("abc"), Some("disable"))
        );

        let (_, spec, r) = translate(&req(
            "PUT",
            "/v1/accounts/login",
            &[],
            r#"{"logInByAccount":{"accountName":"admin","password":"x"}}"#,
            None,
        ))
        .unwrap();
        assert_eq!(spec.name, "LogInByAccount");
        assert!(r.session_uuid.is_none());

        let (_, spec, r) = translate(&req(
            "PUT",
            "/v1/global-configurations/identity/session.timeout/actions",
            &[],
            r#"{"updateGlobalConfig":{"value":"60"}}"#,
            Some("OAuth s"),
        ))
        .unwrap();
        assert_eq!(spec.name, "UpdateGlobalConfig");
        assert_eq!(
            (r.body["category"].as_str(), r.body["name"].as_str()),
            (Some("identity"), Some("session.timeout"))
        );
    }

    #[test]
    fn rest_refusals() {
        let e = translate(&req("GET", "/v1/zones", &[], "", None)).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "missing header 'Authorization'")
        );
        let e = translate(&req("GET", "/v1/zones", &[], "", Some("Basic x"))).unwrap_err();
        assert_eq!(e.message, "Authorization type must be 'OAuth'");
        assert_eq!(
            translate(&req("GET", "/v1/nothing", &[], "", Some("OAuth s")))
                .unwrap_err()
                .status,
            404
        );
        let e = translate(&req(
            "PUT",
            "/v1/zones/abc/actions",
            &[],
            r#"{"explode":{}}"#,
            Some("OAuth s"),
        ))
        .unwrap_err();
        assert!(e.message.contains("doesn't contain action mapping"));
        let e = translate(&req(
            "GET",
            "/v1/zones",
            &[("limit", "x")],
            "",
            Some("OAuth s"),
        ))
        .unwrap_err();
        assert_eq!(
            e.message,
            "Invalid query parameter. 'limit' must be an integer"
        );
        let e = translate(&req(
            "GET",
            "/v1/zones",
            &[("q", "noop")],
            "",
            Some("OAuth s"),
        ))
        .unwrap_err();
        assert!(e.message.contains("doesn't contain any query operator"));
        // A body that is not a JSON object: ZStack's Gson throws, its server answers 500;
        // an unknown path is still 404 first.
        for body in ["{bad", "[1]", "\"x\""] {
            let e = translate(&req("POST", "/v1/zones", &[], body, Some("OAuth s"))).unwrap_err();
            assert_eq!(e.status, 500, "{body}");
            assert!(e.message.contains("JsonSyntaxException"), "{}", e.message);
        }
        assert_eq!(
            translate(&req("POST", "/v1/nowhere", &[], "{bad", Some("OAuth s")))
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            translate(&req("PATCH", "/v1/zones", &[], "", Some("OAuth s")))
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn replies_map_and_openapi_covers_routes() {
        let spec = catalogue::catalogue().by_name("ValidateSession").unwrap();
        let route = route_of("ValidateSession").unwrap();
        let r = reply(
            route,
            spec,
            &json!({"validSession": true, "success": true}),
            false,
        );
        assert_eq!(
            r,
            RestReply {
                status: 200,
                body: json!({"valid": true})
            }
        );
        // Asked for, a reply without objects has an empty schema.
        let r = reply(
            route,
            spec,
            &json!({"validSession": true, "success": true}),
            true,
        );
        assert_eq!(r.body, json!({"schema": {}, "valid": true}));
        // A query always has one; an empty list or a count names no element.
        let q = catalogue::catalogue().by_name("QueryZone").unwrap();
        let zone = route_of("QueryZone").unwrap();
        for (fields, want) in [
            (json!({"inventories": [], "total": 0}), json!({})),
            (json!({"total": 100}), json!({})),
            (
                json!({"inventories": [{"uuid": "a"}, {"uuid": "b"}]}),
                json!({"inventories[1]": "org.zstack.header.zone.ZoneInventory",
                       "inventories[0]": "org.zstack.header.zone.ZoneInventory"}),
            ),
        ] {
            let mut reply_obj = fields.clone();
            reply_obj["success"] = json!(true);
            let r = reply(zone, q, &reply_obj, false);
            assert_eq!(r.body["schema"], want, "{fields}");
            let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
            assert_eq!(keys[0], "schema");
            if fields.get("total").is_some() {
                assert_eq!(keys[1], "total", "ZStack's HashMap order");
            }
        }
        // A create's inventory is named when the schema is asked for, not otherwise.
        let c = catalogue::catalogue().by_name("CreateZone").unwrap();
        let created = json!({"inventory": {"uuid": "a"}, "success": true});
        let r = reply(route_of("CreateZone").unwrap(), c, &created, true);
        assert_eq!(
            r.body,
            json!({"schema": {"inventory": "org.zstack.header.zone.ZoneInventory"}, "inventory": {"uuid": "a"}})
        );
        let r = reply(route_of("CreateZone").unwrap(), c, &created, false);
        assert_eq!(r.body, json!({"inventory": {"uuid": "a"}}));
        let r = job_reply(
            None,
            None,
            r#"{"org.X":{"success":false,"error":{"code":"SYS.1007"}}}"#,
            true,
        );
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (503, Some("SYS.1007"))
        );
        let doc = openapi();
        for route in routes() {
            assert!(
                doc["paths"][format!("/zstack{}", route.path)]
                    .get(route.method.lower())
                    .is_some(),
                "{}",
                route.path
            );
        }
        assert_eq!(doc["openapi"], "3.0.3");
        for route in routes() {
            assert!(
                crate::plan::is_implemented(route.call),
                "{} routed but not implemented",
                route.call
            );
        }
    }

    /// Every route a family declares reaches its own call through the mirror (the route table
    /// is the families' declarations, so a declared route cannot be left unreachable).
    #[test]
    fn every_declared_route_reaches_its_call() {
        let uuid = "1".repeat(32);
        for r in routes() {
            let path = r
                .path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        uuid.as_str()
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body = match r.body {
                Body::Action => json!({ action_name(r.call): {} }),
                _ => json!({}),
            };
            let req = RestRequest {
                method: r.method.lower().to_ascii_uppercase(),
                path,
                authorization: Some(format!("OAuth {uuid}")),
                body: body.to_string().into_bytes(),
                ..Default::default()
            };
            let (route, spec, _) =
                translate(&req).unwrap_or_else(|e| panic!("{} {}: {e:?}", r.call, r.path));
            assert_eq!(
                (route.call, spec.name.as_str()),
                (r.call, r.call),
                "{}",
                r.path
            );
        }
        assert!(routes().iter().any(|r| r.call == "GetTaskProgress"));
    }
}
