//! One task per peer: it owns the connection to that peer (dialed or
//! accepted, by the one-connection rule), writes the peer's send queue to it
//! and hands what it reads to the inbox.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::frame::{self, FrameError};
use super::handshake::{self, HandshakeError};
use super::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, Named, PeerCounters, Shared};
use crate::node::Msg;
use crate::trace::NodeId;

/// Frames gathered into one socket write while more wait in the queue:
/// fewer syscalls under load, and a bound on the copy.
const BATCH_BYTES: usize = 256 << 10;

/// The largest read or write buffer kept between frames; a larger one
/// (a snapshot went by) is freed.
const RETAINED_BUFFER_BYTES: usize = 1 << 20;

/// How long a connection must have lasted for the next redial to wait
/// only about `backoff_min` again.
const STABLE_CONNECTION: Duration = Duration::from_secs(1);

/// Idle time before the first keepalive probe.
#[cfg(not(madsim))]
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// Time between keepalive probes.
#[cfg(not(madsim))]
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// The parts of a peer that its task owns.
pub struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// What `Transport::send` queued for this peer.
    pub queue: mpsc::Receiver<Msg>,
    pub counters: Rc<PeerCounters>,
}

/// Why a connection ended.
enum ConnEnd {
    /// The peer closed it between frames.
    PeerClosed,
    /// A bad frame came in; the connection is closed rather than resynced,
    /// since nothing after a bad length can be trusted.
    Frame(FrameError),
    /// Writing to the socket failed.
    Write(io::Error),
    /// Every `Transport` handle is gone: the task ends.
    QueueClosed,
}

impl fmt::Display for ConnEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnEnd::PeerClosed => write!(f, "closed by the peer"),
            ConnEnd::Frame(e) => write!(f, "{e}; closing the connection"),
            ConnEnd::Write(e) => write!(f, "write failed: {e}"),
            ConnEnd::QueueClosed => write!(f, "transport shut down"),
        }
    }
}

/// A peer with a larger id than ours: we dial it, and redial with backoff
/// whenever the connection fails or ends.
pub async fn dial_loop(mut peer: Peer, shared: Rc<Shared>, mut backoff: Backoff) {
    let me = Named(shared.hello.node);
    let them = Named(peer.id);
    let mut failures: u64 = 0;
    loop {
        match dial(&peer, &shared).await {
            Ok(stream) => {
                failures = 0;
                info!("{me}: connected to {them} at {}", peer.addr);
                let up = Instant::now();
                let end = serve_counted(stream, &mut peer, &shared).await;
                if let ConnEnd::QueueClosed = end {
                    return;
                }
                log_end(&shared, peer.id, &end);
                // Only a connection that lasted starts the delays afresh: a
                // peer that accepts and at once drops us (say, on a bad
                // frame) is redialed no faster than one that refuses.
                if up.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
            }
            Err(DialError::Refused(e)) => {
                warn!(
                    "{me}: refused the connection to {them} at {}: {e}",
                    peer.addr
                )
            }
            Err(DialError::Unreachable(e)) => {
                failures += 1;
                // A peer that is down is expected during starts and
                // restarts: said once, then only at debug level.
                if failures == 1 {
                    info!(
                        "{me}: cannot reach {them} at {}: {e}; retrying with backoff",
                        peer.addr
                    );
                } else {
                    debug!(
                        "{me}: still cannot reach {them} at {} (attempt {failures}): {e}",
                        peer.addr
                    );
                }
            }
        }
        let wait = backoff.next(&mut shared.rng.borrow_mut());
        sleep(wait).await;
    }
}

/// A peer with a smaller id than ours: it dials us, and the accept loop
/// hands each of its connections over here. A newer connection replaces the
/// current one (the peer restarted, or saw the old one fail first).
pub async fn accepted_loop(
    mut peer: Peer,
    shared: Rc<Shared>,
    mut conns: mpsc::Receiver<TcpStream>,
) {
    let them = Named(peer.id);
    let me = Named(shared.hello.node);
    let mut next = conns.recv().await;
    while let Some(stream) = next.take() {
        info!("{me}: accepted the connection from {them}");
        tokio::select! {
            newer = conns.recv() => {
                // None: the accept loop is gone (shutdown), and so is this task.
                if newer.is_some() {
                    info!("{me}: a newer connection from {them} replaces the current one");
                }
                peer.counters.connected.set(false);
                next = newer;
            }
            end = serve_counted(stream, &mut peer, &shared) => {
                if let ConnEnd::QueueClosed = end {
                    return;
                }
                log_end(&shared, peer.id, &end);
                next = conns.recv().await;
            }
        }
    }
}

fn log_end(shared: &Shared, peer: NodeId, end: &ConnEnd) {
    let (me, them) = (Named(shared.hello.node), Named(peer));
    match end {
        ConnEnd::Frame(_) => warn!("{me}: connection with {them}: {end}"),
        _ => info!("{me}: connection with {them}: {end}"),
    }
}

enum DialError {
    /// Nobody answered, or the connection broke: try again later.
    Unreachable(String),
    /// Someone answered and the handshake refused it: a configuration error.
    Refused(HandshakeError),
}

async fn dial(peer: &Peer, shared: &Shared) -> Result<TcpStream, DialError> {
    let mut stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.addr)).await {
        Err(_) => {
            return Err(DialError::Unreachable(format!(
                "no answer within {CONNECT_TIMEOUT:?}"
            )));
        }
        Ok(Err(e)) => return Err(DialError::Unreachable(e.to_string())),
        Ok(Ok(s)) => s,
    };
    tune(&stream);
    let hello = handshake::dial(&mut stream, &shared.hello, peer.id);
    match timeout(HANDSHAKE_TIMEOUT, hello).await {
        Err(_) => Err(DialError::Unreachable(format!(
            "no complete hello within {HANDSHAKE_TIMEOUT:?}"
        ))),
        Ok(Err(HandshakeError::Io(e))) => Err(DialError::Unreachable(e.to_string())),
        Ok(Err(e)) => Err(DialError::Refused(e)),
        Ok(Ok(_)) => Ok(stream),
    }
}

/// Socket options for every peer connection, dialed or accepted. Nagle's
/// delay is off: Raft's messages are small and latency-bound, and the writer
/// batches frames itself. Keepalive probes find a peer whose host vanished
/// without closing the connection (power loss, a dropped route) in about
/// `KEEPALIVE_IDLE` plus the kernel's probe count times `KEEPALIVE_INTERVAL`;
/// between two followers no message may pass for a long time, so silence
/// alone cannot tell. Failures only lose the tuning, never the connection.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    // madsim's simulated stream has no socket to tune.
    #[cfg(not(madsim))]
    keepalive(stream);
}

#[cfg(not(madsim))]
fn keepalive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        debug!("cannot enable TCP keepalive: {e}");
    }
}

/// Serves one connection and keeps the peer's counters.
async fn serve_counted(stream: TcpStream, peer: &mut Peer, shared: &Shared) -> ConnEnd {
    let c = &peer.counters;
    if c.connections.get() > 0 {
        PeerCounters::bump(&c.reconnects, 1);
    }
    PeerCounters::bump(&c.connections, 1);
    c.connected.set(true);
    let end = serve(stream, &mut peer.queue, c, peer.id, shared).await;
    c.connected.set(false);
    end
}

/// Reads and writes one connection until either direction ends.
async fn serve(
    stream: TcpStream,
    queue: &mut mpsc::Receiver<Msg>,
    counters: &PeerCounters,
    peer: NodeId,
    shared: &Shared,
) -> ConnEnd {
    // Owned halves where tokio has them; madsim's stream has no
    // `into_split`, and the generic split serves it the same.
    #[cfg(not(madsim))]
    let (r, mut w) = stream.into_split();
    #[cfg(madsim)]
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    tokio::select! {
        end = read_loop(&mut r, peer, counters, shared) => end,
        end = write_loop(&mut w, queue, counters, shared.max_frame) => end,
    }
}

/// Decodes frames and hands them to the inbox without waiting: when the
/// node falls behind, messages are dropped (and counted) rather than left
/// to back up into the socket and stall the peer.
async fn read_loop(
    r: &mut (impl AsyncRead + Unpin),
    peer: NodeId,
    counters: &PeerCounters,
    shared: &Shared,
) -> ConnEnd {
    let mut buf = Vec::new();
    loop {
        match frame::read(r, shared.max_frame, &mut buf).await {
            Ok(Some(msg)) => {
                PeerCounters::bump(&counters.received, 1);
                if shared.inbox.try_send((peer, msg)).is_err() {
                    PeerCounters::bump(&counters.dropped_inbound, 1);
                }
                // One snapshot must not pin its size for the connection's life.
                if buf.capacity() > RETAINED_BUFFER_BYTES {
                    buf = Vec::new();
                }
            }
            Ok(None) => return ConnEnd::PeerClosed,
            Err(e) => return ConnEnd::Frame(e),
        }
    }
}

/// Writes queued messages, several frames a write while more are waiting.
async fn write_loop(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    queue: &mut mpsc::Receiver<Msg>,
    counters: &PeerCounters,
    max_frame: usize,
) -> ConnEnd {
    let mut batch = Vec::new();
    loop {
        let Some(first) = queue.recv().await else {
            return ConnEnd::QueueClosed;
        };
        batch.clear();
        let mut frames: u64 = 0;
        let mut next = Some(first);
        while let Some(msg) = next {
            match frame::encode(&msg, max_frame, &mut batch) {
                Ok(()) => frames += 1,
                Err(e) => {
                    // Sending it would only make the peer close the connection.
                    warn!("dropping a {} message: {e}", msg.name());
                    PeerCounters::bump(&counters.dropped, 1);
                }
            }
            next = if batch.len() < BATCH_BYTES {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        // Flushed at once: the batch is what was waiting, and a stream
        // that buffers writes (madsim's) would otherwise hold it.
        let written = match w.write_all(&batch).await {
            Ok(()) => w.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            PeerCounters::bump(&counters.dropped, frames);
            return ConnEnd::Write(e);
        }
        PeerCounters::bump(&counters.sent, frames);
        if batch.capacity() > RETAINED_BUFFER_BYTES {
            batch = Vec::new();
        }
    }
}
