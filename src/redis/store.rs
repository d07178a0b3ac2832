//! The keyspace and its commands, replying exactly as Redis 7 does.
//!
//! Sans-IO and clock-free: each command gets the current time in
//! nanoseconds. Expiry follows Redis: a key is gone once `now > deadline`,
//! it is removed lazily when a command touches it, and `expire_due` is the
//! active sweep. TTLs are given in seconds or milliseconds as in Redis and
//! kept as nanosecond deadlines (saturating far in the future).
//!
//! Deliberate differences from redis-server (the queue code built on this
//! must not rely on them): HGETALL returns fields sorted by bytes (Redis
//! returns them in an encoding-dependent order); an empty command is an
//! error (Redis ignores it); MULTI/EXEC/DISCARD are only understood by
//! [`Connection`], and there is no WATCH. Scores are formatted as Redis 7.2+
//! formats them (see `format_double`), not as 7.0 did (`%.17g`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::resp::Resp;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const NS_PER_MS: i128 = 1_000_000;

/// A reply that aborts the command early.
type Reply = Result<Resp, Resp>;
/// A hash's fields and values.
type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

fn err(msg: &str) -> Resp {
    Resp::Error(msg.to_owned())
}

fn ok() -> Resp {
    Resp::Simple("OK".to_owned())
}

fn bulk(b: &[u8]) -> Resp {
    Resp::Bulk(Some(b.to_vec()))
}

fn int(n: usize) -> Resp {
    Resp::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A sorted-set score as an order-preserving bit pattern, so scores can be
/// `Eq` and `Ord` keys. NaN never gets here; -0.0 orders as 0.0 because
/// Redis compares scores numerically (the two are equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score(u64);

impl Score {
    fn new(x: f64) -> Score {
        let bits = if x == 0.0 { 0 } else { x.to_bits() };
        // Negative floats order backwards by raw bits: flip them all; flip
        // only the sign of positives so they sort above every negative.
        Score(if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        })
    }

    fn get(self) -> f64 {
        let k = self.0;
        f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
    }
}

/// Members with scores, indexed both ways; ordered by (score, member) as in Redis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ZSet {
    /// Each member's score as given (its f64 bits), so -0 reads back as -0.
    scores: BTreeMap<Vec<u8>, u64>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    fn insert(&mut self, member: &[u8], score: f64) {
        let s = Score::new(score);
        if let Some(old) = self.scores.insert(member.to_vec(), score.to_bits()) {
            self.order
                .remove(&(Score::new(f64::from_bits(old)), member.to_vec()));
        }
        self.order.insert((s, member.to_vec()));
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(old) => self
                .order
                .remove(&(Score::new(f64::from_bits(old)), member.to_vec())),
            None => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Hash(Fields),
    ZSet(ZSet),
}

impl Value {
    /// True for an aggregate with no elements, which Redis never keeps.
    fn is_empty_aggregate(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::ZSet(z) => z.scores.is_empty(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Value,
    /// Deadline in ns; the key is gone once `now > deadline`.
    expires_at: Option<u64>,
}

/// The keyspace of one Redis database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    keys: BTreeMap<Vec<u8>, Entry>,
}

/// The lowercase name of a known command and its Redis arity (negative: at least).
fn arity(name: &str) -> Option<i64> {
    Some(match name {
        "get" | "incr" | "llen" | "hgetall" | "ttl" | "pttl" => 2,
        "incrby" | "hget" | "zscore" => 3,
        "lrange" | "lrem" | "hincrby" => 4,
        "lmove" => 5,
        "set" | "lpush" | "rpush" | "hdel" | "zrem" | "expire" | "pexpire" => -3,
        "del" | "exists" | "lpop" | "rpop" => -2,
        "hset" | "zadd" | "zrangebyscore" => -4,
        "multi" | "exec" | "discard" => 1,
        _ => return None,
    })
}

/// Rejects what redis-server rejects before running a command (unknown
/// name, wrong argument count); returns the lowercase name otherwise.
pub(super) fn check_command(args: &[Vec<u8>]) -> Result<String, Resp> {
    let Some(first) = args.first() else {
        return Err(err("ERR empty command"));
    };
    let name = String::from_utf8_lossy(first).to_ascii_lowercase();
    let Some(a) = arity(&name) else {
        // Redis's `'%.*s' ` loop: arguments are added while the list is under
        // 128 bytes, each cut to the room left; `%s` also stops at a NUL.
        let c_str = |b: &[u8]| b.split(|&c| c == 0).next().unwrap_or(&[]).to_vec();
        let mut quoted = Vec::new();
        for arg in &args[1..] {
            if quoted.len() >= 128 {
                break;
            }
            let arg = c_str(arg);
            let room = 128 - quoted.len();
            quoted.push(b'\'');
            quoted.extend_from_slice(&arg[..arg.len().min(room)]);
            quoted.extend_from_slice(b"' ");
        }
        let shown = c_str(first);
        let shown = &shown[..shown.len().min(128)];
        // Non-UTF-8 bytes cannot be carried by `Resp::Error` and become U+FFFD.
        return Err(Resp::Error(format!(
            "ERR unknown command '{}', with args beginning with: {}",
            String::from_utf8_lossy(shown),
            String::from_utf8_lossy(&quoted)
        )));
    };
    let n = args.len() as i64;
    if (a > 0 && n != a) || (a < 0 && n < -a) {
        return Err(wrong_arity(&name));
    }
    Ok(name)
}

fn wrong_arity(name: &str) -> Resp {
    Resp::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Parses an integer as Redis's `string2ll`: no sign but `-`, no spaces,
/// no leading zeros.
fn parse_i64(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let ok = match digits {
        [b'0'] => b.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !ok {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn int_arg(b: &[u8]) -> Result<i64, Resp> {
    parse_i64(b).ok_or_else(|| err(NOT_INTEGER))
}

/// Parses a double as Redis's `string2d`: `strtod` syntax, NaN rejected.
fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let x: f64 = s.parse().ok()?;
    (!x.is_nan()).then_some(x)
}

/// Formats a double as Redis 7.2+ replies it (`fpconv_dtoa`): shortest
/// round-trip digits, laid out by its `emit_digits` rules: plain integers
/// up to 7 trailing zeros, plain decimals unless tiny, otherwise `1.5e-7` /
/// `1e+20` (no exponent padding). Redis gets its digits from Grisu2, which
/// on rare values is not shortest; this uses the truly shortest digits.
pub(super) fn format_double(x: f64) -> String {
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x.is_infinite() {
        return format!("{sign}inf");
    }
    if x == 0.0 {
        return format!("{sign}0");
    }
    // `{:e}` gives the shortest digits as d.ddde<E>; value = digits * 10^k.
    let sci = format!("{:e}", x.abs());
    let (mantissa, e) = sci.split_once('e').unwrap_or((&sci, "0"));
    let e: i64 = e.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i64;
    let k = e - (n - 1);
    let exp = e.abs();
    if k >= 0 && exp < n + 7 {
        return format!("{sign}{digits}{}", "0".repeat(k as usize));
    }
    if k < 0 && (k > -7 || exp < 4) {
        let offset = n + k;
        return if offset <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-offset) as usize))
        } else {
            let (int, frac) = digits.split_at(offset as usize);
            format!("{sign}{int}.{frac}")
        };
    }
    let (head, tail) = digits.split_at(1);
    let dot = if tail.is_empty() { "" } else { "." };
    let esign = if e < 0 { '-' } else { '+' };
    format!("{sign}{head}{dot}{tail}e{esign}{exp}")
}

/// A ZRANGEBYSCORE bound: the score and whether it is excluded.
fn parse_bound(b: &[u8]) -> Option<(f64, bool)> {
    match b.strip_prefix(b"(") {
        Some(rest) => parse_f64(rest).map(|x| (x, true)),
        None => parse_f64(b).map(|x| (x, false)),
    }
}

/// Turns a relative TTL or absolute unix time into a ns deadline, with
/// Redis's overflow checks (done in milliseconds, as Redis counts).
fn deadline(now_ns: u64, amount: i64, unit_ms: i64, absolute: bool) -> Option<u64> {
    let ms = i128::from(amount) * i128::from(unit_ms);
    let base = if absolute {
        0
    } else {
        i128::from(now_ns) / NS_PER_MS
    };
    let when = ms + base;
    if ms > i128::from(i64::MAX) || ms < i128::from(i64::MIN) || when > i128::from(i64::MAX) {
        return None;
    }
    // Keep the sub-millisecond part of `now` so a relative TTL is exact.
    let ns = if absolute {
        when * NS_PER_MS
    } else {
        i128::from(now_ns) + ms * NS_PER_MS
    };
    Some(ns.clamp(0, i128::from(u64::MAX)) as u64)
}

fn side(b: &[u8]) -> Result<bool, Resp> {
    if b.eq_ignore_ascii_case(b"left") {
        Ok(true)
    } else if b.eq_ignore_ascii_case(b"right") {
        Ok(false)
    } else {
        Err(err(SYNTAX))
    }
}

impl Store {
    /// Runs one command (`args[0]` is its name, any case) and returns Redis's reply.
    pub fn execute(&mut self, now_ns: u64, args: &[Vec<u8>]) -> Resp {
        let name = match check_command(args) {
            Ok(name) => name,
            Err(reply) => return reply,
        };
        let reply = self.dispatch(now_ns, &name, args).unwrap_or_else(|e| e);
        // Redis never keeps an empty list, hash or sorted set. Every key a
        // command touched is among its arguments, so checking those suffices.
        for arg in &args[1..] {
            if self
                .keys
                .get(arg)
                .is_some_and(|e| e.value.is_empty_aggregate())
            {
                self.keys.remove(arg);
            }
        }
        reply
    }

    /// Removes every key whose deadline has passed (Redis's active expiry).
    pub fn expire_due(&mut self, now_ns: u64) {
        self.keys
            .retain(|_, e| e.expires_at.is_none_or(|d| now_ns <= d));
    }

    fn dispatch(&mut self, now: u64, name: &str, a: &[Vec<u8>]) -> Reply {
        match name {
            "get" => self.get(now, &a[1]),
            "set" => self.set(now, a),
            "del" => Ok(int(a[1..].iter().filter(|k| self.del(now, k)).count())),
            "exists" => Ok(int(a[1..]
                .iter()
                .filter(|k| self.live(now, k).is_some())
                .count())),
            "incr" => self.incr_by(now, &a[1], 1),
            "incrby" => self.incr_by(now, &a[1], int_arg(&a[2])?),
            "lpush" | "rpush" => self.push(now, name == "lpush", a),
            "lpop" | "rpop" => self.pop(now, name == "lpop", a),
            "lmove" => self.lmove(now, a),
            "lrange" => self.lrange(now, a),
            "llen" => Ok(int(self.list(now, &a[1])?.map_or(0, |l| l.len()))),
            "lrem" => self.lrem(now, a),
            "hset" => self.hset(now, a),
            "hget" => Ok(Resp::Bulk(
                self.hash(now, &a[1])?.and_then(|h| h.get(&a[2]).cloned()),
            )),
            "hdel" => {
                let Some(h) = self.hash(now, &a[1])? else {
                    return Ok(Resp::Integer(0));
                };
                Ok(int(a[2..]
                    .iter()
                    .filter(|f| h.remove(*f).is_some())
                    .count()))
            }
            "hgetall" => {
                let h = self.hash(now, &a[1])?;
                let flat = h
                    .into_iter()
                    .flatten()
                    .flat_map(|(f, v)| [bulk(f), bulk(v)]);
                Ok(Resp::Array(Some(flat.collect())))
            }
            "hincrby" => self.hincrby(now, a),
            "zadd" => self.zadd(now, a),
            "zrem" => {
                let Some(z) = self.zset(now, &a[1])? else {
                    return Ok(Resp::Integer(0));
                };
                Ok(int(a[2..].iter().filter(|m| z.remove(m)).count()))
            }
            "zrangebyscore" => self.zrangebyscore(now, a),
            "zscore" => Ok(Resp::Bulk(
                self.zset(now, &a[1])?
                    .and_then(|z| z.scores.get(&a[2]))
                    .map(|&b| format_double(f64::from_bits(b)).into_bytes()),
            )),
            "expire" => self.expire(now, a, 1000, "expire"),
            "pexpire" => self.expire(now, a, 1, "pexpire"),
            "ttl" | "pttl" => Ok(Resp::Integer(self.ttl(now, &a[1], name == "pttl"))),
            // Transactions belong to a connection, not to the keyspace.
            _ => Err(Resp::Error(format!(
                "ERR {} is only supported through a Connection",
                name.to_uppercase()
            ))),
        }
    }

    /// The live entry at `key`, removing it first if it has expired.
    fn live(&mut self, now: u64, key: &[u8]) -> Option<&mut Entry> {
        if self
            .keys
            .get(key)
            .is_some_and(|e| e.expires_at.is_some_and(|d| now > d))
        {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn del(&mut self, now: u64, key: &[u8]) -> bool {
        self.live(now, key).is_some() && self.keys.remove(key).is_some()
    }

    fn string(&mut self, now: u64, key: &[u8]) -> Result<Option<&mut Vec<u8>>, Resp> {
        match self.live(now, key).map(|e| &mut e.value) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    fn list(&mut self, now: u64, key: &[u8]) -> Result<Option<&mut VecDeque<Vec<u8>>>, Resp> {
        match self.live(now, key).map(|e| &mut e.value) {
            None => Ok(None),
            Some(Value::List(l)) => Ok(Some(l)),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    fn hash(&mut self, now: u64, key: &[u8]) -> Result<Option<&mut Fields>, Resp> {
        match self.live(now, key).map(|e| &mut e.value) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    fn zset(&mut self, now: u64, key: &[u8]) -> Result<Option<&mut ZSet>, Resp> {
        match self.live(now, key).map(|e| &mut e.value) {
            None => Ok(None),
            Some(Value::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    /// The live value at `key`, creating `empty` there if the key is missing.
    /// An aggregate left empty is removed again by `execute`.
    fn value_or(&mut self, now: u64, key: &[u8], empty: Value) -> &mut Value {
        self.live(now, key);
        let entry = self.keys.entry(key.to_vec()).or_insert(Entry {
            value: empty,
            expires_at: None,
        });
        &mut entry.value
    }

    fn get(&mut self, now: u64, key: &[u8]) -> Reply {
        Ok(Resp::Bulk(self.string(now, key)?.map(|s| s.clone())))
    }

    fn set(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
        // (amount, unit in ms, absolute)
        let mut expire: Option<(&[u8], i64, bool)> = None;
        let mut i = 3;
        while i < a.len() {
            let opt = a[i].to_ascii_uppercase();
            let next = a.get(i + 1);
            match (opt.as_slice(), next) {
                (b"NX", _) if !xx => nx = true,
                (b"XX", _) if !nx => xx = true,
                (b"GET", _) => get = true,
                (b"KEEPTTL", _) if expire.is_none() => keep_ttl = true,
                (b"EX" | b"PX" | b"EXAT" | b"PXAT", Some(v)) if expire.is_none() && !keep_ttl => {
                    let unit = if opt.starts_with(b"E") { 1000 } else { 1 };
                    expire = Some((v, unit, opt.ends_with(b"AT")));
                    i += 1;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 1;
        }
        let deadline = match expire {
            None => None,
            Some((v, unit, absolute)) => {
                let amount = int_arg(v)?;
                let bad = || err("ERR invalid expire time in 'set' command");
                if amount <= 0 {
                    return Err(bad());
                }
                Some(deadline(now, amount, unit, absolute).ok_or_else(bad)?)
            }
        };
        let old = if get {
            Some(self.string(now, &a[1])?.map(|s| s.clone()))
        } else {
            None
        };
        let exists = self.live(now, &a[1]).is_some();
        if (nx && exists) || (xx && !exists) {
            return Ok(Resp::Bulk(old.flatten()));
        }
        let kept = self.live(now, &a[1]).and_then(|e| e.expires_at);
        let expires_at = if keep_ttl { kept } else { deadline };
        let entry = Entry {
            value: Value::Str(a[2].clone()),
            expires_at,
        };
        self.keys.insert(a[1].clone(), entry);
        Ok(old.map_or_else(ok, Resp::Bulk))
    }

    fn incr_by(&mut self, now: u64, key: &[u8], by: i64) -> Reply {
        let Value::Str(s) = self.value_or(now, key, Value::Str(b"0".to_vec())) else {
            return Err(err(WRONGTYPE));
        };
        let n = parse_i64(s).ok_or_else(|| err(NOT_INTEGER))?;
        let n = n.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
        *s = n.to_string().into_bytes();
        Ok(Resp::Integer(n))
    }

    fn push(&mut self, now: u64, left: bool, a: &[Vec<u8>]) -> Reply {
        let Value::List(l) = self.value_or(now, &a[1], Value::List(VecDeque::new())) else {
            return Err(err(WRONGTYPE));
        };
        for v in &a[2..] {
            if left {
                l.push_front(v.clone());
            } else {
                l.push_back(v.clone());
            }
        }
        Ok(int(l.len()))
    }

    fn pop(&mut self, now: u64, left: bool, a: &[Vec<u8>]) -> Reply {
        if a.len() > 3 {
            return Err(wrong_arity(if left { "lpop" } else { "rpop" }));
        }
        let count = match a.get(2) {
            None => None,
            Some(c) => {
                let c = int_arg(c)?;
                if c < 0 {
                    return Err(err("ERR value is out of range, must be positive"));
                }
                Some(c as usize)
            }
        };
        let Some(l) = self.list(now, &a[1])? else {
            return Ok(match count {
                None => Resp::Bulk(None),
                Some(_) => Resp::Array(None),
            });
        };
        let mut take = || if left { l.pop_front() } else { l.pop_back() };
        match count {
            None => Ok(Resp::Bulk(take())),
            Some(c) => {
                let items = (0..c).map_while(|_| take()).map(|v| Resp::Bulk(Some(v)));
                Ok(Resp::Array(Some(items.collect())))
            }
        }
    }

    fn lmove(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let (from_left, to_left) = (side(&a[3])?, side(&a[4])?);
        if self.list(now, &a[1])?.is_none() {
            return Ok(Resp::Bulk(None));
        }
        // Redis checks the destination's type before popping anything.
        self.list(now, &a[2])?;
        let Some(src) = self.list(now, &a[1])? else {
            return Ok(Resp::Bulk(None));
        };
        let v = if from_left {
            src.pop_front()
        } else {
            src.pop_back()
        };
        let Some(v) = v else {
            return Ok(Resp::Bulk(None));
        };
        let Value::List(dst) = self.value_or(now, &a[2], Value::List(VecDeque::new())) else {
            return Err(err(WRONGTYPE));
        };
        if to_left {
            dst.push_front(v.clone());
        } else {
            dst.push_back(v.clone());
        }
        Ok(Resp::Bulk(Some(v)))
    }

    fn lrange(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let (start, stop) = (int_arg(&a[2])?, int_arg(&a[3])?);
        let Some(l) = self.list(now, &a[1])? else {
            return Ok(Resp::Array(Some(Vec::new())));
        };
        let len = l.len() as i64;
        let start = if start < 0 {
            (start + len).max(0)
        } else {
            start
        };
        let stop = if stop < 0 {
            stop + len
        } else {
            stop.min(len - 1)
        };
        if start > stop || start >= len {
            return Ok(Resp::Array(Some(Vec::new())));
        }
        let items = l.range(start as usize..=stop as usize).map(|v| bulk(v));
        Ok(Resp::Array(Some(items.collect())))
    }

    fn lrem(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let count = int_arg(&a[2])?;
        let Some(l) = self.list(now, &a[1])? else {
            return Ok(Resp::Integer(0));
        };
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        if count >= 0 {
            let mut i = 0;
            while i < l.len() && removed < limit {
                if l[i] == a[3] {
                    l.remove(i);
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        } else {
            let mut i = l.len();
            while i > 0 && removed < limit {
                i -= 1;
                if l[i] == a[3] {
                    l.remove(i);
                    removed += 1;
                }
            }
        }
        Ok(int(removed))
    }

    fn hset(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        if !a.len().is_multiple_of(2) {
            return Err(wrong_arity("hset"));
        }
        let Value::Hash(h) = self.value_or(now, &a[1], Value::Hash(BTreeMap::new())) else {
            return Err(err(WRONGTYPE));
        };
        let added = a[2..]
            .chunks(2)
            .filter(|fv| h.insert(fv[0].clone(), fv[1].clone()).is_none())
            .count();
        Ok(int(added))
    }

    fn hincrby(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let by = int_arg(&a[3])?;
        let Value::Hash(h) = self.value_or(now, &a[1], Value::Hash(BTreeMap::new())) else {
            return Err(err(WRONGTYPE));
        };
        let cur = match h.get(&a[2]) {
            None => 0,
            Some(v) => parse_i64(v).ok_or_else(|| err("ERR hash value is not an integer"))?,
        };
        let n = cur.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
        h.insert(a[2].clone(), n.to_string().into_bytes());
        Ok(Resp::Integer(n))
    }

    fn zadd(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = Default::default();
        let mut i = 2;
        while let Some(opt) = a.get(i) {
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                b"CH" => ch = true,
                b"INCR" => incr = true,
                _ => break,
            }
            i += 1;
        }
        let pairs = &a[i..];
        if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
            return Err(err(SYNTAX));
        }
        if nx && xx {
            return Err(err(
                "ERR XX and NX options at the same time are not compatible",
            ));
        }
        if ((gt || lt) && nx) || (gt && lt) {
            return Err(err(
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ));
        }
        if incr && pairs.len() > 2 {
            return Err(err(
                "ERR INCR option supports a single increment-element pair",
            ));
        }
        let scores = pairs
            .chunks(2)
            .map(|p| parse_f64(&p[0]).ok_or_else(|| err(NOT_FLOAT)))
            .collect::<Result<Vec<f64>, Resp>>()?;
        if self.zset(now, &a[1])?.is_none() && xx {
            return Ok(if incr {
                Resp::Bulk(None)
            } else {
                Resp::Integer(0)
            });
        }
        let Value::ZSet(z) = self.value_or(now, &a[1], Value::ZSet(ZSet::default())) else {
            return Err(err(WRONGTYPE));
        };
        let (mut added, mut changed) = (0, 0);
        let mut last = None;
        for (pair, &score) in pairs.chunks(2).zip(&scores) {
            let member = &pair[1];
            match z.scores.get(member).map(|&b| f64::from_bits(b)) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { score };
                    if new.is_nan() {
                        return Err(err("ERR resulting score is not a number (NaN)"));
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    last = Some(new);
                    if new != cur {
                        z.insert(member, new);
                        changed += 1;
                    }
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.insert(member, score);
                    last = Some(score);
                    added += 1;
                }
            }
        }
        if incr {
            return Ok(Resp::Bulk(last.map(|s| format_double(s).into_bytes())));
        }
        Ok(int(if ch { added + changed } else { added }))
    }

    fn zrangebyscore(&mut self, now: u64, a: &[Vec<u8>]) -> Reply {
        let (mut with_scores, mut offset, mut count) = (false, 0i64, -1i64);
        let mut i = 4;
        while i < a.len() {
            if a[i].eq_ignore_ascii_case(b"WITHSCORES") {
                with_scores = true;
                i += 1;
            } else if a[i].eq_ignore_ascii_case(b"LIMIT") && i + 2 < a.len() {
                offset = int_arg(&a[i + 1])?;
                count = int_arg(&a[i + 2])?;
                i += 3;
            } else {
                return Err(err(SYNTAX));
            }
        }
        // Redis parses the options before the range, so syntax errors win.
        let bounds = parse_bound(&a[2]).zip(parse_bound(&a[3]));
        let Some(((min, min_ex), (max, max_ex))) = bounds else {
            return Err(err("ERR min or max is not a float"));
        };
        let Some(z) = self.zset(now, &a[1])? else {
            return Ok(Resp::Array(Some(Vec::new())));
        };
        if offset < 0 {
            return Ok(Resp::Array(Some(Vec::new())));
        }
        let take = usize::try_from(count).unwrap_or(usize::MAX);
        let from = (Score::new(min), Vec::new());
        let mut out = Vec::new();
        let hits = z
            .order
            .range(from..)
            .filter(|(s, _)| !(min_ex && s.get() == min))
            .take_while(|(s, _)| s.get() < max || (!max_ex && s.get() == max))
            .skip(offset as usize)
            .take(take);
        for (_, m) in hits {
            out.push(bulk(m));
            if with_scores {
                let score = f64::from_bits(z.scores.get(m).copied().unwrap_or(0));
                out.push(Resp::Bulk(Some(format_double(score).into_bytes())));
            }
        }
        Ok(Resp::Array(Some(out)))
    }

    fn expire(&mut self, now: u64, a: &[Vec<u8>], unit_ms: i64, name: &str) -> Reply {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for opt in &a[3..] {
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                _ => {
                    return Err(Resp::Error(format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(opt)
                    )));
                }
            }
        }
        if nx && (xx || gt || lt) {
            return Err(err(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if gt && lt {
            return Err(err(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        let amount = int_arg(&a[2])?;
        let when = deadline(now, amount, unit_ms, false)
            .ok_or_else(|| Resp::Error(format!("ERR invalid expire time in '{name}' command")))?;
        let Some(entry) = self.live(now, &a[1]) else {
            return Ok(Resp::Integer(0));
        };
        // Comparisons treat "no TTL" as an infinite one, as Redis does.
        let cur = entry.expires_at;
        let refused = (nx && cur.is_some())
            || (xx && cur.is_none())
            || (gt && cur.is_none_or(|c| when <= c))
            || (lt && cur.is_some_and(|c| when >= c));
        if refused {
            return Ok(Resp::Integer(0));
        }
        if when <= now {
            self.keys.remove(&a[1]);
        } else {
            entry.expires_at = Some(when);
        }
        Ok(Resp::Integer(1))
    }

    fn ttl(&mut self, now: u64, key: &[u8], millis: bool) -> i64 {
        let Some(entry) = self.live(now, key) else {
            return -2;
        };
        let Some(d) = entry.expires_at else {
            return -1;
        };
        let ms = ((d - now) / 1_000_000) as i64;
        if millis { ms } else { (ms + 500) / 1000 }
    }
}

/// One client connection's transaction state (MULTI ... EXEC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Commands queued since MULTI; `None` outside a transaction.
    queued: Option<Vec<Vec<Vec<u8>>>>,
    /// A command was rejected while queueing, so EXEC must abort.
    aborted: bool,
}

impl Connection {
    /// Handles one command from this client, queueing it inside MULTI.
    pub fn handle(&mut self, store: &mut Store, now_ns: u64, args: Vec<Vec<u8>>) -> Resp {
        let checked = check_command(&args);
        let name = checked.as_deref().unwrap_or("");
        match (name, self.queued.is_some()) {
            ("multi", true) => err("ERR MULTI calls can not be nested"),
            ("multi", false) => {
                self.queued = Some(Vec::new());
                self.aborted = false;
                ok()
            }
            ("exec", false) => err("ERR EXEC without MULTI"),
            ("discard", false) => err("ERR DISCARD without MULTI"),
            ("discard", true) => {
                self.queued = None;
                self.aborted = false;
                ok()
            }
            ("exec", true) => {
                let queued = self.queued.take().unwrap_or_default();
                if std::mem::take(&mut self.aborted) {
                    return err("EXECABORT Transaction discarded because of previous errors.");
                }
                // One call runs the whole queue: nothing interleaves, as in Redis.
                let replies = queued.iter().map(|c| store.execute(now_ns, c));
                Resp::Array(Some(replies.collect()))
            }
            (_, true) => match checked {
                Err(reply) => {
                    self.aborted = true;
                    reply
                }
                Ok(_) => {
                    self.queued.get_or_insert_with(Vec::new).push(args);
                    Resp::Simple("QUEUED".to_owned())
                }
            },
            (_, false) => store.execute(now_ns, &args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn cmd(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
    }

    fn run(s: &mut Store, line: &str) -> Resp {
        s.execute(0, &cmd(line))
    }

    fn ok() -> Resp {
        Resp::Simple("OK".into())
    }

    fn b(s: &str) -> Resp {
        Resp::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn nil() -> Resp {
        Resp::Bulk(None)
    }

    fn i(n: i64) -> Resp {
        Resp::Integer(n)
    }

    fn e(s: &str) -> Resp {
        Resp::Error(s.into())
    }

    fn arr(items: &[&str]) -> Resp {
        Resp::Array(Some(items.iter().map(|s| b(s)).collect()))
    }

    fn wrongtype() -> Resp {
        e(WRONGTYPE)
    }

    #[test]
    fn command_names_arity_and_unknown_commands() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "SeT k v"), ok());
        assert_eq!(run(&mut s, "get k"), b("v"));
        assert_eq!(
            run(&mut s, "GET"),
            e("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            run(&mut s, "GET a b"),
            e("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            run(&mut s, "FOO a b"),
            e("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            run(&mut s, "foo"),
            e("ERR unknown command 'foo', with args beginning with: ")
        );
        // The argument list stops growing at 128 bytes, cutting the last one.
        let long = "x".repeat(100);
        let reply = s.execute(0, &cmd(&format!("nope {long} {long} {long}")));
        let want = format!("'{long}' '{}' ", "x".repeat(25));
        assert_eq!(
            reply,
            e(&format!(
                "ERR unknown command 'nope', with args beginning with: {want}"
            ))
        );
    }

    #[test]
    fn strings() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "GET k"), nil());
        assert_eq!(run(&mut s, "SET k v NX"), ok());
        assert_eq!(run(&mut s, "SET k w NX"), nil());
        assert_eq!(run(&mut s, "SET x w XX"), nil());
        assert_eq!(run(&mut s, "SET k w XX GET"), b("v"));
        assert_eq!(
            run(&mut s, "SET k z NX GET"),
            b("w"),
            "GET reports even a refused SET"
        );
        assert_eq!(run(&mut s, "GET k"), b("w"));
        assert_eq!(run(&mut s, "SET n v GET"), nil());
        assert_eq!(run(&mut s, "SET k v NX XX"), e(SYNTAX));
        assert_eq!(run(&mut s, "SET k v EX 1 PX 5"), e(SYNTAX));
        assert_eq!(run(&mut s, "SET k v EX"), e(SYNTAX));
        assert_eq!(run(&mut s, "SET k v BOGUS"), e(SYNTAX));
        assert_eq!(run(&mut s, "SET k v EX x"), e(NOT_INTEGER));
        assert_eq!(
            run(&mut s, "SET k v EX 0"),
            e("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            run(&mut s, "SET k v EX 9223372036854775807"),
            e("ERR invalid expire time in 'set' command")
        );
        assert_eq!(run(&mut s, "DEL k n missing k"), i(2));
        assert_eq!(run(&mut s, "INCR c"), i(1));
        assert_eq!(run(&mut s, "INCRBY c 41"), i(42));
        assert_eq!(run(&mut s, "INCRBY c -50"), i(-8));
        assert_eq!(run(&mut s, "GET c"), b("-8"));
        assert_eq!(run(&mut s, "INCRBY c x"), e(NOT_INTEGER));
        for bad in ["abc", "1.5", "+1", "01", " 1", "-0"] {
            s.execute(
                0,
                &[b"SET".to_vec(), b"v".to_vec(), bad.as_bytes().to_vec()],
            );
            assert_eq!(run(&mut s, "INCR v"), e(NOT_INTEGER), "{bad:?}");
        }
        assert_eq!(run(&mut s, "SET m 9223372036854775807"), ok());
        assert_eq!(run(&mut s, "INCR m"), e(OVERFLOW));
        assert_eq!(run(&mut s, "RPUSH l a"), i(1));
        assert_eq!(run(&mut s, "GET l"), wrongtype());
        assert_eq!(run(&mut s, "INCR l"), wrongtype());
        assert_eq!(run(&mut s, "SET l v GET"), wrongtype());
        assert_eq!(
            run(&mut s, "SET l v"),
            ok(),
            "plain SET overwrites any type"
        );
        assert_eq!(run(&mut s, "GET l"), b("v"));
    }

    #[test]
    fn expiry_is_lazy_and_active() {
        let mut s = Store::default();
        s.execute(0, &cmd("SET a v PX 1500"));
        assert_eq!(s.execute(0, &cmd("PTTL a")), i(1500));
        assert_eq!(
            s.execute(0, &cmd("TTL a")),
            i(2),
            "TTL rounds to nearest second"
        );
        assert_eq!(s.execute(1000 * MS, &cmd("TTL a")), i(1));
        assert_eq!(
            s.execute(1500 * MS, &cmd("GET a")),
            b("v"),
            "alive at its deadline"
        );
        assert_eq!(s.execute(1500 * MS + 1, &cmd("GET a")), nil());
        assert_eq!(s.execute(1500 * MS + 1, &cmd("TTL a")), i(-2));
        assert_eq!(
            s.execute(0, &cmd("EXISTS a")),
            i(0),
            "lazily removed for good"
        );

        s.execute(0, &cmd("SET b v"));
        assert_eq!(s.execute(0, &cmd("TTL b")), i(-1));
        assert_eq!(s.execute(0, &cmd("PTTL b")), i(-1));
        assert_eq!(s.execute(0, &cmd("EXPIRE b 10")), i(1));
        assert_eq!(s.execute(0, &cmd("EXPIRE missing 10")), i(0));
        assert_eq!(s.execute(2 * SEC, &cmd("TTL b")), i(8));
        assert_eq!(s.execute(0, &cmd("PEXPIRE b 300")), i(1));
        assert_eq!(s.execute(0, &cmd("PTTL b")), i(300));
        assert_eq!(s.execute(0, &cmd("EXPIRE b 10 NX")), i(0));
        assert_eq!(s.execute(0, &cmd("EXPIRE b 10 GT")), i(1));
        assert_eq!(s.execute(0, &cmd("EXPIRE b 20 LT")), i(0));
        assert_eq!(
            s.execute(0, &cmd("EXPIRE b 20 NX XX")),
            e("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(
            s.execute(0, &cmd("EXPIRE b 20 YY")),
            e("ERR Unsupported option YY")
        );
        assert_eq!(s.execute(0, &cmd("EXPIRE b x")), e(NOT_INTEGER));
        assert_eq!(
            s.execute(0, &cmd("EXPIRE b 9223372036854775807")),
            e("ERR invalid expire time in 'expire' command")
        );
        s.execute(0, &cmd("SET b v KEEPTTL"));
        assert_eq!(s.execute(0, &cmd("TTL b")), i(10), "KEEPTTL keeps it");
        s.execute(0, &cmd("SET b v"));
        assert_eq!(s.execute(0, &cmd("TTL b")), i(-1), "plain SET clears it");
        assert_eq!(s.execute(0, &cmd("EXPIRE b 0")), i(1));
        assert_eq!(
            s.execute(0, &cmd("EXISTS b")),
            i(0),
            "a past deadline deletes"
        );
        s.execute(0, &cmd("SET i 5 EX 1"));
        assert_eq!(s.execute(0, &cmd("INCR i")), i(6));
        assert_eq!(s.execute(0, &cmd("TTL i")), i(1), "INCR keeps the TTL");

        // EXAT/PXAT are unix times; `now_ns` counts from the same epoch.
        s.execute(5 * SEC, &cmd("SET at v PXAT 7000"));
        assert_eq!(s.execute(5 * SEC, &cmd("PTTL at")), i(2000));
        s.execute(5 * SEC, &cmd("SET at v EXAT 4"));
        assert_eq!(
            s.execute(5 * SEC, &cmd("GET at")),
            nil(),
            "a past EXAT expires at once"
        );

        s.execute(0, &cmd("SET c v EX 1"));
        s.execute(0, &cmd("SET d v EX 5"));
        s.execute(0, &cmd("RPUSH e v"));
        s.expire_due(2 * SEC);
        let mut left: Vec<_> = s.keys.keys().cloned().collect();
        left.sort();
        assert_eq!(left, vec![b"d".to_vec(), b"e".to_vec()]);
    }

    #[test]
    fn lists() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "RPUSH l a b c"), i(3));
        assert_eq!(run(&mut s, "LPUSH l y z"), i(5));
        assert_eq!(
            run(&mut s, "LRANGE l 0 -1"),
            arr(&["z", "y", "a", "b", "c"])
        );
        assert_eq!(run(&mut s, "LRANGE l -2 100"), arr(&["b", "c"]));
        assert_eq!(run(&mut s, "LRANGE l -100 1"), arr(&["z", "y"]));
        assert_eq!(run(&mut s, "LRANGE l 3 1"), arr(&[]));
        assert_eq!(run(&mut s, "LRANGE l 5 10"), arr(&[]));
        assert_eq!(run(&mut s, "LRANGE l 0 -6"), arr(&[]));
        assert_eq!(run(&mut s, "LRANGE l a 1"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "LRANGE none 0 -1"), arr(&[]));
        assert_eq!(run(&mut s, "LLEN l"), i(5));
        assert_eq!(run(&mut s, "LLEN none"), i(0));
        assert_eq!(run(&mut s, "LPOP l"), b("z"));
        assert_eq!(run(&mut s, "RPOP l"), b("c"));
        assert_eq!(run(&mut s, "LPOP l 2"), arr(&["y", "a"]));
        assert_eq!(run(&mut s, "LPOP l 0"), arr(&[]));
        assert_eq!(run(&mut s, "RPOP l 10"), arr(&["b"]));
        assert_eq!(run(&mut s, "EXISTS l"), i(0), "an emptied list disappears");
        assert_eq!(run(&mut s, "LPOP l"), nil());
        assert_eq!(run(&mut s, "LPOP l 1"), Resp::Array(None));
        assert_eq!(
            run(&mut s, "LPOP l -1"),
            e("ERR value is out of range, must be positive")
        );
        assert_eq!(
            run(&mut s, "LPOP l 1 2"),
            e("ERR wrong number of arguments for 'lpop' command")
        );

        run(&mut s, "RPUSH r a b a c a b a");
        assert_eq!(run(&mut s, "LREM r 2 a"), i(2));
        assert_eq!(
            run(&mut s, "LRANGE r 0 -1"),
            arr(&["b", "c", "a", "b", "a"])
        );
        assert_eq!(run(&mut s, "LREM r -1 b"), i(1));
        assert_eq!(run(&mut s, "LRANGE r 0 -1"), arr(&["b", "c", "a", "a"]));
        assert_eq!(run(&mut s, "LREM r 0 a"), i(2));
        assert_eq!(run(&mut s, "LREM r 0 zz"), i(0));
        assert_eq!(run(&mut s, "LREM none 0 a"), i(0));
        assert_eq!(run(&mut s, "LREM r 0 b"), i(1));
        assert_eq!(run(&mut s, "LREM r 0 c"), i(1));
        assert_eq!(run(&mut s, "EXISTS r"), i(0));

        run(&mut s, "RPUSH src 1 2 3");
        assert_eq!(run(&mut s, "LMOVE src dst LEFT RIGHT"), b("1"));
        assert_eq!(run(&mut s, "LMOVE src dst right left"), b("3"));
        assert_eq!(run(&mut s, "LRANGE dst 0 -1"), arr(&["3", "1"]));
        assert_eq!(run(&mut s, "LMOVE dst dst LEFT RIGHT"), b("3"), "rotation");
        assert_eq!(run(&mut s, "LRANGE dst 0 -1"), arr(&["1", "3"]));
        assert_eq!(run(&mut s, "LMOVE src dst UP LEFT"), e(SYNTAX));
        assert_eq!(run(&mut s, "LMOVE none dst LEFT LEFT"), nil());
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "LMOVE src str LEFT LEFT"), wrongtype());
        assert_eq!(run(&mut s, "LLEN src"), i(1), "nothing popped on WRONGTYPE");
        assert_eq!(run(&mut s, "LMOVE src dst LEFT LEFT"), b("2"));
        assert_eq!(run(&mut s, "EXISTS src"), i(0));
        for c in [
            "LPUSH str a",
            "LPOP str",
            "LRANGE str 0 1",
            "LLEN str",
            "LREM str 0 a",
        ] {
            assert_eq!(run(&mut s, c), wrongtype(), "{c}");
        }
    }

    #[test]
    fn hashes() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "HSET h f1 v1 f2 v2"), i(2));
        assert_eq!(run(&mut s, "HSET h f1 x f3 v3"), i(1));
        assert_eq!(
            run(&mut s, "HSET h f1"),
            e("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut s, "HSET h f1 v f2"),
            e("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(run(&mut s, "HGET h f1"), b("x"));
        assert_eq!(run(&mut s, "HGET h nope"), nil());
        assert_eq!(run(&mut s, "HGET none f"), nil());
        assert_eq!(
            run(&mut s, "HGETALL h"),
            arr(&["f1", "x", "f2", "v2", "f3", "v3"])
        );
        assert_eq!(run(&mut s, "HGETALL none"), arr(&[]));
        assert_eq!(run(&mut s, "HINCRBY h n 5"), i(5));
        assert_eq!(run(&mut s, "HINCRBY h n -7"), i(-2));
        assert_eq!(
            run(&mut s, "HINCRBY h f1 1"),
            e("ERR hash value is not an integer")
        );
        assert_eq!(run(&mut s, "HINCRBY h n x"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "HDEL h f1 f2 nope"), i(2));
        assert_eq!(run(&mut s, "HDEL none f"), i(0));
        assert_eq!(run(&mut s, "HDEL h f3 n"), i(2));
        assert_eq!(run(&mut s, "EXISTS h"), i(0), "an emptied hash disappears");
        run(&mut s, "SET str v");
        for c in [
            "HSET str f v",
            "HGET str f",
            "HDEL str f",
            "HGETALL str",
            "HINCRBY str f 1",
        ] {
            assert_eq!(run(&mut s, c), wrongtype(), "{c}");
        }
    }

    #[test]
    fn sorted_sets() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "ZADD z 1 a 2 b 2 c -inf lo +inf hi"), i(5));
        assert_eq!(run(&mut s, "ZADD z 3 a 4 d"), i(1));
        assert_eq!(run(&mut s, "ZADD z CH 5 a 6 e"), i(2));
        assert_eq!(run(&mut s, "ZADD z NX 9 a"), i(0));
        assert_eq!(run(&mut s, "ZADD z XX 9 new"), i(0));
        assert_eq!(run(&mut s, "ZSCORE z a"), b("5"));
        assert_eq!(run(&mut s, "ZADD z GT CH 1 a"), i(0));
        assert_eq!(run(&mut s, "ZADD z LT CH 1 a"), i(1));
        assert_eq!(run(&mut s, "ZADD z INCR 0.5 a"), b("1.5"));
        assert_eq!(run(&mut s, "ZADD z 1 a x"), e(SYNTAX));
        assert_eq!(run(&mut s, "ZADD z NX 1"), e(SYNTAX));
        assert_eq!(run(&mut s, "ZADD z abc a"), e(NOT_FLOAT));
        assert_eq!(run(&mut s, "ZADD z nan a"), e(NOT_FLOAT));
        assert_eq!(
            run(&mut s, "ZADD z NX XX 1 a"),
            e("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(
            run(&mut s, "ZADD z GT LT 1 a"),
            e("ERR GT, LT, and/or NX options at the same time are not compatible")
        );
        assert_eq!(run(&mut s, "ZSCORE z lo"), b("-inf"));
        assert_eq!(run(&mut s, "ZADD n -0 m 0 p"), i(2));
        assert_eq!(run(&mut s, "ZADD n CH 0 m -0 p"), i(0), "-0 equals 0");
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE n 0 0 WITHSCORES"),
            arr(&["m", "-0", "p", "0"])
        );
        assert_eq!(run(&mut s, "ZSCORE z nope"), nil());
        assert_eq!(run(&mut s, "ZSCORE none a"), nil());

        let all = ["lo", "a", "b", "c", "d", "e", "hi"];
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z -inf +inf"), arr(&all));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z 2 4"), arr(&["b", "c", "d"]));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z (2 4"), arr(&["d"]));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z 1.5 (4"), arr(&["a", "b", "c"]));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z (-inf (+inf"), arr(&all[1..6]));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z 5 1"), arr(&[]));
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z 1 2 WITHSCORES"),
            arr(&["a", "1.5", "b", "2", "c", "2"])
        );
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z -inf +inf LIMIT 1 2"),
            arr(&["a", "b"])
        );
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z -inf +inf LIMIT 5 -1"),
            arr(&["e", "hi"])
        );
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z -inf +inf LIMIT -1 5"),
            arr(&[])
        );
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z -inf +inf LIMIT 1"), e(SYNTAX));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z -inf +inf FOO"), e(SYNTAX));
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z x 1"),
            e("ERR min or max is not a float")
        );
        assert_eq!(run(&mut s, "ZRANGEBYSCORE z x 1 FOO"), e(SYNTAX));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE none 0 1"), arr(&[]));

        assert_eq!(run(&mut s, "ZREM z a b nope"), i(2));
        assert_eq!(run(&mut s, "ZREM none a"), i(0));
        assert_eq!(run(&mut s, "ZREM z lo c d e hi"), i(5));
        assert_eq!(run(&mut s, "EXISTS z"), i(0), "an emptied zset disappears");
        assert_eq!(run(&mut s, "ZADD z XX 1 a"), i(0));
        assert_eq!(
            run(&mut s, "EXISTS z"),
            i(0),
            "ZADD XX does not create the key"
        );

        run(&mut s, "SET str v");
        for c in [
            "ZADD str 1 a",
            "ZREM str a",
            "ZRANGEBYSCORE str 0 1",
            "ZSCORE str a",
        ] {
            assert_eq!(run(&mut s, c), wrongtype(), "{c}");
        }
    }

    #[test]
    fn scores_order_numerically_and_format_as_redis() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            1e-300,
            0.1,
            3.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(Score::new(w[0]) <= Score::new(w[1]), "{w:?}");
            assert_eq!(Score::new(w[0]).get(), if w[0] == 0.0 { 0.0 } else { w[0] });
        }
        let cases = [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1.1, "1.1"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-7"),
            (-1.5e-10, "-1.5e-10"),
            (1e-7, "1e-7"),
            (1.23e-5, "1.23e-5"),
            (0.0001, "0.0001"),
            (0.000123, "0.000123"),
            (1.000000001, "1.000000001"),
            (1e7, "10000000"),
            (1e8, "1e+8"),
            (1.5e8, "150000000"),
            (1e300, "1e+300"),
            (123456789012345680.0, "123456789012345680"),
            (12345678901234567.0, "12345678901234568"),
            (-0.0, "-0"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            assert_eq!(format_double(x), want, "{x}");
        }
    }

    #[test]
    fn keys() {
        let mut s = Store::default();
        run(&mut s, "SET a 1");
        run(&mut s, "RPUSH b x");
        assert_eq!(run(&mut s, "EXISTS a b c a"), i(3), "repeats count again");
        assert_eq!(run(&mut s, "DEL a b c"), i(2));
        assert_eq!(run(&mut s, "EXISTS a b"), i(0));
        assert_eq!(s, Store::default());
    }

    #[test]
    fn transactions() {
        let mut s = Store::default();
        let mut c = Connection::default();
        let mut h = |s: &mut Store, line: &str| c.handle(s, 0, cmd(line));
        assert_eq!(h(&mut s, "EXEC"), e("ERR EXEC without MULTI"));
        assert_eq!(h(&mut s, "DISCARD"), e("ERR DISCARD without MULTI"));
        assert_eq!(h(&mut s, "SET k 1"), ok(), "outside MULTI runs at once");
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "MULTI"), e("ERR MULTI calls can not be nested"));
        assert_eq!(h(&mut s, "INCR k"), Resp::Simple("QUEUED".into()));
        assert_eq!(h(&mut s, "RPUSH k x"), Resp::Simple("QUEUED".into()));
        assert_eq!(h(&mut s, "GET k"), Resp::Simple("QUEUED".into()));
        assert_eq!(
            s.execute(0, &cmd("GET k")),
            b("1"),
            "nothing runs before EXEC"
        );
        assert_eq!(
            h(&mut s, "EXEC"),
            Resp::Array(Some(vec![i(2), wrongtype(), b("2")])),
            "a failing command does not roll back the others"
        );
        assert_eq!(h(&mut s, "EXEC"), e("ERR EXEC without MULTI"));

        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "INCR k"), Resp::Simple("QUEUED".into()));
        assert_eq!(h(&mut s, "DISCARD"), ok());
        assert_eq!(s.execute(0, &cmd("GET k")), b("2"));

        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "INCR k"), Resp::Simple("QUEUED".into()));
        assert_eq!(
            h(&mut s, "GET"),
            e("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            h(&mut s, "NOPE x"),
            e("ERR unknown command 'NOPE', with args beginning with: 'x' ")
        );
        assert_eq!(
            h(&mut s, "EXEC"),
            e("EXECABORT Transaction discarded because of previous errors.")
        );
        assert_eq!(
            s.execute(0, &cmd("GET k")),
            b("2"),
            "an aborted EXEC runs nothing"
        );
        assert_eq!(h(&mut s, "MULTI"), ok(), "the connection is usable again");
        assert_eq!(h(&mut s, "EXEC"), Resp::Array(Some(Vec::new())));
    }
}
