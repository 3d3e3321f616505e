//! The bundle directory of one run: `config.json`, the `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` files bind-mounted from here, and
//! copies of secrets. Removed (with the mount-point stubs) after the run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::rootfs::{ensure_workdir, StubKind, Stubs};
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
                    source,
                    target,
                    mode,
                    uid,
                    gid,
                } => {
                    fs::create_dir_all(&secrets).map_err(io("create secrets dir"))?;
                    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))
                        .map_err(io("chmod secrets dir"))?;
                    let copy = secrets.join(i.to_string());
                    fs::copy(source, &copy)
                        .map_err(|e| Error::io(format!("copy secret {source:?}"), e))?;
                    std::os::unix::fs::chown(&copy, Some(*uid), Some(*gid))
                        .map_err(io("chown secret"))?;
                    fs::set_permissions(&copy, fs::Permissions::from_mode(*mode & 0o7777))
                        .map_err(io("chmod secret"))?;
                    (spec::bind_mount(&copy, target, true)?, StubKind::File)
                }
                ExecMount::Socket { source, target } => {
                    (spec::bind_mount(source, target, false)?, StubKind::File)
                }
            };
            mounts.push(entry);
        }

        // The working directory stays (BuildKit creates it too).
        ensure_workdir(rootfs, cwd)?;
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
                self.stubs.ensure(rootfs, dest, *kind)?;
            }
        }

        let spec = spec::build(SpecInput {
            rootfs,
            process: &req.process,
            user: &user,
            mounts: mounts.into_iter().map(|(m, _)| m).collect(),
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
        let dir = match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("remove bundle {:?}", self.dir), e))
            }
            _ => Ok(()),
        };
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
    fn hosts_has_hostname_and_extras() {
        let h = hosts_file("box", &[("db".into(), "10.1.2.3".into())]);
        assert!(h.starts_with("127.0.0.1\tlocalhost box\n"));
        assert!(h.ends_with("10.1.2.3\tdb\n"));
    }
}
