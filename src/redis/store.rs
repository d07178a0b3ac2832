//! The keyspace and its commands, replying exactly as Redis 7 does.
//!
//! Sans-IO and clock-free: each command gets the current time in
//! nanoseconds. Expiry follows Redis: a key is gone once `now > deadline`,
//! it is removed lazily when a command touches it, and `expire_due` is the
//! active sweep. As in Redis, deadlines are unix times in whole
//! milliseconds and the clock they are compared with is `now_ns / 1e6`
//! truncated: a key set with `PX 5` at 0.4 ms lives through millisecond 5.
//!
//! Deliberate differences from redis-server (the queue code built on this
//! must not rely on them): HGETALL returns fields sorted by bytes (Redis
//! returns them in an encoding-dependent order); an empty command is an
//! error (Redis ignores it); MULTI/EXEC/DISCARD are only understood by
//! [`Connection`], and there is no WATCH. Scores are formatted as Redis 7.2+
//! formats them (see `format_double`), not as 7.0 did (`%.17g`).

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use hashbrown::hash_map::EntryRef;

use super::persistence::READ_ONLY;
use super::resp::Resp;
use crate::fxmap::{FxMap, sorted};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const NS_PER_MS: u64 = 1_000_000;

/// A reply that aborts the command early.
type Reply = Result<Resp, Resp>;
/// A hash's fields and values.
type Fields = Map<Vec<u8>, Vec<u8>>;

/// The keyspace, a hash's fields and a sorted set's members are looked up
/// far more often than walked, and their keys share long prefixes that an
/// ordered map compares byte by byte at every level. They are hashed, with
/// a fixed hasher so nothing depends on a random seed; whatever walks them
/// where the order shows (HGETALL, an AOF rewrite) sorts first.
type Map<K, V> = FxMap<K, V>;

fn err(msg: &str) -> Resp {
    Resp::Error(msg.as_bytes().to_vec())
}

fn ok() -> Resp {
    Resp::Simple(b"OK".to_vec())
}

/// An argument as C's `%s` prints it: up to its first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(&[])
}

/// CR and LF turned into spaces, as Redis does to an error it formats
/// (`sdsmapchars`), since an error line cannot carry them.
fn one_line(b: &[u8]) -> Vec<u8> {
    let flat = |&c: &u8| if c == b'\r' || c == b'\n' { b' ' } else { c };
    b.iter().map(flat).collect()
}

/// An error built as Redis's `addReplyErrorFormat` builds one: CR and LF
/// trimmed from both ends first (`sdstrim`), then those inside made spaces.
fn error_format(msg: &[u8]) -> Resp {
    let keep = |c: &u8| !matches!(c, b'\r' | b'\n');
    let start = msg.iter().position(keep).unwrap_or(msg.len());
    let end = msg.iter().rposition(keep).map_or(start, |i| i + 1);
    Resp::Error(one_line(&msg[start..end]))
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

/// A small sorted set's limits (`zset-max-listpack-entries` and
/// `zset-max-listpack-value`, Redis's defaults).
const LISTPACK_ENTRIES: usize = 128;
const LISTPACK_VALUE: usize = 64;

/// A sorted set's member: one copy of its bytes, shared by both indexes,
/// so adding a member copies it once and removing one builds no key to
/// find it in the order (the queue adds and removes one per delivery).
type Member = Rc<[u8]>;

/// Members with scores, indexed both ways; ordered by (score, member) as in Redis.
#[derive(Clone, Debug, Default, Eq)]
struct ZSet {
    /// Each member's score as stored (its f64 bits), so -0 can read back as -0.
    scores: Map<Member, u64>,
    order: BTreeSet<(Score, Member)>,
    /// Whether Redis would hold this set as a skiplist rather than as a
    /// listpack (a small set). A listpack stores an integral score as an
    /// integer (`zzlInsertAt`), so a -0 stored there reads back as 0; a
    /// skiplist keeps the double. As in Redis, a set never turns back.
    skiplist: bool,
}

/// Two sets are equal when they hold the same members with the same scores:
/// the encoding is how they are stored, not what they hold (a set that grew
/// and shrank is a skiplist, the same set rebuilt from its members a listpack).
impl PartialEq for ZSet {
    fn eq(&self, other: &ZSet) -> bool {
        self.scores == other.scores
    }
}

impl ZSet {
    fn insert(&mut self, member: &[u8], score: f64) {
        let score = if self.skiplist || score != 0.0 {
            score
        } else {
            0.0
        };
        let s = Score::new(score);
        let member = match self.scores.get_key_value(member) {
            Some((m, &old)) => {
                let m = Rc::clone(m);
                self.order
                    .remove(&(Score::new(f64::from_bits(old)), Rc::clone(&m)));
                m
            }
            None => Member::from(member),
        };
        self.scores.insert(Rc::clone(&member), score.to_bits());
        self.order.insert((s, member));
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove_entry(member) {
            Some((m, old)) => self.order.remove(&(Score::new(f64::from_bits(old)), m)),
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
    /// Deadline in unix ms, as Redis keeps it; the key is gone once
    /// `now_ms(now) > deadline`.
    expires_at: Option<i64>,
}

/// The keyspace of one Redis database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    keys: Map<Vec<u8>, Entry>,
}

/// The lowercase names of the known commands and their Redis arity
/// (negative: at least).
const COMMANDS: &[(&str, i64)] = &[
    ("get", 2),
    ("incr", 2),
    ("llen", 2),
    ("hgetall", 2),
    ("ttl", 2),
    ("pttl", 2),
    ("incrby", 3),
    ("hget", 3),
    ("zscore", 3),
    ("lrange", 4),
    ("lrem", 4),
    ("hincrby", 4),
    ("lmove", 5),
    ("set", -3),
    ("lpush", -3),
    ("rpush", -3),
    ("hdel", -3),
    ("zrem", -3),
    ("expire", -3),
    ("pexpire", -3),
    ("pexpireat", -3),
    ("del", -2),
    ("exists", -2),
    ("lpop", -2),
    ("rpop", -2),
    ("hset", -4),
    ("zadd", -4),
    ("zrangebyscore", -4),
    ("multi", 1),
    ("exec", 1),
    ("discard", 1),
];

/// A command name of up to 16 bytes as one integer, byte `i` in bits
/// `8i..8i + 8` (no name contains a zero byte, so the padding cannot be
/// mistaken for one): names compare in one instruction, not by a call to
/// `memcmp` per candidate.
const fn pack(name: &[u8]) -> u128 {
    let mut v = 0u128;
    let mut i = 0;
    while i < name.len() && i < 16 {
        v |= (name[i] as u128) << (8 * i);
        i += 1;
    }
    v
}

/// `COMMANDS`' names, packed.
const PACKED: [u128; COMMANDS.len()] = {
    let mut out = [0; COMMANDS.len()];
    let mut i = 0;
    while i < COMMANDS.len() {
        // A longer name would be cut by `pack` and never found.
        assert!(
            COMMANDS[i].0.len() <= 16,
            "a command name longer than 16 bytes"
        );
        out[i] = pack(COMMANDS[i].0.as_bytes());
        i += 1;
    }
    out
};

/// Whether each entry of `COMMANDS` is read-only (in `READ_ONLY`), found
/// once here rather than by name for every command run.
const READ_ONLY_COMMANDS: [bool; COMMANDS.len()] = {
    const fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    let mut out = [false; COMMANDS.len()];
    let mut i = 0;
    while i < COMMANDS.len() {
        let mut j = 0;
        while j < READ_ONLY.len() {
            out[i] |= same(COMMANDS[i].0.as_bytes(), READ_ONLY[j].as_bytes());
            j += 1;
        }
        i += 1;
    }
    out
};

/// A command the store recognised and ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    /// Its lowercase name.
    pub name: &'static str,
    /// It never changes the keyspace (`READ_ONLY`).
    pub read_only: bool,
}

/// The index in `COMMANDS` of a known command, matched case-insensitively
/// as Redis's command table does.
fn command_index(name: &[u8]) -> Option<usize> {
    // Every command of a queue operation comes through here: the name is
    // lowered and packed once and compared as an integer with each entry,
    // instead of a case-insensitive byte comparison with each in turn.
    if name.len() > 16 {
        return None;
    }
    // Loaded as two overlapping words (from each end; the overlap holds
    // the same bytes twice), not through a buffer filled byte by byte,
    // which the processor cannot read back as a word until every byte
    // store has landed.
    let n = name.len();
    let word = |at: usize| u64::from_le_bytes(name[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |at: usize| u32::from_le_bytes(name[at..at + 4].try_into().unwrap_or([0; 4]));
    let v = match n {
        8.. => u128::from(word(0)) | u128::from(word(n - 8)) << (8 * (n - 8)),
        4.. => u128::from(half(0) as u64 | u64::from(half(n - 4)) << (8 * (n - 4))),
        _ => pack(name),
    };
    const ONES: u128 = u128::MAX / 0xff;
    const HIGH: u128 = ONES * 0x80;
    if v & HIGH != 0 {
        // Not ASCII: no command's name, in any case.
        return None;
    }
    // All sixteen bytes lowered at once: a byte's high bit, free in ASCII,
    // is set by the first sum when the byte is at least `A` and by the
    // second when it is past `Z`; no sum carries into the next byte.
    let at_least_a = v + ONES * u128::from(0x80 - b'A');
    let past_z = v + ONES * u128::from(0x80 - b'Z' - 1);
    let key = v | ((at_least_a & !past_z & HIGH) >> 2);
    // A zero byte in the name would pack like the padding: compare lengths too.
    let i = PACKED.iter().position(|&p| p == key)?;
    (COMMANDS[i].0.len() == name.len()).then_some(i)
}

/// Rejects what redis-server rejects before running a command (unknown
/// name, wrong argument count); returns the lowercase name otherwise.
pub(super) fn check_command(args: &[&[u8]]) -> Result<&'static str, Resp> {
    check_command_index(args).map(|i| COMMANDS[i].0)
}

/// As `check_command`, giving the command's index in `COMMANDS`.
fn check_command_index(args: &[&[u8]]) -> Result<usize, Resp> {
    let Some(first) = args.first() else {
        return Err(err("ERR empty command"));
    };
    let Some(i) = command_index(first) else {
        // Redis's `'%.*s' ` loop: arguments are added while the list is under
        // 128 bytes, each cut to the room left; `%s` also stops at a NUL.
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
        // `rejectCommandFormat` maps CR and LF to spaces but trims nothing;
        // every other byte is echoed as it came.
        let mut msg = b"ERR unknown command '".to_vec();
        msg.extend_from_slice(shown);
        msg.extend_from_slice(b"', with args beginning with: ");
        msg.extend_from_slice(&quoted);
        return Err(Resp::Error(one_line(&msg)));
    };
    let (name, a) = COMMANDS[i];
    let n = args.len() as i64;
    if (a > 0 && n != a) || (a < 0 && n < -a) {
        return Err(wrong_arity(name));
    }
    Ok(i)
}

fn wrong_arity(name: &str) -> Resp {
    Resp::Error(format!("ERR wrong number of arguments for '{name}' command").into_bytes())
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

/// Appends `n` in decimal, as `n.to_string()` writes it, without the
/// formatting machinery: every delivery of a queue message counts its
/// attempts this way.
fn put_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn int_arg(b: &[u8]) -> Result<i64, Resp> {
    parse_i64(b).ok_or_else(|| err(NOT_INTEGER))
}

/// Parses a double as Redis's `string2d`: all of it read by `strtod` (so
/// hexadecimal floats such as `0x1p3` too), no leading blank, NaN rejected,
/// and so is what `strtod` flags `ERANGE` to infinity or zero: a finite
/// spelling that overflows (`1e400`) or underflows to zero (`1e-400`).
fn parse_f64(b: &[u8]) -> Option<f64> {
    if b.first().is_none_or(is_c_space) {
        return None;
    }
    let read = strtod(b);
    (read.len == b.len() && !read.out_of_range && !read.value.is_nan()).then_some(read.value)
}

/// C's `isspace` in the C locale.
fn is_c_space(c: &u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What glibc's `strtod` reads from the front of a C string.
struct Strtod {
    value: f64,
    /// Bytes read, the leading blanks included; 0 when no number was found.
    len: usize,
    /// `ERANGE` with an infinite or zero result: a finite number that
    /// overflowed, or a nonzero one that underflowed to zero. (glibc also
    /// flags some subnormal results; Redis ignores those, and so does this.)
    out_of_range: bool,
}

/// glibc's `strtod` in the C locale, on `s` up to its first NUL: leading
/// blanks, a sign, then `inf`, `infinity`, `nan`, `nan(chars)`, a decimal
/// number (`1.5e3`, `.5`, `1.`) or a hexadecimal one (`0x1.8p3`, `0x10`,
/// `0x.8`), correctly rounded; the longest such prefix is read.
fn strtod(s: &[u8]) -> Strtod {
    let s = c_str(s);
    let none = Strtod {
        value: 0.0,
        len: 0,
        out_of_range: false,
    };
    let mut i = s.iter().position(|c| !is_c_space(c)).unwrap_or(s.len());
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let rest = &s[i..];
    let starts =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    let sign = |x: f64| if negative { -x } else { x };
    let done = |value: f64, len: usize, out_of_range: bool| Strtod {
        value: sign(value),
        len,
        out_of_range,
    };
    if starts(b"infinity") {
        return done(f64::INFINITY, i + 8, false);
    }
    if starts(b"inf") {
        return done(f64::INFINITY, i + 3, false);
    }
    if starts(b"nan") {
        // An optional `(n-char-sequence)`, read only when it is closed.
        let tail = &rest[3..];
        let chars = tail
            .iter()
            .skip(1)
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_');
        let n = chars.count();
        let closed = tail.first() == Some(&b'(') && tail.get(n + 1) == Some(&b')');
        return done(f64::NAN, i + 3 + if closed { n + 2 } else { 0 }, false);
    }
    let hex_digit = |at: usize| rest.get(at).is_some_and(u8::is_ascii_hexdigit);
    if starts(b"0x") && (hex_digit(2) || (rest.get(2) == Some(&b'.') && hex_digit(3))) {
        let (value, len, out_of_range) = hex_float(&rest[2..]);
        return done(value, i + 2 + len, out_of_range);
    }
    let digits = |from: usize| {
        rest[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let whole = digits(0);
    let mut end = whole;
    let mut frac = 0;
    if rest.get(end) == Some(&b'.') {
        frac = digits(end + 1);
        end += 1 + frac;
    }
    if whole + frac == 0 {
        return none;
    }
    let mantissa_end = end;
    if matches!(rest.get(end), Some(b'e' | b'E')) {
        let sign_len = usize::from(matches!(rest.get(end + 1), Some(b'+' | b'-')));
        let exp = digits(end + 1 + sign_len);
        if exp > 0 {
            end += 1 + sign_len + exp;
        }
    }
    // The prefix is ASCII digits, a dot and an exponent, which Rust's own
    // correctly rounded parser reads the same way.
    let text = std::str::from_utf8(&rest[..end]).unwrap_or("0");
    let value: f64 = text.parse().unwrap_or(0.0);
    let nonzero = rest[..mantissa_end]
        .iter()
        .any(|c| matches!(c, b'1'..=b'9'));
    let out_of_range = value.is_infinite() || (value == 0.0 && nonzero);
    done(value, i + end, out_of_range)
}

/// A hexadecimal float's digits after `0x` (at least one hex digit, maybe a
/// dot, then an optional binary exponent `p-3`): its value rounded to the
/// nearest double, ties to even, the bytes read, and whether it overflowed
/// or underflowed to zero.
fn hex_float(s: &[u8]) -> (f64, usize, bool) {
    // The value is (mantissa + a sticky bit below it) * 2^exp2; the mantissa
    // keeps up to 60 significant bits, more than a double's 53 and a guard.
    let (mut mantissa, mut sticky, mut exp2) = (0u64, false, 0i64);
    let mut i = 0;
    let mut after_dot = false;
    while let Some(&c) = s.get(i) {
        if c == b'.' && !after_dot {
            after_dot = true;
            i += 1;
            continue;
        }
        let Some(d) = (c as char).to_digit(16) else {
            break;
        };
        if mantissa < 1 << 60 {
            mantissa = mantissa * 16 + u64::from(d);
            exp2 -= if after_dot { 4 } else { 0 };
        } else {
            sticky |= d != 0;
            exp2 += if after_dot { 0 } else { 4 };
        }
        i += 1;
    }
    if matches!(s.get(i), Some(b'p' | b'P')) {
        let sign_len = usize::from(matches!(s.get(i + 1), Some(b'+' | b'-')));
        let from = i + 1 + sign_len;
        let n = s[from.min(s.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n > 0 {
            // Saturating: past a few thousand the result is 0 or infinite anyway.
            let e = s[from..from + n]
                .iter()
                .fold(0i64, |e, c| (e * 10 + i64::from(c - b'0')).min(1 << 20));
            exp2 += if s[i + 1] == b'-' { -e } else { e };
            i = from + n;
        }
    }
    if mantissa == 0 {
        return (0.0, i, false);
    }
    let bits = 64 - i64::from(mantissa.leading_zeros());
    let top = exp2 + bits - 1;
    if top > 1023 {
        return (f64::INFINITY, i, true);
    }
    // The weight of the result's last bit: 53 bits below the top, but never
    // under the smallest subnormal's.
    let mut lsb = (top - 52).max(-1074);
    let shift = lsb - exp2;
    let mut kept = if shift <= 0 {
        mantissa << -shift
    } else if shift > 65 {
        0
    } else {
        let wide = u128::from(mantissa);
        let kept = (wide >> shift) as u64;
        let rest = wide & ((1 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let up = rest > half || (rest == half && (sticky || kept & 1 == 1));
        kept + u64::from(up)
    };
    if kept == 1 << 53 {
        kept >>= 1;
        lsb += 1;
    }
    if kept == 0 {
        return (0.0, i, true);
    }
    let value = if kept >= 1 << 52 {
        let biased = lsb + 52 + 1023;
        if biased >= 2047 {
            return (f64::INFINITY, i, true);
        }
        f64::from_bits((biased as u64) << 52 | (kept & ((1 << 52) - 1)))
    } else {
        f64::from_bits(kept)
    };
    (value, i, false)
}

/// Formats a double as Redis 7.2+ replies it (`d2string`): an integral
/// value within ±2^62 as an integer (`4500000000`, `100000000`), any other
/// with `fpconv_dtoa`'s shortest round-trip digits, laid out by its
/// `emit_digits` rules: plain integers up to 7 trailing zeros, plain
/// decimals unless tiny, otherwise `1.5e-7` / `1e+20` (no exponent padding). Redis gets its digits from Grisu2, which
/// on rare values is not shortest; this uses the truly shortest digits.
pub(super) fn format_double(x: f64) -> String {
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x.is_infinite() {
        return format!("{sign}inf");
    }
    if x == 0.0 {
        return format!("{sign}0");
    }
    // `d2string` prints an integral value within ±(LLONG_MAX / 2) as an
    // integer first (`double2ll`), whatever `fpconv_dtoa` would make of it.
    let half = (i64::MAX / 2) as f64;
    if x.fract() == 0.0 && (-half..=half).contains(&x) {
        return (x as i64).to_string();
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
///
/// Redis's `zslParseRange` calls bare `strtod` on the C string and only
/// checks that it stopped at the terminating NUL and did not read NaN, so
/// unlike `string2d` it takes leading whitespace, out-of-range values
/// (`1e400` is inf), stops at an embedded NUL, and reads an empty string
/// (`""`, or `(` alone) as 0.
fn parse_bound(b: &[u8]) -> Option<(f64, bool)> {
    let (text, excluded) = match b.strip_prefix(b"(") {
        Some(rest) => (rest, true),
        None => (b, false),
    };
    let text = c_str(text);
    let read = strtod(text);
    (read.len == text.len() && !read.value.is_nan()).then_some((read.value, excluded))
}

/// Whether `entry`'s deadline has passed at `now`: then it is gone.
fn expired(entry: &Entry, now: u64) -> bool {
    entry.expires_at.is_some_and(|d| now_ms(now) > d)
}

/// Redis's clock (`commandTimeSnapshot()`): whole milliseconds.
fn now_ms(now_ns: u64) -> i64 {
    (now_ns / NS_PER_MS) as i64
}

/// Turns a relative TTL or absolute unix time into a deadline in unix ms,
/// with Redis's overflow checks. As in Redis, a relative TTL counts from
/// `now` truncated to the millisecond, so deadlines, PTTL and the NX/XX/GT/LT
/// comparisons all agree with Redis to the millisecond.
fn deadline(now_ns: u64, amount: i64, unit_ms: i64, absolute: bool) -> Option<i64> {
    let ms = i128::from(amount) * i128::from(unit_ms);
    let base = if absolute { 0 } else { now_ms(now_ns) };
    i64::try_from(ms).ok().and_then(|ms| ms.checked_add(base))
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
    /// Estimated bytes held: every key and element with its bytes and a
    /// collection entry's overhead. Walks the whole keyspace: called once
    /// every many events (see `sim::budget::MEMORY_CHECK_EVERY`).
    pub fn retained_bytes(&self) -> u64 {
        use crate::sim::budget::ENTRY_OVERHEAD as O;
        let bytes = |b: &[u8]| b.len() as u64 + O;
        self.keys
            .iter()
            .map(|(k, e)| {
                bytes(k)
                    + std::mem::size_of::<Entry>() as u64
                    + match &e.value {
                        Value::Str(s) => bytes(s),
                        Value::List(l) => l.iter().map(|v| bytes(v)).sum(),
                        Value::Hash(h) => h.iter().map(|(f, v)| bytes(f) + bytes(v)).sum(),
                        Value::ZSet(z) => z.scores.keys().map(|m| 2 * bytes(m) + 24).sum(),
                    }
            })
            .sum()
    }

    /// Runs one command (`args[0]` is its name, any case) and returns Redis's reply.
    pub fn execute(&mut self, now_ns: u64, args: &[impl AsRef<[u8]>]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        self.call(now_ns, &args)
    }

    /// As `execute`, with the arguments borrowed as they are: what a caller
    /// that builds its commands from slices uses, without copying them.
    pub fn call(&mut self, now_ns: u64, args: &[&[u8]]) -> Resp {
        self.call_named(now_ns, args).0
    }

    /// As `call`, also saying which command ran (None when it was refused
    /// before running), so a caller that logs writes need not look the
    /// name up again.
    pub fn call_named(&mut self, now_ns: u64, args: &[&[u8]]) -> (Resp, Option<Ran>) {
        let i = match check_command_index(args) {
            Ok(i) => i,
            Err(reply) => return (reply, None),
        };
        let name = COMMANDS[i].0;
        let reply = self.dispatch(now_ns, name, args).unwrap_or_else(|e| e);
        // Redis never keeps an empty list, hash or sorted set. Commands that
        // take elements out remove a key they emptied themselves, except
        // LMOVE, whose source may also be its destination: its two keys
        // (named first) are checked once it is done.
        let keys = if name == "lmove" { 2 } else { 1 };
        if name == "lmove" {
            for arg in args.iter().skip(1).take(keys) {
                if let EntryRef::Occupied(e) = self.keys.entry_ref(*arg)
                    && e.get().value.is_empty_aggregate()
                {
                    e.remove();
                }
            }
        } else {
            debug_assert!(
                args.iter().skip(1).take(keys).all(|k| self
                    .keys
                    .get(*k)
                    .is_none_or(|e| !e.value.is_empty_aggregate())),
                "{name} left an empty aggregate"
            );
        }
        let ran = Ran {
            name,
            read_only: READ_ONLY_COMMANDS[i],
        };
        (reply, Some(ran))
    }

    /// The commands that rebuild this keyspace as it stands at `now_ns`, as
    /// Redis's AOF rewrite writes them (`rewriteAppendOnlyFile`): per key,
    /// one SET, or RPUSH / HSET / ZADD carrying at most 64 elements each
    /// (`AOF_REWRITE_ITEMS_PER_CMD`), then PEXPIREAT with the absolute
    /// deadline if it has one. Keys already expired are left out. Every
    /// command is independent of the time it runs at: scores are written
    /// with Rust's shortest round-trip digits, deadlines as unix ms.
    pub fn rewrite_commands(&self, now_ns: u64, mut emit: impl FnMut(&[&[u8]])) {
        const ITEMS_PER_CMD: usize = 64;
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 2 * ITEMS_PER_CMD);
        for (key, e) in sorted(&self.keys) {
            if e.expires_at.is_some_and(|d| now_ms(now_ns) > d) {
                continue;
            }
            match &e.value {
                Value::Str(v) => emit(&[b"SET", key, v]),
                Value::List(l) => {
                    let items: Vec<&[u8]> = l.iter().map(Vec::as_slice).collect();
                    for chunk in items.chunks(ITEMS_PER_CMD) {
                        args.clear();
                        args.extend([b"RPUSH".as_slice(), key]);
                        args.extend(chunk);
                        emit(&args);
                    }
                }
                Value::Hash(h) => {
                    let pairs = sorted(h);
                    for chunk in pairs.chunks(ITEMS_PER_CMD) {
                        args.clear();
                        args.extend([b"HSET".as_slice(), key]);
                        args.extend(chunk.iter().flat_map(|(f, v)| [f.as_slice(), v.as_slice()]));
                        emit(&args);
                    }
                }
                Value::ZSet(z) => {
                    let members = sorted(&z.scores);
                    for chunk in members.chunks(ITEMS_PER_CMD) {
                        let scores: Vec<String> = chunk
                            .iter()
                            .map(|(_, b)| f64::from_bits(**b).to_string())
                            .collect();
                        let mut zadd: Vec<&[u8]> = vec![b"ZADD", key];
                        zadd.extend(
                            chunk
                                .iter()
                                .zip(&scores)
                                .flat_map(|((m, _), s)| [s.as_bytes(), &m[..]]),
                        );
                        emit(&zadd);
                    }
                }
            }
            if let Some(d) = e.expires_at {
                emit(&[b"PEXPIREAT", key, d.to_string().as_bytes()]);
            }
        }
    }

    /// Removes every key whose deadline has passed (Redis's active expiry).
    pub fn expire_due(&mut self, now_ns: u64) {
        self.keys
            .retain(|_, e| e.expires_at.is_none_or(|d| now_ms(now_ns) <= d));
    }

    fn dispatch(&mut self, now: u64, name: &str, a: &[&[u8]]) -> Reply {
        match name {
            "get" => self.get(now, a[1]),
            "set" => self.set(now, a),
            "del" => Ok(int(a[1..].iter().filter(|k| self.del(now, k)).count())),
            "exists" => Ok(int(a[1..]
                .iter()
                .filter(|k| self.live(now, k).is_some())
                .count())),
            "incr" => self.incr_by(now, a[1], 1),
            "incrby" => self.incr_by(now, a[1], int_arg(a[2])?),
            "lpush" | "rpush" => self.push(now, name == "lpush", a),
            "lpop" | "rpop" => self.pop(now, name == "lpop", a),
            "lmove" => self.lmove(now, a),
            "lrange" => self.lrange(now, a),
            "llen" => Ok(int(self.list(now, a[1])?.map_or(0, |l| l.len()))),
            "lrem" => self.lrem(now, a),
            "hset" => self.hset(now, a),
            "hget" => Ok(Resp::Bulk(
                self.hash(now, a[1])?.and_then(|h| h.get(a[2]).cloned()),
            )),
            "hdel" => {
                let Some(h) = self.hash(now, a[1])? else {
                    return Ok(Resp::Integer(0));
                };
                let removed = a[2..].iter().filter(|f| h.remove(**f).is_some()).count();
                let emptied = h.is_empty();
                self.forget_if(emptied, a[1]);
                Ok(int(removed))
            }
            "hgetall" => {
                let h = self.hash(now, a[1])?;
                let pairs = h.as_deref().map(sorted).unwrap_or_default();
                let flat = pairs.into_iter().flat_map(|(f, v)| [bulk(f), bulk(v)]);
                Ok(Resp::Array(Some(flat.collect())))
            }
            "hincrby" => self.hincrby(now, a),
            "zadd" => self.zadd(now, a),
            "zrem" => {
                let Some(z) = self.zset(now, a[1])? else {
                    return Ok(Resp::Integer(0));
                };
                let removed = a[2..].iter().filter(|m| z.remove(m)).count();
                let emptied = z.scores.is_empty();
                self.forget_if(emptied, a[1]);
                Ok(int(removed))
            }
            "zrangebyscore" => self.zrangebyscore(now, a),
            "zscore" => Ok(Resp::Bulk(
                self.zset(now, a[1])?
                    .and_then(|z| z.scores.get(a[2]))
                    .map(|&b| format_double(f64::from_bits(b)).into_bytes()),
            )),
            "expire" => self.expire(now, a, 1000, "expire"),
            "pexpire" => self.expire(now, a, 1, "pexpire"),
            "pexpireat" => self.expire(now, a, 1, "pexpireat"),
            "ttl" | "pttl" => Ok(Resp::Integer(self.ttl(now, a[1], name == "pttl"))),
            // Transactions belong to a connection, not to the keyspace.
            _ => Err(Resp::Error(
                format!(
                    "ERR {} is only supported through a Connection",
                    name.to_uppercase()
                )
                .into_bytes(),
            )),
        }
    }

    /// The live entry at `key`, removing it first if it has expired.
    /// One lookup, whatever it finds: every command makes at least one.
    fn live(&mut self, now: u64, key: &[u8]) -> Option<&mut Entry> {
        match self.keys.entry_ref(key) {
            EntryRef::Vacant(_) => None,
            EntryRef::Occupied(e) if expired(e.get(), now) => {
                e.remove();
                None
            }
            EntryRef::Occupied(e) => Some(e.into_mut()),
        }
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
        let fresh = Entry {
            value: empty,
            expires_at: None,
        };
        // One lookup; the key is copied only when it is new.
        let entry = match self.keys.entry_ref(key) {
            EntryRef::Occupied(e) if expired(e.get(), now) => {
                let entry = e.into_mut();
                *entry = fresh;
                entry
            }
            EntryRef::Occupied(e) => e.into_mut(),
            EntryRef::Vacant(e) => e.insert(fresh),
        };
        &mut entry.value
    }

    fn get(&mut self, now: u64, key: &[u8]) -> Reply {
        Ok(Resp::Bulk(self.string(now, key)?.map(|s| s.clone())))
    }

    fn set(&mut self, now: u64, a: &[&[u8]]) -> Reply {
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
                (b"EX" | b"PX" | b"EXAT" | b"PXAT", Some(v)) if !keep_ttl => {
                    let unit = if opt.starts_with(b"E") { 1000 } else { 1 };
                    let absolute = opt.ends_with(b"AT");
                    // Redis refuses mixing EX/PX/EXAT/PXAT, but the same one
                    // again is accepted and the last one wins (the earlier
                    // value is never even parsed).
                    if expire.is_some_and(|(_, u, abs)| (u, abs) != (unit, absolute)) {
                        return Err(err(SYNTAX));
                    }
                    expire = Some((v, unit, absolute));
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
            Some(self.string(now, a[1])?.map(|s| s.clone()))
        } else {
            None
        };
        let exists = self.live(now, a[1]).is_some();
        if (nx && exists) || (xx && !exists) {
            return Ok(Resp::Bulk(old.flatten()));
        }
        let kept = self.live(now, a[1]).and_then(|e| e.expires_at);
        let expires_at = if keep_ttl { kept } else { deadline };
        let entry = Entry {
            value: Value::Str(a[2].to_vec()),
            expires_at,
        };
        self.keys.insert(a[1].to_vec(), entry);
        Ok(old.map_or_else(ok, Resp::Bulk))
    }

    fn incr_by(&mut self, now: u64, key: &[u8], by: i64) -> Reply {
        let Value::Str(s) = self.value_or(now, key, Value::Str(b"0".to_vec())) else {
            return Err(err(WRONGTYPE));
        };
        let n = parse_i64(s).ok_or_else(|| err(NOT_INTEGER))?;
        let n = n.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
        s.clear();
        put_i64(s, n);
        Ok(Resp::Integer(n))
    }

    fn push(&mut self, now: u64, left: bool, a: &[&[u8]]) -> Reply {
        let Value::List(l) = self.value_or(now, a[1], Value::List(VecDeque::new())) else {
            return Err(err(WRONGTYPE));
        };
        for v in &a[2..] {
            if left {
                l.push_front(v.to_vec());
            } else {
                l.push_back(v.to_vec());
            }
        }
        Ok(int(l.len()))
    }

    fn pop(&mut self, now: u64, left: bool, a: &[&[u8]]) -> Reply {
        if a.len() > 3 {
            return Err(wrong_arity(if left { "lpop" } else { "rpop" }));
        }
        let count = match a.get(2) {
            None => None,
            // Redis's getPositiveLongFromObjectOrReply gives this one message
            // for a negative count and for one that is not an integer at all.
            Some(c) => match parse_i64(c) {
                Some(c) if c >= 0 => Some(c as usize),
                _ => return Err(err("ERR value is out of range, must be positive")),
            },
        };
        let Some(l) = self.list(now, a[1])? else {
            return Ok(match count {
                None => Resp::Bulk(None),
                Some(_) => Resp::Array(None),
            });
        };
        let mut take = || if left { l.pop_front() } else { l.pop_back() };
        let reply = match count {
            None => Resp::Bulk(take()),
            Some(c) => {
                let items = (0..c).map_while(|_| take()).map(|v| Resp::Bulk(Some(v)));
                Resp::Array(Some(items.collect()))
            }
        };
        let emptied = l.is_empty();
        self.forget_if(emptied, a[1]);
        Ok(reply)
    }

    /// Removes `key` when `emptied`: Redis never keeps an empty list, hash
    /// or sorted set. Each command that takes elements out calls it, once
    /// it is done with the collection, so only a key it did empty costs a
    /// second lookup.
    fn forget_if(&mut self, emptied: bool, key: &[u8]) {
        if emptied {
            self.keys.remove(key);
        }
    }

    fn lmove(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        let (from_left, to_left) = (side(a[3])?, side(a[4])?);
        if self.list(now, a[1])?.is_none() {
            return Ok(Resp::Bulk(None));
        }
        // Redis checks the destination's type before popping anything.
        self.list(now, a[2])?;
        let Some(src) = self.list(now, a[1])? else {
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
        let Value::List(dst) = self.value_or(now, a[2], Value::List(VecDeque::new())) else {
            return Err(err(WRONGTYPE));
        };
        if to_left {
            dst.push_front(v.clone());
        } else {
            dst.push_back(v.clone());
        }
        Ok(Resp::Bulk(Some(v)))
    }

    fn lrange(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        let (start, stop) = (int_arg(a[2])?, int_arg(a[3])?);
        let Some(l) = self.list(now, a[1])? else {
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

    fn lrem(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        let count = int_arg(a[2])?;
        let Some(l) = self.list(now, a[1])? else {
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
        let emptied = l.is_empty();
        self.forget_if(emptied, a[1]);
        Ok(int(removed))
    }

    fn hset(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        if !a.len().is_multiple_of(2) {
            return Err(wrong_arity("hset"));
        }
        let Value::Hash(h) = self.value_or(now, a[1], Value::Hash(Map::default())) else {
            return Err(err(WRONGTYPE));
        };
        let mut added = 0;
        for fv in a[2..].chunks(2) {
            // An existing field keeps its key; only a new one copies it.
            match h.get_mut(fv[0]) {
                // The old value's buffer takes the new bytes: no allocation
                // when it is big enough, as a counter's always is.
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(fv[1]);
                }
                None => {
                    h.insert(fv[0].to_vec(), fv[1].to_vec());
                    added += 1;
                }
            }
        }
        Ok(int(added))
    }

    fn hincrby(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        let by = int_arg(a[3])?;
        let Value::Hash(h) = self.value_or(now, a[1], Value::Hash(Map::default())) else {
            return Err(err(WRONGTYPE));
        };
        let cur = match h.get(a[2]) {
            None => 0,
            Some(v) => parse_i64(v).ok_or_else(|| err("ERR hash value is not an integer"))?,
        };
        let n = cur.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
        match h.get_mut(a[2]) {
            Some(v) => {
                v.clear();
                put_i64(v, n);
            }
            None => {
                let mut v = Vec::with_capacity(20);
                put_i64(&mut v, n);
                h.insert(a[2].to_vec(), v);
            }
        }
        Ok(Resp::Integer(n))
    }

    fn zadd(&mut self, now: u64, a: &[&[u8]]) -> Reply {
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
            .map(|p| parse_f64(p[0]).ok_or_else(|| err(NOT_FLOAT)))
            .collect::<Result<Vec<f64>, Resp>>()?;
        let fresh = self.zset(now, a[1])?.is_none();
        if fresh && xx {
            return Ok(if incr {
                Resp::Bulk(None)
            } else {
                Resp::Integer(0)
            });
        }
        let Value::ZSet(z) = self.value_or(now, a[1], Value::ZSet(ZSet::default())) else {
            return Err(err(WRONGTYPE));
        };
        // Redis 7.2 picks the encoding from the command's size: a new set is
        // a skiplist at once if the command brings too many pairs or too long
        // a member (zsetTypeCreate), an existing one turns on too many pairs
        // (zsetTypeMaybeConvert); past that, adding a member converts it.
        let longest = pairs.chunks(2).map(|p| p[1].len()).max().unwrap_or(0);
        let many = scores.len() > LISTPACK_ENTRIES;
        z.skiplist |= many || (fresh && longest > LISTPACK_VALUE);
        let (mut added, mut changed) = (0, 0);
        let mut last = None;
        for (pair, &score) in pairs.chunks(2).zip(&scores) {
            let member = &pair[1];
            match z.scores.get(*member).map(|&b| f64::from_bits(b)) {
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
                    if z.scores.len() + 1 > LISTPACK_ENTRIES || member.len() > LISTPACK_VALUE {
                        z.skiplist = true;
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

    fn zrangebyscore(&mut self, now: u64, a: &[&[u8]]) -> Reply {
        let (mut with_scores, mut offset, mut count) = (false, 0i64, -1i64);
        let mut i = 4;
        while i < a.len() {
            if a[i].eq_ignore_ascii_case(b"WITHSCORES") {
                with_scores = true;
                i += 1;
            } else if a[i].eq_ignore_ascii_case(b"LIMIT") && i + 2 < a.len() {
                offset = int_arg(a[i + 1])?;
                count = int_arg(a[i + 2])?;
                i += 3;
            } else {
                return Err(err(SYNTAX));
            }
        }
        // Redis parses the options before the range, so syntax errors win.
        let bounds = parse_bound(a[2]).zip(parse_bound(a[3]));
        let Some(((min, min_ex), (max, max_ex))) = bounds else {
            return Err(err("ERR min or max is not a float"));
        };
        let Some(z) = self.zset(now, a[1])? else {
            return Ok(Resp::Array(Some(Vec::new())));
        };
        if offset < 0 {
            return Ok(Resp::Array(Some(Vec::new())));
        }
        let take = usize::try_from(count).unwrap_or(usize::MAX);
        let from = (Score::new(min), Member::from(&[][..]));
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

    fn expire(&mut self, now: u64, a: &[&[u8]], unit_ms: i64, name: &str) -> Reply {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for opt in &a[3..] {
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                _ => {
                    let msg = [&b"ERR Unsupported option "[..], c_str(opt)].concat();
                    return Err(error_format(&msg));
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
        let amount = int_arg(a[2])?;
        let absolute = name == "pexpireat";
        let when = deadline(now, amount, unit_ms, absolute).ok_or_else(|| {
            Resp::Error(format!("ERR invalid expire time in '{name}' command").into_bytes())
        })?;
        let Some(entry) = self.live(now, a[1]) else {
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
        // Redis's checkAlreadyExpired: a deadline not after now deletes the key.
        if when <= now_ms(now) {
            self.keys.remove(a[1]);
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
        // `live` removed the key if `d < now_ms`, so this is never negative.
        let ms = d - now_ms(now);
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
        let borrowed: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let checked = check_command(&borrowed);
        if let Err(Resp::Error(reason)) = &checked
            && args
                .first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"exec"))
        {
            // Redis's rejectCommand: an EXEC refused before it runs (here, for
            // its arity) aborts and ends the transaction, in MULTI or not
            // (execCommandAbort). Its reason is the refusal without the `ERR `
            // that addReplyError would have put in front.
            self.queued = None;
            self.aborted = false;
            let reason = reason.strip_prefix(b"ERR ").unwrap_or(reason);
            let msg = [&b"EXECABORT Transaction discarded because of: "[..], reason].concat();
            return error_format(&msg);
        }
        let name = checked.as_ref().copied().unwrap_or("");
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
                    Resp::Simple(b"QUEUED".to_vec())
                }
            },
            (_, false) => store.call(now_ns, &borrowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed, lowered lookup finds exactly what a case-insensitive
    /// comparison with each name finds.
    #[test]
    fn command_lookup_matches_a_plain_case_insensitive_search() {
        let plain = |name: &[u8]| {
            COMMANDS
                .iter()
                .position(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        for (n, _) in COMMANDS {
            let lower = n.as_bytes().to_vec();
            let upper = lower.to_ascii_uppercase();
            let mixed: Vec<u8> = lower
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            let mut longer = lower.clone();
            longer.push(b'x');
            let mut padded = lower.clone();
            padded.push(0);
            names.extend([
                lower.clone(),
                upper,
                mixed,
                longer,
                padded,
                lower[1..].to_vec(),
            ]);
            // Neighbours of the letters in ASCII, which lowering must not touch.
            for b in [b'@', b'[', b'`', b'{', b'_', 0xc1] {
                let mut odd = lower.clone();
                odd[0] = b;
                names.push(odd);
            }
        }
        names.extend([
            Vec::new(),
            b"x".to_vec(),
            vec![b'a'; 17],
            vec![0xff; 16],
            b"getgetgetgetgetge".to_vec(),
        ]);
        for name in &names {
            assert_eq!(
                command_index(name),
                plain(name),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

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

    fn e_bytes(s: &[u8]) -> Resp {
        Resp::Error(s.to_vec())
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
        // Redis's clock is whole milliseconds: the key lives through ms 1500.
        let last_ns = 1501 * MS - 1;
        assert_eq!(s.execute(last_ns, &cmd("PTTL a")), i(0));
        assert_eq!(
            s.execute(last_ns, &cmd("GET a")),
            b("v"),
            "alive through its deadline's millisecond"
        );
        assert_eq!(s.execute(1501 * MS, &cmd("GET a")), nil());
        assert_eq!(s.execute(1501 * MS, &cmd("TTL a")), i(-2));
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
            arr(&["m", "0", "p", "0"]),
            "a small set stores -0 as 0"
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
            (1e8, "100000000"),
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

    fn raw(args: &[&[u8]]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    fn arity(name: &str) -> Resp {
        e(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    }

    #[test]
    fn arity_errors_name_the_command_in_lowercase() {
        let mut s = Store::default();
        let cases = [
            ("get", "GET"),
            ("get", "gEt a b"),
            ("set", "SET k"),
            ("del", "DEL"),
            ("exists", "EXISTS"),
            ("incr", "INCR"),
            ("incr", "INCR a b"),
            ("incrby", "INCRBY k"),
            ("incrby", "INCRBY k 1 2"),
            ("lpush", "LPUSH l"),
            ("rpush", "RPUSH l"),
            ("lpop", "LPOP"),
            ("rpop", "RPOP"),
            // Past the table's "at least 2", LPOP/RPOP check "at most 3" themselves.
            ("lpop", "LPOP l 1 2"),
            ("rpop", "rpop l 1 2"),
            ("lmove", "LMOVE a b LEFT"),
            ("lmove", "LMOVE a b LEFT LEFT x"),
            ("lrange", "LRANGE l 0"),
            ("llen", "LLEN"),
            ("lrem", "LREM l 0"),
            // HSET takes field-value pairs: an odd count is an arity error too.
            ("hset", "HSET h f"),
            ("hset", "HSET h f v g"),
            ("hget", "HGET h"),
            ("hdel", "HDEL h"),
            ("hgetall", "HGETALL"),
            ("hincrby", "HINCRBY h f"),
            ("zadd", "ZADD z 1"),
            ("zrem", "ZREM z"),
            ("zrangebyscore", "ZRANGEBYSCORE z 0"),
            ("zscore", "ZSCORE z"),
            ("expire", "EXPIRE k"),
            ("pexpire", "PEXPIRE k"),
            ("ttl", "TTL"),
            ("pttl", "PTTL k x"),
            ("multi", "MULTI x"),
            ("exec", "EXEC x"),
            ("discard", "DISCARD x"),
        ];
        for (name, line) in cases {
            assert_eq!(run(&mut s, line), arity(name), "{line}");
        }
        assert_eq!(s, Store::default(), "no arity error touches the keyspace");
        // Past the arity check, a malformed tail is the command's own error.
        assert_eq!(run(&mut s, "ZADD z NX 1"), e(SYNTAX));
    }

    #[test]
    fn set_options_parse_as_redis_does() {
        let mut s = Store::default();
        // The same expiry option again replaces the first; Redis does not
        // even parse the value it replaces.
        assert_eq!(run(&mut s, "SET k v EX 1 EX 2"), ok());
        assert_eq!(run(&mut s, "TTL k"), i(2));
        assert_eq!(run(&mut s, "SET k v PX 100 PX 200"), ok());
        assert_eq!(run(&mut s, "PTTL k"), i(200));
        assert_eq!(run(&mut s, "SET k v EX x EX 5"), ok());
        assert_eq!(run(&mut s, "TTL k"), i(5));
        assert_eq!(run(&mut s, "SET k v NX NX"), nil(), "exists: refused");
        assert_eq!(run(&mut s, "SET k w xx xx"), ok());
        // Two different expiry options, KEEPTTL with one, NX with XX, or an
        // option missing its value are syntax errors.
        for c in [
            "SET k v EX 5 PX 100",
            "SET k v PX 100 EX 5",
            "SET k v EXAT 10 PXAT 100",
            "SET k v EX 1 EXAT 10",
            "SET k v KEEPTTL EX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v XX NX",
            "SET k v PX",
            "SET k v GET EX",
        ] {
            assert_eq!(run(&mut s, c), e(SYNTAX), "{c}");
        }
        let bad_time = e("ERR invalid expire time in 'set' command");
        for c in [
            "SET k v PX 0",
            "SET k v PX -5",
            "SET k v EX -1",
            "SET k v EXAT 0",
            "SET k v EX 9223372036854776",
        ] {
            assert_eq!(run(&mut s, c), bad_time, "{c}");
        }
        assert_eq!(
            run(&mut s, "GET k"),
            b("w"),
            "a refused SET changes nothing"
        );
        assert_eq!(run(&mut s, "TTL k"), i(-1));
        // The largest TTLs that fit: EX up to LLONG_MAX / 1000, and any PX
        // whose sum with now still fits in a long long. Kept exactly.
        assert_eq!(run(&mut s, "SET big v EX 9223372036854775"), ok());
        assert_eq!(run(&mut s, "PTTL big"), i(9_223_372_036_854_775_000));
        assert_eq!(run(&mut s, "SET big v PX 9223372036854775807"), ok());
        assert_eq!(run(&mut s, "PTTL big"), i(i64::MAX));
        assert_eq!(
            s.execute(SEC, &cmd("SET big v PX 9223372036854775807")),
            bad_time,
            "now + PX overflows"
        );
        // The expiry is parsed before GET looks at the old value.
        run(&mut s, "RPUSH l a");
        assert_eq!(run(&mut s, "SET l v EX x GET"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "SET l v EX 0 GET"), bad_time);
        assert_eq!(run(&mut s, "SET l v GET"), wrongtype());
        assert_eq!(
            run(&mut s, "LLEN l"),
            i(1),
            "a failed SET GET changes nothing"
        );
    }

    #[test]
    fn incr_parses_strictly_and_detects_overflow() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "INCR n"), i(1), "a missing key counts from 0");
        assert_eq!(run(&mut s, "GET n"), b("1"), "and is stored as a string");
        assert_eq!(
            run(&mut s, "INCRBY n -9223372036854775808"),
            i(-9_223_372_036_854_775_807)
        );
        assert_eq!(run(&mut s, "INCRBY n -1"), i(i64::MIN));
        assert_eq!(run(&mut s, "INCRBY n -1"), e(OVERFLOW));
        assert_eq!(run(&mut s, "INCRBY n 9223372036854775807"), i(-1));
        run(&mut s, "SET m 1");
        assert_eq!(run(&mut s, "INCRBY m 9223372036854775807"), e(OVERFLOW));
        assert_eq!(run(&mut s, "GET m"), b("1"), "an overflow changes nothing");
        for by in ["9223372036854775808", "-9223372036854775809", "1.0", "-0"] {
            assert_eq!(
                run(&mut s, &format!("INCRBY m {by}")),
                e(NOT_INTEGER),
                "{by}"
            );
        }
        for v in [&b""[..], b"1 ", b"1\0", b"9223372036854775808"] {
            s.execute(0, &raw(&[b"SET", b"v", v]));
            assert_eq!(run(&mut s, "INCR v"), e(NOT_INTEGER), "{v:?}");
        }
        run(&mut s, "RPUSH l a");
        assert_eq!(
            run(&mut s, "INCRBY l x"),
            e(NOT_INTEGER),
            "the increment is parsed before the key's type is checked"
        );
        assert_eq!(run(&mut s, "INCRBY l 1"), wrongtype());
    }

    #[test]
    fn expire_options_and_edge_cases() {
        let mut s = Store::default();
        // Options are parsed first, then the amount, then the key looked up.
        assert_eq!(
            run(&mut s, "EXPIRE missing x YY"),
            e("ERR Unsupported option YY")
        );
        assert_eq!(run(&mut s, "EXPIRE missing x"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "EXPIRE missing -1"), i(0));
        assert_eq!(run(&mut s, "PEXPIRE missing 0"), i(0));

        run(&mut s, "SET k v");
        assert_eq!(run(&mut s, "EXPIRE k 10 XX"), i(0), "XX: no TTL yet");
        assert_eq!(
            run(&mut s, "EXPIRE k 10 GT"),
            i(0),
            "no TTL counts as infinite"
        );
        assert_eq!(run(&mut s, "TTL k"), i(-1));
        assert_eq!(run(&mut s, "EXPIRE k 10 LT"), i(1), "anything is less");
        assert_eq!(run(&mut s, "TTL k"), i(10));
        assert_eq!(run(&mut s, "EXPIRE k 20 NX"), i(0));
        assert_eq!(run(&mut s, "EXPIRE k 20 xx"), i(1));
        assert_eq!(run(&mut s, "EXPIRE k 20 GT"), i(0), "not greater");
        assert_eq!(run(&mut s, "EXPIRE k 20 LT"), i(0), "not less");
        assert_eq!(run(&mut s, "EXPIRE k 30 XX GT"), i(1), "XX goes with GT");
        assert_eq!(run(&mut s, "PTTL k"), i(30_000));

        let nx_with = "ERR NX and XX, GT or LT options at the same time are not compatible";
        let cases = [
            (
                "EXPIRE k 1 GT LT",
                "ERR GT and LT options at the same time are not compatible",
            ),
            ("EXPIRE k 1 NX GT", nx_with),
            ("PEXPIRE k 1 nx lt", nx_with),
            ("EXPIRE k 1 XX NX", nx_with),
            ("EXPIRE k x NX XX", nx_with),
            ("EXPIRE k 1 NX NOPE", "ERR Unsupported option NOPE"),
            (
                "EXPIRE k 9223372036854776",
                "ERR invalid expire time in 'expire' command",
            ),
            (
                "EXPIRE k -9223372036854776",
                "ERR invalid expire time in 'expire' command",
            ),
        ];
        for (c, msg) in cases {
            assert_eq!(run(&mut s, c), e(msg), "{c}");
        }
        // Within range on its own, but not once added to now.
        assert_eq!(
            s.execute(SEC, &cmd("PEXPIRE k 9223372036854775807")),
            e("ERR invalid expire time in 'pexpire' command")
        );
        assert_eq!(
            s.execute(SEC, &cmd("EXPIRE k 9223372036854775")),
            e("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(run(&mut s, "TTL k"), i(30), "errors change nothing");

        // A deadline not after now deletes the key, and still replies 1.
        assert_eq!(run(&mut s, "EXPIRE k -1"), i(1));
        assert_eq!(run(&mut s, "EXISTS k"), i(0));
        assert_eq!(run(&mut s, "TTL k"), i(-2));
        run(&mut s, "SET k v");
        assert_eq!(run(&mut s, "PEXPIRE k 0"), i(1));
        assert_eq!(run(&mut s, "GET k"), nil());
        run(&mut s, "SET k v");
        assert_eq!(run(&mut s, "EXPIRE k -5 GT"), i(0), "GT refuses first");
        assert_eq!(run(&mut s, "EXISTS k"), i(1));
        assert_eq!(run(&mut s, "EXPIRE k -5 LT"), i(1));
        assert_eq!(run(&mut s, "EXISTS k"), i(0));

        // Aggregates: writes keep the TTL; emptying the key drops it.
        run(&mut s, "RPUSH l a");
        assert_eq!(run(&mut s, "EXPIRE l 10"), i(1));
        assert_eq!(run(&mut s, "RPUSH l b"), i(2));
        assert_eq!(run(&mut s, "TTL l"), i(10), "a push keeps the TTL");
        assert_eq!(run(&mut s, "LPOP l 2"), arr(&["a", "b"]));
        assert_eq!(run(&mut s, "TTL l"), i(-2), "the emptied list is gone");
        run(&mut s, "RPUSH l c");
        assert_eq!(run(&mut s, "TTL l"), i(-1), "and its TTL with it");
        assert_eq!(run(&mut s, "EXPIRE l 10"), i(1));
        assert_eq!(run(&mut s, "SET l v"), ok());
        assert_eq!(run(&mut s, "TTL l"), i(-1), "SET replaces it, TTL and all");
        run(&mut s, "HSET h f v");
        assert_eq!(run(&mut s, "PEXPIRE h 5000"), i(1));
        assert_eq!(run(&mut s, "HINCRBY h n 1"), i(1));
        assert_eq!(run(&mut s, "PTTL h"), i(5000), "HINCRBY keeps the TTL");
    }

    #[test]
    fn expiry_counts_whole_milliseconds_as_redis_does() {
        let mut s = Store::default();
        // At 0.4 ms Redis's clock reads 0: PX 5 ends at 5 ms, and the key
        // lives through millisecond 5.
        s.execute(400_000, &cmd("SET k v PX 5"));
        assert_eq!(s.execute(400_000, &cmd("PTTL k")), i(5));
        assert_eq!(s.execute(3 * MS + 900_000, &cmd("PTTL k")), i(2));
        assert_eq!(s.execute(6 * MS - 1, &cmd("GET k")), b("v"));
        s.expire_due(6 * MS - 1);
        assert_eq!(
            s.execute(6 * MS - 1, &cmd("EXISTS k")),
            i(1),
            "the sweep agrees"
        );
        s.expire_due(6 * MS);
        assert_eq!(s, Store::default());
        // Two PEXPIREs within one millisecond set the same deadline, so GT
        // refuses the second; a millisecond later it is greater.
        s.execute(MS + 200_000, &cmd("SET g v"));
        assert_eq!(s.execute(MS + 200_000, &cmd("PEXPIRE g 100")), i(1));
        assert_eq!(s.execute(MS + 700_000, &cmd("PEXPIRE g 100 GT")), i(0));
        assert_eq!(s.execute(2 * MS, &cmd("PEXPIRE g 100 GT")), i(1));
        assert_eq!(s.execute(2 * MS, &cmd("PTTL g")), i(100));
        // A zero TTL deletes at once, whatever the sub-millisecond time.
        assert_eq!(s.execute(2 * MS + 999_999, &cmd("PEXPIRE g 0")), i(1));
        assert_eq!(s.execute(2 * MS + 999_999, &cmd("EXISTS g")), i(0));
        // TTL in seconds rounds half up.
        s.execute(0, &cmd("SET t v PX 1499"));
        assert_eq!(s.execute(0, &cmd("TTL t")), i(1));
        s.execute(0, &cmd("SET t v PX 1500"));
        assert_eq!(s.execute(0, &cmd("TTL t")), i(2));
    }

    #[test]
    fn list_argument_errors_come_before_type_and_existence() {
        let mut s = Store::default();
        let not_positive = e("ERR value is out of range, must be positive");
        // LPOP/RPOP parse the count first, with one message for a negative
        // count and for one that is not an integer.
        for c in [
            "LPOP none x",
            "RPOP none -1",
            "LPOP none -0",
            "LPOP none 1.5",
        ] {
            assert_eq!(run(&mut s, c), not_positive, "{c}");
        }
        assert_eq!(
            run(&mut s, "LPOP none 0"),
            Resp::Array(None),
            "missing key with a count: null array, even for 0"
        );
        assert_eq!(run(&mut s, "RPOP none"), nil());
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "LPOP str x"), not_positive);
        assert_eq!(run(&mut s, "RPOP str 1"), wrongtype());
        assert_eq!(run(&mut s, "LRANGE str x 1"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "LRANGE str 0 y"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "LREM str x a"), e(NOT_INTEGER));
        assert_eq!(run(&mut s, "LMOVE str none UP LEFT"), e(SYNTAX));
        assert_eq!(
            run(&mut s, "LMOVE none str LEFT DOWN"),
            e(SYNTAX),
            "directions are checked before the keys"
        );
        assert_eq!(run(&mut s, "LMOVE str none LEFT LEFT"), wrongtype());
        assert_eq!(
            run(&mut s, "LMOVE none str LEFT LEFT"),
            nil(),
            "a missing source moves nothing, whatever the destination"
        );
        assert_eq!(run(&mut s, "EXISTS none"), i(0));

        // LPUSH pushes each value at the head in turn and replies the
        // length; RPOP with a count pops tail first.
        assert_eq!(run(&mut s, "LPUSH l a b c"), i(3));
        assert_eq!(run(&mut s, "LRANGE l 0 -1"), arr(&["c", "b", "a"]));
        assert_eq!(run(&mut s, "RPOP l 2"), arr(&["a", "b"]));
        assert_eq!(run(&mut s, "LPOP l 0"), arr(&[]), "existing key, count 0");
        assert_eq!(
            run(&mut s, "LRANGE l -9223372036854775808 9223372036854775807"),
            arr(&["c"])
        );
        assert_eq!(run(&mut s, "LPOP l 1"), arr(&["c"]));
        assert_eq!(run(&mut s, "EXISTS l"), i(0), "emptied by a counted pop");
    }

    #[test]
    fn hash_increments_and_replies() {
        let mut s = Store::default();
        assert_eq!(run(&mut s, "HINCRBY h n 3"), i(3), "creates key and field");
        assert_eq!(run(&mut s, "HGET h n"), b("3"));
        assert_eq!(run(&mut s, "HSET h n 5"), i(0), "an update adds no field");
        assert_eq!(run(&mut s, "HGETALL h"), arr(&["n", "5"]));
        run(
            &mut s,
            "HSET h max 9223372036854775807 min -9223372036854775808",
        );
        assert_eq!(run(&mut s, "HINCRBY h max 1"), e(OVERFLOW));
        assert_eq!(run(&mut s, "HINCRBY h min -1"), e(OVERFLOW));
        assert_eq!(run(&mut s, "HINCRBY h max -1"), i(i64::MAX - 1));
        assert_eq!(
            run(&mut s, "HINCRBY h n 9223372036854775808"),
            e(NOT_INTEGER)
        );
        let not_int = e("ERR hash value is not an integer");
        for v in [&b"-0"[..], b"01", b"1.5", b"+1", b"x", b"", b" 1"] {
            s.execute(0, &raw(&[b"HSET", b"h", b"f", v]));
            assert_eq!(run(&mut s, "HINCRBY h f 1"), not_int, "{v:?}");
        }
        run(&mut s, "SET str v");
        assert_eq!(
            run(&mut s, "HINCRBY str f x"),
            e(NOT_INTEGER),
            "the increment is parsed before the key's type is checked"
        );
        assert_eq!(run(&mut s, "HSET str f"), arity("hset"), "arity first too");
        run(&mut s, "HSET h2 a 1");
        assert_eq!(run(&mut s, "HDEL h2 a a"), i(1), "a field is deleted once");
        assert_eq!(run(&mut s, "EXISTS h2"), i(0));
    }

    #[test]
    fn zadd_scores_and_flags_as_redis() {
        let mut s = Store::default();
        // Scores parse as string2d: strtod's syntax, but no NaN, no overflow
        // to infinity or underflow to zero, no blanks.
        for bad in [
            &b"1e400"[..],
            b"-1e400",
            b"1e-400",
            b"nan",
            b"1,5",
            b"",
            b" 1",
            b"1 ",
        ] {
            assert_eq!(
                s.execute(0, &raw(&[b"ZADD", b"z", bad, b"m"])),
                e(NOT_FLOAT),
                "{bad:?}"
            );
        }
        assert_eq!(run(&mut s, "EXISTS z"), i(0), "a bad score adds nothing");
        assert_eq!(run(&mut s, "ZADD z inf a -Infinity b +inf c 1 d"), i(4));
        assert_eq!(run(&mut s, "ZSCORE z b"), b("-inf"));
        assert_eq!(run(&mut s, "ZSCORE z c"), b("inf"));
        assert_eq!(
            run(&mut s, "ZADD z INCR -inf a"),
            e("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(run(&mut s, "ZSCORE z a"), b("inf"), "unchanged");

        // With INCR, a member left alone replies nil.
        assert_eq!(run(&mut s, "ZADD z NX INCR 1 d"), nil());
        assert_eq!(run(&mut s, "ZADD z XX INCR 1 nope"), nil());
        assert_eq!(run(&mut s, "ZADD z GT INCR -1 d"), nil());
        assert_eq!(run(&mut s, "ZADD z LT INCR -1 d"), b("0"));
        assert_eq!(run(&mut s, "ZADD none XX INCR 1 a"), nil());
        assert_eq!(run(&mut s, "EXISTS none"), i(0));

        // Check order: pairs, NX+XX, GT/LT/NX, INCR with several pairs.
        let cases = [
            ("ZADD z NX XX 1 a 2", SYNTAX),
            (
                "ZADD z NX XX INCR 1 a 2 b",
                "ERR XX and NX options at the same time are not compatible",
            ),
            (
                "ZADD z gt lt INCR 1 a 2 b",
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                "ZADD z nx gt 1 a",
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                "ZADD z INCR 1 a 2 b",
                "ERR INCR option supports a single increment-element pair",
            ),
        ];
        for (c, msg) in cases {
            assert_eq!(run(&mut s, c), e(msg), "{c}");
        }
        // All of it before the key's type is looked at.
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "ZADD str abc a"), e(NOT_FLOAT));
        assert_eq!(
            run(&mut s, "ZADD str NX XX 1 a"),
            e("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(run(&mut s, "ZADD str 1 a"), wrongtype());

        // GT and LT still add new members; they only gate updates.
        assert_eq!(run(&mut s, "ZADD g GT 5 m"), i(1));
        assert_eq!(run(&mut s, "ZADD g LT CH 6 m"), i(0));
        assert_eq!(run(&mut s, "ZADD g GT CH 6 m"), i(1));
        assert_eq!(run(&mut s, "ZREM g m m"), i(1), "a member is removed once");
        assert_eq!(run(&mut s, "EXISTS g"), i(0));
    }

    #[test]
    fn zrangebyscore_bounds_parse_as_strtod() {
        let mut s = Store::default();
        run(&mut s, "ZADD r 0 zero 1 one 2 two");
        let q = |s: &mut Store, min: &[u8], max: &[u8]| {
            s.execute(0, &raw(&[b"ZRANGEBYSCORE", b"r", min, max]))
        };
        assert_eq!(
            q(&mut s, b"(", b"1"),
            arr(&["one"]),
            "'(' alone is an open 0"
        );
        assert_eq!(q(&mut s, b"", b"0"), arr(&["zero"]), "an empty bound is 0");
        assert_eq!(
            q(&mut s, b" \t1", b"+2"),
            arr(&["one", "two"]),
            "strtod skips leading blanks"
        );
        assert_eq!(
            q(&mut s, b"1\0junk", b"1"),
            arr(&["one"]),
            "and stops at a NUL, the end of the C string"
        );
        assert_eq!(
            q(&mut s, b"-1e400", b"(1e400"),
            arr(&["zero", "one", "two"]),
            "no range check: overflow reads as infinity"
        );
        let not_float = e("ERR min or max is not a float");
        let bad: [(&[u8], &[u8]); 6] = [
            (b"1 ", b"2"),
            (b" ", b"2"),
            (b"nan", b"2"),
            (b"0", b"(nan"),
            (b"((1", b"2"),
            (b"1", b"2x"),
        ];
        for (min, max) in bad {
            assert_eq!(q(&mut s, min, max), not_float, "{min:?} {max:?}");
        }

        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE r -inf +inf withscores limit 1 1"),
            arr(&["one", "1"])
        );
        assert_eq!(run(&mut s, "ZRANGEBYSCORE r -inf +inf LIMIT 0 0"), arr(&[]));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE r -inf +inf LIMIT 3 1"), arr(&[]));
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE r -inf +inf LIMIT 1 -5"),
            arr(&["one", "two"]),
            "a negative count takes the rest"
        );
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE r -inf +inf LIMIT x 1"),
            e(NOT_INTEGER)
        );
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE r -inf +inf LIMIT 0 1.5"),
            e(NOT_INTEGER)
        );
        // ZRANGE's REV/BYSCORE/BYLEX are not ZRANGEBYSCORE options.
        for opt in ["REV", "BYSCORE", "BYLEX", "LIMIT 0", "WITHSCORE"] {
            let c = format!("ZRANGEBYSCORE r -inf +inf {opt}");
            assert_eq!(run(&mut s, &c), e(SYNTAX), "{c}");
        }
        // Every argument error comes before the key is looked at.
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "ZRANGEBYSCORE str x 1"), not_float);
        assert_eq!(run(&mut s, "ZRANGEBYSCORE none x 1"), not_float);
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE str 0 1 LIMIT 0 x"),
            e(NOT_INTEGER)
        );
        assert_eq!(run(&mut s, "ZRANGEBYSCORE str 0 1 FOO"), e(SYNTAX));
        assert_eq!(run(&mut s, "ZRANGEBYSCORE str 0 1"), wrongtype());
    }

    #[test]
    fn del_and_exists_count_as_redis() {
        let mut s = Store::default();
        run(&mut s, "SET a 1");
        run(&mut s, "HSET h f v");
        run(&mut s, "ZADD z 1 m");
        assert_eq!(run(&mut s, "EXISTS a a a missing"), i(3));
        assert_eq!(run(&mut s, "DEL a a"), i(1), "a key is deleted once");
        assert_eq!(run(&mut s, "DEL h z missing"), i(2), "keys of any type");
        s.execute(0, &cmd("SET t v PX 10"));
        assert_eq!(s.execute(11 * MS, &cmd("EXISTS t")), i(0));
        s.execute(0, &cmd("SET t v PX 10"));
        assert_eq!(
            s.execute(11 * MS, &cmd("DEL t")),
            i(0),
            "an expired key does not count as deleted"
        );
        assert_eq!(s, Store::default());
    }

    #[test]
    fn transaction_errors_at_queue_time_and_at_exec() {
        let mut s = Store::default();
        let mut c = Connection::default();
        let mut h = |s: &mut Store, line: &str| c.handle(s, 0, cmd(line));
        let queued = Resp::Simple("QUEUED".into());
        // Errors only running the command finds are replies in EXEC's
        // array, and the commands around them still run.
        assert_eq!(h(&mut s, "MULTI"), ok());
        for line in [
            "HSET h f v g",
            "LPOP l 1 2",
            "ZADD z NX XX 1 m",
            "INCRBY n x",
            "GET missing",
            "LRANGE missing 0 -1",
            "SET k v",
        ] {
            assert_eq!(h(&mut s, line), queued, "{line}");
        }
        assert_eq!(
            h(&mut s, "EXEC"),
            Resp::Array(Some(vec![
                arity("hset"),
                arity("lpop"),
                e("ERR XX and NX options at the same time are not compatible"),
                e(NOT_INTEGER),
                nil(),
                arr(&[]),
                ok(),
            ]))
        );
        assert_eq!(s.execute(0, &cmd("GET k")), b("v"));

        // An error while queueing dooms the EXEC.
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "DISCARD x"), arity("discard"));
        assert_eq!(h(&mut s, "SET k w"), queued, "still in the transaction");
        assert_eq!(
            h(&mut s, "EXEC"),
            e("EXECABORT Transaction discarded because of previous errors.")
        );
        assert_eq!(s.execute(0, &cmd("GET k")), b("v"));
        // DISCARD forgets the error with the queue.
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "GET"), arity("get"));
        assert_eq!(h(&mut s, "DISCARD"), ok());
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "SET k w"), queued);
        assert_eq!(h(&mut s, "EXEC"), Resp::Array(Some(vec![ok()])));
        assert_eq!(s.execute(0, &cmd("GET k")), b("w"));
        // MULTI with an argument is an arity error and starts nothing.
        assert_eq!(h(&mut s, "MULTI x"), arity("multi"));
        assert_eq!(h(&mut s, "EXEC"), e("ERR EXEC without MULTI"));
    }

    #[test]
    fn integral_scores_print_as_integers() {
        // redis-server: ZADD z 4500000000 a 100000000 b, then ZSCORE and
        // ZRANGEBYSCORE print both as plain integers.
        let mut s = Store::default();
        assert_eq!(run(&mut s, "ZADD z 4500000000 a 100000000 b"), i(2));
        assert_eq!(run(&mut s, "ZSCORE z a"), b("4500000000"));
        assert_eq!(
            run(&mut s, "ZRANGEBYSCORE z -inf +inf WITHSCORES"),
            arr(&["b", "100000000", "a", "4500000000"])
        );
        assert_eq!(run(&mut s, "ZADD z INCR 1e17 b"), b("100000000100000000"));
        // Integers print as integers up to ±(LLONG_MAX / 2), i.e. ±2^62 once
        // a double; past that, fpconv_dtoa's layout again.
        let cases = [
            (1e17, "100000000000000000"),
            (4611686018427387904.0, "4611686018427387904"),
            (-4611686018427387904.0, "-4611686018427387904"),
            (9223372036854775808.0, "9223372036854776000"),
            (1e20, "1e+20"),
            (-1e8, "-100000000"),
        ];
        for (x, want) in cases {
            assert_eq!(format_double(x), want, "{x}");
        }
    }

    #[test]
    fn exec_with_arguments_aborts_and_ends_the_transaction() {
        // As redis-server replies (rejectCommand -> execCommandAbort).
        let abort = e("EXECABORT Transaction discarded because of: \
             wrong number of arguments for 'exec' command");
        let mut s = Store::default();
        let mut c = Connection::default();
        let mut h = |s: &mut Store, line: &str| c.handle(s, 0, cmd(line));
        assert_eq!(h(&mut s, "EXEC x"), abort, "outside MULTI too");
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "SET k v"), Resp::Simple("QUEUED".into()));
        assert_eq!(h(&mut s, "exec x y"), abort);
        assert_eq!(h(&mut s, "GET k"), nil(), "the queue was dropped");
        assert_eq!(h(&mut s, "SET k w"), ok(), "and the transaction is over");
        assert_eq!(h(&mut s, "EXEC"), e("ERR EXEC without MULTI"));
        assert_eq!(h(&mut s, "GET k"), b("w"));
        // A transaction already doomed ends the same way.
        assert_eq!(h(&mut s, "MULTI"), ok());
        assert_eq!(h(&mut s, "GET"), arity("get"));
        assert_eq!(h(&mut s, "EXEC x"), abort);
        assert_eq!(h(&mut s, "MULTI"), ok(), "a new one starts clean");
        assert_eq!(h(&mut s, "EXEC"), Resp::Array(Some(Vec::new())));
    }

    #[test]
    fn negative_zero_is_stored_as_zero_in_a_small_sorted_set() {
        let mut s = Store::default();
        // A listpack stores an integral score as an integer: -0 becomes 0.
        assert_eq!(run(&mut s, "ZADD z -0 m"), i(1));
        assert_eq!(run(&mut s, "ZSCORE z m"), b("0"));
        // ZADD INCR replies the score it computed, then stores it.
        assert_eq!(run(&mut s, "ZADD z INCR -0 n"), b("-0"));
        assert_eq!(run(&mut s, "ZSCORE z n"), b("0"));
        assert_eq!(run(&mut s, "ZADD z 5 n"), i(0));
        assert_eq!(run(&mut s, "ZADD z CH -0 n"), i(1), "an update too");
        assert_eq!(run(&mut s, "ZSCORE z n"), b("0"));

        // A skiplist keeps the double. A set turns into one past 128
        // members...
        let pairs = |n: usize| {
            (0..n)
                .map(|n| format!("{n} m{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        run(&mut s, &format!("ZADD big {}", pairs(127)));
        assert_eq!(run(&mut s, "ZADD big -0 a"), i(1));
        assert_eq!(run(&mut s, "ZSCORE big a"), b("0"), "the 128th member");
        assert_eq!(run(&mut s, "ZADD big -0 b"), i(1));
        assert_eq!(run(&mut s, "ZSCORE big b"), b("-0"), "the 129th");
        assert_eq!(run(&mut s, "ZREM big b a m0 m1"), i(4));
        assert_eq!(run(&mut s, "ZADD big -0 c"), i(1));
        assert_eq!(run(&mut s, "ZSCORE big c"), b("-0"), "and never turns back");
        // ... or with a member over 64 bytes, before that member goes in.
        let long = "x".repeat(65);
        assert_eq!(run(&mut s, &format!("ZADD s 1 a 2 {long} -0 n")), i(3));
        assert_eq!(run(&mut s, "ZSCORE s a"), b("1"));
        assert_eq!(run(&mut s, "ZSCORE s n"), b("-0"));
        // Redis 7.2 sizes a new set by the whole command (zsetTypeCreate).
        assert_eq!(run(&mut s, &format!("ZADD t -0 n 1 {long}")), i(2));
        assert_eq!(run(&mut s, "ZSCORE t n"), b("-0"));
        let many: Vec<String> = (0..129).map(|n| format!("-0 m{n}")).collect();
        run(&mut s, &format!("ZADD u {}", many.join(" ")));
        assert_eq!(run(&mut s, "ZSCORE u m0"), b("-0"));
        run(&mut s, "ZADD v 1 a");
        run(&mut s, &format!("ZADD v {}", many.join(" ")));
        assert_eq!(run(&mut s, "ZSCORE v m0"), b("-0"), "zsetTypeMaybeConvert");
        // Equality is of members and scores, not of the encoding.
        let (mut x, mut y) = (Store::default(), Store::default());
        run(&mut x, &format!("ZADD q {}", pairs(128)));
        run(&mut x, "ZADD q 1 extra");
        run(&mut x, "ZREM q extra");
        run(&mut y, &format!("ZADD q {}", pairs(128)));
        assert_eq!(x, y);
    }

    #[test]
    fn hexadecimal_floats_are_read_as_strtod_reads_them() {
        let mut s = Store::default();
        let zadd = |s: &mut Store, score: &[u8]| s.execute(0, &raw(&[b"ZADD", b"h", score, score]));
        let score = |s: &mut Store, m: &[u8]| s.execute(0, &raw(&[b"ZSCORE", b"h", m]));
        // Each as redis-server 7.0 reads it (glibc's strtod).
        let good: [(&[u8], &str); 13] = [
            (b"0x10", "16"),
            (b"0x1p3", "8"),
            (b"0X1.8P1", "3"),
            (b"0x.8", "0.5"),
            (b"-0x1p-2", "-0.25"),
            (b"+0x10", "16"),
            (b"0x10.", "16"),
            (b"0x1P+3", "8"),
            (b"0x0p5", "0"),
            (b"0xA.8p-1", "5.25"),
            (b"0x1p-1074", "5e-324"),
            (b"0x1.fffffffffffffp1023", "1.7976931348623157e+308"),
            (b"1.", "1"),
        ];
        for (text, want) in good {
            assert_eq!(zadd(&mut s, text), i(1), "{text:?}");
            assert_eq!(score(&mut s, text), b(want), "{text:?}");
        }
        let bad: [&[u8]; 10] = [
            b"0x",
            b"0x.",
            b"0x1p",
            b"0xg",
            b"0x1p2000",
            b"0x1p-2000",
            b"0x1.fffffffffffff8p1023",
            b"0x1p-1075",
            b" 0x1",
            b"0x1\x000",
        ];
        for text in bad {
            assert_eq!(zadd(&mut s, text), e(NOT_FLOAT), "{text:?}");
        }
        // Rounding to nearest, ties to even, subnormals included.
        let rounding: [(&[u8], f64); 6] = [
            (b"0x1.00000000000008p0", 1.0),
            (b"0x1.00000000000018p0", 1.0 + 2.0 * f64::EPSILON),
            (b"0x1.000000000000080000000001p0", 1.0 + f64::EPSILON),
            (b"0x1.8p-1074", 2.0 * 5e-324),
            (b"0x1.0000000000000000000000000000001p0", 1.0),
            (
                b"0x123456789abcdef0123p-20",
                0x0123_4567_89ab_cdef_0123_u128 as f64 / 1048576.0,
            ),
        ];
        for (text, want) in rounding {
            let read = strtod(text);
            assert_eq!((read.value, read.len), (want, text.len()), "{text:?}");
        }
        // ZRANGEBYSCORE's bounds take them too, with strtod's leniency.
        run(&mut s, "ZADD r 8 a 16 b");
        let q = |s: &mut Store, min: &[u8], max: &[u8]| {
            s.execute(0, &raw(&[b"ZRANGEBYSCORE", b"r", min, max]))
        };
        assert_eq!(q(&mut s, b"(0x1p3", b"0x10"), arr(&["b"]));
        assert_eq!(q(&mut s, b" 0x1p3", b"0x10\0zz"), arr(&["a", "b"]));
        assert_eq!(q(&mut s, b"0x", b"1"), e("ERR min or max is not a float"));
    }

    #[test]
    fn errors_echo_arguments_as_c_prints_them() {
        // Each reply as redis-server 7.0 sends it: `%s` stops at a NUL,
        // addReplyErrorFormat trims CR/LF from the ends and turns the rest
        // into spaces, and any other byte comes back as it went.
        let mut s = Store::default();
        run(&mut s, "SET k v");
        let expire = |s: &mut Store, opt: &[u8]| s.execute(0, &raw(&[b"EXPIRE", b"k", b"10", opt]));
        let cases: [(&[u8], &[u8]); 5] = [
            (b"YY\r\n", b"ERR Unsupported option YY"),
            (b"YY\0ZZ", b"ERR Unsupported option YY"),
            (b"Y\r\nY\n\r\n", b"ERR Unsupported option Y  Y"),
            (b"\r\nYY", b"ERR Unsupported option   YY"),
            (b"\xff\xfe", b"ERR Unsupported option \xff\xfe"),
        ];
        for (opt, want) in cases {
            assert_eq!(expire(&mut s, opt), e_bytes(want), "{opt:?}");
        }
        // The unknown-command error maps CR/LF but trims nothing.
        assert_eq!(
            s.execute(0, &raw(&[b"FOO\r\n", b"a\r\n", b"b\0c"])),
            e("ERR unknown command 'FOO  ', with args beginning with: 'a  ' 'b' ")
        );
        assert_eq!(
            s.execute(0, &raw(&[b"FOO\0bar", b"\xff"])),
            e_bytes(b"ERR unknown command 'FOO', with args beginning with: '\xff' ")
        );
    }
}
