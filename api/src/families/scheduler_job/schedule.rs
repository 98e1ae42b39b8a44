//! Slots of a simple trigger and the rule that decides, at a given wall time, what happens to
//! the first slot not yet resolved. Pure: the leader's timer duty asks [`decide`] and commits
//! the answer; the apply re-checks it against the record ([`Schedule::slot_count`], the
//! trigger's `next_slot`), so a stale or repeated decision cannot fire a slot twice.
//!
//! Slot `k` is due at `start + k × interval`. A slot is *fired* when the leader reaches it
//! within its window — `[due, due + min(interval, MISFIRE_GRACE_MS))` — and it is the latest
//! slot due; otherwise it is *skipped* and recorded as skipped. So after an outage (no leader,
//! or a leader busy electing) every slot missed is skipped, not replayed, and at most the one
//! whose window is still open fires late — ZStack's Quartz "next with remaining count": the
//! missed firings count against `repeatCount`, and the trigger still ends at its stop time.

/// How late past its due time a slot may still fire when its interval is longer than this.
/// Quartz's default misfire threshold, which ZStack's scheduler inherits.
pub const MISFIRE_GRACE_MS: u64 = 60_000;

/// A simple trigger's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Slot 0, ms since the epoch.
    pub start_ms: u64,
    /// Between slots, ms (may be 0 only for a trigger of one slot).
    pub interval_ms: u64,
    /// How many slots in all (`None`: forever).
    pub count: Option<u64>,
}

/// What to do with a trigger now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every slot is resolved: the trigger is completed.
    Completed,
    /// The first unresolved slot is not due before this time (ms).
    Wait {
        /// When it falls due.
        until_ms: u64,
    },
    /// Resolve every unresolved slot up to and including `slot`: the earlier ones are skipped,
    /// `slot` itself fires when `fire`, else it is skipped too.
    Resolve {
        /// The latest slot due.
        slot: u64,
        /// Whether its window is still open.
        fire: bool,
    },
}

impl Schedule {
    /// When slot `k` falls due (saturating: a slot past the end of time never falls due).
    pub fn due_ms(&self, k: u64) -> u64 {
        self.start_ms
            .saturating_add(k.saturating_mul(self.interval_ms))
    }

    /// How many slots there are, `None` for a trigger without end.
    pub fn slot_count(&self) -> Option<u64> {
        self.count
    }

    /// Whether slot `k` exists.
    pub fn has_slot(&self, k: u64) -> bool {
        self.count.is_none_or(|n| k < n)
    }

    /// How late slot `k` may still fire.
    pub fn grace_ms(&self) -> u64 {
        if self.interval_ms == 0 {
            MISFIRE_GRACE_MS
        } else {
            self.interval_ms.min(MISFIRE_GRACE_MS)
        }
    }

    /// The first slot due at or after `t`: where a trigger created (or rescheduled) at `t`
    /// starts, so that slots before its creation are neither fired nor recorded as skipped.
    pub fn first_slot_from(&self, t: u64) -> u64 {
        if t <= self.start_ms || self.interval_ms == 0 {
            return if t <= self.start_ms { 0 } else { 1 };
        }
        let elapsed = t - self.start_ms;
        elapsed.div_ceil(self.interval_ms)
    }

    /// The latest slot due at `now`, if any (bounded by the slot count).
    pub fn latest_due(&self, now: u64) -> Option<u64> {
        if now < self.start_ms {
            return None;
        }
        // A zero interval has one slot only (0), due at the start.
        let k = (now - self.start_ms)
            .checked_div(self.interval_ms)
            .unwrap_or(0);
        match self.count {
            Some(0) => None,
            Some(n) => Some(k.min(n - 1)),
            None => Some(k),
        }
    }

    /// The stop time ZStack shows (`startTime + repeatCount × interval`), for a counted trigger.
    pub fn stop_ms(&self) -> Option<u64> {
        self.count.map(|n| self.due_ms(n))
    }
}

/// What happens to a trigger whose first unresolved slot is `next_slot`, at wall time `now`.
pub fn decide(s: &Schedule, next_slot: u64, now: u64) -> Decision {
    if !s.has_slot(next_slot) {
        return Decision::Completed;
    }
    let due = s.due_ms(next_slot);
    if due > now {
        return Decision::Wait { until_ms: due };
    }
    // `next_slot` is due, so a latest due slot exists and is at least `next_slot`.
    let slot = s.latest_due(now).unwrap_or(next_slot).max(next_slot);
    let fire = now < s.due_ms(slot).saturating_add(s.grace_ms());
    Decision::Resolve { slot, fire }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(secs: u64, count: Option<u64>) -> Schedule {
        Schedule {
            start_ms: 1_000_000,
            interval_ms: secs * 1000,
            count,
        }
    }

    #[test]
    fn slots_fall_due_at_start_plus_k_intervals() {
        let s = every(2, None);
        assert_eq!(s.due_ms(0), 1_000_000);
        assert_eq!(s.due_ms(3), 1_006_000);
        assert_eq!(
            s.due_ms(u64::MAX),
            u64::MAX,
            "saturates instead of wrapping"
        );
        assert_eq!(s.stop_ms(), None);
        assert_eq!(every(2, Some(5)).stop_ms(), Some(1_010_000));
    }

    #[test]
    fn a_trigger_starts_at_the_first_slot_not_in_the_past() {
        let s = every(2, None);
        assert_eq!(s.first_slot_from(0), 0);
        assert_eq!(s.first_slot_from(1_000_000), 0);
        assert_eq!(s.first_slot_from(1_000_001), 1);
        assert_eq!(s.first_slot_from(1_002_000), 1);
        assert_eq!(s.first_slot_from(1_002_001), 2);
        let once = Schedule {
            start_ms: 1_000_000,
            interval_ms: 0,
            count: Some(1),
        };
        assert_eq!(once.first_slot_from(999_999), 0);
        assert_eq!(once.first_slot_from(1_000_001), 1, "its only slot is past");
    }

    #[test]
    fn before_the_first_slot_the_timer_waits_for_it() {
        let s = every(2, None);
        assert_eq!(
            decide(&s, 0, 999_000),
            Decision::Wait {
                until_ms: 1_000_000
            }
        );
        assert_eq!(
            decide(&s, 4, 1_007_999),
            Decision::Wait {
                until_ms: 1_008_000
            }
        );
    }

    #[test]
    fn a_slot_reached_within_its_window_fires() {
        let s = every(2, None);
        assert_eq!(
            decide(&s, 0, 1_000_000),
            Decision::Resolve {
                slot: 0,
                fire: true
            }
        );
        assert_eq!(
            decide(&s, 3, 1_007_999),
            Decision::Resolve {
                slot: 3,
                fire: true
            }
        );
    }

    #[test]
    fn missed_slots_are_skipped_and_only_the_latest_may_fire() {
        let s = every(2, None);
        // Slots 2..=5 are due at 1_004_000..=1_010_000; at 1_010_500 slot 5's window is open.
        assert_eq!(
            decide(&s, 2, 1_010_500),
            Decision::Resolve {
                slot: 5,
                fire: true
            }
        );
        // Exactly one interval late: slot 6 is due at that very moment, and fires instead.
        assert_eq!(
            decide(&s, 2, 1_012_000),
            Decision::Resolve {
                slot: 6,
                fire: true
            }
        );
    }

    #[test]
    fn a_long_interval_slot_fires_at_most_the_grace_late() {
        let s = every(3600, None);
        let due = s.due_ms(1);
        assert_eq!(
            decide(&s, 1, due + MISFIRE_GRACE_MS - 1),
            Decision::Resolve {
                slot: 1,
                fire: true
            }
        );
        assert_eq!(
            decide(&s, 1, due + MISFIRE_GRACE_MS),
            Decision::Resolve {
                slot: 1,
                fire: false
            }
        );
    }

    #[test]
    fn missed_slots_count_against_the_repeat_count() {
        let s = every(2, Some(3));
        // All three slots passed long ago: the last one is skipped and the trigger completes.
        assert_eq!(
            decide(&s, 0, 1_100_000),
            Decision::Resolve {
                slot: 2,
                fire: false
            }
        );
        assert_eq!(decide(&s, 3, 1_100_000), Decision::Completed);
        assert!(s.has_slot(2) && !s.has_slot(3));
        assert_eq!(decide(&every(2, Some(0)), 0, 0), Decision::Completed);
    }

    #[test]
    fn one_slot_ignores_the_interval() {
        let once = Schedule {
            start_ms: 1_000_000,
            interval_ms: 0,
            count: Some(1),
        };
        assert_eq!(
            decide(&once, 0, 1_000_100),
            Decision::Resolve {
                slot: 0,
                fire: true
            }
        );
        assert_eq!(
            decide(&once, 0, 1_000_000 + MISFIRE_GRACE_MS),
            Decision::Resolve {
                slot: 0,
                fire: false
            }
        );
        assert_eq!(decide(&once, 1, 2_000_000), Decision::Completed);
    }

    #[test]
    fn every_slot_is_resolved_exactly_once_whatever_the_wakeups() {
        // A timer woken at arbitrary times (gaps included) resolves each slot once, in order,
        // and fires only slots reached within their window.
        let s = every(2, Some(40));
        let mut next = 0;
        let mut resolved = vec![0u32; 40];
        let mut fired = Vec::new();
        let mut now = 999_000;
        let steps = [300, 1_700, 5_000, 150, 2_000, 9_999, 1, 2_001, 40_000, 700];
        let mut i = 0;
        while next < 40 {
            now += steps[i % steps.len()];
            i += 1;
            match decide(&s, next, now) {
                Decision::Completed => break,
                Decision::Wait { until_ms } => assert!(until_ms > now),
                Decision::Resolve { slot, fire } => {
                    for k in next..=slot {
                        resolved[k as usize] += 1;
                    }
                    if fire {
                        assert!(now >= s.due_ms(slot) && now < s.due_ms(slot) + 2_000);
                        fired.push(slot);
                    }
                    next = slot + 1;
                }
            }
        }
        assert!(resolved.iter().all(|n| *n == 1), "{resolved:?}");
        assert!(fired.windows(2).all(|w| w[0] < w[1]));
        assert!(!fired.is_empty());
    }
}
