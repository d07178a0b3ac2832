use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::real::http_client::{HttpResponse, request, request_following};
use crate::real::test_cluster::{Cluster, N, run_local};

/// Serves every node of `c` on an ephemeral loopback port; their URLs.
pub(super) async fn serve_all(c: &Cluster) -> Vec<String> {
    serve_all_with(c, false).await
}

/// As `serve_all`; with `metered`, each node serves its metrics.
pub(super) async fn serve_all_with(c: &Cluster, metered: bool) -> Vec<String> {
    serve_all_guarded(c, metered, None).await
}

/// As `serve_all_with`, each node wanting `token` when given.
async fn serve_all_guarded(c: &Cluster, metered: bool, token: Option<&str>) -> Vec<String> {
    let mut listeners = Vec::new();
    for _ in 0..N {
        listeners.push(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback"),
        );
    }
    let urls: BTreeMap<NodeId, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i, base_url(l.local_addr().unwrap())))
        .collect();
    for (id, listener) in listeners.into_iter().enumerate() {
        let api = Api {
            node: c.handles[id].clone(),
            me: id,
            http_urls: urls.clone(),
            metrics: metered.then(|| Arc::clone(&c.metrics[id])),
            api_token: token.map(|t| Arc::new(crate::real::config::Secret::new(t))),
            queue: c.serves_queue(),
        };
        tokio::task::spawn_local(serve(listener, api, std::future::pending()));
    }
    urls.into_values().collect()
}

/// One request from a blocking thread, so the servers on this thread run.
async fn call(method: &'static str, url: String, body: Option<&'static [u8]>) -> HttpResponse {
    with_body(method, &url, body.map(text), false).await
}

async fn call_following(
    method: &'static str,
    url: String,
    body: Option<&'static [u8]>,
) -> HttpResponse {
    with_body(method, &url, body.map(text), true).await
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).expect("test bodies are text")
}

/// A request with an owned body from a blocking thread; with `follow`,
/// following redirects.
pub(super) async fn with_body(
    method: &'static str,
    url: &str,
    body: Option<String>,
    follow: bool,
) -> HttpResponse {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let body = body.as_deref().map(str::as_bytes);
        let timeout = Duration::from_secs(10);
        if follow {
            request_following(method, &url, body, timeout).map(|(r, _)| r)
        } else {
            request(method, &url, body, timeout)
        }
    })
    .await
    .unwrap()
    .expect("the request")
}

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "status {} body {:?} is not JSON: {e}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

#[test]
fn the_key_value_api_writes_reads_deletes_and_redirects_to_the_leader() {
    run_local(|| async {
        let mut c = Cluster::new("http-kv");
        c.start();
        let urls = serve_all(&c).await;
        let leader = c.leader().await;
        let follower = (leader + 1) % N;

        // A follower redirects a write to the leader; following it commits.
        let r = call(
            "PUT",
            format!("{}/kv/7", urls[follower]),
            Some(br#"{"value": 42}"#),
        )
        .await;
        assert_eq!(r.status, 307, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("location"),
            Some(format!("{}/kv/7", urls[leader]).as_str())
        );
        assert_eq!(json_of(&r)["error"], "not_leader");
        let r = call_following(
            "PUT",
            format!("{}/kv/7", urls[follower]),
            Some(br#"{"value": 42}"#),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(json_of(&r)["value"], 42);

        let r = call_following("GET", format!("{}/kv/7", urls[follower]), None).await;
        assert_eq!(
            (r.status, json_of(&r)["value"].clone()),
            (200, Value::from(42))
        );
        let r = call("DELETE", format!("{}/kv/7", urls[leader]), None).await;
        assert_eq!(r.status, 200);
        let r = call("GET", format!("{}/kv/7", urls[leader]), None).await;
        assert_eq!(
            (r.status, json_of(&r)["error"].clone()),
            (404, Value::from("not_found"))
        );

        // Health, leader and log.
        let h = json_of(&call("GET", format!("{}/health", urls[leader]), None).await);
        assert_eq!(h["role"], "leader");
        assert_eq!(h["node"], format!("n{}", leader + 1));
        let l = json_of(&call("GET", format!("{}/raft/leader", urls[follower]), None).await);
        assert_eq!(l["leader"], format!("n{}", leader + 1));
        assert_eq!(l["leader_url"], urls[leader]);
        let log = json_of(
            &call(
                "GET",
                format!("{}/raft/log?from=1&limit=1000", urls[leader]),
                None,
            )
            .await,
        );
        let kinds: Vec<&str> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["command"]["type"].as_str().unwrap())
            .filter(|t| *t != "noop")
            .collect();
        assert_eq!(kinds, ["put", "delete"]);
        c.stop().await;
    });
}

/// A request (method, URL, body) and the status and error code it must get.
type Case = (
    &'static str,
    String,
    Option<&'static [u8]>,
    u16,
    &'static str,
);

#[test]
fn bad_requests_get_json_errors_with_the_right_status() {
    run_local(|| async {
        let mut c = Cluster::new("http-errors");
        c.start();
        let urls = serve_all(&c).await;
        let leader = c.leader().await;
        let u = &urls[leader];
        let big: &'static [u8] = Box::leak(vec![b' '; MAX_BODY_BYTES + 1].into_boxed_slice());
        let cases: Vec<Case> = vec![
            ("GET", format!("{u}/kv/abc"), None, 400, "bad_key"),
            ("GET", format!("{u}/kv/4294967296"), None, 400, "bad_key"),
            ("PUT", format!("{u}/kv/1"), Some(b"{"), 400, "bad_body"),
            (
                "PUT",
                format!("{u}/kv/1"),
                Some(br#"{"value": -1}"#),
                400,
                "bad_body",
            ),
            (
                "PUT",
                format!("{u}/kv/1"),
                Some(br#"{"value": 1, "x": 2}"#),
                400,
                "bad_body",
            ),
            ("PUT", format!("{u}/kv/1"), None, 400, "bad_body"),
            ("PUT", format!("{u}/kv/1"), Some(big), 413, "body_too_large"),
            (
                "POST",
                format!("{u}/kv/1"),
                Some(b"{}"),
                405,
                "method_not_allowed",
            ),
            ("GET", format!("{u}/nope"), None, 404, "not_found"),
            (
                "GET",
                format!("{u}/raft/log?limit=0"),
                None,
                400,
                "bad_query",
            ),
            (
                "GET",
                format!("{u}/raft/log?from=x"),
                None,
                400,
                "bad_query",
            ),
            (
                "GET",
                format!("{u}/raft/log?since=1"),
                None,
                400,
                "bad_query",
            ),
        ];
        for (method, url, body, status, code) in cases {
            let r = call(method, url.clone(), body).await;
            assert_eq!(
                r.status,
                status,
                "{method} {url}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(json_of(&r)["error"], code, "{method} {url}");
            assert!(
                json_of(&r)["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            if status == 405 {
                let allow = r.header("allow").unwrap_or_default();
                assert!(
                    allow.contains("PUT") && allow.contains("DELETE"),
                    "Allow: {allow:?}"
                );
            }
        }
        c.stop().await;
    });
}

#[test]
fn without_a_leader_writes_get_503_with_retry_after() {
    run_local(|| async {
        let mut c = Cluster::new("http-no-leader");
        c.start();
        let urls = serve_all(&c).await;
        c.leader().await;
        // Cut every node off: nobody can lead, so nobody names a leader
        // once check-quorum has stepped the old one down.
        for cut in c.cut.borrow_mut().iter_mut() {
            *cut = true;
        }
        let mut answered = None;
        for _ in 0..100 {
            let r = call("PUT", format!("{}/kv/1", urls[0]), Some(br#"{"value": 1}"#)).await;
            if r.status == 503 {
                answered = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = answered.expect("a 503 once no leader is known");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(["no_leader", "retry"].contains(&json_of(&r)["error"].as_str().unwrap()));
        c.stop().await;
    });
}

#[test]
fn metrics_count_requests_by_route_and_show_the_raft_state() {
    run_local(|| async {
        let mut c = Cluster::new("http-metrics");
        c.start();
        let urls = serve_all_with(&c, true).await;
        let leader = c.leader().await;
        for key in 1..=3 {
            let r = call(
                "PUT",
                format!("{}/kv/{key}", urls[leader]),
                Some(br#"{"value": 5}"#),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        let r = call("GET", format!("{}/metrics", urls[leader]), None).await;
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body.clone()).unwrap();
        for expected in [
            "distsync_raft_role{role=\"leader\"} 1",
            "distsync_http_requests_total{route=\"/kv/{key}\",method=\"PUT\",status=\"200\"} 3",
            "distsync_raft_write_seconds_count 3",
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert!(text.contains("distsync_raft_fsync_seconds_count"), "{text}");
        // The same figures as JSON.
        let r = call("GET", format!("{}/metrics?format=json", urls[leader]), None).await;
        let v = json_of(&r);
        let term = v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "distsync_raft_term")
            .expect("the term");
        assert!(term["value"].as_f64().unwrap() >= 1.0);
        // A bad format, and metrics off.
        let r = call("GET", format!("{}/metrics?format=xml", urls[leader]), None).await;
        assert_eq!(
            (r.status, json_of(&r)["error"].clone()),
            (400, "bad_query".into())
        );
        c.stop().await;
        let mut quiet = Cluster::new("http-no-metrics");
        quiet.start();
        let urls = serve_all(&quiet).await;
        let r = call("GET", format!("{}/metrics", urls[0]), None).await;
        assert_eq!(r.status, 404);
        quiet.stop().await;
    });
}

#[test]
fn with_a_token_only_health_and_metrics_go_without_it() {
    run_local(|| async {
        let mut c = Cluster::new("http-auth");
        c.start();
        const TOKEN: &str = "0123456789abcdef-secret";
        let urls = serve_all_guarded(&c, true, Some(TOKEN)).await;
        let u = urls[c.leader().await].clone();
        let as_ = |method: &'static str,
                   path: &str,
                   body: Option<&'static [u8]>,
                   token: Option<&'static str>| {
            let url = format!("{u}{path}");
            tokio::task::spawn_blocking(move || {
                crate::real::http_client::request_as(
                    method,
                    &url,
                    body,
                    Duration::from_secs(5),
                    token,
                )
            })
        };
        for path in ["/health", "/metrics"] {
            let r = as_("GET", path, None, None).await.unwrap().unwrap();
            assert_eq!(r.status, 200, "{path} without a token");
        }
        let put: Option<&'static [u8]> = Some(br#"{"value": 1}"#);
        for (token, status) in [
            (None, 401),
            (Some("0123456789abcdef-secreT"), 401),
            (Some("0123456789abcdef-secre"), 401),
            (Some("0123456789abcdef-secret-"), 401),
            (Some(TOKEN), 200),
        ] {
            let r = as_("PUT", "/kv/1", put, token).await.unwrap().unwrap();
            assert_eq!(r.status, status, "token {token:?}");
            if status == 401 {
                assert_eq!(json_of(&r)["error"], "unauthorized");
                let challenge = r.header("www-authenticate").unwrap_or_default();
                assert!(
                    challenge.starts_with("Bearer realm=\"distsync\""),
                    "{challenge}"
                );
                assert_eq!(challenge.contains("invalid_token"), token.is_some());
            }
        }
        // The scheme is case-insensitive; the lock API is guarded too.
        let r = as_("POST", "/locks/sessions", None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 401);
        let url = format!("{u}/raft/leader");
        let r = tokio::task::spawn_blocking(move || {
            let (host, path) = crate::real::http_client::split_url(&url).unwrap();
            let mut s = std::net::TcpStream::connect(&host).unwrap();
            use std::io::{Read, Write};
            write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: bEaReR {TOKEN}\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // Unauthorized requests are counted like any other.
        let r = as_("GET", "/metrics", None, None).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            text.contains(
                r#"distsync_http_requests_total{route="/kv/{key}",method="PUT",status="401"} 4"#
            ),
            "{text}"
        );
        c.stop().await;
    });
}

#[test]
fn secrets_compare_equal_only_when_equal() {
    assert!(same_secret(b"abc", b"abc"));
    for other in [&b"abd"[..], b"ab", b"abcd", b"", b"ABC"] {
        assert!(!same_secret(other, b"abc"), "{other:?}");
    }
}
