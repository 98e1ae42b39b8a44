//! Checkers of a [`History`] recorded by [`crate::workload`]:
//!
//! - **linearizability per key** ([`crate::linearizability::check`]): a register key is a
//!   register of unique values (writes `Put`, reads `Get`); a resource key is a register of
//!   existence (create `Put("present")`, delete `Delete`, query `Get`). Definite refusals had no
//!   effect and are left out; an operation without an answer is indeterminate (it may take
//!   effect at any time after its invocation, or never); reads without an answer are left out.
//!   A long key history is cut into windows at quiescent points (no operation in flight); each
//!   window starts from the set of values the previous one may have ended with.
//! - **no acknowledged write lost**: the final state read through EVERY node (linearizable
//!   reads) must hold every resource whose create was acknowledged unless a delete may have
//!   removed it, must not hold a resource whose delete was acknowledged, and every register must
//!   hold a value some write may have written last.
//! - **no duplicate apply**: names are unique per create (a retry reuses the job uuid), so a
//!   name must never count more than one resource, neither in a query during the run nor in the
//!   final state.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashSet;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use crate::linearizability::check as check_linearizable;
use crate::linearizability::tighten_unique_writes;
use crate::linearizability::Model;
use crate::linearizability::Operation;
use crate::linearizability::Register;
use crate::linearizability::RegisterInput;
use crate::linearizability::RegisterOutput;
use crate::linearizability::Verdict;
use crate::workload::resource_key;
use crate::workload::History;
use crate::workload::Input;
use crate::workload::Kind;
use crate::workload::Output;
use crate::zstack_client::ZsClient;

/// Largest window of one key's history given to the search (cut at quiescent points).
pub const WINDOW_OPS: usize = 400;
/// Search budget per window.
pub const MAX_STEPS: u64 = 5_000_000;

/// The verdict on a history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Operations in the history.
    pub ops: u64,
    /// Keys whose history is not linearizable.
    pub violations: u64,
    /// Keys with an acknowledged write missing from some node's final state.
    pub lost: u64,
    /// Names that counted more than one resource.
    pub duplicates: u64,
    /// One line per finding (and per window the search could not decide).
    pub details: Vec<String>,
}

/// What one node holds at the end, for the workload's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalState {
    /// The node.
    pub node: String,
    /// Resource key → number of resources with that name.
    pub counts: BTreeMap<String, u64>,
    /// Register key → value (`None`: the register zone is gone).
    pub registers: BTreeMap<String, Option<String>>,
}

/// Read the final state through every endpoint, then run every checker.
pub fn check(history: &History, endpoints: &[String]) -> anyhow::Result<CheckReport> {
    let zs = ZsClient::new(Duration::from_secs(10))?;
    let session = zs.login(endpoints, Duration::from_secs(60))?;
    let mut finals = Vec::new();
    let mut unreadable = Vec::new();
    for node in endpoints {
        match read_final_state(&zs, node, &session, history, Duration::from_secs(30)) {
            Ok(f) => finals.push(f),
            Err(e) => unreadable.push(format!("final state of {node} unreadable: {e:#}")),
        }
    }
    if finals.is_empty() {
        bail!("no node's final state is readable: {unreadable:?}");
    }
    let mut report = check_history(history, &finals);
    report.details.extend(unreadable);
    Ok(report)
}

/// Read the workload's resources and registers through `node` (linearizable reads),
/// retrying for up to `timeout`.
pub fn read_final_state(
    zs: &ZsClient,
    node: &str,
    session: &str,
    history: &History,
    timeout: Duration,
) -> anyhow::Result<FinalState> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = read_final_once(zs, node, session, history);
        match r {
            Ok(f) => return Ok(f),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn read_final_once(
    zs: &ZsClient,
    node: &str,
    session: &str,
    history: &History,
) -> anyhow::Result<FinalState> {
    let prefix = format!("{}-", history.run_id);
    let mut f = FinalState {
        node: node.to_string(),
        ..FinalState::default()
    };
    for reg in &history.registers {
        f.registers.insert(reg.key.clone(), None);
    }
    for kind in Kind::ALL {
        let field = kind.name_field();
        let r = zs.sync(
            node,
            kind.query_class(),
            json!({"conditions": [{"name": field, "op": "like", "value": format!("{prefix}%")}], "limit": 1_000_000}),
            Some(session),
            Duration::from_secs(10),
        )?;
        if !r.success() {
            bail!("{node}: {}", r.body);
        }
        for inv in r.inventories() {
            let name = inv[field].as_str().unwrap_or_default();
            if !name.starts_with(&prefix) {
                continue;
            }
            if kind == Kind::Zone {
                let uuid = inv["uuid"].as_str().unwrap_or_default();
                if let Some(reg) = history.registers.iter().find(|g| g.zone_uuid == uuid) {
                    let value = inv["description"].as_str().unwrap_or_default();
                    f.registers.insert(reg.key.clone(), Some(value.to_string()));
                    continue;
                }
            }
            *f.counts.entry(resource_key(kind, name)).or_insert(0) += 1;
        }
    }
    Ok(f)
}

type Op = Operation<RegisterInput, RegisterOutput>;

/// A register whose state before the history is one of `initial` (values are unique, so the
/// search pins it at the first read).
struct Window {
    initial: HashSet<Option<String>>,
}

impl Model for Window {
    /// `None`: still one of `initial`, not yet observed.
    type State = Option<Option<String>>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Self::State {
        if self.initial.len() == 1 {
            self.initial.iter().next().cloned()
        } else {
            None
        }
    }

    fn step(
        &self,
        s: &Self::State,
        input: &RegisterInput,
        out: Option<&RegisterOutput>,
    ) -> Option<Self::State> {
        match (s, input, out) {
            // Known value: exactly a register.
            (Some(cur), _, _) => Register.step(cur, input, out).map(Some),
            // Unknown yet: the first read that answers pins it to one of `initial`.
            (None, RegisterInput::Get, Some(RegisterOutput::Value(v))) => {
                self.initial.contains(v).then(|| Some(v.clone()))
            }
            (None, RegisterInput::Get, None) => Some(None),
            // The workload never swaps; a swap's outcome would depend on the unknown value.
            (None, RegisterInput::Cas { .. }, _) => None,
            // Writes do not depend on the value they replace.
            (None, _, _) => Register.step(&None, input, out).map(Some),
        }
    }
}

/// The history of one key as register operations (refusals and unanswered reads left out).
fn register_ops(history: &History, key: &str) -> Vec<Op> {
    let mut ops: Vec<Op> = history
        .ops
        .iter()
        .filter(|o| o.key == key)
        .filter(|o| !matches!(o.output, Some(Output::Failed { .. })))
        .filter_map(|o| {
            let input = match &o.input {
                Input::Write { value } => RegisterInput::Put(value.clone()),
                Input::Create { .. } => RegisterInput::Put("present".into()),
                Input::Delete { .. } => RegisterInput::Delete,
                Input::Read | Input::Query { .. } if o.output.is_none() => return None,
                Input::Read | Input::Query { .. } => RegisterInput::Get,
            };
            let output = o.output.as_ref().map(|out| match out {
                Output::Value { value } => RegisterOutput::Value(value.clone()),
                Output::Found { count } => {
                    RegisterOutput::Value((*count > 0).then(|| "present".to_string()))
                }
                _ => RegisterOutput::Ok,
            });
            Some(Operation {
                client: o.client,
                call: o.invoke_us,
                ret: o.complete_us,
                input,
                output,
            })
        })
        .collect();
    ops.sort_by_key(|o| (o.call, o.ret));
    ops
}

/// Values the register may hold after `ops` (sorted by call), given it held one of `before`:
/// the value of any write that no acknowledged write certainly followed, plus `before` when
/// no write was acknowledged.
fn may_be_last(ops: &[Op], before: &HashSet<Option<String>>) -> HashSet<Option<String>> {
    let writes: Vec<&Op> = ops
        .iter()
        .filter(|o| !matches!(o.input, RegisterInput::Get))
        .collect();
    // The latest invocation of an acknowledged write: a write that ended before it was
    // certainly overwritten.
    let last_acked_call = writes
        .iter()
        .filter(|w| w.ret.is_some())
        .map(|w| w.call)
        .max();
    let mut out: HashSet<Option<String>> = writes
        .iter()
        .filter(|w| last_acked_call.is_none_or(|c| c <= w.ret.unwrap_or(u64::MAX)))
        .map(|w| match &w.input {
            RegisterInput::Put(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    if last_acked_call.is_none() {
        out.extend(before.iter().cloned());
    }
    out
}

/// Cut `ops` (sorted by call) into windows of at least `max` operations where nothing is in
/// flight across the cut.
fn windows(ops: &[Op], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut max_ret) = (0usize, 0u64);
    for (i, o) in ops.iter().enumerate() {
        if i - start >= max && max_ret < o.call {
            out.push(start..i);
            start = i;
        }
        max_ret = max_ret.max(o.ret.unwrap_or(u64::MAX));
    }
    out.push(start..ops.len());
    out
}

/// Is the history of one key linearizable from `initial`? `Err(detail)` when not (or
/// undecided, with `Ok(false)` meaning "no verdict").
fn linearizable_key(key: &str, ops: &[Op], initial: Option<String>) -> Result<bool, String> {
    let mut before: HashSet<Option<String>> = HashSet::from([initial]);
    // Unanswered writes nobody saw are dropped and the others bounded by their first reader
    // (verdict-preserving, see `tighten_unique_writes`): besides keeping the search small,
    // a bounded write lets the history be cut into windows after it.
    let tight = tighten_unique_writes(ops, &before);
    let ops = &tight[..];
    let mut decided = true;
    for w in windows(ops, WINDOW_OPS) {
        let slice = &ops[w.clone()];
        let model = Window {
            initial: before.clone(),
        };
        match check_linearizable(&model, slice, MAX_STEPS) {
            Verdict::Linearizable => {}
            Verdict::Unknown => decided = false,
            Verdict::NotLinearizable { longest } => {
                let lin: HashSet<usize> = longest.into_iter().collect();
                let stuck: Vec<String> = slice
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !lin.contains(i))
                    .take(3)
                    .map(|(_, o)| {
                        format!(
                            "client {} {:?} -> {:?} [{}..{:?}]",
                            o.client, o.input, o.output, o.call, o.ret
                        )
                    })
                    .collect();
                return Err(format!(
                    "{key}: not linearizable (ops {}..{} of {} searched; first not linearizable: {})",
                    w.start,
                    w.end,
                    ops.len(),
                    stuck.join("; ")
                ));
            }
        }
        before = may_be_last(slice, &before);
    }
    Ok(decided)
}

/// Run every checker on `history` against the final states read from the nodes.
pub fn check_history(history: &History, finals: &[FinalState]) -> CheckReport {
    let mut report = CheckReport {
        ops: history.ops(),
        ..CheckReport::default()
    };
    let keys: BTreeSet<&str> = history.ops.iter().map(|o| o.key.as_str()).collect();
    let initial_of = |key: &str| {
        history
            .registers
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.initial.clone())
    };
    let mut lost = BTreeSet::new();
    let mut dups = BTreeSet::new();

    // Linearizability, per key.
    for key in &keys {
        let ops = register_ops(history, key);
        let register = history.registers.iter().any(|r| r.key == *key);
        match linearizable_key(key, &ops, if register { initial_of(key) } else { None }) {
            Ok(true) => {}
            Ok(false) => report.details.push(format!(
                "{key}: no linearizability verdict within {MAX_STEPS} steps ({} ops)",
                ops.len()
            )),
            Err(d) => {
                report.violations += 1;
                report.details.push(d);
            }
        }
    }
    // Register keys nobody touched still have a final value to check.
    for reg in &history.registers {
        let ops = register_ops(history, &reg.key);
        let allowed = may_be_last(&ops, &HashSet::from([Some(reg.initial.clone())]));
        for f in finals {
            let got = f.registers.get(&reg.key).cloned().flatten();
            if !allowed.contains(&got) {
                lost.insert(reg.key.clone());
                report.details.push(format!(
                    "{}: final value {got:?} on {} is no value a write may have left last",
                    reg.key, f.node
                ));
            }
        }
    }

    // Resources: acknowledged creates and deletes in the final state; duplicates.
    for key in keys
        .iter()
        .filter(|k| !history.registers.iter().any(|r| r.key == **k))
    {
        let ops: Vec<_> = history.ops.iter().filter(|o| o.key == *key).collect();
        let created = ops.iter().any(|o| {
            matches!(o.input, Input::Create { .. }) && matches!(o.output, Some(Output::Ok { .. }))
        });
        let delete_tried = ops.iter().any(|o| {
            matches!(o.input, Input::Delete { .. })
                && !matches!(o.output, Some(Output::Failed { .. }))
        });
        let deleted = ops.iter().any(|o| {
            matches!(o.input, Input::Delete { .. }) && matches!(o.output, Some(Output::Ok { .. }))
        });
        for o in &ops {
            if let Some(Output::Found { count }) = o.output {
                if count > 1 && dups.insert(key.to_string()) {
                    report.details.push(format!(
                        "{key}: a query through {} found {count} resources of one create",
                        o.node
                    ));
                }
            }
        }
        for f in finals {
            let n = f.counts.get(*key).copied().unwrap_or(0);
            if created && !delete_tried && n == 0 {
                lost.insert(key.to_string());
                report.details.push(format!(
                    "{key}: acknowledged create, never deleted, missing on {}",
                    f.node
                ));
            }
            if deleted && n > 0 {
                lost.insert(key.to_string());
                report.details.push(format!(
                    "{key}: acknowledged delete, yet {n} present on {}",
                    f.node
                ));
            }
            if n > 1 && dups.insert(key.to_string()) {
                report
                    .details
                    .push(format!("{key}: {n} resources of one create on {}", f.node));
            }
        }
    }
    // A name in a final state the history never created: a duplicate of nothing, still a
    // resource nobody asked for under this run's prefix.
    for f in finals {
        for (key, n) in &f.counts {
            if !keys.contains(key.as_str()) && dups.insert(key.clone()) {
                report
                    .details
                    .push(format!("{key}: {n} resources on {} nobody created", f.node));
            }
        }
    }
    report.lost = lost.len() as u64;
    report.duplicates = dups.len() as u64;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::register_key;
    use crate::workload::OpRecord;
    use crate::workload::RegisterInfo;

    fn rec(key: &str, t: (u64, Option<u64>), input: Input, output: Option<Output>) -> OpRecord {
        OpRecord {
            client: t.0 % 3,
            key: key.into(),
            node: "n1".into(),
            job: None,
            attempts: 1,
            invoke_us: t.0,
            complete_us: t.1,
            input,
            output,
            error: None,
        }
    }
    fn write(t0: u64, t1: u64, v: &str) -> OpRecord {
        rec(
            "reg:0",
            (t0, Some(t1)),
            Input::Write { value: v.into() },
            Some(Output::Ok { uuid: None }),
        )
    }
    fn read(t0: u64, t1: u64, v: &str) -> OpRecord {
        rec(
            "reg:0",
            (t0, Some(t1)),
            Input::Read,
            Some(Output::Value {
                value: Some(v.into()),
            }),
        )
    }
    fn zone(name: &str) -> Kind {
        let _ = name;
        Kind::Zone
    }
    fn create(t0: u64, t1: Option<u64>, name: &str) -> OpRecord {
        rec(
            &resource_key(Kind::Zone, name),
            (t0, t1),
            Input::Create {
                kind: zone(name),
                name: name.into(),
            },
            t1.map(|_| Output::Ok {
                uuid: Some(format!("u-{name}")),
            }),
        )
    }
    fn delete(t0: u64, t1: Option<u64>, name: &str) -> OpRecord {
        rec(
            &resource_key(Kind::Zone, name),
            (t0, t1),
            Input::Delete {
                kind: Kind::Zone,
                name: name.into(),
                uuid: format!("u-{name}"),
            },
            t1.map(|_| Output::Ok { uuid: None }),
        )
    }
    fn query(t0: u64, t1: u64, name: &str, count: u64) -> OpRecord {
        rec(
            &resource_key(Kind::Zone, name),
            (t0, Some(t1)),
            Input::Query {
                kind: Kind::Zone,
                name: name.into(),
            },
            Some(Output::Found { count }),
        )
    }
    fn history(ops: Vec<OpRecord>) -> History {
        History {
            run_id: "r".into(),
            seed: 1,
            endpoints: vec!["n1".into(), "n2".into()],
            registers: vec![RegisterInfo {
                key: register_key(0),
                zone_uuid: "z0".into(),
                zone_name: "r-reg-0".into(),
                initial: "init".into(),
            }],
            ops,
        }
    }
    fn finals(reg: &str, counts: &[(&str, u64)]) -> Vec<FinalState> {
        ["n1", "n2"]
            .iter()
            .map(|n| FinalState {
                node: n.to_string(),
                counts: counts
                    .iter()
                    .map(|(name, c)| (resource_key(Kind::Zone, name), *c))
                    .collect(),
                registers: BTreeMap::from([(register_key(0), Some(reg.to_string()))]),
            })
            .collect()
    }

    /// A history a correct cluster may produce: overlapping reads, an indeterminate write, a
    /// created, a created-then-deleted and a timed-out create.
    fn good() -> History {
        history(vec![
            read(1, 5, "init"),
            write(10, 20, "a"),
            read(15, 18, "init"),
            read(21, 25, "a"),
            write(30, 40, "b"),
            rec(
                "reg:0",
                (41, None),
                Input::Write { value: "c".into() },
                None,
            ),
            read(50, 55, "b"),
            create(1, Some(9), "z1"),
            query(10, 12, "z1", 1),
            create(2, Some(8), "z2"),
            delete(20, Some(30), "z2"),
            query(31, 33, "z2", 0),
            create(3, None, "z3"),
        ])
    }

    #[test]
    fn a_correct_history_passes() {
        let h = good();
        // The timed-out write may or may not have landed; the timed-out create likewise.
        for (reg, z3) in [("b", 0), ("c", 1)] {
            let r = check_history(&h, &finals(reg, &[("z1", 1), ("z3", z3)]));
            assert_eq!(
                (r.violations, r.lost, r.duplicates),
                (0, 0, 0),
                "{:#?}",
                r.details
            );
            assert_eq!(r.ops, 13);
        }
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let mut h = good();
        // b was acknowledged at 40; a read invoked at 60 still sees a.
        h.ops.push(read(60, 61, "a"));
        let r = check_history(&h, &finals("b", &[("z1", 1)]));
        assert_eq!(
            (r.violations, r.lost, r.duplicates),
            (1, 0, 0),
            "{:#?}",
            r.details
        );
        assert!(r.details[0].contains("reg:0"), "{:?}", r.details);
        // A read of the initial value after a write was acknowledged, likewise.
        let mut h = good();
        h.ops.push(read(26, 27, "init"));
        assert_eq!(check_history(&h, &finals("b", &[("z1", 1)])).violations, 1);
    }

    #[test]
    fn a_lost_write_is_flagged() {
        let h = good();
        // The acknowledged create of z1 is missing on the nodes.
        let r = check_history(&h, &finals("b", &[]));
        assert_eq!((r.violations, r.lost), (0, 1), "{:#?}", r.details);
        // The register went back to a value overwritten by an acknowledged write.
        let r = check_history(&h, &finals("a", &[("z1", 1)]));
        assert_eq!((r.violations, r.lost), (0, 1), "{:#?}", r.details);
        // An acknowledged delete that did not happen.
        let r = check_history(&h, &finals("b", &[("z1", 1), ("z2", 1)]));
        assert_eq!(r.lost, 1, "{:#?}", r.details);
        // A dropped create that a later query exposes is also a linearizability violation.
        let mut h = good();
        h.ops.push(query(50, 51, "z1", 0));
        let r = check_history(&h, &finals("b", &[]));
        assert_eq!((r.violations, r.lost), (1, 1), "{:#?}", r.details);
    }

    #[test]
    fn a_duplicate_apply_is_flagged() {
        let h = good();
        let r = check_history(&h, &finals("b", &[("z1", 2)]));
        assert_eq!(
            (r.violations, r.lost, r.duplicates),
            (0, 0, 1),
            "{:#?}",
            r.details
        );
        let mut h = good();
        h.ops.push(query(60, 61, "z1", 2));
        let r = check_history(&h, &finals("b", &[("z1", 1)]));
        assert_eq!(r.duplicates, 1, "{:#?}", r.details);
        // A resource under the run's prefix that no operation created.
        let r = check_history(&good(), &finals("b", &[("z1", 1), ("zx", 1)]));
        assert_eq!(r.duplicates, 1, "{:#?}", r.details);
    }

    #[test]
    fn long_histories_are_cut_into_windows_without_losing_stale_reads() {
        // Sequential writes and reads, far more than one window.
        let mut ops = Vec::new();
        let mut t = 1;
        for i in 0..(3 * WINDOW_OPS as u64) {
            ops.push(write(t, t + 1, &format!("v{i}")));
            ops.push(read(t + 2, t + 3, &format!("v{i}")));
            t += 4;
        }
        let last = format!("v{}", 3 * WINDOW_OPS - 1);
        let h = history(ops.clone());
        let r = check_history(&h, &finals(&last, &[]));
        assert_eq!((r.violations, r.lost), (0, 0), "{:#?}", r.details);
        assert!(windows(&register_ops(&h, "reg:0"), WINDOW_OPS).len() >= 3);
        // A stale read right after a cut (of a value from the previous window) is caught.
        let cut = windows(&register_ops(&h, "reg:0"), WINDOW_OPS)[1].start;
        let mut bad = ops;
        let stale = match &bad[cut - 2].input {
            Input::Write { value } => value.clone(),
            other => panic!("{other:?}"),
        };
        if let Some(Output::Value { value }) = &mut bad[cut + 1].output {
            *value = Some(stale);
        }
        let r = check_history(&history(bad), &finals(&last, &[]));
        assert_eq!(r.violations, 1, "{:#?}", r.details);
    }

    #[test]
    fn history_round_trips_through_a_file() {
        let h = good();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.json");
        h.save(&p).unwrap();
        assert_eq!(History::load(&p).unwrap(), h);
    }
}
