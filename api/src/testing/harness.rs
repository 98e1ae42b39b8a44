//! The wire-level test harness: a request goes through the same interpreter the node runs
//! (`interpret::run`), over in-memory effects. Proposals are applied at once (a refused
//! command's writes discarded, as the state machine does); an async call's command is applied
//! directly, as the job executor would, and answered as a finished job; the host probe
//! succeeds.

use std::cell::Cell;
use std::cell::RefCell;
use std::future::Future;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::ctx;
use super::MemTxn;
use crate::call::ApiCall;
use crate::call::CallOutcome;
use crate::catalogue::CallSpec;
use crate::interpret;
use crate::interpret::CallOptions;
use crate::interpret::Effects;
use crate::interpret::Outcome;
use crate::job;
use crate::job::ApiJob;
use crate::plan;
use crate::plan::HostEndpoint;
use crate::plan::Plan;
use crate::plan::QueryFn;
use crate::plan::Stamp;
use crate::query::Query;
use crate::wire::envelope::decode_request;
use crate::wire::envelope::ApiRequest;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// The uuid stamped at step `n` (what `Stamp::new_uuid` holds).
pub(crate) fn stamp_uuid(n: u32) -> String {
    format!("{:032x}", 0xabc0_0000u32 + n)
}

/// Who sends a request.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// A caller the node already resolved (no session in the request).
    As(Caller),
    /// A session uuid: put in the request as `session.uuid` and resolved as the node does
    /// (`ID.1001` before planning when it is unknown or expired).
    Session(String),
}

/// Apply a command as the state machine does: a refused command's writes are discarded.
pub(crate) fn apply_kept(t: &mut MemTxn, n: u32, command: Command) -> Response {
    let before = t.tables.clone();
    let resp = crate::apply(t, &ctx(u64::from(n)), command).expect("storage failure");
    if !resp.keeps_writes() {
        t.tables = before;
    }
    resp
}

struct MemEffects<'a> {
    t: RefCell<&'a mut MemTxn>,
    n: u32,
    who: &'a Who,
    proposals: Cell<u32>,
    /// A command committed elsewhere that this node applies during its next barrier (how a
    /// follower catches up with another node's write).
    arrives: RefCell<Option<Command>>,
}

impl Effects for MemEffects<'_> {
    fn read<T>(&self, f: impl FnOnce(&dyn StateTxn) -> T) -> T {
        let t = self.t.borrow();
        f(&**t)
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            now_ms: 1_000 * u64::from(self.n),
            new_uuid: stamp_uuid(self.n),
            salt: [0; 16],
            key: crate::testing::key(),
        }
    }

    fn barrier(&self) -> impl Future<Output = Result<(), Refusal>> {
        if let Some(cmd) = self.arrives.borrow_mut().take() {
            apply_kept(&mut self.t.borrow_mut(), self.n, cmd);
        }
        std::future::ready(Ok(()))
    }

    fn propose(
        &self,
        cmd: Command,
        _request_id: Option<String>,
    ) -> impl Future<Output = Result<Response, Refusal>> {
        self.proposals.set(self.proposals.get() + 1);
        let mut t = self.t.borrow_mut();
        let resp = match cmd {
            // The executor's part, at once: an async call's command applied as its job's only
            // step, its result the job's.
            Command::Call(c) => {
                let ApiCall { job, command, .. } = *c.op;
                let resp = match job.as_ref().and_then(|j| j.flow.clone()) {
                    Some(flow) => emulate_flow(&mut t, self.n, &flow, &command),
                    None => apply_kept(&mut t, self.n, *command),
                };
                Response::Call(match job {
                    None => CallOutcome::Answer(Box::new(resp)),
                    Some(ticket) => {
                        let (success, result) = job::render(&**t, &ticket.reply_class, &resp);
                        let now = 1_000 * u64::from(self.n);
                        CallOutcome::Accepted(Box::new(ApiJob {
                            version: job::RECORD_VERSION,
                            uuid: ticket.uuid,
                            api_name: ticket.api_name,
                            reply_class: ticket.reply_class,
                            state: job::JobState::Done,
                            create_date: now,
                            last_op_date: now,
                            result: Some(result),
                            success: Some(success),
                            seq: u64::from(self.n),
                            chain: ticket.chain,
                            caller: Caller::admin(),
                            flow: None,
                            history: Vec::new(),
                        }))
                    }
                })
            }
            other => apply_kept(&mut t, self.n, other),
        };
        std::future::ready(Ok(resp))
    }

    fn query(
        &self,
        run: QueryFn,
        query: Query,
        caller: Caller,
    ) -> impl Future<Output = Result<Map<String, Value>, ApiError>> {
        let t = self.t.borrow();
        std::future::ready(run(&**t, &query, &caller).map(plan::query_reply))
    }

    fn probe(&self, _endpoint: &HostEndpoint) -> impl Future<Output = Result<(), String>> {
        std::future::ready(Ok(()))
    }

    fn renew_session(&self, _session_uuid: String) {}

    fn job_accepted(&self) {}

    fn caller(
        &self,
        spec: &CallSpec,
        session_uuid: Option<&str>,
        now_ms: u64,
    ) -> Result<Caller, Refusal> {
        match self.who {
            Who::As(c) => Ok(c.clone()),
            Who::Session(_) => self.read(|s| {
                crate::families::identity::session_caller(s, &spec.class, session_uuid, now_ms)
                    .map(|(c, _)| c)
                    .map_err(|e| plan::refusal_of(&e))
            }),
        }
    }
}

/// Run a future whose every await is ready (the in-memory effects never wait).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("in-memory effects never wait"),
    }
}

/// The reply's fields (without `success`), or its error as a refusal.
fn fields_of(reply: &Value) -> Result<Map<String, Value>, Refusal> {
    let mut m = reply.as_object().cloned().unwrap_or_default();
    if m.remove("success") == Some(Value::Bool(true)) {
        return Ok(m);
    }
    let e = m.get("error").cloned().unwrap_or(Value::Null);
    Err(serde_json::from_value::<crate::wire::errors::ErrorCode>(e)
        .map(|e| Refusal::from_error_code(&e))
        .unwrap_or_else(|e| Refusal::new(crate::wire::errors::Code::Internal, e.to_string())))
}

/// The request `{class of name: body}`, decoded as the node decodes it.
pub(crate) fn request(name: &str, body: Value) -> ApiRequest {
    let spec = crate::catalogue::catalogue()
        .by_name(name)
        .unwrap_or_else(|| panic!("{name} not in catalogue"));
    let raw = json!({ spec.class.clone(): body }).to_string();
    decode_request(raw.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The plan of `{class of name: body}` as the admin, with stamp `stamp`.
pub(crate) fn admin_plan(name: &str, body: Value, stamp: &Stamp) -> Plan {
    crate::plan::plan(&request(name, body), &Caller::admin(), stamp)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Send `{class of name: body}` as `who` at step `n` (time `1000 * n` ms, new uuid
/// [`stamp_uuid`]`(n)`) through the interpreter. Returns the reply's fields (without
/// `success`) or the refusal.
/// The scripted answers of the side effects flows ask for (the node's receivers in
/// production): a host's agent reports an 8-thread, 16 GiB KVM host; an image store's, a
/// 100 GiB file system with 60 GiB free.
pub(crate) fn scripted_effect(
    request: &crate::flow::EffectRequest,
) -> Result<crate::flow::Vars, Refusal> {
    use crate::families::backup_storage::flows as stores;
    use crate::families::backup_storage::reconnect as bs;
    use crate::families::host::flows;
    use crate::families::image::export_flows as exports;
    use crate::families::image::flows as images;
    use crate::families::primary_storage::flows as ps;
    use crate::families::vm::flows as vm;
    use crate::families::vm::volume_flows;
    match (request.receiver.as_str(), request.action.as_str()) {
        (flows::RECEIVER, flows::CONNECT) => {
            let facts = crate::families::host::HostFacts {
                cpu_threads: 8,
                cpu_sockets: 1,
                memory_bytes: 16 << 30,
                architecture: "x86_64".into(),
                os_distribution: "debian".into(),
                os_release: "bookworm".into(),
                os_version: "12".into(),
            };
            Ok(crate::flow::Vars::from([
                (
                    flows::vars::FACTS.into(),
                    serde_json::to_string(&facts).unwrap_or_default(),
                ),
                (flows::vars::VIRTUALIZATION.into(), "kvm".into()),
            ]))
        }
        (flows::RECEIVER, flows::DISCONNECT) => Ok(crate::flow::Vars::new()),
        // An image store's agent answers (not installed by the step) with a 100 GiB file
        // system, 60 GiB free.
        (stores::RECEIVER, stores::CONNECT) => Ok(crate::flow::Vars::from([
            (stores::vars::TOTAL.into(), (100u64 << 30).to_string()),
            (stores::vars::AVAILABLE.into(), (60u64 << 30).to_string()),
            (stores::vars::DEPLOYED.into(), "false".into()),
        ])),
        (stores::RECEIVER, stores::DISCONNECT) => Ok(crate::flow::Vars::new()),
        // Image stores hold a 1 GiB (virtual) image of the registered format.
        (images::RECEIVER, images::DOWNLOAD) => {
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let stored: std::collections::BTreeMap<String, images::Stored> = p["stores"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let bs = s["backupStorageUuid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let st = images::Stored {
                        path: format!(
                            "/bs/{}/images/{}.img",
                            bs,
                            p["imageUuid"].as_str().unwrap_or("")
                        ),
                        format: p["format"].as_str().unwrap_or("qcow2").to_string(),
                        virtual_size: 1 << 30,
                        actual_size: 300 << 20,
                        md5: "0123456789abcdef0123456789abcdef".into(),
                    };
                    (bs, st)
                })
                .collect();
            Ok(crate::flow::Vars::from([(
                images::STORED.into(),
                serde_json::to_string(&stored).unwrap_or_default(),
            )]))
        }
        (images::RECEIVER, images::DELETE) => Ok(crate::flow::Vars::new()),
        // Every host measures a primary storage at 100 GiB, 60 GiB of it free.
        (ps::RECEIVER, ps::MEASURE) => {
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let targets: Vec<crate::families::primary_storage::StorageOnHost> =
                serde_json::from_value(p["targets"].clone()).unwrap_or_default();
            let answers: Vec<ps::HostAnswer> = targets
                .iter()
                .map(|t| ps::HostAnswer::of(t, Ok((100 << 30, 60 << 30))))
                .collect();
            Ok(crate::flow::Vars::from([(
                ps::vars::ANSWERS.into(),
                serde_json::to_string(&answers).unwrap_or_default(),
            )]))
        }
        // An image store measures 500 GiB, 200 GiB of it free.
        (bs::RECEIVER, bs::CONNECT) => Ok(crate::flow::Vars::from([(
            bs::vars::ANSWER.into(),
            serde_json::to_string(&bs::StoreAnswer {
                total: 500 << 30,
                available: 200 << 30,
                error: None,
            })
            .unwrap_or_default(),
        )])),
        (images::RECEIVER, exports::EXPORT_ACTION) => {
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let e = exports::Exported {
                url: format!(
                    "http://10.0.0.9:7273/exports/{}/0123456789abcdef0123456789abcdef/{}.{}",
                    p["backupStorageUuid"].as_str().unwrap_or(""),
                    p["name"].as_str().unwrap_or(""),
                    p["format"].as_str().unwrap_or("")
                ),
                md5: "0123456789abcdef0123456789abcdef".into(),
            };
            Ok(crate::flow::Vars::from([(
                exports::EXPORTED.into(),
                serde_json::to_string(&e).unwrap_or_default(),
            )]))
        }
        (images::RECEIVER, exports::UNEXPORT_ACTION) => Ok(crate::flow::Vars::new()),
        // A host's agent makes a 1 GiB root volume (1 MiB used) and obeys every domain call.
        (vm::RECEIVER, vm::actions::CREATE_ROOT_VOLUME) => {
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let root = &p["spec"]["disks"][0];
            let file = vm::VolumeFile {
                path: format!(
                    "{}/volumes/{}.qcow2",
                    root["storage"]["url"].as_str().unwrap_or(""),
                    root["volumeUuid"].as_str().unwrap_or("")
                ),
                virtual_size: 1 << 30,
                actual_size: 1 << 20,
            };
            Ok(crate::flow::Vars::from([(
                vm::vars::ROOT_FILE.into(),
                serde_json::to_string(&file).unwrap_or_default(),
            )]))
        }
        // A live migration ends with the domain running on the destination.
        (vm::RECEIVER, vm::actions::MIGRATE) => Ok(crate::flow::Vars::from([(
            vm::vars::DOMAIN_STATE.into(),
            "Running".into(),
        )])),
        // A host's evacuation: every migration lands, every stop stops.
        (vm::RECEIVER, vm::actions::EVACUATE) => {
            use crate::families::vm::evacuate as ev;
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let plan: ev::Evacuation =
                serde_json::from_value(p["evacuation"].clone()).map_err(|e| {
                    Refusal::new(crate::wire::errors::Code::InvalidArgument, e.to_string())
                })?;
            let done: std::collections::BTreeMap<String, ev::Outcome> = plan
                .items
                .iter()
                .map(|i| {
                    let o = match i.action {
                        ev::Move::Migrate { .. } => ev::Outcome::Migrated {
                            domain_state: "Running".into(),
                        },
                        ev::Move::Stop => ev::Outcome::Stopped,
                    };
                    (i.vm_uuid.clone(), o)
                })
                .collect();
            Ok(crate::flow::Vars::from([(
                vm::vars::EVACUATED.into(),
                serde_json::to_string(&done).unwrap_or_default(),
            )]))
        }
        // Every clone is copied at its source's size, but a host cannot copy a clone named
        // `broken` (its disk is full): that clone alone fails.
        (vm::RECEIVER, crate::families::vm::clone::actions::CLONE_VOLUMES) => {
            use crate::families::vm::clone as cl;
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let plans: Vec<cl::ClonePlan> =
                serde_json::from_value(p["clones"].clone()).map_err(|e| {
                    Refusal::new(crate::wire::errors::Code::InvalidArgument, e.to_string())
                })?;
            let done: Vec<cl::Cloned> = plans
                .iter()
                .map(|c| {
                    let spec = c.spec.as_ref();
                    let root = spec.and_then(|s| s.disks.first());
                    if spec.is_some_and(|s| s.name == "broken") {
                        return cl::Cloned {
                            uuid: c.uuid.clone(),
                            file: None,
                            error: Some("no space left on device".into()),
                        };
                    }
                    cl::Cloned {
                        uuid: c.uuid.clone(),
                        file: root.map(|d| vm::VolumeFile {
                            path: format!("{}/volumes/{}.qcow2", d.storage.url, d.volume_uuid),
                            virtual_size: d.size,
                            actual_size: 1 << 20,
                        }),
                        error: None,
                    }
                })
                .collect();
            Ok(crate::flow::Vars::from([(
                cl::vars::CLONED.into(),
                serde_json::to_string(&done).unwrap_or_default(),
            )]))
        }
        // A blank data volume or a resize: the file has the size asked for.
        (
            vm::RECEIVER,
            volume_flows::actions::CREATE_DATA_VOLUME | volume_flows::actions::RESIZE_VOLUME,
        ) => {
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let disk = &p["disk"];
            let file = vm::VolumeFile {
                path: format!(
                    "{}/volumes/{}.qcow2",
                    disk["storage"]["url"].as_str().unwrap_or(""),
                    disk["volumeUuid"].as_str().unwrap_or("")
                ),
                virtual_size: p["size"].as_u64().or(disk["size"].as_u64()).unwrap_or(0),
                actual_size: 196_608,
            };
            Ok(crate::flow::Vars::from([(
                volume_flows::vars::VOLUME_FILE.into(),
                serde_json::to_string(&file).unwrap_or_default(),
            )]))
        }
        // A snapshot freezes the volume's file under the volume's snapshot directory and
        // leaves the volume an overlay of it; a revert makes it an overlay of the snapshot.
        (
            vm::RECEIVER,
            crate::families::vm::snapshot_flows::actions::CREATE_SNAPSHOT
            | crate::families::vm::snapshot_flows::actions::REVERT_SNAPSHOT
            | crate::families::vm::snapshot_flows::actions::DELETE_SNAPSHOTS,
        ) => {
            use crate::families::vm::snapshot_flows as sf;
            let p: serde_json::Value = serde_json::from_str(&request.payload).unwrap_or_default();
            let url = p["storage"]["url"].as_str().unwrap_or("");
            let volume = p["volumeUuid"].as_str().unwrap_or("");
            let snap = p["snapshotUuids"][0].as_str().unwrap_or("");
            let top = vm::VolumeFile {
                path: format!("{url}/volumes/{volume}.qcow2"),
                virtual_size: 1 << 30,
                actual_size: 196_608,
            };
            let frozen = vm::VolumeFile {
                path: format!("{url}/volumes/{volume}.snapshots/{snap}.qcow2"),
                virtual_size: 1 << 30,
                actual_size: 1 << 20,
            };
            let files = if request.action == sf::actions::DELETE_SNAPSHOTS {
                sf::SnapshotFiles {
                    snapshot: None,
                    chain: vec![top.path.clone()],
                    volume: Some(top),
                }
            } else {
                sf::SnapshotFiles {
                    chain: vec![top.path.clone(), frozen.path.clone()],
                    snapshot: Some(frozen),
                    volume: Some(top),
                }
            };
            Ok(crate::flow::Vars::from([(
                sf::vars::FILES.into(),
                serde_json::to_string(&files).unwrap_or_default(),
            )]))
        }
        (vm::RECEIVER, _) => Ok(crate::flow::Vars::new()),
        (r, a) => Err(Refusal::new(
            crate::wire::errors::Code::NotSupported,
            format!("the test harness has no answer for {r}/{a}"),
        )),
    }
}

/// A call's flow as the leader runs it, without the job record: every step in order (the
/// first being the call's command), side effects answered by [`scripted_effect`]; a failing
/// step rolls back the ones before it and the call answers the failure.
fn emulate_flow(t: &mut MemTxn, n: u32, flow: &str, command: &Command) -> Response {
    use crate::flow::Action;
    use crate::flow::Undo;
    let def = crate::registry::flow(flow).unwrap_or_else(|| panic!("flow {flow} is not declared"));
    let mut vars = crate::flow::command_vars(command).expect("command vars");
    let c = ctx(u64::from(n));
    let mut last = None;
    let mut failure: Option<(usize, Refusal)> = None;
    for (k, s) in def.steps.iter().enumerate() {
        let r = match &s.action {
            Action::Commit(f) => {
                let mut staged = crate::staged::Staged::new(&mut *t);
                let mut scratch = vars.clone();
                let r = f(&mut staged, &c, &Caller::admin(), &mut scratch);
                if r.is_ok() {
                    staged.commit().expect("commit");
                    vars = scratch;
                }
                r.map_err(|e| plan::refusal_of(&e))
            }
            Action::Effect(f) => f(&vars)
                .map_err(|e| plan::refusal_of(&e))
                .and_then(|req| scripted_effect(&req))
                .map(|v| {
                    vars.extend(v);
                    None
                }),
        };
        match r {
            Ok(Some(resp)) => last = Some(resp),
            Ok(None) => {}
            Err(e) => {
                failure = Some((k, e));
                break;
            }
        }
    }
    let Some((k, e)) = failure else {
        return last.unwrap_or(Response::Refused(ApiError::Refused(Refusal::new(
            crate::wire::errors::Code::Internal,
            format!("flow {flow} answered nothing"),
        ))));
    };
    for s in def.steps[..k].iter().rev() {
        match &s.undo {
            Undo::Nothing => {}
            Undo::Commit(f) => {
                let _ = f(t, &c, &Caller::admin(), &mut vars);
            }
            Undo::Effect(f) => {
                let _ = f(&vars).map(|req| scripted_effect(&req));
            }
        }
    }
    Response::Refused(ApiError::Refused(e))
}

pub(crate) fn send(
    t: &mut MemTxn,
    n: u32,
    who: &Who,
    name: &str,
    body: Value,
) -> Result<Map<String, Value>, Refusal> {
    send_as_behind(t, n, who, name, body, None)
}

/// [`send`] on a node that has not applied `arrives` yet: it catches up with it at its first
/// barrier, as a follower does with a write committed through another node.
pub(crate) fn send_as_behind(
    t: &mut MemTxn,
    n: u32,
    who: &Who,
    name: &str,
    mut body: Value,
    arrives: Option<Command>,
) -> Result<Map<String, Value>, Refusal> {
    if let (Who::Session(s), Some(b)) = (who, body.as_object_mut()) {
        b.insert("session".into(), json!({ "uuid": s }));
    }
    let req = request(name, body);
    let spec = plan::call_of(&req)?;
    let fx = MemEffects {
        t: RefCell::new(t),
        n,
        who,
        proposals: Cell::new(0),
        arrives: RefCell::new(arrives),
    };
    match ready(interpret::run(&fx, spec, req, &CallOptions::default())).outcome {
        Outcome::Done { reply, .. } => fields_of(&reply),
        Outcome::Accepted(j) | Outcome::Job(j) => {
            let result: Value = serde_json::from_str(j.result.as_deref().unwrap_or("{}"))
                .unwrap_or_else(|e| panic!("{name}: job result is not JSON: {e}"));
            let reply = result.as_object().and_then(|m| m.values().next()).cloned();
            fields_of(&reply.unwrap_or(Value::Null))
        }
    }
}
