//! Framing of messages on a connection: a u32 big-endian length, then the
//! `Msg` encoded with postcard.
//!
//! ```text
//! len: u32 BE (1 ..= max_frame) | body: len bytes, postcard(Msg)
//! ```
//!
//! TCP already checksums and orders the bytes, so unlike the disk log's
//! records a frame carries no checksum of its own. The length is checked
//! against the limit before anything is allocated, so a garbage or hostile
//! length costs nothing but the connection.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::node::Msg;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Why a frame could not be written or read.
#[derive(Debug)]
pub enum FrameError {
    /// A frame's body is larger than the limit (or than a u32 can say).
    TooLarge { bytes: usize, limit: usize },
    /// The connection ended inside a frame.
    Truncated { have: usize, want: usize },
    /// A body of the announced length that is not one whole `Msg`.
    Undecodable { bytes: usize, reason: String },
    /// The message could not be encoded (never for the types on the wire
    /// today; kept as an error rather than a panic).
    Unencodable(String),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { bytes, limit } => {
                write!(
                    f,
                    "frame of {bytes} bytes exceeds the limit of {limit} bytes"
                )
            }
            FrameError::Truncated { have, want } => write!(
                f,
                "connection closed inside a frame ({have} of {want} bytes received)"
            ),
            FrameError::Undecodable { bytes, reason } => {
                write!(f, "frame of {bytes} bytes is not a message: {reason}")
            }
            FrameError::Unencodable(reason) => write!(f, "message cannot be encoded: {reason}"),
            FrameError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends `msg` as one frame to `out`. On error `out` is left as it was.
pub fn encode(msg: &Msg, max_frame: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    let encoded = postcard::to_io(msg, &mut *out).map(|_| ());
    let bytes = out.len() - start - LEN_BYTES;
    let result = match encoded {
        Err(e) => Err(FrameError::Unencodable(e.to_string())),
        Ok(_) if bytes > max_frame || u32::try_from(bytes).is_err() => Err(FrameError::TooLarge {
            bytes,
            limit: max_frame,
        }),
        Ok(_) => {
            // `bytes` fits in a u32: checked just above.
            out[start..start + LEN_BYTES].copy_from_slice(&(bytes as u32).to_be_bytes());
            return Ok(());
        }
    };
    out.truncate(start);
    result
}

/// Decodes one frame body; trailing bytes after the message are an error,
/// since a sender and a receiver that agree on the format never leave any.
pub fn decode(body: &[u8]) -> Result<Msg, FrameError> {
    let undecodable = |reason: String| FrameError::Undecodable {
        bytes: body.len(),
        reason,
    };
    match postcard::take_from_bytes::<Msg>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(undecodable(format!(
            "{} bytes left over after the message",
            rest.len()
        ))),
        Err(e) => Err(undecodable(e.to_string())),
    }
}

/// Reads the next frame. `Ok(None)` is a clean end of the stream between
/// frames; `buf` is scratch space reused across calls.
pub async fn read(
    r: &mut (impl AsyncRead + Unpin),
    max_frame: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<Msg>, FrameError> {
    let mut len = [0u8; LEN_BYTES];
    let mut have = 0;
    while have < LEN_BYTES {
        match r.read(&mut len[have..]).await.map_err(FrameError::Io)? {
            0 if have == 0 => return Ok(None),
            0 => {
                return Err(FrameError::Truncated {
                    have,
                    want: LEN_BYTES,
                });
            }
            n => have += n,
        }
    }
    let bytes = u32::from_be_bytes(len) as usize;
    if bytes > max_frame {
        return Err(FrameError::TooLarge {
            bytes,
            limit: max_frame,
        });
    }
    // Read through `take` so the buffer grows with the bytes that arrive,
    // not with the length a peer announces.
    buf.clear();
    let got = (&mut *r)
        .take(bytes as u64)
        .read_to_end(buf)
        .await
        .map_err(FrameError::Io)?;
    if got < bytes {
        return Err(FrameError::Truncated {
            have: LEN_BYTES + got,
            want: LEN_BYTES + bytes,
        });
    }
    decode(buf).map(Some)
}
