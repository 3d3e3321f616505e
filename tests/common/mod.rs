//! Helpers shared by the end-to-end tests: the rbuild binary with a private
//! state dir, the test registry, and real consumers (skopeo, podman).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The test registry (started by scripts/start-registry.sh).
pub fn registry() -> String {
    std::env::var("RBUILD_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// Fail with a useful message unless `tool` is on PATH.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/install-deps.sh (apt-get install -y {package})"
    );
}

/// Fail with a useful message unless the test registry has the base images.
pub fn require_registry() {
    let url = format!("http://{}/v2/library/busybox/manifests/latest", registry());
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json")
        .arg(&url)
        .output()
        .expect("run curl (apt-get install -y curl)");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        code,
        "200",
        "the test registry at {} has no busybox image: run scripts/start-registry.sh and scripts/make-base-images.sh",
        registry()
    );
}

/// Fail unless running as root (namespaces, overlayfs, runc).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test needs root (namespaces, overlayfs): run it as root, as CI does"
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An rbuild invocation with its own state dir.
pub struct Rbuild {
    /// The state dir (removed on drop).
    pub root: tempfile::TempDir,
}

impl Rbuild {
    /// A fresh state dir.
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("rbuild-test-")
            .tempdir_in(
                std::env::var_os("RBUILD_TEST_TMP")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir),
            )
            .expect("temp state dir");
        Self { root }
    }

    /// Run rbuild with `args` and return its output.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .current_dir(repo())
            .output()
            .expect("run rbuild")
    }

    /// Run and assert success, returning stderr (progress) as text.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "rbuild failed ({}):\n{stderr}",
            out.status
        );
        stderr
    }

    /// The state dir path.
    pub fn path(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Rbuild {
    fn drop(&mut self) {
        // Snapshots may still be mounted if a test failed midway.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l",
                self.root.path().display()
            ))
            .status();
    }
}

/// Run a command and return stdout, failing with its stderr.
pub fn cmd(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// podman with the flags this host needs (runc, cgroupfs, file events).
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .args(args)
        .output()
        .expect("run podman (apt-get install -y podman)")
}

/// Copy an example directory into a temp dir (so tests can modify it).
pub fn copy_example(name: &str) -> tempfile::TempDir {
    let dst = tempfile::tempdir().expect("tmp");
    let src = repo().join("examples").join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst.path())
        .status()
        .expect("cp");
    assert!(status.success());
    dst
}

/// Kills process `pid` with SIGKILL if it still runs `secs` seconds after
/// this was made and before it is dropped: a test that waits on a child it
/// signalled fails with what it saw instead of hanging the suite.
pub struct Watchdog {
    /// Dropping it wakes the watching thread, which then does nothing.
    _done: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    /// Watch `pid` for at most `secs` seconds.
    pub fn new(pid: u32, secs: u64) -> Watchdog {
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let limit = std::time::Duration::from_secs(secs);
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                eprintln!("watchdog: process {pid} still running after {secs} s, killing it");
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        Watchdog { _done: done }
    }
}
