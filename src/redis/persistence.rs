//! What a Redis shard keeps across a crash, by its `appendfsync` setting.
//!
//! Modelled on Redis's append-only file: every successful write command is
//! appended with the time it ran; `always` fsyncs before the reply goes out,
//! `everysec` fsyncs once a second, and with persistence off nothing is
//! written at all. A crash keeps exactly the synced prefix, and recovery
//! replays it into an empty keyspace, each command at its original time so
//! relative expiries land where they did.
//!
//! The file is one byte buffer: per command its time, its argument count and
//! each argument with its length, so a command costs its bytes and a few
//! more, not an allocation per argument. Like Redis with
//! `auto-aof-rewrite-percentage 100`, the file is rewritten when it has
//! doubled since the last rewrite and is at least `auto-aof-rewrite-min-size`:
//! the commands that rebuild the keyspace replace the log that built it.
//! The rewrite takes time (10 ms, plus writing the new file at 100 MiB/s);
//! until it completes the old file stays authoritative and keeps growing,
//! and a crash throws the half-written new file away. Writes made during the
//! rewrite end up in both: at completion the new file is the keyspace as it
//! was when the rewrite began, followed by every command the old file got
//! since, with the same split between synced and not yet synced. A rewrite
//! therefore never changes what a crash keeps, only how much memory the
//! file takes.

use super::resp::Resp;
use super::store::{Ran, Store};

/// Redis's persistence choices (redis.conf `appendonly` / `appendfsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// No persistence: a crash loses the whole keyspace.
    Off,
    /// `appendfsync always`: a write is durable before it is acknowledged.
    Always,
    /// `appendfsync everysec`: up to about a second of writes can be lost.
    EverySec,
}

/// Commands that never change the keyspace; everything else that
/// succeeds is logged.
pub(super) const READ_ONLY: &[&str] = &[
    "get",
    "lrange",
    "llen",
    "hget",
    "hgetall",
    "zrangebyscore",
    "zscore",
    "exists",
    "ttl",
    "pttl",
];

const SECOND_NS: u64 = 1_000_000_000;

/// `auto-aof-rewrite-percentage`: rewrite once the file has grown by this
/// many percent over its size after the last rewrite (Redis's default).
pub const AUTO_AOF_REWRITE_PERCENTAGE: usize = 100;

/// `auto-aof-rewrite-min-size`: never rewrite a smaller file. Redis's
/// default is 64 MB; a simulated shard's keyspace is small, so 1 MiB.
pub const AUTO_AOF_REWRITE_MIN_SIZE: usize = 1 << 20;

/// How long a rewrite takes: a fixed cost (fork, fsync and rename of the
/// new file) plus writing the new file at `REWRITE_BYTES_PER_S`.
const REWRITE_FIXED_NS: u64 = 10_000_000;
const REWRITE_BYTES_PER_S: u64 = 100 << 20;

/// A rewrite in progress (Redis's forked child writing the new file).
#[derive(Clone, Debug)]
struct Rewrite {
    /// The keyspace as it was when the rewrite began, as commands.
    base: Vec<u8>,
    /// Where the old file ended then: what it got since goes after `base`.
    from: usize,
    /// When the new file is written.
    done_ns: u64,
}

/// The append-only file of one shard.
#[derive(Clone, Debug)]
pub struct Aof {
    mode: Fsync,
    /// Every command, encoded: synced up to `synced`, then not yet fsynced.
    log: Vec<u8>,
    synced: usize,
    /// Commands written but not yet fsynced.
    pending: usize,
    /// The file's size after the last rewrite (0: never rewritten).
    base_size: usize,
    min_size: usize,
    rewrite: Option<Rewrite>,
    /// The last finished rewrite's buffer, emptied, kept for the next one.
    spare: Vec<u8>,
    rewrites: u64,
    last_sync_ns: u64,
}

/// Appends one command, stamped `at_ns`, to an encoded log.
fn encode<A: AsRef<[u8]>>(log: &mut Vec<u8>, at_ns: u64, args: &[A]) {
    log.extend_from_slice(&at_ns.to_le_bytes());
    log.extend_from_slice(&(args.len() as u32).to_le_bytes());
    for a in args {
        let a = a.as_ref();
        log.extend_from_slice(&(a.len() as u32).to_le_bytes());
        log.extend_from_slice(a);
    }
}

/// The commands of an encoded log, in order, with their times.
fn decode(mut log: &[u8]) -> impl Iterator<Item = (u64, Vec<Vec<u8>>)> + '_ {
    fn take<'a>(log: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, tail) = log.split_at(n);
        *log = tail;
        head
    }
    fn word(log: &mut &[u8]) -> usize {
        let b = take(log, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }
    std::iter::from_fn(move || {
        if log.is_empty() {
            return None;
        }
        let at = u64::from_le_bytes(take(&mut log, 8).try_into().unwrap_or([0; 8]));
        let argc = word(&mut log);
        let args = (0..argc)
            .map(|_| {
                let n = word(&mut log);
                take(&mut log, n).to_vec()
            })
            .collect();
        Some((at, args))
    })
}

impl Aof {
    /// An empty file under `mode`, rewritten at Redis's growth rule from
    /// `AUTO_AOF_REWRITE_MIN_SIZE` on.
    pub fn new(mode: Fsync) -> Self {
        Aof::with_rewrite_min_size(mode, AUTO_AOF_REWRITE_MIN_SIZE)
    }

    /// An empty file under `mode` whose rewrites start at `min_size` bytes.
    pub fn with_rewrite_min_size(mode: Fsync, min_size: usize) -> Self {
        Aof {
            mode,
            log: Vec::new(),
            synced: 0,
            pending: 0,
            base_size: 0,
            min_size,
            rewrite: None,
            spare: Vec::new(),
            rewrites: 0,
            last_sync_ns: 0,
        }
    }

    /// Records a command that ran at `now_ns` and got `reply`; read-only
    /// commands and errors change nothing and are not logged.
    pub fn record(&mut self, now_ns: u64, args: &[impl AsRef<[u8]>], reply: &Resp) {
        self.record_outcome(now_ns, args, !matches!(reply, Resp::Error(_)));
    }

    /// As `record`, for a command whose reply was an error unless `ok`.
    pub fn record_outcome(&mut self, now_ns: u64, args: &[impl AsRef<[u8]>], ok: bool) {
        if self.mode == Fsync::Off || !ok {
            return;
        }
        let name = args.first().map_or(&[][..], AsRef::as_ref);
        if READ_ONLY
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
        {
            return;
        }
        self.append(now_ns, args);
    }

    /// As `record_outcome`, for a command the store ran and said so
    /// (`Store::call_named`): whether it is read-only is known already.
    pub fn record_ran(&mut self, now_ns: u64, ran: Ran, args: &[&[u8]], ok: bool) {
        if self.mode == Fsync::Off || !ok || ran.read_only {
            return;
        }
        self.append(now_ns, args);
    }

    fn append(&mut self, now_ns: u64, args: &[impl AsRef<[u8]>]) {
        encode(&mut self.log, now_ns, args);
        self.pending += 1;
        if self.mode == Fsync::Always {
            self.sync(now_ns);
        }
    }

    /// The once-a-second fsync of `everysec`, if a second has passed since
    /// the previous fsync, whatever caused that one.
    pub fn tick(&mut self, now_ns: u64) {
        if self.mode == Fsync::EverySec && now_ns.saturating_sub(self.last_sync_ns) >= SECOND_NS {
            self.sync(now_ns);
        }
    }

    /// Fsyncs now, whatever the schedule: what `WAITAOF 1 0 0` waits for
    /// (Redis 7.2). Nothing to sync with persistence off.
    pub fn sync_now(&mut self, now_ns: u64) {
        if self.mode != Fsync::Off {
            self.sync(now_ns);
        }
    }

    fn sync(&mut self, now_ns: u64) {
        self.synced = self.log.len();
        self.pending = 0;
        self.last_sync_ns = now_ns;
    }

    /// Between calls, with `store` the keyspace the file has built:
    /// completes a rewrite whose new file is written, and starts one when
    /// none is running, the file has grown `AUTO_AOF_REWRITE_PERCENTAGE`
    /// past its size after the last rewrite, is at least the minimum size,
    /// and everything written is synced (so `store` is exactly what the
    /// synced file rebuilds).
    pub fn maybe_rewrite(&mut self, now_ns: u64, store: &Store) {
        if self.mode == Fsync::Off {
            return;
        }
        if let Some(r) = self.rewrite.take_if(|r| now_ns >= r.done_ns) {
            // The new file takes the old one's place in the old one's buffer:
            // the file grows back to about this size before the next rewrite,
            // and a fresh buffer would be grown again (copied at each doubling,
            // its pages faulted in anew) every time.
            let (base, from) = (r.base, r.from);
            let tail = self.log.len() - from;
            if base.len() <= from {
                self.log.copy_within(from.., base.len());
                self.log[..base.len()].copy_from_slice(&base);
                self.log.truncate(base.len() + tail);
            } else {
                self.log.splice(..from, base.iter().copied());
            }
            self.synced = base.len() + (self.synced - from);
            self.base_size = self.log.len();
            self.spare = base;
            self.rewrites += 1;
        }
        let size = self.log.len();
        let grown = size.saturating_sub(self.base_size.max(1)) * 100 / self.base_size.max(1);
        if self.rewrite.is_some()
            || self.pending > 0
            || size < self.min_size
            || grown < AUTO_AOF_REWRITE_PERCENTAGE
        {
            return;
        }
        let mut base = std::mem::take(&mut self.spare);
        base.clear();
        // Each command carries time 0: none of them depends on when it
        // runs, and deadlines are absolute, so replay at any time is exact.
        store.rewrite_commands(now_ns, |args| encode(&mut base, 0, args));
        let writing = (base.len() as u64).saturating_mul(SECOND_NS) / REWRITE_BYTES_PER_S;
        self.rewrite = Some(Rewrite {
            base,
            from: size,
            done_ns: now_ns + REWRITE_FIXED_NS + writing,
        });
    }

    /// A crash: whatever was not synced is gone, and so is a rewrite in
    /// progress (the old file is the one that counts until a rewrite ends).
    pub fn crash(&mut self) {
        self.log.truncate(self.synced);
        self.pending = 0;
        if let Some(r) = self.rewrite.take() {
            self.spare = r.base;
        }
    }

    /// Commands written but not yet synced (what a crash now would lose).
    pub fn unsynced(&self) -> usize {
        self.pending
    }

    /// The file's size in bytes.
    pub fn size(&self) -> usize {
        self.log.len()
    }

    /// Bytes held: the file, and a running rewrite's new file.
    pub fn retained_bytes(&self) -> u64 {
        (self.log.len() + self.rewrite.as_ref().map_or(0, |r| r.base.len())) as u64
    }

    /// Rewrites completed, and whether one is running.
    pub fn rewrites(&self) -> (u64, bool) {
        (self.rewrites, self.rewrite.is_some())
    }

    /// Every command in the file with its time, synced or not.
    #[cfg(test)]
    pub(crate) fn commands(&self) -> impl Iterator<Item = (u64, Vec<Vec<u8>>)> + '_ {
        decode(&self.log)
    }

    /// The keyspace a restarted shard starts from.
    pub fn recover(&self) -> Store {
        let mut store = Store::default();
        for (at, args) in decode(&self.log[..self.synced]) {
            store.execute(at, &args);
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    /// Runs `commands` (one every 100 ms) on a shard, then crashes it.
    fn run_then_crash(mode: Fsync, commands: &[&str]) -> (Store, Store) {
        let (mut store, mut aof) = (Store::default(), Aof::new(mode));
        for (i, c) in commands.iter().enumerate() {
            let now = (i as u64 + 1) * 100_000_000;
            aof.tick(now);
            let args = cmd(c);
            let reply = store.execute(now, &args);
            aof.record(now, &args, &reply);
        }
        aof.crash();
        (store, aof.recover())
    }

    const WRITES: [&str; 14] = [
        "RPUSH q a",
        "RPUSH q b",
        "SET k 1",
        "INCR k",
        "HSET h f v",
        "ZADD z 1 m",
        "LPOP q",
        "RPUSH q c",
        "SET t x PX 50000",
        "DEL k",
        "GET t",
        "RPUSH q d",
        "HDEL h f",
        "LPUSH q z",
    ];

    #[test]
    fn always_loses_nothing() {
        let (live, recovered) = run_then_crash(Fsync::Always, &WRITES);
        assert_eq!(live, recovered);
    }

    #[test]
    fn everysec_loses_only_the_last_second() {
        let (live, recovered) = run_then_crash(Fsync::EverySec, &WRITES);
        assert_ne!(live, recovered, "the writes after the last fsync are gone");
        // Synced at 1.0 s: the first nine commands (0.1 s .. 0.9 s) survive.
        let (at_sync, _) = run_then_crash(Fsync::Always, &WRITES[..9]);
        assert_eq!(recovered, at_sync);
    }

    #[test]
    fn no_persistence_loses_everything() {
        let (_, recovered) = run_then_crash(Fsync::Off, &WRITES);
        assert_eq!(recovered, Store::default());
    }

    /// A keyspace of every type, with deadlines, awkward scores and
    /// aggregates longer than one rewrite command carries.
    fn busy_store(now: u64) -> Store {
        let mut store = Store::default();
        let mut run = |c: String| {
            let args: Vec<Vec<u8>> = c.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            assert!(!matches!(store.execute(now, &args), Resp::Error(_)), "{c}");
        };
        for i in 0..150 {
            run(format!("RPUSH list item{i}"));
            run(format!("HSET hash f{i} v{i}"));
            run(format!("ZADD zset {}.25 m{i}", i as i64 - 70));
        }
        for (score, member) in [
            ("-0", "negzero"),
            ("0.1", "tenth"),
            ("1e300", "huge"),
            ("5e-324", "tiny"),
            ("-inf", "lo"),
            ("+inf", "hi"),
            ("4500000000", "big"),
        ] {
            run(format!("ZADD odd {score} {member}"));
        }
        run("SET plain value".into());
        run("SET soon x PX 1500".into());
        run("SET gone x PX 1".into());
        run("RPUSH ttl-list a b".into());
        run("PEXPIRE ttl-list 2500".into());
        store
    }

    /// Replays a rewrite of `store` taken at `now` into an empty keyspace.
    fn rebuilt(store: &Store, now: u64) -> Store {
        let mut log = Vec::new();
        store.rewrite_commands(now, |args| encode(&mut log, 0, args));
        let mut fresh = Store::default();
        for (at, args) in decode(&log) {
            let reply = fresh.execute(at, &args);
            assert!(!matches!(reply, Resp::Error(_)), "{args:?}: {reply:?}");
            assert!(args.len() <= 2 + 2 * 64, "at most 64 elements a command");
        }
        fresh
    }

    #[test]
    fn a_rewrite_rebuilds_the_keyspace_deadlines_and_scores_included() {
        let t0 = 10 * SECOND_NS;
        let mut live = busy_store(t0);
        let at = t0 + 5_000_000;
        let mut again = rebuilt(&live, at);
        // Expired keys are left out; everything else comes back exactly,
        // and keeps its deadline: both sides agree at every later time.
        for later in [
            at,
            t0 + 1_500_000_000,
            t0 + 1_501_000_000,
            t0 + 3 * SECOND_NS,
        ] {
            live.expire_due(later);
            again.expire_due(later);
            assert_eq!(live, again, "at {later}");
        }
        let z = |s: &mut Store| s.execute(at, &cmd("ZSCORE odd negzero"));
        assert_eq!(z(&mut busy_store(t0)), z(&mut rebuilt(&busy_store(t0), at)));
    }

    /// Runs `n` queue-like writes (a push, and every other call a pop) with
    /// a rewrite check after each, as a shard does between calls.
    fn churn(aof: &mut Aof, store: &mut Store, from: u64, n: u64, ms: u64) -> u64 {
        let mut now = from;
        for i in 0..n {
            now += ms * 1_000_000;
            let mut call = vec![format!("RPUSH q {i:08}")];
            if i % 2 == 1 {
                call.push("LPOP q".into());
            }
            call.push(format!("HSET seen last {i}"));
            for c in call {
                let args = cmd(&c);
                let reply = store.execute(now, &args);
                aof.record(now, &args, &reply);
            }
            aof.tick(now);
            aof.maybe_rewrite(now, store);
        }
        now
    }

    #[test]
    fn rewrites_keep_the_file_near_the_keyspace_and_lose_nothing() {
        let (mut store, mut aof) = (
            Store::default(),
            Aof::with_rewrite_min_size(Fsync::Always, 4096),
        );
        let mut now = 0;
        let mut largest = 0;
        for _ in 0..20 {
            now = churn(&mut aof, &mut store, now, 200, 1);
            largest = largest.max(aof.size());
            assert_eq!(aof.recover(), store, "always: a crash keeps everything");
        }
        let (done, _) = aof.rewrites();
        assert!(done >= 5, "{done} rewrites");
        // 4,000 calls wrote about 200 kB; the file holds a few times the
        // keyspace (2,000 list items) instead.
        let mut keyspace = Vec::new();
        store.rewrite_commands(now, |args| encode(&mut keyspace, 0, args));
        assert!(
            largest < 4 * keyspace.len().max(4096),
            "{largest} vs {}",
            keyspace.len()
        );
        let mut crashed = aof.clone();
        crashed.crash();
        assert_eq!(crashed.recover(), store);
    }

    #[test]
    fn a_crash_during_a_rewrite_recovers_from_the_old_file() {
        let (mut store, mut aof) = (
            Store::default(),
            Aof::with_rewrite_min_size(Fsync::EverySec, 2048),
        );
        // Writes every 10 ms until a rewrite has begun.
        let mut now = 0;
        while !aof.rewrites().1 {
            now = churn(&mut aof, &mut store, now, 1, 10);
        }
        assert_eq!(aof.rewrites().0, 0);
        // More writes while it runs, some fsynced, the last not.
        let mut synced_store = store.clone();
        let before = aof.clone();
        for _ in 0..3 {
            now = churn(&mut aof, &mut store, now, 1, 1);
        }
        aof.sync_now(now);
        synced_store.clone_from(&store);
        now = churn(&mut aof, &mut store, now, 1, 1);
        assert!(aof.rewrites().1, "still running: the new file takes time");
        assert_eq!(aof.unsynced(), 2);
        // A crash now: the half-written file is dropped, the old one kept
        // everything synced, the writes during the rewrite included.
        let mut crashed = aof.clone();
        crashed.crash();
        assert_eq!(crashed.rewrites(), (0, false));
        assert_eq!(crashed.recover(), synced_store);
        // Without the crash the rewrite completes with the same content:
        // the writes made during it are in the new file too, synced or not
        // as they were.
        let mut done = aof.clone();
        done.maybe_rewrite(now + SECOND_NS, &store);
        assert_eq!(done.rewrites(), (1, false));
        assert!(
            done.size() < before.size(),
            "{} < {}",
            done.size(),
            before.size()
        );
        assert_eq!(done.unsynced(), 2);
        assert_eq!(done.recover(), synced_store);
        done.sync_now(now + SECOND_NS);
        assert_eq!(done.recover(), store);
    }

    #[test]
    fn errors_and_reads_are_not_logged() {
        let mut aof = Aof::new(Fsync::EverySec);
        aof.record(1, &cmd("GET k"), &Resp::Bulk(None));
        aof.record(
            2,
            &cmd("INCR s"),
            &Resp::Error("ERR value is not an integer or out of range".into()),
        );
        assert_eq!(aof.unsynced(), 0);
        aof.record(3, &cmd("SET k v"), &Resp::Simple("OK".into()));
        assert_eq!(aof.unsynced(), 1);
    }
}
