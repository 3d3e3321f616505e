//! Mount descriptions and the syscalls that realise them (no `mount(8)`).

use crate::{Error, Result};
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use std::path::{Path, PathBuf};

/// Overlay options that keep the upper dir a plain diff (no redirect or
/// metacopy xattrs, no index), whatever the kernel defaults are.
const OVERLAY_FIXED_OPTS: &str = "index=off,redirect_dir=off,metacopy=off";

/// Longest option string passed to `mount(2)` (one page, with the NUL).
const MAX_MOUNT_DATA: usize = 4095;

/// How to mount a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSpec {
    /// A bind mount of a directory.
    Bind {
        /// The directory.
        source: PathBuf,
        /// Mount read-only.
        read_only: bool,
    },
    /// An overlayfs mount.
    Overlay {
        /// Lower directories, topmost first.
        lower: Vec<PathBuf>,
        /// Upper directory; `None` for a read-only overlay.
        upper: Option<PathBuf>,
        /// Work directory (with `upper`).
        work: Option<PathBuf>,
    },
}

impl MountSpec {
    /// The `(type, source, options)` triple of this mount, as an OCI
    /// runtime spec or containerd would write it.
    pub fn to_options(&self) -> (&'static str, PathBuf, Vec<String>) {
        match self {
            MountSpec::Bind { source, read_only } => {
                let mut opts = vec!["rbind".to_string()];
                opts.push(if *read_only { "ro" } else { "rw" }.to_string());
                ("bind", source.clone(), opts)
            }
            MountSpec::Overlay { lower, upper, work } => {
                let mut opts: Vec<String> =
                    OVERLAY_FIXED_OPTS.split(',').map(str::to_string).collect();
                let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
                opts.push(format!("lowerdir={}", lowers.join(":")));
                if let (Some(u), Some(w)) = (upper, work) {
                    opts.push(format!("upperdir={}", u.display()));
                    opts.push(format!("workdir={}", w.display()));
                }
                ("overlay", PathBuf::from("overlay"), opts)
            }
        }
    }

    /// Mount at `target` (an existing directory).
    pub fn mount(&self, target: &Path) -> Result<()> {
        let merr = |source: std::io::Error| Error::Mount {
            target: target.to_path_buf(),
            source,
        };
        match self {
            MountSpec::Bind { source, read_only } => {
                rustix::mount::mount_bind_recursive(source, target).map_err(|e| merr(e.into()))?;
                if *read_only {
                    let remount = rustix::mount::mount_remount(
                        target,
                        MountFlags::BIND | MountFlags::RDONLY,
                        "",
                    );
                    if let Err(e) = remount {
                        let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
                        return Err(merr(e.into()));
                    }
                }
                Ok(())
            }
            MountSpec::Overlay { lower, upper, work } => {
                let (_, _, opts) = self.to_options();
                let data = opts.join(",");
                let awkward = lower
                    .iter()
                    .chain(upper.iter())
                    .chain(work.iter())
                    .any(|p| p.to_string_lossy().contains([',', ':']));
                if data.len() <= MAX_MOUNT_DATA && !awkward {
                    let c = std::ffi::CString::new(data).map_err(|e| merr(e.into()))?;
                    rustix::mount::mount(
                        "overlay",
                        target,
                        "overlay",
                        MountFlags::empty(),
                        c.as_c_str(),
                    )
                    .map_err(|e| merr(e.into()))
                } else {
                    mount_overlay_fsconfig(lower, upper.as_deref(), work.as_deref(), target)
                        .map_err(merr)
                }
            }
        }
    }
}

/// Mount an overlay with the new mount API, adding lower dirs one at a
/// time (`lowerdir+`, Linux 6.8+), so no option string nears a page.
fn mount_overlay_fsconfig(
    lower: &[PathBuf],
    upper: Option<&Path>,
    work: Option<&Path>,
    target: &Path,
) -> std::io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for opt in OVERLAY_FIXED_OPTS.split(',') {
        if let Some((k, v)) = opt.split_once('=') {
            fsconfig_set_string(&fs, k, v)?;
        }
    }
    for l in lower {
        fsconfig_set_string(&fs, "lowerdir+", l)?;
    }
    if let (Some(u), Some(w)) = (upper, work) {
        fsconfig_set_string(&fs, "upperdir", u)?;
        fsconfig_set_string(&fs, "workdir", w)?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Unmount `target` (lazily if it is busy).
pub fn unmount(target: &Path) -> Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| Error::Mount {
                target: target.to_path_buf(),
                source: e.into(),
            }),
        Err(e) => Err(Error::Mount {
            target: target.to_path_buf(),
            source: e.into(),
        }),
    }
}
