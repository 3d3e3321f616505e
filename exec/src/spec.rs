//! Build the OCI runtime spec (`config.json`) for one run.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::seccomp;
use crate::user::ResolvedUser;
use crate::{Error, Network, ProcessSpec, Result};

/// `PATH` when the environment lacks one (BuildKit's default on Linux).
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// All capabilities in kernel order (index = capability number).
const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// runc's and Docker's default masked paths.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's and Docker's default read-only paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes in the minimal `/dev`: (path, major, minor).
const DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn spec_err(e: impl std::fmt::Display) -> Error {
    Error::Spec(e.to_string())
}

fn caps(names: &[&str]) -> Result<Capabilities> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(format!("CAP_{n}")))
                .map_err(spec_err)
        })
        .collect()
}

/// The capabilities this process may pass on: its bounding set (a runtime
/// cannot grant more), limited to the ones the kernel knows.
fn grantable_caps() -> Vec<&'static str> {
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(ALL_CAPS.len() - 1);
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| *i <= last && bounding & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

/// `/proc`, a minimal `/dev` (with pts, shm, mqueue) and `/sys` (read-only
/// unless insecure).
pub(crate) fn default_mounts(insecure: bool) -> Result<Vec<Mount>> {
    let sys_mode = if insecure { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
    ])
}

/// A bind mount of a host path.
pub(crate) fn bind_mount(source: &Path, dest: &str, readonly: bool) -> Result<Mount> {
    let mut options = vec!["rbind".to_string(), "nosuid".to_string()];
    if readonly {
        options.push("ro".to_string());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(spec_err)
}

/// A tmpfs mount.
pub(crate) fn tmpfs_mount(dest: &str, size: Option<u64>) -> Result<Mount> {
    let mut options = vec![
        "nosuid".to_string(),
        "nodev".to_string(),
        "mode=1777".to_string(),
    ];
    if let Some(size) = size {
        options.push(format!("size={size}"));
    }
    MountBuilder::default()
        .destination(dest)
        .typ("tmpfs")
        .source("tmpfs")
        .options(options)
        .build()
        .map_err(spec_err)
}

/// Inputs for [`build`].
pub(crate) struct SpecInput<'a> {
    pub rootfs: &'a Path,
    pub process: &'a ProcessSpec,
    pub user: &'a ResolvedUser,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub insecure: bool,
    pub hostname: &'a str,
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(spec_err)
}

/// The environment: the request's, plus `PATH` and `HOME` if missing.
pub(crate) fn process_env(process: &ProcessSpec, user: &ResolvedUser) -> Vec<String> {
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// OCI rlimits of `--ulimit` values (`None` when there are none).
fn rlimits(limits: &[crate::Rlimit]) -> Result<Option<Vec<PosixRlimit>>> {
    if limits.is_empty() {
        return Ok(None);
    }
    limits
        .iter()
        .map(|l| {
            let typ: PosixRlimitType = l
                .kind
                .parse()
                .map_err(|_| spec_err(format!("unknown rlimit {}", l.kind)))?;
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(l.soft)
                .hard(l.hard)
                .build()
                .map_err(spec_err)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// A later mount on `/dev/shm` (`--shm-size`, a tmpfs mount) replaces the
/// default one rather than stacking on it.
fn shm_once(mounts: Vec<Mount>) -> Vec<Mount> {
    let shm = Path::new("/dev/shm");
    let Some(last) = mounts.iter().rposition(|m| m.destination() == shm) else {
        return mounts;
    };
    mounts
        .into_iter()
        .enumerate()
        .filter(|(i, m)| *i == last || m.destination() != shm)
        .map(|(_, m)| m)
        .collect()
}

/// Build the spec.
pub(crate) fn build(input: SpecInput<'_>) -> Result<Spec> {
    let cap_set = if input.insecure {
        caps(&grantable_caps())?
    } else {
        caps(DEFAULT_CAPS)?
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(spec_err)?;
    let user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid)
        .additional_gids(input.user.additional_gids.clone())
        .build()
        .map_err(spec_err)?;
    let cwd = if input.process.cwd.is_empty() {
        "/"
    } else {
        input.process.cwd.as_str()
    };
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(input.process.args.clone())
        .env(process_env(input.process, input.user))
        .cwd(cwd)
        .capabilities(capabilities)
        .build()
        .map_err(spec_err)?;
    // Without `--ulimit`, inherit the runtime's limits: a spec must not ask
    // above the hard limits.
    process.set_rlimits(rlimits(&input.process.rlimits)?);
    // `noNewPrivileges` unset means false (setuid binaries work, as in
    // Docker). Unset rather than `false`: libcontainer loads the seccomp
    // filter before dropping capabilities only when the field is absent, and
    // without CAP_SYS_ADMIN or no_new_privs the kernel refuses the filter.
    process.set_no_new_privileges(None);

    let mut ns_types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if input.network == Network::None {
        ns_types.push(LinuxNamespaceType::Network);
    }
    let namespaces = ns_types
        .into_iter()
        .map(|t| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .map_err(spec_err)
        })
        .collect::<Result<Vec<_>>>()?;

    let devices = DEVICES
        .iter()
        .map(|(p, major, minor)| {
            LinuxDeviceBuilder::default()
                .path(PathBuf::from(p))
                .typ(LinuxDeviceType::C)
                .major(*major)
                .minor(*minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(spec_err)
        })
        .collect::<Result<Vec<_>>>()?;

    let mut rules = Vec::new();
    if input.insecure {
        rules.push(device_rule(true, LinuxDeviceType::A, None, None, "rwm")?);
    } else {
        rules.push(device_rule(false, LinuxDeviceType::A, None, None, "rwm")?);
        rules.push(device_rule(true, LinuxDeviceType::C, None, None, "m")?);
        rules.push(device_rule(true, LinuxDeviceType::B, None, None, "m")?);
        for (_, major, minor) in DEVICES {
            rules.push(device_rule(
                true,
                LinuxDeviceType::C,
                Some(*major),
                Some(*minor),
                "rwm",
            )?);
        }
        // /dev/console, /dev/pts/ptmx and /dev/pts/*.
        rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(5),
            Some(1),
            "rwm",
        )?);
        rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(5),
            Some(2),
            "rwm",
        )?);
        rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(136),
            None,
            "rwm",
        )?);
    }
    let resources = LinuxResourcesBuilder::default()
        .devices(rules)
        .build()
        .map_err(spec_err)?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(devices)
        .resources(resources);
    if !input.insecure {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    let mut linux = linux.build().map_err(spec_err)?;
    if input.insecure {
        linux.set_masked_paths(None).set_readonly_paths(None);
    } else if let Some(host) = seccomp::Host::current() {
        // As BuildKit: Docker's default profile, none with --security=insecure.
        linux.set_seccomp(Some(seccomp::default_profile(DEFAULT_CAPS, &host)?));
    }

    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(false)
        .build()
        .map_err(spec_err)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .hostname(input.hostname)
        .process(process)
        .mounts(shm_once(input.mounts))
        .linux(linux)
        .build()
        .map_err(spec_err)
}
