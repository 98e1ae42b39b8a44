//! The audit log of API calls (issue #4): who called what, when, from where, and how it ended,
//! queryable from any node through `QueryAudit`.
//!
//! Every record lives in the replicated state, so a query on any node sees the calls served by
//! all nodes. The serving node does not propose one entry per call: it buffers finished-call
//! records and proposes them in batches ([`AuditOp::Append`]), which keeps read traffic from
//! doubling the Raft write load. The price, accepted on purpose: the records of sync calls
//! (queries, reads, logins, logouts) that a node had buffered but not yet proposed are lost if
//! that node crashes within one flush interval (~50 ms), or dropped (and counted) when the
//! buffer overflows. The outcome of a mutation cannot be lost that way: every mutation is an
//! async job, and the job's `Run` apply step completes the audit record keyed by the job uuid in
//! the same log entry that applies the mutation ([`finish_job`]). The node's "accepted" record
//! (who, from where, the request) travels through the batch and may be applied before or after
//! that step; [`merge`] makes the order irrelevant and never moves a `Done` record back to
//! `Processing`.
//!
//! Secrets never enter the log: [`redact`] replaces every field whose name contains `password`
//! or `secret`, and every session uuid (a bearer credential), with `*****` before the node
//! builds a record.
//!
//! The records live in their own tables (`audit` keyed by uuid, `audit_index` for the secondary
//! index and the creation-time order) so that the log never bloats the resource tables or their
//! shared index, and so that deleting an account leaves its history in place.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::job::ApiJob;
use crate::query;
use crate::query::Query;
use crate::query::QueryOp;
use crate::query::QueryOutput;
use crate::resource::Field;
use crate::settings;
use crate::validate;
use crate::wire::date::java_date;
use crate::wire::errors::Code;
use crate::wire::errors::ErrorCode;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::StateTxn;

/// Records, keyed by uuid.
pub const TABLE: &str = "audit";
/// Secondary index (`<field>\0<lowercased value>\0<uuid>`) and creation-time order
/// (`\0t\0<createDate as 16 hex>\0<uuid>`).
pub const INDEX_TABLE: &str = "audit_index";
/// What a redacted value is replaced with.
pub const REDACTED: &str = "*****";
/// Most records one [`AuditOp::Append`] may carry (bounds one log entry).
pub const MAX_BATCH: usize = 1000;
/// Longest stored request dump in bytes; the node truncates longer bodies (ZStack accepts 4 MiB
/// requests, which would make the audit log the biggest table by far).
pub const MAX_DUMP: usize = 16 * 1024;
/// Longest identifier-like value kept from a request or reply (uuids, names, codes).
pub const MAX_TEXT: usize = 255;
/// Most records one [`AuditOp::Expire`] may delete (bounds one log entry).
pub const MAX_EXPIRE_BATCH: u32 = 10_000;
/// The audit record's inventory, in order; also the query schema.
pub const INVENTORY: &[Field<AuditRecord>] = &[
    Field::new("uuid", |r| json!(r.uuid)),
    Field::new("apiName", |r| json!(r.api_name)),
    Field::new("messageClass", |r| json!(r.message_class)),
    Field::new("resourceUuid", |r| json!(r.resource_uuid)),
    Field::new("accountUuid", |r| json!(r.account_uuid)),
    Field::new("userUuid", |r| json!(r.user_uuid)),
    Field::new("operator", |r| json!(r.operator)),
    Field::new("clientIp", |r| json!(r.client_ip)),
    Field::new("requestDump", |r| json!(r.request_dump)),
    Field::new("success", |r| json!(r.success)),
    Field::new("errorCode", |r| json!(r.error_code)),
    Field::new("errorDescription", |r| json!(r.error_description)),
    Field::new("error", |r| json!(r.error_details)),
    Field::new("jobUuid", |r| json!(r.job_uuid)),
    Field::new("state", |r| {
        json!(match r.state {
            AuditState::Processing => "Processing",
            AuditState::Done => "Done",
        })
    }),
    Field::new("createDate", |r| json!(java_date(r.create_date))),
    Field::new("finishDate", |r| json!(r.finish_date.map(java_date))),
    Field::new("duration", |r| json!(r.duration)),
    Field::new("nodeId", |r| json!(r.node_id)),
];

/// The query schema.
pub fn fields() -> Vec<&'static str> {
    crate::resource::table_fields(INVENTORY)
}
/// Fields with a secondary index besides `uuid`.
const INDEXED: &[&str] = &["apiName", "resourceUuid", "accountUuid", "jobUuid"];
const TIME_PREFIX: &[u8] = b"\0t\0";

/// `Processing` while an async call's job has not finished, else `Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditState {
    /// Accepted as a job, not finished.
    Processing,
    /// Finished (success or failure).
    Done,
}

/// One API call. `Option` fields are unknown or not applicable (no session resolved, no job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Record uuid; the job uuid for async calls, so the job's completion finds it.
    pub uuid: String,
    /// Short API name, e.g. `CreateZone`.
    pub api_name: String,
    /// Fully qualified message class.
    pub message_class: String,
    /// The resource the call targeted (`uuid` of the request) or created.
    pub resource_uuid: Option<String>,
    /// The caller's account.
    pub account_uuid: Option<String>,
    /// The caller's user (equal to the account for account sessions).
    pub user_uuid: Option<String>,
    /// The caller's account or user name.
    pub operator: Option<String>,
    /// Remote address of the client as the serving node saw it.
    pub client_ip: Option<String>,
    /// The request body, secrets redacted, truncated to [`MAX_DUMP`].
    pub request_dump: Option<String>,
    /// How it ended (`None` while processing).
    pub success: Option<bool>,
    /// Error code on failure, e.g. `SYS.1007`.
    pub error_code: Option<String>,
    /// The code's fixed description on failure.
    pub error_description: Option<String>,
    /// What went wrong this time.
    pub error_details: Option<String>,
    /// The job of an async call.
    pub job_uuid: Option<String>,
    /// State.
    pub state: AuditState,
    /// When the call arrived (async: when its job was accepted), ms.
    pub create_date: u64,
    /// When it finished, ms.
    pub finish_date: Option<u64>,
    /// `finishDate - createDate`, ms.
    pub duration: Option<u64>,
    /// The node that served the call.
    pub node_id: Option<u64>,
    /// Whether the serving node's part (who, request) is in; false for a record the job's
    /// completion created before the node's batch arrived.
    pub accepted: bool,
}

impl AuditRecord {
    /// The inventory `QueryAudit` answers.
    pub fn inventory(&self) -> Value {
        crate::resource::render_fields(INVENTORY, self)
    }

    /// Set the outcome from a finished call's reply object (`{..., "success": bool,
    /// "inventory"?: {...}, "error"?: {...}}`).
    pub fn set_reply(&mut self, reply: &Value) {
        if reply.get("success").and_then(Value::as_bool) == Some(true) {
            self.success = Some(true);
            self.note_inventory(reply.get("inventory"));
            return;
        }
        let field = |k: &str| {
            reply
                .get("error")
                .and_then(|e| e.get(k))
                .and_then(Value::as_str)
        };
        self.success = Some(false);
        self.error_code = Some(
            field("code")
                .map(|c| clip(c, MAX_TEXT))
                .unwrap_or(Code::Internal.as_str())
                .to_string(),
        );
        self.error_description = field("description").map(|d| clip(d, MAX_TEXT).to_string());
        self.error_details = field("details").map(|d| clip(d, MAX_DUMP).to_string());
    }

    /// What a successful call's inventory tells: the resource it created or touched, or, for a
    /// session call, who logged in (a session's own uuid is a credential, never recorded).
    fn note_inventory(&mut self, inv: Option<&Value>) {
        let field = |k: &str| {
            inv.and_then(|i| i.get(k))
                .and_then(Value::as_str)
                .map(|v| clip(v, MAX_TEXT).to_string())
        };
        if is_session_call(&self.api_name) {
            if self.account_uuid.is_none() {
                self.account_uuid = field("accountUuid");
                self.user_uuid = field("userUuid");
            }
        } else if self.resource_uuid.is_none() {
            self.resource_uuid = field("uuid");
        }
    }

    /// A call's record as the serving node starts it: what was asked, from where; the
    /// caller is set once the session is resolved and the outcome when the call ends.
    pub fn for_request(
        req: &crate::wire::envelope::ApiRequest,
        uuid: String,
        client_ip: Option<String>,
        node_id: u64,
        now_ms: u64,
    ) -> AuditRecord {
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(|s| clip(s, MAX_TEXT).to_string())
        };
        let api_name = clip(req.short_name(), MAX_TEXT).to_string();
        let target = text(req.body.get("uuid")).or_else(|| text(req.body.get("resourceUuid")));
        let login_name =
            text(req.body.get("userName")).or_else(|| text(req.body.get("accountName")));
        AuditRecord {
            uuid,
            message_class: clip(&req.class, MAX_TEXT).to_string(),
            resource_uuid: if is_session_call(&api_name) {
                None
            } else {
                target
            },
            // For a login the name sent is all there is until it succeeds.
            operator: if api_name.starts_with("LogIn") {
                login_name
            } else {
                None
            },
            api_name,
            account_uuid: None,
            user_uuid: None,
            client_ip,
            request_dump: Some(request_dump(&req.body)),
            success: None,
            error_code: None,
            error_description: None,
            error_details: None,
            job_uuid: None,
            state: AuditState::Processing,
            create_date: now_ms,
            finish_date: None,
            duration: None,
            node_id: Some(node_id),
            accepted: true,
        }
    }

    /// Who called (the session's account and user) and their name, when it is known.
    pub fn set_caller(&mut self, who: &Caller, operator: Option<String>) {
        self.account_uuid = Some(who.account_uuid.clone());
        self.user_uuid = Some(who.user_uuid.clone());
        if operator.is_some() {
            self.operator = operator;
        }
    }

    /// The call ended at `now_ms` with `reply` (`{..., "success": bool, "error"?: {...}}`).
    pub fn finish(&mut self, reply: &Value, now_ms: u64) {
        self.state = AuditState::Done;
        let now = now_ms.max(self.create_date);
        self.finish_date = Some(now);
        self.duration = Some(now - self.create_date);
        self.set_reply(reply);
    }

    /// Set the outcome from a failure's error code.
    pub fn set_error(&mut self, e: &ErrorCode) {
        self.success = Some(false);
        self.error_code = Some(e.code.clone());
        self.error_description = Some(e.description.clone());
        self.error_details = e.details.clone();
    }
}

/// Audit commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOp {
    /// Add (or merge into existing) records: a serving node's batch.
    Append {
        /// At most [`MAX_BATCH`] records.
        records: Vec<AuditRecord>,
    },
    /// Delete at most `limit` of the oldest records older than `audit/retention` at the
    /// command's stamp (the leader's sweeper repeats it while it deletes a full batch).
    Expire {
        /// At most [`MAX_EXPIRE_BATCH`].
        limit: u32,
    },
}

/// Answer of an audit command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditResult {
    /// Records added or merged.
    Appended(u64),
    /// Records deleted.
    Expired(u64),
}

/// Whether a call's requests or answers carry session uuids (logins, logout, session calls):
/// their `uuid` is never recorded as the call's resource.
pub fn is_session_call(api_name: &str) -> bool {
    api_name.starts_with("LogIn") || api_name.contains("Session") || api_name == "LogOut"
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Replace every secret (see the module doc) in `v`, at any depth, with [`REDACTED`].
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, field) in m.iter_mut() {
                if crate::secret::is_secret_field(k) {
                    *field = Value::String(REDACTED.to_string());
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The stored request dump of a body: redacted, then cut to [`MAX_DUMP`] bytes at a character
/// boundary with a marker.
pub fn request_dump(body: &Map<String, Value>) -> String {
    let mut v = Value::Object(body.clone());
    redact(&mut v);
    let s = v.to_string();
    if s.len() > MAX_DUMP {
        format!("{}...(truncated)", clip(&s, MAX_DUMP))
    } else {
        s
    }
}

fn corrupt(uuid: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("audit record {uuid}"),
        detail: e.to_string(),
    }
}

fn time_key(create_date: u64, uuid: &str) -> Vec<u8> {
    let mut k = TIME_PREFIX.to_vec();
    k.extend_from_slice(format!("{create_date:016x}").as_bytes());
    k.push(0);
    k.extend_from_slice(uuid.as_bytes());
    k
}

fn field_prefix(field: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(field.len() + value.len() + 34);
    k.extend_from_slice(field.as_bytes());
    k.push(0);
    k.extend(
        value
            .bytes()
            .map(|b| if b == 0 { 1 } else { b.to_ascii_lowercase() }),
    );
    k.push(0);
    k
}

/// The index keys of a record; a pure function of it, so an update can remove the old keys
/// without storing them.
fn index_keys(r: &AuditRecord) -> Vec<Vec<u8>> {
    let mut keys = vec![time_key(r.create_date, &r.uuid)];
    let values = [
        Some(r.api_name.as_str()).filter(|s| !s.is_empty()),
        r.resource_uuid.as_deref(),
        r.account_uuid.as_deref(),
        r.job_uuid.as_deref(),
    ];
    for (field, value) in INDEXED.iter().zip(values) {
        if let Some(v) = value {
            let mut k = field_prefix(field, v);
            k.extend_from_slice(r.uuid.as_bytes());
            keys.push(k);
        }
    }
    keys
}

/// Read one record.
pub fn get(txn: &dyn StateTxn, uuid: &str) -> Result<Option<AuditRecord>, ApiError> {
    txn.get(TABLE, uuid.as_bytes())?
        .map(|raw| serde_json::from_slice(&raw).map_err(|e| corrupt(uuid, e)))
        .transpose()
}

fn store(
    txn: &mut dyn StateTxn,
    old: Option<&AuditRecord>,
    r: &AuditRecord,
) -> Result<(), ApiError> {
    for k in old.map(index_keys).unwrap_or_default() {
        txn.delete(INDEX_TABLE, &k)?;
    }
    for k in index_keys(r) {
        txn.put(INDEX_TABLE, &k, Vec::new())?;
    }
    let raw = serde_json::to_vec(r).map_err(|e| corrupt(&r.uuid, e))?;
    txn.put(TABLE, r.uuid.as_bytes(), raw)?;
    Ok(())
}

fn remove(txn: &mut dyn StateTxn, r: &AuditRecord) -> Result<(), ApiError> {
    for k in index_keys(r) {
        txn.delete(INDEX_TABLE, &k)?;
    }
    txn.delete(TABLE, r.uuid.as_bytes())?;
    Ok(())
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Combine two versions of the same call's record, so that the serving node's accepted record
/// and the job's completion give the same result in either order: the outcome comes from the
/// first `Done` version (a `Done` record never goes back to `Processing`), who/what/where from
/// the first accepted version, and each field falls back to the other version when unknown.
pub fn merge(old: AuditRecord, new: AuditRecord) -> AuditRecord {
    let take_result = old.state != AuditState::Done && new.state == AuditState::Done;
    let (outcome, other_outcome) = if take_result {
        (&new, &old)
    } else {
        (&old, &new)
    };
    let accept_new = !old.accepted && new.accepted;
    let (who, other) = if accept_new {
        (&new, &old)
    } else {
        (&old, &new)
    };
    let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
    let create_date = if who.create_date != 0 {
        who.create_date
    } else {
        other.create_date
    };
    let finish_date = outcome.finish_date.or(other_outcome.finish_date);
    let state = if old.state == AuditState::Done || new.state == AuditState::Done {
        AuditState::Done
    } else {
        AuditState::Processing
    };
    AuditRecord {
        uuid: old.uuid.clone(),
        api_name: nonempty(&who.api_name)
            .or_else(|| nonempty(&other.api_name))
            .unwrap_or_default(),
        message_class: nonempty(&who.message_class)
            .or_else(|| nonempty(&other.message_class))
            .unwrap_or_default(),
        resource_uuid: pick(&who.resource_uuid, &other.resource_uuid),
        account_uuid: pick(&who.account_uuid, &other.account_uuid),
        user_uuid: pick(&who.user_uuid, &other.user_uuid),
        operator: pick(&who.operator, &other.operator),
        client_ip: pick(&who.client_ip, &other.client_ip),
        request_dump: pick(&who.request_dump, &other.request_dump),
        success: outcome.success.or(other_outcome.success),
        error_code: pick(&outcome.error_code, &other_outcome.error_code),
        error_description: pick(&outcome.error_description, &other_outcome.error_description),
        error_details: pick(&outcome.error_details, &other_outcome.error_details),
        job_uuid: pick(&who.job_uuid, &other.job_uuid),
        state,
        create_date,
        finish_date,
        duration: match (state, finish_date) {
            (AuditState::Done, Some(f)) => Some(f.saturating_sub(create_date)),
            _ => None,
        },
        node_id: who.node_id.or(other.node_id),
        accepted: old.accepted || new.accepted,
    }
}

pub(crate) fn upsert(txn: &mut dyn StateTxn, r: AuditRecord) -> Result<(), ApiError> {
    let old = get(txn, &r.uuid)?;
    let merged = match &old {
        Some(o) => merge(o.clone(), r),
        None => r,
    };
    if old.as_ref() != Some(&merged) {
        store(txn, old.as_ref(), &merged)?;
    }
    Ok(())
}

pub(crate) fn check(r: &AuditRecord) -> Result<(), ApiError> {
    validate::uuid("uuid", &r.uuid)?;
    if let Some(j) = &r.job_uuid {
        validate::uuid("jobUuid", j)?;
    }
    validate::max_len("apiName", &r.api_name, validate::MAX_NAME)?;
    validate::max_len("messageClass", &r.message_class, validate::MAX_NAME)?;
    let short = [
        ("resourceUuid", &r.resource_uuid),
        ("accountUuid", &r.account_uuid),
        ("userUuid", &r.user_uuid),
        ("operator", &r.operator),
        ("clientIp", &r.client_ip),
        ("errorCode", &r.error_code),
    ];
    for (field, v) in short {
        if let Some(v) = v {
            validate::max_len(field, v, validate::MAX_NAME)?;
        }
    }
    if let Some(d) = &r.error_description {
        validate::max_len("errorDescription", d, validate::MAX_DESCRIPTION)?;
    }
    if let Some(d) = &r.error_details {
        validate::max_len("error", d, MAX_DUMP + 64)?;
    }
    if let Some(d) = &r.request_dump {
        // The node's truncation marker may follow the MAX_DUMP bytes it keeps.
        validate::max_len("requestDump", d, MAX_DUMP + 64)?;
    }
    if r.state == AuditState::Done && r.success.is_none() {
        return Err(validate::invalid_arg(format!(
            "audit record {} is Done without a result",
            r.uuid
        )));
    }
    Ok(())
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: AuditOp,
) -> Result<AuditResult, ApiError> {
    caller.require_admin("audit")?;
    match op {
        AuditOp::Append { records } => {
            if records.is_empty() || records.len() > MAX_BATCH {
                return Err(validate::invalid_arg(format!(
                    "an audit batch holds 1 to {MAX_BATCH} records, got {}",
                    records.len()
                )));
            }
            // Every record is checked before the first write: a bad batch writes nothing.
            records.iter().try_for_each(check)?;
            let n = records.len() as u64;
            for r in records {
                upsert(txn, r)?;
            }
            Ok(AuditResult::Appended(n))
        }
        AuditOp::Expire { limit } => {
            if limit == 0 || limit > MAX_EXPIRE_BATCH {
                return Err(validate::invalid_arg(format!(
                    "limit must be 1 to {MAX_EXPIRE_BATCH}, got {limit}"
                )));
            }
            let retention_ms = (settings::int_value(txn, "audit", "retention")?.max(0) as u64)
                .saturating_mul(1000);
            let cutoff = ctx.proposed_at_ms.saturating_sub(retention_ms);
            let mut n = 0;
            // Oldest first: the scan stops at the first record still within retention.
            for (k, _) in txn.scan_prefix(INDEX_TABLE, TIME_PREFIX, limit as usize)? {
                let rest = &k[TIME_PREFIX.len()..];
                let created = std::str::from_utf8(rest.get(..16).unwrap_or_default())
                    .ok()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| corrupt(&String::from_utf8_lossy(rest), "bad time key"))?;
                if created > cutoff {
                    break;
                }
                let uuid = String::from_utf8_lossy(rest.get(17..).unwrap_or_default()).into_owned();
                match get(txn, &uuid)? {
                    Some(r) => remove(txn, &r)?,
                    // An orphan index key (cannot happen through this module) is still dropped
                    // so the sweeper cannot stall on it.
                    None => txn.delete(INDEX_TABLE, &k)?,
                }
                n += 1;
            }
            Ok(AuditResult::Expired(n))
        }
    }
}

/// The caller a command carries (for the audit of a job whose serving node's record is lost);
/// `None` for the internal key-value and registry commands, which no API call issues.
pub fn caller_of(cmd: &Command) -> Option<&Caller> {
    match cmd {
        Command::Kv(_) | Command::ManagementNode(_) => None,
        other => Some(other.caller()),
    }
}

/// The name of whoever `caller` is: the user's for user sessions, else the account's (`None`
/// if it is gone).
pub fn operator_name(txn: &dyn StateTxn, caller: &Caller) -> Option<String> {
    use crate::families::identity::Account;
    use crate::families::identity::User;
    if caller.user_uuid != caller.account_uuid {
        if let Ok(Some((_, u))) = crate::resource::load::<User>(txn, &caller.user_uuid) {
            return Some(u.name);
        }
    }
    crate::resource::load::<Account>(txn, &caller.account_uuid)
        .ok()
        .flatten()
        .map(|(_, a)| a.name)
}

/// Complete the audit record of a finished job (called by the job's last apply step, in the
/// same entry that finished the flow): success or error, finish date, the created resource.
pub fn finish_job(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    job: &ApiJob,
    outcome: Result<Map<String, Value>, crate::wire::errors::Refusal>,
    caller: Option<&Caller>,
) -> Result<(), ApiError> {
    let mut r = AuditRecord {
        uuid: job.uuid.clone(),
        api_name: job.api_name.clone(),
        message_class: crate::catalogue::catalogue()
            .by_name(&job.api_name)
            .map(|c| c.class.clone())
            .unwrap_or_default(),
        resource_uuid: None,
        account_uuid: caller.map(|c| c.account_uuid.clone()),
        user_uuid: caller.map(|c| c.user_uuid.clone()),
        operator: None,
        client_ip: None,
        request_dump: None,
        success: Some(true),
        error_code: None,
        error_description: None,
        error_details: None,
        job_uuid: Some(job.uuid.clone()),
        state: AuditState::Done,
        create_date: job.create_date,
        finish_date: Some(ctx.proposed_at_ms),
        duration: Some(ctx.proposed_at_ms.saturating_sub(job.create_date)),
        node_id: None,
        accepted: false,
    };
    match outcome {
        Ok(fields) => r.note_inventory(fields.get("inventory")),
        Err(refusal) => r.set_error(&refusal.to_error_code()),
    }
    upsert(txn, r)
}

/// Uuids of candidate records for `q`, through `uuid` or an indexed field when a condition
/// allows (`=` or `in`), otherwise every record in creation order.
fn candidates(txn: &dyn StateTxn, q: &Query) -> Result<Vec<AuditRecord>, ApiError> {
    let mut uuids: Option<Vec<String>> = None;
    for c in &q.conditions {
        let values: Vec<&str> = match (c.op, c.value.as_deref()) {
            (QueryOp::Eq, Some(v)) => vec![v],
            (QueryOp::In, Some(v)) => v.split(',').collect(),
            _ => continue,
        };
        if c.name == "uuid" {
            uuids = Some(values.iter().map(|v| v.to_ascii_lowercase()).collect());
            break;
        }
        if INDEXED.contains(&c.name.as_str()) {
            let mut found = Vec::new();
            for v in values {
                let prefix = field_prefix(&c.name, v);
                for (k, _) in txn.scan_prefix(INDEX_TABLE, &prefix, usize::MAX)? {
                    found.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                }
            }
            uuids = Some(found);
            break;
        }
    }
    let mut out = Vec::new();
    match uuids {
        Some(list) => {
            for u in list {
                if let Some(r) = get(txn, &u)? {
                    out.push(r);
                }
            }
            // Creation order, as a full scan would give.
            out.sort_by(|a, b| (a.create_date, &a.uuid).cmp(&(b.create_date, &b.uuid)));
            out.dedup_by(|a, b| a.uuid == b.uuid);
        }
        None => {
            for (k, _) in txn.scan_prefix(INDEX_TABLE, TIME_PREFIX, usize::MAX)? {
                let uuid =
                    String::from_utf8_lossy(k.get(TIME_PREFIX.len() + 17..).unwrap_or_default())
                        .into_owned();
                if let Some(r) = get(txn, &uuid)? {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

/// Run `QueryAudit`: the admin sees every record, a normal account those of its own calls.
pub fn query(txn: &dyn StateTxn, q: &Query, caller: &Caller) -> Result<QueryOutput, ApiError> {
    let schema = fields();
    query::validate(q, &schema)?;
    let rows = candidates(txn, q)?
        .into_iter()
        .filter(|r| caller.admin || r.account_uuid.as_deref() == Some(&caller.account_uuid))
        .map(|r| r.inventory());
    Ok(query::run(q, &schema, rows)?)
}

fn run_query(
    txn: &dyn StateTxn,
    q: &Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, q, caller)
}

/// The audit family: the API audit log and `QueryAudit`.
pub struct Audits;

/// ZStack's class of an audit record (premium `zwatch`; the SDK's `QueryAuditResult` types
/// its elements from it).
const AUDIT_CLASS: crate::rest::schema::JavaClass =
    crate::rest::schema::JavaClass::leaf("org.zstack.zwatch.migratedb.AuditsInventory");

impl crate::family::Family for Audits {
    type Op = AuditOp;
    type Out = AuditResult;
    const DECL: crate::family::FamilyDecl = crate::family::FamilyDecl {
        replies: crate::family::inventories!(crate::rest::schema::Schema::Class(&AUDIT_CLASS)),
        calls: &[crate::family::CallDecl::new(
            "QueryAudit",
            |p| p.query(run_query),
            &[
                crate::family::route(
                    crate::rest::Method::Get,
                    "/v1/zwatch/audits",
                    crate::rest::Body::None,
                ),
                crate::family::route(
                    crate::rest::Method::Get,
                    "/v1/zwatch/audits/{uuid}",
                    crate::rest::Body::None,
                ),
            ],
        )],
        #[cfg(test)]
        cases: cases::cases,
        ..crate::family::FamilyDecl::internal("audit", &[TABLE, INDEX_TABLE])
    };
    const APPLY: crate::family::ApplyFn<Self> = apply;
}

impl crate::family::Reply for AuditResult {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::zone::ZoneOp;
    use crate::job::JobOp;
    use crate::job::JobResult;
    use crate::plan::Plan;
    use crate::plan::Stamp;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::wire::envelope::decode_request;
    use crate::IntoCommand;

    const JOB: &str = "0123456789abcdef0123456789abcdef";

    fn uuid(i: u32) -> String {
        format!("{i:032x}")
    }

    fn normal(i: u32) -> Caller {
        Caller {
            account_uuid: uuid(1000 + i),
            user_uuid: uuid(1000 + i),
            admin: false,
        }
    }

    /// A finished sync call's record, as a serving node builds it.
    fn sync_record(i: u32, at: u64, who: &Caller, api: &str, ok: bool) -> AuditRecord {
        let mut r = AuditRecord {
            uuid: uuid(i),
            api_name: api.into(),
            message_class: format!("org.zstack.header.zone.API{api}Msg"),
            resource_uuid: None,
            account_uuid: Some(who.account_uuid.clone()),
            user_uuid: Some(who.user_uuid.clone()),
            operator: Some("admin".into()),
            client_ip: Some("10.0.0.9".into()),
            request_dump: Some("{}".into()),
            success: Some(true),
            error_code: None,
            error_description: None,
            error_details: None,
            job_uuid: None,
            state: AuditState::Done,
            create_date: at,
            finish_date: Some(at + 3),
            duration: Some(3),
            node_id: Some(2),
            accepted: true,
        };
        if !ok {
            r.set_error(
                &crate::wire::errors::Refusal::new(
                    crate::wire::errors::Code::InvalidArgument,
                    "bad",
                )
                .to_error_code(),
            );
        }
        r
    }

    /// The serving node's record of an accepted async call.
    fn accepted(job_create: u64) -> AuditRecord {
        AuditRecord {
            uuid: JOB.into(),
            api_name: "CreateZone".into(),
            message_class: "org.zstack.header.zone.APICreateZoneMsg".into(),
            resource_uuid: None,
            account_uuid: Some(crate::ADMIN_ACCOUNT_UUID.into()),
            user_uuid: Some(crate::ADMIN_ACCOUNT_UUID.into()),
            operator: Some("admin".into()),
            client_ip: Some("127.0.0.1".into()),
            request_dump: Some(r#"{"name":"z"}"#.into()),
            success: None,
            error_code: None,
            error_description: None,
            error_details: None,
            job_uuid: Some(JOB.into()),
            state: AuditState::Processing,
            create_date: job_create,
            finish_date: None,
            duration: None,
            node_id: Some(3),
            accepted: true,
        }
    }

    fn append(t: &mut MemTxn, at: u64, records: Vec<AuditRecord>) -> Result<AuditResult, ApiError> {
        apply(t, &ctx(at), &Caller::admin(), AuditOp::Append { records })
    }

    fn submit_and_run(t: &mut MemTxn, zone_uuid: &str) -> crate::job::ApiJob {
        let submit = JobOp::Submit(crate::job::Submission::command(
            JOB,
            "CreateZone",
            "org.zstack.header.zone.APICreateZoneEvent",
            "",
            ZoneOp::Create {
                uuid: zone_uuid.into(),
                name: "z".into(),
                description: None,
                is_default: false,
            }
            .command(Caller::admin()),
        ));
        let Ok(JobResult::Job(j)) = crate::job::apply(t, &ctx(1), &Caller::admin(), submit) else {
            panic!("submit")
        };
        assert_eq!(j.create_date, 1000);
        let run = JobOp::Step {
            uuid: JOB.into(),
            step: 0,
            undo: false,
        };
        match crate::job::apply(t, &ctx(2), &Caller::admin(), run) {
            Ok(JobResult::Job(j)) => *j,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redaction_is_recursive_and_case_insensitive() {
        let body = json!({
            "name": "bs",
            "url": "/data",
            "hostname": "10.0.0.5",
            "username": "root",
            // AddImageStoreBackupStorage carries the SSH password as `password`.
            "password": "s3cret!",
            "oldPassword": "old",
            "session": {"uuid": "5f0c1a2b3c4d5e6f708192a3b4c5d6e7"},
            "sessionUuid": "5f0c1a2b3c4d5e6f708192a3b4c5d6e7",
            "nested": {"hosts": [{"sshPassword": "pw1", "ip": "1.1.1.1"}, {"SSHPASSWORD": 7}]},
            "accessKeySecret": "k",
            "systemTags": ["a::b"],
        });
        let dump = request_dump(body.as_object().unwrap());
        for secret in [
            "s3cret!",
            "\"old\"",
            "5f0c1a2b3c4d5e6f708192a3b4c5d6e7",
            "pw1",
            "\"k\"",
        ] {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
        let v: Value = serde_json::from_str(&dump).unwrap();
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["oldPassword"], REDACTED);
        assert_eq!(v["session"], REDACTED);
        assert_eq!(v["sessionUuid"], REDACTED);
        assert_eq!(v["nested"]["hosts"][0]["sshPassword"], REDACTED);
        assert_eq!(v["nested"]["hosts"][0]["ip"], "1.1.1.1");
        assert_eq!(v["nested"]["hosts"][1]["SSHPASSWORD"], REDACTED);
        assert_eq!(v["hostname"], "10.0.0.5");
        assert_eq!(v["systemTags"][0], "a::b");
        // Oversized bodies are cut at a character boundary, with a marker.
        let mut big = Map::new();
        big.insert("description".into(), json!("é".repeat(MAX_DUMP)));
        let dump = request_dump(&big);
        assert!(dump.len() <= MAX_DUMP + 20 && dump.ends_with("...(truncated)"));
    }

    #[test]
    fn accept_and_job_finish_merge_in_either_order() {
        let zone = "a".repeat(32);
        // Order 1: the node's batch lands first, then the job runs.
        let mut t1 = MemTxn::default();
        append(&mut t1, 1, vec![accepted(1000)]).unwrap();
        assert_eq!(
            get(&t1, JOB).unwrap().unwrap().state,
            AuditState::Processing
        );
        submit_and_run(&mut t1, &zone);
        // Order 2: the job finishes before the (late) batch arrives.
        let mut t2 = MemTxn::default();
        submit_and_run(&mut t2, &zone);
        let partial = get(&t2, JOB).unwrap().unwrap();
        assert_eq!((partial.state, partial.accepted), (AuditState::Done, false));
        assert_eq!(
            partial.account_uuid.as_deref(),
            Some(crate::ADMIN_ACCOUNT_UUID)
        );
        append(&mut t2, 3, vec![accepted(1000)]).unwrap();
        let (a, b) = (
            get(&t1, JOB).unwrap().unwrap(),
            get(&t2, JOB).unwrap().unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(t1.tables, t2.tables);
        assert_eq!(a.state, AuditState::Done);
        assert_eq!(a.success, Some(true));
        assert_eq!(a.resource_uuid.as_deref(), Some(zone.as_str()));
        assert_eq!(
            (a.create_date, a.finish_date, a.duration),
            (1000, Some(2000), Some(1000))
        );
        assert_eq!(
            (a.node_id, a.client_ip.as_deref()),
            (Some(3), Some("127.0.0.1"))
        );
        assert_eq!(a.message_class, "org.zstack.header.zone.APICreateZoneMsg");
        // A replayed accept never moves it back to Processing.
        append(&mut t2, 4, vec![accepted(1000)]).unwrap();
        assert_eq!(get(&t2, JOB).unwrap().unwrap(), b);
    }

    #[test]
    fn a_refused_job_records_its_error_code() {
        let mut t = MemTxn::default();
        let j = submit_and_run(&mut t, "not-a-uuid");
        assert_eq!(j.success, Some(false));
        let r = get(&t, JOB).unwrap().unwrap();
        assert_eq!(
            (r.state, r.success, r.error_code.as_deref()),
            (AuditState::Done, Some(false), Some("SYS.1007"))
        );
        assert!(r.error_details.unwrap().contains("not-a-uuid"));
        assert_eq!(r.resource_uuid, None);
    }

    #[test]
    fn batches_are_validated_whole() {
        let mut t = MemTxn::default();
        let mut bad = sync_record(2, 5, &Caller::admin(), "QueryZone", true);
        bad.uuid = "nope".into();
        let e = append(
            &mut t,
            1,
            vec![sync_record(1, 5, &Caller::admin(), "QueryZone", true), bad],
        )
        .unwrap_err();
        assert_eq!(e.code(), "SYS.1007");
        assert!(t.tables.values().all(|t| t.is_empty()), "nothing written");
        assert_eq!(append(&mut t, 1, vec![]).unwrap_err().code(), "SYS.1007");
        let mut undone = sync_record(3, 5, &Caller::admin(), "QueryZone", true);
        undone.success = None;
        assert_eq!(
            append(&mut t, 1, vec![undone]).unwrap_err().code(),
            "SYS.1007"
        );
        let e = apply(
            &mut t,
            &ctx(1),
            &normal(1),
            AuditOp::Append {
                records: vec![sync_record(1, 5, &normal(1), "QueryZone", true)],
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "ID.1002");
        let e = apply(
            &mut t,
            &ctx(1),
            &Caller::admin(),
            AuditOp::Expire { limit: 0 },
        )
        .unwrap_err();
        assert_eq!(e.code(), "SYS.1007");
    }

    fn plan_query(body: &str) -> Result<Plan, crate::wire::errors::Refusal> {
        let req = decode_request(
            format!(r#"{{"org.zstack.zwatch.api.APIQueryAuditMsg":{body}}}"#).as_bytes(),
        )
        .unwrap();
        let stamp = Stamp {
            now_ms: 1,
            new_uuid: uuid(99),
            salt: [0; 16],
            key: crate::testing::key(),
        };
        crate::plan::plan(&req, &Caller::admin(), &stamp)
    }

    fn run(t: &MemTxn, body: &str, who: &Caller) -> Result<Map<String, Value>, ApiError> {
        let Ok(Plan::Query { run, query, .. }) = plan_query(body) else {
            panic!("not a query plan: {body}")
        };
        run(t, &query, who).map(crate::plan::query_reply)
    }

    #[test]
    fn query_audit_visibility_indexes_and_refusals() {
        let mut t = MemTxn::default();
        let (a, b) = (normal(1), normal(2));
        append(
            &mut t,
            1,
            vec![
                sync_record(1, 10_000, &Caller::admin(), "QueryZone", true),
                sync_record(2, 20_000, &a, "QueryZone", false),
                sync_record(3, 30_000, &a, "LogOut", true),
                sync_record(4, 40_000, &b, "QueryZone", true),
            ],
        )
        .unwrap();
        let all = run(
            &t,
            r#"{"conditions":[],"replyWithCount":true}"#,
            &Caller::admin(),
        )
        .unwrap();
        assert_eq!(all["total"], 4);
        // Natural order is creation order.
        let uuids: Vec<_> = all["inventories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["uuid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(uuids, vec![uuid(1), uuid(2), uuid(3), uuid(4)]);
        let mine = run(&t, r#"{"conditions":[],"replyWithCount":true}"#, &a).unwrap();
        assert_eq!(mine["total"], 2);
        let q = r#"{"conditions":[{"name":"apiName","op":"=","value":"queryzone"}],"replyWithCount":true,"sortBy":"createDate","sortDirection":"desc"}"#;
        let m = run(&t, q, &Caller::admin()).unwrap();
        assert_eq!(m["total"], 3);
        assert_eq!(m["inventories"][0]["uuid"], uuid(4));
        let m = run(&t, q, &a).unwrap();
        assert_eq!(m["total"], 1);
        let inv = &m["inventories"][0];
        assert_eq!(
            (
                inv["success"].clone(),
                inv["errorCode"].clone(),
                inv["state"].clone()
            ),
            (json!(false), json!("SYS.1007"), json!("Done"))
        );
        let m = run(
            &t,
            r#"{"conditions":[{"name":"success","op":"=","value":"false"}],"count":true}"#,
            &Caller::admin(),
        )
        .unwrap();
        assert_eq!(m["total"], 1);
        // Refusals: an unknown field, and the catalogue's mandatory `conditions`.
        let e = run(
            &t,
            r#"{"conditions":[{"name":"password","op":"=","value":"x"}]}"#,
            &Caller::admin(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "SYS.1007");
        let e = plan_query("{}").unwrap_err();
        assert_eq!(e.code.as_str(), "SYS.1007");
    }

    #[test]
    fn retention_expires_oldest_first_in_bounded_batches() {
        let mut t = MemTxn::default();
        let day = 86_400_000;
        let records = (0..10)
            .map(|i| sync_record(i, (i as u64 + 1) * day, &Caller::admin(), "QueryZone", true))
            .collect();
        append(&mut t, 1, records).unwrap();
        // At day 35, records created up to day 5 are past the 30-day default.
        let mut at = ctx(2);
        at.proposed_at_ms = 35 * day;
        let expire = |t: &mut MemTxn, limit| {
            apply(t, &at, &Caller::admin(), AuditOp::Expire { limit }).unwrap()
        };
        assert_eq!(expire(&mut t, 3), AuditResult::Expired(3));
        assert_eq!(expire(&mut t, 3), AuditResult::Expired(2));
        assert_eq!(expire(&mut t, 3), AuditResult::Expired(0));
        assert!(get(&t, &uuid(4)).unwrap().is_none());
        assert!(get(&t, &uuid(5)).unwrap().is_some());
        // Index entries went with the records.
        assert_eq!(t.tables[INDEX_TABLE].len(), 5 * 3);
        let m = run(&t, r#"{"conditions":[],"count":true}"#, &Caller::admin()).unwrap();
        assert_eq!(m["total"], 5);
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Audit.
        {
            let (job, zone2) = (i.zone2_job.clone(), i.zone2.clone());
            m.push(ok(
                "QueryAudit",
                &admin,
                json!({"conditions": eq("apiName", "CreateZone")}),
                move |_, r| {
                    let inv = &r["inventories"][0];
                    assert_eq!(inv["jobUuid"], job.as_str());
                    assert_eq!(inv["resourceUuid"], zone2.as_str());
                    assert_eq!(inv["success"], true);
                },
            ));
        }
        m.push(ok(
            "QueryAudit",
            &tenant,
            json!({"conditions": []}),
            |_, r| {
                assert_eq!(
                    r["inventories"],
                    json!([]),
                    "a tenant sees only its own calls"
                )
            },
        ));
        m.push(no("QueryAudit", &admin, bad_query(), Code::InvalidArgument));
        m
    }
}
