//! Determinism of the replicated state machine: random sequences of cloud commands, applied
//! in random batch sizes to two fresh RocksDB state machines, leave byte-identical state, and
//! a third machine that receives a snapshot half-way and applies the rest ends up identical
//! too. Any hidden non-determinism in `apply` (hash-map order, clocks, randomness) fails it.

use api::audit::AuditOp;
use api::audit::AuditRecord;
use api::audit::AuditState;
use api::call::ApiCall;
use api::call::JobTicket;
use api::families::cluster::ClusterOp;
use api::families::global_config::GlobalConfigOp;
use api::families::host::HostOp;
use api::families::host::HostStateEvent;
use api::families::identity::IdentityOp;
use api::families::zone::ZoneOp;
use api::flow::Vars;
use api::job::FlowSpec;
use api::job::JobOp;
use api::job::Submission;
use api::kv::KvOp;
use api::leader::LeaderOp;
use api::resource::generic::EnableEvent;
use api::resource::generic::Rename;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use api::Caller;
use api::Command;
use futures::stream;
use node::applier::ModelApplier;
use proptest::prelude::*;
use raft_store::openraft::entry::RaftEntry;
use raft_store::openraft::storage::RaftStateMachine;
use raft_store::openraft::RaftSnapshotBuilder;
use raft_store::Entry;
use raft_store::Proposal;
use raft_store::StateMachineStore;
use raft_store::TypeConfig;

/// One sealed password for every generated command, so a case regenerates identically.
fn sealed_pw() -> api::secret::Sealed {
    static PW: std::sync::OnceLock<api::secret::Sealed> = std::sync::OnceLock::new();
    PW.get_or_init(|| api::secret::DataKey::from_bytes([3; 32]).seal("pw"))
        .clone()
}

fn uuid(i: u8) -> String {
    format!("{:032x}", 0xabc0_0000_u128 + i as u128)
}

fn phc(i: u8) -> String {
    // A fixed salt keeps the generated commands reproducible (the node draws a random one);
    // hashed once per value, argon2 being deliberately slow.
    static HASHES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    HASHES.get_or_init(|| {
        (0..6u8)
            .map(|i| {
                api::families::identity::hash_password(&format!("pw{i}"), b"fixed-salt-16byt")
                    .expect("hash")
            })
            .collect()
    })[i as usize % 6]
        .clone()
}

/// The first difference between two dumps, readably.
fn diff(a: &raft_store::StateDump, b: &raft_store::StateDump) -> Option<String> {
    if a.last_applied != b.last_applied {
        return Some(format!(
            "last_applied {:?} vs {:?}",
            a.last_applied, b.last_applied
        ));
    }
    for ((ta, ra), (_, rb)) in a.tables.iter().zip(&b.tables) {
        if ra != rb {
            let ka: Vec<String> = ra
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect();
            let kb: Vec<String> = rb
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect();
            let only_a: Vec<_> = ka.iter().filter(|x| !kb.contains(x)).collect();
            let only_b: Vec<_> = kb.iter().filter(|x| !ka.contains(x)).collect();
            return Some(format!(
                "table {ta}: only left {only_a:?}; only right {only_b:?}"
            ));
        }
    }
    (a != b).then(|| "membership differs".to_string())
}

fn normal(i: u8) -> Caller {
    Caller {
        account_uuid: uuid(i),
        user_uuid: uuid(i),
        admin: false,
    }
}

fn command() -> impl Strategy<Value = Command> {
    let small = 0u8..6;
    prop_oneof![
        (small.clone(), "[a-z]{0,3}", any::<bool>()).prop_map(|(i, name, d)| {
            api::IntoCommand::command(
                ZoneOp::Create {
                    uuid: uuid(i),
                    name,
                    description: None,
                    is_default: d,
                },
                Caller::admin(),
            )
        }),
        (small.clone(), any::<bool>()).prop_map(|(i, e)| api::IntoCommand::command(
            ZoneOp::ChangeState {
                uuid: uuid(i),
                event: if e {
                    EnableEvent::Enable
                } else {
                    EnableEvent::Disable
                },
            },
            Caller::admin()
        )),
        small.clone().prop_map(|i| api::IntoCommand::command(
            ZoneOp::Delete { uuid: uuid(i) },
            Caller::admin()
        )),
        (small.clone(), 0u8..3).prop_map(|(i, who)| api::IntoCommand::command(
            ZoneOp::Update {
                uuid: uuid(i),
                rename: Rename {
                    name: Some(format!("n{who}")),
                    description: None,
                },
                is_default: Some(who == 1),
            },
            if who == 0 {
                Caller::admin()
            } else {
                normal(who)
            }
        )),
        (
            prop_oneof![Just("session.timeout"), Just("session.maxConcurrent")],
            0u32..5000
        )
            .prop_map(|(n, v)| api::IntoCommand::command(
                GlobalConfigOp::Update {
                    category: "identity".into(),
                    name: n.into(),
                    value: v.to_string()
                },
                Caller::admin()
            )),
        Just(api::IntoCommand::command(
            GlobalConfigOp::ResetAll,
            Caller::admin()
        )),
        (small.clone(), "[a-c]{1,2}").prop_map(|(i, name)| api::IntoCommand::command(
            IdentityOp::CreateAccount {
                uuid: uuid(i),
                name,
                password: phc(i),
                description: None
            },
            Caller::admin()
        )),
        small.clone().prop_map(|i| api::IntoCommand::command(
            IdentityOp::DeleteAccount { uuid: uuid(i) },
            Caller::admin()
        )),
        (small.clone(), small.clone()).prop_map(|(a, u)| api::IntoCommand::command(
            IdentityOp::CreateUser {
                uuid: uuid(u + 100),
                name: format!("u{}", u % 2),
                password: phc(u),
                description: None
            },
            normal(a)
        )),
        (small.clone(), small.clone()).prop_map(|(s, a)| api::IntoCommand::command(
            IdentityOp::CreateSession {
                uuid: uuid(s + 200),
                account_uuid: uuid(a),
                user_uuid: uuid(a),
                user_type: "AccountVO".into()
            },
            Caller::admin()
        )),
        Just(api::IntoCommand::command(
            IdentityOp::ExpireSessions,
            Caller::admin()
        )),
        (small.clone(), small.clone(), any::<bool>()).prop_map(|(j, z, chained)| {
            api::IntoCommand::command(
                JobOp::Submit(Submission::command(
                    uuid(j + 50),
                    "CreateZone",
                    "org.zstack.header.zone.APICreateZoneEvent",
                    if chained { uuid(z) } else { String::new() },
                    zone_create(z, Caller::admin()),
                )),
                Caller::admin(),
            )
        }),
        (small.clone(), 0u32..3, any::<bool>()).prop_map(|(j, step, undo)| {
            api::IntoCommand::command(
                JobOp::Step {
                    uuid: uuid(j + 50),
                    step,
                    undo,
                },
                Caller::admin(),
            )
        }),
        // The three-step self-test flow, its side-effect outcomes and progress, in any order.
        (small.clone(), 0u8..3, 0u8..4).prop_map(|(j, key, fail)| {
            let mut vars = Vars::from([("key".to_string(), format!("k{key}"))]);
            if fail > 0 {
                vars.insert("fail_at".into(), fail.to_string());
            }
            api::IntoCommand::command(
                JobOp::Submit(Submission {
                    uuid: uuid(j + 50),
                    api_name: "FlowSelfTest".into(),
                    reply_class: "org.zstack.header.message.APIEvent".into(),
                    chain: format!("k{key}"),
                    flow: FlowSpec::Named {
                        flow: api::flow::selftest::FLOW.into(),
                        vars,
                    },
                }),
                Caller::admin(),
            )
        }),
        (small.clone(), any::<bool>(), any::<bool>(), 0u8..101).prop_map(|(j, undo, ok, pct)| {
            let op = if pct > 90 {
                JobOp::Progress {
                    uuid: uuid(j + 50),
                    step: 1,
                    percent: pct,
                }
            } else {
                JobOp::Effect {
                    uuid: uuid(j + 50),
                    step: 1,
                    undo,
                    outcome: if ok {
                        Ok(Vars::from([("token".to_string(), format!("t{pct}"))]))
                    } else {
                        Err(Refusal::new(Code::OperationFailure, "receiver refused"))
                    },
                }
            };
            api::IntoCommand::command(op, Caller::admin())
        }),
        // API calls as one entry: a session (live, unknown), a job or not, an audit record.
        (
            small.clone(),
            small.clone(),
            any::<bool>(),
            any::<bool>(),
            small.clone()
        )
            .prop_map(|(s, z, job, audited, j)| {
                let session = uuid(s + 200);
                api::IntoCommand::command(
                    ApiCall {
                        class: "org.zstack.header.zone.APICreateZoneMsg".into(),
                        session: Some(session),
                        job: job.then(|| JobTicket {
                            uuid: uuid(j + 50),
                            api_name: "CreateZone".into(),
                            reply_class: "org.zstack.header.zone.APICreateZoneEvent".into(),
                            chain: uuid(z),
                            flow: None,
                        }),
                        audit: audited.then(|| AuditRecord {
                            uuid: uuid(j + 150),
                            ..audit_record_of(j, false, true, 7)
                        }),
                        command: Box::new(zone_create(z, normal(s))),
                    },
                    Caller::admin(),
                )
            }),
        // Duty commands fenced by the term they were decided in (entries are of term 1).
        (small.clone(), 1u64..3).prop_map(|(z, term)| api::IntoCommand::command(
            LeaderOp::Fenced {
                term,
                command: Box::new(zone_create(z, Caller::admin())),
            },
            Caller::admin()
        )),
        ("[a-c]", proptest::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| {
            api::IntoCommand::command(KvOp::Put { key: k, value: v }, Caller::admin())
        }),
        // Clusters and KVM hosts (cluster uuid(30+i) in zone uuid(i), host uuid(40+h)), with
        // the cascades between them (state propagation, deletes).
        small.clone().prop_map(|i| api::IntoCommand::command(
            ClusterOp::Create {
                uuid: uuid(i + 30),
                zone_uuid: uuid(i),
                name: "c".into(),
                description: None,
                hypervisor_type: "KVM".into(),
                cluster_type: None,
                architecture: None,
            },
            Caller::admin()
        )),
        (small.clone(), any::<bool>()).prop_map(|(i, e)| api::IntoCommand::command(
            ClusterOp::ChangeState {
                uuid: uuid(i + 30),
                event: if e {
                    EnableEvent::Enable
                } else {
                    EnableEvent::Disable
                },
            },
            Caller::admin()
        )),
        small.clone().prop_map(|i| api::IntoCommand::command(
            ClusterOp::Delete { uuid: uuid(i + 30) },
            Caller::admin()
        )),
        (small.clone(), small.clone(), 0u8..3).prop_map(|(h, c, ip)| api::IntoCommand::command(
            HostOp::AddKvm {
                uuid: uuid(h + 40),
                cluster_uuid: uuid(c + 30),
                name: format!("h{h}"),
                description: None,
                management_ip: format!("10.0.0.{ip}"),
                username: "root".into(),
                password: sealed_pw(),
                ssh_port: 22,
            },
            Caller::admin()
        )),
        (small.clone(), 0u8..3).prop_map(|(h, e)| api::IntoCommand::command(
            HostOp::ChangeState {
                uuid: uuid(h + 40),
                event: [
                    HostStateEvent::Enable,
                    HostStateEvent::Disable,
                    HostStateEvent::Maintain
                ][usize::from(e)],
            },
            Caller::admin()
        )),
        (small.clone(), 0u8..3).prop_map(|(h, ip)| api::IntoCommand::command(
            HostOp::UpdateKvm {
                uuid: uuid(h + 40),
                name: None,
                description: None,
                management_ip: Some(format!("10.0.0.{ip}")),
                username: None,
                password: None,
                ssh_port: None,
            },
            Caller::admin()
        )),
        small.clone().prop_map(|h| api::IntoCommand::command(
            HostOp::Delete { uuid: uuid(h + 40) },
            Caller::admin()
        )),
        proptest::collection::vec(audit_record(), 1..4).prop_map(|records| {
            api::IntoCommand::command(AuditOp::Append { records }, Caller::admin())
        }),
        (1u32..4).prop_map(|limit| api::IntoCommand::command(
            AuditOp::Expire { limit },
            Caller::admin()
        )),
        Just(api::IntoCommand::command(
            GlobalConfigOp::Update {
                category: "audit".into(),
                name: "retention".into(),
                value: "60".into(),
            },
            Caller::admin()
        )),
    ]
}

fn zone_create(z: u8, caller: Caller) -> Command {
    api::IntoCommand::command(
        ZoneOp::Create {
            uuid: uuid(z),
            name: "job".into(),
            description: None,
            is_default: false,
        },
        caller,
    )
}

/// An audit record as a serving node sends it: a finished sync call, or an accepted job whose
/// uuid collides with the generated jobs (so accept/finish merges run in both orders).
fn audit_record() -> impl Strategy<Value = AuditRecord> {
    (0u8..6, any::<bool>(), any::<bool>(), 0u64..100_000)
        .prop_map(|(i, job, ok, at)| audit_record_of(i, job, ok, at))
}

fn audit_record_of(i: u8, job: bool, ok: bool, at: u64) -> AuditRecord {
    {
        let id = if job { uuid(i + 50) } else { uuid(i + 150) };
        AuditRecord {
            uuid: id.clone(),
            api_name: if job { "CreateZone" } else { "QueryZone" }.into(),
            message_class: "org.zstack.header.zone.APIQueryZoneMsg".into(),
            resource_uuid: None,
            account_uuid: Some(uuid(i)),
            user_uuid: Some(uuid(i)),
            operator: Some("op".into()),
            client_ip: Some("127.0.0.1".into()),
            request_dump: Some("{}".into()),
            success: (!job).then_some(ok),
            error_code: (!job && !ok).then(|| "SYS.1007".into()),
            error_description: None,
            error_details: None,
            job_uuid: job.then_some(id),
            state: if job {
                AuditState::Processing
            } else {
                AuditState::Done
            },
            create_date: 1_700_000_000_000 + at,
            finish_date: (!job).then_some(1_700_000_000_000 + at + 5),
            duration: (!job).then_some(5),
            node_id: Some(u64::from(i % 3) + 1),
            accepted: true,
        }
    }
}

fn entries(cmds: &[(Command, u64)]) -> Vec<Entry> {
    cmds.iter()
        .enumerate()
        .map(|(i, (c, dt))| {
            let index = i as u64 + 1;
            // Time moves forward in uneven steps, sometimes far enough to expire sessions.
            let ts = 1_700_000_000_000 + cmds[..=i].iter().map(|(_, d)| d).sum::<u64>() + dt;
            let rid = index.is_multiple_of(3).then(|| format!("r{}", index / 2));
            Entry::new_normal(
                raft_store::openraft::testing::log_id::<TypeConfig>(1, 1, index),
                Proposal::new(rid, ts, c),
            )
        })
        .collect()
}

fn apply_in_batches(
    rt: &tokio::runtime::Runtime,
    sm: &mut StateMachineStore<ModelApplier>,
    es: &[Entry],
    batch: usize,
) {
    for chunk in es.chunks(batch.max(1)) {
        let items: Vec<_> = chunk.iter().cloned().map(|e| Ok((e, None))).collect();
        rt.block_on(sm.apply(stream::iter(items))).expect("apply");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn replicas_agree_byte_for_byte(
        cmds in proptest::collection::vec((command(), prop_oneof![Just(0u64), 1u64..10_000, Just(8_000_000u64)]), 1..60),
        b1 in 1usize..8,
        b2 in 1usize..8,
        cut in 0usize..60,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let es = entries(&cmds);
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (_l1, mut a) = raft_store::open(dirs[0].path(), ModelApplier::default()).unwrap();
        let (_l2, mut b) = raft_store::open(dirs[1].path(), ModelApplier::default()).unwrap();
        apply_in_batches(&rt, &mut a, &es, b1);
        apply_in_batches(&rt, &mut b, &es, b2);
        let da = a.dump().unwrap();
        let d = diff(&da, &b.dump().unwrap());
        prop_assert!(d.is_none(), "replicas with different batching diverge: {}", d.unwrap_or_default());

        // A third replica: apply a prefix, ship a snapshot of it to a fresh store, continue there.
        let cut = cut.min(es.len());
        let (_l3, mut c) = raft_store::open(dirs[2].path(), ModelApplier::default()).unwrap();
        apply_in_batches(&rt, &mut c, &es[..cut], b1);
        let snap = rt.block_on(async { c.get_snapshot_builder().await.build_snapshot().await }).unwrap();
        let d_dir = tempfile::tempdir().unwrap();
        let (_l4, mut d) = raft_store::open(d_dir.path(), ModelApplier::default()).unwrap();
        rt.block_on(d.install_snapshot(&snap.meta, snap.snapshot)).unwrap();
        apply_in_batches(&rt, &mut d, &es[cut..], b2);
        let d = diff(&da, &d.dump().unwrap());
        prop_assert!(d.is_none(), "replica restored from a snapshot diverges: {}", d.unwrap_or_default());
    }
}
