//! RESP2, the Redis wire protocol: encoding and incremental decoding.
//!
//! Decoding never panics: malformed input is an error, a frame cut short is
//! `Ok(None)` so a caller can wait for more bytes. Limits follow
//! redis-server (bulk strings up to 512 MiB) plus a nesting limit, so a
//! hostile peer cannot make the decoder recurse without bound.

use std::fmt;

/// The largest bulk string redis-server accepts (`proto-max-bulk-len`).
const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// The deepest array nesting accepted; real replies nest a few levels at most.
const MAX_DEPTH: usize = 64;

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`: a status line, as bytes: RESP does not promise UTF-8.
    Simple(Vec<u8>),
    /// `-ERR ...`: an error line, including its prefix word (`ERR`, `WRONGTYPE`, ...),
    /// as bytes: an error that echoes an argument carries it byte for byte.
    Error(Vec<u8>),
    /// `:42`: a signed integer.
    Integer(i64),
    /// `$3\r\nfoo`: a binary-safe string; `None` is the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`: an array; `None` is the null array (`*-1`).
    Array(Option<Vec<Resp>>),
}

/// Why bytes are not a RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value is not one of `+ - : $ *`.
    UnknownType(u8),
    /// A line is not terminated by `\r\n` (a lone `\r`, or bulk data too long).
    BadLineEnd,
    /// An integer or length field is not a valid signed 64-bit decimal.
    BadInteger,
    /// A bulk or array length is negative (other than -1) or too large.
    BadLength,
    /// Arrays nest deeper than the decoder accepts.
    TooDeep,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            RespError::BadLineEnd => write!(f, "line not terminated by CRLF"),
            RespError::BadInteger => write!(f, "invalid integer"),
            RespError::BadLength => write!(f, "invalid bulk or array length"),
            RespError::TooDeep => write!(f, "arrays nested too deeply"),
        }
    }
}

impl std::error::Error for RespError {}

/// A command as clients send it: an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Resp {
    Resp::Array(Some(
        args.iter().map(|a| Resp::Bulk(Some(a.to_vec()))).collect(),
    ))
}

impl Resp {
    /// Appends the wire form of `self` to `out`.
    ///
    /// Line breaks inside simple strings and errors become spaces (as
    /// redis-server does for error replies), since the wire form cannot carry them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Resp::Simple(s) => encode_line(out, b'+', s),
            Resp::Error(s) => encode_line(out, b'-', s),
            Resp::Integer(n) => {
                out.push(b':');
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Resp::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Resp::Bulk(Some(data)) => {
                out.push(b'$');
                out.extend_from_slice(data.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Resp::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Resp::Array(Some(items)) => {
                out.push(b'*');
                out.extend_from_slice(items.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// Decodes one value from the front of `buf`: the value and the bytes it
    /// took, `Ok(None)` if `buf` holds only a prefix of a value.
    pub fn decode(buf: &[u8]) -> Result<Option<(Resp, usize)>, RespError> {
        decode_at(buf, 0, 0)
    }
}

fn encode_line(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
    out.push(tag);
    out.extend(
        s.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// The line starting at `pos` (without its CRLF) and the position after it.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[pos.min(buf.len())..];
    match rest.iter().position(|&b| b == b'\r') {
        None => Ok(None),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[..i], pos + i + 2))),
            Some(_) => Err(RespError::BadLineEnd),
        },
    }
}

/// Parses a decimal i64 strictly: optional `-`, digits, no `+`, no spaces.
fn parse_int(s: &[u8]) -> Result<i64, RespError> {
    let text = std::str::from_utf8(s).map_err(|_| RespError::BadInteger)?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RespError::BadInteger);
    }
    text.parse().map_err(|_| RespError::BadInteger)
}

fn decode_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Resp, usize)>, RespError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(RespError::UnknownType(tag));
    }
    let Some((text, next)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    match tag {
        // Status and error lines are taken byte for byte, as redis-server
        // sends them: an echoed argument may hold any byte but CR and LF.
        b'+' => Ok(Some((Resp::Simple(text.to_vec()), next))),
        b'-' => Ok(Some((Resp::Error(text.to_vec()), next))),
        b':' => Ok(Some((Resp::Integer(parse_int(text)?), next))),
        b'$' => {
            let len = parse_int(text)?;
            if len == -1 {
                return Ok(Some((Resp::Bulk(None), next)));
            }
            if !(0..=MAX_BULK_LEN).contains(&len) {
                return Err(RespError::BadLength);
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                // Bytes present so far must not already contradict the CRLF.
                if buf.len() > end && buf[end] != b'\r' {
                    return Err(RespError::BadLineEnd);
                }
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::BadLineEnd);
            }
            Ok(Some((Resp::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        _ => {
            let len = parse_int(text)?;
            if len == -1 {
                return Ok(Some((Resp::Array(None), next)));
            }
            if !(0..=i64::from(i32::MAX)).contains(&len) {
                return Err(RespError::BadLength);
            }
            if depth >= MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            // Each element takes at least 3 bytes, so this bounds the
            // allocation by the input actually received, not the claimed count.
            let mut items = Vec::with_capacity((len as usize).min(buf.len() / 3));
            let mut at = next;
            for _ in 0..len {
                match decode_at(buf, at, depth + 1)? {
                    None => return Ok(None),
                    Some((item, after)) => {
                        items.push(item);
                        at = after;
                    }
                }
            }
            Ok(Some((Resp::Array(Some(items)), at)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Resp) {
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(Resp::decode(&out), Ok(Some((v.clone(), out.len()))));
        // Every strict prefix is incomplete, never an error.
        for cut in 0..out.len() {
            assert_eq!(Resp::decode(&out[..cut]), Ok(None), "prefix {cut} of {v:?}");
        }
    }

    #[test]
    fn encodes_as_redis_does() {
        let mut out = Vec::new();
        command(&[b"SET", b"k", b"v"]).encode(&mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        let mut out = Vec::new();
        Resp::Bulk(None).encode(&mut out);
        Resp::Array(None).encode(&mut out);
        Resp::Integer(-7).encode(&mut out);
        Resp::Error("ERR a\r\nb".into()).encode(&mut out);
        assert_eq!(out, b"$-1\r\n*-1\r\n:-7\r\n-ERR a  b\r\n");
    }

    #[test]
    fn round_trips() {
        round_trip(Resp::Simple("OK".into()));
        round_trip(Resp::Error("WRONGTYPE x".into()));
        round_trip(Resp::Integer(i64::MIN));
        round_trip(Resp::Integer(i64::MAX));
        round_trip(Resp::Bulk(None));
        round_trip(Resp::Bulk(Some(Vec::new())));
        round_trip(Resp::Bulk(Some(b"a\r\nb\0c".to_vec())));
        round_trip(Resp::Array(None));
        round_trip(Resp::Array(Some(Vec::new())));
        round_trip(Resp::Array(Some(vec![
            Resp::Integer(1),
            Resp::Array(Some(vec![Resp::Bulk(None), Resp::Simple("x".into())])),
            Resp::Array(None),
        ])));
    }

    #[test]
    fn status_and_error_lines_are_bytes() {
        // redis-server 7.0 echoes an argument's bytes into an error
        // (`EXPIRE k 10 "\xff\xfe"`); the reply must decode as it was sent.
        let wire = b"-ERR Unsupported option \xff\xfe\r\n";
        let want = Resp::Error(b"ERR Unsupported option \xff\xfe".to_vec());
        assert_eq!(Resp::decode(wire), Ok(Some((want.clone(), wire.len()))));
        round_trip(want);
        round_trip(Resp::Simple(b"\x00\xc3(".to_vec()));
        let mut out = Vec::new();
        Resp::Error(b"ERR \xff\r\n\xfe".to_vec()).encode(&mut out);
        assert_eq!(out, b"-ERR \xff  \xfe\r\n");
    }

    #[test]
    fn decode_reports_consumed_bytes_of_pipelined_input() {
        let buf = b":1\r\n:2\r\n";
        assert_eq!(Resp::decode(buf), Ok(Some((Resp::Integer(1), 4))));
        assert_eq!(Resp::decode(&buf[4..]), Ok(Some((Resp::Integer(2), 4))));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let bad: &[(&[u8], RespError)] = &[
            (b"!x\r\n", RespError::UnknownType(b'!')),
            (b"+OK\rX", RespError::BadLineEnd),
            (b":12a\r\n", RespError::BadInteger),
            (b":\r\n", RespError::BadInteger),
            (b":+1\r\n", RespError::BadInteger),
            (b":99999999999999999999\r\n", RespError::BadInteger),
            (b"$-2\r\n", RespError::BadLength),
            (b"$999999999999\r\n", RespError::BadLength),
            (b"$3\r\nabcd\r\n", RespError::BadLineEnd),
            (b"$3\r\nabcXY", RespError::BadLineEnd),
            (b"*-5\r\n", RespError::BadLength),
            (b"*1\r\n?\r\n", RespError::UnknownType(b'?')),
        ];
        for (input, err) in bad {
            assert_eq!(Resp::decode(input).as_ref(), Err(err), "{input:?}");
        }
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(Resp::decode(&deep), Err(RespError::TooDeep));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A deterministic byte soup built from RESP's own alphabet.
        let alphabet = b"+-:$*\r\n0123-1x";
        let mut state: u64 = 1;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(state % 24) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            if let Ok(Some((_, used))) = Resp::decode(&buf) {
                assert!(used <= buf.len());
            }
            state = state.wrapping_add(1);
        }
    }
}
