//! The handshake that opens every connection, checked in both directions:
//! the dialer sends its hello; the accepting side checks it and answers
//! with its own only if it accepts; the dialer then checks the answer.
//!
//! ```text
//! magic: b"DSYN" | version: u32 BE | len: u32 BE (<= MAX_HELLO_BYTES) | postcard((cluster_id, node))
//! ```
//!
//! The magic and the version sit before the body at fixed offsets, so a
//! node of another protocol version is recognised and named before anything
//! whose layout may have changed is decoded.

use std::collections::BTreeSet;
use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Named;
use crate::trace::NodeId;

/// The first bytes of every connection.
pub const MAGIC: [u8; 4] = *b"DSYN";

/// The version of the wire format: the handshake and the encoding of `Msg`.
/// Any change to either (a new message variant, a field added or reordered)
/// must raise it, since postcard carries no field names or schema.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest hello body: a cluster id and a node id, with room to spare.
pub const MAX_HELLO_BYTES: usize = 1024;

/// The longest cluster id a hello may carry.
pub const MAX_CLUSTER_ID_BYTES: usize = 256;

/// What one side says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub cluster_id: String,
    pub node: NodeId,
}

/// What the checking side expects of the other.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    /// We dialed this node.
    Dialed(NodeId),
    /// We accepted the connection: the dialer must be a known peer whose id
    /// is smaller than ours (the smaller id dials, see `mod.rs`).
    Accepted { known: &'a BTreeSet<NodeId> },
}

/// Why a connection was refused during the handshake. Each names both
/// sides' values.
#[derive(Debug)]
pub enum HandshakeError {
    BadMagic {
        got: [u8; 4],
    },
    Version {
        ours: u32,
        theirs: u32,
    },
    Cluster {
        ours: String,
        theirs: String,
        node: NodeId,
    },
    /// The peer claims our own node id.
    OwnId {
        id: NodeId,
    },
    /// The peer's id is not in our peer list.
    Unknown {
        node: NodeId,
        me: NodeId,
        known: Vec<NodeId>,
    },
    /// We dialed one node and another answered.
    WrongNode {
        dialed: NodeId,
        answered: NodeId,
    },
    /// A node with a larger id than ours dialed us: against the one-connection rule.
    WrongDirection {
        node: NodeId,
        me: NodeId,
    },
    /// The hello's body is over the limit or does not decode.
    Malformed(String),
    /// The connection failed or closed before the hello was complete.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadMagic { got } => write!(
                f,
                "not a distsync peer: the connection starts with {got:02x?}, expected {MAGIC:02x?} (\"DSYN\")"
            ),
            HandshakeError::Version { ours, theirs } => write!(
                f,
                "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}"
            ),
            HandshakeError::Cluster { ours, theirs, node } => write!(
                f,
                "cluster id mismatch: we are in cluster {ours:?}, the peer {} is in cluster {theirs:?}",
                Named(*node)
            ),
            HandshakeError::OwnId { id } => write!(
                f,
                "the peer claims our own node id {}: two nodes are configured with the same NODE_ID",
                Named(*id)
            ),
            HandshakeError::Unknown { node, me, known } => {
                let known: Vec<String> = known.iter().map(|k| Named(*k).to_string()).collect();
                write!(
                    f,
                    "unknown node {}: {}'s peers are [{}]",
                    Named(*node),
                    Named(*me),
                    known.join(", ")
                )
            }
            HandshakeError::WrongNode { dialed, answered } => write!(
                f,
                "dialed {} but {} answered: check PEERS on both nodes",
                Named(*dialed),
                Named(*answered)
            ),
            HandshakeError::WrongDirection { node, me } => write!(
                f,
                "{} dialed {}, but the node with the smaller id dials",
                Named(*node),
                Named(*me)
            ),
            HandshakeError::Malformed(reason) => write!(f, "malformed hello: {reason}"),
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => write!(
                f,
                "the peer closed the connection during the handshake: it refused us, and its \
                 log says why"
            ),
            HandshakeError::Io(e) => write!(f, "connection failed during the handshake: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The bytes of a hello.
pub fn encode(hello: &Hello) -> Result<Vec<u8>, HandshakeError> {
    let body = postcard::to_allocvec(&(&hello.cluster_id, hello.node as u64))
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    if body.len() > MAX_HELLO_BYTES {
        return Err(HandshakeError::Malformed(format!(
            "hello of {} bytes exceeds the limit of {MAX_HELLO_BYTES} bytes",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&hello.version.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the peer's hello. A wrong magic or version is refused here, before
/// the body is read.
pub async fn read(r: &mut (impl AsyncRead + Unpin), version: u32) -> Result<Hello, HandshakeError> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head).await.map_err(HandshakeError::Io)?;
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let got = [head[0], head[1], head[2], head[3]];
    if got != MAGIC {
        return Err(HandshakeError::BadMagic { got });
    }
    let theirs = word(4);
    if theirs != version {
        return Err(HandshakeError::Version {
            ours: version,
            theirs,
        });
    }
    let len = word(8) as usize;
    if len > MAX_HELLO_BYTES {
        return Err(HandshakeError::Malformed(format!(
            "hello of {len} bytes exceeds the limit of {MAX_HELLO_BYTES} bytes"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(HandshakeError::Io)?;
    let (cluster_id, node): (String, u64) =
        postcard::from_bytes(&body).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let node = NodeId::try_from(node)
        .map_err(|_| HandshakeError::Malformed(format!("node id {node} out of range")))?;
    Ok(Hello {
        version: theirs,
        cluster_id,
        node,
    })
}

/// Whether `theirs` may talk to `ours` on a connection opened as `expect` says.
pub fn check(ours: &Hello, theirs: &Hello, expect: Expect<'_>) -> Result<(), HandshakeError> {
    if theirs.cluster_id != ours.cluster_id {
        return Err(HandshakeError::Cluster {
            ours: ours.cluster_id.clone(),
            theirs: theirs.cluster_id.clone(),
            node: theirs.node,
        });
    }
    if theirs.node == ours.node {
        return Err(HandshakeError::OwnId { id: ours.node });
    }
    match expect {
        Expect::Dialed(dialed) if dialed != theirs.node => Err(HandshakeError::WrongNode {
            dialed,
            answered: theirs.node,
        }),
        Expect::Dialed(_) => Ok(()),
        Expect::Accepted { known } if !known.contains(&theirs.node) => {
            Err(HandshakeError::Unknown {
                node: theirs.node,
                me: ours.node,
                known: known.iter().copied().collect(),
            })
        }
        Expect::Accepted { .. } if theirs.node > ours.node => Err(HandshakeError::WrongDirection {
            node: theirs.node,
            me: ours.node,
        }),
        Expect::Accepted { .. } => Ok(()),
    }
}

/// Writes a hello and flushes it: a stream that buffers writes (madsim's
/// does, until a flush) must not sit on it while we wait for the answer.
async fn send(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), HandshakeError> {
    stream.write_all(bytes).await.map_err(HandshakeError::Io)?;
    stream.flush().await.map_err(HandshakeError::Io)
}

/// The dialing side: sends our hello, then reads and checks the answer.
/// The peer's node id on success.
pub async fn dial(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    ours: &Hello,
    dialed: NodeId,
) -> Result<NodeId, HandshakeError> {
    let bytes = encode(ours)?;
    send(stream, &bytes).await?;
    let theirs = read(stream, ours.version).await?;
    check(ours, &theirs, Expect::Dialed(dialed))?;
    Ok(theirs.node)
}

/// The accepting side: reads and checks the dialer's hello, and answers
/// with ours only if it is accepted. A refused dialer sees the connection
/// close before any answer, counts it as a failed attempt and backs off
/// (the refusal and both sides' values are logged here, by the refuser).
pub async fn accept(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    ours: &Hello,
    known: &BTreeSet<NodeId>,
) -> Result<NodeId, HandshakeError> {
    let theirs = read(stream, ours.version).await?;
    check(ours, &theirs, Expect::Accepted { known })?;
    let bytes = encode(ours)?;
    send(stream, &bytes).await?;
    Ok(theirs.node)
}
