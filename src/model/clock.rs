//! Timestamps in the one RFC 3339 form toolgate writes: UTC, `Z`, the fraction of a second
//! without trailing zeros (`2026-12-03T13:12:34.1234567Z`), exactly as the `time` crate formats
//! them. Every call stamps its start and the history stores it as nanoseconds: the general
//! formatter and parser of `time` cost about as much per call as rendering its request, so the
//! common form is written and read here, and anything else goes to `time`.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

const RFC3339: &time::format_description::well_known::Rfc3339 =
    &time::format_description::well_known::Rfc3339;

/// The current time as RFC 3339 UTC text.
pub fn now_rfc3339() -> String {
    let Ok(since) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return slow_now();
    };
    thread_local! {
        /// The text up to the seconds of the last second this thread stamped.
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = since.as_secs();
    let nanos = since.subsec_nanos();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let Some(text) = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .and_then(|t| t.format(RFC3339).ok())
                .and_then(|t| t.strip_suffix('Z').map(str::to_string))
            else {
                return slow_now();
            };
            *cached = (secs, text);
        }
        let mut out = String::with_capacity(cached.1.len() + 11);
        out.push_str(&cached.1);
        push_fraction(&mut out, nanos);
        out.push('Z');
        out
    })
}

fn slow_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(RFC3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// `.` and the nanoseconds without trailing zeros, or nothing for a whole second.
fn push_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let mut digits = 9;
    let mut n = nanos;
    while n % 10 == 0 {
        n /= 10;
        digits -= 1;
    }
    out.push('.');
    let text = n.to_string();
    for _ in text.len()..digits {
        out.push('0');
    }
    out.push_str(&text);
}

/// Nanoseconds since the epoch of a timestamp in the form `now_rfc3339` writes, or `None` for any
/// other text (which `time`'s own parser may still read). Formatting the result gives `text`
/// back: every part has its one width, and the fraction has no trailing zero.
pub fn canonical_nanos(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let punctuated = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b.last() == Some(&b'Z');
    if !punctuated {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let fraction = &b[19..b.len() - 1];
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) && digits.last() != Some(&b'0') => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(number(&b[0..4])?).ok()?;
    let month = time::Month::try_from(u8::try_from(number(&b[5..7])?).ok()?).ok()?;
    let day = u8::try_from(number(&b[8..10])?).ok()?;
    let hour = u8::try_from(number(&b[11..13])?).ok()?;
    let minute = u8::try_from(number(&b[14..16])?).ok()?;
    let second = u8::try_from(number(&b[17..19])?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let at = time::Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    i64::try_from(
        time::PrimitiveDateTime::new(date, at)
            .assume_utc()
            .unix_timestamp_nanos(),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_time(nanos: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap()
            .format(RFC3339)
            .unwrap()
    }

    #[test]
    fn the_written_form_is_what_time_writes_and_reads_back_to_the_same_instant() {
        // Whole seconds, every fraction length, a leap day, the last instant i64 nanoseconds hold.
        let mut instants = vec![
            0,
            1,
            10,
            120_000_000,
            951_782_400_000_000_000,
            1_764_767_554_123_456_789,
            1_764_767_554_100_000_000,
            i64::MAX,
        ];
        let mut x: i64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = x.rem_euclid(i64::MAX);
            // Also with trailing zeros of every length in the fraction.
            instants.push(n);
            instants.push(n - n % 10i64.pow((n % 10) as u32));
        }
        for n in instants {
            let text = by_time(n);
            assert_eq!(canonical_nanos(&text), Some(n), "{text}");
            let mut fraction = String::new();
            push_fraction(&mut fraction, n.rem_euclid(1_000_000_000) as u32);
            assert!(
                text.ends_with(&format!("{fraction}Z")),
                "{text} vs {fraction}"
            );
        }
    }

    #[test]
    fn any_other_form_is_left_to_the_general_parser() {
        for text in [
            "2026-12-03T13:12:34.120Z",
            "2026-12-03T13:12:34.Z",
            "2026-12-03T13:12:34.1234567891Z",
            "2026-12-03T13:12:34+00:00",
            "2026-12-03t13:12:34Z",
            "2026-02-30T13:12:34Z",
            "2026-13-03T13:12:34Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T13:12:60Z",
            "2026-12-03T13:12:3xZ",
            "+2026-12-03T13:12:34Z",
            "2026-12-03 13:12:34Z",
            "",
            "Z",
        ] {
            assert_eq!(canonical_nanos(text), None, "{text}");
        }
    }

    #[test]
    fn now_is_written_as_time_would_write_it() {
        for _ in 0..1000 {
            let text = now_rfc3339();
            let parsed = time::OffsetDateTime::parse(&text, RFC3339).unwrap();
            assert_eq!(parsed.format(RFC3339).unwrap(), text);
            assert_eq!(
                canonical_nanos(&text),
                i64::try_from(parsed.unix_timestamp_nanos()).ok()
            );
        }
    }
}
