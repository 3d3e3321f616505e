//! Docker's default seccomp profile, as Rust data, turned into the
//! runtime spec's `linux.seccomp` section for a given capability set.
//!
//! The table follows moby's `profiles/seccomp/default.json`: every syscall
//! not allowed fails with `EPERM`; a few rules depend on the granted
//! capabilities (e.g. `mount` and `unshare` only with `CAP_SYS_ADMIN`), on
//! the architecture or on the kernel version. Only the rules that can apply
//! on x86_64 and aarch64 are kept (the ppc64le, s390x and riscv64 ones are
//! left out); on other architectures no profile is produced.
//!
//! Syscall names the runtime's libseccomp does not know are skipped by the
//! runtime (runc and libcontainer both do), so newer names are harmless on
//! older hosts.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::{Error, Result};

/// `errno` of the default action: `EPERM`, as in Docker's profile.
pub(crate) const DEFAULT_ERRNO: u32 = 1;

/// `errno` for `clone3` without `CAP_SYS_ADMIN`: `ENOSYS`, so libc falls
/// back to `clone`, whose flags the profile can inspect.
const ENOSYS: u32 = 38;

/// Namespace flags of `clone` (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS
/// | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`): without
/// `CAP_SYS_ADMIN`, `clone` is allowed only when none is set.
pub(crate) const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// What a rule does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Errno(u32),
}

/// A comparison of one syscall argument: `(index, op, value)`, where for
/// `MaskedEq` the value is the mask and the argument must be `0` under it.
type Arg = (usize, LinuxSeccompOperator, u64);

/// Conditions on the host (`includes`) or exclusions (`excludes`).
#[derive(Debug, Clone, Copy)]
struct Cond {
    /// Capabilities (without `CAP_`): all must be granted for `includes`;
    /// any granted one excludes the rule for `excludes`.
    caps: &'static [&'static str],
    /// Architectures in Go's naming (`amd64`, `arm64`, `x86`, `x32`, `arm`).
    arches: &'static [&'static str],
    /// Minimum kernel `(major, minor)`.
    min_kernel: Option<(u32, u32)>,
}

const ANY: Cond = Cond {
    caps: &[],
    arches: &[],
    min_kernel: None,
};

/// One entry of the profile.
#[derive(Debug, Clone, Copy)]
struct Rule {
    names: &'static [&'static str],
    action: Action,
    args: &'static [Arg],
    includes: Cond,
    excludes: Cond,
}

const fn allow(names: &'static [&'static str]) -> Rule {
    Rule {
        names,
        action: Action::Allow,
        args: &[],
        includes: ANY,
        excludes: ANY,
    }
}

const fn allow_with_cap(cap: &'static [&'static str], names: &'static [&'static str]) -> Rule {
    Rule {
        includes: Cond {
            caps: cap,
            arches: &[],
            min_kernel: None,
        },
        ..allow(names)
    }
}

const fn allow_on(arches: &'static [&'static str], names: &'static [&'static str]) -> Rule {
    Rule {
        includes: Cond {
            caps: &[],
            arches,
            min_kernel: None,
        },
        ..allow(names)
    }
}

const fn allow_args(name: &'static [&'static str], args: &'static [Arg]) -> Rule {
    Rule {
        args,
        ..allow(name)
    }
}

use LinuxSeccompOperator::{ScmpCmpEq as EQ, ScmpCmpMaskedEq as MASKED_EQ, ScmpCmpNe as NE};

/// Syscalls allowed unconditionally.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The profile, in moby's order.
const RULES: &[Rule] = &[
    allow(ALLOWED),
    Rule {
        includes: Cond {
            caps: &[],
            arches: &[],
            min_kernel: Some((4, 8)),
        },
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    },
    // Every socket family but AF_VSOCK (40).
    allow_args(&["socket"], &[(0, NE, 40)]),
    // personality(2) only for the usual personas (PER_LINUX, PER_LINUX32,
    // UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff).
    allow_args(&["personality"], &[(0, EQ, 0)]),
    allow_args(&["personality"], &[(0, EQ, 8)]),
    allow_args(&["personality"], &[(0, EQ, 131_072)]),
    allow_args(&["personality"], &[(0, EQ, 131_080)]),
    allow_args(&["personality"], &[(0, EQ, 4_294_967_295)]),
    allow_on(
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    allow_on(&["amd64", "x32"], &["arch_prctl"]),
    allow_on(&["amd64", "x32", "x86"], &["modify_ldt"]),
    allow_with_cap(&["DAC_READ_SEARCH"], &["open_by_handle_at"]),
    allow_with_cap(
        &["SYS_ADMIN"],
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    Rule {
        args: &[(0, MASKED_EQ, CLONE_NAMESPACE_FLAGS)],
        excludes: Cond {
            caps: &["SYS_ADMIN"],
            arches: &["s390", "s390x"],
            min_kernel: None,
        },
        ..allow(&["clone"])
    },
    Rule {
        action: Action::Errno(ENOSYS),
        excludes: Cond {
            caps: &["SYS_ADMIN"],
            arches: &[],
            min_kernel: None,
        },
        ..allow(&["clone3"])
    },
    allow_with_cap(&["SYS_BOOT"], &["reboot"]),
    allow_with_cap(&["SYS_CHROOT"], &["chroot"]),
    allow_with_cap(
        &["SYS_MODULE"],
        &["delete_module", "init_module", "finit_module"],
    ),
    allow_with_cap(&["SYS_PACCT"], &["acct"]),
    allow_with_cap(
        &["SYS_PTRACE"],
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    allow_with_cap(&["SYS_RAWIO"], &["iopl", "ioperm"]),
    allow_with_cap(
        &["SYS_TIME"],
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    allow_with_cap(&["SYS_TTY_CONFIG"], &["vhangup"]),
    allow_with_cap(
        &["SYS_NICE"],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    allow_with_cap(&["SYSLOG"], &["syslog"]),
    allow_with_cap(&["BPF"], &["bpf"]),
    allow_with_cap(&["PERFMON"], &["perf_event_open"]),
];

/// The host as the profile's conditions see it.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Go's name of the native architecture (`amd64`, `arm64`).
    pub arch: &'static str,
    /// Seccomp architectures the filter covers (native first).
    pub arches: Vec<Arch>,
    /// Kernel `(major, minor)`, if known.
    pub kernel: Option<(u32, u32)>,
}

impl Host {
    /// This machine, or `None` on an architecture the table does not cover.
    pub(crate) fn current() -> Option<Host> {
        // Docker also lists x32 on x86_64. No image platform is x32, and
        // each extra architecture makes libseccomp's filter costlier (about
        // 10 ms per RUN here, in both runtimes); without it, an x32 syscall
        // hits the filter's bad-architecture action (the thread is killed)
        // instead of the allow-list: stricter, never looser.
        let (arch, arches) = if cfg!(target_arch = "x86_64") {
            ("amd64", vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86])
        } else if cfg!(target_arch = "aarch64") {
            ("arm64", vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm])
        } else {
            return None;
        };
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        Some(Host {
            arch,
            arches,
            kernel: parse_kernel(&release),
        })
    }
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64`.
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn applies(rule: &Rule, caps: &[&str], host: &Host) -> bool {
    let inc = &rule.includes;
    if !inc.caps.iter().all(|c| caps.contains(c)) {
        return false;
    }
    if !inc.arches.is_empty() && !inc.arches.contains(&host.arch) {
        return false;
    }
    if let Some(min) = inc.min_kernel {
        if host.kernel.is_none_or(|k| k < min) {
            return false;
        }
    }
    let exc = &rule.excludes;
    if exc.caps.iter().any(|c| caps.contains(c)) {
        return false;
    }
    if exc.arches.contains(&host.arch) {
        return false;
    }
    true
}

fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Spec(format!("seccomp: {e}"))
}

fn syscall(rule: &Rule) -> Result<LinuxSyscall> {
    let names: Vec<String> = rule.names.iter().map(|s| s.to_string()).collect();
    let mut b = LinuxSyscallBuilder::default().names(names);
    b = match rule.action {
        Action::Allow => b.action(LinuxSeccompAction::ScmpActAllow),
        Action::Errno(errno) => b.action(LinuxSeccompAction::ScmpActErrno).errno_ret(errno),
    };
    if !rule.args.is_empty() {
        let args = rule
            .args
            .iter()
            .map(|&(index, op, value)| {
                // As in Docker's profile: for MaskedEq `value` is the mask
                // and `valueTwo` the expected value (runc's reading).
                LinuxSeccompArgBuilder::default()
                    .index(index)
                    .value(value)
                    .value_two(0u64)
                    .op(op)
                    .build()
                    .map_err(spec_err)
            })
            .collect::<Result<Vec<_>>>()?;
        b = b.args(args);
    }
    b.build().map_err(spec_err)
}

/// Docker's default profile for a process holding `caps` (names without
/// `CAP_`), on `host`.
pub(crate) fn default_profile(caps: &[&str], host: &Host) -> Result<LinuxSeccomp> {
    let syscalls = RULES
        .iter()
        .filter(|r| applies(r, caps, host))
        .map(syscall)
        .collect::<Result<Vec<_>>>()?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(DEFAULT_ERRNO)
        .architectures(host.arches.clone())
        .syscalls(syscalls)
        .build()
        .map_err(spec_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Host {
        Host {
            arch: "amd64",
            arches: vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86],
            kernel: Some((6, 1)),
        }
    }

    /// Names with an unconditional allow rule (no argument filter).
    fn allowed(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    use crate::spec::DEFAULT_CAPS as DOCKER_DEFAULT;

    #[test]
    fn default_caps_deny_namespace_and_mount_calls() {
        let p = default_profile(DOCKER_DEFAULT, &amd64()).expect("profile");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        let names = allowed(&p);
        for denied in [
            "mount", "umount2", "unshare", "setns", "keyctl", "add_key", "swapon", "reboot", "bpf",
        ] {
            assert!(!names.iter().any(|n| n == denied), "{denied} allowed");
        }
        for ok in [
            "read",
            "execve",
            "fork",
            "chroot",
            "arch_prctl",
            "ptrace",
            "wait4",
        ] {
            assert!(names.iter().any(|n| n == ok), "{ok} not allowed");
        }
        assert!(
            !names.iter().any(|n| n == "set_tls"),
            "arm-only rule on amd64"
        );
        // clone only without namespace flags; clone3 reports ENOSYS.
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone".to_string()])
            .expect("clone rule");
        let arg = clone.args().as_ref().and_then(|a| a.first().copied());
        assert_eq!(
            arg.map(|a| (a.index(), a.op(), a.value(), a.value_two())),
            Some((0, MASKED_EQ, CLONE_NAMESPACE_FLAGS, Some(0)))
        );
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3".to_string()])
            .expect("clone3 rule");
        assert_eq!(
            (clone3.action(), clone3.errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(38))
        );
    }

    #[test]
    fn sys_admin_allows_mount_and_any_clone() {
        let mut caps = DOCKER_DEFAULT.to_vec();
        caps.push("SYS_ADMIN");
        let p = default_profile(&caps, &amd64()).expect("profile");
        let names = allowed(&p);
        for ok in ["mount", "unshare", "setns", "clone", "clone3"] {
            assert!(names.iter().any(|n| n == ok), "{ok} not allowed");
        }
        let restricted = p.syscalls().iter().flatten().any(|s| {
            let clone_with_args = s.names() == &["clone".to_string()] && s.args().is_some();
            clone_with_args || s.action() == LinuxSeccompAction::ScmpActErrno
        });
        assert!(!restricted, "namespace-flag rules kept with CAP_SYS_ADMIN");
    }

    #[test]
    fn ptrace_needs_a_recent_kernel() {
        let old = Host {
            kernel: Some((4, 4)),
            ..amd64()
        };
        let p = default_profile(DOCKER_DEFAULT, &old).expect("profile");
        assert!(!allowed(&p).iter().any(|n| n == "ptrace"));
    }

    #[test]
    fn arm64_gets_arm_rules_and_arches() {
        let host = Host {
            arch: "arm64",
            arches: vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
            kernel: Some((6, 1)),
        };
        let p = default_profile(DOCKER_DEFAULT, &host).expect("profile");
        let names = allowed(&p);
        assert!(names.iter().any(|n| n == "set_tls"));
        assert!(!names.iter().any(|n| n == "arch_prctl"));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
    }

    #[test]
    fn allow_list_has_no_duplicates() {
        let mut v = ALLOWED.to_vec();
        v.sort_unstable();
        let n = v.len();
        v.dedup();
        assert_eq!(n, v.len());
    }

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("4.19.112+"), Some((4, 19)));
        assert_eq!(parse_kernel("weird"), None);
    }
}
