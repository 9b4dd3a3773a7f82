//! An HTTP/1.1 load generator: `connections` keep-alive connections, each sending one
//! request after another for a fixed time, every latency recorded.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Latencies;

/// What each connection sends, again and again.
#[derive(Debug, Clone)]
pub enum Request {
    /// `GET path`.
    Get(String),
    /// `POST path` with a JSON note whose title is new each time (titles are unique).
    PostNote(String),
}

impl Request {
    /// The bytes of the `n`th request of connection `conn`.
    fn bytes(&self, conn: usize, n: u64) -> Vec<u8> {
        match self {
            Self::Get(path) => {
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
            }
            Self::PostNote(path) => {
                let body = format!(
                    r#"{{"title": "load {conn} {n}", "body": "measured", "tags": ["a", "b"]}}"#
                );
                format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    }
}

/// What one load run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadResult {
    /// Responses with a 2xx status per second.
    pub per_sec: f64,
    /// Requests that failed: another status, a dropped connection.
    pub errors: u64,
    /// Latency percentiles of the successful requests.
    pub latency: Latencies,
}

/// Sends `GET path` to `127.0.0.1:port` on `connections` connections for `duration`.
pub async fn run(port: u16, path: &str, connections: usize, duration: Duration) -> LoadResult {
    run_request(port, &Request::Get(path.into()), connections, duration).await
}

/// Sends `request` to `127.0.0.1:port` on `connections` connections for `duration`.
pub async fn run_request(
    port: u16,
    request: &Request,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = Vec::with_capacity(connections);
    // Titles stay unique across runs of the same process.
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for conn in 0..connections {
        let (start, request) = (start.clone(), request.clone());
        // A title of its own for each request of each connection of each run.
        let id = (run as usize) * 100_000 + conn;
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.ok();
            start.wait().await;
            let deadline = Instant::now() + duration;
            client(stream, port, |n| request.bytes(id, n), deadline).await
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let (mut samples, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (times, failed) = task.await.expect("load task");
        samples.extend(times);
        errors += failed;
    }
    let elapsed = began.elapsed().as_secs_f64();
    LoadResult {
        per_sec: samples.len() as f64 / elapsed,
        errors,
        latency: Latencies::of(&mut samples),
    }
}

/// One `GET path` on a new connection: the status, or `None` when nothing answered.
pub async fn get(port: u16, path: &str) -> Option<u16> {
    send(port, &Request::Get(path.into()), 0).await
}

/// `request` once (its `n`th variant) on a new connection: the status, or `None`.
pub async fn send(port: u16, request: &Request, n: u64) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    exchange(
        &mut stream,
        &request.bytes(usize::MAX, n),
        &mut [0u8; 16 * 1024],
    )
    .await
}

/// One connection's loop: the latencies of its successful requests and its failures.
async fn client(
    mut stream: Option<TcpStream>,
    port: u16,
    next: impl Fn(u64) -> Vec<u8>,
    deadline: Instant,
) -> (Vec<Duration>, u64) {
    let (mut times, mut errors) = (Vec::new(), 0);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut n = 0;
    while Instant::now() < deadline {
        let request = next(n);
        n += 1;
        let Some(conn) = stream.as_mut() else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            stream = TcpStream::connect(("127.0.0.1", port)).await.ok();
            continue;
        };
        let sent = Instant::now();
        match exchange(conn, &request, &mut buffer).await {
            Some(200..=299) => times.push(sent.elapsed()),
            Some(_) => errors += 1,
            None => {
                errors += 1;
                stream = None;
            }
        }
    }
    (times, errors)
}

/// Sends one request and reads its response; the status, or `None` when the
/// connection broke.
async fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut [u8]) -> Option<u16> {
    stream.write_all(request).await.ok()?;
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buffer[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        let Some(end) = find(&buffer[..filled], b"\r\n\r\n") else {
            if filled == buffer.len() {
                return None;
            }
            continue;
        };
        let head = std::str::from_utf8(&buffer[..end]).ok()?;
        let status = head.get(9..12)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = filled - (end + 4);
        while body < length {
            let n = stream.read(buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            body += n;
        }
        return Some(status);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
