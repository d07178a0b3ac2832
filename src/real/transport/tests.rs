//! The transport on loopback: frames, handshakes, three nodes, restarts,
//! drops. Every test runs under a timeout, so a hang fails instead of
//! stalling the suite.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::task::LocalSet;
use tokio::time::{sleep, timeout};

use super::frame::{self, FrameError};
use super::handshake::{self, Expect, HandshakeError, Hello, PROTOCOL_VERSION};
use super::*;
use crate::cache::bus::BusMsg;
use crate::cache::mesi::{BusOp, State};
use crate::kv::{ClientReply, ClientRequest};
use crate::lock::LockError;
use crate::lock::protocol::{LockReply, LockRequest};
use crate::lock::resource::Phase;
use crate::queue::functions::{Delivery, Dump, MessageId, Refused, Stored};
use crate::queue::protocol::{QueueReply, QueueRequest, ShardAnswer, ShardCall};
use crate::raft::RaftMsg;
use crate::raft::message::{AppendEntries, AppendReply};
use crate::replicated::{Command, Entry, Replicated, Snapshot};
use crate::rng::Purpose;

/// Runs `body` on this thread's runtime inside a `LocalSet`, failing after `secs`.
async fn within<F: Future>(secs: u64, body: F) -> F::Output {
    LocalSet::new()
        .run_until(timeout(Duration::from_secs(secs), body))
        .await
        .expect("the test timed out")
}

/// `n` loopback addresses free a moment ago.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<StdListener> = (0..n)
        .map(|_| StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn config(me: NodeId, addrs: &[SocketAddr]) -> TransportConfig {
    let peers = addrs.iter().copied().enumerate().collect();
    let mut cfg = TransportConfig::new("test-cluster", me, addrs[me], peers);
    cfg.backoff_min = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(50);
    cfg
}

async fn start(cfg: TransportConfig) -> (Transport, Receiver<(NodeId, Msg)>) {
    let seed = cfg.me as u64;
    Transport::start(cfg, Rng::stream(seed, Purpose::Network, 0))
        .await
        .expect("transport starts")
}

/// Polls `cond` every few milliseconds until it holds.
async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        sleep(Duration::from_millis(5)).await;
    }
}

fn vote(term: u64) -> Msg {
    Msg::Raft(RaftMsg::Vote {
        term,
        last_index: 7,
        last_term: 3,
    })
}

/// Sends `vote(term)` every few milliseconds until it comes out of `rx`
/// (earlier sends may be dropped or still queued while a link comes up).
async fn deliver(
    from: &Transport,
    from_id: NodeId,
    to: NodeId,
    rx: &mut Receiver<(NodeId, Msg)>,
    term: u64,
) {
    loop {
        from.send(to, vote(term));
        if let Ok(Some(got)) = timeout(Duration::from_millis(20), rx.recv()).await
            && got == (from_id, vote(term))
        {
            return;
        }
    }
}

/// One message of each kind the wire carries, with nested payloads.
fn every_kind() -> Vec<Msg> {
    let entry = |term, cmd| Entry { term, cmd };
    let snapshot = Snapshot {
        index: 12,
        term: 4,
        data: Rc::new(Replicated::default()),
    };
    let id = MessageId {
        producer: 3,
        seq: 9,
    };
    let dump = Dump {
        ready: vec![(id, b"ready".to_vec(), 1)],
        inflight: vec![(id, b"busy".to_vec(), 2, 1_000)],
        dead: vec![],
        last_seq: vec![(3, 9)],
    };
    vec![
        Msg::Raft(RaftMsg::PreVote {
            term: 1,
            last_index: 2,
            last_term: 1,
        }),
        Msg::Raft(RaftMsg::PreVoteResp {
            term: 1,
            granted: true,
        }),
        vote(5),
        Msg::Raft(RaftMsg::VoteResp {
            term: 5,
            granted: false,
        }),
        Msg::Raft(RaftMsg::Append(AppendEntries {
            term: 6,
            prev_index: 10,
            prev_term: 5,
            entries: vec![
                entry(6, Command::Noop),
                entry(
                    6,
                    Command::Put {
                        client: 1,
                        seq: u64::MAX,
                        key: 3,
                        value: 42,
                    },
                ),
            ],
            commit: 10,
            read_ctx: 77,
        })),
        Msg::Raft(RaftMsg::AppendResp(AppendReply::reject(6, 10, 8, 4, 77))),
        Msg::Raft(RaftMsg::InstallSnapshot { term: 6, snapshot }),
        Msg::Request {
            seq: 1,
            req: ClientRequest::Put { key: 1, value: 2 },
        },
        Msg::Request {
            seq: 2,
            req: ClientRequest::Lock(LockRequest::Open { ttl_ns: 5 }),
        },
        Msg::Reply {
            seq: 2,
            reply: ClientReply::Lock(LockReply::Failed(LockError::Deadlock {
                cycle: vec![1, 2, 3],
            })),
        },
        Msg::Reply {
            seq: 3,
            reply: ClientReply::NotLeader(Some(2)),
        },
        Msg::ResourceWrite {
            client: 1,
            lock: 2,
            token: 3,
            phase: Phase::End,
        },
        Msg::ResourceAck {
            lock: 2,
            token: 3,
            accepted: true,
        },
        Msg::Queue {
            seq: 4,
            req: QueueRequest::Produce {
                partition: 1,
                producer: 3,
                first_seq: 9,
                bodies: Rc::new(vec![b"a".to_vec(), vec![0; 300]]),
            },
        },
        Msg::QueueReply {
            seq: 4,
            reply: QueueReply::Delivered(vec![Delivery {
                id,
                body: b"x".to_vec(),
                attempt: 1,
            }]),
        },
        Msg::Shard {
            req: 5,
            call: ShardCall::Import {
                partition: 1,
                epoch: 2,
                dump: Rc::new(dump.clone()),
            },
        },
        Msg::ShardAnswer {
            req: 5,
            answer: ShardAnswer::Frozen(Rc::new(dump)),
        },
        Msg::ShardAnswer {
            req: 6,
            answer: ShardAnswer::Refused(Refused::Moved { epoch: 3 }),
        },
        Msg::ShardAnswer {
            req: 7,
            answer: ShardAnswer::Stored(Stored {
                stored: 2,
                duplicate: 1,
            }),
        },
        Msg::Bus(BusMsg::Request {
            txn: 1,
            key: 2,
            op: BusOp::BusRdX,
            dirty: Some((3, 4)),
            incarnation: 5,
        }),
        Msg::Dir(BusMsg::Report {
            home_incarnation: 1,
            incarnation: 2,
            lines: vec![(3, State::Modified), (4, State::Shared)],
            handed_over: vec![5],
        }),
    ]
}

#[tokio::test]
async fn frames_round_trip_every_message_kind() {
    within(5, async {
        let msgs = every_kind();
        let mut wire = Vec::new();
        for m in &msgs {
            frame::encode(m, MAX_FRAME_BYTES, &mut wire).expect("encodes");
        }
        let mut r = &wire[..];
        let mut buf = Vec::new();
        for m in &msgs {
            let got = frame::read(&mut r, MAX_FRAME_BYTES, &mut buf).await;
            assert_eq!(got.expect("decodes").as_ref(), Some(m));
        }
        assert!(matches!(
            frame::read(&mut r, MAX_FRAME_BYTES, &mut buf).await,
            Ok(None)
        ));
    })
    .await;
}

#[tokio::test]
async fn truncated_oversized_and_garbage_frames_are_errors() {
    within(5, async {
        let mut buf = Vec::new();
        let mut whole = Vec::new();
        frame::encode(&vote(3), MAX_FRAME_BYTES, &mut whole).unwrap();
        // Cut anywhere: the end of the stream between frames is clean, any
        // other cut is a truncated frame.
        for cut in 0..whole.len() {
            let got = frame::read(&mut &whole[..cut], MAX_FRAME_BYTES, &mut buf).await;
            match cut {
                0 => assert!(matches!(got, Ok(None))),
                _ => assert!(
                    matches!(got, Err(FrameError::Truncated { .. })),
                    "cut {cut}: {got:?}"
                ),
            }
        }
        // A length over the limit is refused before the body is read.
        let huge = (MIN_FRAME_BYTES as u32 + 1).to_be_bytes();
        let got = frame::read(&mut &huge[..], MIN_FRAME_BYTES, &mut buf).await;
        assert!(matches!(got, Err(FrameError::TooLarge { bytes, limit })
            if bytes == MIN_FRAME_BYTES + 1 && limit == MIN_FRAME_BYTES));
        // Bodies that are not one message: empty, an unknown variant, a
        // message with a byte left over.
        let mut trailing = whole[frame::LEN_BYTES..].to_vec();
        trailing.push(0);
        for body in [vec![], vec![0xc8, 0x01, 0, 0], trailing] {
            let mut wire = (body.len() as u32).to_be_bytes().to_vec();
            wire.extend_from_slice(&body);
            let got = frame::read(&mut &wire[..], MAX_FRAME_BYTES, &mut buf).await;
            assert!(
                matches!(got, Err(FrameError::Undecodable { .. })),
                "{body:?}: {got:?}"
            );
        }
        // A message over the limit is not encoded, and the buffer is untouched.
        let big = Msg::Queue {
            seq: 1,
            req: QueueRequest::Produce {
                partition: 0,
                producer: 0,
                first_seq: 0,
                bodies: Rc::new(vec![vec![7; 2 * MIN_FRAME_BYTES]]),
            },
        };
        let mut out = vec![1, 2, 3];
        let got = frame::encode(&big, MIN_FRAME_BYTES, &mut out);
        assert!(matches!(got, Err(FrameError::TooLarge { .. })));
        assert_eq!(out, [1, 2, 3]);
    })
    .await;
}

fn hello(cluster: &str, node: NodeId) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster.to_owned(),
        node,
    }
}

#[tokio::test]
async fn handshake_checks_name_both_sides() {
    within(5, async {
        let ours = hello("prod", 1);
        let known: BTreeSet<NodeId> = [0, 2].into();
        let accepted = Expect::Accepted { known: &known };
        assert!(handshake::check(&ours, &hello("prod", 0), accepted).is_ok());
        assert!(handshake::check(&ours, &hello("prod", 2), Expect::Dialed(2)).is_ok());
        let refusals = [
            (hello("staging", 0), accepted, "\"prod\""),
            (hello("prod", 1), accepted, "our own node id n2"),
            (
                hello("prod", 5),
                accepted,
                "unknown node n6: n2's peers are [n1, n3]",
            ),
            (hello("prod", 2), accepted, "n3 dialed n2"),
            (
                hello("prod", 0),
                Expect::Dialed(2),
                "dialed n3 but n1 answered",
            ),
        ];
        for (theirs, expect, says) in refusals {
            let err = handshake::check(&ours, &theirs, expect).expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(says), "{text:?} lacks {says:?}");
        }
        let cluster = handshake::check(&ours, &hello("staging", 0), accepted).unwrap_err();
        assert!(cluster.to_string().contains("\"staging\""));

        // The version is read and refused before the body.
        let mut old = handshake::encode(&ours).unwrap();
        old[4..8].copy_from_slice(&7u32.to_be_bytes());
        let err = handshake::read(&mut &old[..], PROTOCOL_VERSION)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: 7
            }
        ));
        assert!(err.to_string().contains("version 7"));
        let err = handshake::read(&mut &b"GET / HTTP/1.1\r\n"[..], PROTOCOL_VERSION).await;
        assert!(matches!(err, Err(HandshakeError::BadMagic { .. })));
        let mut long = handshake::encode(&ours).unwrap();
        long[8..12].copy_from_slice(&(handshake::MAX_HELLO_BYTES as u32 + 1).to_be_bytes());
        let err = handshake::read(&mut &long[..], PROTOCOL_VERSION).await;
        assert!(matches!(err, Err(HandshakeError::Malformed(_))));
        let good = handshake::encode(&ours).unwrap();
        let back = handshake::read(&mut &good[..], PROTOCOL_VERSION)
            .await
            .unwrap();
        assert_eq!(back, ours);
    })
    .await;
}

/// A raw client: connects to `addr`, sends `hello` bytes, and returns the
/// stream once the server's hello has arrived.
async fn raw_client(addr: SocketAddr, hello: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(hello).await.unwrap();
    let mut theirs = [0u8; 12];
    s.read_exact(&mut theirs).await.expect("the server's hello");
    let len = u32::from_be_bytes(theirs[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    s
}

/// Reads until the server closes the connection; fails the test (by its
/// timeout) if it never does.
async fn closed_by_server(s: &mut TcpStream) {
    let mut sink = [0u8; 256];
    while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
}

#[tokio::test]
async fn mismatched_handshakes_and_bad_frames_close_the_connection() {
    within(10, async {
        let addrs = free_addrs(2);
        // Node 1 accepts from node 0; the raw client plays node 0.
        let (n1, mut rx) = start(config(1, &addrs)).await;
        let refused = [
            hello("other-cluster", 0),
            hello("test-cluster", 1),
            hello("test-cluster", 9),
            Hello {
                version: PROTOCOL_VERSION + 1,
                ..hello("test-cluster", 0)
            },
        ];
        for h in &refused {
            let mut s = TcpStream::connect(addrs[1]).await.unwrap();
            s.write_all(&handshake::encode(h).unwrap()).await.unwrap();
            // Refused: closed without an answer (perhaps with a reset, when
            // the unread rest of the hello is discarded).
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            assert!(answer.is_empty(), "{h:?} was answered");
        }
        assert_eq!(n1.stats().peers[&0].received, 0);
        // A good hello, one good frame, then garbage: the frame is
        // delivered and the garbage closes the connection.
        let good = handshake::encode(&hello("test-cluster", 0)).unwrap();
        for garbage in [
            ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec(),
            vec![0, 0, 0, 2, 0xc8, 0x01],
        ] {
            let mut s = raw_client(addrs[1], &good).await;
            let mut wire = Vec::new();
            frame::encode(&vote(9), MAX_FRAME_BYTES, &mut wire).unwrap();
            wire.extend_from_slice(&garbage);
            s.write_all(&wire).await.unwrap();
            assert_eq!(rx.recv().await, Some((0, vote(9))));
            closed_by_server(&mut s).await;
        }
        until(|| !n1.stats().peers[&0].connected).await;
        assert_eq!(n1.stats().peers[&0].received, 2);
        n1.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn nodes_of_different_clusters_never_connect() {
    within(5, async {
        let addrs = free_addrs(2);
        let (a, _rx_a) = start(config(0, &addrs)).await;
        let mut other = config(1, &addrs);
        other.cluster_id = "another-cluster".into();
        let (b, mut rx_b) = start(other).await;
        for term in 0..20 {
            a.send(1, vote(term));
            sleep(Duration::from_millis(10)).await;
        }
        assert!(!a.stats().peers[&1].connected && !b.stats().peers[&0].connected);
        assert!(rx_b.try_recv().is_err());
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn three_transports_exchange_messages() {
    within(10, async {
        let addrs = free_addrs(3);
        let mut nodes = Vec::new();
        for me in 0..3 {
            nodes.push(start(config(me, &addrs)).await);
        }
        for from in 0..3 {
            for to in (0..3).filter(|&t| t != from) {
                let (sender, rest) = (nodes[from].0.clone(), &mut nodes[to].1);
                deliver(&sender, from, to, rest, (10 * from + to) as u64).await;
            }
        }
        // Once connected, every message arrives, in order (copies of the
        // votes `deliver` repeated may still come first).
        for term in 100..150 {
            nodes[2].0.send(0, vote(term));
        }
        let mut terms = Vec::new();
        while terms.len() < 50 {
            let (from, msg) = nodes[0].1.recv().await.expect("inbox open");
            if msg.term() >= 100 {
                assert_eq!(from, 2);
                terms.push(msg.term());
            }
        }
        assert_eq!(terms, (100..150).collect::<Vec<u64>>());
        for (me, (t, _)) in nodes.iter().enumerate() {
            let s = t.stats();
            assert_eq!(s.peers.len(), 2, "n{} has two peers", me + 1);
            assert!(s.peers.values().all(|p| p.connected), "{s:?}");
        }
        for (t, _) in nodes {
            t.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn restarted_peers_are_reconnected() {
    within(15, async {
        let addrs = free_addrs(2);
        let (a, mut rx_a) = start(config(0, &addrs)).await;
        let (b, mut rx_b) = start(config(1, &addrs)).await;
        deliver(&a, 0, 1, &mut rx_b, 1).await;
        deliver(&b, 1, 0, &mut rx_a, 2).await;

        // The accepting side restarts on the same port: the dialer redials.
        b.shutdown().await;
        until(|| !a.stats().peers[&1].connected).await;
        let (b, mut rx_b) = start(config(1, &addrs)).await;
        deliver(&a, 0, 1, &mut rx_b, 3).await;
        deliver(&b, 1, 0, &mut rx_a, 4).await;
        assert!(a.stats().peers[&1].reconnects >= 1, "{:?}", a.stats());

        // The dialing side restarts: its new connection replaces the old one.
        a.shutdown().await;
        let (a, mut rx_a) = start(config(0, &addrs)).await;
        deliver(&a, 0, 1, &mut rx_b, 5).await;
        deliver(&b, 1, 0, &mut rx_a, 6).await;
        assert!(b.stats().peers[&0].reconnects >= 1, "{:?}", b.stats());
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    within(5, async {
        // Node 1's address has no listener: node 0 can never connect.
        let addrs = free_addrs(2);
        let mut cfg = config(0, &addrs);
        cfg.queue_limit = 4;
        let (a, _rx) = start(cfg).await;
        for term in 0..10 {
            a.send(1, vote(term));
        }
        a.send(7, vote(0));
        a.send(0, vote(0));
        let s = a.stats();
        let p = s.peers[&1];
        assert_eq!((p.sent, p.dropped, p.connected), (0, 6, false), "{s:?}");
        assert_eq!(s.dropped_unknown, 2);
        a.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_full_inbox_drops_and_counts_instead_of_blocking_the_reader() {
    within(10, async {
        let addrs = free_addrs(2);
        let mut cfg = config(1, &addrs);
        cfg.queue_limit = 8;
        let (a, _rx_a) = start(config(0, &addrs)).await;
        let (b, mut rx_b) = start(cfg).await;
        until(|| a.stats().peers[&1].connected && b.stats().peers[&0].connected).await;
        // Node 1 reads nothing now: its inbox (8 for its one peer) fills,
        // and the reader drops the rest instead of stalling.
        for term in 1..=40 {
            a.send(1, vote(term));
        }
        until(|| b.stats().peers[&0].received >= 40).await;
        let p = b.stats().peers[&0];
        assert_eq!(p.dropped_inbound, 32, "{p:?}");
        for term in 1..=8 {
            assert_eq!(rx_b.try_recv().ok(), Some((0, vote(term))));
        }
        assert!(rx_b.try_recv().is_err());
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_settings_and_a_taken_port_are_refused() {
    within(5, async {
        let taken = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let cfg = TransportConfig::new("c", 0, addr, BTreeMap::new());
        let err = Transport::start(cfg.clone(), Rng::stream(0, Purpose::Network, 0))
            .await
            .err()
            .expect("the port is taken");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let broken = [
            TransportConfig {
                queue_limit: 0,
                ..cfg.clone()
            },
            TransportConfig {
                backoff_min: Duration::from_secs(3),
                ..cfg.clone()
            },
            TransportConfig {
                max_frame: 10,
                ..cfg.clone()
            },
            TransportConfig {
                cluster_id: String::new(),
                ..cfg.clone()
            },
        ];
        for bad in broken {
            let err = Transport::start(bad, Rng::stream(0, Purpose::Network, 0))
                .await
                .err()
                .expect("refused");
            assert!(matches!(err, TransportError::Config { .. }), "{err}");
        }
    })
    .await;
}

#[tokio::test]
async fn peer_sockets_get_nodelay_and_keepalive() {
    within(5, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (dialed, (accepted, _)) = (dialed.unwrap(), accepted.unwrap());
        for s in [&dialed, &accepted] {
            peer::tune(s);
            let sock = socket2::SockRef::from(s);
            assert!(s.nodelay().unwrap());
            assert!(sock.keepalive().unwrap());
        }
    })
    .await;
}

#[tokio::test]
async fn a_message_over_the_frame_limit_is_dropped_and_the_link_stays_up() {
    within(5, async {
        let addrs = free_addrs(2);
        let mut small = config(0, &addrs);
        small.max_frame = MIN_FRAME_BYTES;
        let (a, _rx_a) = start(small).await;
        let (b, mut rx_b) = start(config(1, &addrs)).await;
        deliver(&a, 0, 1, &mut rx_b, 1).await;
        let big = Msg::Queue {
            seq: 1,
            req: QueueRequest::Produce {
                partition: 0,
                producer: 0,
                first_seq: 0,
                bodies: Rc::new(vec![vec![7; 2 * MIN_FRAME_BYTES]]),
            },
        };
        let before = a.stats().peers[&1].dropped;
        a.send(1, big);
        a.send(1, vote(2));
        loop {
            let (_, msg) = rx_b.recv().await.expect("inbox open");
            assert!(
                !matches!(msg, Msg::Queue { .. }),
                "the oversized message arrived"
            );
            if msg == vote(2) {
                break;
            }
        }
        let p = a.stats().peers[&1];
        assert_eq!(p.dropped, before + 1, "{p:?}");
        assert!(p.connected && p.reconnects == 0, "{p:?}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
