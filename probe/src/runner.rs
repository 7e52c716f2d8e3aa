//! Running the recorded command: resolve it before anything is recorded, forward the
//! signals meant for it, and pass its exit status through.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::{Handle, SignalsInfo};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("command not found: '{0}' (not a file, and not on PATH)")]
    NotFound(String),
    #[error("'{0}' is not executable")]
    NotExecutable(String),
    #[error("starting '{cmd}': {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds the program as `execvp` would, so a typo fails before a run is created.
pub fn resolve(program: &str) -> Result<PathBuf, RunError> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match (p.exists(), is_executable(&p)) {
            (false, _) => Err(RunError::NotFound(program.into())),
            (true, false) => Err(RunError::NotExecutable(program.into())),
            (true, true) => Ok(p),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(|| RunError::NotFound(program.into()))
}

pub fn spawn(argv: &[String], env: &[(String, String)]) -> Result<Child, RunError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| RunError::NotFound(String::new()))?;
    let resolved = resolve(program)?;
    let mut cmd = Command::new(resolved);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().map_err(|source| RunError::Spawn {
        cmd: program.clone(),
        source,
    })
}

/// The exit code a shell would report: the code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Watches SIGINT/SIGTERM/SIGHUP/SIGQUIT for the whole recording. Each one sets
/// `interrupted` and is forwarded to the recorded command, except a terminal's own
/// Ctrl-C/Ctrl-\ which the kernel already delivered to the command's process group.
pub struct SignalForwarder {
    pub interrupted: Arc<AtomicBool>,
    /// Notified on every signal, so a waiter needs no polling loop.
    wake: Arc<(Mutex<()>, Condvar)>,
    pub child_pid: Arc<AtomicI32>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalForwarder {
    pub fn install() -> Result<SignalForwarder, RunError> {
        let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
            .map_err(RunError::Signals)?;
        let handle = signals.handle();
        let interrupted = Arc::new(AtomicBool::new(false));
        let child_pid = Arc::new(AtomicI32::new(0));
        let wake = Arc::new((Mutex::new(()), Condvar::new()));
        let (i2, c2, w2) = (interrupted.clone(), child_pid.clone(), wake.clone());
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for origin in signals.forever() {
                    if let Ok(_guard) = w2.0.lock() {
                        i2.store(true, Ordering::SeqCst);
                    }
                    w2.1.notify_all();
                    let from_tty =
                        origin.process.is_none() && matches!(origin.signal, SIGINT | SIGQUIT);
                    let pid = c2.load(Ordering::SeqCst);
                    if pid > 0 && !from_tty {
                        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
                        unsafe { libc::kill(pid, origin.signal) };
                    }
                }
            })
            .map_err(RunError::Signals)?;
        Ok(SignalForwarder {
            interrupted,
            wake,
            child_pid,
            handle,
            thread: Some(thread),
        })
    }

    /// Sleeps until `timeout` passes or a signal arrives; true if interrupted.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, cv) = &*self.wake;
        let Ok(guard) = lock.lock() else {
            return self.interrupted.load(Ordering::SeqCst);
        };
        let r = cv.wait_timeout_while(guard, timeout, |_| !self.interrupted.load(Ordering::SeqCst));
        drop(r);
        self.interrupted.load(Ordering::SeqCst)
    }
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert!(resolve("sh").is_ok());
        assert!(matches!(
            resolve("no-such-program-xyz"),
            Err(RunError::NotFound(_))
        ));
        assert!(matches!(
            resolve("/no/such/file"),
            Err(RunError::NotFound(_))
        ));
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().display().to_string();
        assert!(matches!(resolve(&p), Err(RunError::NotExecutable(_))));
    }
}
