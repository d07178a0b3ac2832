//! The queue's shards on real Redis servers (`REDIS_URL`): each call the
//! node's router makes runs as one FCALL of the queue's Lua library
//! (`queue::lua`), which does on the server what the simulator's stand-in
//! does in Rust; the differential test (`real::redis_diff`) holds the two
//! to each other.
//!
//! One multiplexed connection per shard (the `redis` crate's connection
//! manager, which reconnects by itself): calls made while others are in
//! flight are pipelined on it. The library is loaded on a shard's first
//! call and again whenever the server says it does not know the function
//! (a restarted Redis without persistence). A shard that cannot be reached
//! answers `Unavailable`, which the router turns into `Retry`: only that
//! shard's partitions go unserved.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::queue::lua;
use crate::queue::protocol::{ShardAnswer, ShardCall};
use crate::real::config::RedisUrl;
use crate::real::metrics::Metrics;
use crate::real::runtime::{ShardCalls, ShardReply};
use crate::redis::Resp;

/// Calls in flight over all shards; more are answered `Unavailable` at
/// once rather than queued without bound.
const MAX_IN_FLIGHT: usize = 4096;

/// How long a call may take before its shard counts as down for it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One Redis server.
struct Shard {
    /// The URL without its password, for log lines.
    name: String,
    connection: ConnectionManager,
    /// The library is known to be loaded (at this node's version).
    loaded: Rc<Cell<bool>>,
    /// The last call succeeded: a failure after success is logged as a
    /// warning, the ones after it only at debug level.
    healthy: Rc<Cell<bool>>,
}

/// The node's Redis shards, in `REDIS_URL` order (shard k is the k-th URL).
pub struct RedisShards {
    shards: Vec<Shard>,
    answers: mpsc::Sender<ShardReply>,
    in_flight: Rc<Cell<usize>>,
    /// Where each call's latency and failure go (`ENABLE_METRICS`).
    metrics: Option<Arc<Metrics>>,
}

impl RedisShards {
    /// Connections to `urls` (made lazily: a server that is down now is
    /// retried on each call) and the channel their answers come back on,
    /// for `Runtime::with_shards`. Fails only on a URL the client refuses.
    pub fn connect(
        urls: &[RedisUrl],
        metrics: Option<Arc<Metrics>>,
    ) -> Result<(RedisShards, mpsc::Receiver<ShardReply>), String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        let mut shards = Vec::new();
        for u in urls {
            let name = format!("redis://{}:{}/{}", u.host, u.port, u.db);
            let client = redis::Client::open(u.url.as_str())
                .map_err(|e| format!("REDIS_URL {name}: {e}"))?;
            let connection = ConnectionManager::new_lazy_with_config(client, config.clone())
                .map_err(|e| format!("REDIS_URL {name}: {e}"))?;
            shards.push(Shard {
                name,
                connection,
                loaded: Rc::new(Cell::new(false)),
                healthy: Rc::new(Cell::new(true)),
            });
        }
        let (answers, rx) = mpsc::channel(MAX_IN_FLIGHT);
        Ok((
            RedisShards {
                shards,
                answers,
                in_flight: Rc::new(Cell::new(0)),
                metrics,
            },
            rx,
        ))
    }
}

impl ShardCalls for RedisShards {
    fn call(&self, shard: usize, req: u64, call: ShardCall) {
        let Some(s) = self.shards.get(shard) else {
            let _ = self
                .answers
                .try_send((shard, req, ShardAnswer::Unavailable));
            return;
        };
        if self.in_flight.get() >= MAX_IN_FLIGHT {
            let _ = self
                .answers
                .try_send((shard, req, ShardAnswer::Unavailable));
            return;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let mut connection = s.connection.clone();
        let (loaded, healthy, name) = (s.loaded.clone(), s.healthy.clone(), s.name.clone());
        let (answers, in_flight) = (self.answers.clone(), self.in_flight.clone());
        let metrics = self.metrics.clone();
        tokio::task::spawn_local(async move {
            let started = Instant::now();
            let result = run(&mut connection, &loaded, &call).await;
            if let Some(m) = &metrics {
                m.redis_call(shard, started.elapsed(), result.is_err());
            }
            let answer = match result {
                Ok(a) => {
                    if !healthy.replace(true) {
                        tracing::info!("queue shard {shard} ({name}) answers again");
                    }
                    a
                }
                Err(e) => {
                    if healthy.replace(false) {
                        tracing::warn!(
                            "queue shard {shard} ({name}): {e}; its partitions answer 503 until it is back"
                        );
                    } else {
                        tracing::debug!("queue shard {shard} ({name}): {e}");
                    }
                    ShardAnswer::Unavailable
                }
            };
            // Waits for room rather than dropping a finished call's answer
            // (the channel holds as many as may be in flight).
            let _ = answers.send((shard, req, answer)).await;
            in_flight.set(in_flight.get() - 1);
        });
    }
}

/// Runs one call: the FCALL, loading the library first when needed.
async fn run(
    connection: &mut ConnectionManager,
    loaded: &Cell<bool>,
    call: &ShardCall,
) -> Result<ShardAnswer, String> {
    if !loaded.get() {
        ensure_library(connection).await?;
        loaded.set(true);
    }
    let args = lua::fcall(call, now_ns());
    let mut reply = query(connection, &args).await?;
    if is_missing_function(&reply) {
        // The server lost its functions (restarted without persistence).
        loaded.set(false);
        ensure_library(connection).await?;
        loaded.set(true);
        reply = query(connection, &args).await?;
    }
    lua::answer(call, reply)
}

/// Loads the library unless the server has this node's version already.
/// A newer version is left alone: an older node must not downgrade the
/// shard under newer ones (it then answers `Unavailable` until upgraded).
async fn ensure_library(connection: &mut ConnectionManager) -> Result<(), String> {
    let version = [lua::VERSION_FUNCTION.as_bytes().to_vec(), b"0".to_vec()];
    let mut args = vec![b"FCALL".to_vec()];
    args.extend(version);
    match query(connection, &args).await? {
        Resp::Integer(v) if v == lua::LIBRARY_VERSION as i64 => return Ok(()),
        Resp::Integer(v) if v > lua::LIBRARY_VERSION as i64 => {
            return Err(format!(
                "the server holds the queue library version {v}, newer than this node's {}; \
                 upgrade this node",
                lua::LIBRARY_VERSION
            ));
        }
        _ => {}
    }
    match query(connection, &lua::load_command(lua::LIBRARY)).await? {
        Resp::Error(e) => Err(format!(
            "loading the queue library: {}",
            String::from_utf8_lossy(&e)
        )),
        _ => Ok(()),
    }
}

/// One command; a server error comes back as `Resp::Error`, a failed
/// connection as `Err`.
async fn query(connection: &mut ConnectionManager, args: &[Vec<u8>]) -> Result<Resp, String> {
    let Some((name, rest)) = args.split_first() else {
        return Err("an empty command".into());
    };
    let mut cmd = redis::cmd(&String::from_utf8_lossy(name));
    for a in rest {
        cmd.arg(a.as_slice());
    }
    match cmd.query_async::<redis::Value>(connection).await {
        Ok(v) => Ok(to_resp(v)),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
            Err(e.to_string())
        }
        Err(e) => Ok(Resp::Error(e.to_string().into_bytes())),
    }
}

fn is_missing_function(reply: &Resp) -> bool {
    matches!(reply, Resp::Error(e) if e.windows(18).any(|w| w.eq_ignore_ascii_case(b"function not found")))
}

/// The client's value as the project's RESP2 value, which `lua::answer`
/// reads. The library's replies are RESP2 types only; anything else is
/// shown as an error so the decoder names it.
fn to_resp(v: redis::Value) -> Resp {
    use redis::Value as V;
    match v {
        V::Nil => Resp::Bulk(None),
        V::Int(i) => Resp::Integer(i),
        V::BulkString(b) => Resp::Bulk(Some(b)),
        V::Array(items) | V::Set(items) => {
            Resp::Array(Some(items.into_iter().map(to_resp).collect()))
        }
        V::SimpleString(s) => Resp::Simple(s.into_bytes()),
        V::Okay => Resp::Simple(b"OK".to_vec()),
        V::ServerError(e) => Resp::Error(format!("{e:?}").into_bytes()),
        other => Resp::Error(format!("unexpected RESP3 value {other:?}").into_bytes()),
    }
}

/// The shard clock the library's deadlines use: this node's wall clock.
/// Nodes' clocks should agree to well within a visibility timeout (NTP);
/// a skew of d moves a message's redelivery by up to d.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
