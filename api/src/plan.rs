//! From a decoded `/zstack/api` request to what must be done (a [`Plan`]), through the
//! family that declares the call. Everything that can be checked without state is checked
//! while planning, so bad input never reaches the log. The interpreter (`interpret.rs`) runs
//! the plan against the node's effects.

use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

use crate::catalogue;
use crate::catalogue::CallKind;
use crate::catalogue::CallSpec;
use crate::params::Body;
use crate::query::Query;
use crate::query::QueryOutput;
use crate::registry;
use crate::secret::DataKey;
use crate::secret::Sealed;
use crate::wire::envelope::ApiRequest;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::Command;
use crate::StateTxn;

/// Values the proposing node stamps into a command.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// A fresh uuid (32 lowercase hex) for whatever the call creates.
    pub new_uuid: String,
    /// Random salt for hashing a password the call carries.
    pub salt: [u8; 16],
    /// The cluster's data key: secrets the call carries are sealed with it here, before the
    /// command is proposed, so no plaintext reaches the log (`secret`).
    pub key: Arc<DataKey>,
}

/// What a family's plan function sees of a request.
pub struct PlanInput<'a> {
    /// The call.
    pub call: &'static CallSpec,
    /// The message body.
    pub body: &'a Body,
    /// The request's session uuid, if any.
    pub session_uuid: Option<&'a str>,
    /// Who asks (resolved from the session by the serving node).
    pub caller: &'a Caller,
    /// Time, uuid and salt stamped by the serving node.
    pub stamp: &'a Stamp,
}

impl PlanInput<'_> {
    /// A mandatory string field.
    pub fn required(&self, f: &str) -> Result<String, Refusal> {
        crate::params::required(self.body, f, self.call)
    }

    /// An optional string field.
    pub fn string(&self, f: &str) -> Option<String> {
        crate::params::string(self.body, f)
    }

    /// A mandatory password field, checked while still in clear, then sealed.
    pub fn sealed(&self, f: &str) -> Result<Sealed, Refusal> {
        let plain = zeroize::Zeroizing::new(self.required(f)?);
        self.seal(f, &plain)
    }

    /// An optional password field, checked and sealed when present.
    pub fn sealed_opt(&self, f: &str) -> Result<Option<Sealed>, Refusal> {
        match self.string(f) {
            None => Ok(None),
            Some(plain) => {
                let plain = zeroize::Zeroizing::new(plain);
                self.seal(f, &plain).map(Some)
            }
        }
    }

    fn seal(&self, f: &str, plain: &str) -> Result<Sealed, Refusal> {
        crate::validate::secret(f, plain).map_err(|e| refusal_of(&e))?;
        Ok(self.stamp.key.seal(plain))
    }

    /// The uuid of what the call creates: the client's `resourceUuid`, else the stamped one.
    pub fn new_uuid(&self) -> String {
        crate::params::new_uuid(self.body, &self.stamp.new_uuid)
    }

    /// A plan that proposes a family's op on behalf of the caller.
    pub fn propose(&self, op: impl crate::registry::IntoCommand) -> Plan {
        Plan::Propose {
            call: self.call,
            command: Box::new(op.command(self.caller.clone())),
        }
    }

    /// A plan that runs a query with this family's query function.
    pub fn query(&self, run: QueryFn) -> Result<Plan, Refusal> {
        Ok(Plan::Query {
            call: self.call,
            run,
            query: crate::query::parse_query(&self.call.class, self.body)?,
        })
    }
}

/// A query over the state as a caller sees it.
pub type QueryFn = fn(&dyn StateTxn, &Query, &Caller) -> Result<QueryOutput, ApiError>;

/// A sync read that is not a query: the reply's fields.
pub type ReadFn =
    Box<dyn Fn(&dyn StateTxn, &Caller) -> Result<Map<String, Value>, ApiError> + Send + Sync>;

/// A placement over local state: the command to propose on attempt `n` (0-based), given the
/// request's uuid (the client's `X-Job-UUID`, else the stamped uuid) for what it creates when
/// the call names no `resourceUuid`. The same uuid goes into every attempt and every client
/// retry, so neither can take capacity twice.
pub type PlaceFn = Box<dyn Fn(&dyn StateTxn, &str, u32) -> Result<Command, ApiError> + Send + Sync>;

/// How often a placement is computed for one call before its capacity error stands. A
/// refusal at apply means another placement took the capacity first, so each retry sees a
/// fuller cluster; a few attempts settle every race that still has room somewhere.
pub const PLACE_ATTEMPTS: u32 = 4;

/// Where a host is reached: what the serving node probes before proposing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEndpoint {
    /// IPv4 address or host name.
    pub management_ip: String,
    /// SSH port.
    pub ssh_port: u16,
    /// SSH user.
    pub username: String,
    /// SSH password, sealed: the node opens it only to hand it to the host agent.
    pub password: Sealed,
}

/// Dry-run a command on local state and name the host to reach before proposing it (`None`:
/// nothing to reach). Must not write to the state it is given.
pub type ProbeFn = fn(&mut dyn StateTxn, u64, &Command) -> Result<Option<HostEndpoint>, ApiError>;

/// The refusal of a call whose host could not be reached (call name, endpoint, cause).
pub type UnreachableFn = fn(&str, &HostEndpoint, &str) -> Refusal;

/// Who a login names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginTarget {
    /// `LogInByAccount`.
    Account {
        /// Account name.
        name: String,
    },
    /// `LogInByUser`.
    User {
        /// Account uuid, if sent.
        account_uuid: Option<String>,
        /// Account name, if sent.
        account_name: Option<String>,
        /// User name.
        user_name: String,
    },
}

/// What must be done for a request.
pub enum Plan {
    /// Run a query on (linearizably read) local state.
    Query {
        /// The call.
        call: &'static CallSpec,
        /// The family's query.
        run: QueryFn,
        /// The parsed query.
        query: Query,
    },
    /// Propose a command; for async calls the node answers with a job.
    Propose {
        /// The call.
        call: &'static CallSpec,
        /// The command.
        command: Box<Command>,
    },
    /// Verify credentials on the serving node, then propose the session command.
    LogIn {
        /// The call.
        call: &'static CallSpec,
        /// Who.
        target: LoginTarget,
        /// The client's password hash.
        password: String,
    },
    /// Close the named session (absent: nothing to do, still a success).
    LogOut {
        /// The call.
        call: &'static CallSpec,
        /// The session.
        session_uuid: Option<String>,
    },
    /// A sync call that reads state without being a query (`GetFreeIp`, ...).
    Read {
        /// The call.
        call: &'static CallSpec,
        /// What to read.
        read: ReadFn,
    },
    /// Like `Propose`, but the serving node first reaches the host `probe` names; if it
    /// cannot, the call is refused with `unreachable`'s error and nothing is written.
    ProbeThenPropose {
        /// The call.
        call: &'static CallSpec,
        /// The command.
        command: Box<Command>,
        /// Dry run → host to reach.
        probe: ProbeFn,
        /// The refusal when it cannot be reached.
        unreachable: UnreachableFn,
    },
    /// Compute a placement on (linearizably read) local state, then propose the command it
    /// gives (a capacity reservation). When the apply refuses it because the capacity went
    /// to a concurrent placement meanwhile (`HOST_ALLOCATION.1000` from the re-check), place
    /// again on the newer state, at most [`PLACE_ATTEMPTS`] times in all.
    PlaceThenPropose {
        /// The call.
        call: &'static CallSpec,
        /// State → the command to propose for this attempt (0-based).
        place: PlaceFn,
    },
    /// Answer `validSession` from state; never fails.
    ValidateSession {
        /// The call.
        call: &'static CallSpec,
        /// The session.
        session_uuid: String,
    },
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, call) = match self {
            Plan::Query { call, .. } => ("Query", call),
            Plan::Propose { call, .. } => ("Propose", call),
            Plan::LogIn { call, .. } => ("LogIn", call),
            Plan::LogOut { call, .. } => ("LogOut", call),
            Plan::Read { call, .. } => ("Read", call),
            Plan::ProbeThenPropose { call, .. } => ("ProbeThenPropose", call),
            Plan::PlaceThenPropose { call, .. } => ("PlaceThenPropose", call),
            Plan::ValidateSession { call, .. } => ("ValidateSession", call),
        };
        write!(f, "Plan::{what}({})", call.name)
    }
}

impl Plan {
    /// The call planned.
    pub fn call(&self) -> &'static CallSpec {
        match self {
            Plan::Query { call, .. }
            | Plan::Propose { call, .. }
            | Plan::LogIn { call, .. }
            | Plan::LogOut { call, .. }
            | Plan::Read { call, .. }
            | Plan::ProbeThenPropose { call, .. }
            | Plan::PlaceThenPropose { call, .. }
            | Plan::ValidateSession { call, .. } => call,
        }
    }
}

/// Whether a call needs a valid session (everything but login, logout and validation).
pub fn needs_session(call: &CallSpec) -> bool {
    !matches!(
        call.name.as_str(),
        "LogInByAccount" | "LogInByUser" | "LogOut" | "ValidateSession"
    )
}

/// Resolve the call of a request (`SYS.1008` for an unknown class, `SYS.1014` for a catalogued
/// call this build does not implement).
pub fn call_of(req: &ApiRequest) -> Result<&'static CallSpec, Refusal> {
    let spec = catalogue::catalogue().by_class(&req.class).ok_or_else(|| {
        Refusal::new(
            Code::UnknownMessage,
            format!("no service can deal with message[{}]", req.class),
        )
    })?;
    if registry::call(&spec.name).is_none() {
        return Err(not_implemented(&spec.name));
    }
    Ok(spec)
}

fn not_implemented(name: &str) -> Refusal {
    Refusal::new(
        Code::NotSupported,
        format!("API {name} is not implemented by this management node"),
    )
}

/// Whether this build implements the call named `name`.
pub fn is_implemented(name: &str) -> bool {
    registry::call(name).is_some()
}

/// Turn a request into a plan through the family declaring its call.
pub fn plan(req: &ApiRequest, caller: &Caller, stamp: &Stamp) -> Result<Plan, Refusal> {
    let call = call_of(req)?;
    catalogue::validate_params(call, &req.body)?;
    let decl = registry::call(&call.name).ok_or_else(|| not_implemented(&call.name))?;
    let input = PlanInput {
        call,
        body: &req.body,
        session_uuid: req.session_uuid.as_deref(),
        caller,
        stamp,
    };
    let plan = (decl.plan)(&input)?;
    // A create's `systemTags`/`userTags` go with it into the same apply.
    Ok(match (plan, decl.creates) {
        (Plan::Propose { call, command }, Some(vo)) => Plan::Propose {
            call,
            command: Box::new(crate::families::tag::with_create_tags(
                call, &req.body, caller, vo, *command,
            )?),
        },
        (
            Plan::ProbeThenPropose {
                call,
                command,
                probe,
                unreachable,
            },
            Some(vo),
        ) => Plan::ProbeThenPropose {
            call,
            command: Box::new(crate::families::tag::with_create_tags(
                call, &req.body, caller, vo, *command,
            )?),
            probe,
            unreachable,
        },
        (plan, _) => plan,
    })
}

/// The wire refusal for a domain error.
pub fn refusal_of(e: &ApiError) -> Refusal {
    match e {
        ApiError::Refused(r) => r.clone(),
        ApiError::InvalidArgument(d) => Refusal::new(Code::InvalidArgument, d.clone()),
        ApiError::NotFound { kind, id } => Refusal::new(
            Code::ResourceNotFound,
            format!("resource[uuid:{id}, type:{kind}VO] not found"),
        ),
        ApiError::Corrupt { .. } | ApiError::State(_) => {
            Refusal::new(Code::Internal, e.to_string())
        }
    }
}

/// Class of the envelope a refusal is sent in: the call's own reply class once the call is
/// known and its handler ran, else ZStack's generic `APIReply`/`APIEvent`.
pub fn generic_class(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Sync => crate::wire::envelope::GENERIC_REPLY,
        CallKind::Async => crate::wire::envelope::GENERIC_EVENT,
    }
}

/// A query's reply fields (`inventories`, `total`).
pub fn query_reply(out: QueryOutput) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(inv) = out.inventories {
        m.insert("inventories".into(), Value::Array(inv));
    }
    if let Some(t) = out.total {
        m.insert("total".into(), serde_json::json!(t));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::wire::envelope::decode_request;

    fn stamp() -> Stamp {
        Stamp {
            now_ms: 1_795_593_714_000,
            new_uuid: "f52fe55b64094ceb99b3893a238c4931".into(),
            salt: *b"0123456789abcdef",
            key: crate::testing::key(),
        }
    }

    fn req(s: &str) -> ApiRequest {
        decode_request(s.as_bytes()).unwrap()
    }

    #[test]
    fn create_then_query_through_the_wire_shapes() {
        let mut t = MemTxn::default();
        let r = req(
            r#"{"org.zstack.header.zone.APICreateZoneMsg":{"name":"Zone1","description":"Test","session":{"uuid":"s"}}}"#,
        );
        let Plan::Propose { call, command } = plan(&r, &Caller::admin(), &stamp()).unwrap() else {
            panic!()
        };
        assert_eq!(call.kind, CallKind::Async);
        let resp = crate::apply(&mut t, &ctx(1), *command).unwrap();
        let fields = resp.reply().unwrap();
        assert_eq!(
            fields["inventory"]["uuid"],
            "f52fe55b64094ceb99b3893a238c4931"
        );
        assert_eq!(fields["inventory"]["type"], "zstack");

        let q = req(
            r#"{"org.zstack.header.zone.APIQueryZoneMsg":{"conditions":[{"name":"name","op":"=","value":"zone1"}],"replyWithCount":true}}"#,
        );
        let Plan::Query { run, query, .. } = plan(&q, &Caller::admin(), &stamp()).unwrap() else {
            panic!()
        };
        let run_query = |t: &MemTxn, caller: &Caller| run(t, &query, caller).map(query_reply);
        let m = run_query(&t, &Caller::admin()).unwrap();
        assert_eq!(m["total"], 1);
        assert_eq!(m["inventories"][0]["name"], "Zone1");
        // A normal account sees none of the admin's zones.
        let other = Caller {
            account_uuid: "b".repeat(32),
            user_uuid: "b".repeat(32),
            admin: false,
        };
        let m = run_query(&t, &other).unwrap();
        assert_eq!(m["total"], 0);
    }

    #[test]
    fn refusals_before_anything_is_proposed() {
        let admin = Caller::admin();
        let e = plan(&req(r#"{"org.zstack.Foo":{}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.code, Code::UnknownMessage);
        let e = plan(
            &req(r#"{"org.zstack.header.vm.APIReimageVmInstanceMsg":{"vmInstanceUuid":"x"}}"#),
            &admin,
            &stamp(),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::NotSupported);
        let e = plan(
            &req(r#"{"org.zstack.header.zone.APICreateZoneMsg":{}}"#),
            &admin,
            &stamp(),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.details.contains("field[name]")),
            (Code::InvalidArgument, true)
        );
        let e = plan(&req(r#"{"org.zstack.header.zone.APIChangeZoneStateMsg":{"uuid":"u","stateEvent":"boom"}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        let e = plan(&req(r#"{"org.zstack.header.zone.APIQueryZoneMsg":{"conditions":[{"name":"name","op":"~=","value":"x"}]}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.details, "unknown QueryOp type[~=]");
    }

    #[test]
    fn implemented_calls_exist_in_the_catalogue() {
        for name in registry::calls().map(|c| c.name) {
            assert!(catalogue::catalogue().by_name(name).is_some(), "{name}");
        }
    }
}
