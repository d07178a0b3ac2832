//! What a Redis shard keeps across a crash, by its `appendfsync` setting.
//!
//! Modelled on Redis's append-only file: every successful write command is
//! appended with the time it ran; `always` fsyncs before the reply goes out,
//! `everysec` fsyncs once a second, and with persistence off nothing is
//! written at all. A crash keeps exactly the synced prefix, and recovery
//! replays it into an empty keyspace, each command at its original time so
//! relative expiries land where they did.

use super::resp::Resp;
use super::store::Store;

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
const READ_ONLY: &[&str] = &[
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

/// The append-only file of one shard.
#[derive(Clone, Debug)]
pub struct Aof {
    mode: Fsync,
    synced: Vec<(u64, Vec<Vec<u8>>)>,
    pending: Vec<(u64, Vec<Vec<u8>>)>,
    last_sync_ns: u64,
}

impl Aof {
    /// An empty file under `mode`.
    pub fn new(mode: Fsync) -> Self {
        Aof {
            mode,
            synced: Vec::new(),
            pending: Vec::new(),
            last_sync_ns: 0,
        }
    }

    /// Records a command that ran at `now_ns` and got `reply`; read-only
    /// commands and errors change nothing and are not logged.
    pub fn record(&mut self, now_ns: u64, args: &[Vec<u8>], reply: &Resp) {
        if self.mode == Fsync::Off || matches!(reply, Resp::Error(_)) {
            return;
        }
        let name = args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .unwrap_or_default();
        if READ_ONLY.contains(&name.as_str()) {
            return;
        }
        self.pending.push((now_ns, args.to_vec()));
        if self.mode == Fsync::Always {
            self.sync(now_ns);
        }
    }

    /// The once-a-second fsync of `everysec`; call it from the shard's timer.
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
        self.synced.append(&mut self.pending);
        self.last_sync_ns = now_ns;
    }

    /// A crash: whatever was not synced is gone.
    pub fn crash(&mut self) {
        self.pending.clear();
    }

    /// Commands written but not yet synced (what a crash now would lose).
    pub fn unsynced(&self) -> usize {
        self.pending.len()
    }

    /// The keyspace a restarted shard starts from.
    pub fn recover(&self) -> Store {
        let mut store = Store::default();
        for (at, args) in &self.synced {
            store.execute(*at, args);
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
