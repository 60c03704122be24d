//! Redaction of secret values from everything a call leaves behind: results, content for the
//! model, history, events and error text. An upstream may echo a secret in any encoding, so each
//! secret is searched for in every form it can take on the way back (raw, JSON-escaped any number
//! of times, percent-, form-, base64- and hex-encoded, and behind escapes of mixed kinds:
//! `escapes`), and no cut may keep a fragment of one.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

mod escapes;

/// Replacement for every secret value.
pub const REDACTED: &str = "[REDACTED]";

/// How many times a value may have been JSON-escaped and still be recognised. Each level doubles
/// the backslashes, so a value nested deeper than this is far past any real echo.
const JSON_DEPTH: usize = 5;

/// Replacements to choose from, in order: a redactor uses the first that holds no form of its
/// secrets. With `[REDACTED]` for a secret such as `ED]`, every replacement made a new match
/// ("repeat until nothing is found" then never ended, and the text grew on every round); the
/// empty string, last, holds none.
const MARKERS: [&str; 5] = [REDACTED, "[redacted]", "[secret]", "***", ""];

/// Most replacement rounds over one text. A round can make a new match only where a needle
/// spans a replacement's edge; past this many rounds the whole text becomes the marker.
const MAX_ROUNDS: usize = 8;

/// Derived forms shorter than this are not searched for: they would match ordinary text.
const MIN_DERIVED: usize = 4;

/// `encodeURIComponent`: everything but `A-Za-z0-9-_.!~*'()`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Whether needle `n` could lie across JSON structure (`Redactor::could_span`): it holds JSON's
/// punctuation, a quote or a backslash, or lies within a literal.
fn crosses_structure(n: &str) -> bool {
    n.contains(['"', '[', ']', '{', '}', ',', ':', '\\'])
        || ["true", "false", "null"].iter().any(|l| l.contains(n))
}

/// Whether some string or key of `v` is written out with an escape.
fn has_escapes(v: &Value) -> bool {
    let escaped = |s: &str| s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    match v {
        Value::String(s) => escaped(s),
        Value::Array(a) => a.iter().any(has_escapes),
        Value::Object(m) => m.iter().any(|(k, x)| escaped(k) || has_escapes(x)),
        Value::Number(_) | Value::Bool(_) | Value::Null => false,
    }
}

/// RFC 3986 unreserved characters stay, everything else is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces known secret values, in every encoding, wherever they appear.
#[derive(Debug, Clone)]
pub struct Redactor {
    needles: Vec<String>,
    /// What replaces a secret: `[REDACTED]` unless that holds one of the needles (`MARKERS`).
    marker: &'static str,
    /// One `marker` per needle, as `replace_all` wants them.
    replacements: Vec<&'static str>,
    /// The needles' automaton; `None` only if it could not be built (past aho-corasick's size
    /// limits), and then every scan falls back to looking for each needle in turn: slower, never
    /// blind.
    matcher: Option<AhoCorasick>,
    /// The needles and each one JSON-escaped once, for scanning JSON text (see `is_clean_json`),
    /// when escaping changes some needle (`json_extra`); `matcher` serves otherwise.
    json_matcher: Option<AhoCorasick>,
    /// Whether some needle JSON-escaped is not a needle.
    json_extra: bool,
    /// Length of the shortest needle: a shorter text holds none, and is not scanned (most
    /// header values are shorter than any form of a secret).
    shortest: usize,
    /// Whether some needle could lie across JSON structure (`could_span`).
    structural: bool,
}

impl Default for Redactor {
    /// A redactor with no secrets: it changes nothing.
    fn default() -> Self {
        Redactor::new(&[])
    }
}

/// Most redactors kept; past that the cache starts again (secret rotation leaves stale entries).
const CACHE_MAX: usize = 1024;

/// Redactors by the secret values they cover. The keys hold the values themselves: the redactor
/// beside each already holds every form of them, and a SHA-256 digest of the values (the key
/// before) cost more per call than the rest of the lookup.
#[derive(Default)]
pub struct RedactorCache {
    map: std::sync::Mutex<foldhash::HashMap<Vec<String>, std::sync::Arc<Redactor>>>,
}

impl RedactorCache {
    /// Forget every redactor (a secret changed: the old value's forms go with them).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The redactor for `secrets`, built once.
    pub fn get(&self, secrets: &[String]) -> std::sync::Arc<Redactor> {
        if secrets.is_empty() {
            return std::sync::Arc::default();
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(secrets) {
            return r.clone();
        }
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        let r = std::sync::Arc::new(Redactor::new(secrets));
        map.insert(secrets.to_vec(), r.clone());
        r
    }
}

/// JSON string escaping without the quotes; `ascii` also escapes non-ASCII as `\uXXXX` (Python's
/// default), `slash` escapes `/` as `\/` (PHP's default).
fn json_escape(s: &str, ascii: bool, slash: bool) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    let mut inner = quoted
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or_default()
        .to_string();
    if ascii {
        let mut out = String::with_capacity(inner.len());
        for c in inner.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        inner = out;
    }
    if slash {
        inner = inner.replace('/', "\\/");
    }
    inner
}

/// The base64 characters that depend only on `s`, for each of the three alignments `s` can have
/// inside a longer encoded text (e.g. `user:secret` in a Basic credential).
fn base64_cores(s: &[u8], engine: &base64::engine::GeneralPurpose) -> Vec<String> {
    let mut out = Vec::new();
    for pad in 0..3usize {
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(s);
        let enc = engine.encode(&buf);
        let start_bits = 8 * pad;
        let end_bits = 8 * (pad + s.len());
        let first = start_bits.div_ceil(6);
        let last = end_bits / 6; // exclusive
        if last > first {
            out.push(enc[first..last].to_string());
        }
    }
    out
}

/// Every form of `s` to look for.
fn forms(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    let mut derived = Vec::new();
    // JSON escaping, applied repeatedly (an upstream that echoes a JSON body inside a JSON string).
    for (ascii, slash) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut cur = s.to_string();
        for _ in 0..JSON_DEPTH {
            let next = json_escape(&cur, ascii, slash);
            if next == cur {
                break;
            }
            derived.push(next.clone());
            cur = next;
        }
    }
    for set in [NON_ALPHANUMERIC, URI_COMPONENT, UNRESERVED] {
        let upper = utf8_percent_encode(s, set).to_string();
        // A second round covers a value percent-encoded twice (a URL inside a query parameter).
        derived.push(utf8_percent_encode(&upper, set).to_string());
        derived.push(lowercase_hex_escapes(&upper));
        derived.push(upper);
    }
    if let Ok(form) = serde_urlencoded::to_string([("", s)]) {
        derived.push(form.trim_start_matches('=').to_string());
    }
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        derived.extend(base64_cores(s.as_bytes(), engine));
    }
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    derived.push(hex.to_ascii_uppercase());
    derived.push(hex);
    out.extend(derived.into_iter().filter(|d| d.len() >= MIN_DERIVED));
    out
}

/// `%2F` → `%2f`: some encoders write lower-case hex.
fn lowercase_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_pct = 0;
    for c in s.chars() {
        if c == '%' {
            after_pct = 2;
            out.push(c);
        } else if after_pct > 0 {
            after_pct -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Redactor {
    /// A redactor for these secret values.
    pub fn new(secrets: &[String]) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            for f in forms(s) {
                if !needles.contains(&f) {
                    needles.push(f);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let matcher = if needles.is_empty() {
            None
        } else {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&needles)
                .ok()
        };
        // Escaping works character by character, so a string that holds needle `n` is written
        // in JSON text holding `n` escaped: looking for both finds in the text whatever the
        // strings hold.
        let mut json_needles = needles.clone();
        for n in &needles {
            let escaped = json_escape(n, false, false);
            if !json_needles.contains(&escaped) {
                json_needles.push(escaped);
            }
        }
        let json_extra = json_needles.len() > needles.len();
        let json_matcher = if json_extra {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&json_needles)
                .ok()
        } else {
            None
        };
        let marker = MARKERS
            .into_iter()
            .find(|m| !needles.iter().any(|n| m.contains(n.as_str())))
            .unwrap_or_default();
        Redactor {
            marker,
            structural: needles.iter().any(|n| crosses_structure(n)),
            replacements: vec![marker; needles.len()],
            shortest: needles.iter().map(String::len).min().unwrap_or(usize::MAX),
            needles,
            matcher,
            json_matcher,
            json_extra,
        }
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Redact a string.
    pub fn text(&self, s: &str) -> String {
        self.redacted(s).unwrap_or_else(|| s.to_string())
    }

    /// `s` redacted, or `None` when it holds no secret (each text is scanned once for that).
    fn redacted(&self, s: &str) -> Option<String> {
        // A text that is one form of a secret whole (a header holding just a key) is the marker:
        // the leftmost-longest match is the whole text, and the marker holds no needle. Said
        // without three scans of the automaton and a copy.
        if s.len() >= self.shortest && self.needles.iter().any(|n| n.as_str() == s) {
            return Some(self.marker.to_string());
        }
        self.scanned(s)
    }

    /// `redacted`, by scanning `s` whatever it is.
    fn scanned(&self, s: &str) -> Option<String> {
        let mut plain = self.finds_plain(s);
        if !plain && !self.finds_escaped(s) {
            return None;
        }
        // Replacing can make a new occurrence across a replacement's edge (a needle that ends
        // where the marker begins), so repeat until nothing is found, a bounded number of times.
        let mut out = s.to_string();
        for _ in 0..MAX_ROUNDS {
            if plain {
                out = self.replace_plain(out);
            }
            if let Some(cut) = self.cut_escaped(&out) {
                out = cut;
            }
            plain = self.finds_plain(&out);
            if !plain && !self.finds_escaped(&out) {
                return Some(out);
            }
        }
        // The marker alone holds no needle (`MARKERS`).
        Some(self.marker.to_string())
    }

    /// Every needle in `s` replaced by the marker, once over.
    fn replace_plain(&self, s: String) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(&s, &self.replacements),
            None => self.needles.iter().fold(s, |t, n| {
                if t.contains(n.as_str()) {
                    t.replace(n.as_str(), self.marker)
                } else {
                    t
                }
            }),
        }
    }

    /// Whether `s` holds any form of a secret, also behind escapes of mixed kinds (`escapes`).
    fn finds(&self, s: &str) -> bool {
        self.finds_plain(s) || self.finds_escaped(s)
    }

    /// Whether `s` holds any form of a secret as it is.
    fn finds_plain(&self, s: &str) -> bool {
        match self.hits(&self.matcher, s) {
            Some(found) => found,
            // No automaton: look for each needle (longest first) in turn.
            None => s.len() >= self.shortest && self.needles.iter().any(|n| s.contains(n.as_str())),
        }
    }

    /// Whether `s`, with its escapes undone level after level, holds any form of a secret.
    fn finds_escaped(&self, s: &str) -> bool {
        !self.needles.is_empty()
            && s.len() >= self.shortest
            && escapes::may_hold(s)
            && escapes::any_level(s, |level| self.finds_plain(level))
    }

    /// `s` with every secret that the first level of undone escapes to hold one holds cut out of
    /// it, over the bytes each was written in; `None` when no level holds one.
    fn cut_escaped(&self, s: &str) -> Option<String> {
        if self.needles.is_empty() || !escapes::may_hold(s) {
            return None;
        }
        let levels = escapes::levels(s);
        for k in 0..levels.len() {
            let found = self.spans(&levels[k].text);
            if found.is_empty() {
                continue;
            }
            let mut out = String::with_capacity(s.len());
            let mut at = 0;
            for (start, end) in found {
                let (a, b) = escapes::source_span(&levels[..=k], start, end);
                out.push_str(&s[at..a]);
                out.push_str(self.marker);
                at = b;
            }
            out.push_str(&s[at..]);
            return Some(out);
        }
        None
    }

    /// Where needles are in `s`: with the automaton every leftmost-longest match, without it
    /// every occurrence of the longest needle that occurs.
    fn spans(&self, s: &str) -> Vec<(usize, usize)> {
        match &self.matcher {
            Some(m) => m.find_iter(s).map(|x| (x.start(), x.end())).collect(),
            None => self
                .needles
                .iter()
                .find(|n| s.contains(n.as_str()))
                .map(|n| {
                    s.match_indices(n.as_str())
                        .map(|(i, m)| (i, i + m.len()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether `m` matches `s` (a text shorter than every needle is not scanned); `None` when
    /// there is no automaton to ask.
    fn hits(&self, m: &Option<AhoCorasick>, s: &str) -> Option<bool> {
        let m = m.as_ref()?;
        Some(s.len() >= self.shortest && m.is_match(s))
    }

    /// Whether compact JSON text, as serde_json writes it, holds nothing that redacting the
    /// parsed value (`redact_value`) or the text itself would touch: then the text can stand for
    /// the redacted value without the value being built. A string, key or number of the value
    /// that holds a needle is written holding that needle JSON-escaped (escaping works character
    /// by character), and the scan looks for every needle both as it is and escaped once.
    pub fn is_clean_json(&self, compact: &str) -> bool {
        if self.needles.is_empty() {
            return true;
        }
        let scan = if self.json_extra {
            &self.json_matcher
        } else {
            &self.matcher
        };
        // No automaton could be built: say no, and let the value be redacted.
        self.hits(scan, compact) == Some(false) && !self.finds_escaped(compact)
    }

    /// Whether a JSON value, already redacted string by string (`redact_value`), is also clean
    /// written out. A secret can span the value's structure (`1,2` in `[1,2]`, `7,"k":8` in
    /// `{"a":7,"k":8}`): no string, key or number holds it, yet the written value does.
    pub fn is_clean_value(&self, v: &Value) -> bool {
        if self.needles.is_empty() || !self.could_span(v) {
            return true;
        }
        // Writing a `Value` cannot fail; were it to, the value is not called clean.
        serde_json::to_string(v).is_ok_and(|text| self.is_clean_json(&text))
    }

    /// Whether `v`, redacted string by string, could still hold a needle once written out.
    ///
    /// Compact JSON puts punctuation or a quote between any two tokens, so a needle found in the
    /// text but in no string, key or number either holds one of `"[]{},:\\`, or lies in a
    /// `true`/`false`/`null`, or overlaps an escape that a string's writing added (a quote,
    /// backslash or control character in the string: `\n` then `abc` in the text for a newline
    /// and `abc` in the string, which holds no `nabc`). Neither: the text is not scanned (the
    /// usual case, keys and tokens free of JSON's syntax, saves writing the value out).
    fn could_span(&self, v: &Value) -> bool {
        self.structural || has_escapes(v)
    }

    /// Redact a string that is no longer needed as it was: handed back untouched, with no copy,
    /// when it holds no secret (as nearly every string does).
    pub fn into_text(&self, s: String) -> String {
        self.redact_owned(s).0
    }

    /// `into_text`, and whether anything was redacted (the text is then not what was given).
    fn redact_owned(&self, s: String) -> (String, bool) {
        match self.redacted(&s) {
            Some(text) => (text, true),
            None => (s, false),
        }
    }

    /// Redact every string (keys included) of a JSON value in place: only what holds a secret is
    /// replaced, nothing else is copied.
    pub fn redact_value(&self, v: &mut Value) {
        if self.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Some(text) = self.redacted(s) {
                    *s = text;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_value(x)),
            Value::Object(m) if m.keys().any(|k| self.finds(k)) => {
                *m = std::mem::take(m)
                    .into_iter()
                    .map(|(k, mut x)| {
                        self.redact_value(&mut x);
                        (self.into_text(k), x)
                    })
                    .collect();
            }
            Value::Object(m) => m.values_mut().for_each(|x| self.redact_value(x)),
            Value::Number(n) => {
                if self.finds(&n.to_string()) {
                    *v = Value::String(self.marker.into());
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// `redact_value` of a value no longer needed as it was.
    pub fn into_value(&self, mut v: Value) -> Value {
        self.redact_value(&mut v);
        v
    }

    /// `into_value` for a value that is kept (recorded, or shown in a dry run): should the value
    /// written out still hold a secret laid across its structure (`is_clean_value`), it is kept
    /// as its written text, redacted, in a JSON string instead: the tree itself would hand the
    /// secret on to whoever reads it back.
    pub fn into_kept_value(&self, v: Value) -> Value {
        let v = self.into_value(v);
        if self.is_clean_value(&v) {
            return v;
        }
        // Writing a `Value` cannot fail; were it to, nothing of it is kept.
        Value::String(
            serde_json::to_string(&v).map_or_else(|_| self.marker.into(), |t| self.into_text(t)),
        )
    }

    /// `into_kept_value` of a value still needed as it was, in a copy.
    pub fn kept_value(&self, v: &Value) -> Value {
        self.into_kept_value(v.clone())
    }

    /// Redact the values of headers no longer needed as they were (copied only where a secret is).
    pub fn into_headers(&self, h: Vec<(String, String)>) -> Vec<(String, String)> {
        h.into_iter().map(|(k, v)| (k, self.into_text(v))).collect()
    }

    /// Redact header values, in a copy.
    pub fn headers(&self, h: &[(String, String)]) -> Vec<(String, String)> {
        self.into_headers(h.to_vec())
    }

    /// Redact `s`, then cut it to at most `max` bytes on a char boundary, dropping a tail that
    /// could be the start of a secret cut in two. `already_cut` says `s` itself was cut short (a
    /// body read up to a cap), so its tail needs the same care. Returns the text and whether it
    /// was cut.
    pub fn cut(&self, s: &str, max: usize, already_cut: bool) -> (String, bool) {
        self.cut_text(s.to_string(), max, already_cut)
    }

    /// `cut` of a string no longer needed as it was (not copied when it holds no secret and fits).
    pub fn cut_text(&self, s: String, max: usize, already_cut: bool) -> (String, bool) {
        let (text, _, cut) = self.cut_text_noting(s, max, already_cut);
        (text, cut)
    }

    /// `cut_text`, and also whether anything was redacted: (text, redacted, cut).
    pub fn cut_text_noting(
        &self,
        s: String,
        max: usize,
        already_cut: bool,
    ) -> (String, bool, bool) {
        let (redacted, changed) = self.redact_owned(s);
        let mut end = redacted.len().min(max);
        while !redacted.is_char_boundary(end) {
            end -= 1;
        }
        if end == redacted.len() && !already_cut {
            return (redacted, changed, false);
        }
        let kept = &redacted[..end];
        let drop = self.dangling_prefix(kept).max(self.dangling_escaped(kept));
        (kept[..kept.len() - drop].to_string(), changed, true)
    }

    /// `dangling_prefix` of `s` read with its escapes undone (`escapes`): how many bytes of `s`
    /// to drop so that no level of it ends in the first characters of a secret, counting an
    /// escape the cut left unfinished (`\u00`) as the start of one.
    fn dangling_escaped(&self, s: &str) -> usize {
        if self.needles.is_empty() || !escapes::may_hold(s) {
            return 0;
        }
        let levels = escapes::levels(s);
        let mut keep = self.keep_of(s);
        for k in 0..levels.len() {
            let at = self.keep_of(&levels[k].text);
            keep = keep.min(escapes::source_span(&levels[..=k], at, at).0);
        }
        s.len() - keep
    }

    /// How much of `t`, a cut text or a level of it, may stay: not an escape the cut left
    /// unfinished (it stands for a character not yet known, which may be a secret's next), nor
    /// a tail before it that begins a secret.
    fn keep_of(&self, t: &str) -> usize {
        // A character percent-encoded in several bytes can be cut after any of them.
        let mut end = t.len();
        for _ in 0..4 {
            match t[..end].rfind(['\\', '%', '&']) {
                Some(last) if escapes::is_unfinished(&t[last..end]) => end = last,
                _ => break,
            }
        }
        end - self.dangling_prefix(&t[..end])
    }

    /// Length of the longest tail of `s` that begins some secret form (two bytes or more, or any
    /// length for a very short secret).
    fn dangling_prefix(&self, s: &str) -> usize {
        let mut best = 0;
        for n in &self.needles {
            let longest = n.len().saturating_sub(1).min(s.len());
            for len in (1..=longest).rev() {
                if len <= best {
                    break;
                }
                if (len >= 2 || n.len() <= 3)
                    && s.is_char_boundary(s.len() - len)
                    && n.as_bytes().starts_with(&s.as_bytes()[s.len() - len..])
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests;
