//! The Unix-socket fallback for steps when eBPF is not used. The trust boundary: the
//! socket is a path in a fresh private directory (0700, or 0711 with the socket handed
//! to a joined process's owner), the socket itself 0600, and every datagram's sender
//! is checked with SCM_CREDENTIALS against the recording's users (root may always
//! send). Anything else is dropped and counted as `marker:foreign_sender`.

use std::ffi::CString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eco2ai_marker::wire::{EVENT_LEN, Event};

use super::pairing::Pairing;
use crate::batcher::Batcher;
use crate::samplers::errors::{ErrorCounts, SensorError};

/// The socket's name inside its private directory.
pub const SOCKET_FILE: &str = "marker.sock";
/// `sun_path` holds 108 bytes with the terminating NUL.
const SUN_PATH_MAX: usize = 107;

pub struct MarkerSocket {
    /// The value of ECO2AI_MARKER_SOCKET: the socket's path.
    pub env_value: String,
    sock: UnixDatagram,
    dir: PathBuf,
    path: PathBuf,
    /// Users whose datagrams are taken (root always is).
    allowed_uids: Vec<u32>,
    /// Where the pairing notes each stepping process's rank (a job's recording).
    pub ranks: Option<crate::job::RankBook>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A fresh directory only this user can enter (mkdtemp makes it 0700).
fn private_dir() -> io::Result<PathBuf> {
    let mut last = io::Error::new(ErrorKind::InvalidInput, "no temporary directory");
    for base in [std::env::temp_dir(), PathBuf::from("/tmp")] {
        let template = base.join("eco2ai-marker-XXXXXX");
        // The socket's path must fit in sun_path.
        if template.as_os_str().len() + 1 + SOCKET_FILE.len() > SUN_PATH_MAX {
            continue;
        }
        let mut bytes = CString::new(template.as_os_str().as_bytes())?.into_bytes_with_nul();
        // SAFETY: `bytes` is a writable NUL-terminated template ending in XXXXXX; mkdtemp
        // rewrites those six bytes in place and returns null or the same pointer.
        let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if p.is_null() {
            last = io::Error::last_os_error();
            continue;
        }
        bytes.pop();
        return Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
    }
    Err(last)
}

/// A datagram socket bound at `path` with SO_PASSCRED on from the start, so that no
/// datagram arrives without its sender's credentials, and created with mode 0600.
fn bind_passcred(path: &Path) -> io::Result<UnixDatagram> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > SUN_PATH_MAX || bytes.contains(&0) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    // Linux creates the socket file with the socket inode's mode (less the umask).
    // SAFETY: fchmod on a descriptor we own.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `addr` is a valid sockaddr_un whose path is NUL-terminated within `len`.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    })?;
    Ok(UnixDatagram::from(fd))
}

impl MarkerSocket {
    /// Binds in a fresh private directory. `also_uid`: another user allowed to send
    /// (the owner of a process joined with `--pid`); when this is root, the socket is
    /// handed to that user so that it can connect.
    pub fn bind(also_uid: Option<u32>) -> io::Result<MarkerSocket> {
        let dir = private_dir()?;
        let path = dir.join(SOCKET_FILE);
        let sock = match bind_passcred(&path) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        // From here on, Drop removes the socket and its directory on any error.
        let mut s = MarkerSocket {
            env_value: path.display().to_string(),
            sock,
            dir,
            path,
            allowed_uids: vec![0, me],
            ranks: None,
        };
        std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(uid) = also_uid.filter(|u| *u != me) {
            s.allowed_uids.push(uid);
            if me == 0 {
                // The other user may enter (not list) the directory; only it and root
                // may connect to the socket.
                std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o711))?;
                std::os::unix::fs::chown(&s.path, Some(uid), None)?;
            }
        }
        s.sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    }

    /// Whether a datagram from this sender is taken.
    fn trusts(&self, cred: Option<libc::ucred>) -> bool {
        cred.is_some_and(|c| self.allowed_uids.contains(&c.uid))
    }
}

impl Drop for MarkerSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// One datagram: its length, whether it was cut, and its sender (None: no credentials).
struct Datagram {
    len: usize,
    truncated: bool,
    cred: Option<libc::ucred>,
}

/// recvmsg with the SCM_CREDENTIALS the kernel attaches (SO_PASSCRED). Descriptors a
/// sender passed (SCM_RIGHTS) are closed at once, so that no one can fill our table.
fn recv_with_cred(fd: RawFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 words: the control buffer must be aligned for cmsghdr.
    let mut control = [0u64; 32];
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all live and writable
    // for the lengths given.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cred = None;
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is non-null and points at a cmsghdr inside `control`.
        let h = unsafe { std::ptr::read_unaligned(c) };
        // SAFETY: CMSG_LEN is arithmetic on a constant.
        let header = unsafe { libc::CMSG_LEN(0) } as usize;
        let data_len = (h.cmsg_len as usize).saturating_sub(header);
        // SAFETY: CMSG_DATA of a header inside `control`; the reads below stay within
        // the `data_len` bytes the kernel wrote.
        let data = unsafe { libc::CMSG_DATA(c) };
        if h.cmsg_level == libc::SOL_SOCKET {
            if h.cmsg_type == libc::SCM_CREDENTIALS && data_len >= size_of::<libc::ucred>() {
                // SAFETY: at least size_of::<ucred>() bytes of credentials follow.
                cred = Some(unsafe { std::ptr::read_unaligned(data.cast::<libc::ucred>()) });
            } else if h.cmsg_type == libc::SCM_RIGHTS {
                for i in 0..data_len / size_of::<RawFd>() {
                    // SAFETY: the kernel installed these descriptors for us; we own them.
                    let passed = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                    // SAFETY: closing a descriptor we own and never use.
                    drop(unsafe { OwnedFd::from_raw_fd(passed) });
                }
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok(Datagram {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        cred,
    })
}

/// Decodes and pairs one datagram from a trusted or untrusted sender.
fn take(
    sock: &MarkerSocket,
    d: &Datagram,
    buf: &[u8],
    p: &mut Pairing,
    b: &mut Batcher,
    errors: &ErrorCounts,
) {
    if !sock.trusts(d.cred) {
        errors.add(
            "marker:foreign_sender",
            &SensorError::PermissionDenied("datagram from a user outside the recording".into()),
        );
        return;
    }
    match Event::decode(&buf[..d.len.min(buf.len())]).filter(|_| !d.truncated) {
        Some(ev) => p.handle(ev, None, b, errors),
        None => errors.add(
            "marker:socket",
            &SensorError::Transient("malformed event".into()),
        ),
    }
}

/// Receives until `stop`, then drains what is still queued.
pub fn listen(sock: MarkerSocket, mut b: Batcher, stop: Arc<AtomicBool>, errors: ErrorCounts) {
    let mut pairing = Pairing::new("socket", 0).with_ranks(sock.ranks.clone());
    let mut buf = [0u8; 2 * EVENT_LEN];
    let mut draining = false;
    loop {
        match recv_with_cred(sock.sock.as_raw_fd(), &mut buf) {
            Ok(d) => take(&sock, &d, &buf, &mut pairing, &mut b, &errors),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if draining {
                    pairing.release(0, true, &mut b);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => errors.add("marker:socket", &SensorError::from_io(&e, "recv")),
        }
        let now = crate::clock::monotonic_ns();
        pairing.release(now, false, &mut b);
        b.maybe_send(now, false);
        if stop.load(Ordering::Relaxed) && !draining {
            draining = true;
            let _ = sock.sock.set_nonblocking(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_private_and_knows_its_sender() {
        let s = MarkerSocket::bind(None).unwrap();
        let meta = std::fs::metadata(&s.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir = std::fs::metadata(&s.dir).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        assert!(s.env_value.starts_with('/'), "{}", s.env_value);

        let client = UnixDatagram::unbound().unwrap();
        client.connect(&s.env_value).unwrap();
        client.send(&[7u8; EVENT_LEN]).unwrap();
        let mut buf = [0u8; 2 * EVENT_LEN];
        let d = recv_with_cred(s.sock.as_raw_fd(), &mut buf).unwrap();
        let cred = d.cred.expect("credentials attached");
        // SAFETY: getuid/getpid have no preconditions.
        let (uid, pid) = unsafe { (libc::getuid(), libc::getpid()) };
        assert_eq!((cred.uid, cred.pid, d.len), (uid, pid, EVENT_LEN));
        assert!(s.trusts(d.cred));
        assert!(!s.trusts(None));
        assert!(
            !s.trusts(Some(libc::ucred {
                pid,
                uid: 65534,
                gid: 65534
            })) || uid == 65534
        );

        let (path, dir) = (s.path.clone(), s.dir.clone());
        drop(s);
        assert!(!path.exists() && !dir.exists(), "removed at the end");
    }
}
