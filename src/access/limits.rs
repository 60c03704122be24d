//! Per-key rate limits: a token bucket of `rate_limit_per_minute` requests per minute (governor's
//! GCRA), one per key, rebuilt when the key's limit changes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The buckets of every limited key seen by this node.
#[derive(Default)]
pub struct Limits {
    buckets: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Limits {
    /// Take one request from `key_id`'s bucket of `per_minute`; `Err(wait)` when it is empty.
    pub fn check(&self, key_id: &str, per_minute: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(per_minute) else {
            return Ok(());
        };
        let bucket = {
            let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key_id) {
                Some((limit, b)) if *limit == per_minute => b.clone(),
                _ => {
                    let b = Arc::new(RateLimiter::direct(Quota::per_minute(n)));
                    map.insert(key_id.to_string(), (per_minute, b.clone()));
                    b
                }
            }
        };
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_and_says_how_long_to_wait() {
        let l = Limits::default();
        for _ in 0..3 {
            assert!(l.check("k", 3).is_ok());
        }
        let wait = l.check("k", 3).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another key has its own bucket; a changed limit starts a new one.
        assert!(l.check("other", 3).is_ok());
        assert!(l.check("k", 4).is_ok());
    }
}
