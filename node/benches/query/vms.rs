//! `QueryVmInstance` over N VM records (issue 20, done-when 5): one page of 100 sorted by
//! `createDate desc` with a count, a count alone, the web console's search `name like '%x%'`,
//! and a NIC address (`vmNics.ip = x`, and a prefix `vmNics.ip like '10.1.2.%'`), at 1 and N
//! concurrent clients on the engine level (a RocksDB state machine, local reads, no HTTP).
//!
//! The records are not made by `CreateVmInstance` flows (100 000 of them would take an hour of
//! agent work): a seeding applier writes `VmInstance` and root `Volume` records with
//! `api::resource::save`, the same function the VM family's apply calls, so the stored records,
//! index entries and joins (`allVolumes`) are what the family writes.
//!
//! Each case prints `bench=vm_query ...`; every reply's total and page size are checked
//! against a brute-force count, a mismatch panics.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::vm::VmInstance;
use api::families::vm::VmNic;
use api::families::vm::VmState;
use api::families::vm::Volume;
use api::families::vm::VolumeStatus;
use api::Caller;
use futures::stream;
use raft_store::openraft::entry::RaftEntry;
use raft_store::openraft::storage::RaftStateMachine;
use raft_store::Applier;
use raft_store::ApplyContext;
use raft_store::Entry;
use raft_store::Proposal;
use raft_store::StoreError;
use raft_store::Txn;
use raft_store::TypeConfig;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

const QUERY_CLASS: &str = "org.zstack.header.vm.APIQueryVmInstanceMsg";
/// One page of the VM list.
pub const PAGE: usize = 100;
/// Records per seeding entry.
const SEED_BATCH: usize = 500;
const HOSTS: usize = 1000;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// VM records.
    pub records: usize,
    /// Minimum time per case and client count.
    pub case_time: Duration,
    /// Minimum queries per case (per client).
    pub min_ops: usize,
    /// Concurrent clients per case.
    pub clients: Vec<usize>,
    /// Where the data dir goes.
    pub dir: std::path::PathBuf,
}

fn uuid_of(kind: u8, i: usize) -> String {
    let x = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ kind as u128;
    format!("{x:032x}")
}

fn name_of(i: usize) -> String {
    format!("vm-{i}")
}

fn ip_of(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn vm(i: usize) -> (VmInstance, Volume) {
    let uuid = uuid_of(1, i);
    let root = uuid_of(2, i);
    let host = uuid_of(3, i % HOSTS);
    let l3 = uuid_of(4, 0);
    let t = 1_700_000_000_000 + i as u64 * 1000;
    let running = !i.is_multiple_of(3);
    let vm = VmInstance {
        uuid: uuid.clone(),
        name: name_of(i),
        description: Some(format!("benchmark VM {i}")),
        zone_uuid: Some(uuid_of(5, 0)),
        cluster_uuid: Some(uuid_of(6, i % 10)),
        host_uuid: running.then(|| host.clone()),
        last_host_uuid: Some(host),
        instance_offering_uuid: Some(uuid_of(7, 0)),
        image_uuid: Some(uuid_of(8, 0)),
        root_volume_uuid: root.clone(),
        default_l3_network_uuid: Some(l3.clone()),
        platform: "Linux".into(),
        cpu_num: 1,
        memory_size: 1 << 30,
        allocator_strategy: None,
        state: if running {
            VmState::Running
        } else {
            VmState::Stopped
        },
        vm_nics: vec![VmNic {
            uuid: uuid_of(9, i),
            vm_instance_uuid: uuid.clone(),
            l3_network_uuid: l3,
            l2_network_uuid: Some(uuid_of(10, 0)),
            ip: Some(ip_of(i)),
            netmask: Some("255.0.0.0".into()),
            gateway: Some("10.0.0.1".into()),
            used_ip_uuid: Some(uuid_of(11, i)),
            static_ip: None,
            mac: format!(
                "fa:16:3e:{:02x}:{:02x}:{:02x}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ),
            device_id: 0,
            create_date: t,
            last_op_date: t,
        }],
        deleted_at: None,
        create_date: t,
        last_op_date: t,
    };
    let vol = Volume {
        uuid: root,
        name: format!("ROOT-for-{}", name_of(i)),
        description: None,
        primary_storage_uuid: Some(uuid_of(12, 0)),
        local_host_uuid: None,
        vm_instance_uuid: Some(uuid),
        root_image_uuid: Some(uuid_of(8, 0)),
        volume_type: "Root".into(),
        install_path: Some(format!(
            "/var/lib/zstack/ps/volumes/{}.qcow2",
            uuid_of(2, i)
        )),
        size: 1 << 30,
        actual_size: 1 << 20,
        format: "qcow2".into(),
        device_id: Some(0),
        state: api::resource::generic::EnableState::Enabled,
        status: VolumeStatus::Ready,
        create_date: t,
        last_op_date: t,
    };
    (vm, vol)
}

/// The seeding command: VM numbers `from..to`.
#[derive(Serialize, Deserialize)]
struct Seed {
    from: usize,
    to: usize,
}

/// Writes seeded records through `resource::save` into the model's tables.
struct SeedApplier;

struct Write<'t, 'db>(&'t mut Txn<'db>);

fn state_err(e: StoreError) -> api::StateError {
    api::StateError(e.to_string())
}

impl api::StateTxn for Write<'_, '_> {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, api::StateError> {
        self.0.get(table, key).map_err(state_err)
    }
    fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), api::StateError> {
        self.0.put(table, key, value).map_err(state_err)
    }
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), api::StateError> {
        self.0.delete(table, key).map_err(state_err)
    }
    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, api::StateError> {
        self.0.scan_prefix(table, prefix, limit).map_err(state_err)
    }
}

impl Applier for SeedApplier {
    type Command = Seed;
    type Response = ();

    fn tables(&self) -> Vec<&'static str> {
        api::tables()
    }

    fn format(&self) -> &'static str {
        "vm-query-bench"
    }

    fn apply(&self, txn: &mut Txn<'_>, _ctx: &ApplyContext, cmd: Seed) -> Result<(), StoreError> {
        let mut w = Write(txn);
        for i in cmd.from..cmd.to {
            let (v, vol) = vm(i);
            api::resource::save(&mut w, api::ADMIN_ACCOUNT_UUID, &v).expect("save vm");
            api::resource::save(&mut w, api::ADMIN_ACCOUNT_UUID, &vol).expect("save volume");
        }
        Ok(())
    }
}

type SeedSm = raft_store::StateMachineStore<SeedApplier>;

struct Read<'a>(&'a SeedSm);

impl api::StateTxn for Read<'_> {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, api::StateError> {
        self.0.get(table, key).map_err(state_err)
    }
    fn put(&mut self, table: &str, _: &[u8], _: Vec<u8>) -> Result<(), api::StateError> {
        Err(api::StateError(format!("read-only view: put {table}")))
    }
    fn delete(&mut self, table: &str, _: &[u8]) -> Result<(), api::StateError> {
        Err(api::StateError(format!("read-only view: delete {table}")))
    }
    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, api::StateError> {
        self.0.scan_prefix(table, prefix, limit).map_err(state_err)
    }
}

/// One case: request bodies rotated over, each with its expected (total, page size).
struct Case {
    name: &'static str,
    bodies: Vec<(Map<String, Value>, u64, usize)>,
}

fn body(conds: Value, count_only: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("conditions".into(), conds);
    if count_only {
        m.insert("count".into(), json!(true));
    } else {
        m.insert("limit".into(), json!(PAGE));
        m.insert("start".into(), json!(0));
        m.insert("replyWithCount".into(), json!(true));
        m.insert("sortBy".into(), json!("createDate"));
        m.insert("sortDirection".into(), json!("desc"));
    }
    m
}

fn cases(n: usize) -> Vec<Case> {
    let picks: Vec<usize> = (0..64)
        .map(|k: usize| (k.wrapping_mul(7919).wrapping_add(104_729)) % n)
        .collect();
    let names: Vec<String> = (0..n).map(name_of).collect();
    let ips: Vec<String> = (0..n).map(ip_of).collect();
    let page = |total: u64| (total as usize).min(PAGE);
    let infix = picks
        .iter()
        .map(|i| {
            let needle = format!("m-{i}");
            let total = names.iter().filter(|s| s.contains(&needle)).count() as u64;
            let conds = json!([{"name": "name", "op": "like", "value": format!("%{needle}%")}]);
            (body(conds, false), total, page(total))
        })
        .collect();
    let ip_eq = picks
        .iter()
        .map(|i| {
            let conds = json!([{"name": "vmNics.ip", "op": "=", "value": ip_of(*i)}]);
            (body(conds, false), 1, 1)
        })
        .collect();
    let ip_prefix = picks
        .iter()
        .map(|i| {
            let ip = ip_of(*i);
            let net = &ip[..ip.rfind('.').unwrap_or(0) + 1];
            let total = ips.iter().filter(|s| s.starts_with(net)).count() as u64;
            let conds = json!([{"name": "vmNics.ip", "op": "like", "value": format!("{net}%")}]);
            (body(conds, false), total, page(total))
        })
        .collect();
    vec![
        Case {
            name: "page",
            bodies: vec![(body(json!([]), false), n as u64, page(n as u64))],
        },
        Case {
            name: "count",
            bodies: vec![(body(json!([]), true), n as u64, 0)],
        },
        Case {
            name: "name_infix",
            bodies: infix,
        },
        Case {
            name: "nic_ip",
            bodies: ip_eq,
        },
        Case {
            name: "nic_ip_prefix",
            bodies: ip_prefix,
        },
    ]
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Load the records, run every case at every client count; the printed lines are returned.
pub fn run(cfg: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in(&cfg.dir).expect("tempdir");
    let (_log, mut sm) = raft_store::open(dir.path(), SeedApplier).expect("open store");
    let started = Instant::now();
    let mut index = 0u64;
    for from in (0..cfg.records).step_by(SEED_BATCH) {
        index += 1;
        let e = Entry::new_normal(
            raft_store::openraft::testing::log_id::<TypeConfig>(1, 1, index),
            Proposal::new(
                None,
                0,
                &Seed {
                    from,
                    to: (from + SEED_BATCH).min(cfg.records),
                },
            ),
        );
        rt.block_on(sm.apply(stream::iter(vec![Ok((e, None))])))
            .expect("apply");
    }
    let l = format!(
        "bench=vm_query_load records={} secs={:.1}",
        cfg.records,
        started.elapsed().as_secs_f64()
    );
    println!("{l}");
    lines.push(l);
    let sm = Arc::new(sm);
    let admin = Caller::admin();
    for case in cases(cfg.records) {
        for &clients in &cfg.clients {
            let lat = std::sync::Mutex::new(Vec::new());
            let wall = Instant::now();
            std::thread::scope(|s| {
                for c in 0..clients {
                    let (sm, case, lat, admin) = (&sm, &case, &lat, &admin);
                    s.spawn(move || {
                        let view = Read(sm);
                        let mut mine = Vec::new();
                        let start = Instant::now();
                        let mut i = c;
                        while mine.len() < cfg.min_ops || start.elapsed() < cfg.case_time {
                            let (b, total, size) = &case.bodies[i % case.bodies.len()];
                            let t = Instant::now();
                            let q = api::query::parse_query(QUERY_CLASS, b).expect("parses");
                            let out = api::resource::generic::visible_query::<VmInstance>(
                                &view, &q, admin,
                            )
                            .map(api::plan::query_reply)
                            .expect("query runs");
                            // What goes on the wire is part of the cost.
                            let text = serde_json::to_vec(&out).expect("encode");
                            mine.push(t.elapsed().as_micros() as u64);
                            assert_eq!(out["total"], json!(total), "{}: total", case.name);
                            let got = out
                                .get("inventories")
                                .and_then(Value::as_array)
                                .map_or(0, Vec::len);
                            assert_eq!(got, *size, "{}: page size", case.name);
                            assert!(!text.is_empty());
                            i += clients;
                        }
                        lat.lock().expect("lat").extend(mine);
                    });
                }
            });
            let wall = wall.elapsed().as_secs_f64();
            let mut v = lat.into_inner().expect("lat");
            v.sort_unstable();
            let l = format!(
                "bench=vm_query level=engine records={} case={} clients={clients} ops={} qps={:.1} p50_us={} p99_us={}",
                cfg.records,
                case.name,
                v.len(),
                v.len() as f64 / wall.max(1e-9),
                pct(&v, 0.5),
                pct(&v, 0.99)
            );
            println!("{l}");
            lines.push(l);
        }
    }
    lines
}
