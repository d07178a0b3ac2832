//! A real redis-server for the differential tests: started on a free
//! loopback port in a scratch directory, with no persistence, and always
//! stopped (killed and reaped) when dropped, also when a test panics.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::real::temp_dir::TempDir;
use crate::redis::{Resp, command};

/// How long redis-server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one reply may take: every command here is small.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server child process.
pub struct Server {
    // Dropped in order: the process is stopped before its directory goes.
    _process: Process,
    port: u16,
    _dir: TempDir,
}

/// The child process, killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Starts redis-server and waits (boundedly) until it accepts
    /// connections. Fails, rather than skipping the test, when redis-server
    /// is not installed: a differential test that does not run proves nothing.
    pub fn start(name: &str) -> Server {
        let dir = TempDir::new(name);
        let log_path = dir.0.join("redis.log");
        // The port is free when looked at; another process could take it
        // before redis-server binds, so a server that exits early is retried
        // on a new port.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("create redis.log");
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir.0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file handle"))
                .stderr(log)
                .spawn();
            let mut process = match spawned {
                Ok(child) => Process(child),
                Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                    "redis-server is not on PATH, and the differential tests need a real \
                     one: install it (Debian: apt-get install redis-server)"
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            if wait_listening(&mut process.0, port, &log_path) {
                return Server {
                    _process: process,
                    port,
                    _dir: dir,
                };
            }
        }
        panic!("redis-server exited three times on start; its logs are above");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new client connection, switched to RESP2 as the stand-in speaks.
    pub fn connect(&self) -> Conn {
        let stream =
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("set a read timeout");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
        };
        let hello = conn.call(&["HELLO", "2"]);
        assert!(
            matches!(hello, Resp::Array(Some(_))),
            "HELLO 2: expected the server's properties, got {hello:?}"
        );
        conn
    }
}

/// Polls until the server on `port` accepts a connection; false if it
/// exited first (its log is printed).
fn wait_listening(child: &mut Child, port: u16, log: &std::path::Path) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll redis-server") {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!("redis-server on port {port} exited ({status}):\n{log}");
            return false;
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nothing listens on at the moment.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// One client connection to the server.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read past the last reply.
    buf: Vec<u8>,
}

impl Conn {
    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[impl AsRef<[u8]>]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        let mut out = Vec::new();
        command(&args).encode(&mut out);
        self.stream
            .write_all(&out)
            .expect("send a command to redis-server");
        self.reply()
    }

    fn reply(&mut self) -> Resp {
        loop {
            match Resp::decode(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return reply;
                }
                Ok(None) => {}
                Err(e) => panic!("redis-server sent a malformed reply: {e}"),
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("read a reply from redis-server");
            assert!(n > 0, "redis-server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
