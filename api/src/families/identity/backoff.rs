//! Failed-login back-off: after `identity/login.maxFailures` wrong passwords for one account
//! or user (or `identity/login.ip.maxFailures` from one client IP), further logins naming it
//! are refused for `identity/login.backoff` ms, doubling with every further failure up to
//! `identity/login.backoff.max`; a success resets the account's (user's) count, and
//! `identity/login.failureWindow` seconds without a failure forget a count.
//!
//! A refused attempt is answered before any password is verified, so it costs no argon2 work
//! and says nothing about the password. The state is per serving node and in memory: counting
//! failures through Raft would turn every guess into a replicated write (an attacker's cheapest
//! way to grow the log), and the decision must not wait for a quorum. An attacker spreading
//! guesses over `n` nodes therefore gets at most `n` times the attempts of one node.
//!
//! Time comes from the caller (`now_ms`, the interpreter's stamp), so the logic is tested with
//! a controlled clock.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::plan::LoginTarget;
use crate::settings;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::StateTxn;

/// Entries kept at most; beyond that, forgotten counts and then the oldest go first, so a
/// flood of made-up names cannot grow a node's memory without bound.
pub const MAX_ENTRIES: usize = 100_000;

/// The back-off settings in force (read from the replicated global configs at each login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures of one account or user before it is backed off.
    pub max_failures: u32,
    /// Failures from one client IP before it is backed off.
    pub ip_max_failures: u32,
    /// The first back-off (ms).
    pub backoff_ms: u64,
    /// The longest back-off (ms).
    pub max_backoff_ms: u64,
    /// Quiet time after which a count is forgotten (ms).
    pub window_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_failures: 5,
            ip_max_failures: 20,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            window_ms: 900_000,
        }
    }
}

impl Policy {
    /// The policy the global configs hold.
    pub fn read(txn: &dyn StateTxn) -> Result<Policy, ApiError> {
        let int = |name: &str| settings::int_value(txn, "identity", name);
        // The settings' kinds keep every value positive and within these types.
        let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let ms = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Policy {
            max_failures: count(int("login.maxFailures")?),
            ip_max_failures: count(int("login.ip.maxFailures")?),
            backoff_ms: ms(int("login.backoff")?),
            max_backoff_ms: ms(int("login.backoff.max")?),
            window_ms: ms(int("login.failureWindow")?).saturating_mul(1_000),
        })
    }

    /// How long a key with `failures` failures is backed off (0: not yet).
    fn delay_ms(&self, failures: u32, threshold: u32) -> u64 {
        if failures < threshold {
            return 0;
        }
        let doublings = (failures - threshold).min(63);
        self.backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms)
    }
}

/// What a count is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The account (`LogInByAccount`) or user (`LogInByUser`) a login names.
    Target(String),
    /// The client's IP address.
    Ip(String),
}

impl Key {
    /// The key of the account or user `target` names.
    pub fn of(target: &LoginTarget) -> Key {
        Key::Target(match target {
            LoginTarget::Account { name } => format!("account:{name}"),
            LoginTarget::User {
                account_uuid,
                account_name,
                user_name,
            } => {
                let account = account_uuid
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .or_else(|| account_name.clone())
                    .unwrap_or_default();
                format!("user:{account}/{user_name}")
            }
        })
    }

    fn threshold(&self, policy: &Policy) -> u32 {
        match self {
            Key::Target(_) => policy.max_failures,
            Key::Ip(_) => policy.ip_max_failures,
        }
    }

    fn describe(&self, target: &LoginTarget) -> String {
        match (self, target) {
            (Key::Ip(ip), _) => format!("from client[{ip}]"),
            (Key::Target(_), LoginTarget::Account { name }) => format!("for account[{name}]"),
            (Key::Target(_), LoginTarget::User { user_name, .. }) => {
                format!("for user[{user_name}]")
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure_ms: u64,
    blocked_until_ms: u64,
}

/// A login refused while backed off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// What is backed off.
    pub key: Key,
    /// Milliseconds until a login naming it is tried again.
    pub retry_after_ms: u64,
}

impl Throttled {
    /// ZStack's authentication error (`ID.1000`), saying when to retry.
    pub fn refusal(&self, target: &LoginTarget) -> Refusal {
        Refusal::new(
            Code::AuthenticationError,
            format!(
                "too many failed logins {}; retry after {} ms",
                self.key.describe(target),
                self.retry_after_ms
            ),
        )
    }
}

/// One node's failed-login counts.
#[derive(Debug)]
pub struct LoginBackoff {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        Self::with_capacity(MAX_ENTRIES)
    }
}

impl LoginBackoff {
    /// Counts for at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        LoginBackoff {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves counts that are still counts.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse a login naming any of `keys` while one of them is backed off (the longest wait).
    pub fn check(&self, keys: &[Key], now_ms: u64) -> Result<(), Throttled> {
        let entries = self.lock();
        let worst = keys
            .iter()
            .filter_map(|k| entries.get(k).map(|e| (k, e.blocked_until_ms)))
            .filter(|(_, until)| *until > now_ms)
            .max_by_key(|(_, until)| *until);
        match worst {
            Some((key, until)) => Err(Throttled {
                key: key.clone(),
                retry_after_ms: until - now_ms,
            }),
            None => Ok(()),
        }
    }

    /// Count a wrong password for every one of `keys`.
    pub fn failed(&self, keys: &[Key], policy: &Policy, now_ms: u64) {
        let mut entries = self.lock();
        for key in keys {
            if !entries.contains_key(key) && entries.len() >= self.capacity {
                evict(&mut entries, self.capacity, policy, now_ms);
            }
            let e = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last_failure_ms: now_ms,
                blocked_until_ms: 0,
            });
            if forgotten(e, policy, now_ms) {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last_failure_ms = now_ms;
            let delay = policy.delay_ms(e.failures, key.threshold(policy));
            if delay > 0 {
                e.blocked_until_ms = now_ms.saturating_add(delay);
            }
        }
    }

    /// A verified password: the account's (user's) count starts again. The client IP's count
    /// is left to the window: one good password proves nothing about the other names tried.
    pub fn succeeded(&self, target: &Key) {
        self.lock().remove(target);
    }

    /// Keys counted now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A count nobody added to for a whole window, and not backed off any more.
fn forgotten(e: &Entry, policy: &Policy, now_ms: u64) -> bool {
    e.blocked_until_ms <= now_ms && now_ms.saturating_sub(e.last_failure_ms) >= policy.window_ms
}

/// Make room: forget what the window forgot; if that is not enough, drop the counts least
/// recently added to, down to 90% of `capacity` (so that a flood of made-up names pays this
/// scan once per tenth of the capacity, not on every new name).
fn evict(entries: &mut HashMap<Key, Entry>, capacity: usize, policy: &Policy, now_ms: u64) {
    entries.retain(|_, e| !forgotten(e, policy, now_ms));
    if entries.len() < capacity {
        return;
    }
    let keep = capacity - capacity / 10 - 1;
    let mut by_age: Vec<(u64, Key)> = entries
        .iter()
        .map(|(k, e)| (e.last_failure_ms, k.clone()))
        .collect();
    by_age.sort_unstable_by_key(|(t, _)| std::cmp::Reverse(*t));
    for (_, k) in by_age.into_iter().skip(keep) {
        entries.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_failures: 3,
            ip_max_failures: 5,
            backoff_ms: 1_000,
            max_backoff_ms: 8_000,
            window_ms: 60_000,
        }
    }

    fn acct(name: &str) -> Key {
        Key::of(&LoginTarget::Account { name: name.into() })
    }

    fn ip(a: &str) -> Key {
        Key::Ip(a.into())
    }

    #[test]
    fn backs_off_after_max_failures_doubling_to_the_cap() {
        let b = LoginBackoff::default();
        let p = policy();
        let keys = [acct("alice"), ip("10.0.0.1")];
        let mut now = 1_000_000;
        for _ in 0..2 {
            b.failed(&keys, &p, now);
            assert_eq!(b.check(&keys, now), Ok(()));
            now += 10;
        }
        // The third failure starts the first back-off.
        b.failed(&keys, &p, now);
        let t = b.check(&keys, now).unwrap_err();
        assert_eq!((t.key.clone(), t.retry_after_ms), (acct("alice"), 1_000));
        assert_eq!(b.check(&keys, now + 999).unwrap_err().retry_after_ms, 1);
        assert_eq!(b.check(&keys, now + 1_000), Ok(()));
        // Each further failure doubles it, never beyond the cap.
        let mut waits = Vec::new();
        for _ in 0..5 {
            now = b
                .check(&keys, now)
                .map(|_| now)
                .unwrap_or_else(|t| now + t.retry_after_ms);
            b.failed(&[acct("alice")], &p, now);
            waits.push(b.check(&[acct("alice")], now).unwrap_err().retry_after_ms);
        }
        assert_eq!(waits, [2_000, 4_000, 8_000, 8_000, 8_000]);
    }

    #[test]
    fn a_success_resets_the_account_but_not_the_ip() {
        let b = LoginBackoff::default();
        let p = policy();
        let keys = [acct("alice"), ip("10.0.0.1")];
        for i in 0..4 {
            b.failed(&keys, &p, 100 * i);
        }
        assert!(b.check(&[acct("alice")], 400).is_err());
        b.succeeded(&acct("alice"));
        assert_eq!(b.check(&[acct("alice")], 400), Ok(()));
        // The IP keeps its four failures: the fifth backs it off, whatever name it tries.
        b.failed(&[acct("bob"), ip("10.0.0.1")], &p, 500);
        let t = b.check(&[acct("carol"), ip("10.0.0.1")], 500).unwrap_err();
        assert_eq!(t.key, ip("10.0.0.1"));
        // Another client and another account are not affected.
        assert_eq!(b.check(&[acct("carol"), ip("10.0.0.2")], 500), Ok(()));
    }

    #[test]
    fn a_quiet_window_forgets_the_count() {
        let b = LoginBackoff::default();
        let p = policy();
        let keys = [acct("alice")];
        b.failed(&keys, &p, 0);
        b.failed(&keys, &p, 10);
        // A whole window later the count starts again: two more failures do not back off.
        b.failed(&keys, &p, 60_010);
        b.failed(&keys, &p, 60_020);
        assert_eq!(b.check(&keys, 60_020), Ok(()));
        b.failed(&keys, &p, 60_030);
        assert_eq!(b.check(&keys, 60_030).unwrap_err().retry_after_ms, 1_000);
    }

    #[test]
    fn the_longest_wait_of_the_keys_is_answered() {
        let b = LoginBackoff::default();
        let p = Policy {
            ip_max_failures: 1,
            ..policy()
        };
        b.failed(&[ip("10.0.0.1")], &p, 0);
        b.failed(&[ip("10.0.0.1")], &p, 0);
        let t = b.check(&[acct("x"), ip("10.0.0.1")], 0).unwrap_err();
        assert_eq!((t.key, t.retry_after_ms), (ip("10.0.0.1"), 2_000));
    }

    #[test]
    fn user_keys_name_the_account_and_user() {
        let by_name = Key::of(&LoginTarget::User {
            account_uuid: None,
            account_name: Some("tenant".into()),
            user_name: "alice".into(),
        });
        let by_uuid = Key::of(&LoginTarget::User {
            account_uuid: Some("ABC".into()),
            account_name: Some("ignored".into()),
            user_name: "alice".into(),
        });
        assert_eq!(by_name, Key::Target("user:tenant/alice".into()));
        assert_eq!(by_uuid, Key::Target("user:abc/alice".into()));
        assert_ne!(
            acct("alice"),
            Key::of(&LoginTarget::User {
                account_uuid: None,
                account_name: Some("alice".into()),
                user_name: "alice".into(),
            })
        );
    }

    #[test]
    fn memory_is_bounded() {
        let b = LoginBackoff::with_capacity(3);
        let p = policy();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            b.failed(&[acct(name)], &p, i as u64);
        }
        assert_eq!(b.len(), 3);
        // The most recent counts are the ones kept.
        b.failed(&[acct("e")], &p, 10);
        b.failed(&[acct("e")], &p, 11);
        assert!(b.check(&[acct("e")], 11).is_err());
    }

    #[test]
    fn the_refusal_is_an_authentication_error_naming_the_wait() {
        let t = Throttled {
            key: acct("alice"),
            retry_after_ms: 1_500,
        };
        let r = t.refusal(&LoginTarget::Account {
            name: "alice".into(),
        });
        assert_eq!(r.code, Code::AuthenticationError);
        assert_eq!(
            r.details,
            "too many failed logins for account[alice]; retry after 1500 ms"
        );
    }
}
