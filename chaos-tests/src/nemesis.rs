//! Fault injection for the reliability runs: a [`Fault`] is applied to a running [`Cluster`],
//! held for a few seconds, healed, and the cluster is waited on until it has converged again.
//! [`schedule`] draws a seeded random list of faults of different kinds for one run.
//!
//! | kind | injection | heal |
//! |---|---|---|
//! | `kill9` | SIGKILL of the leader or a follower | restart from its data dir |
//! | `pause` | SIGSTOP | SIGCONT |
//! | `partition_majority` | one node cut from the two others (both directions) | routes/rules removed |
//! | `partition_bridge` | two nodes cut from each other, the third sees both | same |
//! | `partition_isolate_leader` | the leader's whole link down (netns) / all its links cut (proxy) | same |
//! | `netem` | delay ± jitter and loss on one node's link (`tc`, or the proxy) | shaping removed |
//! | `disk_full` | the node's tmpfs data dir filled until ENOSPC | file deleted; node restarted if it stopped or cannot recover |
//! | `clock_jump` | the node's wall clock stepped ± minutes (time-offset hook) | offset back to 0 |
//! | `membership_replace` | a follower removed, wiped, re-added as learner then voter, under load | — |
//! | `membership_transfer` | leadership transferred to a follower | — |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::cluster::{wait_for, Cluster};
use crate::topology::Shaping;

/// A small deterministic RNG (splitmix64): schedules must replay from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability 1/2.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// A uniformly chosen element.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next_u64() % xs.len() as u64) as usize]
    }
}

/// Which partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// One node (leader or not) on one side, the two others on the other.
    MajorityMinority,
    /// Two nodes cannot talk to each other; the third talks to both.
    Bridge,
    /// The leader loses its link entirely.
    IsolateLeader,
}

/// Which membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipKind {
    /// Remove a follower, wipe it, re-add it (learner, then voter).
    ReplaceFollower,
    /// Transfer leadership to a follower.
    TransferLeader,
}

/// One fault. Node choices are relative (leader or follower) and resolved when applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `kill -9`, then restart.
    Kill9 {
        /// Hit the leader (else a random follower).
        leader: bool,
    },
    /// SIGSTOP, then SIGCONT.
    Pause {
        /// Hit the leader.
        leader: bool,
    },
    /// Cut links.
    Partition(PartitionKind),
    /// Delay/loss on one node's link.
    Netem {
        /// Hit the leader.
        leader: bool,
        /// Added delay.
        delay_ms: u32,
        /// Jitter.
        jitter_ms: u32,
        /// Loss, percent.
        loss_pct: f64,
    },
    /// Fill one node's data filesystem.
    DiskFull {
        /// Hit the leader.
        leader: bool,
    },
    /// Step one node's wall clock.
    ClockJump {
        /// Hit the leader.
        leader: bool,
        /// The step, ms (±minutes).
        offset_ms: i64,
    },
    /// Membership change under load.
    Membership(MembershipKind),
}

/// Fault families a schedule draws from (one fault per family per run at most).
pub const FAMILIES: [&str; 7] = [
    "kill9",
    "pause",
    "partition",
    "netem",
    "disk_full",
    "clock_jump",
    "membership",
];

impl Fault {
    /// The kind counted in summaries (`partition_bridge`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill9 { .. } => "kill9",
            Fault::Pause { .. } => "pause",
            Fault::Partition(PartitionKind::MajorityMinority) => "partition_majority",
            Fault::Partition(PartitionKind::Bridge) => "partition_bridge",
            Fault::Partition(PartitionKind::IsolateLeader) => "partition_isolate_leader",
            Fault::Netem { .. } => "netem",
            Fault::DiskFull { .. } => "disk_full",
            Fault::ClockJump { .. } => "clock_jump",
            Fault::Membership(MembershipKind::ReplaceFollower) => "membership_replace",
            Fault::Membership(MembershipKind::TransferLeader) => "membership_transfer",
        }
    }

    /// The family (entry of [`FAMILIES`]).
    pub fn family(&self) -> &'static str {
        match self {
            Fault::Kill9 { .. } => "kill9",
            Fault::Pause { .. } => "pause",
            Fault::Partition(_) => "partition",
            Fault::Netem { .. } => "netem",
            Fault::DiskFull { .. } => "disk_full",
            Fault::ClockJump { .. } => "clock_jump",
            Fault::Membership(_) => "membership",
        }
    }

    fn draw(family: &str, rng: &mut Rng) -> Fault {
        let leader = rng.coin();
        match family {
            "kill9" => Fault::Kill9 { leader },
            "pause" => Fault::Pause { leader },
            "partition" => Fault::Partition(rng.pick(&[
                PartitionKind::MajorityMinority,
                PartitionKind::Bridge,
                PartitionKind::IsolateLeader,
            ])),
            "netem" => Fault::Netem {
                leader,
                delay_ms: rng.range(50, 300) as u32,
                jitter_ms: rng.range(0, 50) as u32,
                loss_pct: rng.range(0, 20) as f64,
            },
            "disk_full" => Fault::DiskFull { leader },
            "clock_jump" => {
                let minutes = rng.range(1, 10) as i64;
                let sign = if rng.coin() { 1 } else { -1 };
                Fault::ClockJump {
                    leader,
                    offset_ms: sign * minutes * 60_000,
                }
            }
            _ => Fault::Membership(rng.pick(&[
                MembershipKind::ReplaceFollower,
                MembershipKind::TransferLeader,
            ])),
        }
    }
}

/// 2–4 faults of different families, drawn from `families` (those available here), in a
/// random order; deterministic in `seed`.
pub fn schedule(seed: u64, families: &[&'static str]) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<&str> = families.to_vec();
    let n = (rng.range(2, 4) as usize).min(pool.len());
    let mut out = Vec::new();
    for _ in 0..n {
        let i = (rng.next_u64() % pool.len() as u64) as usize;
        let fam = pool.swap_remove(i);
        out.push(Fault::draw(fam, &mut rng));
    }
    out
}

/// The smallest base seed from `from` on whose `runs` consecutive schedules together use every
/// family in `families` and the most fault kinds (searching a bounded range): the short mode
/// covers every fault in a few runs and still replays the same schedules every time.
pub fn covering_seed(from: u64, runs: u64, families: &[&'static str]) -> u64 {
    let mut best = (0usize, from);
    for base in from..from + 2000 {
        let mut fams = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for s in base..base + runs {
            for f in schedule(s, families) {
                fams.insert(f.family());
                kinds.insert(f.kind());
            }
        }
        if fams.len() == families.len() && kinds.len() > best.0 {
            best = (kinds.len(), base);
        }
    }
    best.1
}

/// The families this cluster supports, and why others are left out.
pub fn available_families(c: &Cluster) -> (Vec<&'static str>, Vec<String>) {
    let mut fams = Vec::new();
    let mut skipped = Vec::new();
    for f in FAMILIES {
        if f == "disk_full" && !c.has_small_disks() {
            skipped.push(format!(
                "disk_full skipped: {}",
                c.tmpfs_skipped
                    .clone()
                    .unwrap_or_else(|| "data dirs not on tmpfs".into())
            ));
            continue;
        }
        fams.push(f);
    }
    (fams, skipped)
}

/// Counters over many faults.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Faults applied, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Nodes found dead that the nemesis had not killed (restarted; each is a finding unless
    /// explained, e.g. a fail-stop on a full disk).
    pub unexpected_exits: u64,
    /// Restarts the disk-full heal needed.
    pub disk_full_restarts: u64,
}

impl Tally {
    /// Total faults.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `kill9:1,pause:2`.
    pub fn kinds(&self) -> String {
        if self.by_kind.is_empty() {
            return "-".into();
        }
        self.by_kind
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Add another tally.
    pub fn add(&mut self, o: &Tally) {
        for (k, v) in &o.by_kind {
            *self.by_kind.entry(k.clone()).or_default() += v;
        }
        self.unexpected_exits += o.unexpected_exits;
        self.disk_full_restarts += o.disk_full_restarts;
    }
}

/// Applies faults to one cluster, logging what it does.
pub struct Nemesis {
    rng: Rng,
    /// Faults applied so far.
    pub tally: Tally,
    /// One line per action, for the run's report.
    pub log: Vec<String>,
    t0: Instant,
    /// How long each fault is held (drawn per fault from this range, ms).
    pub hold_ms: (u64, u64),
    /// Bound on convergence after a heal.
    pub converge_timeout: Duration,
}

impl Nemesis {
    /// A nemesis whose node choices and hold times follow `seed`.
    pub fn new(seed: u64) -> Self {
        Nemesis {
            rng: Rng::new(seed ^ 0x005e_ed0f_fa17),
            tally: Tally::default(),
            log: Vec::new(),
            t0: Instant::now(),
            hold_ms: (3000, 6000),
            converge_timeout: Duration::from_secs(90),
        }
    }

    fn note(&mut self, s: String) {
        let line = format!("[{:>7.2}s] {s}", self.t0.elapsed().as_secs_f64());
        eprintln!("nemesis: {line}");
        self.log.push(line);
    }

    fn target(&mut self, c: &mut Cluster, leader: bool) -> Result<(u64, u64)> {
        let l = c.wait_leader(Duration::from_secs(30))?;
        if leader {
            return Ok((l, l));
        }
        let followers: Vec<u64> = c.ids().into_iter().filter(|i| *i != l).collect();
        Ok((self.rng.pick(&followers), l))
    }

    fn hold(&mut self) {
        let ms = self.rng.range(self.hold_ms.0, self.hold_ms.1);
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Apply `f`, hold it, heal it and wait until the cluster has converged.
    pub fn run_fault(&mut self, c: &mut Cluster, f: &Fault) -> Result<()> {
        *self.tally.by_kind.entry(f.kind().to_string()).or_default() += 1;
        let r = self.apply_hold_heal(c, f);
        // Whatever happened, leave nothing injected behind.
        let h = self.heal_everything(c);
        r.with_context(|| format!("fault {}", f.kind()))?;
        h?;
        let t = Instant::now();
        let applied = c
            .wait_converged(self.converge_timeout)
            .with_context(|| format!("converge after {}", f.kind()))?;
        self.note(format!(
            "converged at index {applied} {:.1}s after healing {}",
            t.elapsed().as_secs_f64(),
            f.kind()
        ));
        Ok(())
    }

    fn apply_hold_heal(&mut self, c: &mut Cluster, f: &Fault) -> Result<()> {
        match *f {
            Fault::Kill9 { leader } => {
                let (id, l) = self.target(c, leader)?;
                c.kill9(id)?;
                self.note(format!("kill -9 node {id} (leader {l})"));
                self.hold();
                c.restart(id)?;
                c.wait_live(id, Duration::from_secs(30))?;
                self.note(format!("restarted node {id}"));
            }
            Fault::Pause { leader } => {
                let (id, l) = self.target(c, leader)?;
                c.pause(id, true)?;
                self.note(format!("SIGSTOP node {id} (leader {l})"));
                self.hold();
                c.pause(id, false)?;
                self.note(format!("SIGCONT node {id}"));
            }
            Fault::Partition(kind) => {
                let l = c.wait_leader(Duration::from_secs(30))?;
                let ids = c.ids();
                match kind {
                    PartitionKind::MajorityMinority => {
                        let m = self.rng.pick(&ids);
                        let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != m).collect();
                        c.partition(&[m], &rest)?;
                        self.note(format!("partition [{m}] | {rest:?} (leader {l})"));
                    }
                    PartitionKind::Bridge => {
                        let b = self.rng.pick(&ids);
                        let ends: Vec<u64> = ids.iter().copied().filter(|i| *i != b).collect();
                        c.partition(&ends[..1], &ends[1..])?;
                        self.note(format!(
                            "bridge partition: {} x {:?}, node {b} sees both (leader {l})",
                            ends[0],
                            &ends[1..]
                        ));
                    }
                    PartitionKind::IsolateLeader => {
                        c.link_down(l)?;
                        self.note(format!("isolate leader {l} (link down)"));
                    }
                }
                self.hold();
                c.heal_all()?;
                self.note("partition healed".into());
            }
            Fault::Netem {
                leader,
                delay_ms,
                jitter_ms,
                loss_pct,
            } => {
                let (id, l) = self.target(c, leader)?;
                let how = c.shape(
                    id,
                    Shaping {
                        delay_ms,
                        jitter_ms,
                        loss_pct,
                    },
                )?;
                self.note(format!(
                    "shape node {id} (leader {l}) via {how}: delay {delay_ms}ms ±{jitter_ms}ms loss {loss_pct}%"
                ));
                self.hold();
                c.heal_all()?;
                self.note("shaping removed".into());
            }
            Fault::DiskFull { leader } => {
                let (id, l) = self.target(c, leader)?;
                let bytes = c.fill_disk(id)?;
                self.note(format!(
                    "disk full on node {id} (leader {l}): wrote {} MiB until ENOSPC",
                    bytes >> 20
                ));
                self.hold();
                c.free_disk(id)?;
                self.note(format!("freed disk of node {id}"));
                self.recover_after_disk_full(c, id)?;
            }
            Fault::ClockJump { leader, offset_ms } => {
                let (id, l) = self.target(c, leader)?;
                c.set_clock_offset(id, offset_ms)?;
                self.note(format!(
                    "clock of node {id} (leader {l}) jumps {:+} min",
                    offset_ms / 60_000
                ));
                self.hold();
                c.set_clock_offset(id, 0)?;
                self.note(format!("clock of node {id} back to real time"));
            }
            Fault::Membership(MembershipKind::TransferLeader) => {
                let (to, l) = self.target(c, false)?;
                let via = l;
                wait_for(
                    "leader transfer",
                    Duration::from_secs(30),
                    Duration::from_millis(500),
                    || match c.client(via).transfer_leader(to) {
                        Ok(_) => Ok(Some(())),
                        Err(e) => Err(anyhow!(e)),
                    },
                )?;
                self.note(format!("leadership transferred {l} -> {to}"));
                self.hold();
            }
            Fault::Membership(MembershipKind::ReplaceFollower) => {
                let (f, l) = self.target(c, false)?;
                wait_for(
                    &format!("remove node {f}"),
                    Duration::from_secs(60),
                    Duration::from_millis(500),
                    || {
                        let via = c.wait_leader(Duration::from_secs(20))?;
                        match c.client(via).remove_member(f) {
                            Ok(_) => Ok(Some(())),
                            Err(e) => Err(anyhow!(e)),
                        }
                    },
                )?;
                self.note(format!("removed follower {f} (leader {l})"));
                c.kill9(f)?;
                c.wipe(f)?;
                self.hold();
                c.restart(f)?;
                c.wait_live(f, Duration::from_secs(30))?;
                c.join(f)?;
                self.note(format!(
                    "node {f} wiped and re-added (learner, caught up, voter)"
                ));
            }
        }
        Ok(())
    }

    /// After the fill file is gone the node must be serving again; if it stopped (fail-stop on
    /// a write error) or does not catch up, restart it.
    fn recover_after_disk_full(&mut self, c: &mut Cluster, id: u64) -> Result<()> {
        let running = c.running().contains(&id);
        let recovered = running
            && c.wait_ready(id, Duration::from_secs(15)).is_ok()
            && c.wait_converged(Duration::from_secs(20)).is_ok();
        if recovered {
            self.note(format!("node {id} recovered by itself after disk full"));
            return Ok(());
        }
        if running {
            c.kill9(id)?;
        }
        self.tally.disk_full_restarts += 1;
        c.restart(id)?;
        c.wait_live(id, Duration::from_secs(30))?;
        self.note(format!(
            "node {id} {} after disk full; restarted",
            if running {
                "did not recover"
            } else {
                "had exited"
            }
        ));
        Ok(())
    }

    /// Remove every injected fault: network healed, every node resumed, clocks reset, disks
    /// freed, and dead nodes restarted (each death the nemesis did not cause is counted).
    pub fn heal_everything(&mut self, c: &mut Cluster) -> Result<()> {
        let mut first_err: Option<anyhow::Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        keep(c.heal_all());
        for id in c.ids() {
            if c.node(id).pid().is_some() {
                let _ = c.pause(id, false);
            }
            if c.node(id).clock_file.is_some() {
                keep(c.set_clock_offset(id, 0));
            }
            if c.has_small_disks() {
                keep(c.free_disk(id));
            }
        }
        let running = c.running();
        for id in c.ids() {
            if !running.contains(&id) {
                self.tally.unexpected_exits += 1;
                self.note(format!(
                    "node {id} was not running after the fault; restarting"
                ));
                keep(c.restart(id));
                keep(c.wait_live(id, Duration::from_secs(30)));
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_deterministic_and_draws_distinct_families() {
        for seed in 0..200u64 {
            let a = schedule(seed, &FAMILIES);
            assert_eq!(a, schedule(seed, &FAMILIES), "seed {seed} replays");
            assert!((2..=4).contains(&a.len()), "seed {seed}: {a:?}");
            let mut fams: Vec<&str> = a.iter().map(Fault::family).collect();
            fams.sort();
            fams.dedup();
            assert_eq!(fams.len(), a.len(), "seed {seed}: repeated family {a:?}");
        }
    }

    #[test]
    fn schedule_respects_available_families() {
        let only = ["kill9", "pause"];
        for seed in 0..50u64 {
            let s = schedule(seed, &only);
            assert!(s.iter().all(|f| only.contains(&f.family())), "{s:?}");
            assert_eq!(s.len(), 2);
        }
    }

    #[test]
    fn every_family_and_kind_is_drawn_eventually() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..500u64 {
            for f in schedule(seed, &FAMILIES) {
                kinds.insert(f.kind());
            }
        }
        assert_eq!(kinds.len(), 10, "{kinds:?}");
    }

    #[test]
    fn covering_seed_covers_every_family() {
        let base = covering_seed(1, 4, &FAMILIES);
        let mut fams = std::collections::BTreeSet::new();
        for s in base..base + 4 {
            fams.extend(schedule(s, &FAMILIES).iter().map(Fault::family));
        }
        assert_eq!(fams.len(), FAMILIES.len(), "base {base}: {fams:?}");
        assert_eq!(base, covering_seed(1, 4, &FAMILIES), "deterministic");
    }

    #[test]
    fn tally_sums_and_renders() {
        let mut a = Tally::default();
        a.by_kind.insert("kill9".into(), 2);
        let mut b = Tally::default();
        b.by_kind.insert("kill9".into(), 1);
        b.by_kind.insert("pause".into(), 1);
        a.add(&b);
        assert_eq!(a.total(), 4);
        assert_eq!(a.kinds(), "kill9:3,pause:1");
    }
}
