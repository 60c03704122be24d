//! Secrets hidden behind escapes that are not all of one kind.
//!
//! The needles cover a secret escaped whole (JSON-escaped any number of times, percent-encoded),
//! but an upstream can escape only some of its characters (`b\u0065n\u0063h` or `b%65n%63h` for
//! `bench`), in a text body or in a string holding JSON, and a model reading the text undoes
//! such escapes at once. There are too many mixtures to list as needles, so a text that may hold
//! escapes is also read with them undone, level after level (`JSON_DEPTH`), and searched again;
//! a secret found there is cut out of the text as it was, over the bytes it was written in.
//! The escapes undone: JSON's (`\uXXXX` with surrogate pairs, `\"`, `\\`, `\/`, `\b`, `\f`,
//! `\n`, `\r`, `\t`), `\xHH` (the bytes of one UTF-8 character, else one byte read as the
//! character of that number) and `\u{H…}`, percent-encoded characters (`%65`, or the bytes of
//! one UTF-8 character), and HTML character references (`&#101;`, `&#x65;`, `&amp;`, `&lt;`,
//! `&gt;`, `&quot;`, `&apos;`); anything else is kept as it is.

use super::JSON_DEPTH;

/// A text with one level of escapes undone, and, for each of its bytes, where its source
/// begins in the text it was read from (one entry more: that text's length).
pub(super) struct Level {
    pub text: String,
    from: Vec<usize>,
}

impl Level {
    /// `s` with one level of escapes undone; `None` when it holds none.
    fn of(s: &str) -> Option<Level> {
        let mut from = Vec::with_capacity(s.len() + 1);
        let text = undo(s, Some(&mut from))?;
        Some(Level { text, from })
    }
}

/// `s` with one level of escapes undone, `None` when it holds none; `from`, when given, gets
/// where each byte of the result comes from (`Level`).
fn undo(s: &str, mut from: Option<&mut Vec<usize>>) -> Option<String> {
    let b = s.as_bytes();
    let [x, y, z] = STARTS;
    let mut i = memchr::memchr3(x, y, z, b)?;
    let mut text = String::with_capacity(s.len());
    text.push_str(&s[..i]);
    if let Some(f) = from.as_deref_mut() {
        f.extend(0..i);
    }
    let mut undone = false;
    while i < b.len() {
        if let Some((c, len)) = escape_at(b, i) {
            let before = text.len();
            text.push(c);
            if let Some(f) = from.as_deref_mut() {
                f.extend(std::iter::repeat_n(i, text.len() - before));
            }
            i += len;
            undone = true;
            continue;
        }
        // `i` is always on a character boundary: escapes are ASCII.
        let len = s[i..].chars().next().map_or(1, char::len_utf8);
        text.push_str(&s[i..i + len]);
        if let Some(f) = from.as_deref_mut() {
            f.extend(i..i + len);
        }
        i += len;
    }
    if let Some(f) = from {
        f.push(b.len());
    }
    undone.then_some(text)
}

/// Whether some level of `s` with its escapes undone (up to `JSON_DEPTH`) satisfies `holds`:
/// level by level, without the maps back to `s`, keeping one level at a time.
pub(super) fn any_level(s: &str, holds: impl Fn(&str) -> bool) -> bool {
    let mut level = match undo(s, None) {
        Some(t) => t,
        None => return false,
    };
    for depth in 1..=JSON_DEPTH {
        if holds(&level) {
            return true;
        }
        if depth == JSON_DEPTH {
            break;
        }
        level = match undo(&level, None) {
            Some(t) => t,
            None => return false,
        };
    }
    false
}

/// The bytes an escape starts with.
const STARTS: [u8; 3] = [b'\\', b'%', b'&'];

/// Whether `s` holds anything that may start an escape. Asked of every text a call leaves
/// behind, nearly all of which hold none: a vectorised search (a byte-by-byte one cost about 10
/// instructions a byte, 2 % of a benchmark call's).
pub(super) fn may_hold(s: &str) -> bool {
    let [a, b, c] = STARTS;
    memchr::memchr3(a, b, c, s.as_bytes()).is_some()
}

/// The escape at `b[i]`, if one starts there: the character it stands for and its length.
fn escape_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    match b[i] {
        b'\\' => backslash_escape_at(b, i),
        b'%' => percent_at(b, i),
        b'&' => reference_at(b, i),
        _ => None,
    }
}

/// `%XX`, or as many as make one UTF-8 character.
fn percent_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    bytes_at(b, i, b"%")
}

/// Escaped bytes, each `prefix` and two hex digits, that make one UTF-8 character: one for
/// ASCII, up to four. The character and the escapes' length.
fn bytes_at(b: &[u8], i: usize, prefix: &[u8]) -> Option<(char, usize)> {
    let unit = prefix.len() + 2;
    let byte = |k: usize| -> Option<u8> {
        let at = i + unit * k;
        if b.get(at..at + prefix.len()) != Some(prefix) {
            return None;
        }
        let hex = b.get(at + prefix.len()..at + unit)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let first = byte(0)?;
    let n = match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut bytes = [first, 0, 0, 0];
    for (k, slot) in bytes.iter_mut().enumerate().take(n).skip(1) {
        *slot = byte(k)?;
    }
    let c = std::str::from_utf8(&bytes[..n]).ok()?.chars().next()?;
    Some((c, unit * n))
}

/// An HTML character reference: numeric, or one of the five XML names.
fn reference_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    let end = i + b.get(i..)?.iter().take(12).position(|&c| c == b';')?;
    let name = std::str::from_utf8(&b[i + 1..end]).ok()?;
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = name.strip_prefix('#')?;
            let n = match code.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => code.parse().ok()?,
            };
            char::from_u32(n)?
        }
    };
    Some((c, end + 1 - i))
}

/// A backslash escape (`b[i]` is the backslash): JSON's, and the `\xHH` and `\u{H…}` of other
/// languages, which a model reads as readily.
fn backslash_escape_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    let simple = |c: char| Some((c, 2));
    match b.get(i + 1)? {
        // The bytes of one UTF-8 character (C's and Python's bytes), else one byte read as the
        // character of that number.
        b'x' => bytes_at(b, i, b"\\x").or_else(|| {
            let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
            let c = char::from(u8::from_str_radix(hex, 16).ok()?);
            Some((c, 4))
        }),
        b'u' if b.get(i + 2) == Some(&b'{') => {
            let close = b.get(i + 3..)?.iter().take(7).position(|&c| c == b'}')?;
            let hex = std::str::from_utf8(&b[i + 3..i + 3 + close]).ok()?;
            let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
            Some((c, close + 4))
        }
        b'"' => simple('"'),
        b'\\' => simple('\\'),
        b'/' => simple('/'),
        b'b' => simple('\u{8}'),
        b'f' => simple('\u{c}'),
        b'n' => simple('\n'),
        b'r' => simple('\r'),
        b't' => simple('\t'),
        b'u' => {
            let unit = hex4(b, i + 2)?;
            if !(0xD800..0xDC00).contains(&unit) {
                return char::from_u32(unit).map(|c| (c, 6));
            }
            // A high surrogate stands for a character only with the low one after it.
            if b.get(i + 6..i + 8) != Some(b"\\u") {
                return None;
            }
            let low = hex4(b, i + 8)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)).map(|c| (c, 12))
        }
        _ => None,
    }
}

/// Whether `s`, which starts where an escape may (`STARTS`), is an escape cut short: a lone
/// backslash, `\x` or `\u` with fewer hex digits than they take, `\u{` with no `}`, a high
/// surrogate without its low half, `%` with fewer than two hex digits or fewer bytes than its
/// character needs, or `&` with no `;`.
pub(super) fn is_unfinished(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(b'\\') => match b.get(1) {
            None => true,
            Some(b'x') => b.len() < 4 && b[2..].iter().all(u8::is_ascii_hexdigit),
            Some(b'u') if b.get(2) == Some(&b'{') => {
                b.len() < 11 && b[3..].iter().all(u8::is_ascii_hexdigit)
            }
            Some(b'u') => {
                let digits = b[2..].iter().take_while(|d| d.is_ascii_hexdigit()).count();
                if digits < 4 {
                    return b.len() == 2 + digits;
                }
                hex4(b, 2).is_some_and(|u| (0xD800..0xDC00).contains(&u)) && b.len() < 12
            }
            Some(_) => false,
        },
        // Up to four `%XX` at the very end, not one whole character.
        Some(b'%') => {
            b.len() < 12 && percent_at(b, 0).is_none_or(|(_, len)| len < b.len()) && {
                b.iter().all(|&c| c == b'%' || c.is_ascii_hexdigit())
            }
        }
        Some(b'&') => {
            b.len() < 12
                && b[1..]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'#')
        }
        _ => false,
    }
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// The levels of `s` with escapes undone, one after another, up to `JSON_DEPTH`: each level
/// reads the one before (the first reads `s`).
pub(super) fn levels(s: &str) -> Vec<Level> {
    let mut out: Vec<Level> = Vec::new();
    while out.len() < JSON_DEPTH {
        let next = match out.last() {
            Some(l) => Level::of(&l.text),
            None => Level::of(s),
        };
        match next {
            Some(l) => out.push(l),
            None => break,
        }
    }
    out
}

/// Where the bytes `start..end` of the last of `levels` were written in the text the first
/// level was read from.
pub(super) fn source_span(levels: &[Level], start: usize, end: usize) -> (usize, usize) {
    levels
        .iter()
        .rev()
        .fold((start, end), |(s, e), l| (l.from[s], l.from[e]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_escape_is_undone_and_traced_to_its_source() {
        let s = r#"a\u0062\"\\\/\b\f\n\r\t\ud83d\ude00é\x\u12\ud800z"#;
        let l = Level::of(s).expect("escapes");
        assert_eq!(l.text, "ab\"\\/\u{8}\u{c}\n\r\t\u{1F600}é\\x\\u12\\ud800z");
        // `b` came from `\u0062`, the emoji from both surrogates, `é` from itself.
        let at = |needle: &str| l.text.find(needle).expect(needle);
        let b = at("b");
        assert_eq!(&s[l.from[b]..l.from[b + 1]], r"\u0062");
        let e = at("\u{1F600}");
        assert_eq!(&s[l.from[e]..l.from[e + 4]], r"\ud83d\ude00");
        let acute = at("é");
        assert_eq!(&s[l.from[acute]..l.from[acute + 2]], "é");
        assert_eq!(l.from[l.text.len()], s.len());
        assert!(Level::of("no escape here").is_none());
        assert!(Level::of(r"\q only").is_none());
    }

    #[test]
    fn levels_go_as_deep_as_the_escapes_and_spans_lead_back_to_the_text() {
        // `k` escaped once inside a string that was escaped again.
        let s = r#"{"inner":"{\"k\":\"s\\u0065cret\"}"}"#;
        let ls = levels(s);
        assert_eq!(ls.len(), 2);
        let last = &ls[1].text;
        let at = last.find("secret").expect("undone twice");
        let (a, b) = source_span(&ls, at, at + "secret".len());
        assert_eq!(&s[a..b], r"s\\u0065cret");
        // Backslashes doubled past JSON_DEPTH are left; `any_level` sees the same levels.
        let deep = format!("{}u0065", "\\".repeat(1 << JSON_DEPTH));
        assert_eq!(levels(&deep).len(), JSON_DEPTH);
        let deeper = format!("{}u0065", "\\".repeat(1 << (JSON_DEPTH - 1)));
        assert_eq!(levels(&deeper).last().map(|l| l.text.as_str()), Some("e"));
        assert!(any_level(&deeper, |l| l == "e"));
        assert!(!any_level(&deep, |l| l == "e"));
        assert!(any_level(s, |l| l.contains("secret")));
        assert!(!any_level("plain", |_| true));
    }
}
