//! The external runtime: `runc` (or a compatible binary) runs the bundle.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bundle::Bundle;
use crate::output::pump;
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

/// Run the bundle with `bin` and wait for it.
pub(crate) fn run(
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
    let mut child = Command::new(&bin)
        .arg("--root")
        .arg(root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json"])
        .arg("run")
        .arg("--bundle")
        .arg(&bundle.dir)
        .arg(&bundle.id)
        .current_dir(&bundle.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("spawn {bin:?}"), e))?;
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
