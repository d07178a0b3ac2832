//! A small blocking HTTP/1.1 client for `distsync client` and the tests:
//! one request per connection, plain `http://` only (the node serves
//! nothing else), redirects followed a bounded number of times.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The largest response body read; a node's answers are far smaller.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Redirects followed before giving up (a leader changing under the
/// client can bounce it a few times; a loop must still end).
pub const MAX_REDIRECTS: usize = 5;

/// A response: status, headers (names lower-cased) and body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `http://host:port/path` split into the address and the path.
pub fn split_url(url: &str) -> io::Result<(String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{url}`: expected an http:// URL such as http://127.0.0.1:8001"),
        )
    })?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{url}`: expected host:port after http://"),
        ));
    }
    Ok((host.to_owned(), path.to_owned()))
}

/// Sends one request to `url` and reads the whole answer, each socket
/// operation bounded by `timeout`.
pub fn request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    request_as(method, url, body, timeout, None)
}

/// Like `request`, with `Authorization: Bearer <token>` when given.
pub fn request_as(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
    token: Option<&str>,
) -> io::Result<HttpResponse> {
    let (host, path) = split_url(url)?;
    let addr = host.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{host}` resolves to no address"),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        if t.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the token must be visible ASCII characters (no spaces)",
            ));
        }
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES as u64 + 64 * 1024)
        .read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Like `request`, following 307/308 redirects (at most `MAX_REDIRECTS`).
pub fn request_following(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<(HttpResponse, String)> {
    request_following_as(method, url, body, timeout, None)
}

/// Like `request_following`, with `Authorization: Bearer <token>` when
/// given (to every node on the way: they share one token).
pub fn request_following_as(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    timeout: Duration,
    token: Option<&str>,
) -> io::Result<(HttpResponse, String)> {
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let resp = request_as(method, &url, body, timeout, token)?;
        match (resp.status, resp.header("location")) {
            (307 | 308, Some(next)) => url = next.to_owned(),
            _ => return Ok((resp, url)),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_REDIRECTS} redirects, the last to {url}: the cluster's leader keeps moving"
    )))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad HTTP response: {what}"),
    )
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("status line `{status_line}`")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(rest.len());
        if len > MAX_RESPONSE_BYTES || len > rest.len() {
            return Err(bad(&format!(
                "body of {len} bytes, {} received",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line"))?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("chunk size"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size > rest.len() || body.len() + size > MAX_RESPONSE_BYTES {
            return Err(bad("chunk longer than the response"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).ok_or_else(|| bad("chunk end"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_a_length_or_in_chunks() {
        let r = parse_response(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://a:1/kv/1\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.status, 307);
        assert_eq!(r.header("location"), Some("http://a:1/kv/1"));
        assert_eq!(r.body, b"{}");
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn bad_responses_and_urls_are_errors_not_panics() {
        for raw in [
            &b""[..],
            b"HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc",
        ] {
            assert!(parse_response(raw).is_err(), "{raw:?}");
        }
        for url in ["127.0.0.1:8001", "https://x:1/", "http://", "http://host/"] {
            assert!(split_url(url).is_err(), "{url}");
        }
        assert_eq!(
            split_url("http://127.0.0.1:8001").unwrap(),
            ("127.0.0.1:8001".to_owned(), "/".to_owned())
        );
    }
}
