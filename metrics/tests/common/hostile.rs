//! The hostile clients of the /metrics tests and the server bench: idle connections
//! and a slowloris, shared so that the test and the bench load a server the same way.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Keeps `n` connections open that never send a byte, re-opening those the server closed.
pub fn idle_clients(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            for c in conns.iter_mut() {
                let closed = match c {
                    None => true,
                    Some(s) => match s.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *c = TcpStream::connect(addr).ok().inspect(|s| {
                        let _ = s.set_nonblocking(true);
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// One byte of a scrape request every 1.5 s, re-connecting when the server closes.
pub fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut connects = 0;
        let mut conn: Option<(TcpStream, usize)> = None;
        while !stop.load(Ordering::Relaxed) {
            let (s, sent) = match conn.take() {
                Some(c) => c,
                None => match TcpStream::connect(addr) {
                    Ok(s) => {
                        connects += 1;
                        (s, 0)
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                },
            };
            if (&s).write_all(&req[sent % req.len()..][..1]).is_err() {
                continue; // closed by the server: straight back in
            }
            conn = Some((s, sent + 1));
            std::thread::sleep(Duration::from_millis(1500));
        }
        connects
    })
}
