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
