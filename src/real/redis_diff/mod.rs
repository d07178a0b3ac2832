//! Differential tests against a real redis-server (it must be installed):
//! the queue's Lua library against the stand-in's Rust functions, and the
//! stand-in's commands against Redis's own. Each test starts its own server.

mod commands;
mod keyspace;
mod queue;
pub(crate) mod server;

use server::Server;

/// Seeds and steps of the queue comparison: enough to reach every case
/// `queue::Coverage` counts many times over, in a few seconds.
const QUEUE_SEEDS: u64 = 300;
const QUEUE_STEPS: usize = 250;

/// Seeds and steps of the plain command comparison.
const COMMAND_SEEDS: u64 = 200;
const COMMAND_STEPS: usize = 300;

#[test]
fn the_stand_in_replies_to_commands_as_redis_server_does() {
    let server = Server::start("redis-diff-commands");
    let mut conn = server.connect();
    let started = std::time::Instant::now();
    let cov =
        commands::run(&mut conn, 0..COMMAND_SEEDS, COMMAND_STEPS).unwrap_or_else(|m| panic!("{m}"));
    eprintln!(
        "{} commands compared in {:?}: {cov:?}",
        cov.compared,
        started.elapsed()
    );
    // Past the errors: most replies are results, many of them arrays and
    // transactions, and the errors are of many kinds.
    assert!(cov.successes > cov.compared / 2, "{cov:?}");
    assert!(cov.arrays > cov.compared / 100, "{cov:?}");
    assert!(cov.transactions > 100, "{cov:?}");
    assert!(cov.errors.len() > 20, "{cov:?}");
}

#[test]
fn the_lua_library_answers_and_writes_as_the_stand_in() {
    let server = Server::start("redis-diff-queue");
    let mut conn = server.connect();
    queue::load(&mut conn, crate::queue::lua::LIBRARY);
    let started = std::time::Instant::now();
    let cov = queue::run(&mut conn, 0..QUEUE_SEEDS, QUEUE_STEPS).unwrap_or_else(|m| panic!("{m}"));
    eprintln!(
        "{QUEUE_SEEDS} seeds x {QUEUE_STEPS} calls in {:?}: {cov:?}",
        started.elapsed()
    );
    let reached = [
        ("refusals", cov.refused),
        ("duplicates", cov.duplicates as usize),
        ("redeliveries", cov.redeliveries),
        ("acks", cov.acked as usize),
        ("dumps with messages in flight", cov.dumps_in_flight),
        ("dumps with dead letters", cov.dumps_dead),
        ("memory reads of a value", cov.memory_held),
    ];
    for (what, n) in reached {
        assert!(n >= 10, "the run reached too few {what}: {n} ({cov:?})");
    }
}

/// Lua's `unpack` gives only about 8000 values at once: the library sends
/// a command's elements in slices, which must add up to the whole.
#[test]
fn batches_too_large_for_one_unpack_go_through_whole() {
    use crate::queue::functions::MessageId;
    use crate::queue::protocol::{ShardAnswer, ShardCall};
    use std::rc::Rc;

    const N: usize = 9000;
    let server = Server::start("redis-diff-large");
    let mut conn = server.connect();
    queue::load(&mut conn, crate::queue::lua::LIBRARY);
    let bodies: Vec<Vec<u8>> = (0..N).map(|i| i.to_string().into_bytes()).collect();
    let produce = ShardCall::Produce {
        partition: 0,
        producer: 1,
        first_seq: 1,
        bodies: Rc::new(bodies),
    };
    let consume = ShardCall::Consume {
        partition: 0,
        consumer: 0,
        max: N as u32 / 2,
        visibility_ns: 100,
        max_attempts: 3,
        honour_visibility: true,
    };
    let freeze = ShardCall::Freeze {
        partition: 0,
        epoch: 1,
        include_inflight: true,
    };
    // The dump freeze answers, computed on a stand-in of our own.
    let mut store = crate::redis::Store::default();
    for call in [&produce, &consume] {
        crate::queue::shard::run_on(&mut store, 10, call);
    }
    let ShardAnswer::Frozen(dump) = crate::queue::shard::run_on(&mut store, 20, &freeze) else {
        panic!("freeze answers a dump");
    };
    assert_eq!((dump.ready.len(), dump.inflight.len()), (N / 2, N / 2));
    let import = ShardCall::Import {
        partition: 1,
        epoch: 1,
        dump,
    };
    let ids = |seqs: std::ops::Range<u64>| -> Rc<Vec<MessageId>> {
        Rc::new(seqs.map(|seq| MessageId { producer: 1, seq }).collect())
    };
    let settle = ShardCall::Settle {
        partition: 1,
        acks: ids(1..N as u64 / 4),
        nacks: ids(N as u64 / 4..N as u64 / 2),
        max_attempts: 1,
    };
    // Past every deadline: the rest of the in-flight ones expire at once.
    let expire = ShardCall::Consume {
        partition: 1,
        consumer: 0,
        max: 0,
        visibility_ns: 100,
        max_attempts: 3,
        honour_visibility: true,
    };
    let drop = ShardCall::Drop {
        partition: 0,
        epoch: 1,
    };
    let calls = [
        (produce, 10),
        (consume, 10),
        (freeze, 20),
        (import, 30),
        (settle, 40),
        (expire, 1000),
        (drop, 1000),
    ];
    queue::replay(&mut conn, &calls).unwrap_or_else(|m| panic!("{m}"));
}

/// The comparison must catch a library that differs from the stand-in in
/// one rule: `original` replaced by `planted` (once) in the Lua text, and
/// the report must say `reported`.
fn assert_planted_difference_found(original: &str, planted: &str, reported: &str) {
    let library = crate::queue::lua::LIBRARY;
    assert_eq!(
        library.matches(original).count(),
        1,
        "not in functions.lua once: {original}"
    );
    let altered = library.replace(original, planted);
    let server = Server::start("redis-diff-planted");
    let mut conn = server.connect();
    queue::load(&mut conn, &altered);
    let found = queue::run(&mut conn, 0..QUEUE_SEEDS, QUEUE_STEPS)
        .expect_err("the planted difference went unnoticed");
    eprintln!("planted difference found: {found}");
    assert!(
        found.what.contains(reported),
        "expected {reported:?} in: {found}"
    );
}

/// A nack that dead-letters one attempt late shows in an answer.
#[test]
fn a_planted_difference_in_an_answer_is_reported() {
    assert_planted_difference_found(
        "      if cmp(attempts(keys, args[i]), max_attempts) >= 0 then",
        "      if cmp(attempts(keys, args[i]), max_attempts) > 0 then",
        "redis-server: Ok(",
    );
}

/// An ack that leaves the attempt count behind changes no answer, only
/// the keyspace.
#[test]
fn a_planted_difference_in_the_keyspace_is_reported() {
    assert_planted_difference_found(
        "      redis.call('HDEL', keys[ATTEMPTS], args[i])\n",
        "",
        "the keyspaces differ",
    );
}
