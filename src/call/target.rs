//! Where a request goes: its URL, parsed whole or put together from the webhook's origin.

use std::sync::Arc;

use url::form_urlencoded;
use url::{Position, Url};

/// A request's URL.
///
/// Most plain-HTTP calls go to their webhook's origin (scheme and authority, parsed once per
/// webhook) followed by a path and query that the URL parser would keep byte for byte: those
/// are put together as text instead of parsed, which cost about 2,000 instructions a call, 4 %
/// of a call's work (BENCHMARKS.md, issue 16, thirtieth session). Anything else is parsed
/// (HTTPS too: reqwest takes a parsed URL).
///
/// Its parts are private: a joined URL is only ever made by `join_verbatim`, which checks that
/// its text is what the parser would make of it.
#[derive(Debug, Clone)]
pub struct Target(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// Parsed whole.
    Parsed(Url),
    /// The origin's text, then a path (and maybe a query) the parser keeps as it is.
    Joined {
        /// The webhook's origin: scheme, host and port are the URL's.
        origin: Arc<Url>,
        /// The whole URL's text, as `Url::parse` would spell it.
        text: String,
        /// Where the path starts in `text`.
        path_at: usize,
    },
}

/// Bytes the URL parser keeps as they are in an http(s) path, but for dot segments (checked
/// apart): RFC 3986's unreserved and sub-delimiters but `'`, and `:`, `@`, `/` and `%` (kept
/// even when no hex digits follow). Left out to be safe: everything the path or query
/// percent-encode sets name, `\` (a separator in http URLs), `'` (encoded in their queries),
/// `^`, `|`, `[` and `]`.
const fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'%'
        )
}

/// `path_byte` of every byte, looked up: a chain of comparisons per byte cost more than the
/// rest of the check.
const PATH_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = path_byte(b as u8);
        b += 1;
    }
    table
};

/// Whether a path segment is one the parser resolves.
fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Whether the parser keeps `path` (starting with `/`) as it is: no byte it would encode and
/// no segment it would resolve (`.` or `..`, also spelled with `%2e`), in one pass.
fn verbatim_path(path: &[u8]) -> bool {
    let mut segment_at = 0;
    for (i, &b) in path.iter().enumerate() {
        if !PATH_BYTES[usize::from(b)] {
            return false;
        }
        match b {
            b'/' => {
                if is_dot_segment(&path[segment_at..i]) {
                    return false;
                }
                segment_at = i + 1;
            }
            // Any `%2e` is left to the parser: it may spell a dot segment.
            b'%' if path.get(i + 1) == Some(&b'2')
                && matches!(path.get(i + 2), Some(b'e' | b'E')) =>
            {
                return false;
            }
            _ => {}
        }
    }
    !is_dot_segment(&path[segment_at..])
}

impl Target {
    /// `text` parsed whole.
    pub fn parse(text: &str) -> Result<Target, url::ParseError> {
        Url::parse(text).map(Target::from)
    }

    /// Whether the URL was put together as text (`join_verbatim`) rather than parsed: for the
    /// tests that check the fast path is taken.
    #[cfg(test)]
    pub(crate) fn is_joined(&self) -> bool {
        matches!(self.0, Kind::Joined { .. })
    }

    /// `rest` after `origin` (a URL of scheme and authority only) when the parser would give
    /// exactly that text for the two together: `rest` starts a path (not `//`), holds no byte
    /// the parser would encode or drop, no dot segment and no fragment. `None` otherwise: parse
    /// the whole text instead.
    pub fn join_verbatim(origin: &Arc<Url>, rest: &str) -> Option<Target> {
        let b = rest.as_bytes();
        if b.first() != Some(&b'/') || b.get(1) == Some(&b'/') || origin.path() != "/" {
            return None;
        }
        let (path, query) = match b.iter().position(|&c| c == b'?') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (b, &b[..0]),
        };
        if !verbatim_path(path)
            || !query
                .iter()
                .all(|&c| PATH_BYTES[usize::from(c)] || c == b'?')
        {
            return None;
        }
        let head = &origin[..Position::BeforePath];
        let mut text = String::with_capacity(head.len() + rest.len() + 32);
        text.push_str(head);
        text.push_str(rest);
        Some(Target(Kind::Joined {
            origin: origin.clone(),
            text,
            path_at: head.len(),
        }))
    }

    /// The whole URL.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Kind::Parsed(u) => u.as_str(),
            Kind::Joined { text, .. } => text,
        }
    }

    /// A URL with this one's scheme, host and port (its own, or its origin's): what the
    /// network policy and the connection need.
    pub fn host_url(&self) -> &Url {
        match &self.0 {
            Kind::Parsed(u) => u,
            Kind::Joined { origin, .. } => origin,
        }
    }

    /// The path and query, as sent in a request line.
    pub fn path_and_query(&self) -> &str {
        match &self.0 {
            Kind::Parsed(u) => &u[Position::BeforePath..Position::AfterQuery],
            Kind::Joined { text, path_at, .. } => &text[*path_at..],
        }
    }

    /// Host and port as a `Host` field spells them.
    pub fn authority(&self) -> &str {
        &self.host_url()[Position::BeforeHost..Position::AfterPort]
    }

    /// The URL's origin, to tell a redirect to another one.
    pub fn origin(&self) -> url::Origin {
        self.host_url().origin()
    }

    /// The URL parsed (redirects and HTTPS need one): a copy, or the text parsed.
    pub fn to_url(&self) -> Result<Url, url::ParseError> {
        match &self.0 {
            Kind::Parsed(u) => Ok(u.clone()),
            Kind::Joined { text, .. } => Url::parse(text),
        }
    }

    /// Append `name=value` pairs to the query, form-encoded, as `Url::query_pairs_mut` does.
    pub fn append_query_pairs<N: AsRef<str>, V: AsRef<str>>(
        &mut self,
        pairs: impl IntoIterator<Item = (N, V)>,
    ) {
        match &mut self.0 {
            Kind::Parsed(u) => {
                let mut q = u.query_pairs_mut();
                for (name, value) in pairs {
                    q.append_pair(name.as_ref(), value.as_ref());
                }
            }
            Kind::Joined { text, path_at, .. } => {
                // No fragment here: `join_verbatim` takes none.
                let start = match text[*path_at..].find('?') {
                    Some(i) => *path_at + i + 1,
                    None => {
                        text.push('?');
                        text.len()
                    }
                };
                let mut q = form_urlencoded::Serializer::for_suffix(text, start);
                for (name, value) in pairs {
                    q.append_pair(name.as_ref(), value.as_ref());
                }
            }
        }
    }
}

impl From<Url> for Target {
    fn from(u: Url) -> Target {
        Target(Kind::Parsed(u))
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        match t.0 {
            Kind::Parsed(u) => u.into(),
            Kind::Joined { text, .. } => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Arc<Url> {
        Arc::new(Url::parse(text).unwrap())
    }

    /// Every string of up to two characters from a set that matters to the parser, after a
    /// path start, in a path and in a query, joined verbatim or not: when joined, exactly the
    /// text parsing gives.
    #[test]
    fn a_verbatim_join_is_what_parsing_the_whole_gives() {
        let alphabet: Vec<char> = "a/.%2eE?#\\' ^|[]{}`\"<>@:;=&+,$!*()~_-\t\u{e9}\u{0}"
            .chars()
            .collect();
        let origins = [
            "http://127.0.0.1:8080",
            "HTTP://User:Pw@EXAMPLE.com:80",
            "https://b\u{fc}cher.example",
            "http://[::1]:9",
        ];
        let mut joined = 0;
        for o in origins {
            let parsed_origin = origin(o);
            let mut rests = vec![String::new()];
            for _ in 0..2 {
                let mut longer = Vec::new();
                for r in &rests {
                    for c in &alphabet {
                        longer.push(format!("{r}{c}"));
                    }
                }
                rests.extend(longer);
            }
            rests.extend(
                ["..", "%2e.", "a/..", "./", "%2E%2e/", "a%2", "%", "x%2ey"].map(String::from),
            );
            for tail in &rests {
                for rest in [
                    format!("/{tail}"),
                    format!("/x/{tail}"),
                    format!("/x?{tail}"),
                ] {
                    let whole = Url::parse(&format!("{o}{rest}")).unwrap();
                    if let Some(t) = Target::join_verbatim(&parsed_origin, &rest) {
                        joined += 1;
                        assert_eq!(t.as_str(), whole.as_str(), "{o} {rest:?}");
                        assert_eq!(
                            t.path_and_query(),
                            &whole[Position::BeforePath..Position::AfterQuery]
                        );
                        assert_eq!(t.to_url().unwrap(), whole);
                        assert_eq!(t.origin(), whole.origin());
                        assert_eq!(
                            t.authority(),
                            &whole[Position::BeforeHost..Position::AfterPort]
                        );
                    }
                }
            }
        }
        // Most of the tries have some byte that is left to the parser; enough are joined.
        assert!(joined > 1_000, "{joined}");
    }

    #[test]
    fn what_the_parser_would_change_is_not_joined() {
        let o = origin("http://h.example");
        for rest in [
            "",
            "?q",
            "#f",
            "//other/x",
            "/\\x",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/.",
            "/a/%2e/b",
            "/a/%2E%2e",
            "/a b",
            "/a\tb",
            "/caf\u{e9}",
            "/a{b}",
            "/a#f",
            "/a?b#c",
            "/a?it's",
            "/a?x y",
            "/a^b",
            "/a|b",
            "/[x]",
        ] {
            assert!(Target::join_verbatim(&o, rest).is_none(), "{rest:?}");
        }
        assert!(Target::join_verbatim(&o, "/api/orders/A-1001").is_some());
    }

    #[test]
    fn query_pairs_are_appended_as_the_parser_appends_them() {
        let o = origin("http://h.example:8080");
        let pairs = [("format", "json"), ("q", "a b&c=d/é'"), ("", "")];
        for rest in ["/a", "/a?", "/a?x=1", "/a?x=1&", "/a?x"] {
            let mut joined = Target::join_verbatim(&o, rest).unwrap();
            let mut parsed = Target::parse(&format!("http://h.example:8080{rest}")).unwrap();
            joined.append_query_pairs(pairs);
            parsed.append_query_pairs(pairs);
            assert_eq!(joined.as_str(), parsed.as_str(), "{rest}");
            assert_eq!(joined.path_and_query(), parsed.path_and_query());
            assert_eq!(joined.to_url().unwrap().as_str(), parsed.as_str());
        }
    }
}
