//! Shared helpers for the executor tests: a busybox rootfs, executors for
//! each runtime, and a rootfs tree snapshot for "nothing left behind" checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_exec::{Executor, ExitStatus, OutputChunk, ProcessSpec, RunRequest, Runtime, Stream};

/// Applets linked in the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "ls", "ps", "id", "hostname", "cat", "true", "false", "echo", "sleep", "kill", "grep",
    "env", "pwd", "stat", "touch", "wc", "mkdir", "ip", "head", "tr", "unshare",
];

/// Fail (never skip) when the environment cannot run containers.
pub fn require_privileges() {
    assert!(
        rustix::process::geteuid().is_root(),
        "executor tests need root (namespaces, mounts): run them as root, as CI does"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "executor tests need a static busybox: `apt-get install busybox-static` or run scripts/install-deps.sh"
    );
}

/// Find the runc binary or fail with what to install.
pub fn runc_path() -> PathBuf {
    for p in [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("runc not found: `apt-get install runc` or run scripts/install-deps.sh");
}

/// A temporary busybox rootfs and state dir.
pub struct Env {
    /// Holds everything.
    pub tmp: tempfile::TempDir,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// The executor's state dir.
    pub state: PathBuf,
}

impl Env {
    /// A busybox rootfs without /proc, /dev, /sys or /etc/hosts (so the
    /// executor must create and remove mount points).
    pub fn new() -> Env {
        require_privileges();
        let tmp = tempfile::tempdir().expect("tempdir");
        let rootfs = tmp.path().join("rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(a)).expect("symlink applet");
        }
        let etc = rootfs.join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir etc");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            etc.join("group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app\n",
        )
        .expect("group");
        std::fs::create_dir_all(rootfs.join("tmp")).expect("mkdir tmp");
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");
        let state = tmp.path().join("state");
        Env { tmp, rootfs, state }
    }

    /// An executor for `runtime` (both run under the sandbox helper).
    pub fn executor(&self, runtime: &Rt) -> Executor {
        let exec = match runtime {
            Rt::Runc => Executor::new(Runtime::External(runc_path()), self.state.clone())
                .expect("runc executor"),
            Rt::Embedded => {
                Executor::new(Runtime::Embedded, self.state.clone()).expect("embedded executor")
            }
        };
        exec.with_helper(PathBuf::from(env!("CARGO_BIN_EXE_rbuild-exec-helper")))
    }

    /// A request running `args` (as given) in this rootfs.
    pub fn req(&self, args: &[&str]) -> RunRequest {
        RunRequest::new(
            &self.rootfs,
            ProcessSpec {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                rlimits: vec![],
            },
        )
    }

    /// A request running `sh -c script`.
    pub fn sh(&self, script: &str) -> RunRequest {
        self.req(&["sh", "-c", script])
    }
}

/// The runtimes under test.
#[derive(Debug, Clone, Copy)]
pub enum Rt {
    /// runc through the bundle.
    Runc,
    /// libcontainer in the helper.
    Embedded,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status.
    pub status: ExitStatus,
    /// All stdout.
    pub stdout: String,
    /// All stderr.
    pub stderr: String,
}

/// Run and collect output; panics with the output on executor errors.
pub fn run(exec: &Executor, req: &RunRequest) -> Outcome {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let res = exec.run(req, &mut |c: OutputChunk| match c.stream {
        Stream::Stdout => stdout.extend_from_slice(&c.data),
        Stream::Stderr => stderr.extend_from_slice(&c.data),
    });
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match res {
        Ok(status) => Outcome {
            status,
            stdout,
            stderr,
        },
        Err(e) => panic!(
            "run {:?} failed: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            req.process.args
        ),
    }
}

/// Run, expect exit 0, return stdout.
pub fn run_ok(exec: &Executor, req: &RunRequest) -> String {
    let o = run(exec, req);
    assert_eq!(
        o.status,
        ExitStatus::Code(0),
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        req.process.args,
        o.stdout,
        o.stderr
    );
    o.stdout
}

/// Path → (mode, uid, gid, size, mtime, link target) for every entry.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            let link = std::fs::read_link(&p)
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} size={} mtime={}.{} {link}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if m.is_dir() { 0 } else { m.size() },
                    m.mtime(),
                    m.mtime_nsec()
                ),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Readable difference of two trees.
pub fn tree_diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in before {
        match after.get(k) {
            None => s.push_str(&format!("- {k} {v}\n")),
            Some(w) if w != v => s.push_str(&format!("~ {k}: {v} -> {w}\n")),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            s.push_str(&format!("+ {k} {v}\n"));
        }
    }
    s
}

/// Host mount table without the per-mount ids that may differ.
pub fn mountinfo() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut v: Vec<String> = text.lines().map(String::from).collect();
    v.sort();
    v
}

/// Host pids whose command line is exactly `args`.
pub fn host_pids_with_cmdline(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want) {
            pids.push(pid);
        }
    }
    pids
}
