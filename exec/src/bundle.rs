//! The bundle directory of one run: `config.json`, the `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` files bind-mounted from here, and
//! secrets. Removed (with the mount-point stubs) after the run.
//!
//! Secrets never touch a disk: they are written from memory into
//! `secrets/`, a private tmpfs (mode 0700, `nosuid,nodev,noexec`, sized to
//! fit) mounted over the bundle's `secrets` directory for this run only,
//! and bind-mounted read-only from there into the sandbox; both runtimes
//! see an ordinary path. Removing the bundle ([`remove_bundle_dir`]: after
//! the run, by the helper when rbuild dies, or by `remove_stale_bundles`
//! when both died) deletes the files and detaches the tmpfs, which frees
//! its memory. The cost: one mount per RUN that uses a secret file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::rootfs::{ensure_workdir, open_root, resolve_destinations, StubKind, Stubs};
use crate::spec::{self, SpecInput};
use crate::user::resolve_user;
use crate::{Error, ExecMount, Network, Result, RunRequest};

/// Nameservers used when the host only has a loopback resolver, which is
/// unreachable from a new network namespace (BuildKit's defaults).
const DEFAULT_NAMESERVERS: &[&str] = &[
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
];

/// A prepared bundle. Call [`Bundle::finish`]; dropping it cleans up too.
#[derive(Debug)]
pub(crate) struct Bundle {
    /// The bundle directory (holds `config.json`).
    pub dir: PathBuf,
    /// The container id.
    pub id: String,
    stubs: Stubs,
    done: bool,
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(context, e)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("write {path:?}"), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {path:?}"), e))
}

/// `/etc/hosts` as BuildKit writes it.
pub(crate) fn hosts_file(hostname: &str, extra: &[(String, String)]) -> String {
    let mut s =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .map(|a| a.is_loopback())
        .unwrap_or(false)
}

/// `/etc/resolv.conf` from the host's: kept as is on the host network;
/// otherwise loopback nameservers are dropped and, if none remain, the
/// defaults are used.
pub(crate) fn resolv_conf(host: Option<&str>, network: Network) -> String {
    let host = host.unwrap_or("");
    let nameservers = |s: &str| -> Vec<String> {
        s.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("nameserver")).then(|| f.next().unwrap_or("").to_string())
            })
            .collect()
    };
    if network == Network::Host && !nameservers(host).is_empty() {
        return host.to_string();
    }
    let mut out: String = host
        .lines()
        .filter(|l| {
            let mut f = l.split_whitespace();
            !(f.next() == Some("nameserver") && f.next().is_some_and(is_loopback))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if nameservers(&out).is_empty() {
        for ns in DEFAULT_NAMESERVERS {
            out.push_str(&format!("nameserver {ns}\n"));
        }
    }
    out
}

/// The bytes of a secret, kept in memory; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes(v)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// Mount the private tmpfs for the secrets of one run at `dir` (created
/// 0700), with room for `bytes` of data in `files` files.
fn mount_secrets_dir(dir: &Path, bytes: usize, files: usize) -> Result<()> {
    use rustix::mount::{mount, MountFlags};
    fs::create_dir(dir).map_err(io("create secrets dir"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("chmod secrets dir"))?;
    // Page-rounded files plus slack; inodes for the files and the root.
    let size = (bytes + files * 4096 + 64 * 1024).next_multiple_of(4096);
    let data = std::ffi::CString::new(format!("mode=0700,size={size},nr_inodes={}", files + 16))
        .map_err(|_| Error::InvalidRequest("tmpfs options".into()))?;
    mount(
        "rbuild-secrets",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(|e| Error::io(format!("mount a tmpfs for secrets on {dir:?}"), e.into()))
}

/// Write secret `data` as a new file `path` (on the secrets tmpfs) with
/// `mode` and owner `uid:gid`.
fn write_secret(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io("create secret"))?;
    f.write_all(data).map_err(io("write secret"))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io("chown secret"))?;
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
        .map_err(io("chmod secret"))
}

/// Remove a bundle directory: detach its secrets tmpfs (if mounted), then
/// delete the rest. No error if it is gone already.
pub(crate) fn remove_bundle_dir(dir: &Path) -> std::io::Result<()> {
    let secrets = dir.join("secrets");
    // Delete the secrets first (frees their memory even if the detach
    // fails), then detach the tmpfs; not mounted is fine.
    if let Ok(rd) = fs::read_dir(&secrets) {
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let _ = rustix::mount::unmount(&secrets, rustix::mount::UnmountFlags::DETACH);
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn check_target(target: &str) -> Result<()> {
    if !target.starts_with('/') {
        return Err(Error::InvalidRequest(format!(
            "mount target {target:?} is not absolute"
        )));
    }
    Ok(())
}

fn depth(target: &str) -> usize {
    Path::new(target).components().count()
}

impl Bundle {
    /// Write the bundle for `req` under `bundles/<id>` and prepare the
    /// rootfs (working directory, mount-point stubs).
    pub(crate) fn prepare(
        bundles: &Path,
        id: &str,
        req: &RunRequest,
        host_resolv: &Path,
    ) -> Result<Bundle> {
        if req.process.args.is_empty() {
            return Err(Error::InvalidRequest("empty args".into()));
        }
        let cwd = if req.process.cwd.is_empty() {
            "/".to_string()
        } else {
            req.process.cwd.clone()
        };
        if !cwd.starts_with('/') {
            return Err(Error::InvalidRequest(format!(
                "working directory {cwd:?} is not absolute"
            )));
        }
        for m in &req.mounts {
            check_target(m.target())?;
        }
        let rootfs = fs::canonicalize(&req.rootfs)
            .map_err(|e| Error::io(format!("rootfs {:?}", req.rootfs), e))?;
        if !rootfs.is_dir() {
            return Err(Error::InvalidRequest(format!(
                "rootfs {rootfs:?} is not a directory"
            )));
        }
        fs::create_dir_all(bundles).map_err(io("create bundles dir"))?;
        let dir = bundles.join(id);
        fs::create_dir(&dir).map_err(io("create bundle dir"))?;
        let mut bundle = Bundle {
            dir,
            id: id.to_string(),
            stubs: Stubs::default(),
            done: false,
        };
        bundle.fill(req, &rootfs, &cwd, host_resolv)?;
        Ok(bundle)
    }

    fn fill(
        &mut self,
        req: &RunRequest,
        rootfs: &Path,
        cwd: &str,
        host_resolv: &Path,
    ) -> Result<()> {
        let dir = self.dir.clone();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711))
            .map_err(io("chmod bundle dir"))?;
        let user = resolve_user(rootfs, &req.process.user)?;

        let hostname = if req.hostname.is_empty() {
            crate::DEFAULT_HOSTNAME
        } else {
            req.hostname.as_str()
        };
        write_file(
            &dir.join("hosts"),
            hosts_file(hostname, &req.extra_hosts).as_bytes(),
            0o644,
        )?;
        let host_resolv = fs::read_to_string(host_resolv).ok();
        write_file(
            &dir.join("resolv.conf"),
            resolv_conf(host_resolv.as_deref(), req.network).as_bytes(),
            0o644,
        )?;
        write_file(
            &dir.join("hostname"),
            format!("{hostname}\n").as_bytes(),
            0o644,
        )?;

        // (mount, kind of mount point)
        let mut mounts: Vec<(Mount, StubKind)> = spec::default_mounts(req.insecure)?
            .into_iter()
            .map(|m| (m, StubKind::Dir))
            .collect();
        for name in ["hosts", "resolv.conf", "hostname"] {
            let m = spec::bind_mount(&dir.join(name), &format!("/etc/{name}"), false)?;
            mounts.push((m, StubKind::File));
        }
        let mut user_mounts: Vec<&ExecMount> = req.mounts.iter().collect();
        user_mounts.sort_by_key(|m| depth(m.target()));
        let secrets = dir.join("secrets");
        for (i, m) in user_mounts.into_iter().enumerate() {
            let entry = match m {
                ExecMount::Bind {
                    source,
                    target,
                    readonly,
                } => {
                    let meta = fs::metadata(source)
                        .map_err(|e| Error::io(format!("bind source {source:?}"), e))?;
                    let kind = if meta.is_dir() {
                        StubKind::Dir
                    } else {
                        StubKind::File
                    };
                    (spec::bind_mount(source, target, *readonly)?, kind)
                }
                ExecMount::Tmpfs { target, size } => {
                    (spec::tmpfs_mount(target, *size)?, StubKind::Dir)
                }
                ExecMount::Secret {
                    data,
                    target,
                    mode,
                    uid,
                    gid,
                } => {
                    if !secrets.exists() {
                        let (bytes, files) = req.mounts.iter().fold((0, 0), |(b, n), m| match m {
                            ExecMount::Secret { data, .. } => (b + data.as_bytes().len(), n + 1),
                            _ => (b, n),
                        });
                        mount_secrets_dir(&secrets, bytes, files)?;
                    }
                    let file = secrets.join(i.to_string());
                    write_secret(&file, data.as_bytes(), *mode, *uid, *gid)?;
                    (spec::bind_mount(&file, target, true)?, StubKind::File)
                }
                ExecMount::Socket { source, target } => {
                    (spec::bind_mount(source, target, false)?, StubKind::File)
                }
            };
            mounts.push(entry);
        }

        // The working directory stays (BuildKit creates it too). Every path
        // inside the rootfs goes through this root handle.
        let root = open_root(rootfs)?;
        ensure_workdir(&root, cwd)?;
        // Mount points in the rootfs itself; those nested in an earlier
        // mount are created by the runtime inside that mount.
        let dests: Vec<String> = mounts
            .iter()
            .map(|(m, _)| m.destination().to_string_lossy().into_owned())
            .collect();
        for (i, (_, kind)) in mounts.iter().enumerate() {
            let dest = &dests[i];
            let nested = dests[..i]
                .iter()
                .any(|p| p != "/" && Path::new(dest).starts_with(p) && p != dest);
            if !nested {
                self.stubs.ensure(&root, dest, *kind)?;
            }
        }

        // The runtime gets targets resolved in-root: it never follows a
        // link the image planted.
        let mut mounts: Vec<Mount> = mounts.into_iter().map(|(m, _)| m).collect();
        resolve_destinations(&root, &mut mounts)?;
        let spec = spec::build(SpecInput {
            rootfs,
            process: &req.process,
            user: &user,
            mounts,
            network: req.network,
            insecure: req.insecure,
            hostname,
        })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Spec(e.to_string()))?;
        write_file(&dir.join("config.json"), &json, 0o600)?;
        Ok(())
    }

    /// Remove the mount-point stubs and the bundle directory.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let stubs = self.stubs.cleanup();
        let dir = remove_bundle_dir(&self.dir)
            .map_err(|e| Error::io(format!("remove bundle {:?}", self.dir), e));
        stubs.and(dir)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Best effort on unwinding or early return; `finish` reports errors.
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_off_host_network() {
        let host = "search example\nnameserver 127.0.0.53\noptions edns0\n";
        let got = resolv_conf(Some(host), Network::None);
        assert!(got.contains("search example"));
        assert!(!got.contains("127.0.0.53"));
        assert!(got.contains("nameserver 8.8.8.8"));
        assert_eq!(resolv_conf(Some(host), Network::Host), host);
        let real = "nameserver 10.0.0.2\n";
        assert_eq!(resolv_conf(Some(real), Network::None), real);
        assert!(resolv_conf(None, Network::Host).contains("nameserver 8.8.8.8"));
    }

    #[test]
    fn secret_bytes_are_never_printed() {
        let s = SecretBytes::from(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "SecretBytes(7 bytes)");
    }

    #[test]
    fn hosts_has_hostname_and_extras() {
        let h = hosts_file("box", &[("db".into(), "10.1.2.3".into())]);
        assert!(h.starts_with("127.0.0.1\tlocalhost box\n"));
        assert!(h.ends_with("10.1.2.3\tdb\n"));
    }
}
