//! The distributed queue over HTTP (with `REDIS_URL`): produce, consume
//! (long-polling), ack and nack, on queues `0..QUEUES` each split into
//! `PARTITIONS_PER_QUEUE` partitions. Any node serves: its router forwards
//! each request to the Redis shard its replicated placement names, where
//! the queue's Lua library runs it atomically (docs/queue.md).
//!
//! Delivery is at least once: a produce is idempotent by (producer,
//! sequence number) within its partition, so a producer that got 503 sends
//! the same batch again; a consumed message comes back after the
//! visibility timeout unless acked.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, ApiResult, json_body, ok, unexpected, within};
use crate::queue::functions::{MessageId, Partition};
use crate::queue::protocol::{QueueReply, QueueRequest};
use crate::real::{PARTITIONS_PER_QUEUE, QUEUES};
use std::rc::Rc;

/// The most messages in one produce or settle, and in one consume.
const MAX_BATCH: usize = 1000;
const MAX_CONSUME: u32 = 100;
/// The longest a consume may long-poll, and how often it looks again.
const MAX_CONSUME_WAIT_MS: u64 = 30_000;
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A queue's name in the path: `0..QUEUES`; 404 when the node serves no
/// queue at all.
fn queue_of(api: &Api, raw: &str) -> Result<u32, ApiError> {
    if !api.queue {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "queue_off",
            "this node serves no queue: start it with REDIS_URL set",
        ));
    }
    parse_queue(raw)
}

fn parse_queue(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|q| *q < QUEUES)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_queue",
                format!("queue `{raw}`: the queues are 0 to {}", QUEUES - 1),
            )
        })
}

/// The global partition of a queue's partition `p` (checked in range).
fn global(queue: u32, p: u32) -> Result<Partition, ApiError> {
    if p >= PARTITIONS_PER_QUEUE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("partition must be below {PARTITIONS_PER_QUEUE}, got {p}"),
        ));
    }
    Ok(queue * PARTITIONS_PER_QUEUE + p)
}

/// Sends one queue request; `Retry` becomes 503.
async fn ask(
    api: &Api,
    make: impl FnOnce() -> QueueRequest + Send + 'static,
) -> Result<QueueReply, ApiError> {
    let reply = within(api.node.queue(make), super::REQUEST_TIMEOUT, "a produce's").await?;
    match reply {
        QueueReply::Retry => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry",
            "the partition is not served now (its Redis shard is down, or it is moving); \
             send the same request again",
        )
        .retry_after()),
        r => Ok(r),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProduceBody {
    producer: u32,
    first_seq: u64,
    messages: Vec<String>,
    partition: Option<u32>,
}

/// `POST /queue/{name}/produce`: stores a batch, idempotently.
pub(super) async fn produce(
    State(api): State<Api>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let queue = queue_of(&api, &raw)?;
    let ProduceBody {
        producer,
        first_seq,
        messages,
        partition,
    } = json_body(
        body,
        "a JSON object {\"producer\": <u32>, \"first_seq\": <u64, at least 1>, \
         \"messages\": [<string>, ...], \"partition\": <optional, below 8>}",
    )?;
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("messages: 1 to {MAX_BATCH}, got {}", messages.len()),
        ));
    }
    if first_seq == 0 || first_seq.checked_add(messages.len() as u64).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "first_seq must be at least 1, and first_seq + messages must fit in 64 bits",
        ));
    }
    // A producer's messages stay in one partition unless it names one, so
    // its sequence numbers deduplicate them.
    let p = partition.unwrap_or(producer % PARTITIONS_PER_QUEUE);
    let part = global(queue, p)?;
    let bodies: Vec<Vec<u8>> = messages.into_iter().map(String::into_bytes).collect();
    let reply = ask(&api, move || QueueRequest::Produce {
        partition: part,
        producer,
        first_seq,
        bodies: Rc::new(bodies),
    })
    .await?;
    match reply {
        QueueReply::Produced(s) => ok(json!({
            "partition": p,
            "stored": s.stored,
            "duplicate": s.duplicate,
        })),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsumeBody {
    consumer: u32,
    max: Option<u32>,
    partition: Option<u32>,
    wait_ms: Option<u64>,
}

/// `POST /queue/{name}/consume`: up to `max` messages, from the named
/// partition or from each in turn (starting at the consumer's own), waiting
/// up to `wait_ms` for one to arrive.
pub(super) async fn consume(
    State(api): State<Api>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let queue = queue_of(&api, &raw)?;
    let ConsumeBody {
        consumer,
        max,
        partition,
        wait_ms,
    } = json_body(
        body,
        "a JSON object {\"consumer\": <u32>, \"max\": <1 to 100, default 1>, \
         \"partition\": <optional, below 8>, \"wait_ms\": <0 to 30000, default 0>}",
    )?;
    let max = max.unwrap_or(1);
    let wait_ms = wait_ms.unwrap_or(0);
    if !(1..=MAX_CONSUME).contains(&max) || wait_ms > MAX_CONSUME_WAIT_MS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!(
                "max must be 1 to {MAX_CONSUME} (got {max}), wait_ms at most \
                 {MAX_CONSUME_WAIT_MS} (got {wait_ms})"
            ),
        ));
    }
    let order: Vec<u32> = match partition {
        Some(p) => {
            global(queue, p)?;
            vec![p]
        }
        None => (0..PARTITIONS_PER_QUEUE)
            .map(|i| (consumer % PARTITIONS_PER_QUEUE + i) % PARTITIONS_PER_QUEUE)
            .collect(),
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    loop {
        let mut unavailable = None;
        let mut failed = 0;
        for &p in &order {
            let part = global(queue, p)?;
            let reply = ask(&api, move || QueueRequest::Consume {
                partition: part,
                consumer,
                max,
            })
            .await;
            match reply {
                Ok(QueueReply::Delivered(d)) if !d.is_empty() => {
                    let messages: Vec<Value> = d
                        .iter()
                        .map(|m| {
                            json!({
                                "partition": p,
                                "id": format!("{}:{}", m.id.producer, m.id.seq),
                                "producer": m.id.producer,
                                "seq": m.id.seq,
                                "body": String::from_utf8_lossy(&m.body),
                                "attempt": m.attempt,
                            })
                        })
                        .collect();
                    return ok(json!({"messages": messages}));
                }
                Ok(QueueReply::Delivered(_)) => {}
                Ok(other) => return Err(unexpected(&other)),
                // One shard down leaves the others' partitions served.
                Err(e) => {
                    unavailable = Some(e);
                    failed += 1;
                }
            }
        }
        if Instant::now() + POLL_EVERY > deadline {
            // Nothing anywhere: say so, unless no partition could be asked
            // (an empty answer would pass for an empty queue).
            return match unavailable {
                Some(e) if failed == order.len() => Err(e),
                _ => ok(json!({"messages": []})),
            };
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettleBody {
    partition: u32,
    ids: Vec<String>,
}

/// `POST /queue/{name}/ack`: removes delivered messages for good.
pub(super) async fn ack(
    State(api): State<Api>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    settle(api, &raw, body, true).await
}

/// `POST /queue/{name}/nack`: gives delivered messages back for
/// redelivery now (or to the dead letters after their last attempt).
pub(super) async fn nack(
    State(api): State<Api>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    settle(api, &raw, body, false).await
}

async fn settle(
    api: Api,
    raw: &str,
    body: Result<Bytes, BytesRejection>,
    acking: bool,
) -> ApiResult {
    let queue = queue_of(&api, raw)?;
    let SettleBody { partition, ids } = json_body(
        body,
        "a JSON object {\"partition\": <below 8>, \"ids\": [\"<producer>:<seq>\", ...]}",
    )?;
    let part = global(queue, partition)?;
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("ids: 1 to {MAX_BATCH}, got {}", ids.len()),
        ));
    }
    let parsed = ids
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let count = parsed.len();
    let (acks, nacks) = if acking {
        (parsed, Vec::new())
    } else {
        (Vec::new(), parsed)
    };
    let reply = ask(&api, move || QueueRequest::Settle {
        partition: part,
        acks: Rc::new(acks),
        nacks: Rc::new(nacks),
    })
    .await?;
    match reply {
        QueueReply::Settled(n) if acking => ok(json!({"partition": partition, "acked": n})),
        QueueReply::Settled(_) => ok(json!({"partition": partition, "nacked": count})),
        other => Err(unexpected(&other)),
    }
}

fn parse_id(id: &str) -> Result<MessageId, ApiError> {
    let parsed = id
        .split_once(':')
        .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)));
    match parsed {
        Some((producer, seq)) => Ok(MessageId { producer, seq }),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("message id `{id}`: expected <producer>:<seq>, as consume returns it"),
        )),
    }
}

#[cfg(test)]
mod tests;
