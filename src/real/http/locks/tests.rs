//! The lock API on a 3-node test cluster, over loopback HTTP.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::real::http::tests::{serve_all, serve_all_with, with_body};
use crate::real::http_client::HttpResponse;
use crate::real::test_cluster::{Cluster, run_local};

/// A request with a JSON body, following redirects and retrying the 503s
/// of a leader not yet ready (bounded); the answer and its JSON.
async fn send(method: &'static str, url: &str, body: Option<Value>) -> (HttpResponse, Value) {
    send_raw(method, url, body.map(|b| b.to_string())).await
}

async fn send_raw(method: &'static str, url: &str, body: Option<String>) -> (HttpResponse, Value) {
    for _ in 0..50 {
        let r = with_body(method, url, body.clone(), true).await;
        if r.status != 503 {
            let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            return (r, v);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("{method} {url}: still 503 after 50 tries");
}

async fn open(url: &str, ttl_ms: u64) -> u64 {
    let (r, v) = send(
        "POST",
        &format!("{url}/locks/sessions"),
        Some(json!({"ttl_ms": ttl_ms})),
    )
    .await;
    assert_eq!(r.status, 201, "{v}");
    assert_eq!(v["ttl_ms"], ttl_ms);
    v["session"].as_u64().expect("a session id")
}

async fn acquire(url: &str, session: u64, lock: u32, wait_ms: u64) -> (HttpResponse, Value) {
    let body = json!({"session": session, "lock": lock, "wait_ms": wait_ms});
    send("POST", &format!("{url}/locks/acquire"), Some(body)).await
}

async fn show(url: &str, lock: u32) -> Value {
    let (r, v) = send("GET", &format!("{url}/locks/{lock}"), None).await;
    assert_eq!(r.status, 200, "{v}");
    v
}

/// Polls `GET /locks/{lock}` until `done` holds of it (at most 3 s).
async fn until(url: &str, lock: u32, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = show(url, lock).await;
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "lock {lock} stayed {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn sessions_acquire_wait_release_and_close() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks");
        c.start();
        let urls = serve_all(&c).await;
        let leader = c.leader().await;
        // Through a follower: redirected to the leader.
        let u = &urls[(leader + 1) % urls.len()];
        let a = open(u, 10_000).await;
        let b = open(u, 10_000).await;
        assert!(b > a, "a younger session has a higher id");

        let (r, v) = acquire(u, a, 7, 0).await;
        assert_eq!(r.status, 200, "{v}");
        assert_eq!(
            (v["mode"].as_str(), v["holds"].as_u64()),
            (Some("exclusive"), Some(1))
        );
        let first_token = v["token"].as_u64().unwrap();

        let (r, v) = acquire(u, b, 7, 0).await;
        assert_eq!(
            (r.status, v["error"].as_str()),
            (409, Some("would_block")),
            "{v}"
        );

        // B waits (long-poll) until A releases.
        let waiting = {
            let u = u.clone();
            tokio::task::spawn_local(async move { acquire(&u, b, 7, 5_000).await })
        };
        let v = until(u, 7, |v| {
            v["waiters"].as_array().is_some_and(|w| w.len() == 1)
        })
        .await;
        assert_eq!(v["holders"][0]["session"], a);
        assert_eq!(v["waiters"][0]["session"], b);

        // Only the holder releases.
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/release"),
            Some(json!({"session": b, "lock": 7})),
        )
        .await;
        assert_eq!(
            (r.status, v["error"].as_str()),
            (403, Some("not_owner")),
            "{v}"
        );
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/release"),
            Some(json!({"session": a, "lock": 7})),
        )
        .await;
        assert_eq!((r.status, v["holds"].as_u64()), (200, Some(0)), "{v}");

        let (r, v) = waiting.await.unwrap();
        assert_eq!(r.status, 200, "{v}");
        assert!(
            v["token"].as_u64().unwrap() > first_token,
            "fencing tokens grow: {v}"
        );
        let v = show(u, 7).await;
        assert_eq!(v["holders"][0]["session"], b);
        assert!(v["last_token"].as_u64().unwrap() > first_token);

        // Shared holders share.
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/acquire"),
            Some(json!({"session": a, "lock": 8, "mode": "shared", "wait_ms": 0})),
        )
        .await;
        assert_eq!(r.status, 200, "{v}");
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/acquire"),
            Some(json!({"session": b, "lock": 8, "mode": "shared", "wait_ms": 0})),
        )
        .await;
        assert_eq!((r.status, v["mode"].as_str()), (200, Some("shared")), "{v}");

        let (r, _) = send("POST", &format!("{u}/locks/sessions/{b}/keepalive"), None).await;
        assert_eq!(r.status, 200);
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/sessions/999999/keepalive"),
            None,
        )
        .await;
        assert_eq!(
            (r.status, v["error"].as_str()),
            (404, Some("no_session")),
            "{v}"
        );

        // Closing releases everything the session holds.
        let (r, v) = send("DELETE", &format!("{u}/locks/sessions/{b}"), None).await;
        assert_eq!((r.status, v["closed"].as_bool()), (200, Some(true)), "{v}");
        let v = show(u, 7).await;
        assert_eq!(v["holders"], json!([]));
        let (r, v) = acquire(u, b, 7, 0).await;
        assert_eq!(
            (r.status, v["error"].as_str()),
            (410, Some("session_closed")),
            "{v}"
        );
        c.stop().await;
    });
}

#[test]
fn a_wait_that_runs_out_leaves_the_queue_through_the_log() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-timeout");
        c.start();
        let urls = serve_all(&c).await;
        let u = &urls[c.leader().await];
        let a = open(u, 10_000).await;
        let b = open(u, 10_000).await;
        assert_eq!(acquire(u, a, 1, 0).await.0.status, 200);
        let started = Instant::now();
        let (r, v) = acquire(u, b, 1, 300).await;
        let took = started.elapsed();
        assert_eq!(
            (r.status, v["error"].as_str()),
            (409, Some("timed_out")),
            "{v}"
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "answered after {took:?}"
        );
        // Every node applied the cancel: the queue is empty on the leader.
        assert_eq!(show(u, 1).await["waiters"], json!([]));
        // And B may wait again (it is no longer `already_waiting`).
        let (r, v) = acquire(u, b, 1, 100).await;
        assert_eq!(v["error"], "timed_out", "{} {v}", r.status);
        c.stop().await;
    });
}

#[test]
fn a_caller_that_disconnects_gives_its_wait_up() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-disconnect");
        c.start();
        let urls = serve_all(&c).await;
        let u = urls[c.leader().await].clone();
        let a = open(&u, 10_000).await;
        let b = open(&u, 10_000).await;
        assert_eq!(acquire(&u, a, 3, 0).await.0.status, 200);
        // A long-poll for 30 s whose client hangs up after 200 ms.
        let host = u.trim_start_matches("http://").to_owned();
        let body = json!({"session": b, "lock": 3, "wait_ms": 30_000}).to_string();
        let gone = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(host.as_str()).expect("connect");
            write!(
                s,
                "POST /locks/acquire HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .expect("write");
            std::thread::sleep(Duration::from_millis(200));
        });
        until(&u, 3, |v| {
            v["waiters"].as_array().is_some_and(|w| w.len() == 1)
        })
        .await;
        gone.await.unwrap();
        let started = Instant::now();
        until(&u, 3, |v| v["waiters"] == json!([])).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        // A's release now grants nobody: the lock is free.
        let (r, _) = send(
            "POST",
            &format!("{u}/locks/release"),
            Some(json!({"session": a, "lock": 3})),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(show(&u, 3).await["holders"], json!([]));
        c.stop().await;
    });
}

#[test]
fn a_deadlock_fails_the_youngest_and_the_graph_shows_the_waits() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-deadlock");
        c.start();
        let urls = serve_all(&c).await;
        let u = urls[c.leader().await].clone();
        let a = open(&u, 10_000).await;
        let b = open(&u, 10_000).await;
        assert_eq!(acquire(&u, a, 1, 0).await.0.status, 200);
        assert_eq!(acquire(&u, b, 2, 0).await.0.status, 200);
        let a_waits = {
            let u = u.clone();
            tokio::task::spawn_local(async move { acquire(&u, a, 2, 5_000).await })
        };
        until(&u, 2, |v| {
            v["waiters"].as_array().is_some_and(|w| w.len() == 1)
        })
        .await;
        let (r, v) = send("GET", &format!("{u}/locks/wait_for"), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(v["edges"], json!([{"waiter": a, "holder": b}]), "{v}");
        assert_eq!(v["waiting"], json!([{"session": a, "lock": 2}]));
        let (r, _) = send("GET", &format!("{u}/locks/wait_for?format=dot"), None).await;
        let dot = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            dot.starts_with("digraph") && dot.contains(&format!("s{a} -> s{b};")),
            "{dot}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("text/vnd.graphviz; charset=utf-8")
        );

        // B (the younger) closes the cycle and is the victim.
        let (r, v) = acquire(&u, b, 1, 5_000).await;
        assert_eq!(
            (r.status, v["error"].as_str()),
            (409, Some("deadlock")),
            "{v}"
        );
        let mut cycle: Vec<u64> = v["cycle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        cycle.sort_unstable();
        assert_eq!(cycle, vec![a, b]);
        // A still waits; B's release of 2 grants it.
        let (r, _) = send(
            "POST",
            &format!("{u}/locks/release"),
            Some(json!({"session": b, "lock": 2})),
        )
        .await;
        assert_eq!(r.status, 200);
        let (r, v) = a_waits.await.unwrap();
        assert_eq!(r.status, 200, "{v}");
        c.stop().await;
    });
}

#[test]
fn a_session_outlives_its_leader() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-failover");
        c.start();
        let urls = serve_all(&c).await;
        let old = c.leader().await;
        let a = open(&urls[old], 10_000).await;
        let (r, v) = acquire(&urls[old], a, 5, 0).await;
        assert_eq!(r.status, 200, "{v}");
        let token = v["token"].as_u64().unwrap();
        c.cut.borrow_mut()[old] = true;
        let new = c.leader().await;
        assert_ne!(new, old);
        let u = &urls[new];
        // The new leader knows the session and its hold; the session's
        // lease restarted with the new leader's term.
        let v = show(u, 5).await;
        assert_eq!(v["holders"][0]["session"], a);
        assert_eq!(v["holders"][0]["token"], token);
        let (r, v) = send("POST", &format!("{u}/locks/sessions/{a}/keepalive"), None).await;
        assert_eq!(r.status, 200, "{v}");
        let (r, v) = send(
            "POST",
            &format!("{u}/locks/release"),
            Some(json!({"session": a, "lock": 5})),
        )
        .await;
        assert_eq!(r.status, 200, "{v}");
        let (r, v) = acquire(u, a, 5, 0).await;
        assert_eq!(r.status, 200, "{v}");
        assert!(v["token"].as_u64().unwrap() > token);
        c.stop().await;
    });
}

#[test]
fn bad_lock_requests_get_400_with_what_was_expected() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-bad");
        c.start();
        let urls = serve_all(&c).await;
        let u = &urls[c.leader().await];
        let cases: Vec<(&'static str, String, Option<&str>, u16, &str)> = vec![
            (
                "POST",
                format!("{u}/locks/sessions"),
                Some(r#"{"ttl_ms": 0}"#),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/sessions"),
                Some(r#"{"ttl": 5}"#),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/sessions/x/keepalive"),
                None,
                400,
                "bad_session",
            ),
            (
                "DELETE",
                format!("{u}/locks/sessions/-1"),
                None,
                400,
                "bad_session",
            ),
            (
                "POST",
                format!("{u}/locks/acquire"),
                Some("{"),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/acquire"),
                Some(r#"{"session": 1}"#),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/acquire"),
                Some(r#"{"session": 1, "lock": 1, "mode": "both"}"#),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/acquire"),
                Some(r#"{"session": 1, "lock": 1, "wait_ms": 60001}"#),
                400,
                "bad_body",
            ),
            (
                "POST",
                format!("{u}/locks/release"),
                Some(r#"{"session": 1, "lock": -2}"#),
                400,
                "bad_body",
            ),
            ("GET", format!("{u}/locks/abc"), None, 400, "bad_lock"),
            (
                "GET",
                format!("{u}/locks/wait_for?format=xml"),
                None,
                400,
                "bad_query",
            ),
            (
                "GET",
                format!("{u}/locks/sessions"),
                None,
                405,
                "method_not_allowed",
            ),
            (
                "POST",
                format!("{u}/locks/acquire"),
                Some(r#"{"session": 424242, "lock": 1}"#),
                404,
                "no_session",
            ),
        ];
        for (method, url, body, status, code) in cases {
            let (r, v) = send_raw(method, &url, body.map(str::to_owned)).await;
            assert_eq!(
                (r.status, v["error"].as_str()),
                (status, Some(code)),
                "{method} {url} {body:?}: {v}"
            );
        }
        c.stop().await;
    });
}

#[test]
fn the_lock_metrics_count_grants_waits_failures_and_sessions() {
    run_local(|| async {
        let mut c = Cluster::new("http-locks-metrics");
        c.start();
        let urls = serve_all_with(&c, true).await;
        let u = urls[c.leader().await].clone();
        let a = open(&u, 10_000).await;
        let b = open(&u, 10_000).await;
        assert_eq!(acquire(&u, a, 1, 0).await.0.status, 200);
        assert_eq!(acquire(&u, b, 1, 0).await.1["error"], "would_block");
        assert_eq!(acquire(&u, b, 1, 50).await.1["error"], "timed_out");
        let (r, _) = send("GET", &format!("{u}/metrics"), None).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        for expected in [
            "distsync_lock_grants_total 1",
            "distsync_lock_waits_total 1",
            r#"distsync_lock_failures_total{error="would_block"} 1"#,
            r#"distsync_lock_failures_total{error="timed_out"} 1"#,
            "distsync_lock_acquire_seconds_count 1",
            "distsync_lock_sessions 2",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        c.stop().await;
    });
}
