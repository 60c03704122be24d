//! Retry timing shared by everything that retries an HTTP request: the tool sender, the model
//! client and the event worker. Jitter spreads retries of many callers that failed together;
//! `Retry-After` (seconds or an HTTP date) is honoured, capped by the caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A pseudo-random fraction in `[0, 1)` from the clock: enough to de-synchronise retries, and
/// no random-number crate on the path.
fn unit_noise() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Exponential backoff before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped at
/// `cap`, then anywhere between half and all of it ("equal jitter").
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let step = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    step.mul_f64(0.5 + unit_noise() / 2.0)
}

/// `d` moved by up to ±10 %, for fixed schedules.
pub fn spread(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(0.9 + unit_noise() / 5.0)
}

/// The delay a `Retry-After` value asks for (delta-seconds or an HTTP date), at most `cap`.
pub fn parse_retry_after(value: &str, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at =
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
                    .ok()?;
            let now = time::OffsetDateTime::now_utc();
            Duration::try_from(at - now).unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 1..10 {
            let d = backoff(attempt, base, cap);
            let step = (base * (1 << (attempt - 1))).min(cap);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let cap = Duration::from_secs(60);
        assert_eq!(parse_retry_after("5", cap), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 600 ", cap), Some(cap));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", cap), None);
    }

    #[test]
    fn spread_is_within_ten_percent() {
        let d = Duration::from_secs(10);
        let s = spread(d);
        assert!(s >= Duration::from_secs(9) && s <= Duration::from_secs(11));
        assert_eq!(spread(Duration::ZERO), Duration::ZERO);
    }
}
