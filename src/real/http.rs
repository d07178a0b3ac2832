//! The node's HTTP API (axum): health, the Raft leader and log, and the
//! key-value store. Every handler asks the node's actor through its
//! `ClientHandle`; none holds protocol state of its own.
//!
//! Errors are JSON `{"error": code, "message": text}` with the status the
//! table in docs/deploy.md gives; a follower answers writes and reads with
//! 307 to the leader's HTTP address.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::kv::{ClientReply, ClientRequest};
use crate::real::config::Secret;
use crate::real::metrics::Metrics;
use crate::real::runtime::{ClientError, ClientHandle, LogPage, Status};
use crate::replicated::Command;
use crate::trace::NodeId;

/// The largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a request may wait for the node (a write for its commit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The default and largest page of `/raft/log`.
const DEFAULT_LOG_LIMIT: usize = 100;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub node: ClientHandle,
    pub me: NodeId,
    /// Every node's HTTP base URL (`http://host:port`), for redirects and
    /// `/raft/leader`.
    pub http_urls: BTreeMap<NodeId, String>,
    /// With `ENABLE_METRICS`: served at `/metrics`, and every request
    /// counted and timed.
    pub metrics: Option<Arc<Metrics>>,
    /// With `API_TOKEN`: every route but `/health` and `/metrics` wants
    /// it as a bearer token.
    pub api_token: Option<Arc<Secret>>,
    /// Whether the node serves the queue (`REDIS_URL` set); `/queue`
    /// answers 404 `queue_off` otherwise.
    pub queue: bool,
}

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone: load balancers, scrapers and API browsers probe these.
    Open,
    /// With `API_TOKEN` set, only a request bearing it.
    Guarded,
}

/// Every route the node serves; docs/api_spec.yaml describes exactly these
/// (`openapi`'s tests).
fn api_routes() -> Vec<(&'static str, MethodRouter<Api>, Access)> {
    use Access::{Guarded, Open};
    vec![
        ("/health", get(health), Open),
        ("/metrics", get(metrics), Open),
        ("/openapi.yaml", get(openapi_yaml), Open),
        ("/raft/leader", get(leader), Guarded),
        ("/raft/log", get(log), Guarded),
        (
            "/kv/{key}",
            get(kv_get).put(kv_put).delete(kv_delete),
            Guarded,
        ),
        ("/locks/sessions", post(locks::open), Guarded),
        ("/locks/sessions/{id}", delete(locks::close), Guarded),
        (
            "/locks/sessions/{id}/keepalive",
            post(locks::keepalive),
            Guarded,
        ),
        ("/locks/acquire", post(locks::acquire), Guarded),
        ("/locks/release", post(locks::release), Guarded),
        ("/locks/wait_for", get(locks::wait_for), Guarded),
        ("/locks/{name}", get(locks::show), Guarded),
        ("/queue/{name}/produce", post(queue::produce), Guarded),
        ("/queue/{name}/consume", post(queue::consume), Guarded),
        ("/queue/{name}/ack", post(queue::ack), Guarded),
        ("/queue/{name}/nack", post(queue::nack), Guarded),
    ]
}

/// The paths of `api_routes`, for the spec's tests.
#[cfg(test)]
fn route_paths() -> Vec<&'static str> {
    api_routes().into_iter().map(|(p, _, _)| p).collect()
}

/// The router, with the body limit and JSON fallbacks for unknown paths and
/// methods.
pub fn router(api: Api) -> Router {
    let mut guarded = Router::new();
    let mut open = Router::new();
    for (path, handlers, access) in api_routes() {
        match access {
            Access::Guarded => guarded = guarded.route(path, handlers),
            Access::Open => open = open.route(path, handlers),
        }
    }
    if let Some(token) = &api.api_token {
        guarded = guarded.route_layer(middleware::from_fn_with_state(
            Arc::clone(token),
            require_token,
        ));
    }
    let mut routes = guarded.merge(open);
    if let Some(m) = &api.metrics {
        routes = routes.route_layer(middleware::from_fn_with_state(Arc::clone(m), count_request));
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Lets a request through only with `Authorization: Bearer <API_TOKEN>`
/// (RFC 6750); 401 otherwise, with a `WWW-Authenticate` challenge.
async fn require_token(State(token): State<Arc<Secret>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let presented = given.and_then(|v| {
        // The scheme is case-insensitive (RFC 7235 section 2.1).
        let (scheme, rest) = v.split_at_checked(7)?;
        scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
    });
    match presented {
        Some(t) if same_secret(t, token.expose().as_bytes()) => next.run(req).await,
        Some(_) => {
            let mut e = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not this cluster's API_TOKEN",
            );
            e.challenge = Some(r#"Bearer realm="distsync", error="invalid_token""#);
            e.into_response()
        }
        None => {
            let what = if given.is_some() {
                "the Authorization header is not `Bearer <token>`"
            } else {
                "this node wants `Authorization: Bearer <token>` (API_TOKEN is set)"
            };
            let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", what);
            e.challenge = Some(r#"Bearer realm="distsync""#);
            e.into_response()
        }
    }
}

/// Whether `given` is `expected`, in a time that depends only on their
/// lengths: every byte of the expected token is compared whatever the
/// given one holds, so timing does not tell how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = usize::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= usize::from(std::hint::black_box(g ^ e));
    }
    diff == 0
}

/// Counts and times one request by its route's pattern. (A route layer:
/// requests that match no route are not counted, so no path a client
/// makes up becomes a series.)
async fn count_request(
    State(m): State<Arc<Metrics>>,
    route: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    m.http(
        route.as_str(),
        &method,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// `/openapi.yaml`: this API's OpenAPI description (docs/api_spec.yaml).
async fn openapi_yaml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        openapi::yaml(&openapi::spec()),
    )
        .into_response()
}

/// `/metrics`: the OpenMetrics text, or `?format=json`; 404 when metrics
/// are off.
async fn metrics(State(api): State<Api>, RawQuery(query): RawQuery) -> ApiResult {
    let Some(m) = api.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are off on this node (set ENABLE_METRICS=true)",
        ));
    };
    let mut format = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("format", value)) => format = Some(value.to_owned()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!(
                        "unknown query parameter `{pair}` (expected `format=text` or `format=json`)"
                    ),
                ));
            }
        }
    }
    match format.as_deref() {
        None | Some("text") => Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            m.text(),
        )
            .into_response()),
        Some("json") => ok(m.json()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("format must be `text` or `json`, got `{other}`"),
        )),
    }
}

/// Serves `api` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(stop)
        .await
}

/// An API error: status, stable code, human message, optional headers.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    location: Option<String>,
    retry_after: bool,
    /// More fields for the body (a deadlock's cycle).
    detail: Option<Value>,
    /// A 401's `WWW-Authenticate` challenge.
    challenge: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            location: None,
            retry_after: false,
            detail: None,
            challenge: None,
        }
    }
}

impl ApiError {
    /// Marks the answer worth retrying in a second (`Retry-After: 1`).
    fn retry_after(mut self) -> ApiError {
        self.retry_after = true;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let (Some(Value::Object(more)), Value::Object(fields)) = (self.detail, &mut body) {
            fields.extend(more);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, loc);
        }
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(c) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(body: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

fn node_name(id: NodeId) -> String {
    format!("n{}", id + 1)
}

fn stopped(e: ClientError) -> ApiError {
    match e {
        ClientError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests are waiting for this node; retry shortly",
        )
        .retry_after(),
        ClientError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the node is shutting down",
        ),
    }
}

async fn status(api: &Api) -> Result<Status, ApiError> {
    api.node.status().await.map_err(stopped)
}

async fn health(State(api): State<Api>) -> ApiResult {
    let s = status(&api).await?;
    ok(json!({
        "node": node_name(s.id),
        "role": s.role.name(),
        "term": s.term,
        "leader": s.leader.map(node_name),
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_index": s.last_index,
        "snapshot_index": s.snapshot_index,
        "wal": {
            "syncs": s.wal.syncs,
            "fsyncs": s.wal.fsyncs,
            "entries": s.wal.entries,
        },
    }))
}

async fn leader(State(api): State<Api>) -> ApiResult {
    let s = status(&api).await?;
    ok(json!({
        "leader": s.leader.map(node_name),
        "leader_url": s.leader.and_then(|l| api.http_urls.get(&l)),
        "term": s.term,
        "this_node": node_name(s.id),
        "role": s.role.name(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn log(State(api): State<Api>, RawQuery(query): RawQuery) -> ApiResult {
    let q: LogQuery = match query.as_deref() {
        None | Some("") => LogQuery {
            from: None,
            limit: None,
        },
        Some(q) => parse_log_query(q)?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if limit == 0 || limit > crate::real::runtime::MAX_LOG_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "limit must be between 1 and {}, got {limit}",
                crate::real::runtime::MAX_LOG_PAGE
            ),
        ));
    }
    let page: LogPage = api
        .node
        .log(q.from.unwrap_or(1), limit)
        .await
        .map_err(stopped)?;
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|(index, e)| json!({"index": index, "term": e.term, "command": command_json(&e.cmd)}))
        .collect();
    ok(json!({
        "first_index": page.first_index,
        "last_index": page.last_index,
        "commit_index": page.commit_index,
        "entries": entries,
    }))
}

/// `from=5&limit=10`: only those two names, each an unsigned integer.
fn parse_log_query(q: &str) -> Result<LogQuery, ApiError> {
    let mut out = LogQuery {
        from: None,
        limit: None,
    };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("query parameter `{name}`: expected {what}, got `{value}`"),
            )
        };
        match name {
            "from" => out.from = Some(value.parse().map_err(|_| bad("an unsigned integer"))?),
            "limit" => out.limit = Some(value.parse().map_err(|_| bad("an unsigned integer"))?),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("unknown query parameter `{name}` (expected `from` and `limit`)"),
                ));
            }
        }
    }
    Ok(out)
}

fn command_json(cmd: &Command) -> Value {
    match *cmd {
        Command::Noop => json!({"type": "noop"}),
        Command::Put { key, value, .. } => json!({"type": "put", "key": key, "value": value}),
        Command::Delete { key, .. } => json!({"type": "delete", "key": key}),
        Command::Lock(l) => json!({"type": "lock", "summary": format!("{l:?}")}),
        Command::Ring(r) => json!({"type": "ring", "summary": format!("{r:?}")}),
    }
}

fn parse_key(raw: &str) -> Result<u32, ApiError> {
    parse_segment(raw, "bad_key", "key", U32_RANGE)
}

/// What a 32-bit path segment must be.
const U32_RANGE: &str = "an unsigned 32-bit integer (0 to 4294967295)";

/// A number from a path segment; a 400 with `code` naming `what` and the
/// range `expected` otherwise.
fn parse_segment<T: std::str::FromStr>(
    raw: &str,
    code: &'static str,
    what: &str,
    expected: &str,
) -> Result<T, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{what} `{raw}`: expected {expected}"),
        )
    })
}

/// A reply that does not answer the request sent: the node's bug, not the
/// caller's.
fn unexpected(reply: &impl std::fmt::Debug) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("the node answered with {reply:?}"),
    )
}

/// Waits at most `limit` for the node's answer to `asked`: 504 after that
/// (`unknown` says whose outcome is then unknown), 503 if the node is busy
/// or stopping.
async fn within<T>(
    asked: impl std::future::Future<Output = Result<T, ClientError>>,
    limit: Duration,
    unknown: &str,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, asked)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no answer within {} s; {unknown} outcome is unknown",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
            .retry_after()
        })?
        .map_err(stopped)
}

/// Sends a key-value request to the node; see `ask_node`.
async fn ask(api: &Api, req: ClientRequest, path: &str) -> Result<Option<u64>, ApiError> {
    match ask_node(api, req, path, None).await? {
        ClientReply::Ok(v) => Ok(v),
        other => Err(unexpected(&other)),
    }
}

/// Sends `req` to the node (a lock acquire waiting at most `wait` in its
/// queue) and turns refusals into HTTP answers: 307 to the leader, 503
/// with Retry-After when none is known or the outcome is open. What is
/// left is `Ok` or a lock reply.
async fn ask_node(
    api: &Api,
    req: ClientRequest,
    path: &str,
    wait: Option<Duration>,
) -> Result<ClientReply, ApiError> {
    let asked = api.node.request_waiting(req, wait);
    let limit = REQUEST_TIMEOUT + wait.unwrap_or_default();
    let reply = within(asked, limit, "a write's").await?;
    match reply {
        ClientReply::Ok(_) | ClientReply::Lock(_) => Ok(reply),
        ClientReply::NotLeader(hint) => Err(not_leader(api, hint, path)),
        ClientReply::Retry => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "retry",
            "the node lost leadership or is not ready; a write's outcome is unknown, retry it",
        )
        .retry_after()),
    }
}

/// The answer of a node that does not lead: 307 to the leader `hint`
/// names (at `path`), or 503 with Retry-After.
fn not_leader(api: &Api, hint: Option<NodeId>, path: &str) -> ApiError {
    match hint {
        Some(l) if l != api.me && api.http_urls.contains_key(&l) => {
            let mut e = ApiError::new(
                StatusCode::TEMPORARY_REDIRECT,
                "not_leader",
                format!("{} is the leader", node_name(l)),
            );
            e.location = Some(format!("{}{path}", api.http_urls[&l]));
            e
        }
        Some(l) if l != api.me => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader_address_unknown",
            format!(
                "{} is the leader, but its HTTP address is not configured here (set HTTP_PEERS)",
                node_name(l)
            ),
        )
        .retry_after(),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "no leader is known yet; retry shortly",
        )
        .retry_after(),
    }
}

async fn kv_get(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult {
    let key = parse_key(&raw)?;
    match ask(&api, ClientRequest::Get { key }, &format!("/kv/{key}")).await? {
        Some(value) => ok(json!({"key": key, "value": value})),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("key {key} has no value"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: u64,
}

async fn kv_put(
    State(api): State<Api>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let key = parse_key(&raw)?;
    let PutBody { value } =
        json_body(body, "a JSON object {\"value\": <unsigned 64-bit integer>}")?;
    ask(
        &api,
        ClientRequest::Put { key, value },
        &format!("/kv/{key}"),
    )
    .await?;
    ok(json!({"key": key, "value": value}))
}

/// A request body as JSON of type `T`; `expected` says what it should be.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(
            status,
            code,
            format!("{} (at most {MAX_BODY_BYTES} bytes)", r.body_text()),
        )
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("expected {expected}: {e}"),
        )
    })
}

async fn kv_delete(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult {
    let key = parse_key(&raw)?;
    ask(&api, ClientRequest::Delete { key }, &format!("/kv/{key}")).await?;
    ok(json!({"key": key, "deleted": true}))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such path: {} (see docs/deploy.md for the API)",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The HTTP URL of a listen address, for redirects.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

mod locks;
pub mod openapi;
mod queue;
#[cfg(test)]
mod tests;
