//! The resolved, validated scenario the simulator runs.
//!
//! `parse` turns a TOML file into this; fuzzing and shrinking build and edit it
//! directly. Every time is simulated nanoseconds; every node is an index 0..n
//! named `n1`..`nN` in files and traces.

use crate::bugs::Bugs;

/// Simulated nanoseconds.
pub type Nanos = u64;

/// A validated scenario: cluster, network, Raft timings, clocks, workload,
/// timeline and expectations.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name, used in reports and failure file names.
    pub name: String,
    /// One paragraph saying what the scenario shows.
    pub description: String,
    /// Number of Raft nodes (1..=15).
    pub nodes: usize,
    /// Default seed when the CLI gives none.
    pub seed: u64,
    /// Simulated run length; the run stops here.
    pub duration_ns: Nanos,
    pub network: NetworkConfig,
    pub raft: RaftConfig,
    /// One clock per node, index = node.
    pub clocks: Vec<ClockConfig>,
    pub workload: Workload,
    /// Steps sorted by `at_ns` (stable: file order breaks ties).
    pub timeline: Vec<Step>,
    pub expect: Expectations,
    /// Planted bugs switched on (all off by default).
    pub bugs: Bugs,
    /// Key names by index: workload keys are `k0`..; scripted keys follow.
    pub key_names: Vec<String>,
    /// The lock service's settings.
    pub locks: LockConfig,
    /// Generated lock clients (none by default).
    pub lock_load: LockWorkload,
    /// The Redis shards behind the queue (none by default).
    pub redis: RedisConfig,
    /// The queues and how they deliver.
    pub queue: QueueConfig,
    /// Generated producers and consumers (none by default).
    pub queue_load: QueueWorkload,
    /// The MESI caches on the nodes (off by default).
    pub cache: CacheConfig,
    /// Generated cache reads and writes (none by default).
    pub cache_load: CacheWorkload,
}

/// How the nodes' caches keep coherent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheProtocol {
    /// Snooping over one bus whose arbiter (a node) orders every transaction.
    Bus,
    /// A home node per key keeps a directory entry; no broadcast.
    Directory,
}

/// The MESI caches: one per node, backed by Redis shard `s1` as memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheConfig {
    /// Caches exist (a `[cache]` table is present).
    pub enabled: bool,
    pub protocol: CacheProtocol,
    /// Lines per node cache (CACHE_CAPACITY).
    pub capacity: usize,
    /// The bus arbiter's node (bus protocol).
    pub arbiter: usize,
    /// A coherence operation not finished in this long fails with an error.
    pub op_timeout_ns: Nanos,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            protocol: CacheProtocol::Bus,
            capacity: 100,
            arbiter: 0,
            op_timeout_ns: 500_000_000,
        }
    }
}

/// Generated cache operations, issued at every node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheWorkload {
    /// Operations per second per node (0 = none).
    pub rate_per_s: f64,
    /// Keys 0..keys.
    pub keys: u32,
    /// Zipf exponent of key popularity (0 = uniform).
    pub zipf: f64,
    /// Fraction of operations that are writes.
    pub write_ratio: f64,
    /// Operations are issued in [start, stop).
    pub start_ns: Nanos,
    pub stop_ns: Nanos,
}

impl Default for CacheWorkload {
    fn default() -> Self {
        CacheWorkload {
            rate_per_s: 0.0,
            keys: 1000,
            zipf: 0.99,
            write_ratio: 0.1,
            start_ns: 0,
            stop_ns: u64::MAX,
        }
    }
}

/// One scripted cache operation at a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOp {
    /// Read a key through the node's cache (PrRd).
    Get { key: u32 },
    /// Write a key through the node's cache (PrWr).
    Put { key: u32, value: u64 },
    /// Drop the node's copy (evicting it: an M line is written back).
    Invalidate { key: u32 },
    /// Read a key, taking the data from a peer that holds it when one does.
    Fetch { key: u32 },
    /// Trace every line's state at the node.
    Dump,
}

/// Redis's persistence setting for every shard (redis.conf `appendonly` and
/// `appendfsync`).
pub use crate::redis::Fsync;

/// The Redis shards: endpoints `s1`..`sN`, numbered right after the nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// Number of shard endpoints (0 = no queue in this scenario).
    pub shards: usize,
    /// Shards in the ring at the start, as indexes 0..shards (file: `s1`..);
    /// the others wait for an `add_shard` step.
    pub initial_ring: Vec<u32>,
    /// What a crashed shard keeps.
    pub persistence: Fsync,
    /// Virtual nodes per shard on the consistent-hash ring.
    pub vnodes: u32,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            shards: 0,
            initial_ring: Vec::new(),
            persistence: Fsync::Always,
            vnodes: 64,
        }
    }
}

/// The queues: names, partitions and delivery rules.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// Queue names; each is split into `partitions` partitions.
    pub queues: Vec<String>,
    pub partitions: u32,
    /// How long a delivered message stays invisible before it is redelivered.
    pub visibility_ns: Nanos,
    /// Deliveries a message gets before it goes to the dead-letter queue.
    pub max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queues: vec!["jobs".to_string()],
            partitions: 8,
            visibility_ns: 500_000_000,
            max_attempts: 4,
        }
    }
}

/// Generated producers and consumers.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueWorkload {
    pub producers: usize,
    pub consumers: usize,
    /// Messages per second per producer (mean; gaps are exponential).
    pub rate_per_s: f64,
    /// Most messages in one produce request (1 = no batching).
    pub batch: u32,
    /// Ordering keys `0..keys`; 0 = unkeyed messages, spread over partitions.
    pub keys: u32,
    /// Fraction of messages sent with key 0 (a hot partition).
    pub hot_ratio: f64,
    /// Fraction of messages every consumer rejects (nack) until they are
    /// dead-lettered.
    pub poison_ratio: f64,
    /// Most messages one consume request takes.
    pub consume_batch: u32,
    /// Processing time per message, uniform in [min, max].
    pub process_min_ns: Nanos,
    pub process_max_ns: Nanos,
    /// Probability a consumer crashes while processing a message (it loses
    /// what it holds, stays down for `consumer_down_ns`, then starts over).
    pub crash_ratio: f64,
    pub consumer_down_ns: Nanos,
    /// Producers send in [start, stop); consumers run the whole scenario.
    pub start_ns: Nanos,
    pub stop_ns: Nanos,
}

impl Default for QueueWorkload {
    fn default() -> Self {
        QueueWorkload {
            producers: 0,
            consumers: 0,
            rate_per_s: 100.0,
            batch: 1,
            keys: 0,
            hot_ratio: 0.0,
            poison_ratio: 0.0,
            consume_batch: 4,
            process_min_ns: 1_000_000,
            process_max_ns: 5_000_000,
            crash_ratio: 0.0,
            consumer_down_ns: 1_000_000_000,
            start_ns: 0,
            stop_ns: u64::MAX,
        }
    }
}

/// Generated lock clients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LockWorkload {
    pub clients: usize,
    /// Locks 0..locks.
    pub locks: u32,
    /// Locks taken per round: 1..=max_per_round, in random order.
    pub max_per_round: u32,
    /// Probability a lock is taken shared.
    pub shared_ratio: f64,
    pub hold_min_ns: Nanos,
    pub hold_max_ns: Nanos,
    /// Mean pause between rounds.
    pub gap_ns: Nanos,
    /// Session lease.
    pub ttl_ns: Nanos,
    /// Probability a client falls silent while holding (a crash).
    pub crash_ratio: f64,
    /// Rounds start within [start, stop).
    pub start_ns: Nanos,
    pub stop_ns: Nanos,
}

impl Default for LockWorkload {
    fn default() -> Self {
        LockWorkload {
            clients: 0,
            locks: 4,
            max_per_round: 2,
            shared_ratio: 0.3,
            hold_min_ns: 10_000_000,
            hold_max_ns: 50_000_000,
            gap_ns: 50_000_000,
            ttl_ns: 1_000_000_000,
            crash_ratio: 0.0,
            start_ns: 0,
            stop_ns: u64::MAX,
        }
    }
}

/// Settings of the lock service run by every node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LockConfig {
    /// How long a queued acquire may wait before the leader times it out.
    pub wait_ns: Nanos,
    /// How often the leader looks for expired leases and waits.
    pub lease_check_ns: Nanos,
    /// Holds one session may have on one lock.
    pub reentry_limit: u32,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            wait_ns: 1_000_000_000,
            lease_check_ns: 20_000_000,
            reentry_limit: crate::lock::DEFAULT_REENTRY_LIMIT,
        }
    }
}

/// Message delivery model between nodes (clients share latency, never loss).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Default link behaviour.
    pub link: LinkConfig,
    /// Per directed link overrides: (from, to, config).
    pub overrides: Vec<(usize, usize, LinkConfig)>,
}

/// Behaviour of one directed link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way latency drawn uniformly in [min, max].
    pub latency_min_ns: Nanos,
    pub latency_max_ns: Nanos,
    /// Probability in [0,1] that a message is dropped.
    pub loss: f64,
    /// Probability in [0,1] that a message is delivered twice.
    pub duplicate: f64,
    /// Probability in [0,1] that a message gets extra delay of up to
    /// `reorder_delay_max_ns`, overtaking later messages.
    pub reorder: f64,
    pub reorder_delay_max_ns: Nanos,
}

/// Raft timing and feature switches.
#[derive(Clone, Debug, PartialEq)]
pub struct RaftConfig {
    /// Election timeout drawn uniformly in [min, max) of monotonic time.
    pub election_timeout_min_ns: Nanos,
    pub election_timeout_max_ns: Nanos,
    /// Leader heartbeat interval (monotonic time).
    pub heartbeat_ns: Nanos,
    /// Pre-vote (Raft thesis 9.6).
    pub pre_vote: bool,
    /// Leader steps down without contact from a quorum for an election timeout.
    pub check_quorum: bool,
    /// Compact the log once this many applied entries follow the last snapshot.
    pub snapshot_threshold: u64,
    /// Upper bound on entries in one AppendEntries.
    pub max_entries_per_append: usize,
}

/// The scenario format's defaults (docs/scenarios.md, `[raft]`).
impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_min_ns: 150_000_000,
            election_timeout_max_ns: 300_000_000,
            heartbeat_ns: 50_000_000,
            pre_vote: true,
            check_quorum: true,
            snapshot_threshold: 1000,
            max_entries_per_append: 64,
        }
    }
}

/// One node's clock: local = offset + (1 + drift_ppm/1e6) * global + steps.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ClockConfig {
    pub offset_ns: i64,
    pub drift_ppm: i64,
}

/// Generated client load on the replicated key-value store.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Number of closed-loop clients (0 = none).
    pub clients: usize,
    /// Operations per second per client (mean; gaps are exponential).
    pub rate_per_s: f64,
    /// Keys k0..k{keys-1}.
    pub keys: usize,
    /// Fraction of operations that are reads, in [0,1].
    pub read_ratio: f64,
    /// Generated operations are issued in [start, stop).
    pub start_ns: Nanos,
    pub stop_ns: Nanos,
    /// A client retries one node this long before trying the next.
    pub request_timeout_ns: Nanos,
    /// After this long without a definite answer an operation is recorded as
    /// indeterminate and the client moves on.
    pub op_timeout_ns: Nanos,
}

/// A node named directly, or a role resolved when the step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Node(usize),
    /// The live leader with the highest term; the step is skipped if none.
    Leader,
    /// The lowest-numbered live follower; skipped if none.
    Follower,
    /// The node crashed most recently and still down (for `restart`).
    LastCrashed,
    /// The node paused most recently and still paused (for `resume`).
    LastPaused,
    /// Redis shard `index` (0-based; `s1` in files).
    Shard(usize),
}

/// A fault or operation at an exact simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at_ns: Nanos,
    pub action: Action,
    /// 1-based line in the source file, 0 if generated.
    pub line: usize,
}

/// What a timeline step does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Crash(Target),
    Restart(Target),
    Pause(Target),
    Resume(Target),
    /// Places in different groups cannot talk, both ways. Places are nodes
    /// `0..n` and then Redis shards `n..n+shards`. Places in no group form one
    /// more group of their own. Adds to any partition in force; only `Heal`
    /// restores links.
    Partition(Vec<Vec<usize>>),
    /// Messages from any of `from` to any of `to` (places, as in
    /// `Partition`) are dropped (one way).
    PartitionOneWay {
        from: Vec<usize>,
        to: Vec<usize>,
    },
    /// Remove every partition.
    Heal,
    /// Change link behaviour: all links if `link` is None, else one direction
    /// (or both when `both_ways`).
    Network {
        link: Option<(usize, usize)>,
        both_ways: bool,
        config: LinkConfig,
    },
    /// Set a node's clock offset and/or drift, or step it (negative = back).
    Clock {
        node: usize,
        offset_ns: Option<i64>,
        drift_ppm: Option<i64>,
        step_ns: Option<i64>,
    },
    /// Ask the cluster to add shard `index` to the queue's ring.
    AddShard(u32),
    /// Ask the cluster to take shard `index` out of the queue's ring.
    RemoveShard(u32),
    /// One scripted cache operation at a node.
    Cache {
        node: usize,
        op: CacheOp,
    },
    /// One scripted client operation sent to `node` (or the current leader).
    Client {
        client: usize,
        node: Target,
        op: ClientOp,
    },
}

/// A key-value operation, on key index `key` (key names are `k{index}` or
/// interned names from the file, see `Scenario::key_names`).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOp {
    Get { key: u32 },
    Put { key: u32, value: u64 },
}

/// Liveness and convergence expectations checked at the end of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectations {
    /// A leader exists within this long of the run's start.
    pub leader_within_ns: Option<Nanos>,
    /// Within this long of the last fault step (any step but `client`), a
    /// leader able to reach a majority is in office or gets elected.
    pub leader_after_last_fault_ns: Option<Nanos>,
    /// Every acknowledged write is applied on every live node by the end.
    pub acked_writes_applied_everywhere: bool,
    /// At least this many client operations got a definite answer.
    pub min_completed_ops: u64,
    /// Client histories must be linearizable (on by default).
    pub linearizable: bool,
    /// Steps the general linearizability search may take per key (or per
    /// lock); a history it cannot decide within them is inconclusive.
    pub linearizability_steps: u64,
}

/// The default `[expect] linearizability_steps`.
pub const DEFAULT_LINEARIZABILITY_STEPS: u64 = 5_000_000;

impl Default for Expectations {
    /// Nothing expected (not even linearizability), with the default search budget.
    fn default() -> Self {
        Expectations {
            leader_within_ns: None,
            leader_after_last_fault_ns: None,
            acked_writes_applied_everywhere: false,
            min_completed_ops: 0,
            linearizable: false,
            linearizability_steps: DEFAULT_LINEARIZABILITY_STEPS,
        }
    }
}
