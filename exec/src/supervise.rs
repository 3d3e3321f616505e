//! The sandbox dies with rbuild: parent-death wiring on both sides of the
//! helper process.
//!
//! rbuild starts the helper with `PR_SET_PDEATHSIG(SIGTERM)` ([`die_with_parent`]),
//! so the kernel signals the helper when rbuild dies, even by SIGKILL. The
//! helper ([`Signals`]) turns SIGTERM and SIGHUP into "stop": it kills the
//! container's init with SIGKILL — the init is pid 1 of the sandbox's pid
//! namespace, so every process in it dies too — deletes the container and
//! exits. SIGINT (Ctrl-C reaches the whole process group) only wakes the
//! helper: the caller decides whether to cancel.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Make the command's process receive SIGTERM when the calling thread (and
/// so, while it waits for the child, rbuild) dies. If the caller is already
/// gone when the child starts, the child does not run.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe system calls
    // (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Give the sandbox a clean signal state: an empty signal mask and the
/// default action for every signal this process was started ignoring (Rust
/// ignores SIGPIPE before `main`; nohup, shells and CI runners pass on
/// ignored or blocked signals). Ignored signals and the mask survive
/// `execve`, so without this a RUN step's `yes | head -n1` would never see
/// SIGPIPE. Called first thing in the helper, before any thread exists.
pub(crate) fn reset_inherited_signals() {
    // SAFETY: sigaction(2) reads the current action into a zeroed struct;
    // signal(2) sets SIG_DFL for a valid signal number.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
    clear_signal_mask();
}

/// Empty this thread's signal mask (threads made later inherit it). A
/// parent may start rbuild with signals blocked (some CI runners and process
/// supervisors do): a blocked Ctrl-C or SIGTERM would stay pending forever
/// instead of cancelling the build, and the mask would reach the sandbox.
/// Go programs such as docker's CLI get the same from their runtime.
pub fn clear_signal_mask() {
    // SAFETY: sigemptyset fills a local set; pthread_sigmask only changes
    // this thread's mask and reads the set we pass.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Write end of the self-pipe the signal handler writes to.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The helper's pid: forked children (a runtime's processes before they
/// exec, which may have closed or reused the pipe's fd number) ignore the
/// signals they inherit the handler for.
static OWNER: AtomicI32 = AtomicI32::new(0);
/// Set once SIGTERM or SIGHUP arrived.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: getpid(2) and write(2) are async-signal-safe; errno is
    // thread-local and restored, so the interrupted code sees no change.
    unsafe {
        if libc::getpid() != OWNER.load(Ordering::SeqCst) {
            return;
        }
        let errno = libc::__errno_location();
        let saved = *errno;
        if sig == libc::SIGTERM || sig == libc::SIGHUP {
            STOP.store(true, Ordering::SeqCst);
        }
        let fd = WAKE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = 1u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *errno = saved;
    }
}

/// Signal handling of the helper process: a self-pipe woken by SIGCHLD,
/// SIGINT, SIGTERM and SIGHUP, the last two also requesting a stop.
/// Handlers run with `SA_RESTART`, so the runtime's own blocking calls are
/// not disturbed; they are reset to the default at `execve`, so the
/// sandboxed process never inherits them.
pub(crate) struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Signals {
    /// Install the handlers (once per process).
    pub(crate) fn install() -> io::Result<Signals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2(2) writes two fds into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds are fresh and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        OWNER.store(std::process::id() as libc::pid_t, Ordering::SeqCst);
        for sig in [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a zeroed sigaction is valid; the handler is an
            // `extern "C" fn(c_int)` that only does async-signal-safe work.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Signals {
            read,
            _write: write,
        })
    }

    /// Whether a stop (SIGTERM, SIGHUP: rbuild died) was requested.
    pub(crate) fn stop_requested(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// Wait until `done` returns a value, calling `on_stop` once if a stop
    /// is requested meanwhile (it must make `done` succeed eventually, e.g.
    /// by killing the awaited process). `done` must not block.
    pub(crate) fn wait_until<T>(
        &self,
        mut done: impl FnMut() -> io::Result<Option<T>>,
        mut on_stop: impl FnMut(),
    ) -> io::Result<T> {
        let mut stopped = false;
        loop {
            self.drain();
            if let Some(v) = done()? {
                return Ok(v);
            }
            if !stopped && self.stop_requested() {
                stopped = true;
                on_stop();
                continue;
            }
            let mut pfd = libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one pollfd we own. A signal that arrives
            // after `done` was checked has written to the pipe, so this
            // returns at once: no wake-up is lost.
            if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking reads into a local buffer until empty.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
    }
}

/// Reset `sig` to its default action and raise it: the helper ends the way
/// the process it supervised ended.
pub(crate) fn die_by(sig: libc::c_int) -> ! {
    // SAFETY: signal(2) and raise(3) with a valid signal number.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// Whether this process lost the parent it had at `start` (it is then an
/// orphan: the caller is gone and nobody will clean up after it).
pub(crate) fn orphaned(start_parent: libc::pid_t) -> bool {
    // SAFETY: getppid(2) has no preconditions.
    unsafe { libc::getppid() != start_parent }
}

/// The parent's pid now.
pub(crate) fn parent() -> libc::pid_t {
    // SAFETY: getppid(2) has no preconditions.
    unsafe { libc::getppid() }
}

/// The children of `pid` (all its threads'), from `/proc`; empty if the
/// kernel does not expose them.
pub(crate) fn children(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
