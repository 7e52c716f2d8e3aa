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
//! which is the very weakness fixed here; hyper needs an async runtime in the probe.
//! This is ~250 lines on `std` and `libc::poll`, with nothing to configure.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

type Job = (TcpStream, Vec<u8>);

impl MetricsServer {
    pub fn start(addr: &str, body: Body, on_error: OnError) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (waker, woken) = UnixStream::pair()?;
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for k in 0..WORKERS {
            let (queue, body, on_error) = (queue.clone(), body.clone(), on_error.clone());
            std::thread::Builder::new()
                .name(format!("metrics-{k}"))
                .spawn(move || worker(&queue, &body, &on_error))?;
        }
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || poll_loop(&listener, &woken, &jobs, &on_error))?;
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
            accept_all(listener, &mut pending, now, on_error);
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
) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if pending.len() >= MAX_PENDING || stream.set_nonblocking(true).is_err() {
                    on_error("metrics:busy");
                    continue; // dropped: closed at once
                }
                pending.push(Pending {
                    stream,
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
    let mut buf = [0u8; 2048];
    loop {
        match p.stream.read(&mut buf) {
            Ok(0) if p.head.is_empty() => return HeadRead::Closed,
            // Half-closed after a head without its blank line: answer what came.
            Ok(0) => return HeadRead::Done,
            Ok(got) => {
                // Search only where the new bytes can complete "\r\n\r\n".
                let from = p.head.len().saturating_sub(3);
                p.head.extend_from_slice(&buf[..got]);
                if p.head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    return HeadRead::Done;
                }
                if p.head.len() > MAX_HEAD_BYTES {
                    return HeadRead::Failed("metrics:head_too_large");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return HeadRead::More,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return HeadRead::Failed("metrics:read"),
        }
    }
}

fn queue(jobs: &SyncSender<Job>, p: Pending, on_error: &OnError) {
    match jobs.try_send((p.stream, p.head)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => on_error("metrics:busy"),
        Err(TrySendError::Disconnected(_)) => on_error("metrics:stopped"),
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, body: &Body, on_error: &OnError) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok((stream, head)) = job else { return };
        if let Err(e) = answer(stream, &head, body) {
            on_error(&format!("metrics:{:?}", e.kind()));
        }
    }
}

fn answer(mut stream: TcpStream, head: &[u8], body: &Body) -> std::io::Result<()> {
    let req = String::from_utf8_lossy(head);
    let path = req.split_whitespace().nth(1).unwrap_or("");
    let (status, body) =
        if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", body())
        } else {
            ("404 Not Found", "only /metrics is served\n".to_string())
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + WRITE_DEADLINE;
    write_by(&mut stream, head.as_bytes(), deadline)?;
    write_by(&mut stream, body.as_bytes(), deadline)
}

/// `write_all` that ends by `deadline` however slowly the client reads.
fn write_by(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !data.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
