//! The /metrics endpoint (loopback by default). Each request is answered with what `body`
//! renders at that moment, and closed. The probe serves its live state; the analyzer's
//! replay serves a run at replay time.
//!
//! Shape, and why hand-written: one thread polls the listener and every connection still
//! sending its request head (non-blocking sockets, `poll(2)`), so an idle or slow client
//! costs a file descriptor, never the thread. Each connection has ONE deadline for its
//! whole head ([`HEAD_DEADLINE`], from accept: a byte every 1.5 s does not extend it) and
//! a cap on the head's size ([`MAX_HEAD_BYTES`]); connections beyond [`MAX_PENDING`] are
//! closed at once. A complete head goes to a small pool of worker threads that render
//! and write the answer under a total write deadline; when the pool's queue is full the
//! connection is closed at once. A scrape is thus answered in milliseconds under 1,000
//! idle connections and a slowloris client (`tests/slowloris.rs` prints the figures).
//! tiny_http serves each connection from a blocking thread pool with per-read timeouts,
//! which is the very weakness fixed here. hyper 1 (tokio current-thread, 1 s
//! `header_read_timeout`, a connection limit) was measured against this loop under the
//! same attack (`benches/server_vs_hyper.rs`, docs/benchmarks.md): its median scrape is
//! faster (~0.27 against ~0.5 ms, both far under the 100 ms goal), but it holds ~2 MB
//! more with 1,000 idle clients and peaks at 12-18 MB against 3 MB, in a probe whose
//! whole peak is ~15 MB; so this stays, ~300 lines on `std` and `libc::poll`. With a web-config file (`web_config.rs`,
//! node_exporter's format) the same loop speaks TLS (rustls, sans-IO: the handshake and
//! the head are read under the same deadline) and answers 401 without valid basic auth.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::web_config::WebConfig;

/// Renders the exposition for one scrape.
pub type Body = Arc<dyn Fn() -> String + Send + Sync>;
/// Told about a failed request (error kind), to count it.
pub type OnError = Arc<dyn Fn(&str) + Send + Sync>;

/// The whole request head must arrive within this long of the accept.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(1);
/// A longer head is refused (a scrape's is ~200 bytes).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Connections still sending their head; more are closed at once.
pub const MAX_PENDING: usize = 4096;
/// Writing one answer may take at most this long (a client that does not read).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
const WORKERS: usize = 4;
/// Complete requests waiting for a worker; more are closed at once.
const QUEUE: usize = 64;

pub struct MetricsServer {
    pub addr: SocketAddr,
    /// Written to on drop: wakes the poll loop, which then stops.
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// A connection sending its request head.
struct Pending {
    stream: TcpStream,
    /// The TLS session, when the server speaks TLS.
    tls: Option<Box<rustls::ServerConnection>>,
    head: Vec<u8>,
    deadline: Instant,
}

/// What reading from a pending connection came to.
enum HeadRead {
    More,
    Done,
    Closed,
    Failed(&'static str),
}

type Job = (TcpStream, Option<Box<rustls::ServerConnection>>, Vec<u8>);

impl MetricsServer {
    pub fn start(addr: &str, body: Body, on_error: OnError) -> std::io::Result<MetricsServer> {
        MetricsServer::start_with(addr, body, on_error, None)
    }

    /// `start`, with TLS and basic auth as `web` says.
    pub fn start_with(
        addr: &str,
        body: Body,
        on_error: OnError,
        web: Option<Arc<WebConfig>>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (waker, woken) = UnixStream::pair()?;
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for k in 0..WORKERS {
            let (queue, body, on_error) = (queue.clone(), body.clone(), on_error.clone());
            let web = web.clone();
            std::thread::Builder::new()
                .name(format!("metrics-{k}"))
                .spawn(move || worker(&queue, &body, &on_error, web.as_deref()))?;
        }
        let tls = web.and_then(|w| w.tls.clone());
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || poll_loop(&listener, &woken, &jobs, &on_error, tls.as_ref()))?;
        Ok(MetricsServer {
            addr,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = (&self.waker).write_all(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The workers end once the queue's sender (owned by the poll loop) is gone.
    }
}

/// Accepts, reads request heads under their deadlines, and queues complete ones.
fn poll_loop(
    listener: &TcpListener,
    woken: &UnixStream,
    jobs: &SyncSender<Job>,
    on_error: &OnError,
    tls: Option<&Arc<rustls::ServerConfig>>,
) {
    let mut pending: Vec<Pending> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        fds.clear();
        for fd in [listener.as_raw_fd(), woken.as_raw_fd()]
            .into_iter()
            .chain(pending.iter().map(|p| p.stream.as_raw_fd()))
        {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = pending.iter().map(|p| p.deadline).min().map_or(-1, |d| {
            let left = d.saturating_duration_since(Instant::now());
            // Rounded up, so a deadline is not polled for in a busy loop just before it.
            left.as_millis().min(60_000) as i32 + 1
        });
        // SAFETY: `fds` is a live Vec of initialised pollfd, borrowed mutably for the
        // call, and its exact length is passed with its pointer.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            on_error("metrics:poll");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if fds[1].revents != 0 {
            return;
        }
        let now = Instant::now();
        let ready = fds[2..].iter().map(|f| f.revents != 0);
        pending = advance(std::mem::take(&mut pending), ready, now, jobs, on_error);
        if fds[0].revents != 0 {
            accept_all(listener, &mut pending, now, on_error, tls);
        }
    }
}

/// Reads the connections poll found ready; queues complete heads, closes failed and
/// expired connections, and returns the rest.
fn advance(
    pending: Vec<Pending>,
    ready: impl Iterator<Item = bool>,
    now: Instant,
    jobs: &SyncSender<Job>,
    on_error: &OnError,
) -> Vec<Pending> {
    let mut kept = Vec::with_capacity(pending.len());
    for (mut p, ready) in pending.into_iter().zip(ready) {
        let outcome = if ready {
            read_head(&mut p)
        } else {
            HeadRead::More
        };
        match outcome {
            HeadRead::More if now >= p.deadline => on_error("metrics:timeout"),
            HeadRead::More => kept.push(p),
            HeadRead::Done => queue(jobs, p, on_error),
            HeadRead::Closed => {}
            HeadRead::Failed(kind) => on_error(kind),
        }
    }
    kept
}

fn accept_all(
    listener: &TcpListener,
    pending: &mut Vec<Pending>,
    now: Instant,
    on_error: &OnError,
    tls: Option<&Arc<rustls::ServerConfig>>,
) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if pending.len() >= MAX_PENDING || stream.set_nonblocking(true).is_err() {
                    on_error("metrics:busy");
                    continue; // dropped: closed at once
                }
                let tls = match tls.map(|c| rustls::ServerConnection::new(c.clone())) {
                    None => None,
                    Some(Ok(conn)) => Some(Box::new(conn)),
                    Some(Err(_)) => {
                        on_error("metrics:tls");
                        continue;
                    }
                };
                pending.push(Pending {
                    stream,
                    tls,
                    head: Vec::new(),
                    deadline: now + HEAD_DEADLINE,
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Out of descriptors and the like: the listener stays readable, so pause
            // rather than spin; expiring connections free descriptors meanwhile.
            Err(_) => {
                on_error("metrics:accept");
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        }
    }
}

/// Reads what the socket holds without blocking.
fn read_head(p: &mut Pending) -> HeadRead {
    match p.tls.as_deref_mut() {
        Some(conn) => read_tls_head(&mut p.stream, conn, &mut p.head),
        None => read_plain(&mut p.stream, &mut p.head),
    }
}

/// Reads plaintext from `r` into `head` until it would block.
fn read_plain(r: &mut impl Read, head: &mut Vec<u8>) -> HeadRead {
    let mut buf = [0u8; 2048];
    loop {
        match r.read(&mut buf) {
            Ok(0) if head.is_empty() => return HeadRead::Closed,
            // Half-closed after a head without its blank line: answer what came.
            Ok(0) => return HeadRead::Done,
            Ok(got) => {
                // Search only where the new bytes can complete "\r\n\r\n".
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&buf[..got]);
                if head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    return HeadRead::Done;
                }
                if head.len() > MAX_HEAD_BYTES {
                    return HeadRead::Failed("metrics:head_too_large");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return HeadRead::More,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return HeadRead::Failed("metrics:read"),
        }
    }
}

/// Drives the TLS session with what the socket holds (the handshake, then records) and
/// reads the decrypted head, without blocking.
fn read_tls_head(
    stream: &mut TcpStream,
    conn: &mut rustls::ServerConnection,
    head: &mut Vec<u8>,
) -> HeadRead {
    loop {
        let eof = match conn.read_tls(stream) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return HeadRead::Failed("metrics:read"),
        };
        if conn.process_new_packets().is_err() {
            let _ = conn.write_tls(stream); // the alert, if it fits
            return HeadRead::Failed("metrics:tls");
        }
        if eof {
            return if head.is_empty() {
                HeadRead::Closed
            } else {
                HeadRead::Done
            };
        }
    }
    // The handshake's answers are a few KiB: the socket's buffer takes them; a client
    // that does not read them runs into the head deadline.
    while conn.wants_write() {
        match conn.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return HeadRead::Failed("metrics:write"),
        }
    }
    match read_plain(&mut conn.reader(), head) {
        // No plaintext yet is not the end of the connection under TLS.
        HeadRead::Closed => HeadRead::More,
        other => other,
    }
}

fn queue(jobs: &SyncSender<Job>, p: Pending, on_error: &OnError) {
    match jobs.try_send((p.stream, p.tls, p.head)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => on_error("metrics:busy"),
        Err(TrySendError::Disconnected(_)) => on_error("metrics:stopped"),
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, body: &Body, on_error: &OnError, web: Option<&WebConfig>) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok((stream, tls, head)) = job else { return };
        if let Err(e) = answer(stream, tls, &head, body, web) {
            on_error(&format!("metrics:{:?}", e.kind()));
        }
    }
}

/// The value of a header of the request head (names are case-insensitive).
fn header<'a>(req: &'a str, name: &str) -> Option<&'a str> {
    req.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn answer(
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    head: &[u8],
    body: &Body,
    web: Option<&WebConfig>,
) -> std::io::Result<()> {
    let req = String::from_utf8_lossy(head);
    let path = req.split_whitespace().nth(1).unwrap_or("");
    let authorized = web.is_none_or(|w| w.authorized(header(&req, "authorization")));
    let (status, extra, body) = if !authorized {
        (
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"eco2ai\"\r\n",
            "unauthorized\n".to_string(),
        )
    } else if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        ("200 OK", "", body())
    } else {
        ("404 Not Found", "", "only /metrics is served\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + WRITE_DEADLINE;
    // `&TcpStream` writes too: the socket is borrowed for writing and for its timeout,
    // no descriptor is duplicated per scrape.
    let mut sock_w = &stream;
    match tls {
        None => {
            write_by(&mut sock_w, &stream, head.as_bytes(), deadline)?;
            write_by(&mut sock_w, &stream, body.as_bytes(), deadline)
        }
        Some(mut conn) => {
            let mut s = rustls::Stream::new(&mut *conn, &mut sock_w);
            write_by(&mut s, &stream, head.as_bytes(), deadline)?;
            write_by(&mut s, &stream, body.as_bytes(), deadline)?;
            s.conn.send_close_notify();
            // Empty data: sets the timeout and flushes the close_notify.
            write_by(&mut s, &stream, &[], deadline)
        }
    }
}

/// `write_all` to `w` (the socket, or TLS over it) that ends by `deadline` however slowly
/// the client reads; `sock` is the socket, whose write timeout bounds each write.
fn write_by(
    w: &mut impl Write,
    sock: &TcpStream,
    mut data: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    sock.set_write_timeout(Some(left))?;
    if data.is_empty() {
        return w.flush();
    }
    while !data.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        sock.set_write_timeout(Some(left))?;
        match w.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
