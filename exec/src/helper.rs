//! The re-executed helper process that supervises every sandbox.
//!
//! For the embedded runtime, `Executor` runs `<helper>
//! __rbuild-embedded-runtime run <root> <bundle> <id>`; the helper
//! (single-threaded, outside any async runtime) creates and starts the
//! container with `libcontainer`, waits for its init, deletes it, and writes
//! the exact wait status to `<bundle>/status` as JSON (`{"code":N}`,
//! `{"signal":N}` or `{"error":"…"}`). For an external runtime it runs
//! `<helper> __rbuild-embedded-runtime external <runtime> <root> <log>
//! <bundle> <id>`, which runs `<runtime> run` and ends as it ended.
//!
//! Either way the helper dies with its caller: if rbuild dies, even by
//! SIGKILL, the helper kills and deletes the container and removes the
//! bundle (see [`crate::supervise`]).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::bundle::Bundle;
use crate::output::pump;
use crate::supervise::die_with_parent;
use crate::{CancelToken, Error, ExitStatus, OutputChunk, Result};

/// Hidden first argument that turns a binary into the sandbox helper (see
/// [`maybe_run_embedded_helper`]; the name predates external runtimes).
pub const HELPER_ARG: &str = "__rbuild-embedded-runtime";

/// Exit code of the helper when it could not run the container.
pub(crate) const HELPER_FAILED: i32 = 125;

/// Call first thing in `main` of any binary used as the sandbox helper (the
/// `rbuild` binary; every runtime needs it). If the process was started as
/// the helper (first argument [`HELPER_ARG`]), this runs the requested
/// operation and exits; otherwise it returns and `main` goes on.
pub fn maybe_run_embedded_helper() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(HELPER_ARG) {
        return;
    }
    crate::supervise::reset_inherited_signals();
    let code = helper_main(&args[2..]);
    std::process::exit(code);
}

fn helper_main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("external") => crate::runc::supervise(&args[1..]),
        _ => embedded_main(args),
    }
}

#[cfg(feature = "embedded-runtime")]
fn embedded_main(args: &[String]) -> i32 {
    crate::embedded::helper_main(args)
}

#[cfg(not(feature = "embedded-runtime"))]
fn embedded_main(_args: &[String]) -> i32 {
    eprintln!("rbuild: the embedded runtime is not compiled in (feature `embedded-runtime`)");
    HELPER_FAILED
}

/// Deletes the container through the helper on every path out of [`run`].
struct DeleteGuard<'a> {
    helper: &'a Path,
    root: &'a Path,
    id: &'a str,
}

impl DeleteGuard<'_> {
    fn delete(&self) {
        let _ = Command::new(self.helper)
            .arg(HELPER_ARG)
            .arg("delete")
            .arg(self.root)
            .arg(self.id)
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

/// Run the bundle through the helper and wait for it.
pub(crate) fn run(
    helper: &Path,
    root: &Path,
    bundle: &Bundle,
    output: &mut dyn FnMut(OutputChunk),
    cancel: &CancelToken,
) -> Result<ExitStatus> {
    std::fs::create_dir_all(root).map_err(|e| Error::io("create runtime root", e))?;
    let guard = DeleteGuard {
        helper,
        root,
        id: &bundle.id,
    };
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_ARG)
        .arg("run")
        .arg(root)
        .arg(&bundle.dir)
        .arg(&bundle.id)
        .current_dir(&bundle.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawn embedded-runtime helper {helper:?}"), e))?;
    let pid = child.id() as libc::pid_t;
    let pumped = pump(&mut child, output, cancel, &mut || {
        // Kill the container first (the helper then reaps its init and
        // exits), then the helper itself in case it was still creating it.
        guard.delete();
        // SAFETY: kill(2) with our own child's pid; the child is not reaped
        // before `pump` returns, so the pid cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    });
    let pumped = match pumped {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    // The helper deletes the container itself when it exits normally; only
    // re-execute it to delete when its state is still there (it died).
    if root.join(&bundle.id).exists() {
        drop(guard);
    } else {
        std::mem::forget(guard);
    }
    if pumped.cancelled {
        return Err(Error::Cancelled);
    }
    read_status(&bundle.dir, pumped.status)
}

/// Read the helper's status file.
pub(crate) fn read_status(
    bundle: &Path,
    helper_status: std::process::ExitStatus,
) -> Result<ExitStatus> {
    let text = std::fs::read_to_string(bundle.join("status")).map_err(|_| Error::Runtime {
        message: format!(
            "embedded-runtime helper exited without a status ({})",
            match helper_status.signal() {
                Some(s) => format!("signal {s}"),
                None => format!("code {}", helper_status.code().unwrap_or(-1)),
            }
        ),
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Runtime {
        message: format!("bad helper status {text:?}: {e}"),
    })?;
    if let Some(c) = v["code"].as_i64() {
        return Ok(ExitStatus::Code(c as i32));
    }
    if let Some(s) = v["signal"].as_i64() {
        return Ok(ExitStatus::Signal(s as i32));
    }
    Err(Error::Runtime {
        message: v["error"]
            .as_str()
            .unwrap_or("unknown helper failure")
            .to_string(),
    })
}
