//! The stand-in's own commands against redis-server's: random sequences of
//! every command the stand-in implements, with wrong types, bad arguments
//! and transactions, sent to both, reply by reply, then the keyspaces.
//!
//! Real Redis reads its own clock, the stand-in is given one: each command
//! runs on the stand-in at the wall-clock time it is sent. Expiry is kept
//! clear of races that this cannot make exact: relative times are long (a
//! key never expires during a run), absolute times are far in the future or
//! the past, GT/LT compare only absolute deadlines, and TTL replies are
//! compared to within a second (PTTL: a tenth of one).

use std::time::{SystemTime, UNIX_EPOCH};

use super::keyspace;
use super::queue::Mismatch;
use super::server::Conn;
use crate::redis::{Connection, Resp, Store};
use crate::rng::{Purpose, Rng};

/// Two keys per type, named after it; a command mostly takes one of its
/// own type's, sometimes any (to meet the wrong type).
const KEYS: [&str; 8] = ["s0", "s1", "l0", "l1", "h0", "h1", "z0", "z1"];
/// List, hash and set elements: few, so they repeat.
const ELEMENTS: [&str; 4] = ["a", "b", "c", "\r\n\0\u{ff}"];
/// Integers and things that are nearly integers.
const INTEGERS: [&str; 17] = [
    "0",
    "-0",
    "007",
    "1e3",
    "1",
    "-1",
    "3",
    "-2",
    "10",
    "+1",
    " 1",
    "1.0",
    "x",
    "",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
];
/// Scores: every number here formats the same in Redis 7.0 (%.17g) and
/// 7.2 (shortest round trip), so replies compare byte for byte.
const SCORES: [&str; 13] = [
    "0", "1", "-1", "2.5", "-0.5", "1e3", "0x1p3", "inf", "-inf", "+inf", "-0", "100000", "0.25",
];
/// What a float parser must reject (or reads oddly).
const NOT_SCORES: [&str; 6] = ["nan", "abc", "", "1e", " 1", "1 "];
/// Range bounds of ZRANGEBYSCORE.
const BOUNDS: [&str; 10] = [
    "-inf", "+inf", "0", "(0", "1", "(2.5", "1e3", "(inf", "x", "((1",
];

/// The wall clock in ns since the unix epoch: what real Redis reads.
fn wall_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_nanos()).expect("ns since 1970 fit in u64")
}

/// What a run's replies were, so a test can tell it went past the errors.
#[derive(Debug, Default)]
pub struct Coverage {
    pub compared: usize,
    /// Distinct kinds of error reply (the message up to any quoted argument).
    pub errors: std::collections::BTreeSet<String>,
    /// Replies that were not errors, and of those non-empty arrays.
    pub successes: usize,
    pub arrays: usize,
    /// EXECs that ran their queue.
    pub transactions: usize,
}

/// Runs `steps` random commands for each seed on a fresh stand-in and a
/// flushed server, stopping at the first difference.
pub fn run(
    conn: &mut Conn,
    seeds: std::ops::Range<u64>,
    steps: usize,
) -> Result<Coverage, Mismatch> {
    let mut cov = Coverage::default();
    for seed in seeds {
        assert_eq!(
            conn.call(&["FLUSHALL", "SYNC"]),
            Resp::Simple(b"OK".to_vec())
        );
        let (mut store, mut client) = (Store::default(), Connection::default());
        let mut commands = Commands {
            rng: Rng::stream(seed, Purpose::Client, 1),
            // Absolute deadlines, in ms: about 30 years ahead, apart by days.
            future_ms: wall_ns() / 1_000_000 + 1_000_000_000_000,
            queued: None,
        };
        for step in 0..steps {
            let cmd = commands.next();
            let queued_before = commands.queued.clone();
            let want = client.handle(&mut store, wall_ns(), cmd.clone());
            let got = conn.call(&cmd);
            cov.count(&cmd, &got);
            if !same(&cmd, queued_before.as_deref(), &want, &got) {
                let what = format!(
                    "{}\n  stand-in:     {}\n  redis-server: {}",
                    show(&cmd),
                    show_reply(&want),
                    show_reply(&got)
                );
                return Err(Mismatch { seed, step, what });
            }
            commands.track(&cmd, &got);
        }
        if commands.queued.is_some() {
            conn.call(&["DISCARD"]);
        }
        let diff = keyspace::diff(
            &keyspace::of_store(&store, wall_ns()),
            &keyspace::of_server(conn),
        );
        if !diff.is_empty() {
            let what = format!("the keyspaces differ:\n  {}", diff.join("\n  "));
            return Err(Mismatch {
                seed,
                step: steps,
                what,
            });
        }
    }
    Ok(cov)
}

impl Coverage {
    fn count(&mut self, cmd: &[Vec<u8>], reply: &Resp) {
        self.compared += 1;
        match reply {
            Resp::Error(e) => {
                // One kind per message, whatever argument it quotes.
                let kind = e.split(|&b| b == b'\'').next().unwrap_or_default();
                self.errors
                    .insert(String::from_utf8_lossy(kind).into_owned());
            }
            Resp::Array(Some(items)) if !items.is_empty() => {
                self.successes += 1;
                self.arrays += 1;
                self.transactions += usize::from(cmd[0].eq_ignore_ascii_case(b"EXEC"));
            }
            _ => self.successes += 1,
        }
    }
}

/// A command line for a report, each argument escaped.
fn show(cmd: &[Vec<u8>]) -> String {
    let args: Vec<String> = cmd
        .iter()
        .map(|a| format!("{:?}", a.escape_ascii().to_string()))
        .collect();
    args.join(" ")
}

/// A reply for a report, strings escaped.
fn show_reply(reply: &Resp) -> String {
    let text = |b: &[u8]| b.escape_ascii().to_string();
    match reply {
        Resp::Simple(s) => format!("+{}", text(s)),
        Resp::Error(e) => format!("-{}", text(e)),
        Resp::Integer(n) => format!(":{n}"),
        Resp::Bulk(None) | Resp::Array(None) => "nil".into(),
        Resp::Bulk(Some(b)) => format!("{:?}", text(b)),
        Resp::Array(Some(items)) => {
            let items: Vec<String> = items.iter().map(show_reply).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// Whether two replies to `cmd` agree, up to what is allowed to differ:
/// HGETALL's order, and TTLs counted from two slightly different clocks.
/// `queued` is what an EXEC runs.
fn same(cmd: &[Vec<u8>], queued: Option<&[Vec<Vec<u8>>]>, a: &Resp, b: &Resp) -> bool {
    let name = cmd[0].to_ascii_uppercase();
    match (name.as_slice(), a, b) {
        (b"HGETALL", Resp::Array(Some(x)), Resp::Array(Some(y))) => {
            sorted_pairs(x) == sorted_pairs(y)
        }
        (b"TTL", Resp::Integer(x), Resp::Integer(y)) if *x >= 0 && *y >= 0 => x.abs_diff(*y) <= 1,
        (b"PTTL", Resp::Integer(x), Resp::Integer(y)) if *x >= 0 && *y >= 0 => {
            x.abs_diff(*y) <= 100
        }
        (b"EXEC", Resp::Array(Some(x)), Resp::Array(Some(y))) => {
            let queued = queued.unwrap_or_default();
            x.len() == y.len()
                && x.len() == queued.len()
                && queued
                    .iter()
                    .zip(x.iter().zip(y))
                    .all(|(c, (x, y))| same(c, None, x, y))
        }
        _ => a == b,
    }
}

fn sorted_pairs(flat: &[Resp]) -> Vec<(&Resp, &Resp)> {
    let mut pairs: Vec<_> = flat
        .chunks(2)
        .map(|p| (&p[0], p.get(1).unwrap_or(&p[0])))
        .collect();
    pairs.sort_by_key(|(f, _)| format!("{f:?}"));
    pairs
}

/// A seed's random commands.
struct Commands {
    rng: Rng,
    future_ms: u64,
    /// The commands queued since MULTI, as the server accepted them.
    queued: Option<Vec<Vec<Vec<u8>>>>,
}

impl Commands {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.below(from.len() as u64) as usize]
    }

    /// A key for a command on `kind` (s, l, h or z).
    fn key(&mut self, kind: &str) -> String {
        if self.rng.chance(0.8) {
            format!("{kind}{}", self.rng.below(2))
        } else {
            self.pick(&KEYS).to_string()
        }
    }

    fn score(&mut self) -> &'static str {
        if self.rng.chance(0.05) {
            self.pick(&NOT_SCORES)
        } else {
            self.pick(&SCORES)
        }
    }

    /// An absolute time in ms: far ahead (distinct values days apart), or
    /// past; rarely one at the edge of what a deadline can hold.
    fn at_ms(&mut self) -> String {
        match self.rng.below(6) {
            0 => "1000".into(),
            4 => self
                .pick(&["-1", "9223372036854775807", "9223372036854775"])
                .into(),
            n => (self.future_ms + n * 100_000_000).to_string(),
        }
    }

    /// An expiry option of SET (or a bad one).
    fn set_option(&mut self, args: &mut Vec<String>) {
        match self.rng.below(10) {
            0 => args.push("NX".into()),
            1 => args.push("XX".into()),
            2 => args.push("GET".into()),
            3 => args.push("KEEPTTL".into()),
            4 => args.extend([
                "EX".into(),
                self.pick(&["100000", "0", "-5", "x", "9223372036854775807"])
                    .into(),
            ]),
            5 => args.extend(["px".into(), self.pick(&["200000000", "0", "1.5"]).into()]),
            6 => {
                let at = self.at_ms();
                // Seconds: the same instant, or nearly (past and edge values as they are).
                let at = match at.parse::<u64>() {
                    Ok(ms) if ms > 1_000_000 => (ms / 1000).to_string(),
                    _ => at,
                };
                args.extend(["EXAT".into(), at]);
            }
            7 => {
                let at = self.at_ms();
                args.extend(["PXAT".into(), at]);
            }
            8 => args.push("EX".into()),
            _ => args.push("BOGUS".into()),
        }
    }

    fn next(&mut self) -> Vec<Vec<u8>> {
        let n = self.rng.below(3) as usize;
        let op = self.rng.below(36);
        let kind = match op {
            0..4 => "s",
            4..12 => "l",
            12..18 => "h",
            18..24 => "z",
            _ => self.pick(&["s", "l", "h", "z"]),
        };
        let k = self.key(kind);
        let mut a: Vec<String>;
        match op {
            0 => a = vec!["GET".into(), k],
            1 => {
                a = vec!["SET".into(), k, self.pick(&INTEGERS).into()];
                for _ in 0..self.rng.below(3) {
                    self.set_option(&mut a);
                }
            }
            2 => a = vec!["INCR".into(), k],
            3 => a = vec!["INCRBY".into(), k, self.pick(&INTEGERS).into()],
            4 | 5 => {
                let name = if self.rng.chance(0.5) {
                    "LPUSH"
                } else {
                    "rpush"
                };
                a = vec![name.into(), k];
                for _ in 0..=n {
                    a.push(self.pick(&ELEMENTS).into());
                }
            }
            6 | 7 => {
                a = vec![self.pick(&["LPOP", "RPOP"]).into(), k];
                if self.rng.chance(0.5) {
                    a.push(self.pick(&["0", "1", "3", "-1", "x"]).into());
                }
            }
            8 => {
                let to = self.key("l");
                let (from_side, to_side) = (
                    self.pick(&["LEFT", "right", "UP"]),
                    self.pick(&["LEFT", "RIGHT"]),
                );
                a = vec!["LMOVE".into(), k, to, from_side.into(), to_side.into()];
            }
            9 => {
                let range = ["0", "-1", "1", "-2", "5", "-100", "x"];
                a = vec![
                    "LRANGE".into(),
                    k,
                    self.pick(&range).into(),
                    self.pick(&range).into(),
                ];
            }
            10 => a = vec!["LLEN".into(), k],
            11 => {
                let count = self.pick(&["0", "1", "-1", "2", "x"]);
                a = vec!["LREM".into(), k, count.into(), self.pick(&ELEMENTS).into()];
            }
            12 | 13 => {
                a = vec!["HSET".into(), k];
                for _ in 0..=n {
                    a.push(self.pick(&ELEMENTS).into());
                    a.push(self.pick(&INTEGERS).into());
                }
                if self.rng.chance(0.1) {
                    a.pop();
                }
            }
            14 => a = vec!["HGET".into(), k, self.pick(&ELEMENTS).into()],
            15 => {
                a = vec!["HDEL".into(), k];
                for _ in 0..=n {
                    a.push(self.pick(&ELEMENTS).into());
                }
            }
            16 => a = vec!["HGETALL".into(), k],
            17 => {
                a = vec![
                    "HINCRBY".into(),
                    k,
                    self.pick(&ELEMENTS).into(),
                    self.pick(&INTEGERS).into(),
                ]
            }
            18 | 19 => {
                a = vec!["ZADD".into(), k];
                for _ in 0..self.rng.below(3) {
                    a.push(
                        self.pick(&["NX", "XX", "GT", "LT", "CH", "INCR", "ch"])
                            .into(),
                    );
                }
                for _ in 0..=n {
                    a.push(self.score().into());
                    a.push(self.pick(&ELEMENTS).into());
                }
                if self.rng.chance(0.1) {
                    a.pop();
                }
            }
            20 => {
                a = vec!["ZREM".into(), k];
                for _ in 0..=n {
                    a.push(self.pick(&ELEMENTS).into());
                }
            }
            21 | 22 => {
                a = vec![
                    "ZRANGEBYSCORE".into(),
                    k,
                    self.pick(&BOUNDS).into(),
                    self.pick(&BOUNDS).into(),
                ];
                if self.rng.chance(0.5) {
                    a.push("WITHSCORES".into());
                }
                if self.rng.chance(0.3) {
                    let limit = ["0", "1", "-1", "2", "x"];
                    a.extend([
                        "LIMIT".into(),
                        self.pick(&limit).into(),
                        self.pick(&limit).into(),
                    ]);
                }
                if self.rng.chance(0.05) {
                    a.push("LIMIT".into());
                }
            }
            23 => a = vec!["ZSCORE".into(), k, self.pick(&ELEMENTS).into()],
            24 => {
                // Relative expiry: long, or at once; NX/XX only (GT/LT on two
                // relative deadlines would race the two clocks).
                let (name, amount) = match self.rng.below(2) {
                    0 => (
                        "EXPIRE",
                        self.pick(&["100000", "200000", "0", "-1", "x", "9223372036854775807"]),
                    ),
                    _ => (
                        "PEXPIRE",
                        self.pick(&["150000000", "250000000", "-5", "9223372036854775807"]),
                    ),
                };
                a = vec![name.into(), k, amount.into()];
                if self.rng.chance(0.4) {
                    a.push(self.pick(&["NX", "XX", "BAD"]).into());
                }
            }
            25 => {
                a = vec!["PEXPIREAT".into(), k, self.at_ms()];
                for _ in 0..self.rng.below(3) {
                    a.push(self.pick(&["NX", "XX", "GT", "LT", "gt"]).into());
                }
            }
            26 => a = vec![self.pick(&["TTL", "PTTL"]).into(), k],
            27 => {
                a = vec![self.pick(&["DEL", "EXISTS"]).into(), k];
                for _ in 0..n {
                    a.push(self.pick(&KEYS).into());
                }
            }
            28 => a = vec![self.pick(&["MULTI", "EXEC", "DISCARD"]).into()],
            29 => {
                a = vec![
                    if self.queued.is_some() {
                        "EXEC"
                    } else {
                        "MULTI"
                    }
                    .into(),
                ]
            }
            30 => {
                // Wrong arity, for each kind of command.
                let name = self.pick(&[
                    "GET", "set", "LRANGE", "HSET", "ZADD", "EXEC", "MULTI", "EXPIRE",
                ]);
                a = vec![name.into()];
                if name == "EXEC" || name == "MULTI" {
                    a.push(k);
                }
            }
            31 => {
                a = vec!["NOSUCHCOMMAND".into(), k, "arg\r\n".into()];
                // Redis quotes arguments only up to 128 bytes in all.
                if self.rng.chance(0.3) {
                    a.push("y".repeat(self.rng.between(50, 200) as usize));
                }
            }
            32 => a = vec!["DEL".into(), k],
            33 => a = self.large(),
            _ => a = vec!["get".into(), k, "extra".into()],
        }
        a.into_iter().map(String::into_bytes).collect()
    }

    /// A list, hash or sorted set pushed past Redis's small encoding (128
    /// elements, 64-byte ones): what it stores and answers must not change.
    fn large(&mut self) -> Vec<String> {
        let long = "m".repeat(70);
        let n = if self.rng.chance(0.5) { 130 } else { 3 };
        let member = |i: usize| {
            if i == 0 && n == 3 {
                long.clone()
            } else {
                format!("m{i}")
            }
        };
        match self.rng.below(3) {
            0 => {
                let mut a = vec!["RPUSH".into(), self.key("l")];
                a.extend((0..n).map(member));
                a
            }
            1 => {
                let mut a = vec!["HSET".into(), self.key("h")];
                for i in 0..n {
                    a.extend([member(i), self.pick(&INTEGERS).into()]);
                }
                a
            }
            _ => {
                // No -0 here: the stand-in picks a new set's encoding from the
                // whole command, as Redis 7.2 does, where 7.0 fills a listpack
                // (storing -0 as 0) until it overflows (docs/queue.md).
                let scores: Vec<&str> = SCORES.iter().copied().filter(|s| *s != "-0").collect();
                let mut a = vec!["ZADD".into(), self.key("z")];
                for i in 0..n {
                    a.extend([self.pick(&scores).into(), member(i)]);
                }
                a
            }
        }
    }

    /// Follows MULTI/EXEC/DISCARD as the server answered them.
    fn track(&mut self, cmd: &[Vec<u8>], reply: &Resp) {
        let name = cmd[0].to_ascii_uppercase();
        match (name.as_slice(), reply) {
            (b"MULTI", Resp::Simple(_)) => self.queued = Some(Vec::new()),
            (b"EXEC" | b"DISCARD", _) => self.queued = None,
            (_, Resp::Simple(s)) if s == b"QUEUED" => {
                self.queued.get_or_insert_with(Vec::new).push(cmd.to_vec());
            }
            _ => {}
        }
    }
}
