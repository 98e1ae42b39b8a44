//! Answers of async REST calls that ended before any job was recorded (refused by the session
//! check, the permission check or validation). ZStack answers every async REST call `202` with
//! a `location` and delivers even such a refusal through the poll (its mediator publishes an
//! `APIEvent` with the error), so the SDK reads the real error code from the poll's `503`
//! instead of wrapping an unexpected first answer into `sdk.1000`. Nothing was proposed for
//! these calls, so the answer lives only on the node that served the call — the one the
//! `location` names, which is where clients poll.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;

/// ZStack keeps a finished REST job this long (`rest.completedApi.expiredPeriod`, 10 800 s).
const RETENTION: Duration = Duration::from_secs(10_800);
/// Bound on the answers held, so that a flood of refused calls cannot grow memory without
/// limit; the oldest answer goes first (its poll then says the job has expired, as ZStack's
/// does after the retention period).
const CAPACITY: usize = 10_000;

#[derive(Default)]
struct Held {
    by_uuid: HashMap<String, (Instant, String, Value)>,
    order: VecDeque<String>,
}

/// The early answers this node holds, by job uuid.
#[derive(Default)]
pub struct EarlyAnswers {
    held: Mutex<Held>,
}

impl EarlyAnswers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The map stays consistent if a holder panicked (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep the reply object (`{"success": false, "error": ...}`) of call `api_name` under
    /// `uuid`.
    pub fn put(&self, uuid: String, api_name: String, reply: Value) {
        let mut h = self.lock();
        let now = Instant::now();
        while let Some(oldest) = h.order.front().cloned() {
            let expired = h
                .by_uuid
                .get(&oldest)
                .is_none_or(|(at, _, _)| now.duration_since(*at) > RETENTION);
            if !expired && h.order.len() < CAPACITY {
                break;
            }
            h.order.pop_front();
            h.by_uuid.remove(&oldest);
        }
        if h.by_uuid
            .insert(uuid.clone(), (now, api_name, reply))
            .is_none()
        {
            h.order.push_back(uuid);
        }
    }

    /// The call name and reply kept under `uuid`, unless expired.
    pub fn get(&self, uuid: &str) -> Option<(String, Value)> {
        let h = self.lock();
        h.by_uuid
            .get(uuid)
            .filter(|(at, _, _)| at.elapsed() <= RETENTION)
            .map(|(_, name, reply)| (name.clone(), reply.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_by_uuid_and_bounded() {
        let a = EarlyAnswers::default();
        a.put("u1".into(), "CreateZone".into(), json!({"success": false}));
        assert_eq!(
            a.get("u1"),
            Some(("CreateZone".to_string(), json!({"success": false})))
        );
        assert_eq!(a.get("u2"), None);
        for i in 0..CAPACITY + 5 {
            a.put(format!("x{i}"), "CreateZone".into(), json!({}));
        }
        assert_eq!(a.get("u1"), None, "the oldest answer went first");
        assert!(a.get(&format!("x{}", CAPACITY + 4)).is_some());
        assert!(a.lock().by_uuid.len() <= CAPACITY);
    }
}
