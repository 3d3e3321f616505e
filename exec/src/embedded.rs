//! The embedded runtime (youki's `libcontainer`), run inside the
//! re-executed helper process (see [`crate::helper`]).
//!
//! The helper is single-threaded, so forking inside `libcontainer` is safe.
//! The container's init is cloned as a sibling of libcontainer's
//! intermediate process, i.e. as a child of the helper, so the helper gets
//! its exact wait status (`Signal(9)` is not confused with `exit 137`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{
    Linux, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompArgBuilder, LinuxSeccompOperator, Spec,
};

use crate::helper::HELPER_FAILED;
use crate::supervise::{self, Signals};
use crate::ExitStatus;

/// Entry point of the helper: `run <root> <bundle> <id>` or
/// `delete <root> <id>`. Returns the helper's exit code.
pub(crate) fn helper_main(args: &[String]) -> i32 {
    match (args.first().map(String::as_str), args.len()) {
        (Some("run"), 4) => run(Path::new(&args[1]), Path::new(&args[2]), &args[3]),
        (Some("delete"), 3) => {
            delete(Path::new(&args[1]), &args[2]);
            0
        }
        _ => {
            eprintln!("rbuild embedded runtime: usage: run ROOT BUNDLE ID | delete ROOT ID");
            HELPER_FAILED
        }
    }
}

fn run(root: &Path, bundle: &Path, id: &str) -> i32 {
    let start_parent = supervise::parent();
    let result = Signals::install()
        .map_err(|e| format!("signal handlers: {e}"))
        .and_then(|signals| run_container(root, bundle, id, &signals));
    if supervise::orphaned(start_parent) {
        // The caller died: the container is gone (the guard deleted it);
        // remove the bundle too, it may hold copies of secrets.
        let _ = crate::bundle::remove_bundle_dir(bundle);
        return 0;
    }
    let status = match result {
        Ok(ExitStatus::Code(c)) => serde_json::json!({ "code": c }),
        Ok(ExitStatus::Signal(s)) => serde_json::json!({ "signal": s }),
        Err(e) => serde_json::json!({ "error": e }),
    };
    match std::fs::write(bundle.join("status"), status.to_string()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rbuild embedded runtime: write status: {e}");
            HELPER_FAILED
        }
    }
}

/// Force-delete a container if it exists: kill its processes, wait until
/// its init is dead (bounded), and remove its state.
fn delete(root: &Path, id: &str) {
    let dir = root.join(id);
    if !dir.exists() {
        return;
    }
    if let Ok(mut c) = Container::load(dir.clone()) {
        let pid = c.pid().map(|p| p.as_raw());
        let _ = c.delete(true);
        if let Some(pid) = pid {
            wait_dead(pid);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait (up to 10 s) until `pid` is gone or a zombie. An init becomes a
/// zombie only after every other process of its pid namespace has exited.
fn wait_dead(pid: libc::pid_t) {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(text) = std::fs::read_to_string(&stat) else {
            return;
        };
        // The state follows the parenthesised command name.
        let state = text
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z") | Some("X") | None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Deletes the container on every path out of [`run_container`].
struct Guard<'a> {
    root: &'a Path,
    id: &'a str,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        delete(self.root, self.id);
    }
}

fn run_container(
    root: &Path,
    bundle: &Path,
    id: &str,
    signals: &Signals,
) -> Result<ExitStatus, String> {
    adapt_spec(bundle)?;
    std::fs::create_dir_all(root).map_err(|e| format!("create state root: {e}"))?;
    let _guard = Guard { root, id };
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(PathBuf::from(root))
        .map_err(|e| format!("state root: {e}"))?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(false)
        .build()
        .map_err(|e| format!("create container: {e}"))?;
    if signals.stop_requested() {
        return Err("stopped: the caller exited".to_string());
    }
    container
        .start()
        .map_err(|e| format!("start container: {e}"))?;
    let pid = container
        .pid()
        .ok_or_else(|| "container has no init pid".to_string())?;
    wait(pid.as_raw(), signals)
}

/// Wait for the container's init (a child of this helper). On a stop
/// request, kill it: it is pid 1 of the sandbox's pid namespace, so every
/// process in the sandbox dies with it.
fn wait(pid: libc::pid_t, signals: &Signals) -> Result<ExitStatus, String> {
    let reaped = || {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid(2) with a valid pointer to a local c_int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if r != pid {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(ExitStatus::Code(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(ExitStatus::Signal(libc::WTERMSIG(status))));
        }
        Ok(None)
    };
    let kill = || {
        // SAFETY: kill(2) of our own unreaped child: the pid cannot have
        // been reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    };
    signals
        .wait_until(reaped, kill)
        .map_err(|e| format!("wait for container init: {e}"))
}

/// Adapt the bundle's spec to `libcontainer`'s reading of it, in place:
/// the network namespace (see [`take_network_namespace`]) and masked
/// seccomp comparisons (see [`swap_masked_eq`]).
fn adapt_spec(bundle: &Path) -> Result<(), String> {
    let config = bundle.join("config.json");
    let mut spec = Spec::load(&config).map_err(|e| format!("load spec: {e}"))?;
    let Some(linux) = spec.linux_mut() else {
        return Ok(());
    };
    let network = take_network_namespace(linux);
    let seccomp = linux.seccomp_mut().as_mut().is_some_and(swap_masked_eq);
    if network {
        // SAFETY: only CLONE_NEWNET, which changes no memory or fd state the
        // Rust runtime relies on; the helper is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .map_err(|e| format!("unshare network namespace: {e}"))?;
        loopback_up().map_err(|e| format!("bring lo up: {e}"))?;
    }
    if network || seccomp {
        spec.save(&config).map_err(|e| format!("save spec: {e}"))?;
    }
    Ok(())
}

/// `libcontainer` does not bring `lo` up in a new network namespace (runc
/// does). So the helper enters a fresh network namespace itself, brings `lo`
/// up, and lets the container inherit it: the namespace entry is dropped
/// from the spec. Returns whether there was one.
fn take_network_namespace(linux: &mut Linux) -> bool {
    let Some(namespaces) = linux.namespaces_mut() else {
        return false;
    };
    let before = namespaces.len();
    namespaces.retain(|ns| !(ns.typ() == LinuxNamespaceType::Network && ns.path().is_none()));
    namespaces.len() != before
}

/// For `SCMP_CMP_MASKED_EQ`, runc and crun take `value` as the mask and
/// `valueTwo` as the expected value (Docker's profiles are written so);
/// `libcontainer` 0.7 reads them the other way round, which turns Docker's
/// "clone without namespace flags" rule into "clone with any flags". Swap
/// them so both runtimes enforce the same filter. Returns whether any
/// argument changed.
pub(crate) fn swap_masked_eq(seccomp: &mut LinuxSeccomp) -> bool {
    let Some(mut syscalls) = seccomp.syscalls().clone() else {
        return false;
    };
    let mut changed = false;
    for syscall in &mut syscalls {
        let Some(mut args) = syscall.args().clone() else {
            continue;
        };
        for arg in &mut args {
            if arg.op() != LinuxSeccompOperator::ScmpCmpMaskedEq {
                continue;
            }
            let swapped = LinuxSeccompArgBuilder::default()
                .index(arg.index())
                .value(arg.value_two().unwrap_or(0))
                .value_two(arg.value())
                .op(arg.op())
                .build();
            if let Ok(swapped) = swapped {
                *arg = swapped;
                changed = true;
            }
        }
        syscall.set_args(Some(args));
    }
    seccomp.set_syscalls(Some(syscalls));
    changed
}

fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is the active one.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    #[test]
    fn masked_eq_is_swapped_for_libcontainer() {
        let arg = |op, value: u64, value_two: u64| {
            LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(value)
                .value_two(value_two)
                .op(op)
                .build()
                .expect("arg")
        };
        let rule = LinuxSyscallBuilder::default()
            .names(vec!["clone".to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![
                arg(LinuxSeccompOperator::ScmpCmpMaskedEq, 0x7E02_0000u64, 0),
                arg(LinuxSeccompOperator::ScmpCmpEq, 8u64, 0),
            ])
            .build()
            .expect("rule");
        let mut seccomp = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![rule])
            .build()
            .expect("seccomp");
        assert!(swap_masked_eq(&mut seccomp));
        let args = seccomp.syscalls().as_ref().expect("syscalls")[0]
            .args()
            .clone()
            .expect("args");
        assert_eq!(
            (args[0].value(), args[0].value_two()),
            (0, Some(0x7E02_0000))
        );
        assert_eq!((args[1].value(), args[1].value_two()), (8, Some(0)));
    }
}
