//! The queue's shard operations on a real redis-server: the Lua library
//! (functions.lua) that does there what the stand-in does in Rust, the FCALL
//! that runs one `ShardCall` on it, and the decoding of its reply into the
//! `ShardAnswer` the stand-in would give.
//!
//! This is the seam a real node's router talks to Redis through; the
//! simulator keeps running the Rust functions on the stand-in. The two are
//! held to each other by the differential test (src/real/redis_diff.rs).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::functions::{Delivery, Dump, MessageId, Partition, Refused, Stored, parse_id};
use super::protocol::{ShardAnswer, ShardCall};
use super::shard::parse_memory;
use crate::redis::Resp;

/// The library's source, loaded with `FUNCTION LOAD REPLACE`.
pub const LIBRARY: &str = include_str!("functions.lua");

/// What `distsync_queue_version` answers: bumped with `VERSION` in
/// functions.lua whenever a function's arguments, replies or effects change.
pub const LIBRARY_VERSION: u64 = 1;

/// The function that answers `LIBRARY_VERSION`.
pub const VERSION_FUNCTION: &str = "distsync_queue_version";

/// A partition's keys, in the order the library's functions take them.
const PARTITION_KEYS: [&str; 8] = [
    "ready", "body", "attempts", "inflight", "dead", "last", "moved", "imported",
];

/// The command that loads (or replaces) `library` on a server: `LIBRARY`,
/// or in a test a deliberately altered copy of it.
pub fn load_command(library: &str) -> Vec<Vec<u8>> {
    let args: [&[u8]; 4] = [b"FUNCTION", b"LOAD", b"REPLACE", library.as_bytes()];
    args.iter().map(|a| a.to_vec()).collect()
}

/// The library function that runs `call`.
pub fn function_name(call: &ShardCall) -> &'static str {
    match call {
        ShardCall::Produce { .. } => "distsync_produce",
        ShardCall::Consume { .. } => "distsync_consume",
        ShardCall::Settle { .. } => "distsync_settle",
        ShardCall::Freeze { .. } => "distsync_freeze",
        ShardCall::Import { .. } => "distsync_import",
        ShardCall::Drop { .. } => "distsync_drop",
        ShardCall::MemGet { .. } => "distsync_memget",
        ShardCall::MemSet { .. } => "distsync_memset",
    }
}

/// `{q<partition>}:<name>` for each of a partition's keys: one hash tag, so
/// one Redis Cluster slot.
fn partition_keys(partition: Partition) -> Vec<Vec<u8>> {
    let key = |name| format!("{{q{partition}}}:{name}").into_bytes();
    PARTITION_KEYS.iter().map(key).collect()
}

fn id_arg(id: &MessageId) -> Vec<u8> {
    format!("{}:{}", id.producer, id.seq).into_bytes()
}

fn num(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn flag(b: bool) -> Vec<u8> {
    if b { b"1".to_vec() } else { b"0".to_vec() }
}

/// The FCALL that runs `call` on a server with the library loaded, the
/// shard's clock at `now_ns`: name, key count, keys, then arguments (the
/// clock first), as the library's header describes.
pub fn fcall(call: &ShardCall, now_ns: u64) -> Vec<Vec<u8>> {
    let now = num(now_ns);
    let (keys, args): (Vec<Vec<u8>>, Vec<Vec<u8>>) = match call {
        ShardCall::Produce {
            partition,
            producer,
            first_seq,
            bodies,
        } => {
            let mut args = vec![now, num(producer), num(first_seq)];
            args.extend(bodies.iter().cloned());
            (partition_keys(*partition), args)
        }
        ShardCall::Consume {
            partition,
            max,
            visibility_ns,
            max_attempts,
            honour_visibility,
            // Names the caller in the simulator's trace; no shard reads it.
            consumer: _,
        } => (
            partition_keys(*partition),
            vec![
                now,
                num(max),
                num(visibility_ns),
                num(max_attempts),
                flag(*honour_visibility),
            ],
        ),
        ShardCall::Settle {
            partition,
            acks,
            nacks,
            max_attempts,
        } => {
            let mut args = vec![now, num(max_attempts), num(acks.len())];
            args.extend(acks.iter().chain(nacks.iter()).map(id_arg));
            (partition_keys(*partition), args)
        }
        ShardCall::Freeze {
            partition,
            epoch,
            include_inflight,
        } => (
            partition_keys(*partition),
            vec![now, num(epoch), flag(*include_inflight)],
        ),
        ShardCall::Import {
            partition,
            epoch,
            dump,
        } => (partition_keys(*partition), import_args(now, *epoch, dump)),
        ShardCall::Drop { partition, epoch } => (partition_keys(*partition), vec![now, num(epoch)]),
        ShardCall::MemGet { key, fence } => (memory_keys(*key), vec![now, num(fence)]),
        ShardCall::MemSet {
            key,
            value,
            version,
            fence,
        } => (
            memory_keys(*key),
            vec![now, num(value), num(version), num(fence)],
        ),
    };
    let mut out = vec![
        b"FCALL".to_vec(),
        function_name(call).as_bytes().to_vec(),
        num(keys.len()),
    ];
    out.extend(keys);
    out.extend(args);
    out
}

/// A cache key's value and fence. They carry no common hash tag (the
/// stand-in's names are kept), so on Redis Cluster they may sit in
/// different slots; see docs/queue.md.
fn memory_keys(key: u32) -> Vec<Vec<u8>> {
    vec![
        format!("cache:{key}").into_bytes(),
        format!("cache-fence:{key}").into_bytes(),
    ]
}

/// Import's arguments: the clock, the epoch, the four entry counts, then
/// the entries in order.
fn import_args(now: Vec<u8>, epoch: u64, dump: &Dump) -> Vec<Vec<u8>> {
    let mut args = vec![
        now,
        num(epoch),
        num(dump.ready.len()),
        num(dump.inflight.len()),
        num(dump.dead.len()),
        num(dump.last_seq.len()),
    ];
    let entry = |(id, body, n): &(MessageId, Vec<u8>, u32)| [id_arg(id), body.clone(), num(n)];
    args.extend(dump.ready.iter().flat_map(entry));
    for (id, body, n, left) in &dump.inflight {
        args.extend([id_arg(id), body.clone(), num(n), num(left)]);
    }
    args.extend(dump.dead.iter().flat_map(entry));
    for (producer, seq) in &dump.last_seq {
        args.extend([num(producer), num(seq)]);
    }
    args
}

/// Decodes the library's reply to `call` into the answer the stand-in
/// gives for it. A reply that is not what the function returns for that
/// call (an error, another kind, a missing or surplus element) is an error
/// naming the call and what was wrong.
pub fn answer(call: &ShardCall, reply: Resp) -> Result<ShardAnswer, String> {
    let fail = |what: String| format!("{} (FCALL {}): {what}", call.name(), function_name(call));
    let items = match reply {
        Resp::Array(Some(items)) => items,
        Resp::Error(e) => {
            let e = String::from_utf8_lossy(&e);
            return Err(fail(format!("the server answered an error: {e}")));
        }
        other => return Err(fail(format!("expected an array reply, got {other:?}"))),
    };
    let mut r = Items::new(items);
    decode(call, &mut r)
        .and_then(|a| r.end().map(|()| a))
        .map_err(fail)
}

fn decode(call: &ShardCall, r: &mut Items) -> Result<ShardAnswer, String> {
    let kind = r.bulk("the reply's kind")?;
    let refusable = matches!(
        call,
        ShardCall::Produce { .. }
            | ShardCall::Consume { .. }
            | ShardCall::Settle { .. }
            | ShardCall::Freeze { .. }
    );
    Ok(match (call, kind.as_slice()) {
        // The epoch comes from the `moved` key, read as the stand-in reads
        // it: anything but a number counts as 0.
        (_, b"moved") if refusable => ShardAnswer::Refused(Refused::Moved {
            epoch: parse_str(&r.bulk("the moved epoch")?).unwrap_or(0),
        }),
        (ShardCall::Produce { .. }, b"stored") => ShardAnswer::Stored(Stored {
            stored: r.count("the stored count")?,
            duplicate: r.count("the duplicate count")?,
        }),
        (ShardCall::Consume { .. }, b"delivered") => {
            let mut deliveries = Vec::new();
            while !r.is_empty() {
                let id = r.id("a delivery's id")?;
                let body = r.bulk("a delivery's body")?;
                // As the stand-in: a count beyond u32 reads as 0.
                let attempt = u32::try_from(r.integer("a delivery's attempt")?).unwrap_or(0);
                deliveries.push(Delivery { id, body, attempt });
            }
            ShardAnswer::Delivered(deliveries)
        }
        (ShardCall::Settle { .. }, b"settled") => ShardAnswer::Settled(r.count("the acked count")?),
        (ShardCall::Freeze { .. }, b"frozen") => ShardAnswer::Frozen(Rc::new(dump(r)?)),
        (ShardCall::Import { .. } | ShardCall::Drop { .. }, b"done") => ShardAnswer::Done,
        (ShardCall::MemGet { .. } | ShardCall::MemSet { .. }, b"memory") => ShardAnswer::Memory(
            r.maybe_bulk("the memory value")?
                .as_deref()
                .and_then(parse_memory),
        ),
        _ => {
            let kind = String::from_utf8_lossy(&kind);
            return Err(format!(
                "a reply of kind {kind:?}, which this call never gets"
            ));
        }
    })
}

/// A freeze's content: ready, in-flight and dead entries, then `last`.
fn dump(r: &mut Items) -> Result<Dump, String> {
    let mut ready = r.array("the ready entries")?;
    let mut inflight = r.array("the in-flight entries")?;
    let mut dead = r.array("the dead entries")?;
    let mut last = r.array("the last seqs")?;
    let entries = |r: &mut Items, what: &str| {
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(entry(r, what)?);
        }
        Ok::<_, String>(out)
    };
    let mut dump = Dump {
        ready: entries(&mut ready, "ready")?,
        dead: entries(&mut dead, "dead")?,
        ..Dump::default()
    };
    while !inflight.is_empty() {
        let (id, body, n) = entry(&mut inflight, "in-flight")?;
        let left = parse_str(&inflight.bulk("an in-flight entry's visibility left")?)
            .ok_or("an in-flight entry's visibility left is not a u64")?;
        dump.inflight.push((id, body, n, left));
    }
    // As the stand-in: pairs that are not numbers are skipped, and the
    // producers come sorted (HGETALL's order is not something Redis promises).
    let mut seqs = BTreeMap::new();
    while !last.is_empty() {
        let producer = last.bulk("a producer")?;
        let seq = last.bulk("a producer's last seq")?;
        if let (Some(p), Some(s)) = (parse_str::<u32>(&producer), parse_str::<u64>(&seq)) {
            seqs.insert(p, s);
        }
    }
    dump.last_seq = seqs.into_iter().collect();
    Ok(dump)
}

fn entry(r: &mut Items, what: &str) -> Result<(MessageId, Vec<u8>, u32), String> {
    let id = r.id(&format!("a {what} entry's id"))?;
    let body = r.bulk(&format!("a {what} entry's body"))?;
    let n = r.count(&format!("a {what} entry's attempts"))?;
    Ok((id, body, n))
}

fn parse_str<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The elements of one array reply, taken in order.
struct Items {
    items: std::vec::IntoIter<Resp>,
    /// How many were taken, for the errors.
    taken: usize,
}

impl Items {
    fn new(items: Vec<Resp>) -> Self {
        Items {
            items: items.into_iter(),
            taken: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    fn next(&mut self, what: &str) -> Result<Resp, String> {
        let item = self.items.next();
        self.taken += 1;
        item.ok_or_else(|| format!("expected {what} at element {}, the reply ended", self.taken))
    }

    fn unexpected(&self, what: &str, got: &Resp) -> String {
        format!("expected {what} at element {}, got {got:?}", self.taken)
    }

    fn maybe_bulk(&mut self, what: &str) -> Result<Option<Vec<u8>>, String> {
        match self.next(what)? {
            Resp::Bulk(b) => Ok(b),
            other => Err(self.unexpected(&format!("{what} (a bulk string or nil)"), &other)),
        }
    }

    fn bulk(&mut self, what: &str) -> Result<Vec<u8>, String> {
        match self.next(what)? {
            Resp::Bulk(Some(b)) => Ok(b),
            other => Err(self.unexpected(&format!("{what} (a bulk string)"), &other)),
        }
    }

    fn integer(&mut self, what: &str) -> Result<i64, String> {
        match self.next(what)? {
            Resp::Integer(n) => Ok(n),
            other => Err(self.unexpected(&format!("{what} (an integer)"), &other)),
        }
    }

    /// An integer that must fit a u32 (a count the library computed).
    fn count(&mut self, what: &str) -> Result<u32, String> {
        let n = self.integer(what)?;
        u32::try_from(n).map_err(|_| format!("{what} at element {} is {n}, not a u32", self.taken))
    }

    fn id(&mut self, what: &str) -> Result<MessageId, String> {
        let b = self.bulk(what)?;
        parse_id(&b).ok_or_else(|| {
            let b = String::from_utf8_lossy(&b);
            format!(
                "{what} at element {} is {b:?}, not <producer>:<seq>",
                self.taken
            )
        })
    }

    fn array(&mut self, what: &str) -> Result<Items, String> {
        match self.next(what)? {
            Resp::Array(Some(items)) => Ok(Items::new(items)),
            other => Err(self.unexpected(&format!("{what} (an array)"), &other)),
        }
    }

    /// Fails if elements are left over: a longer reply is not this call's.
    fn end(self) -> Result<(), String> {
        match self.items.len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} unexpected element(s) after element {}",
                self.taken
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Resp {
        Resp::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn arr(items: Vec<Resp>) -> Resp {
        Resp::Array(Some(items))
    }

    fn strings(args: &[Vec<u8>]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn produce() -> ShardCall {
        ShardCall::Produce {
            partition: 7,
            producer: 3,
            first_seq: 10,
            bodies: Rc::new(vec![b"a".to_vec(), b"\r\n\0".to_vec()]),
        }
    }

    fn consume() -> ShardCall {
        ShardCall::Consume {
            partition: 7,
            consumer: 1,
            max: 2,
            visibility_ns: 100,
            max_attempts: 3,
            honour_visibility: false,
        }
    }

    fn freeze() -> ShardCall {
        ShardCall::Freeze {
            partition: 2,
            epoch: 5,
            include_inflight: true,
        }
    }

    fn id(producer: u32, seq: u64) -> MessageId {
        MessageId { producer, seq }
    }

    #[test]
    fn the_library_states_its_name_and_the_version_rust_expects() {
        assert_eq!(LIBRARY.lines().next(), Some("#!lua name=distsync_queue"));
        let line = format!("\nlocal VERSION = {LIBRARY_VERSION}\n");
        assert!(LIBRARY.contains(&line), "functions.lua must say{line}");
        assert!(LIBRARY.contains(&format!("function_name = '{VERSION_FUNCTION}'")));
    }

    #[test]
    fn every_call_names_a_function_the_library_registers() {
        let calls = [
            produce(),
            consume(),
            ShardCall::Settle {
                partition: 0,
                acks: Rc::new(vec![]),
                nacks: Rc::new(vec![]),
                max_attempts: 1,
            },
            freeze(),
            ShardCall::Import {
                partition: 0,
                epoch: 1,
                dump: Rc::new(Dump::default()),
            },
            ShardCall::Drop {
                partition: 0,
                epoch: 1,
            },
            ShardCall::MemGet { key: 1, fence: 1 },
            ShardCall::MemSet {
                key: 1,
                value: 1,
                version: 1,
                fence: 1,
            },
        ];
        for call in &calls {
            let registered = format!("redis.register_function('{}',", function_name(call));
            assert!(LIBRARY.contains(&registered), "{registered}");
        }
    }

    #[test]
    fn produce_sends_the_partition_keys_the_clock_and_the_bodies_byte_for_byte() {
        let args = fcall(&produce(), 1_700_000_000_000_000_000);
        let mut want: Vec<Vec<u8>> = ["FCALL", "distsync_produce", "8"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        for name in PARTITION_KEYS {
            want.push(format!("{{q7}}:{name}").into_bytes());
        }
        for a in ["1700000000000000000", "3", "10", "a"] {
            want.push(a.as_bytes().to_vec());
        }
        want.push(b"\r\n\0".to_vec());
        assert_eq!(args, want);
    }

    #[test]
    fn calls_encode_flags_counts_and_ids() {
        let settle = ShardCall::Settle {
            partition: 1,
            acks: Rc::new(vec![id(1, 2)]),
            nacks: Rc::new(vec![id(3, u64::MAX), id(0, 0)]),
            max_attempts: 4,
        };
        let tail = |call: &ShardCall| strings(&fcall(call, 9)[11..]);
        assert_eq!(
            tail(&settle),
            ["9", "4", "1", "1:2", "3:18446744073709551615", "0:0"]
        );
        assert_eq!(tail(&consume()), ["9", "2", "100", "3", "0"]);
        assert_eq!(tail(&freeze()), ["9", "5", "1"]);
        let get = fcall(&ShardCall::MemGet { key: 4, fence: 2 }, 9);
        assert_eq!(
            strings(&get),
            [
                "FCALL",
                "distsync_memget",
                "2",
                "cache:4",
                "cache-fence:4",
                "9",
                "2"
            ]
        );
        let set = ShardCall::MemSet {
            key: 4,
            value: 5,
            version: 6,
            fence: 7,
        };
        assert_eq!(strings(&fcall(&set, 0)[5..]), ["0", "5", "6", "7"]);
    }

    #[test]
    fn import_sends_counts_then_entries_in_order() {
        let dump = Dump {
            ready: vec![(id(1, 1), b"r".to_vec(), 0)],
            inflight: vec![(id(1, 2), b"i".to_vec(), 2, 30)],
            dead: vec![(id(2, 1), vec![], 5), (id(2, 2), b"d".to_vec(), 6)],
            last_seq: vec![(1, 2), (2, 2)],
        };
        let call = ShardCall::Import {
            partition: 0,
            epoch: 3,
            dump: Rc::new(dump),
        };
        let args = fcall(&call, 100);
        assert_eq!(strings(&args[..3]), ["FCALL", "distsync_import", "8"]);
        let want = [
            "100", "3", "1", "1", "2", "2", "1:1", "r", "0", "1:2", "i", "2", "30", "2:1", "", "5",
            "2:2", "d", "6", "1", "2", "2", "2",
        ];
        assert_eq!(strings(&args[11..]), want);
    }

    #[test]
    fn replies_decode_into_the_stand_ins_answers() {
        let delivered = arr(vec![
            bulk("delivered"),
            bulk("3:10"),
            bulk("a"),
            Resp::Integer(1),
            bulk("3:11"),
            bulk(""),
            Resp::Integer(5_000_000_000),
        ]);
        let want = vec![
            Delivery {
                id: id(3, 10),
                body: b"a".to_vec(),
                attempt: 1,
            },
            // Beyond u32: 0, as the stand-in's conversion gives.
            Delivery {
                id: id(3, 11),
                body: vec![],
                attempt: 0,
            },
        ];
        assert_eq!(
            answer(&consume(), delivered),
            Ok(ShardAnswer::Delivered(want))
        );
        let stored = arr(vec![bulk("stored"), Resp::Integer(1), Resp::Integer(2)]);
        let want = Stored {
            stored: 1,
            duplicate: 2,
        };
        assert_eq!(answer(&produce(), stored), Ok(ShardAnswer::Stored(want)));
        let moved = |epoch| arr(vec![bulk("moved"), bulk(epoch)]);
        let refused = |epoch| Ok(ShardAnswer::Refused(Refused::Moved { epoch }));
        assert_eq!(answer(&produce(), moved("12")), refused(12));
        assert_eq!(
            answer(&consume(), moved("x")),
            refused(0),
            "as the stand-in reads it"
        );
        let get = ShardCall::MemGet { key: 1, fence: 1 };
        let memory = |v: Resp| answer(&get, arr(vec![bulk("memory"), v]));
        assert_eq!(memory(bulk("7:40")), Ok(ShardAnswer::Memory(Some((40, 7)))));
        assert_eq!(memory(Resp::Bulk(None)), Ok(ShardAnswer::Memory(None)));
        assert_eq!(memory(bulk("7:x")), Ok(ShardAnswer::Memory(None)));
    }

    #[test]
    fn a_frozen_reply_decodes_into_the_dump_with_sorted_producers() {
        let reply = arr(vec![
            bulk("frozen"),
            arr(vec![bulk("1:1"), bulk("r"), Resp::Integer(0)]),
            arr(vec![
                bulk("1:2"),
                bulk("i"),
                Resp::Integer(2),
                bulk("18446744073709551615"),
            ]),
            arr(vec![]),
            arr(vec![
                bulk("9"),
                bulk("1"),
                bulk("x"),
                bulk("1"),
                bulk("2"),
                bulk("4"),
            ]),
        ]);
        let want = Dump {
            ready: vec![(id(1, 1), b"r".to_vec(), 0)],
            inflight: vec![(id(1, 2), b"i".to_vec(), 2, u64::MAX)],
            dead: vec![],
            last_seq: vec![(2, 4), (9, 1)],
        };
        assert_eq!(
            answer(&freeze(), reply),
            Ok(ShardAnswer::Frozen(Rc::new(want)))
        );
    }

    #[test]
    fn malformed_replies_are_errors_naming_the_call_and_the_problem() {
        let err = |call: &ShardCall, reply: Resp| answer(call, reply).unwrap_err();
        let e = err(&produce(), Resp::Error(b"ERR Function not found".to_vec()));
        assert!(e.starts_with("Produce (FCALL distsync_produce): "), "{e}");
        assert!(e.contains("ERR Function not found"), "{e}");
        let e = err(&produce(), Resp::Integer(1));
        assert!(e.contains("expected an array reply"), "{e}");
        let e = err(&produce(), arr(vec![bulk("settled"), Resp::Integer(1)]));
        assert!(e.contains("kind \"settled\""), "{e}");
        let e = err(
            &ShardCall::MemGet { key: 1, fence: 1 },
            arr(vec![bulk("moved"), bulk("1")]),
        );
        assert!(e.contains("kind \"moved\""), "memory is never refused: {e}");
        let e = err(&produce(), arr(vec![bulk("stored"), Resp::Integer(1)]));
        assert!(
            e.contains("the duplicate count at element 3, the reply ended"),
            "{e}"
        );
        let e = err(
            &produce(),
            arr(vec![bulk("stored"), Resp::Integer(-1), Resp::Integer(0)]),
        );
        assert!(e.contains("is -1, not a u32"), "{e}");
        let extra = arr(vec![bulk("settled"), Resp::Integer(1), Resp::Integer(2)]);
        let settle = ShardCall::Settle {
            partition: 0,
            acks: Rc::new(vec![]),
            nacks: Rc::new(vec![]),
            max_attempts: 1,
        };
        assert!(err(&settle, extra).contains("1 unexpected element(s)"));
        let cut = arr(vec![bulk("delivered"), bulk("1:1"), bulk("body")]);
        let e = err(&consume(), cut);
        assert!(e.contains("a delivery's attempt at element 4"), "{e}");
        let bad_id = arr(vec![
            bulk("delivered"),
            bulk("1-1"),
            bulk(""),
            Resp::Integer(1),
        ]);
        assert!(err(&consume(), bad_id).contains("\"1-1\", not <producer>:<seq>"));
        let short = arr(vec![bulk("frozen"), arr(vec![]), arr(vec![])]);
        assert!(err(&freeze(), short).contains("the dead entries"));
        let bad_left = arr(vec![
            bulk("frozen"),
            arr(vec![]),
            arr(vec![bulk("1:2"), bulk("i"), Resp::Integer(2), bulk("-3")]),
            arr(vec![]),
            arr(vec![]),
        ]);
        assert!(err(&freeze(), bad_left).contains("visibility left is not a u64"));
        let nil_kind = arr(vec![Resp::Bulk(None)]);
        assert!(err(&freeze(), nil_kind).contains("the reply's kind (a bulk string)"));
    }
}
