//! A recorded client workload that speaks only ZStack's wire protocol (through
//! [`crate::zstack_client`]): concurrent clients create, delete and query zones, instance
//! offerings and user tags, and read and write a few registers (the description of per-run
//! zones, set with `UpdateZone`, read with a linearizable `QueryZone`). Every operation is
//! recorded with its invocation and completion time; one that never got a definite answer is
//! recorded without a completion (indeterminate). [`crate::checkers`] judges the history.
//!
//! Each operation starts on a node picked from the seeded generator and fails over to the next
//! node on connection errors, timeouts and "management node unavailable" answers, re-logging in
//! when the session is refused. Async calls carry an `X-Job-UUID`, and a retry reuses it, so a
//! retried call is one job, applied once.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use anyhow::Context;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::zstack_client::mix;
use crate::zstack_client::new_job_uuid;
use crate::zstack_client::Reply;
use crate::zstack_client::Submitted;
use crate::zstack_client::ZsClient;

/// Number of register keys (zones whose description is the register).
pub const REGISTERS: usize = 3;

/// Options of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadOpts {
    /// Concurrent client threads.
    pub clients: usize,
    /// Seed of the operation mix and node choice.
    pub seed: u64,
    /// Longest an operation may take (all retries included) before it is indeterminate.
    pub op_timeout: Duration,
    /// Unique id of this run; prefixes every name and value, so runs on one cluster never
    /// share a key.
    pub run_id: String,
}

/// The resource kinds the workload creates, deletes and queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// `APICreateZoneMsg` / `APIDeleteZoneMsg` / `APIQueryZoneMsg`.
    Zone,
    /// `APICreateInstanceOfferingMsg` / ... .
    InstanceOffering,
    /// `APICreateUserTagMsg` on the first register zone / `APIDeleteTagMsg` / `APIQueryUserTagMsg`.
    UserTag,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Zone, Kind::InstanceOffering, Kind::UserTag];

    /// Short label used in keys and names.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::InstanceOffering => "offering",
            Kind::UserTag => "tag",
        }
    }

    /// The query message of the kind.
    pub fn query_class(self) -> &'static str {
        match self {
            Kind::Zone => "org.zstack.header.zone.APIQueryZoneMsg",
            Kind::InstanceOffering => "org.zstack.header.configuration.APIQueryInstanceOfferingMsg",
            Kind::UserTag => "org.zstack.header.tag.APIQueryUserTagMsg",
        }
    }

    /// The inventory field holding the workload's unique name.
    pub fn name_field(self) -> &'static str {
        match self {
            Kind::UserTag => "tag",
            _ => "name",
        }
    }

    fn delete_class(self) -> &'static str {
        match self {
            Kind::Zone => "org.zstack.header.zone.APIDeleteZoneMsg",
            Kind::InstanceOffering => {
                "org.zstack.header.configuration.APIDeleteInstanceOfferingMsg"
            }
            Kind::UserTag => "org.zstack.header.tag.APIDeleteTagMsg",
        }
    }
}

/// The history key of a resource.
pub fn resource_key(kind: Kind, name: &str) -> String {
    format!("{}:{name}", kind.label())
}

/// The history key of register `i`.
pub fn register_key(i: usize) -> String {
    format!("reg:{i}")
}

/// The class of a zone update (a register write).
pub const UPDATE_ZONE: &str = "org.zstack.header.zone.APIUpdateZoneMsg";
const CREATE_ZONE: &str = "org.zstack.header.zone.APICreateZoneMsg";

/// What an operation asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    /// Register write (`UpdateZone` description := value).
    Write {
        /// The unique value.
        value: String,
    },
    /// Register read (linearizable `QueryZone` by uuid).
    Read,
    /// Create a resource with a unique name.
    Create {
        /// Kind.
        kind: Kind,
        /// Unique name.
        name: String,
    },
    /// Delete a resource this client created (its create was acknowledged).
    Delete {
        /// Kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// Its uuid.
        uuid: String,
    },
    /// Count the resources of a kind with a name.
    Query {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
}

/// What an operation was definitely answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "out", rename_all = "snake_case")]
pub enum Output {
    /// A write, create or delete succeeded (`uuid`: of the created resource, when returned).
    Ok {
        /// Created resource's uuid.
        uuid: Option<String>,
    },
    /// A register read saw this value (`None`: the register zone was not found).
    Value {
        /// The value.
        value: Option<String>,
    },
    /// A query found this many resources with the name.
    Found {
        /// The count.
        count: u64,
    },
    /// A definite refusal (the call had no effect).
    Failed {
        /// The error code.
        code: String,
    },
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Client thread.
    pub client: u64,
    /// Register or resource key ([`register_key`], [`resource_key`]).
    pub key: String,
    /// The node of the last attempt.
    pub node: String,
    /// The job uuid of an async call.
    pub job: Option<String>,
    /// Attempts made (a retry goes to another node).
    pub attempts: u32,
    /// Invocation, µs since the workload started (always ≥ 1).
    pub invoke_us: u64,
    /// Completion, µs since the workload started; `None`: indeterminate.
    pub complete_us: Option<u64>,
    /// The request.
    pub input: Input,
    /// The answer; `None` when indeterminate.
    pub output: Option<Output>,
    /// The last error seen, for reports.
    pub error: Option<String>,
}

/// One register: the description of a zone created at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterInfo {
    /// History key.
    pub key: String,
    /// The zone.
    pub zone_uuid: String,
    /// Its (unique) name.
    pub zone_name: String,
    /// The description it was created with.
    pub initial: String,
}

/// A recorded run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The run id (prefix of every name and value).
    pub run_id: String,
    /// Seed.
    pub seed: u64,
    /// Base URLs the clients used.
    pub endpoints: Vec<String>,
    /// The registers.
    pub registers: Vec<RegisterInfo>,
    /// Every operation, in completion order per client.
    pub ops: Vec<OpRecord>,
}

impl History {
    /// Number of recorded operations.
    pub fn ops(&self) -> u64 {
        self.ops.len() as u64
    }

    /// Write as JSON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let f =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(f), self)
            .with_context(|| format!("write {}", path.display()))
    }

    /// Read what [`History::save`] wrote.
    pub fn load(path: &Path) -> anyhow::Result<History> {
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        serde_json::from_reader(std::io::BufReader::new(f))
            .with_context(|| format!("parse {}", path.display()))
    }
}

/// Running clients; [`Workload::stop`] returns the history.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<OpRecord>>>,
    done: Arc<AtomicU64>,
    base: History,
}

impl Workload {
    /// Logs in and starts `clients` threads against the base URLs ("http://ip:port" of each
    /// node's HTTP API). Creates the register zones first.
    pub fn start(endpoints: Vec<String>, opts: WorkloadOpts) -> anyhow::Result<Workload> {
        if endpoints.is_empty() || opts.clients == 0 {
            bail!("a workload needs endpoints and clients");
        }
        let zs = ZsClient::new(opts.op_timeout)?;
        let session = zs.login(&endpoints, Duration::from_secs(60))?;
        let mut registers = Vec::new();
        for i in 0..REGISTERS {
            let name = format!("{}-reg-{i}", opts.run_id);
            let initial = format!("{}-init", opts.run_id);
            let uuid = create_checked(&zs, &endpoints, &session, &name, &initial)
                .with_context(|| format!("create register zone {name}"))?;
            registers.push(RegisterInfo {
                key: register_key(i),
                zone_uuid: uuid,
                zone_name: name,
                initial,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let regs = Arc::new(registers.clone());
        let threads = (0..opts.clients)
            .map(|c| {
                let mut client = Client {
                    id: c as u64,
                    rng: mix(opts.seed ^ mix(c as u64 + 1)),
                    zs: zs.clone(),
                    endpoints: endpoints.clone(),
                    session: session.clone(),
                    op_timeout: opts.op_timeout,
                    run_id: opts.run_id.clone(),
                    registers: regs.clone(),
                    t0,
                    seq: 0,
                    live: Vec::new(),
                    names: Vec::new(),
                    out: Vec::new(),
                };
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("workload-{c}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            client.one_op();
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        client.out
                    })
                    .context("spawn a workload client")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Workload {
            stop,
            threads,
            done,
            base: History {
                run_id: opts.run_id,
                seed: opts.seed,
                endpoints,
                registers,
                ops: Vec::new(),
            },
        })
    }

    /// Operations finished so far (any outcome).
    pub fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the clients and returns the recorded history. Operations in flight finish first
    /// (each within the op timeout).
    pub fn stop(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut h = self.base;
        for t in self.threads {
            if let Ok(ops) = t.join() {
                h.ops.extend(ops);
            }
        }
        h
    }
}

/// Create zone `name` and make sure it exists (a create acknowledged by a broken node may not
/// have happened); its uuid.
fn create_checked(
    zs: &ZsClient,
    endpoints: &[String],
    session: &str,
    name: &str,
    description: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let mut job = new_job_uuid();
    for i in 0.. {
        if Instant::now() >= deadline {
            break;
        }
        let node = &endpoints[i % endpoints.len()];
        let t = Duration::from_secs(10);
        let q = zs.sync(
            node,
            Kind::Zone.query_class(),
            json!({"conditions": [{"name": "name", "op": "=", "value": name}]}),
            Some(session),
            t,
        );
        match q {
            Ok(r) if r.success() => {
                if let Some(u) = r.inventories().first().and_then(|z| z["uuid"].as_str()) {
                    return Ok(u.to_string());
                }
            }
            // Not readable now: the create below (same job until one finishes) and the next
            // query settle it.
            _ => {}
        }
        match zs.call(
            node,
            node,
            CREATE_ZONE,
            json!({"name": name, "description": description}),
            session,
            &job,
            t,
        ) {
            // Done (successfully or not): the next round's query decides; a new job if the
            // zone is still missing.
            Ok(Some(r)) => {
                last = r.body.to_string();
                job = new_job_uuid();
            }
            Ok(None) => last = "job still pending".into(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("zone {name} not created within 60 s: {last}")
}

/// Error codes meaning "this node could not do it now": retry elsewhere (the call may still
/// have been applied, so async retries reuse the job uuid).
fn retryable(code: &str) -> bool {
    matches!(code, "SYS.1000" | "SYS.1001" | "SYS.1010" | "SYS.1012")
}

/// How one attempt ended.
enum Step {
    /// A definite answer.
    Done(Reply),
    /// Try the next node.
    Next(String),
    /// The session was refused: log in again, then retry.
    Relogin(String),
}

/// An async call's progress across attempts.
enum JobState {
    NotSubmitted,
    Submitted { misses: u32 },
}

struct Client {
    id: u64,
    rng: u64,
    zs: ZsClient,
    endpoints: Vec<String>,
    session: String,
    op_timeout: Duration,
    run_id: String,
    registers: Arc<Vec<RegisterInfo>>,
    t0: Instant,
    seq: u64,
    /// Resources whose create was acknowledged with a uuid and not yet deleted.
    live: Vec<(Kind, String, String)>,
    /// Every name this client tried to create.
    names: Vec<(Kind, String)>,
    out: Vec<OpRecord>,
}

impl Client {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng = mix(self.rng);
        self.rng % n.max(1)
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64 + 1
    }

    fn one_op(&mut self) {
        self.seq += 1;
        let r = self.rand(100);
        let kind = Kind::ALL[self.rand(3) as usize];
        match r {
            0..30 => {
                let i = self.rand(self.registers.len() as u64) as usize;
                self.write(i);
            }
            30..60 => {
                let i = self.rand(self.registers.len() as u64) as usize;
                self.read(i);
            }
            60..80 if !self.live.is_empty() && r >= 72 => {
                let i = self.rand(self.live.len() as u64) as usize;
                let (kind, name, uuid) = self.live.swap_remove(i);
                self.delete(kind, name, uuid);
            }
            60..80 => self.create(kind),
            _ if self.names.is_empty() => self.create(kind),
            _ => {
                let i = self.rand(self.names.len() as u64) as usize;
                let (kind, name) = self.names[i].clone();
                self.query(kind, name);
            }
        }
    }

    fn record(
        &mut self,
        key: String,
        input: Input,
        invoke_us: u64,
        result: Attempted,
        output: impl FnOnce(&Reply) -> Output,
    ) -> Option<Output> {
        let (complete_us, out) = match &result.reply {
            Some(r) => (Some(self.now_us()), Some(output(r))),
            None => (None, None),
        };
        self.out.push(OpRecord {
            client: self.id,
            key,
            node: result.node,
            job: result.job,
            attempts: result.attempts,
            invoke_us,
            complete_us,
            input,
            output: out.clone(),
            error: result.error,
        });
        out
    }

    fn write(&mut self, i: usize) {
        let reg = self.registers[i].clone();
        let value = format!("{}-c{}-{}", self.run_id, self.id, self.seq);
        let t = self.now_us();
        let res = self.run_async(
            UPDATE_ZONE,
            json!({"uuid": reg.zone_uuid, "description": value}),
        );
        self.record(reg.key, Input::Write { value }, t, res, |r| {
            ok_or_failed(r, None)
        });
    }

    fn read(&mut self, i: usize) {
        let reg = self.registers[i].clone();
        let t = self.now_us();
        let res = self.run_sync(
            Kind::Zone.query_class(),
            json!({"conditions": [{"name": "uuid", "op": "=", "value": reg.zone_uuid}]}),
        );
        self.record(reg.key, Input::Read, t, res, |r| {
            if r.success() {
                Output::Value {
                    value: r
                        .inventories()
                        .first()
                        .map(|z| z["description"].as_str().unwrap_or_default().to_string()),
                }
            } else {
                failed(r)
            }
        });
    }

    fn create(&mut self, kind: Kind) {
        let name = format!("{}-{}-c{}-{}", self.run_id, kind.label(), self.id, self.seq);
        let (class, fields) = match kind {
            Kind::Zone => (CREATE_ZONE, json!({"name": name, "description": "chaos"})),
            Kind::InstanceOffering => (
                "org.zstack.header.configuration.APICreateInstanceOfferingMsg",
                json!({"name": name, "cpuNum": 1, "memorySize": 1073741824u64}),
            ),
            Kind::UserTag => (
                "org.zstack.header.tag.APICreateUserTagMsg",
                json!({"resourceType": "ZoneVO", "resourceUuid": self.registers[0].zone_uuid, "tag": name}),
            ),
        };
        self.names.push((kind, name.clone()));
        let t = self.now_us();
        let res = self.run_async(class, fields);
        let out = self.record(
            resource_key(kind, &name),
            Input::Create {
                kind,
                name: name.clone(),
            },
            t,
            res,
            |r| ok_or_failed(r, r.inventory()["uuid"].as_str().map(str::to_string)),
        );
        if let Some(Output::Ok { uuid: Some(u) }) = out {
            self.live.push((kind, name, u));
        }
    }

    fn delete(&mut self, kind: Kind, name: String, uuid: String) {
        let t = self.now_us();
        let res = self.run_async(kind.delete_class(), json!({ "uuid": uuid }));
        self.record(
            resource_key(kind, &name),
            Input::Delete { kind, name, uuid },
            t,
            res,
            |r| ok_or_failed(r, None),
        );
    }

    fn query(&mut self, kind: Kind, name: String) {
        let t = self.now_us();
        let res = self.run_sync(
            kind.query_class(),
            json!({"conditions": [{"name": kind.name_field(), "op": "=", "value": name}]}),
        );
        self.record(
            resource_key(kind, &name),
            Input::Query { kind, name },
            t,
            res,
            |r| {
                if r.success() {
                    Output::Found {
                        count: r.inventories().len() as u64,
                    }
                } else {
                    failed(r)
                }
            },
        );
    }

    /// Per-request timeout: a quarter of the op timeout (at least 300 ms), within `deadline`.
    fn attempt_timeout(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(20) {
            return None;
        }
        Some(
            (self.op_timeout / 4)
                .max(Duration::from_millis(300))
                .min(left),
        )
    }

    fn relogin(&mut self, node: &str, timeout: Duration) {
        if let Ok(r) = self.zs.login_once(node, timeout) {
            if let Some(s) = r.inventory()["uuid"].as_str() {
                self.session = s.to_string();
            }
        }
    }

    /// Run attempts of `step` on successive nodes until a definite answer or the op timeout.
    fn attempts(
        &mut self,
        job: Option<String>,
        mut step: impl FnMut(&mut Self, &str, Duration) -> Step,
    ) -> Attempted {
        let deadline = Instant::now() + self.op_timeout;
        let mut idx = self.rand(self.endpoints.len() as u64) as usize;
        let mut res = Attempted {
            reply: None,
            node: String::new(),
            job,
            attempts: 0,
            error: None,
        };
        while let Some(t) = self.attempt_timeout(deadline) {
            let node = self.endpoints[idx % self.endpoints.len()].clone();
            res.attempts += 1;
            res.node = node.clone();
            match step(self, &node, t) {
                Step::Done(r) => {
                    res.reply = Some(r);
                    return res;
                }
                Step::Next(e) => {
                    res.error = Some(e);
                    idx += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Step::Relogin(e) => {
                    res.error = Some(e);
                    if let Some(t) = self.attempt_timeout(deadline) {
                        self.relogin(&node, t);
                    }
                    idx += 1;
                }
            }
        }
        res
    }

    fn run_sync(&mut self, class: &'static str, fields: Value) -> Attempted {
        self.attempts(None, |me, node, t| {
            match me
                .zs
                .sync(node, class, fields.clone(), Some(&me.session), t)
            {
                Ok(r) => classify(r),
                Err(e) => Step::Next(e.to_string()),
            }
        })
    }

    fn run_async(&mut self, class: &'static str, fields: Value) -> Attempted {
        let job = new_job_uuid();
        let mut state = JobState::NotSubmitted;
        self.attempts(Some(job.clone()), |me, node, t| match state {
            JobState::NotSubmitted => {
                match me
                    .zs
                    .submit(node, class, fields.clone(), &me.session, &job, t)
                {
                    Ok(Submitted::Done(r)) => classify(r),
                    Ok(Submitted::Processing(_)) => {
                        state = JobState::Submitted { misses: 0 };
                        // Poll the same node next: `attempts` moves on only on Next.
                        me.poll_job(node, &job, t, &mut state)
                    }
                    Err(e) => Step::Next(e.to_string()),
                }
            }
            JobState::Submitted { .. } => me.poll_job(node, &job, t, &mut state),
        })
    }

    /// Poll `job` on `node` for up to `t`: done → its reply (a job's result is definite);
    /// unknown twice in a row → submit again (same uuid, same job) on the next node.
    fn poll_job(&mut self, node: &str, job: &str, t: Duration, state: &mut JobState) -> Step {
        let until = Instant::now() + t;
        loop {
            match self
                .zs
                .poll(node, job, until.saturating_duration_since(Instant::now()))
            {
                Ok(Some(r)) => return Step::Done(r),
                Ok(None) => {
                    if let JobState::Submitted { misses } = state {
                        *misses += 1;
                        if *misses >= 20 {
                            *state = JobState::NotSubmitted;
                            return Step::Next(format!("job {job} unknown or pending on {node}"));
                        }
                    }
                }
                Err(e) => return Step::Next(e.to_string()),
            }
            if Instant::now() + Duration::from_millis(50) >= until {
                return Step::Next(format!("job {job} still pending on {node}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The outcome of an operation's attempts.
struct Attempted {
    reply: Option<Reply>,
    node: String,
    job: Option<String>,
    attempts: u32,
    error: Option<String>,
}

fn classify(r: Reply) -> Step {
    if r.success() {
        return Step::Done(r);
    }
    match r.error_code() {
        Some("ID.1001") => Step::Relogin(r.body.to_string()),
        Some(c) if retryable(c) => Step::Next(r.body.to_string()),
        _ => Step::Done(r),
    }
}

fn failed(r: &Reply) -> Output {
    Output::Failed {
        code: r.error_code().unwrap_or("?").to_string(),
    }
}

fn ok_or_failed(r: &Reply, uuid: Option<String>) -> Output {
    if r.success() {
        Output::Ok { uuid }
    } else {
        failed(r)
    }
}
