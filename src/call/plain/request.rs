//! A plain-HTTP request as bytes: the request line and header fields checked as the `http`
//! crate would check them, the body framed by its length.

use super::wire::WireError;

/// A request's bytes, put together field by field.
pub struct RequestWriter {
    out: Vec<u8>,
}

impl RequestWriter {
    /// Start a request: `method` (an `http::Method`, so a token) and an origin-form `target`.
    pub fn new(method: &str, target: &str, fields: usize) -> Result<Self, WireError> {
        if target.is_empty() || target.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(WireError::Target);
        }
        let mut out = Vec::with_capacity(64 + target.len() + fields * 40);
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        Ok(RequestWriter { out })
    }

    /// Add a header field, its name lower-cased (as hyper writes names). The framing fields
    /// (`Content-Length`, `Transfer-Encoding`) are toolgate's to write: one set by a definition
    /// is left out, so that the body is always framed by its real length.
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), WireError> {
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(WireError::HeaderName);
        }
        if !value.bytes().all(is_value_byte) {
            return Err(WireError::HeaderValue);
        }
        if is_framing_header(name) {
            return Ok(());
        }
        let start = self.out.len();
        self.out.extend_from_slice(name.as_bytes());
        self.out[start..].make_ascii_lowercase();
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The request's bytes, with `body` framed by its length (an empty body is sent without
    /// one, as hyper does).
    pub fn finish(mut self, body: &[u8]) -> Vec<u8> {
        if !body.is_empty() {
            self.out.extend_from_slice(b"content-length: ");
            self.out
                .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(body);
        self.out
    }
}

/// `Content-Length` or `Transfer-Encoding`: how a body is framed, which only the client that
/// writes the body can say truly.
pub fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// Byte classes, looked up once per byte of every header written: `TOKEN` for an RFC 9110
/// `tchar`, `VALUE` for what `http::HeaderValue::from_str` accepts (visible ASCII, space, tab).
const TOKEN: u8 = 1;
const VALUE: u8 = 2;
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c == b'\t' || (c >= b' ' && c < 0x7f) {
            t[b] |= VALUE;
        }
        if c.is_ascii_alphanumeric() {
            t[b] |= TOKEN;
        }
        b += 1;
    }
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        t[specials[i] as usize] |= TOKEN;
        i += 1;
    }
    t
};

/// An RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    CLASSES[usize::from(b)] & TOKEN != 0
}

/// What `http::HeaderValue::from_str` accepts in a value: visible ASCII, space and tab.
pub(super) fn is_value_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & VALUE != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_as_hyper_wrote_them_and_nothing_can_be_smuggled_in() {
        let mut w = RequestWriter::new("POST", "/a/b%20c?x=1", 3).expect("writer");
        w.header("Host", "127.0.0.1:8080").expect("host");
        w.header("X-Api-Key", "k\tv").expect("key");
        w.header("Content-Length", "999").expect("dropped");
        w.header("transfer-encoding", "chunked").expect("dropped");
        let bytes = w.finish(b"{}");
        assert_eq!(
            bytes,
            b"POST /a/b%20c?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-api-key: k\tv\r\ncontent-length: 2\r\n\r\n{}"
        );
        let empty = RequestWriter::new("GET", "/", 0)
            .expect("writer")
            .finish(b"");
        assert_eq!(empty, b"GET / HTTP/1.1\r\n\r\n");
        let mut w = RequestWriter::new("GET", "/", 1).expect("writer");
        for value in [
            "a\r\nX-Injected: 1",
            "a\nb",
            "a\rb",
            "nul\0",
            "del\x7f",
            "café",
        ] {
            assert!(
                matches!(w.header("X-V", value), Err(WireError::HeaderValue)),
                "{value:?}"
            );
        }
        for name in ["", "X V", "X:V", "X\r\nY", "é"] {
            assert!(
                matches!(w.header(name, "v"), Err(WireError::HeaderName)),
                "{name:?}"
            );
        }
        for target in ["", "/a b", "/a\r\nX: y", "/\x7f", "/é"] {
            assert!(
                matches!(RequestWriter::new("GET", target, 0), Err(WireError::Target)),
                "{target:?}"
            );
        }
    }

    #[test]
    fn header_bytes_are_classed_as_http_and_the_http_crate_class_them() {
        for b in 0u8..=0x7f {
            let c = char::from(b);
            let name = format!("a{c}");
            let value = format!("a{c}");
            let mut w = RequestWriter::new("GET", "/", 1).expect("writer");
            assert_eq!(
                w.header(&name, "v").is_ok(),
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "name byte {b:#x}"
            );
            assert_eq!(
                w.header("x", &value).is_ok(),
                http::HeaderValue::from_str(&value).is_ok(),
                "value byte {b:#x}"
            );
        }
    }
}
