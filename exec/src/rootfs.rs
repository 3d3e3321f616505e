//! Paths inside the rootfs, all through `rbuild-fsroot`: the working
//! directory, mount-point stubs (created and removed through directory
//! handles, never by a host path), and mount targets resolved inside the
//! rootfs before they reach the runtime, so the runtime never follows a
//! link planted by the image.

use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;
use rbuild_fsroot::{Dir, FileType, Name, Root, Stat, MAX_SYMLINKS};
use rustix::fs::Timespec;

use crate::{Error, Result};

/// Open the rootfs (a trusted host path) as a root.
pub(crate) fn open_root(rootfs: &Path) -> Result<Root> {
    Root::open(rootfs).map_err(|e| Error::io(format!("open rootfs {rootfs:?}"), e))
}

/// Create the working directory `cwd` (and missing parents) with mode 0755,
/// as BuildKit does (root-owned: rbuild runs as root). Symlinks on the way
/// resolve inside the rootfs. It stays in the rootfs.
pub(crate) fn ensure_workdir(root: &Root, cwd: &str) -> Result<()> {
    match root.stat(cwd, true) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(()),
        Ok(_) => Err(Error::InvalidRequest(format!(
            "working directory {cwd:?} exists and is not a directory"
        ))),
        Err(_) => root
            .create_dir_all(cwd, 0o755, None)
            .map(drop)
            .map_err(|e| Error::io(format!("create working dir {cwd:?}"), e)),
    }
}

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StubKind {
    /// A directory.
    Dir,
    /// A regular file (for file and socket binds).
    File,
}

/// (device, inode) of a directory.
type InodeId = (u64, u64);
/// (atime, mtime).
type Times = (Timespec, Timespec);

/// Mount points the executor created in the rootfs, to be removed after the
/// run (BuildKit's `MountStubsCleaner`, plus restoring the parents' times).
#[derive(Debug, Default)]
pub(crate) struct Stubs {
    /// Created entries (parent handle, name, path for messages), in
    /// creation order (parents first).
    created: Vec<(Dir, Name, String)>,
    /// Parent dirs whose times changed, with their original (atime, mtime).
    parents: Vec<(Dir, InodeId, Times)>,
}

fn times_of(st: &Stat) -> Times {
    (
        Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    )
}

/// Split `path` into its parent path and last component.
fn split(path: &Path) -> Option<(PathBuf, Name)> {
    let name = Name::new(path.file_name()?).ok()?;
    Some((path.parent().unwrap_or(Path::new("/")).to_path_buf(), name))
}

impl Stubs {
    /// Remember `name` in `dir` (about to be created) and `dir`'s times.
    fn note(&mut self, dir: &Dir, name: &Name, path: String) -> io::Result<()> {
        let st = dir.self_stat()?;
        let id = (st.st_dev, st.st_ino);
        if !self.parents.iter().any(|(_, p, _)| *p == id) {
            self.parents.push((dir.try_clone()?, id, times_of(&st)));
        }
        self.created.push((dir.try_clone()?, name.clone(), path));
        Ok(())
    }

    /// Make sure the mount point for `target` exists inside the rootfs,
    /// creating what is missing (following symlinks inside the root, even
    /// dangling ones, as the old path join did) and remembering it.
    pub(crate) fn ensure(&mut self, root: &Root, target: &str, kind: StubKind) -> Result<()> {
        let err = |e| Error::io(format!("create mount point {target:?}"), e);
        if root.stat(target, true).is_ok() {
            return Ok(());
        }
        let mut path = PathBuf::from(target);
        for _ in 0..=MAX_SYMLINKS {
            let Some((parent, name)) = split(&path) else {
                return Ok(()); // the root itself
            };
            let dir = root
                .create_dir_all_with(&parent, 0o755, None, &mut |d, n| {
                    let p = parent.join(n.as_os_str()).display().to_string();
                    self.note(d, n, p)
                })
                .map_err(err)?;
            match dir.try_stat(&name).map_err(err)? {
                Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    let link = dir.read_link(&name).map_err(err)?;
                    path = if link.is_absolute() {
                        link
                    } else {
                        parent.join(link)
                    };
                }
                Some(_) => return Ok(()),
                None => {
                    self.note(&dir, &name, path.display().to_string())
                        .map_err(err)?;
                    match kind {
                        StubKind::File => dir.create_file(&name, 0o644).map(drop),
                        StubKind::Dir => dir.create_dir(&name, 0o755),
                    }
                    .map_err(err)?;
                    return Ok(());
                }
            }
        }
        Err(err(rustix::io::Errno::LOOP.into()))
    }

    /// Remove the stubs that are still empty (deepest first) and restore
    /// the parents' access and modification times. Everything goes through
    /// the handles taken at creation: nothing is looked up by path again.
    pub(crate) fn cleanup(&mut self) -> Result<()> {
        let mut first_err = None;
        for (dir, name, path) in self.created.drain(..).rev() {
            let Ok(Some(st)) = dir.try_stat(&name) else {
                continue;
            };
            let empty = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => dir
                    .open_dir(&name)
                    .and_then(|d| d.entries())
                    .is_ok_and(|e| e.is_empty()),
                FileType::RegularFile => st.st_size == 0,
                _ => false,
            };
            if empty {
                if let Err(e) = dir.remove_all(&name) {
                    first_err.get_or_insert(Error::io(format!("remove mount point {path:?}"), e));
                }
            }
        }
        for (dir, _, (atime, mtime)) in self.parents.drain(..).rev() {
            // Best effort: a parent the process removed has no times to restore.
            let _ = dir.set_self_times(atime, mtime);
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `path` resolved inside `root`: every existing component with its
/// symlinks followed inside the root, missing trailing components kept as
/// they are (they are not links: they do not exist). A dangling link is
/// refused: the runtime would follow it.
pub(crate) fn resolve_target(root: &Root, path: &Path) -> io::Result<PathBuf> {
    match root.real_path(path, true) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if root.exists(path)? {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is a dangling symlink", path.display()),
                ));
            }
            match split(path) {
                Some((parent, name)) => Ok(resolve_target(root, &parent)?.join(name.as_os_str())),
                None => Ok(PathBuf::from("/")),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether `path` is absolute and has no `..`.
fn clean(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

/// Rewrite every mount destination to its in-root resolution, so the
/// runtime is handed paths without symlinks: a destination in the rootfs
/// itself is resolved in the rootfs (its stub exists by now); one nested in
/// an earlier bind mount is resolved inside that mount's source (the tree
/// the runtime will find there); one nested in a kernel filesystem mount
/// (`/dev/pts` in `/dev`'s tmpfs, a tmpfs) only gets its parent's
/// resolution, as nothing can have planted links there.
pub(crate) fn resolve_destinations(root: &Root, mounts: &mut [Mount]) -> Result<()> {
    let original: Vec<PathBuf> = mounts.iter().map(|m| m.destination().clone()).collect();
    let mut resolved: Vec<PathBuf> = Vec::with_capacity(mounts.len());
    for (i, dest) in original.iter().enumerate() {
        if !clean(dest) {
            return Err(Error::InvalidRequest(format!(
                "mount target {dest:?} is not a clean absolute path"
            )));
        }
        let err = |e| Error::io(format!("resolve mount target {dest:?}"), e);
        // The deepest earlier mount this one is nested in.
        let parent = (0..i)
            .filter(|&j| {
                let p = &original[j];
                p != Path::new("/") && p != dest && dest.starts_with(p)
            })
            .max_by_key(|&j| original[j].components().count());
        let r = match parent {
            None => resolve_target(root, dest).map_err(err)?,
            Some(j) => {
                let rest = dest.strip_prefix(&original[j]).unwrap_or(dest);
                let m = &mounts[j];
                let source = m.source().as_ref().filter(|s| s.is_dir());
                let inner = match (m.typ().as_deref(), source) {
                    (Some("bind"), Some(src)) => {
                        let src_root = Root::open(src).map_err(err)?;
                        resolve_target(&src_root, &Path::new("/").join(rest)).map_err(err)?
                    }
                    _ => Path::new("/").join(rest),
                };
                let inner = inner.strip_prefix("/").unwrap_or(&inner).to_path_buf();
                resolved[j].join(inner)
            }
        };
        resolved.push(r);
    }
    for (m, r) in mounts.iter_mut().zip(resolved) {
        m.set_destination(r);
    }
    Ok(())
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
