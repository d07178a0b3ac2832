//! The queue API on a 3-node test cluster whose shards are real
//! redis-servers (started by the test; it fails when redis-server is not
//! installed).

use std::time::Duration;

use serde_json::{Value, json};

use crate::real::http::tests::{serve_all, with_body};
use crate::real::redis_diff::server::Server;
use crate::real::test_cluster::{Cluster, run_local};

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = with_body("POST", url, Some(body.to_string()), true).await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// Retries 503s (a leader not ready, a shard connecting) a bounded number of times.
async fn post_ok(url: &str, body: Value) -> Value {
    for _ in 0..50 {
        let (status, v) = post(url, body.clone()).await;
        if status == 200 {
            return v;
        }
        assert_eq!(status, 503, "{url} {body}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} {body}: still 503 after 50 tries");
}

#[test]
fn produce_consume_ack_and_nack_on_two_redis_shards() {
    let shards = [Server::start("queue-http-a"), Server::start("queue-http-b")];
    let ports: Vec<u16> = shards.iter().map(Server::port).collect();
    run_local(|| async move {
        let mut c = Cluster::with_redis("http-queue", &ports);
        c.start();
        let urls = serve_all(&c).await;
        c.leader().await;
        // Any node routes; a follower needs no redirect.
        let u = &urls[0];
        let v = post_ok(
            &format!("{u}/queue/3/produce"),
            json!({"producer": 9, "first_seq": 1, "messages": ["a", "b", "c"]}),
        )
        .await;
        assert_eq!(
            (v["stored"].as_u64(), v["duplicate"].as_u64()),
            (Some(3), Some(0)),
            "{v}"
        );
        let p = v["partition"].as_u64().unwrap();
        assert_eq!(p, 9 % 8);
        // The same batch again (a producer's retry) stores nothing twice.
        let v = post_ok(
            &format!("{u}/queue/3/produce"),
            json!({"producer": 9, "first_seq": 2, "messages": ["b", "c", "d"]}),
        )
        .await;
        assert_eq!(
            (v["stored"].as_u64(), v["duplicate"].as_u64()),
            (Some(1), Some(2)),
            "{v}"
        );

        let v = post_ok(
            &format!("{}/queue/3/consume", urls[1]),
            json!({"consumer": 1, "max": 10}),
        )
        .await;
        let got: Vec<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        assert_eq!(got, ["a", "b", "c", "d"], "{v}");
        assert_eq!(v["messages"][0]["attempt"], 1);
        let ids: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids[0], "9:1");
        // Nothing left to deliver: in flight until acked or timed out.
        let v = post_ok(
            &format!("{u}/queue/3/consume"),
            json!({"consumer": 1, "max": 10}),
        )
        .await;
        assert_eq!(v["messages"], json!([]));

        let v = post_ok(
            &format!("{u}/queue/3/ack"),
            json!({"partition": p, "ids": [ids[0], ids[1], "9:77"]}),
        )
        .await;
        assert_eq!(v["acked"], 2, "an unknown id is not acked: {v}");
        let v = post_ok(
            &format!("{u}/queue/3/nack"),
            json!({"partition": p, "ids": [ids[2]]}),
        )
        .await;
        assert_eq!(v["nacked"], 1);
        // Nacked: delivered again at once, attempt 2.
        let v = post_ok(
            &format!("{u}/queue/3/consume"),
            json!({"consumer": 5, "partition": p}),
        )
        .await;
        assert_eq!(
            (
                v["messages"][0]["id"].as_str(),
                v["messages"][0]["attempt"].as_u64()
            ),
            (Some(ids[2].as_str()), Some(2)),
            "{v}"
        );

        // A long poll on an empty queue answers when a message arrives.
        let waiting = {
            let u = u.clone();
            tokio::task::spawn_local(async move {
                post(
                    &format!("{u}/queue/4/consume"),
                    json!({"consumer": 2, "wait_ms": 5000}),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        post_ok(
            &format!("{u}/queue/4/produce"),
            json!({"producer": 1, "first_seq": 1, "messages": ["late"]}),
        )
        .await;
        let (status, v) = waiting.await.unwrap();
        assert_eq!(
            (status, v["messages"][0]["body"].as_str()),
            (200, Some("late")),
            "{v}"
        );

        // Bad input.
        for (path, body, status, code) in [
            (
                "/queue/16/produce",
                json!({"producer": 1, "first_seq": 1, "messages": ["x"]}),
                404,
                "no_queue",
            ),
            (
                "/queue/1/produce",
                json!({"producer": 1, "first_seq": 0, "messages": ["x"]}),
                400,
                "bad_body",
            ),
            (
                "/queue/1/produce",
                json!({"producer": 1, "first_seq": 1, "messages": []}),
                400,
                "bad_body",
            ),
            (
                "/queue/1/produce",
                json!({"producer": 1, "first_seq": 1, "messages": ["x"], "partition": 8}),
                400,
                "bad_body",
            ),
            (
                "/queue/1/consume",
                json!({"consumer": 1, "max": 0}),
                400,
                "bad_body",
            ),
            (
                "/queue/1/consume",
                json!({"consumer": 1, "wait_ms": 30001}),
                400,
                "bad_body",
            ),
            (
                "/queue/1/ack",
                json!({"partition": 0, "ids": ["x"]}),
                400,
                "bad_body",
            ),
        ] {
            let (s, v) = post(&format!("{u}{path}"), body.clone()).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (status, Some(code)),
                "{path} {body}: {v}"
            );
        }
        c.stop().await;
    });
    drop(shards);
}

#[test]
fn a_shard_that_is_down_fails_only_its_partitions() {
    let shards = [Server::start("queue-down-a"), Server::start("queue-down-b")];
    let ports: Vec<u16> = shards.iter().map(Server::port).collect();
    let [a, b] = shards;
    run_local(|| async move {
        let mut c = Cluster::with_redis("http-queue-down", &ports);
        c.start();
        let urls = serve_all(&c).await;
        c.leader().await;
        let u = &urls[0];
        // Find, for each queue-0 partition, whether it lives on shard b:
        // produce to every partition while both are up, then stop b.
        for p in 0..8u32 {
            post_ok(
                &format!("{u}/queue/0/produce"),
                json!({"producer": 100 + p, "first_seq": 1, "messages": ["m"], "partition": p}),
            )
            .await;
        }
        drop(b);
        let mut served = 0;
        let mut refused = 0;
        for p in 0..8u32 {
            let (status, v) = post(
                &format!("{u}/queue/0/consume"),
                json!({"consumer": 1, "partition": p}),
            )
            .await;
            match status {
                200 => {
                    assert_eq!(v["messages"][0]["body"], "m", "{v}");
                    served += 1;
                }
                503 => {
                    assert_eq!(v["error"], "retry", "{v}");
                    refused += 1;
                }
                s => panic!("partition {p}: {s} {v}"),
            }
        }
        assert!(
            served > 0 && refused > 0,
            "served {served}, refused {refused}"
        );
        // Without a partition named, a consumer still gets what the live shard holds.
        let v = post_ok(
            &format!("{u}/queue/0/consume"),
            json!({"consumer": 3, "max": 100}),
        )
        .await;
        assert!(v["messages"].as_array().is_some(), "{v}");
        // With every shard down, an empty answer would lie: 503.
        drop(a);
        let (status, v) = post(&format!("{u}/queue/0/consume"), json!({"consumer": 3})).await;
        assert_eq!((status, v["error"].as_str()), (503, Some("retry")), "{v}");
        c.stop().await;
    });
}

#[test]
fn without_redis_the_queue_is_off() {
    run_local(|| async {
        let mut c = Cluster::new("http-queue-off");
        c.start();
        let urls = serve_all(&c).await;
        let (status, v) = post(
            &format!("{}/queue/1/consume", urls[0]),
            json!({"consumer": 1}),
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (404, Some("queue_off")),
            "{v}"
        );
        c.stop().await;
    });
}

#[test]
fn the_queue_metrics_count_what_this_node_routed() {
    let shard = Server::start("queue-metrics");
    let ports = [shard.port()];
    run_local(|| async move {
        let mut c = Cluster::with_redis("http-queue-metrics", &ports);
        c.start();
        let urls = crate::real::http::tests::serve_all_with(&c, true).await;
        c.leader().await;
        let u = &urls[0];
        let produce = json!({"producer": 2, "first_seq": 1, "messages": ["a", "b", "c"]});
        post_ok(&format!("{u}/queue/0/produce"), produce.clone()).await;
        post_ok(&format!("{u}/queue/0/produce"), produce).await;
        let v = post_ok(
            &format!("{u}/queue/0/consume"),
            json!({"consumer": 2, "max": 3}),
        )
        .await;
        let ids: Vec<Value> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect();
        post_ok(
            &format!("{u}/queue/0/nack"),
            json!({"partition": 2, "ids": [ids[0]]}),
        )
        .await;
        post_ok(
            &format!("{u}/queue/0/consume"),
            json!({"consumer": 2, "partition": 2}),
        )
        .await;
        post_ok(
            &format!("{u}/queue/0/ack"),
            json!({"partition": 2, "ids": ids}),
        )
        .await;
        let r = with_body("GET", &format!("{u}/metrics"), None, false).await;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        for expected in [
            "distsync_queue_stored_total 3",
            "distsync_queue_duplicates_total 3",
            "distsync_queue_delivered_total 4",
            "distsync_queue_redelivered_total 1",
            "distsync_queue_acked_total 3",
            r#"distsync_redis_call_seconds_count{shard="0"}"#,
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        c.stop().await;
    });
    drop(shard);
}

#[test]
fn a_shard_that_lost_its_functions_gets_the_library_again() {
    let shard = Server::start("queue-reload");
    let ports = [shard.port()];
    run_local(|| async move {
        let mut c = Cluster::with_redis("http-queue-reload", &ports);
        c.start();
        let urls = serve_all(&c).await;
        c.leader().await;
        let u = &urls[0];
        let produce = |seq: u64| json!({"producer": 1, "first_seq": seq, "messages": ["x"]});
        post_ok(&format!("{u}/queue/0/produce"), produce(1)).await;
        // As a Redis restarted without persistence would be: no functions.
        let mut conn = shard.connect();
        assert_eq!(
            conn.call(&["FUNCTION", "FLUSH"]),
            crate::redis::Resp::Simple(b"OK".to_vec())
        );
        let v = post_ok(&format!("{u}/queue/0/produce"), produce(2)).await;
        assert_eq!(v["stored"], 1, "{v}");
        let mut listed = Vec::new();
        conn.call(&["FUNCTION", "LIST"]).encode(&mut listed);
        assert!(
            listed.windows(14).any(|w| w == b"distsync_queue"),
            "{}",
            String::from_utf8_lossy(&listed)
        );
        c.stop().await;
    });
}
