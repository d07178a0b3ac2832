//! The lock service over HTTP: sessions, acquire (long-polling), release,
//! and the leader's view of a lock and of the wait-for graph.
//!
//! Every request becomes one command of the replicated lock state machine
//! (docs/locks.md), proposed by the leader for the API's client
//! (`API_CLIENT`); a follower answers 307 to the leader. A session id is
//! the capability: whoever knows it acts for the session, and the state
//! machine refuses a release of a lock the session does not hold (403).

use std::fmt::Write as _;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, ApiError, ApiResult, U32_RANGE, ask_node, json_body, not_leader, ok, parse_segment,
    stopped, unexpected,
};
use crate::kv::{ClientReply, ClientRequest};
use crate::lock::protocol::{LockReply, LockRequest};
use crate::lock::{LockError, LockId, Mode, SessionId};
use crate::real::MAX_LOCK_WAIT;
use crate::trace::Role;

/// An acquire's wait when the request names none.
const DEFAULT_WAIT_MS: u64 = 10_000;

/// A session's lease when the request names none, and the bounds: shorter
/// than a few lease checks would expire sessions between keep-alives.
const DEFAULT_TTL_MS: u64 = 10_000;
const MIN_TTL_MS: u64 = 100;
const MAX_TTL_MS: u64 = 3_600_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenBody {
    ttl_ms: Option<u64>,
}

/// `POST /locks/sessions`: opens a session with a lease of `ttl_ms`.
pub(super) async fn open(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let OpenBody { ttl_ms } = optional_body(
        body,
        "a JSON object {\"ttl_ms\": <milliseconds, 100 to 3600000>} or no body",
    )?
    .unwrap_or(OpenBody { ttl_ms: None });
    let ttl_ms = ttl_ms.unwrap_or(DEFAULT_TTL_MS);
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("ttl_ms must be between {MIN_TTL_MS} and {MAX_TTL_MS}, got {ttl_ms}"),
        ));
    }
    let req = LockRequest::Open {
        ttl_ns: ttl_ms * 1_000_000,
    };
    match lock_reply(&api, req, "/locks/sessions", None).await? {
        LockReply::Session(session) => Ok((
            StatusCode::CREATED,
            axum::Json(json!({"session": session, "ttl_ms": ttl_ms})),
        )
            .into_response()),
        other => Err(unexpected(&other)),
    }
}

/// `POST /locks/sessions/{id}/keepalive`: renews the session's lease.
pub(super) async fn keepalive(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult {
    let session = parse_session(&raw)?;
    let path = format!("/locks/sessions/{session}/keepalive");
    match lock_reply(&api, LockRequest::KeepAlive { session }, &path, None).await? {
        LockReply::Alive => ok(json!({"session": session, "alive": true})),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /locks/sessions/{id}`: closes the session, releasing its locks.
pub(super) async fn close(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult {
    let session = parse_session(&raw)?;
    let path = format!("/locks/sessions/{session}");
    match lock_reply(&api, LockRequest::Close { session }, &path, None).await? {
        LockReply::Closed => ok(json!({"session": session, "closed": true})),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcquireBody {
    session: SessionId,
    lock: LockId,
    mode: Option<ModeName>,
    wait_ms: Option<u64>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeName {
    Shared,
    Exclusive,
}

/// `POST /locks/acquire`: grants the lock, or waits in its queue for at
/// most `wait_ms` (0: fail at once if it cannot be granted).
pub(super) async fn acquire(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let AcquireBody {
        session,
        lock,
        mode,
        wait_ms,
    } = json_body(
        body,
        "a JSON object {\"session\": <id>, \"lock\": <unsigned 32-bit integer>, \
         \"mode\": \"shared\" or \"exclusive\" (default), \"wait_ms\": <milliseconds> (default 10000)}",
    )?;
    let wait_ms = wait_ms.unwrap_or(DEFAULT_WAIT_MS);
    let max = MAX_LOCK_WAIT.as_millis();
    if u128::from(wait_ms) > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("wait_ms must be at most {max}, got {wait_ms}"),
        ));
    }
    let mode = match mode.unwrap_or(ModeName::Exclusive) {
        ModeName::Shared => Mode::Shared,
        ModeName::Exclusive => Mode::Exclusive,
    };
    let req = LockRequest::Acquire {
        session,
        lock,
        mode,
        wait: wait_ms > 0,
    };
    let wait = (wait_ms > 0).then(|| Duration::from_millis(wait_ms));
    match lock_reply(&api, req, "/locks/acquire", wait).await? {
        LockReply::Granted { token, holds } => ok(json!({
            "session": session,
            "lock": lock,
            "mode": mode_name(mode),
            "token": token,
            "holds": holds,
        })),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseBody {
    session: SessionId,
    lock: LockId,
}

/// `POST /locks/release`: gives back one hold of the lock.
pub(super) async fn release(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let ReleaseBody { session, lock } = json_body(
        body,
        "a JSON object {\"session\": <id>, \"lock\": <unsigned 32-bit integer>}",
    )?;
    let req = LockRequest::Release { session, lock };
    match lock_reply(&api, req, "/locks/release", None).await? {
        LockReply::Released { holds } => ok(json!({
            "session": session,
            "lock": lock,
            "holds": holds,
        })),
        other => Err(unexpected(&other)),
    }
}

/// `GET /locks/{name}`: the lock's holders, queue and last token, as the
/// leader has applied them.
pub(super) async fn show(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult {
    let lock: LockId = parse_segment(&raw, "bad_lock", "lock", U32_RANGE)?;
    let path = format!("/locks/{lock}");
    let view = on_leader(&api, &path, move |locks| {
        let holders: Vec<Value> = locks
            .holders(lock)
            .into_iter()
            .map(|(session, mode, holds, token)| {
                json!({"session": session, "mode": mode_name(mode), "holds": holds, "token": token})
            })
            .collect();
        let waiters: Vec<Value> = locks
            .waiters(lock)
            .into_iter()
            .map(|(session, mode, _, _)| json!({"session": session, "mode": mode_name(mode)}))
            .collect();
        json!({
            "lock": lock,
            "holders": holders,
            "waiters": waiters,
            "last_token": locks.last_token(lock),
        })
    })
    .await?;
    ok(view)
}

/// `GET /locks/wait_for`: who waits for whom, as JSON, or Graphviz with
/// `?format=dot`.
pub(super) async fn wait_for(State(api): State<Api>, RawQuery(query): RawQuery) -> ApiResult {
    let dot = match query.as_deref().unwrap_or("") {
        "" | "format=json" => false,
        "format=dot" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("expected no query, `format=json` or `format=dot`, got `{other}`"),
            ));
        }
    };
    let (edges, waiting) = on_leader(&api, "/locks/wait_for", |locks| {
        (locks.wait_for_edges(), locks.waiting_requests())
    })
    .await?;
    if dot {
        let mut text = String::from("digraph wait_for {\n");
        for (session, lock, _) in &waiting {
            let _ = writeln!(
                text,
                "  s{session} [label=\"session {session}\\nwaits for lock {lock}\"];"
            );
        }
        for (waiter, holder) in &edges {
            let _ = writeln!(text, "  s{waiter} -> s{holder};");
        }
        text.push_str("}\n");
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            text,
        )
            .into_response());
    }
    let edges: Vec<Value> = edges
        .iter()
        .map(|(w, h)| json!({"waiter": w, "holder": h}))
        .collect();
    let waiting: Vec<Value> = waiting
        .iter()
        .map(|(s, l, _)| json!({"session": s, "lock": l}))
        .collect();
    ok(json!({"edges": edges, "waiting": waiting}))
}

/// Runs `look` on the leader's applied lock state; a follower redirects.
/// (Not linearizable: a leader cut off from the others answers from what
/// it has applied until it learns it was replaced.)
async fn on_leader<T: Send + 'static>(
    api: &Api,
    path: &str,
    look: impl FnOnce(&crate::lock::LockState) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (role, hint, found) = api
        .node
        .inspect(move |node| {
            let raft = node.raft();
            let found = (raft.role() == Role::Leader).then(|| look(node.locks()));
            (raft.role(), raft.leader_hint(), found)
        })
        .await
        .map_err(stopped)?;
    match found {
        Some(t) if role == Role::Leader => Ok(t),
        _ => Err(not_leader(api, hint, path)),
    }
}

/// Sends a lock request; the lock service's own failures become 4xx.
async fn lock_reply(
    api: &Api,
    req: LockRequest,
    path: &str,
    wait: Option<Duration>,
) -> Result<LockReply, ApiError> {
    match ask_node(api, ClientRequest::Lock(req), path, wait).await? {
        ClientReply::Lock(LockReply::Failed(e)) => Err(lock_error(&e)),
        ClientReply::Lock(reply) => Ok(reply),
        other => Err(unexpected(&other)),
    }
}

/// The status and code of each lock-service failure (docs/deploy.md).
fn lock_error(e: &LockError) -> ApiError {
    let status = match e {
        LockError::NoSession { .. } => StatusCode::NOT_FOUND,
        LockError::SessionClosed { .. } | LockError::SessionExpired { .. } => StatusCode::GONE,
        LockError::WrongClient { .. } | LockError::NotOwner { .. } => StatusCode::FORBIDDEN,
        LockError::ReentryLimit { .. }
        | LockError::WouldBlock { .. }
        | LockError::AlreadyWaiting { .. }
        | LockError::Deadlock { .. }
        | LockError::TimedOut { .. } => StatusCode::CONFLICT,
    };
    let mut err = ApiError::new(status, e.code(), e.to_string());
    if let LockError::Deadlock { cycle } = e {
        err.detail = Some(json!({"cycle": cycle}));
    }
    err
}

fn parse_session(raw: &str) -> Result<SessionId, ApiError> {
    parse_segment(raw, "bad_session", "session", "an unsigned 64-bit integer")
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Shared => "shared",
        Mode::Exclusive => "exclusive",
    }
}

/// A JSON body that may be left out (empty).
fn optional_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
        body => json_body(body, expected).map(Some),
    }
}

#[cfg(test)]
mod tests;
