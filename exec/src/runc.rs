//! The external runtime: `runc` (or a compatible binary) runs the bundle,
//! under the helper process (see [`crate::supervise`]): rbuild runs
//! `<helper> … external <runtime> <root> <log> <bundle> <id>`, the helper
//! runs `<runtime> run` and, should rbuild die, `<runtime> delete --force`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bundle::Bundle;
use crate::helper::{HELPER_ARG, HELPER_FAILED};
use crate::output::pump;
use crate::supervise::{self, die_with_parent, Signals};
use crate::{CancelToken, Error, ExitStatus, OutputChunk, Result};

/// Find `bin` (a path, or a name looked up in `PATH`).
pub(crate) fn resolve_binary(bin: &Path) -> Result<PathBuf> {
    let not_found = |reason: &str| Error::RuntimeNotFound {
        path: bin.to_path_buf(),
        reason: reason.to_string(),
    };
    let candidates: Vec<PathBuf> = if bin.components().count() > 1 || bin.is_absolute() {
        vec![bin.to_path_buf()]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        // Runtimes live in sbin, which a non-login PATH may lack.
        for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
            dirs.push(PathBuf::from(d));
        }
        dirs.into_iter().map(|d| d.join(bin)).collect()
    };
    for c in candidates {
        if let Ok(meta) = std::fs::metadata(&c) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(c);
            }
        }
    }
    Err(not_found("no executable file"))
}

/// Fail early if the runtime binary is missing.
pub(crate) fn check_binary(bin: &Path) -> Result<()> {
    resolve_binary(bin).map(|_| ())
}

/// Last error lines of runc's JSON log (its own failures, not the process's).
fn runtime_errors(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error") | Some("fatal")))
        .filter_map(|v| v["msg"].as_str().map(String::from))
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

/// Map runc's exit code: it reports a process killed by signal N as 128+N.
fn exit_status_from_code(code: i32) -> ExitStatus {
    if (129..=128 + 64).contains(&code) {
        ExitStatus::Signal(code - 128)
    } else {
        ExitStatus::Code(code)
    }
}

/// Deletes the container on every path out of [`run`].
struct DeleteGuard<'a> {
    bin: &'a Path,
    root: &'a Path,
    id: &'a str,
}

impl DeleteGuard<'_> {
    fn delete(&self) {
        // `delete --force` kills the init (and so the pid namespace) first.
        let _ = Command::new(self.bin)
            .arg("--root")
            .arg(self.root)
            .args(["delete", "--force", self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for DeleteGuard<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `bin run` for the bundle, with runc's state under `root` and its own
/// diagnostics (JSON) in `log`.
fn run_command(bin: &Path, root: &Path, log: &Path, bundle: &Path, id: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(root)
        .arg("--log")
        .arg(log)
        .args(["--log-format", "json"])
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .current_dir(bundle);
    cmd
}

/// Run the bundle with `bin` (through `helper`) and wait for it.
pub(crate) fn run(
    helper: &Path,
    bin: &Path,
    root: &Path,
    bundle: &Bundle,
    output: &mut dyn FnMut(OutputChunk),
    cancel: &CancelToken,
) -> Result<ExitStatus> {
    let bin = resolve_binary(bin)?;
    std::fs::create_dir_all(root).map_err(|e| Error::io("create runtime root", e))?;
    let log = bundle.dir.join("runtime.log");
    let guard = DeleteGuard {
        bin: &bin,
        root,
        id: &bundle.id,
    };
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_ARG)
        .arg("external")
        .arg(&bin)
        .arg(root)
        .arg(&log)
        .arg(&bundle.dir)
        .arg(&bundle.id)
        .current_dir(&bundle.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawn sandbox helper {helper:?} for {bin:?}"), e))?;
    let pumped = pump(&mut child, output, cancel, &mut || guard.delete());
    let pumped = match pumped {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    drop(guard);
    if pumped.cancelled {
        return Err(Error::Cancelled);
    }
    if let Some(sig) = pumped.status.signal() {
        return Err(Error::Runtime {
            message: format!("{bin:?} was killed by signal {sig}"),
        });
    }
    let code = pumped.status.code().unwrap_or(-1);
    if code != 0 {
        if let Some(msg) = runtime_errors(&log) {
            return Err(Error::Runtime { message: msg });
        }
    }
    Ok(exit_status_from_code(code))
}

/// The helper side: `<runtime> <root> <log> <bundle> <id>`. Runs the
/// runtime with the helper's stdio and ends as it ended; if the caller dies
/// meanwhile, force-deletes the container (killing its pid namespace) and
/// removes the bundle. Returns the helper's exit code.
pub(crate) fn supervise(args: &[String]) -> i32 {
    let [bin, root, log, bundle, id] = args else {
        eprintln!("rbuild sandbox helper: usage: external RUNTIME ROOT LOG BUNDLE ID");
        return HELPER_FAILED;
    };
    let (bin, root, log, bundle) = (
        Path::new(bin),
        Path::new(root),
        Path::new(log),
        Path::new(bundle),
    );
    // The caller reads failures from the runtime's log: report ours there.
    let fail = |msg: String| {
        let line = serde_json::json!({ "level": "error", "msg": msg });
        let _ = std::fs::write(log, format!("{line}\n"));
        HELPER_FAILED
    };
    let start_parent = supervise::parent();
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(format!("sandbox helper: signal handlers: {e}")),
    };
    let mut child = match run_command(bin, root, log, bundle, id)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("sandbox helper: spawn {bin:?}: {e}")),
    };
    let guard = DeleteGuard { bin, root, id };
    let runtime_pid = child.id() as libc::pid_t;
    let stop = || {
        guard.delete();
        // Should runc's state be unusable, the kernel still knows: the
        // container's init is a child of `runc run` (runc clones it with
        // CLONE_PARENT) and pid 1 of the sandbox's pid namespace.
        for pid in supervise::children(runtime_pid) {
            // SAFETY: kill(2). runc could reap one of these between the read
            // and the kill; a pid reused within that window is not a
            // practical concern (pids are allocated cyclically).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: kill(2) of our own unreaped child.
        unsafe { libc::kill(runtime_pid, libc::SIGKILL) };
    };
    let status = signals.wait_until(|| child.try_wait(), stop);
    if supervise::orphaned(start_parent) {
        // Nobody is left to clean up: the container, then the bundle (it
        // may hold copies of secrets).
        guard.delete();
        let _ = crate::bundle::remove_bundle_dir(bundle);
    }
    std::mem::forget(guard);
    match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => supervise::die_by(sig),
            (None, None) => HELPER_FAILED,
        },
        Err(e) => {
            let _ = child.kill();
            fail(format!("sandbox helper: wait for {bin:?}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_codes() {
        assert_eq!(exit_status_from_code(0), ExitStatus::Code(0));
        assert_eq!(exit_status_from_code(3), ExitStatus::Code(3));
        assert_eq!(exit_status_from_code(137), ExitStatus::Signal(9));
        assert_eq!(exit_status_from_code(128), ExitStatus::Code(128));
        assert_eq!(exit_status_from_code(255), ExitStatus::Code(255));
    }

    #[test]
    fn missing_binary_is_reported() {
        let err = resolve_binary(Path::new("definitely-not-a-runtime")).err();
        assert!(matches!(err, Some(Error::RuntimeNotFound { .. })));
    }
}
