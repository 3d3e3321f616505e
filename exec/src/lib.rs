//! rbuild-exec: run one process in a sandbox from an OCI runtime-spec bundle.
//!
//! Every `RUN` becomes an OCI runtime-spec bundle (a `config.json` built with
//! `oci-spec` in a fresh directory under the executor's state dir) and is run
//! by one of two runtimes:
//!
//! - [`Runtime::Embedded`]: youki's `libcontainer` (cargo feature
//!   `embedded-runtime`), run in a *re-executed, single-threaded helper
//!   process* — never inside the caller's (async, multi-threaded) process,
//!   because container creation forks and changes process-wide state.
//! - [`Runtime::External`]: an OCI runtime binary such as `runc`, run by the
//!   same helper as `runc --root <state>/runc run --bundle <dir> <id>`.
//!
//! The helper is the caller's own binary re-executed (or the one given to
//! [`Executor::with_helper`]): it must call [`maybe_run_embedded_helper`]
//! first thing in `main`, whichever runtime is used. It dies with the
//! caller: if the caller dies, even by SIGKILL, the helper kills the
//! sandbox's pid namespace and removes the bundle.
//!
//! Key types: [`Executor`], [`RunRequest`], [`ProcessSpec`], [`ExecMount`],
//! [`ExitStatus`], [`OutputChunk`].
//!
//! # Invariants
//!
//! - The rootfs only changes by what the process does (plus the working
//!   directory, created root-owned if missing, as BuildKit does).
//!   `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` are bind-mounted
//!   from the bundle dir; mount points the executor had to create in the
//!   rootfs are removed after the run and their parent directories get their
//!   timestamps back, so the caller's diff of the upper dir sees nothing.
//! - No container, process or host mount outlives [`Executor::run`], on
//!   success, failure, cancellation or panic: the container is force-deleted
//!   on every path (a drop guard) and the bundle dir is removed. No sandboxed
//!   process outlives the calling process either, even killed by SIGKILL.
//! - A non-zero exit is an [`ExitStatus`], never an [`Error`].
//! - This crate never prints; output goes to the caller's callback.
//!
//! # Design choice and its cost
//!
//! One code path (a bundle) for both runtimes means one conformance suite
//! and a `--runtime runc` escape hatch; the cost is a `config.json`
//! round-trip and a fork/exec of a helper per run (a few ms).
//!
//! # Confinement
//!
//! Docker's default capabilities, runc's masked and read-only paths, a
//! device cgroup and Docker's default seccomp profile (see `seccomp.rs`:
//! `EPERM` for everything not allowed, `mount`/`unshare`/`setns` and other
//! namespace calls only with `CAP_SYS_ADMIN`). `--security=insecure` lifts
//! all four, as BuildKit does. runc applies the profile with its own
//! libseccomp; the embedded runtime needs `libcontainer`'s `libseccomp`
//! feature, so the cargo feature `embedded-runtime` links the C library
//! (Debian: `libseccomp-dev` to build, `libseccomp2` to run) and never runs
//! a sandbox without the filter. `libcontainer` 0.7 reads masked argument
//! comparisons the other way round from runc; the helper rewrites them so
//! both runtimes enforce the same filter.
//!
//! libseccomp compiles the filter in the container's init on every run
//! (neither runtime caches it); that is most of what seccomp adds per run.

mod bundle;
#[cfg(feature = "embedded-runtime")]
mod embedded;
mod error;
mod helper;
mod limits;
mod output;
mod rootfs;
mod runc;
mod seccomp;
mod spec;
mod supervise;
mod user;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use bundle::SecretBytes;
pub use error::{Error, Result};
pub use helper::{maybe_run_embedded_helper, HELPER_ARG};
pub use limits::{parse_size, Rlimit};
pub use supervise::clear_signal_mask;
pub use user::{resolve_user, ResolvedUser};

/// The process to run inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// argv; the first element is looked up in `PATH` inside the rootfs.
    pub args: Vec<String>,
    /// Environment as `KEY=VALUE`; a default `PATH` is added if missing.
    pub env: Vec<String>,
    /// Working directory (absolute; created root-owned if missing). Empty
    /// means `/`.
    pub cwd: String,
    /// `""`, `name`, `uid`, `uid:gid`, `name:group` (resolved from the
    /// rootfs's `/etc/passwd` and `/etc/group`).
    pub user: String,
    /// Resource limits (`--ulimit`); none: the runtime's own limits.
    pub rlimits: Vec<Rlimit>,
}

/// A mount into the sandbox, in addition to the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecMount {
    /// Bind-mount a host path (a snapshot, a cache dir, a context).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Absolute path inside the sandbox.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path inside the sandbox.
        target: String,
        /// Size limit in bytes (kernel default if `None`).
        size: Option<u64>,
    },
    /// A secret file with the given mode and owner, bind-mounted
    /// read-only. Its bytes go from memory to a tmpfs private to the run
    /// (never to a disk, never to the rootfs), removed after the run.
    Secret {
        /// The secret's bytes.
        data: SecretBytes,
        /// Absolute path inside the sandbox.
        target: String,
        /// Permission bits (e.g. `0o400`).
        mode: u32,
        /// Owner uid inside the sandbox.
        uid: u32,
        /// Owner gid inside the sandbox.
        gid: u32,
    },
    /// A unix socket (e.g. an SSH agent) bind-mounted into the sandbox.
    Socket {
        /// Host path of the socket.
        source: PathBuf,
        /// Absolute path inside the sandbox.
        target: String,
    },
}

impl ExecMount {
    /// The absolute path inside the sandbox.
    pub fn target(&self) -> &str {
        match self {
            ExecMount::Bind { target, .. }
            | ExecMount::Tmpfs { target, .. }
            | ExecMount::Secret { target, .. }
            | ExecMount::Socket { target, .. } => target,
        }
    }
}

/// Network mode of the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// Share the host's network namespace (BuildKit's default for RUN).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// Everything needed for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Already-mounted writable root (the caller prepared the overlay).
    pub rootfs: PathBuf,
    /// The process to run.
    pub process: ProcessSpec,
    /// Extra mounts, applied after the defaults, shallowest first.
    pub mounts: Vec<ExecMount>,
    /// Network mode.
    pub network: Network,
    /// `--security=insecure`: all capabilities, no masked or read-only
    /// paths, all devices allowed.
    pub insecure: bool,
    /// Hostname inside the sandbox (`buildkitsandbox` by default).
    pub hostname: String,
    /// Extra `/etc/hosts` entries as `(name, ip)`.
    pub extra_hosts: Vec<(String, String)>,
}

/// BuildKit's hostname for RUN sandboxes.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

impl RunRequest {
    /// A request with defaults (host network, default hostname, no mounts).
    pub fn new(rootfs: impl Into<PathBuf>, process: ProcessSpec) -> Self {
        RunRequest {
            rootfs: rootfs.into(),
            process,
            mounts: Vec::new(),
            network: Network::Host,
            insecure: false,
            hostname: DEFAULT_HOSTNAME.to_string(),
            extra_hosts: Vec::new(),
        }
    }
}

/// Which OCI runtime runs the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// youki's `libcontainer` in a re-executed helper process.
    Embedded,
    /// An external OCI runtime binary (`runc`, `crun`, or a path).
    External(PathBuf),
}

/// How the process ended. A non-zero code is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// True for `Code(0)`.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code: {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// The process's stderr (also runtime diagnostics).
    Stderr,
}

/// A piece of output, delivered as it arrives (not line-buffered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Which stream.
    pub stream: Stream,
    /// The bytes read.
    pub data: Vec<u8>,
}

/// A handle that cancels a running [`Executor::run_cancellable`] from
/// another thread: the container is killed and deleted, and the run returns
/// [`Error::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Request cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Remove bundle directories under an executor's `state_dir` that belong to
/// processes which no longer exist (a caller and its helper both killed
/// outright); they may hold copies of secrets. Returns how many went.
pub fn remove_stale_bundles(state_dir: &Path) -> Result<usize> {
    let dir = state_dir.join("bundles");
    let entries = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("read {dir:?}"), e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Bundle ids are `rbuild-<pid>-<n>-<nanos>`.
        let pid = name
            .strip_prefix("rbuild-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        bundle::remove_bundle_dir(&entry.path())
            .map_err(|e| Error::io(format!("remove {:?}", entry.path()), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Runs [`RunRequest`]s with one runtime. Cheap to share between threads.
#[derive(Debug)]
pub struct Executor {
    runtime: Runtime,
    state_dir: PathBuf,
    helper: PathBuf,
    host_resolv_conf: PathBuf,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Executor {
    /// An executor keeping bundles and runtime state under `state_dir`
    /// (created if missing). For [`Runtime::Embedded`] the helper is
    /// `std::env::current_exe()`; see [`Executor::with_helper`].
    pub fn new(runtime: Runtime, state_dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&state_dir).map_err(|e| Error::io("create state dir", e))?;
        let state_dir = std::fs::canonicalize(&state_dir)
            .map_err(|e| Error::io("canonicalize state dir", e))?;
        if let Runtime::External(bin) = &runtime {
            runc::check_binary(bin)?;
        }
        #[cfg(not(feature = "embedded-runtime"))]
        if runtime == Runtime::Embedded {
            return Err(Error::EmbeddedUnavailable);
        }
        let helper =
            std::env::current_exe().map_err(|e| Error::io("locate current executable", e))?;
        Ok(Executor {
            runtime,
            state_dir,
            helper,
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
        })
    }

    /// Use `helper` (a binary that calls [`maybe_run_embedded_helper`]
    /// first thing) instead of the current executable for the embedded
    /// runtime.
    pub fn with_helper(mut self, helper: PathBuf) -> Self {
        self.helper = helper;
        self
    }

    /// Read the host resolver configuration from `path` instead of the
    /// system default.
    pub fn with_host_resolv_conf(mut self, path: PathBuf) -> Self {
        self.host_resolv_conf = path;
        self
    }

    /// The runtime this executor uses.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Run the request to completion, streaming output to `output`.
    /// Synchronous: call it from a blocking thread.
    pub fn run(&self, req: &RunRequest, output: &mut dyn FnMut(OutputChunk)) -> Result<ExitStatus> {
        self.run_cancellable(req, output, &CancelToken::new())
    }

    /// Like [`Executor::run`], but stops (killing and deleting the
    /// container) when `cancel` is triggered.
    pub fn run_cancellable(
        &self,
        req: &RunRequest,
        output: &mut dyn FnMut(OutputChunk),
        cancel: &CancelToken,
    ) -> Result<ExitStatus> {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("rbuild-{}-{n}-{nanos:08x}", std::process::id());
        let bundles = self.state_dir.join("bundles");
        let prepared = bundle::Bundle::prepare(&bundles, &id, req, &self.host_resolv_conf)?;
        let result = match &self.runtime {
            Runtime::External(bin) => runc::run(
                &self.helper,
                bin,
                &self.state_dir.join("runc"),
                &prepared,
                output,
                cancel,
            ),
            Runtime::Embedded => helper::run(
                &self.helper,
                &self.state_dir.join("embedded"),
                &prepared,
                output,
                cancel,
            ),
        };
        let cleanup = prepared.finish();
        let status = result?;
        cleanup?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_bundles_of_dead_processes_are_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let bundles = tmp.path().join("bundles");
        // Above the kernel's largest pid_max: no such process can exist.
        let dead = bundles.join("rbuild-4194305-0-00000000");
        let live = bundles.join(format!("rbuild-{}-0-00000000", std::process::id()));
        let other = bundles.join("not-a-bundle");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d.join("secrets")).expect("mkdir");
        }
        assert_eq!(remove_stale_bundles(tmp.path()).expect("remove"), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
        assert_eq!(
            remove_stale_bundles(&tmp.path().join("none")).expect("none"),
            0
        );
    }
}
