//! The trace: one JSON line per event, and the digest that proves a replay.
//!
//! Lines are written by hand, not through serde, because every event of every
//! run goes through here and the simulator's speed is bounded by it. The format
//! is documented field by field in docs/trace.md. The digest hashes the exact
//! bytes of every line, newline included, as one stream read 32 bytes at a
//! time (see [`StreamDigest`]), so a trace file can be checked against a
//! run's printed digest by any tool.

use std::io::Write;

/// Node index inside a cluster; clients are numbered after the nodes.
pub type NodeId = usize;

/// A role a Raft node can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    /// The trace spelling.
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "precandidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// How a client operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Definite success, with the value for reads.
    Ok,
    /// Definitely had no effect.
    Fail,
    /// May or may not have taken effect (timed out).
    Unknown,
}

impl Outcome {
    /// The trace spelling.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One traced event. Field names follow docs/trace.md exactly.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    RaftRole {
        term: u64,
        role: Role,
    },
    RaftVote {
        term: u64,
        candidate: NodeId,
        /// The candidate's last log entry, as its request said.
        last_index: u64,
        last_term: u64,
    },
    RaftAppend {
        index: u64,
        term: u64,
        digest: u64,
    },
    RaftTruncate {
        from: u64,
    },
    RaftCommit {
        index: u64,
    },
    RaftApply {
        index: u64,
        term: u64,
        digest: u64,
    },
    RaftSnapshot {
        index: u64,
        term: u64,
    },
    RaftRecover {
        term: u64,
        voted_for: Option<NodeId>,
        last_index: u64,
        last_term: u64,
        snapshot_index: u64,
    },
    NetSend {
        from: NodeId,
        to: NodeId,
        msg: &'static str,
        term: u64,
    },
    NetDeliver {
        from: NodeId,
        to: NodeId,
        msg: &'static str,
        term: u64,
    },
    NetDrop {
        from: NodeId,
        to: NodeId,
        msg: &'static str,
        term: u64,
        reason: &'static str,
    },
    FaultCrash,
    FaultRestart,
    FaultPause,
    FaultResume,
    FaultPartition {
        groups: Vec<Vec<NodeId>>,
    },
    FaultPartitionOneWay {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
    },
    FaultHeal,
    FaultNetwork {
        link: Option<(NodeId, NodeId)>,
        both_ways: bool,
        loss: f64,
        duplicate: f64,
        reorder: f64,
        reorder_delay_max: u64,
        latency_min: u64,
        latency_max: u64,
    },
    FaultClock {
        offset: i64,
        drift_ppm: i64,
        step: i64,
    },
    FaultSkipped {
        action: &'static str,
        reason: &'static str,
    },
    ClientInvoke {
        client: usize,
        op: &'static str,
        key: u32,
        value: Option<u64>,
    },
    ClientReturn {
        client: usize,
        op: &'static str,
        key: u32,
        value: Option<u64>,
        outcome: Outcome,
    },
    /// A lock session was opened, closed or expired, as applied on this node.
    LockSession {
        session: u64,
        client: Option<u32>,
        what: &'static str,
    },
    LockGrant {
        lock: u32,
        session: u64,
        mode: &'static str,
        token: u64,
        holds: u32,
    },
    LockWait {
        lock: u32,
        session: u64,
        mode: &'static str,
    },
    LockRelease {
        lock: u32,
        session: u64,
        holds: u32,
    },
    LockFail {
        session: u64,
        lock: Option<u32>,
        error: String,
    },
    LockDeadlock {
        cycle: Vec<u64>,
        victim: u64,
    },
    /// The resource accepted or rejected a lock holder's write.
    ResourceWrite {
        client: u32,
        lock: u32,
        token: u64,
        begin: bool,
        accepted: bool,
    },
    /// A lock client's keep-alive was acknowledged; its lease counts from when it was sent, `age_ns` before.
    LockRenewed {
        session: u64,
        ttl: u64,
        /// How long before the acknowledgement the renewal was sent.
        age_ns: u64,
    },
    /// A node applied a change of the queue's shard ring.
    QueueRing {
        epoch: u64,
        shards: Vec<u32>,
    },
    /// A producer sends a batch for the first time: seqs first_seq.. (count).
    QueueSend {
        producer: u32,
        partition: u32,
        first_seq: u64,
        count: u32,
    },
    /// A producer's batch was acknowledged: the shard stored it.
    QueueProduced {
        producer: u32,
        partition: u32,
        first_seq: u64,
        count: u32,
    },
    /// A shard stored a batch: `stored` new messages, `duplicate` retries skipped.
    QueueStored {
        partition: u32,
        producer: u32,
        first_seq: u64,
        stored: u32,
        duplicate: u32,
    },
    /// A shard handed a message to a consumer (attempt 1 = first delivery).
    QueuePop {
        partition: u32,
        consumer: u32,
        producer: u32,
        seq: u64,
        attempt: u32,
    },
    /// A shard answered a consumer's `Consume` of a partition with nothing:
    /// no message of it was ready there (the end-of-run delivery check's
    /// evidence that a message still in `ready` was skipped, not waiting).
    QueueEmpty {
        partition: u32,
        consumer: u32,
    },
    /// A consumer received a message.
    QueueReceived {
        consumer: u32,
        partition: u32,
        producer: u32,
        seq: u64,
        attempt: u32,
    },
    /// A shard accepted an ack: the message is gone for good.
    QueueAcked {
        partition: u32,
        producer: u32,
        seq: u64,
    },
    /// A shard accepted a nack: the message is requeued (or dead-lettered).
    QueueNacked {
        partition: u32,
        producer: u32,
        seq: u64,
    },
    /// A shard put a message back after its visibility timeout passed.
    QueueRequeued {
        partition: u32,
        producer: u32,
        seq: u64,
        attempt: u32,
    },
    /// A shard moved a message to the dead-letter queue.
    QueueDead {
        partition: u32,
        producer: u32,
        seq: u64,
        attempts: u32,
    },
    /// After a crash a shard no longer has this message (its write was not synced).
    QueueLost {
        partition: u32,
        producer: u32,
        seq: u64,
    },
    /// After a crash a shard has this message back (its ack or dead-lettering
    /// was not synced), in `place`: "ready", "inflight" or "dead".
    QueueRevived {
        partition: u32,
        producer: u32,
        seq: u64,
        place: &'static str,
    },
    /// After a crash a shard holds this message in another `place` than
    /// before (an unsynced pop or nack undone); nothing is lost or revived.
    QueueReverted {
        partition: u32,
        producer: u32,
        seq: u64,
        place: &'static str,
    },
    /// The leader finished moving a partition between shards.
    QueueMigrated {
        partition: u32,
        from: u32,
        to: u32,
        epoch: u64,
        messages: u64,
    },
    /// A consumer crashed while holding `holding` messages.
    QueueConsumerCrash {
        consumer: u32,
        holding: u32,
    },
    /// A node's cache line changed MESI state ("M", "E", "S", "I").
    CacheTransition {
        key: u32,
        from: &'static str,
        to: &'static str,
        /// PrRd, PrWr, BusRd, BusRdX, BusUpgr, Fetch, evict, invalidate, crash, ...
        cause: &'static str,
    },
    /// A node's cache started a get, fetch or put (it had waited behind
    /// the node's earlier operations until now).
    CacheStart {
        op: &'static str,
        key: u32,
    },
    /// A read through a node's cache completed (None: never written).
    CacheRead {
        key: u32,
        value: Option<u64>,
        hit: bool,
    },
    /// A write through a node's cache completed.
    CacheWrite {
        key: u32,
        value: u64,
        hit: bool,
    },
    /// A cache operation gave up (the bus or home unreachable in time).
    CacheFailed {
        op: &'static str,
        key: u32,
        reason: &'static str,
    },
    /// A node crashed holding a dirty (M) line: this write never reached memory.
    CacheLost {
        key: u32,
        value: u64,
    },
    /// A node crashed after handing over a dirty value that memory had not
    /// yet confirmed: it may or may not have been lost.
    CacheInDoubt {
        key: u32,
        value: u64,
    },
    /// A line written back to memory (Redis).
    CacheWriteBack {
        key: u32,
        value: u64,
    },
    /// A state dump: every valid line at the node, as (key, state).
    CacheDump {
        lines: Vec<(u32, &'static str)>,
    },
}

/// Every `kind` the trace writes, as `TraceEvent::kind` names them (the
/// stepper refuses a breakpoint on anything else, which could never stop).
/// Keep it beside `kind`: the stepper's test
/// `every_traced_kind_and_node_is_known` runs the shipped scenarios to
/// catch a kind added there but not here.
pub const KINDS: &[&str] = &[
    "raft.role",
    "raft.vote",
    "raft.append",
    "raft.truncate",
    "raft.commit",
    "raft.apply",
    "raft.snapshot",
    "raft.recover",
    "net.send",
    "net.deliver",
    "net.drop",
    "fault.crash",
    "fault.restart",
    "fault.pause",
    "fault.resume",
    "fault.partition",
    "fault.partition_oneway",
    "fault.heal",
    "fault.network",
    "fault.clock",
    "fault.skipped",
    "client.invoke",
    "client.return",
    "lock.session",
    "lock.grant",
    "lock.wait",
    "lock.release",
    "lock.fail",
    "lock.deadlock",
    "lock.renewed",
    "resource.write",
    "queue.ring",
    "queue.send",
    "queue.produced",
    "queue.stored",
    "queue.pop",
    "queue.empty",
    "queue.received",
    "queue.acked",
    "queue.nacked",
    "queue.requeued",
    "queue.dead",
    "queue.lost",
    "queue.revived",
    "queue.reverted",
    "queue.migrated",
    "queue.consumer_crash",
    "cache.transition",
    "cache.start",
    "cache.read",
    "cache.write",
    "cache.failed",
    "cache.lost",
    "cache.in_doubt",
    "cache.writeback",
    "cache.dump",
];

impl TraceEvent {
    /// The `kind` field.
    pub fn kind(&self) -> &'static str {
        use TraceEvent::*;
        match self {
            RaftRole { .. } => "raft.role",
            RaftVote { .. } => "raft.vote",
            RaftAppend { .. } => "raft.append",
            RaftTruncate { .. } => "raft.truncate",
            RaftCommit { .. } => "raft.commit",
            RaftApply { .. } => "raft.apply",
            RaftSnapshot { .. } => "raft.snapshot",
            RaftRecover { .. } => "raft.recover",
            NetSend { .. } => "net.send",
            NetDeliver { .. } => "net.deliver",
            NetDrop { .. } => "net.drop",
            FaultCrash => "fault.crash",
            FaultRestart => "fault.restart",
            FaultPause => "fault.pause",
            FaultResume => "fault.resume",
            FaultPartition { .. } => "fault.partition",
            FaultPartitionOneWay { .. } => "fault.partition_oneway",
            FaultHeal => "fault.heal",
            FaultNetwork { .. } => "fault.network",
            FaultClock { .. } => "fault.clock",
            FaultSkipped { .. } => "fault.skipped",
            ClientInvoke { .. } => "client.invoke",
            ClientReturn { .. } => "client.return",
            LockSession { .. } => "lock.session",
            LockGrant { .. } => "lock.grant",
            LockWait { .. } => "lock.wait",
            LockRelease { .. } => "lock.release",
            LockFail { .. } => "lock.fail",
            LockDeadlock { .. } => "lock.deadlock",
            ResourceWrite { .. } => "resource.write",
            LockRenewed { .. } => "lock.renewed",
            QueueRing { .. } => "queue.ring",
            QueueSend { .. } => "queue.send",
            QueueProduced { .. } => "queue.produced",
            QueueStored { .. } => "queue.stored",
            QueuePop { .. } => "queue.pop",
            QueueEmpty { .. } => "queue.empty",
            QueueReceived { .. } => "queue.received",
            QueueAcked { .. } => "queue.acked",
            QueueNacked { .. } => "queue.nacked",
            QueueRequeued { .. } => "queue.requeued",
            QueueDead { .. } => "queue.dead",
            QueueLost { .. } => "queue.lost",
            QueueRevived { .. } => "queue.revived",
            QueueReverted { .. } => "queue.reverted",
            QueueMigrated { .. } => "queue.migrated",
            QueueConsumerCrash { .. } => "queue.consumer_crash",
            CacheTransition { .. } => "cache.transition",
            CacheStart { .. } => "cache.start",
            CacheRead { .. } => "cache.read",
            CacheWrite { .. } => "cache.write",
            CacheFailed { .. } => "cache.failed",
            CacheLost { .. } => "cache.lost",
            CacheInDoubt { .. } => "cache.in_doubt",
            CacheWriteBack { .. } => "cache.writeback",
            CacheDump { .. } => "cache.dump",
        }
    }
}

/// Who an event belongs to, as written in the `node` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A Raft node, `n1`..
    Node(NodeId),
    /// A client, `c1`..
    Client(usize),
    /// The network as a whole (partitions, heal, global link changes).
    Net,
    /// The protected resource lock holders write to.
    Resource,
    /// A Redis shard, `s1`..
    Shard(usize),
    /// A queue producer, `p1`..
    Producer(usize),
    /// A queue consumer (worker), `w1`..
    Consumer(usize),
}

/// Where the queue's endpoints sit among endpoint ids: shards, then
/// producers, then consumers, each a contiguous range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLayout {
    pub shard_base: usize,
    pub shards: usize,
    pub producer_base: usize,
    pub producers: usize,
    pub consumer_base: usize,
    pub consumers: usize,
}

impl QueueLayout {
    /// The subject an endpoint id names, if it is one of the queue's.
    pub fn subject(&self, id: NodeId) -> Option<Subject> {
        let within = |base: usize, len: usize| (id >= base && id < base + len).then(|| id - base);
        if let Some(i) = within(self.shard_base, self.shards) {
            Some(Subject::Shard(i))
        } else if let Some(i) = within(self.producer_base, self.producers) {
            Some(Subject::Producer(i))
        } else {
            within(self.consumer_base, self.consumers).map(Subject::Consumer)
        }
    }
}

/// Receives every trace line; computes the digest and optionally writes lines out.
pub struct Tracer {
    seq: u64,
    /// `seq` in decimal, counted up in place: every line writes it.
    seq_text: DecimalCounter,
    /// The last line's time and its decimal text: events often share a time.
    last_t: u64,
    t_text: Vec<u8>,
    digest: StreamDigest,
    /// The line being written, after the bytes of earlier lines the digest
    /// has not taken yet (up to about [`DIGEST_BATCH`]).
    line: Vec<u8>,
    sink: Option<Box<dyn Write>>,
    nodes: usize,
    /// The protected resource's endpoint id (usize::MAX when there is none).
    resource: usize,
    queue: QueueLayout,
    /// The quoted names of the first endpoints, as `put_endpoint` writes
    /// them, so that a line copies a name instead of formatting it.
    quoted: Vec<QuotedName>,
    /// When false only `seq` advances: used by benchmarks that measure the
    /// simulator without the trace.
    enabled: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from `state`.
pub fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= b as u64;
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// The digest's multiplier (odd, with well spread bits).
const DIGEST_MUL: u64 = 0x517c_c1b7_2722_0a95;

/// Bytes the digest takes at a step: four 64-bit words, one per lane.
const DIGEST_BLOCK: usize = 32;

/// Bytes of trace lines a tracer gathers before digesting them.
const DIGEST_BATCH: usize = 4096;

/// One word into one lane: `(rotl(h, 5) ^ w) * DIGEST_MUL` (mod 2^64).
#[inline(always)]
fn digest_step(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(DIGEST_MUL)
}

/// The running trace digest (docs/trace.md, "The digest"): the trace is one
/// byte stream cut into 32-byte blocks, and word `i` of every block (64 bits,
/// little-endian) goes to lane `i`. Four lanes rather than one chain of
/// multiplications: the four are independent, so the processor works on them
/// at once, and the digest of a line costs about a quarter of the time a
/// single chain takes. A block is only taken whole, so the caller keeps the
/// bytes it has not had taken yet and passes them to [`StreamDigest::finish`].
#[derive(Clone, Debug)]
pub struct StreamDigest {
    lanes: [u64; 4],
    /// Bytes taken so far (whole blocks).
    taken: u64,
}

impl Default for StreamDigest {
    fn default() -> Self {
        StreamDigest {
            lanes: [FNV_OFFSET, FNV_OFFSET + 1, FNV_OFFSET + 2, FNV_OFFSET + 3],
            taken: 0,
        }
    }
}

impl StreamDigest {
    /// Takes every whole block at the start of `bytes`; returns how many bytes
    /// it took (a multiple of 32).
    #[inline]
    pub fn take_blocks(&mut self, bytes: &[u8]) -> usize {
        let mut blocks = bytes.chunks_exact(DIGEST_BLOCK);
        let [mut a, mut b, mut c, mut d] = self.lanes;
        for block in &mut blocks {
            let word =
                |i: usize| u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            a = digest_step(a, word(0));
            b = digest_step(b, word(1));
            c = digest_step(c, word(2));
            d = digest_step(d, word(3));
        }
        self.lanes = [a, b, c, d];
        let taken = bytes.len() - blocks.remainder().len();
        self.taken += taken as u64;
        taken
    }

    /// The digest of everything taken followed by `rest`: the whole blocks
    /// of `rest`, then what is left padded with zero bytes to a last block (a
    /// trace never contains a zero byte, and the length is hashed too), then
    /// the stream's length in bytes and the four lanes folded into one word.
    pub fn finish(&self, rest: &[u8]) -> u64 {
        let mut last = self.clone();
        let rest = &rest[last.take_blocks(rest)..];
        let length = last.taken + rest.len() as u64;
        if !rest.is_empty() {
            let mut block = [0u8; DIGEST_BLOCK];
            block[..rest.len()].copy_from_slice(rest);
            last.take_blocks(&block);
        }
        last.lanes
            .iter()
            .fold(length, |h, &lane| digest_step(h, lane))
    }
}

/// The digest of a whole trace (every line with its newline).
pub fn digest_trace(bytes: &[u8]) -> u64 {
    let mut digest = StreamDigest::default();
    let taken = digest.take_blocks(bytes);
    digest.finish(&bytes[taken..])
}

impl Tracer {
    /// A tracer for a cluster of `nodes` nodes (needed to name clients).
    pub fn new(nodes: usize, sink: Option<Box<dyn Write>>) -> Self {
        let mut t = Tracer {
            seq: 0,
            seq_text: DecimalCounter::default(),
            last_t: 0,
            t_text: b"0".to_vec(),
            digest: StreamDigest::default(),
            line: Vec::with_capacity(DIGEST_BATCH + 512),
            sink,
            nodes,
            resource: usize::MAX,
            queue: QueueLayout::default(),
            quoted: Vec::new(),
            enabled: true,
        };
        t.fill_names();
        t
    }

    /// Fills the table of quoted endpoint names from the current naming.
    fn fill_names(&mut self) {
        let naming = Names {
            quoted: &[],
            ..self.names()
        };
        let quoted = (0..QUOTED_NAMES)
            .map(|id| {
                let mut name = Vec::with_capacity(16);
                put_endpoint(&mut name, naming, id);
                let mut q = QuotedName {
                    len: 0,
                    bytes: [0; 15],
                };
                if name.len() <= q.bytes.len() {
                    q.len = name.len() as u8;
                    q.bytes[..name.len()].copy_from_slice(&name);
                }
                q
            })
            .collect();
        self.quoted = quoted;
    }

    fn names(&self) -> Names<'_> {
        Names {
            nodes: self.nodes,
            resource: self.resource,
            queue: self.queue,
            quoted: &self.quoted,
        }
    }

    /// A copy of this tracer's state (sequence, time, digest, naming) that
    /// writes to no sink: a sink is an output, which a copy must not share.
    /// `set_sink` gives the copy one; it then writes what this one would.
    pub fn detached(&self) -> Tracer {
        Tracer {
            seq: self.seq,
            seq_text: self.seq_text.clone(),
            last_t: self.last_t,
            t_text: self.t_text.clone(),
            digest: self.digest.clone(),
            // The bytes not digested yet belong to the copy's digest too.
            line: {
                let mut line = Vec::with_capacity(self.line.capacity());
                line.extend_from_slice(&self.line);
                line
            },
            sink: None,
            nodes: self.nodes,
            resource: self.resource,
            queue: self.queue,
            quoted: self.quoted.clone(),
            enabled: self.enabled,
        }
    }

    /// Writes the lines from now on to `sink` (None: to nothing).
    pub fn set_sink(&mut self, sink: Option<Box<dyn Write>>) {
        self.sink = sink;
    }

    /// A tracer that keeps no digest and writes nothing.
    pub fn disabled(nodes: usize) -> Self {
        let mut t = Tracer::new(nodes, None);
        t.enabled = false;
        t
    }

    /// Names endpoint `id` "resource" in traces.
    pub fn set_resource(&mut self, id: usize) {
        self.resource = id;
        self.fill_names();
    }

    /// Names the queue's endpoints `s1`.., `p1`.., `w1`.. in traces.
    pub fn set_queue_layout(&mut self, layout: QueueLayout) {
        self.queue = layout;
        self.fill_names();
    }

    /// Number of events recorded so far.
    pub fn events(&self) -> u64 {
        self.seq
    }

    /// The digest of all lines so far.
    pub fn digest(&self) -> u64 {
        self.digest.finish(&self.line)
    }

    /// Flushes the sink, reporting write errors (a full disk must not pass silently).
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(sink) = self.sink.as_mut() {
            sink.flush()?;
        }
        Ok(())
    }

    /// Records one event at simulated time `t_ns`. Returns its sequence number.
    pub fn record(&mut self, t_ns: u64, subject: Subject, ev: &TraceEvent) -> std::io::Result<u64> {
        let seq = self.seq;
        self.seq += 1;
        if !self.enabled {
            return Ok(seq);
        }
        let line = &mut self.line;
        let start = line.len();
        line.extend_from_slice(b"{\"seq\":");
        put_short(line, self.seq_text.digits());
        self.seq_text.increment();
        line.extend_from_slice(b",\"t\":");
        // A new time is written straight into the line and kept for the
        // next lines at the end: copying digits out right after writing
        // them would wait on the stores.
        let new_t = if t_ns != self.last_t {
            let at = line.len();
            put_u64(line, t_ns);
            Some(at..line.len())
        } else {
            put_short(line, &self.t_text);
            None
        };
        line.extend_from_slice(b",\"node\":\"");
        match subject {
            Subject::Node(n) => put_name(line, b'n', n),
            Subject::Client(c) => put_name(line, b'c', c),
            Subject::Net => line.extend_from_slice(b"net"),
            Subject::Resource => line.extend_from_slice(b"resource"),
            Subject::Shard(i) => put_name(line, b's', i),
            Subject::Producer(i) => put_name(line, b'p', i),
            Subject::Consumer(i) => put_name(line, b'w', i),
        }
        line.extend_from_slice(b"\",\"kind\":\"");
        put_short(line, ev.kind().as_bytes());
        line.push(b'"');
        write_fields(
            line,
            ev,
            Names {
                nodes: self.nodes,
                resource: self.resource,
                queue: self.queue,
                quoted: &self.quoted,
            },
        );
        line.extend_from_slice(b"}\n");
        let written = match self.sink.as_mut() {
            Some(sink) => sink.write_all(&line[start..]),
            None => Ok(()),
        };
        if let Some(t) = new_t {
            self.last_t = t_ns;
            self.t_text.clear();
            self.t_text.extend_from_slice(&line[t]);
        }
        // Lines are digested a batch at a time, long after they were
        // written: the digest reads whole words, and words of bytes stored
        // a moment ago make the processor wait for the stores to land.
        if line.len() >= DIGEST_BATCH {
            let taken = self.digest.take_blocks(line);
            line.copy_within(taken.., 0);
            line.truncate(line.len() - taken);
        }
        written?;
        Ok(seq)
    }
}

/// A decimal number kept as text and counted up in place: a trace line's
/// sequence number costs a copy instead of a conversion.
#[derive(Clone)]
struct DecimalCounter {
    /// Right-aligned ASCII digits; `start` is the first one in use.
    text: [u8; 20],
    start: usize,
}

impl Default for DecimalCounter {
    fn default() -> Self {
        DecimalCounter {
            text: [b'0'; 20],
            start: 19,
        }
    }
}

impl DecimalCounter {
    fn digits(&self) -> &[u8] {
        &self.text[self.start..]
    }

    /// Adds one, carrying through trailing nines. Twenty digits hold every
    /// u64, and a trace never reaches 2^64 lines.
    fn increment(&mut self) {
        let mut i = self.text.len();
        while i > 0 {
            i -= 1;
            if self.text[i] == b'9' {
                self.text[i] = b'0';
            } else {
                self.text[i] += 1;
                break;
            }
        }
        self.start = self.start.min(i);
    }
}

/// Appends `bytes`, which are usually short (names, kinds, numbers kept as
/// text): up to 32 bytes are copied as two overlapping loads and stores of a
/// fixed size, inline, where `extend_from_slice` of a length known only at run
/// time calls `memcpy`, whose call costs more than the copy. A trace line
/// makes about ten such copies, and every event writes a line.
#[inline(always)]
fn put_short(line: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 {
        return line.extend_from_slice(bytes);
    }
    line.reserve(n);
    let len = line.len();
    let src = bytes.as_ptr();
    // SAFETY: `reserve` made room for `n` bytes after `len`; every read is
    // inside `bytes` and every write inside `len..len + n` (the pairs overlap
    // when `n` is not twice their size, writing the same bytes twice).
    unsafe {
        let dst = line.as_mut_ptr().add(len);
        if n >= 16 {
            let (a, b) = (
                src.cast::<[u8; 16]>().read_unaligned(),
                src.add(n - 16).cast::<[u8; 16]>().read_unaligned(),
            );
            dst.cast::<[u8; 16]>().write_unaligned(a);
            dst.add(n - 16).cast::<[u8; 16]>().write_unaligned(b);
        } else if n >= 8 {
            let (a, b) = (
                src.cast::<u64>().read_unaligned(),
                src.add(n - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (
                src.cast::<u32>().read_unaligned(),
                src.add(n - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        line.set_len(len + n);
    }
}

/// What endpoint ids are called in traces.
#[derive(Clone, Copy)]
struct Names<'a> {
    nodes: usize,
    resource: usize,
    queue: QueueLayout,
    /// The quoted names of ids `0..quoted.len()`, written in advance.
    quoted: &'a [QuotedName],
}

/// Endpoints whose quoted names a tracer keeps ready.
const QUOTED_NAMES: usize = 128;

/// A quoted endpoint name (`"n3"`), or `len` 0 when it does not fit.
#[derive(Clone, Copy)]
struct QuotedName {
    len: u8,
    bytes: [u8; 15],
}

/// The display name of an endpoint: `n3` for node 2, `c1` for the first client.
pub fn endpoint_name(nodes: usize, id: NodeId) -> String {
    if id < nodes {
        format!("n{}", id + 1)
    } else {
        format!("c{}", id - nodes + 1)
    }
}

#[inline(always)]
fn put_name(line: &mut Vec<u8>, prefix: u8, index: usize) {
    line.push(prefix);
    put_u64(line, index as u64 + 1);
}

#[inline(always)]
fn put_endpoint(line: &mut Vec<u8>, names: Names<'_>, id: NodeId) {
    if let Some(q) = names.quoted.get(id)
        && q.len > 0
    {
        return put_short(line, &q.bytes[..q.len as usize]);
    }
    put_endpoint_uncached(line, names, id);
}

/// [`put_endpoint`] for an id past the table of quoted names.
#[inline(never)]
fn put_endpoint_uncached(line: &mut Vec<u8>, names: Names<'_>, id: NodeId) {
    line.push(b'"');
    if id == names.resource {
        line.extend_from_slice(b"resource");
    } else if let Some(subject) = names.queue.subject(id) {
        match subject {
            Subject::Shard(i) => put_name(line, b's', i),
            Subject::Producer(i) => put_name(line, b'p', i),
            _ => put_name(line, b'w', id - names.queue.consumer_base),
        }
    } else if id < names.nodes {
        put_name(line, b'n', id)
    } else {
        put_name(line, b'c', id - names.nodes)
    }
    line.push(b'"');
}

/// "00" to "99": integers are written two digits at a step.
pub(crate) const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal.
#[inline(always)]
pub(crate) fn put_u64(line: &mut Vec<u8>, v: u64) {
    // Most numbers in a line are small (terms, keys, clients): those are
    // written inline, the rest by a call.
    if v < 10 {
        line.push(b'0' + v as u8);
    } else if v < 100 {
        let pair = v as usize * 2;
        put_short(line, &DIGIT_PAIRS[pair..pair + 2]);
    } else {
        put_u64_long(line, v);
    }
}

/// [`put_u64`] for `v` of 100 and more: the number is cut into blocks of
/// eight digits, and each block is turned into its eight ASCII digits inside
/// one 64-bit word (below) and stored at once. A word stored whole can be read
/// back at once; digits stored a byte at a time make the next whole-word read
/// of them (the digest, a copy) wait for every byte's store to land.
#[inline(never)]
fn put_u64_long(line: &mut Vec<u8>, v: u64) {
    const BLOCK: u64 = 100_000_000;
    line.reserve(24);
    let len = line.len();
    // The leading block, without its leading zeros, then whole blocks.
    let (lead, blocks, whole): (u32, [u32; 2], usize) = if v < BLOCK {
        (v as u32, [0; 2], 0)
    } else if v < BLOCK * BLOCK {
        ((v / BLOCK) as u32, [(v % BLOCK) as u32, 0], 1)
    } else {
        let (top, low) = (v / BLOCK, (v % BLOCK) as u32);
        ((top / BLOCK) as u32, [(top % BLOCK) as u32, low], 2)
    };
    let lead_len = lead.ilog10() as usize + 1;
    // SAFETY: `reserve(24)` made room for three words after `len`, and a
    // u64 has at most 20 digits: 8 bytes at `len`, then 8 at each of
    // `len + lead_len` and `len + lead_len + 8` for the whole blocks, all
    // within the 24 reserved. `set_len` covers only digits written.
    unsafe {
        let dst = line.as_mut_ptr().add(len);
        let lead_word = eight_digits(lead) >> (8 * (8 - lead_len));
        dst.cast::<u64>().write_unaligned(lead_word);
        for (i, &block) in blocks[..whole].iter().enumerate() {
            dst.add(lead_len + 8 * i)
                .cast::<u64>()
                .write_unaligned(eight_digits(block));
        }
        line.set_len(len + lead_len + 8 * whole);
    }
}

/// The eight decimal digits of `v` (below 10^8), leading zeros included, as
/// ASCII bytes in a little-endian word: the first digit in the lowest byte.
/// Division by constants in parallel lanes (SWAR): the value is split into
/// two 4-digit halves in 32-bit lanes, each into two 2-digit pairs in 16-bit
/// lanes, each into two digits in 8-bit lanes. The multiply-and-shift
/// quotients are exact for these ranges (x * 10486 >> 20 == x / 100 for
/// x < 10,000; x * 103 >> 10 == x / 10 for x < 100), and the masks drop what
/// a neighbouring lane's product shifts in.
#[inline(always)]
fn eight_digits(v: u32) -> u64 {
    let (hi, lo) = (v / 10_000, v % 10_000);
    let halves = hi as u64 | (lo as u64) << 32;
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let pairs = hundreds | (halves - hundreds * 100) << 16;
    let tens = ((pairs * 103) >> 10) & 0x000f_000f_000f_000f;
    let digits = tens | (pairs - tens * 10) << 8;
    digits | 0x3030_3030_3030_3030
}

fn put_i64(line: &mut Vec<u8>, v: i64) {
    if v < 0 {
        line.push(b'-');
    }
    put_u64(line, v.unsigned_abs());
}

fn put_f64(line: &mut Vec<u8>, v: f64) {
    // Rust's shortest round-trip formatting is deterministic across platforms.
    let _ = write!(line, "{v:?}");
}

#[inline(always)]
fn key(line: &mut Vec<u8>, name: &str) {
    line.extend_from_slice(b",\"");
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b"\":");
}

#[inline(always)]
fn field_u64(line: &mut Vec<u8>, name: &str, v: u64) {
    key(line, name);
    put_u64(line, v);
}

fn field_f64(line: &mut Vec<u8>, name: &str, v: f64) {
    key(line, name);
    put_f64(line, v);
}

fn field_i64(line: &mut Vec<u8>, name: &str, v: i64) {
    key(line, name);
    put_i64(line, v);
}

#[inline(always)]
fn field_str(line: &mut Vec<u8>, name: &str, v: &str) {
    key(line, name);
    line.push(b'"');
    put_short(line, v.as_bytes());
    line.push(b'"');
}

fn field_nodes(line: &mut Vec<u8>, name: &str, names: Names<'_>, ids: &[NodeId]) {
    key(line, name);
    put_node_list(line, names, ids);
}

/// A list of places: nodes `0..n`, then Redis shards (`s1`..) from `n` on.
fn put_node_list(line: &mut Vec<u8>, names: Names<'_>, ids: &[NodeId]) {
    line.push(b'[');
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        if id < names.nodes {
            put_name(line, b'n', id);
        } else {
            put_name(line, b's', id - names.nodes);
        }
        line.push(b'"');
    }
    line.push(b']');
}

/// The fields every `net.*` event shares.
fn put_message(
    line: &mut Vec<u8>,
    names: Names<'_>,
    from: NodeId,
    to: NodeId,
    msg: &str,
    term: u64,
) {
    key(line, "from");
    put_endpoint(line, names, from);
    key(line, "to");
    put_endpoint(line, names, to);
    field_str(line, "msg", msg);
    field_u64(line, "term", term);
}

fn write_fields(line: &mut Vec<u8>, ev: &TraceEvent, names: Names<'_>) {
    use TraceEvent::*;
    match ev {
        RaftRole { term, role } => {
            field_u64(line, "term", *term);
            field_str(line, "role", role.name());
        }
        RaftVote {
            term,
            candidate,
            last_index,
            last_term,
        } => {
            field_u64(line, "term", *term);
            key(line, "candidate");
            put_endpoint(line, names, *candidate);
            field_u64(line, "last_index", *last_index);
            field_u64(line, "last_term", *last_term);
        }
        RaftAppend {
            index,
            term,
            digest,
        }
        | RaftApply {
            index,
            term,
            digest,
        } => {
            field_u64(line, "index", *index);
            field_u64(line, "term", *term);
            field_u64(line, "digest", *digest);
        }
        RaftTruncate { from } => field_u64(line, "from", *from),
        RaftCommit { index } => field_u64(line, "index", *index),
        RaftSnapshot { index, term } => {
            field_u64(line, "index", *index);
            field_u64(line, "term", *term);
        }
        RaftRecover {
            term,
            voted_for,
            last_index,
            last_term,
            snapshot_index,
        } => {
            field_u64(line, "term", *term);
            key(line, "voted_for");
            match voted_for {
                Some(v) => put_endpoint(line, names, *v),
                None => line.extend_from_slice(b"null"),
            }
            field_u64(line, "last_index", *last_index);
            field_u64(line, "last_term", *last_term);
            field_u64(line, "snapshot_index", *snapshot_index);
        }
        NetSend {
            from,
            to,
            msg,
            term,
        }
        | NetDeliver {
            from,
            to,
            msg,
            term,
        } => {
            put_message(line, names, *from, *to, msg, *term);
        }
        NetDrop {
            from,
            to,
            msg,
            term,
            reason,
        } => {
            put_message(line, names, *from, *to, msg, *term);
            field_str(line, "reason", reason);
        }
        FaultCrash | FaultRestart | FaultPause | FaultResume | FaultHeal => {}
        FaultPartition { groups } => {
            key(line, "groups");
            line.push(b'[');
            for (i, g) in groups.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                put_node_list(line, names, g);
            }
            line.push(b']');
        }
        FaultPartitionOneWay { from, to } => {
            field_nodes(line, "from", names, from);
            field_nodes(line, "to", names, to);
        }
        FaultNetwork {
            link,
            both_ways,
            loss,
            duplicate,
            reorder,
            reorder_delay_max,
            latency_min,
            latency_max,
        } => {
            key(line, "link");
            match link {
                Some((a, b)) => put_node_list(line, names, &[*a, *b]),
                None => line.extend_from_slice(b"null"),
            }
            key(line, "both_ways");
            line.extend_from_slice(if *both_ways { b"true" } else { b"false" });
            field_f64(line, "loss", *loss);
            field_f64(line, "duplicate", *duplicate);
            field_f64(line, "reorder", *reorder);
            field_u64(line, "reorder_delay_max", *reorder_delay_max);
            field_u64(line, "latency_min", *latency_min);
            field_u64(line, "latency_max", *latency_max);
        }
        FaultClock {
            offset,
            drift_ppm,
            step,
        } => {
            field_i64(line, "offset", *offset);
            field_i64(line, "drift_ppm", *drift_ppm);
            field_i64(line, "step", *step);
        }
        FaultSkipped { action, reason } => {
            field_str(line, "action", action);
            field_str(line, "reason", reason);
        }
        ClientInvoke {
            client,
            op,
            key: k,
            value,
        } => {
            field_u64(line, "client", *client as u64 + 1);
            field_str(line, "op", op);
            field_u64(line, "key", *k as u64);
            if let Some(v) = value {
                field_u64(line, "value", *v);
            }
        }
        ClientReturn {
            client,
            op,
            key: k,
            value,
            outcome,
        } => {
            field_u64(line, "client", *client as u64 + 1);
            field_str(line, "op", op);
            field_u64(line, "key", *k as u64);
            if let Some(v) = value {
                field_u64(line, "value", *v);
            }
            field_str(line, "outcome", outcome.name());
        }
        LockSession {
            session,
            client,
            what,
        } => {
            field_u64(line, "session", *session);
            if let Some(c) = client {
                field_u64(line, "client", *c as u64 + 1);
            }
            field_str(line, "what", what);
        }
        LockGrant {
            lock,
            session,
            mode,
            token,
            holds,
        } => {
            field_u64(line, "lock", *lock as u64);
            field_u64(line, "session", *session);
            field_str(line, "mode", mode);
            field_u64(line, "token", *token);
            field_u64(line, "holds", *holds as u64);
        }
        LockWait {
            lock,
            session,
            mode,
        } => {
            field_u64(line, "lock", *lock as u64);
            field_u64(line, "session", *session);
            field_str(line, "mode", mode);
        }
        LockRelease {
            lock,
            session,
            holds,
        } => {
            field_u64(line, "lock", *lock as u64);
            field_u64(line, "session", *session);
            field_u64(line, "holds", *holds as u64);
        }
        LockFail {
            session,
            lock,
            error,
        } => {
            field_u64(line, "session", *session);
            key(line, "lock");
            match lock {
                Some(l) => put_u64(line, *l as u64),
                None => line.extend_from_slice(b"null"),
            }
            key(line, "error");
            put_json_str(line, error);
        }
        LockDeadlock { cycle, victim } => {
            key(line, "cycle");
            line.push(b'[');
            for (i, s) in cycle.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                put_u64(line, *s);
            }
            line.push(b']');
            field_u64(line, "victim", *victim);
        }
        ResourceWrite {
            client,
            lock,
            token,
            begin,
            accepted,
        } => {
            field_u64(line, "client", *client as u64 + 1);
            field_u64(line, "lock", *lock as u64);
            field_u64(line, "token", *token);
            field_str(line, "phase", if *begin { "begin" } else { "end" });
            key(line, "accepted");
            line.extend_from_slice(if *accepted { b"true" } else { b"false" });
        }
        LockRenewed {
            session,
            ttl,
            age_ns,
        } => {
            field_u64(line, "session", *session);
            field_u64(line, "ttl", *ttl);
            field_u64(line, "age", *age_ns);
        }
        QueueRing { epoch, shards } => {
            field_u64(line, "epoch", *epoch);
            key(line, "shards");
            line.push(b'[');
            for (i, &sh) in shards.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.push(b'"');
                put_name(line, b's', sh as usize);
                line.push(b'"');
            }
            line.push(b']');
        }
        QueueSend {
            producer,
            partition,
            first_seq,
            count,
        }
        | QueueProduced {
            producer,
            partition,
            first_seq,
            count,
        } => {
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "first_seq", *first_seq);
            field_u64(line, "count", *count as u64);
        }
        QueueStored {
            partition,
            producer,
            first_seq,
            stored,
            duplicate,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "first_seq", *first_seq);
            field_u64(line, "stored", *stored as u64);
            field_u64(line, "duplicate", *duplicate as u64);
        }
        QueuePop {
            partition,
            consumer,
            producer,
            seq,
            attempt,
        }
        | QueueReceived {
            consumer,
            partition,
            producer,
            seq,
            attempt,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "consumer", *consumer as u64 + 1);
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "message_seq", *seq);
            field_u64(line, "attempt", *attempt as u64);
        }
        QueueAcked {
            partition,
            producer,
            seq,
        }
        | QueueNacked {
            partition,
            producer,
            seq,
        }
        | QueueLost {
            partition,
            producer,
            seq,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "message_seq", *seq);
        }
        QueueRevived {
            partition,
            producer,
            seq,
            place,
        }
        | QueueReverted {
            partition,
            producer,
            seq,
            place,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "message_seq", *seq);
            field_str(line, "place", place);
        }
        QueueRequeued {
            partition,
            producer,
            seq,
            attempt: n,
        }
        | QueueDead {
            partition,
            producer,
            seq,
            attempts: n,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "producer", *producer as u64 + 1);
            field_u64(line, "message_seq", *seq);
            let name = if matches!(ev, QueueDead { .. }) {
                "attempts"
            } else {
                "attempt"
            };
            field_u64(line, name, *n as u64);
        }
        QueueMigrated {
            partition,
            from,
            to,
            epoch,
            messages,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_str(line, "from", &format!("s{}", from + 1));
            field_str(line, "to", &format!("s{}", to + 1));
            field_u64(line, "epoch", *epoch);
            field_u64(line, "messages", *messages);
        }
        QueueEmpty {
            partition,
            consumer,
        } => {
            field_u64(line, "partition", *partition as u64);
            field_u64(line, "consumer", *consumer as u64 + 1);
        }
        QueueConsumerCrash { consumer, holding } => {
            field_u64(line, "consumer", *consumer as u64 + 1);
            field_u64(line, "holding", *holding as u64);
        }
        CacheTransition {
            key: k,
            from,
            to,
            cause,
        } => {
            field_u64(line, "key", *k as u64);
            field_str(line, "from", from);
            field_str(line, "to", to);
            field_str(line, "cause", cause);
        }
        CacheStart { op, key: k } => {
            field_str(line, "op", op);
            field_u64(line, "key", *k as u64);
        }
        CacheRead { key: k, value, hit } => {
            field_u64(line, "key", *k as u64);
            key(line, "value");
            match value {
                Some(v) => put_u64(line, *v),
                None => line.extend_from_slice(b"null"),
            }
            key(line, "hit");
            line.extend_from_slice(if *hit { b"true" } else { b"false" });
        }
        CacheWrite { key: k, value, hit } => {
            field_u64(line, "key", *k as u64);
            field_u64(line, "value", *value);
            key(line, "hit");
            line.extend_from_slice(if *hit { b"true" } else { b"false" });
        }
        CacheFailed { op, key: k, reason } => {
            field_str(line, "op", op);
            field_u64(line, "key", *k as u64);
            field_str(line, "reason", reason);
        }
        CacheLost { key: k, value }
        | CacheInDoubt { key: k, value }
        | CacheWriteBack { key: k, value } => {
            field_u64(line, "key", *k as u64);
            field_u64(line, "value", *value);
        }
        CacheDump { lines } => {
            key(line, "lines");
            line.push(b'[');
            for (i, (k, st)) in lines.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.push(b'[');
                put_u64(line, *k as u64);
                line.extend_from_slice(b",\"");
                line.extend_from_slice(st.as_bytes());
                line.extend_from_slice(b"\"]");
            }
            line.push(b']');
        }
    }
}

/// A JSON string with quotes, backslashes and control characters escaped.
fn put_json_str(line: &mut Vec<u8>, s: &str) {
    line.push(b'"');
    for c in s.chars() {
        match c {
            '"' => line.extend_from_slice(b"\\\""),
            '\\' => line.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                line.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    line.push(b'"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sequence_counter_counts_in_decimal() {
        let mut c = DecimalCounter::default();
        for n in 0..=100_000u64 {
            assert_eq!(c.digits(), n.to_string().as_bytes());
            c.increment();
        }
        let mut near_max = DecimalCounter {
            text: *b"18446744073709551614",
            start: 0,
        };
        near_max.increment();
        assert_eq!(near_max.digits(), u64::MAX.to_string().as_bytes());
    }

    use super::*;

    #[test]
    fn integers_are_written_as_decimal() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            u64::MAX,
            u64::MAX - 1,
        ];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            values.extend([p - 1, p, p + 1, next - 1]);
            p = next;
        }
        values.extend([p - 1, p, p + 1]);
        // And a spread of values of every length.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let mut line = b"x".to_vec();
            put_u64(&mut line, v);
            assert_eq!(line, format!("x{v}").into_bytes(), "{v}");
        }
        for v in [0, -1, 9, -10, i64::MIN, i64::MAX] {
            let mut line = Vec::new();
            put_i64(&mut line, v);
            assert_eq!(line, v.to_string().into_bytes(), "{v}");
        }
    }

    #[test]
    fn the_digest_is_the_documented_four_lane_hash() {
        // The value the Python snippet in docs/trace.md prints for these bytes.
        let trace = b"{\"seq\":0,\"t\":0,\"node\":\"n1\",\"kind\":\"raft.role\",\"term\":1,\"role\":\"follower\"}\n{\"seq\":1}\n";
        assert_eq!(digest_trace(trace), 0xee7d_e495_e0ba_d7f2);
        // Taken in pieces of any size, as the tracer takes lines, the stream
        // gives the same value.
        for piece in 1..trace.len() {
            let mut digest = StreamDigest::default();
            let mut pending = Vec::new();
            for chunk in trace.chunks(piece) {
                pending.extend_from_slice(chunk);
                let taken = digest.take_blocks(&pending);
                pending.drain(..taken);
            }
            assert_eq!(
                digest.finish(&pending),
                digest_trace(trace),
                "pieces of {piece}"
            );
        }
        // The length counts: a stream and the same stream with zero bytes
        // appended differ.
        let mut padded = trace.to_vec();
        padded.push(0);
        assert_ne!(digest_trace(&padded), digest_trace(trace));
        assert_ne!(digest_trace(b""), digest_trace(b"\0"));
        // A changed byte anywhere in a word changes the digest.
        for i in 0..trace.len() - 1 {
            let mut changed = trace.to_vec();
            changed[i] ^= 0x20;
            assert_ne!(digest_trace(&changed), digest_trace(trace), "byte {i}");
        }
    }

    #[test]
    fn lines_are_valid_json_with_the_documented_fields() {
        let sink = MemorySink::default();
        let mut t = Tracer::new(3, Some(Box::new(sink.clone())));
        let mut out = Vec::new();
        let evs = [
            (
                Subject::Node(0),
                TraceEvent::RaftRole {
                    term: 2,
                    role: Role::Leader,
                },
            ),
            (
                Subject::Node(1),
                TraceEvent::RaftRecover {
                    term: 2,
                    voted_for: None,
                    last_index: 4,
                    last_term: 2,
                    snapshot_index: 0,
                },
            ),
            (
                Subject::Net,
                TraceEvent::FaultPartition {
                    groups: vec![vec![0], vec![1, 2]],
                },
            ),
            (
                Subject::Client(0),
                TraceEvent::ClientReturn {
                    client: 0,
                    op: "get",
                    key: 1,
                    value: None,
                    outcome: Outcome::Unknown,
                },
            ),
            (
                Subject::Node(2),
                TraceEvent::FaultClock {
                    offset: -5,
                    drift_ppm: 100,
                    step: 0,
                },
            ),
            (
                Subject::Net,
                TraceEvent::FaultNetwork {
                    link: Some((0, 1)),
                    both_ways: true,
                    loss: 0.25,
                    duplicate: 0.0,
                    reorder: 0.1,
                    reorder_delay_max: 5,
                    latency_min: 1,
                    latency_max: 2,
                },
            ),
        ];
        for (s, e) in &evs {
            t.record(7, *s, e).unwrap();
            let lines = sink.take_lines();
            assert_eq!(lines.len(), 1, "one line per event");
            let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
            assert_eq!(v["kind"], e.kind());
            assert_eq!(v["t"], 7);
            out.extend_from_slice(lines[0].as_bytes());
            out.push(b'\n');
            // The digest so far is always the digest of the lines so far.
            assert_eq!(t.digest(), digest_trace(&out));
        }
        assert_eq!(t.digest(), digest_trace(&out));
        let first: serde_json::Value =
            serde_json::from_str(std::str::from_utf8(&out).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(first["node"], "n1");
        assert_eq!(first["role"], "leader");
    }
}

/// A trace sink kept in memory, shared by its clones: the stepper, the
/// HTML report and tests read back what a run wrote.
#[derive(Clone, Default)]
pub struct MemorySink(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl MemorySink {
    /// Removes and returns what was written so far, as lines.
    pub fn take_lines(&self) -> Vec<String> {
        let bytes = std::mem::take(&mut *self.0.borrow_mut());
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
