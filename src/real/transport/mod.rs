//! The TCP transport between nodes: length-prefixed postcard frames over one
//! connection per peer pair, opened by a handshake, redialed with backoff,
//! fed by bounded queues that drop rather than block.
//!
//! - **Frames** (`frame.rs`): u32 big-endian length, then the `Msg` in
//!   postcard; at most `max_frame` bytes (`MAX_FRAME_BYTES` by default). A
//!   bad frame closes that connection; the peer task redials or waits.
//! - **Handshake** (`handshake.rs`): magic, protocol version, cluster id and
//!   node id, sent by the dialer, checked and answered by the acceptor,
//!   checked again by the dialer, before any frame.
//! - **One connection per pair**: the node with the smaller id dials, the
//!   other accepts; the connection carries both directions. A newer accepted
//!   connection from the same peer replaces the old one (the dialer only
//!   redials after losing its connection, so the newest is the live one).
//! - **Backoff** (`backoff.rs`): redials wait from `backoff_min` doubling up
//!   to `backoff_max`, jittered from the seeded stream given to `start`.
//! - **Drops, never blocks**: `send` puts the message on the peer's bounded
//!   queue or drops it (Raft retries what matters); the inbox is bounded the
//!   same way. Every drop is counted in `stats`.
//!
//! `Msg` holds `Rc`s (snapshots and queue batches are shared, not copied),
//! so it cannot cross threads: the transport's tasks are local tasks, and
//! `start` must be called inside a `tokio::task::LocalSet`, beside the task
//! that owns the node.

mod backoff;
mod frame;
mod handshake;
mod peer;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tracing::{info, warn};

pub use handshake::{MAX_CLUSTER_ID_BYTES, PROTOCOL_VERSION};

use backoff::Backoff;
use handshake::Hello;
use peer::Peer;

use crate::node::Msg;
use crate::rng::Rng;
use crate::trace::NodeId;

/// The default and largest allowed frame body: room for an InstallSnapshot
/// of a sizeable state machine, small enough that a garbage length cannot
/// make a node allocate without bound.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// The smallest `max_frame` accepted: any heartbeat or vote fits many times over.
pub const MIN_FRAME_BYTES: usize = 1 << 10;

/// The default per-peer send queue: a few heartbeat rounds of a busy leader.
pub const DEFAULT_QUEUE_LIMIT: usize = 1024;

/// The largest per-peer send queue accepted.
pub const MAX_QUEUE_LIMIT: usize = 1 << 20;

/// The default first redial wait.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// The default longest redial wait.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long a dial may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long either side may take to send its hello: a silent connection
/// must not hold a handshake slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepted connections still in their handshake at once; more are closed
/// at once, so a flood of stray connections cannot exhaust memory or tasks.
const MAX_PENDING_HANDSHAKES: usize = 64;

/// The pause after a failed `accept` (say, out of file descriptors), so the
/// accept loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The transport's settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Nodes of different clusters refuse each other.
    pub cluster_id: String,
    /// This node.
    pub me: NodeId,
    /// Where peers dial this node.
    pub listen: SocketAddr,
    /// Every peer's address; an entry for `me` is ignored, so a whole
    /// cluster's list can be passed as it is.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Messages waiting per peer before `send` drops (1 ..= `MAX_QUEUE_LIMIT`);
    /// the inbox holds this many per peer.
    pub queue_limit: usize,
    /// The first redial wait (more than zero).
    pub backoff_min: Duration,
    /// The longest redial wait (at least `backoff_min`).
    pub backoff_max: Duration,
    /// The largest frame body sent or accepted (`MIN_FRAME_BYTES ..= MAX_FRAME_BYTES`).
    pub max_frame: usize,
}

impl TransportConfig {
    /// A configuration with the default limits.
    pub fn new(
        cluster_id: impl Into<String>,
        me: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        TransportConfig {
            cluster_id: cluster_id.into(),
            me,
            listen,
            peers,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_frame: MAX_FRAME_BYTES,
        }
    }

    fn validate(&self) -> Result<(), TransportError> {
        let bad = |field, value: String, expected: String| {
            Err(TransportError::Config {
                field,
                value,
                expected,
            })
        };
        if self.cluster_id.is_empty() || self.cluster_id.len() > MAX_CLUSTER_ID_BYTES {
            return bad(
                "cluster_id",
                format!("{:?}", self.cluster_id),
                format!("1 to {MAX_CLUSTER_ID_BYTES} bytes"),
            );
        }
        if !(1..=MAX_QUEUE_LIMIT).contains(&self.queue_limit) {
            return bad(
                "queue_limit",
                self.queue_limit.to_string(),
                format!("1 to {MAX_QUEUE_LIMIT} messages"),
            );
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return bad(
                "backoff_min",
                format!(
                    "{:?} (backoff_max {:?})",
                    self.backoff_min, self.backoff_max
                ),
                "more than zero and at most backoff_max".to_owned(),
            );
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame) {
            return bad(
                "max_frame",
                self.max_frame.to_string(),
                format!("{MIN_FRAME_BYTES} to {MAX_FRAME_BYTES} bytes"),
            );
        }
        Ok(())
    }
}

/// Why the transport could not start.
#[derive(Debug)]
pub enum TransportError {
    /// The listening address could not be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// A setting is out of range.
    Config {
        field: &'static str,
        value: String,
        expected: String,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Bind { addr, source } => {
                write!(f, "cannot listen for peers on {addr}: {source}")
            }
            TransportError::Config {
                field,
                value,
                expected,
            } => write!(f, "transport {field} is {value}, expected {expected}"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Bind { source, .. } => Some(source),
            TransportError::Config { .. } => None,
        }
    }
}

/// One peer's figures since `start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// A connection is up now.
    pub connected: bool,
    /// Messages written to the peer's socket.
    pub sent: u64,
    /// Messages read from the peer's socket.
    pub received: u64,
    /// Messages for the peer dropped: queue full, too large, or lost with a
    /// failed write.
    pub dropped: u64,
    /// Messages from the peer dropped because the inbox was full.
    pub dropped_inbound: u64,
    /// Connections after the first (redials, or replacements of an accepted one).
    pub reconnects: u64,
}

/// The transport's figures since `start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Per peer, by node id.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Messages sent to a node that is not a peer (or to ourselves).
    pub dropped_unknown: u64,
}

/// A peer's counters, written by its task and read by `stats`. Plain cells:
/// all of the transport runs on one thread (see the module comment).
#[derive(Debug, Default)]
struct PeerCounters {
    connected: Cell<bool>,
    sent: Cell<u64>,
    received: Cell<u64>,
    dropped: Cell<u64>,
    dropped_inbound: Cell<u64>,
    reconnects: Cell<u64>,
    connections: Cell<u64>,
}

impl PeerCounters {
    fn bump(c: &Cell<u64>, n: u64) {
        c.set(c.get().saturating_add(n));
    }

    fn stats(&self) -> PeerStats {
        PeerStats {
            connected: self.connected.get(),
            sent: self.sent.get(),
            received: self.received.get(),
            dropped: self.dropped.get(),
            dropped_inbound: self.dropped_inbound.get(),
            reconnects: self.reconnects.get(),
        }
    }
}

/// What every task of one transport shares.
struct Shared {
    /// Our side of every handshake.
    hello: Hello,
    inbox: mpsc::Sender<(NodeId, Msg)>,
    max_frame: usize,
    /// Jitter for every peer's backoff.
    rng: RefCell<Rng>,
}

/// A node's name in log lines: `n1` for node 0, as in traces and `PEERS`.
#[derive(Clone, Copy)]
struct Named(NodeId);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0 as u64 + 1)
    }
}

/// A handle on a running transport; clones share it.
#[derive(Clone)]
pub struct Transport {
    inner: Rc<Inner>,
}

struct Inner {
    me: NodeId,
    queues: BTreeMap<NodeId, (mpsc::Sender<Msg>, Rc<PeerCounters>)>,
    dropped_unknown: Cell<u64>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    /// The last handle gone without `shutdown`: the tasks end all the same.
    fn drop(&mut self) {
        for t in self.tasks.get_mut().iter() {
            t.abort();
        }
    }
}

impl Transport {
    /// Binds `listen` (errors name the address), spawns the accept loop and
    /// one task per peer as local tasks (call it inside a `LocalSet`); peer
    /// messages come out of the returned receiver.
    pub async fn start(
        cfg: TransportConfig,
        rng: Rng,
    ) -> Result<(Transport, mpsc::Receiver<(NodeId, Msg)>), TransportError> {
        cfg.validate()?;
        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| TransportError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let peers: BTreeMap<NodeId, SocketAddr> = cfg
            .peers
            .iter()
            .filter(|(id, _)| **id != cfg.me)
            .map(|(id, addr)| (*id, *addr))
            .collect();
        // Bounded by the per-peer limit, so a slow node drops what it
        // cannot take instead of growing.
        let inbox_limit = cfg.queue_limit.saturating_mul(peers.len().max(1));
        let (inbox_tx, inbox_rx) = mpsc::channel(inbox_limit);
        let shared = Rc::new(Shared {
            hello: Hello {
                version: PROTOCOL_VERSION,
                cluster_id: cfg.cluster_id.clone(),
                node: cfg.me,
            },
            inbox: inbox_tx,
            max_frame: cfg.max_frame,
            rng: RefCell::new(rng),
        });
        let mut tasks = Vec::new();
        let mut queues = BTreeMap::new();
        let mut handoff = BTreeMap::new();
        for (&id, &addr) in &peers {
            let (tx, rx) = mpsc::channel(cfg.queue_limit);
            let counters = Rc::new(PeerCounters::default());
            queues.insert(id, (tx, Rc::clone(&counters)));
            let peer = Peer {
                id,
                addr,
                queue: rx,
                counters,
            };
            let shared = Rc::clone(&shared);
            tasks.push(if id > cfg.me {
                let backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
                tokio::task::spawn_local(peer::dial_loop(peer, shared, backoff))
            } else {
                // Room for one newer connection while the task switches.
                let (conn_tx, conn_rx) = mpsc::channel(2);
                handoff.insert(id, conn_tx);
                tokio::task::spawn_local(peer::accepted_loop(peer, shared, conn_rx))
            });
        }
        let local = listener.local_addr().unwrap_or(cfg.listen);
        let known: BTreeSet<NodeId> = peers.keys().copied().collect();
        tasks.push(tokio::task::spawn_local(accept_loop(
            listener,
            Rc::clone(&shared),
            Rc::new(handoff),
            Rc::new(known),
        )));
        info!(
            "{}: transport listening on {local} (cluster {:?}, protocol version {PROTOCOL_VERSION}, {} peers)",
            Named(cfg.me),
            cfg.cluster_id,
            peers.len()
        );
        let inner = Inner {
            me: cfg.me,
            queues,
            dropped_unknown: Cell::new(0),
            tasks: RefCell::new(tasks),
        };
        Ok((
            Transport {
                inner: Rc::new(inner),
            },
            inbox_rx,
        ))
    }

    /// Queues `msg` for `to`; never blocks. Dropped (and counted) when the
    /// peer's queue is full, the peer is unknown, or the transport is shut down.
    pub fn send(&self, to: NodeId, msg: Msg) {
        match self.inner.queues.get(&to) {
            Some((queue, counters)) => {
                if queue.try_send(msg).is_err() {
                    PeerCounters::bump(&counters.dropped, 1);
                }
            }
            None => {
                let n = &self.inner.dropped_unknown;
                n.set(n.get().saturating_add(1));
                tracing::debug!(
                    "{}: dropping a {} message for {}, which is not a peer",
                    Named(self.inner.me),
                    msg.name(),
                    Named(to)
                );
            }
        }
    }

    /// Per peer: connected, sent, received, dropped, reconnects.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            peers: self
                .inner
                .queues
                .iter()
                .map(|(id, (_, c))| (*id, c.stats()))
                .collect(),
            dropped_unknown: self.inner.dropped_unknown.get(),
        }
    }

    /// Closes the listener and every connection and ends every task; other
    /// handles still `send`, but only drop.
    pub async fn shutdown(self) {
        let tasks = std::mem::take(&mut *self.inner.tasks.borrow_mut());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            // Cancelled is the expected outcome; a task has nothing else to report.
            let _ = t.await;
        }
        info!("{}: transport shut down", Named(self.inner.me));
    }
}

/// Accepts connections and runs each one's handshake in its own task, then
/// hands it to its peer's task. Dropping this future (at shutdown) drops the
/// listener and every handshake in progress.
async fn accept_loop(
    listener: TcpListener,
    shared: Rc<Shared>,
    handoff: Rc<BTreeMap<NodeId, mpsc::Sender<TcpStream>>>,
    known: Rc<BTreeSet<NodeId>>,
) {
    let me = Named(shared.hello.node);
    let mut handshakes = Handshakes(Vec::new());
    loop {
        match listener.accept().await {
            Ok((stream, from)) if handshakes.in_progress() < MAX_PENDING_HANDSHAKES => {
                let admit = admit(
                    stream,
                    from,
                    Rc::clone(&shared),
                    Rc::clone(&handoff),
                    Rc::clone(&known),
                );
                handshakes.0.push(tokio::task::spawn_local(admit));
            }
            Ok((_, from)) => warn!(
                "{me}: {MAX_PENDING_HANDSHAKES} handshakes already in progress; closing the connection from {from}"
            ),
            Err(e) => {
                warn!("{me}: accepting a connection failed: {e}");
                sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// The accept loop's handshake tasks, ended with it. (tokio's `JoinSet`
/// would do, but madsim's runtime has none.)
struct Handshakes(Vec<JoinHandle<()>>);

impl Handshakes {
    /// Forgets finished tasks; how many are left.
    fn in_progress(&mut self) -> usize {
        self.0.retain(|t| !t.is_finished());
        self.0.len()
    }
}

impl Drop for Handshakes {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The accepting side of one handshake.
async fn admit(
    mut stream: TcpStream,
    from: SocketAddr,
    shared: Rc<Shared>,
    handoff: Rc<BTreeMap<NodeId, mpsc::Sender<TcpStream>>>,
    known: Rc<BTreeSet<NodeId>>,
) {
    let me = Named(shared.hello.node);
    peer::tune(&stream);
    let hello = handshake::accept(&mut stream, &shared.hello, &known);
    let peer = match timeout(HANDSHAKE_TIMEOUT, hello).await {
        Err(_) => {
            return warn!(
                "{me}: refused the connection from {from}: no complete hello within {HANDSHAKE_TIMEOUT:?}"
            );
        }
        Ok(Err(e)) => return warn!("{me}: refused the connection from {from}: {e}"),
        Ok(Ok(peer)) => peer,
    };
    // `check` admitted only known peers with smaller ids: exactly the keys here.
    match handoff.get(&peer) {
        Some(tx) if tx.try_send(stream).is_ok() => {}
        _ => warn!(
            "{me}: connections from {} arrive faster than they can be taken over; closing the one from {from}",
            Named(peer)
        ),
    }
}
