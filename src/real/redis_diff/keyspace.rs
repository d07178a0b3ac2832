//! A whole keyspace as plain data, read from the stand-in and from a real
//! server alike, so the two can be compared key by key after a run.

use std::collections::BTreeMap;

use super::server::Conn;
use crate::redis::{Resp, Store};

/// One key's type and full content.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    /// Fields sorted: neither side's order is meaningful.
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    /// Member -> score. Scores compared as numbers: the stand-in formats
    /// them as Redis 7.2 does, this server may be older (docs/queue.md).
    ZSet(BTreeMap<Vec<u8>, f64>),
}

/// Every key, its value and whether it has a deadline (the deadlines
/// themselves are compared through TTL replies, with a tolerance).
pub type Keyspace = BTreeMap<Vec<u8>, (Value, bool)>;

/// The stand-in's keyspace at `now_ns`, through the commands an AOF rewrite
/// would write for it: exactly its content, by construction.
pub fn of_store(store: &Store, now_ns: u64) -> Keyspace {
    let mut out = Keyspace::new();
    store.rewrite_commands(now_ns, |args| {
        let (name, key, rest) = (args[0], args[1].to_vec(), &args[2..]);
        if name == b"PEXPIREAT" {
            out.get_mut(&key).expect("a deadline follows its key").1 = true;
            return;
        }
        let fresh = match name {
            b"SET" => Value::Str(Vec::new()),
            b"RPUSH" => Value::List(Vec::new()),
            b"HSET" => Value::Hash(BTreeMap::new()),
            b"ZADD" => Value::ZSet(BTreeMap::new()),
            other => panic!("an AOF rewrite wrote {}", String::from_utf8_lossy(other)),
        };
        let (value, _) = out.entry(key).or_insert((fresh, false));
        match value {
            Value::Str(s) => *s = rest[0].to_vec(),
            Value::List(l) => l.extend(rest.iter().map(|e| e.to_vec())),
            Value::Hash(h) => h.extend(rest.chunks(2).map(|p| (p[0].to_vec(), p[1].to_vec()))),
            Value::ZSet(z) => z.extend(rest.chunks(2).map(|p| (p[1].to_vec(), score(p[0])))),
        }
    });
    out
}

/// A real server's keyspace, read with KEYS, TYPE and each type's full read.
pub fn of_server(conn: &mut Conn) -> Keyspace {
    let mut out = Keyspace::new();
    for key in strings(conn.call(&["KEYS", "*"]), "KEYS *") {
        let kind = match conn.call(&[b"TYPE".as_slice(), &key]) {
            Resp::Simple(t) => t,
            other => panic!("TYPE: expected a status, got {other:?}"),
        };
        let read = |conn: &mut Conn, args: &[&[u8]]| {
            let mut full: Vec<&[u8]> = args.to_vec();
            full.insert(1, &key);
            strings(conn.call(&full), &String::from_utf8_lossy(args[0]))
        };
        let value = match kind.as_slice() {
            b"string" => match conn.call(&[b"GET".as_slice(), &key]) {
                Resp::Bulk(Some(s)) => Value::Str(s),
                other => panic!("GET: expected a string, got {other:?}"),
            },
            b"list" => Value::List(read(conn, &[b"LRANGE", b"0", b"-1"])),
            b"hash" => Value::Hash(pairs(read(conn, &[b"HGETALL"])).collect()),
            b"zset" => {
                let flat = read(conn, &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"]);
                Value::ZSet(pairs(flat).map(|(m, s)| (m, score(&s))).collect())
            }
            other => panic!("a key of type {}", String::from_utf8_lossy(other)),
        };
        let ttl = match conn.call(&[b"PTTL".as_slice(), &key]) {
            Resp::Integer(n) => n,
            other => panic!("PTTL: expected an integer, got {other:?}"),
        };
        out.insert(key, (value, ttl >= 0));
    }
    out
}

fn strings(reply: Resp, what: &str) -> Vec<Vec<u8>> {
    match reply {
        Resp::Array(Some(items)) => items
            .into_iter()
            .map(|i| match i {
                Resp::Bulk(Some(b)) => b,
                other => panic!("{what}: expected bulk strings, got {other:?}"),
            })
            .collect(),
        other => panic!("{what}: expected an array, got {other:?}"),
    }
}

fn pairs(flat: Vec<Vec<u8>>) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    let mut it = flat.into_iter();
    std::iter::from_fn(move || Some((it.next()?, it.next()?)))
}

fn score(b: &[u8]) -> f64 {
    let text = std::str::from_utf8(b).expect("a score is text");
    text.parse()
        .unwrap_or_else(|_| panic!("a score that is not a number: {text}"))
}

/// The differences between two keyspaces, one line per key; empty if none.
pub fn diff(stand_in: &Keyspace, real: &Keyspace) -> Vec<String> {
    let keys: std::collections::BTreeSet<&Vec<u8>> = stand_in.keys().chain(real.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (stand_in.get(k), real.get(k));
            (a != b).then(|| {
                let k = text(k);
                format!("key {k}: stand-in {}, redis-server {}", show(a), show(b))
            })
        })
        .collect()
}

/// Bytes for a report: quoted, escaped.
fn text(b: &[u8]) -> String {
    format!("\"{}\"", b.escape_ascii())
}

fn show(entry: Option<&(Value, bool)>) -> String {
    let Some((value, expires)) = entry else {
        return "missing".into();
    };
    let content = match value {
        Value::Str(s) => format!("string {}", text(s)),
        Value::List(l) => {
            let items: Vec<String> = l.iter().map(|e| text(e)).collect();
            format!("list [{}]", items.join(", "))
        }
        Value::Hash(h) => {
            let items: Vec<String> = h
                .iter()
                .map(|(f, v)| format!("{}: {}", text(f), text(v)))
                .collect();
            format!("hash {{{}}}", items.join(", "))
        }
        Value::ZSet(z) => {
            let items: Vec<String> = z.iter().map(|(m, s)| format!("{}: {s}", text(m))).collect();
            format!("zset {{{}}}", items.join(", "))
        }
    };
    if *expires {
        format!("{content} (with a deadline)")
    } else {
        content
    }
}
