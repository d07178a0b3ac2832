//! `distsync client`: one request to a running cluster's HTTP API,
//! following redirects to the leader and retrying while none is known.

use std::time::{Duration, Instant};

use crate::real::http_client::{HttpResponse, request_following_as};

/// Exit codes of `distsync client`.
pub const EXIT_OK: u8 = 0;
/// The cluster answered with an error (a missing key included).
pub const EXIT_ANSWERED_ERROR: u8 = 1;
/// Bad arguments.
pub const EXIT_BAD_INPUT: u8 = 2;
/// No answer: the node could not be reached or did not answer in time.
pub const EXIT_UNREACHABLE: u8 = 5;

/// What to ask.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum ClientOp {
    /// Write VALUE (an unsigned 64-bit integer) at KEY (an unsigned 32-bit integer).
    Put { key: String, value: String },
    /// Read KEY (linearizable).
    Get { key: String },
    /// Delete KEY.
    Delete { key: String },
    /// The node's role, term, leader and indexes.
    Health,
    /// Who leads.
    Leader,
    /// Raft log entries.
    Log {
        /// First index to show.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most entries to show (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// The lock service: sessions, acquire, release, inspection.
    #[command(subcommand)]
    Lock(LockOp),
    /// The queue (nodes started with REDIS_URL): produce, consume, ack, nack.
    #[command(subcommand)]
    Queue(QueueOp),
}

/// `distsync client queue ...`: one request of the queue API (docs/deploy.md, "Queue").
#[derive(clap::Subcommand, Clone, Debug)]
pub enum QueueOp {
    /// Store MESSAGES in QUEUE (0 to 15) as PRODUCER's FIRST_SEQ, FIRST_SEQ+1, ... (idempotent)
    Produce {
        queue: String,
        #[arg(required = true)]
        messages: Vec<String>,
        #[arg(long)]
        producer: u32,
        /// The first message's sequence number (from 1); send the same again to retry
        #[arg(long)]
        first_seq: u64,
        /// The partition (below 8); default: the producer's own
        #[arg(long)]
        partition: Option<u32>,
    },
    /// Take up to --max messages from QUEUE
    Consume {
        queue: String,
        #[arg(long)]
        consumer: u32,
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Wait this long for a message (at most 30000)
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
        #[arg(long)]
        partition: Option<u32>,
    },
    /// Remove delivered messages (IDS as consume prints them, producer:seq)
    Ack {
        queue: String,
        #[arg(long)]
        partition: u32,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Give delivered messages back for redelivery
    Nack {
        queue: String,
        #[arg(long)]
        partition: u32,
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `distsync client lock ...`: one request of the lock API (docs/deploy.md, "Locks").
#[derive(clap::Subcommand, Clone, Debug)]
pub enum LockOp {
    /// Open a session; prints its id.
    Open {
        /// The session's lease: it ends this long after the last keep-alive (100 to 3600000)
        #[arg(long, default_value_t = 10_000)]
        ttl_ms: u64,
    },
    /// Renew SESSION's lease.
    Keepalive { session: String },
    /// Close SESSION, releasing every lock it holds.
    Close { session: String },
    /// Take LOCK (an unsigned 32-bit integer) for the session; prints the fencing token.
    Acquire {
        lock: String,
        #[arg(long)]
        session: String,
        /// shared or exclusive
        #[arg(long, default_value = "exclusive")]
        mode: String,
        /// How long to wait in the lock's queue (0: fail at once if taken; at most 60000)
        #[arg(long, default_value_t = 10_000)]
        wait_ms: u64,
    },
    /// Give back one hold of LOCK.
    Release {
        lock: String,
        #[arg(long)]
        session: String,
    },
    /// LOCK's holders, waiters and last fencing token.
    Show { lock: String },
    /// The wait-for graph (Graphviz with --dot).
    WaitFor {
        #[arg(long)]
        dot: bool,
    },
}

/// `distsync client`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// Any node's HTTP API; writes and reads are redirected to the leader
    #[arg(long, env = "DISTSYNC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Give up after this long, retries included (e.g. 500ms, 10s); an acquire's wait comes on top
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The cluster's API_TOKEN, sent as a bearer token
    #[arg(long, env = "DISTSYNC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub op: ClientOp,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let ns = crate::scenario::parse::parse_duration(text)
        .map_err(|e| format!("{e} (e.g. 500ms or 10s)"))?;
    if ns == 0 {
        return Err("expected a duration above zero, e.g. 10s".to_owned());
    }
    Ok(Duration::from_nanos(ns))
}

/// Runs one client command; prints the answer's JSON on standard output
/// (errors on standard error) and returns the exit code.
pub fn run_client(args: &ClientArgs) -> u8 {
    let base = args.url.trim_end_matches('/');
    let (method, path, body) = match request_of(&args.op) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("error: {msg}");
            return EXIT_BAD_INPUT;
        }
    };
    if let Err(e) = crate::real::http_client::split_url(base) {
        eprintln!("error: --url {e}");
        return EXIT_BAD_INPUT;
    }
    let url = format!("{base}{path}");
    let waits = match &args.op {
        ClientOp::Lock(LockOp::Acquire { wait_ms, .. })
        | ClientOp::Queue(QueueOp::Consume { wait_ms, .. }) => Duration::from_millis(*wait_ms),
        _ => Duration::ZERO,
    };
    let Some(deadline) = Instant::now()
        .checked_add(args.timeout)
        .and_then(|d| d.checked_add(waits))
    else {
        eprintln!("error: --timeout and --wait-ms are too long");
        return EXIT_BAD_INPUT;
    };
    // A lock command is not idempotent: after a `retry` answer its outcome
    // is open, and sending it again could apply it twice.
    let once = matches!(
        &args.op,
        ClientOp::Lock(
            LockOp::Open { .. }
                | LockOp::Close { .. }
                | LockOp::Acquire { .. }
                | LockOp::Release { .. }
        )
    );
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = request_following_as(
            method,
            &url,
            body.as_deref(),
            left.max(MIN_TRY),
            args.token.as_deref(),
        );
        match answer {
            Ok((resp, _))
                if resp.status == 503
                    && Instant::now() + RETRY_PAUSE < deadline
                    && !(once && error_code(&resp).as_deref() == Some("retry")) =>
            {
                // No leader yet, or a write's outcome is open: the same
                // request again is what the answer asks for.
                std::thread::sleep(RETRY_PAUSE);
            }
            Ok((resp, _)) => return print_answer(&resp),
            Err(e) if Instant::now() + RETRY_PAUSE < deadline && retryable(&e) => {
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(e) => {
                eprintln!("error: {url}: {e}");
                return EXIT_UNREACHABLE;
            }
        }
    }
}

/// The shortest time one attempt is given.
const MIN_TRY: Duration = Duration::from_millis(100);

/// Between retries while the cluster has no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Refused or reset connections happen while a node restarts.
fn retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut | WouldBlock
    )
}

type Request = (&'static str, String, Option<Vec<u8>>);

fn request_of(op: &ClientOp) -> Result<Request, String> {
    let key = |k: &str| {
        k.parse::<u32>()
            .map_err(|_| format!("key `{k}`: expected an unsigned 32-bit integer"))
    };
    Ok(match op {
        ClientOp::Put { key: k, value } => {
            let v: u64 = value
                .parse()
                .map_err(|_| format!("value `{value}`: expected an unsigned 64-bit integer"))?;
            let body = format!("{{\"value\": {v}}}").into_bytes();
            ("PUT", format!("/kv/{}", key(k)?), Some(body))
        }
        ClientOp::Get { key: k } => ("GET", format!("/kv/{}", key(k)?), None),
        ClientOp::Delete { key: k } => ("DELETE", format!("/kv/{}", key(k)?), None),
        ClientOp::Health => ("GET", "/health".to_owned(), None),
        ClientOp::Leader => ("GET", "/raft/leader".to_owned(), None),
        ClientOp::Log { from, limit } => {
            if !(1..=1000).contains(limit) {
                return Err(format!("--limit {limit}: expected 1 to 1000"));
            }
            ("GET", format!("/raft/log?from={from}&limit={limit}"), None)
        }
        ClientOp::Lock(op) => lock_request_of(op)?,
        ClientOp::Queue(op) => queue_request_of(op)?,
    })
}

fn queue_request_of(op: &QueueOp) -> Result<Request, String> {
    let queue = |q: &str| {
        q.parse::<u32>()
            .ok()
            .filter(|q| *q < crate::real::QUEUES)
            .ok_or_else(|| format!("queue `{q}`: expected 0 to {}", crate::real::QUEUES - 1))
    };
    let json = |v: serde_json::Value| Some(v.to_string().into_bytes());
    Ok(match op {
        QueueOp::Produce {
            queue: q,
            messages,
            producer,
            first_seq,
            partition,
        } => {
            let mut body = serde_json::json!({
                "producer": producer, "first_seq": first_seq, "messages": messages,
            });
            if let Some(p) = partition {
                body["partition"] = (*p).into();
            }
            ("POST", format!("/queue/{}/produce", queue(q)?), json(body))
        }
        QueueOp::Consume {
            queue: q,
            consumer,
            max,
            wait_ms,
            partition,
        } => {
            let mut body = serde_json::json!({
                "consumer": consumer, "max": max, "wait_ms": wait_ms,
            });
            if let Some(p) = partition {
                body["partition"] = (*p).into();
            }
            ("POST", format!("/queue/{}/consume", queue(q)?), json(body))
        }
        QueueOp::Ack {
            queue: q,
            partition,
            ids,
        }
        | QueueOp::Nack {
            queue: q,
            partition,
            ids,
        } => {
            let verb = if matches!(op, QueueOp::Ack { .. }) {
                "ack"
            } else {
                "nack"
            };
            let body = serde_json::json!({"partition": partition, "ids": ids});
            ("POST", format!("/queue/{}/{verb}", queue(q)?), json(body))
        }
    })
}

fn lock_request_of(op: &LockOp) -> Result<Request, String> {
    let lock = |l: &str| {
        l.parse::<u32>()
            .map_err(|_| format!("lock `{l}`: expected an unsigned 32-bit integer"))
    };
    let session = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("session `{s}`: expected a session id (an unsigned integer)"))
    };
    let json = |v: serde_json::Value| Some(v.to_string().into_bytes());
    Ok(match op {
        LockOp::Open { ttl_ms } => (
            "POST",
            "/locks/sessions".to_owned(),
            json(serde_json::json!({"ttl_ms": ttl_ms})),
        ),
        LockOp::Keepalive { session: s } => (
            "POST",
            format!("/locks/sessions/{}/keepalive", session(s)?),
            None,
        ),
        LockOp::Close { session: s } => {
            ("DELETE", format!("/locks/sessions/{}", session(s)?), None)
        }
        LockOp::Acquire {
            lock: l,
            session: s,
            mode,
            wait_ms,
        } => {
            if mode != "shared" && mode != "exclusive" {
                return Err(format!("--mode {mode}: expected shared or exclusive"));
            }
            let body = serde_json::json!({
                "session": session(s)?, "lock": lock(l)?, "mode": mode, "wait_ms": wait_ms,
            });
            ("POST", "/locks/acquire".to_owned(), json(body))
        }
        LockOp::Release {
            lock: l,
            session: s,
        } => {
            let body = serde_json::json!({"session": session(s)?, "lock": lock(l)?});
            ("POST", "/locks/release".to_owned(), json(body))
        }
        LockOp::Show { lock: l } => ("GET", format!("/locks/{}", lock(l)?), None),
        LockOp::WaitFor { dot } => {
            let query = if *dot { "?format=dot" } else { "" };
            ("GET", format!("/locks/wait_for{query}"), None)
        }
    })
}

/// The `error` code of a JSON error answer.
fn error_code(resp: &HttpResponse) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
}

fn print_answer(resp: &HttpResponse) -> u8 {
    let text = String::from_utf8_lossy(&resp.body);
    if (200..300).contains(&resp.status) {
        println!("{}", text.trim_end());
        EXIT_OK
    } else {
        let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim_end().to_owned());
        eprintln!("error: HTTP {}: {message}", resp.status);
        EXIT_ANSWERED_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_requests_or_clear_errors() {
        let put = ClientOp::Put {
            key: "7".into(),
            value: "42".into(),
        };
        let (m, p, b) = request_of(&put).unwrap();
        assert_eq!((m, p.as_str()), ("PUT", "/kv/7"));
        assert_eq!(b.unwrap(), br#"{"value": 42}"#);
        let acquire = ClientOp::Lock(LockOp::Acquire {
            lock: "7".into(),
            session: "12".into(),
            mode: "shared".into(),
            wait_ms: 500,
        });
        let (m, p, b) = request_of(&acquire).unwrap();
        assert_eq!((m, p.as_str()), ("POST", "/locks/acquire"));
        let body: serde_json::Value = serde_json::from_slice(&b.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"session": 12, "lock": 7, "mode": "shared", "wait_ms": 500})
        );
        for bad in [
            ClientOp::Get { key: "-1".into() },
            ClientOp::Put {
                key: "1".into(),
                value: "x".into(),
            },
            ClientOp::Log { from: 1, limit: 0 },
            ClientOp::Lock(LockOp::Show { lock: "x".into() }),
            ClientOp::Queue(QueueOp::Consume {
                queue: "16".into(),
                consumer: 1,
                max: 1,
                wait_ms: 0,
                partition: None,
            }),
            ClientOp::Lock(LockOp::Close {
                session: "-1".into(),
            }),
            ClientOp::Lock(LockOp::Acquire {
                lock: "1".into(),
                session: "2".into(),
                mode: "both".into(),
                wait_ms: 0,
            }),
        ] {
            assert!(request_of(&bad).is_err(), "{bad:?}");
        }
    }
}
