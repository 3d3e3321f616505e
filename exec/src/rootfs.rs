//! Paths inside the rootfs: symlink-safe resolution, the working directory,
//! and mount-point stubs that are removed again after the run.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use crate::{Error, Result};

/// Symlinks followed at most while resolving one path (as the kernel's 40,
/// with room for deep chains in images).
const MAX_SYMLINKS: usize = 255;

/// Resolve `path` (absolute, inside the sandbox) to a host path under `root`,
/// following symlinks as if `root` were `/`: nothing resolves outside
/// `root`. Missing trailing components are kept as they are.
pub(crate) fn secure_join(root: &Path, path: &str) -> Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(Path::new(path));
    let mut resolved = PathBuf::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::InvalidRequest(format!(
                        "too many symlinks resolving {path:?} in the rootfs"
                    )));
                }
                let target = fs::read_link(&candidate)
                    .map_err(|e| Error::io(format!("read symlink {candidate:?}"), e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut rest = components(&target);
                rest.extend(pending);
                pending = rest;
            }
            _ => resolved.push(&part),
        }
    }
    Ok(root.join(resolved))
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Create the working directory `cwd` (and missing parents) root-owned with
/// mode 0755, as BuildKit does. It stays in the rootfs.
pub(crate) fn ensure_workdir(root: &Path, cwd: &str) -> Result<()> {
    let dir = secure_join(root, cwd)?;
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidRequest(format!(
            "working directory {cwd:?} exists and is not a directory"
        ))),
        Err(_) => {
            // Create component by component so every new dir gets 0755.
            let mut cur = root.to_path_buf();
            let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
            for c in rel.components() {
                cur.push(c);
                if fs::symlink_metadata(&cur).is_err() {
                    fs::create_dir(&cur)
                        .map_err(|e| Error::io(format!("create working dir {cwd:?}"), e))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(|e| Error::io(format!("chmod working dir {cwd:?}"), e))?;
                }
            }
            Ok(())
        }
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

/// Mount points the executor created in the rootfs, to be removed after the
/// run (BuildKit's `MountStubsCleaner`, plus restoring the parents' times).
#[derive(Debug, Default)]
pub(crate) struct Stubs {
    /// Created paths, in creation order (parents first).
    created: Vec<PathBuf>,
    /// Parent dirs whose times changed, with their original times.
    parents: Vec<(PathBuf, Timestamps)>,
}

impl Stubs {
    /// Make sure the mount point for `target` exists, creating what is
    /// missing and remembering it.
    pub(crate) fn ensure(&mut self, root: &Path, target: &str, kind: StubKind) -> Result<()> {
        let path = secure_join(root, target)?;
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(());
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let parts: Vec<_> = rel.components().collect();
        let mut cur = root.to_path_buf();
        for (i, c) in parts.iter().enumerate() {
            let parent = cur.clone();
            cur.push(c);
            if fs::symlink_metadata(&cur).is_ok() {
                continue;
            }
            if let Some(times) = times_of(&parent) {
                if !self.parents.iter().any(|(p, _)| *p == parent) {
                    self.parents.push((parent.clone(), times));
                }
            }
            let last = i + 1 == parts.len();
            let res = if last && kind == StubKind::File {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&cur)
                    .map(|_| ())
            } else {
                fs::create_dir(&cur)
            };
            res.map_err(|e| Error::io(format!("create mount point {target:?}"), e))?;
            self.created.push(cur.clone());
        }
        Ok(())
    }

    /// Remove the stubs that are still empty (deepest first) and restore
    /// the parents' access and modification times.
    pub(crate) fn cleanup(&mut self) -> Result<()> {
        let mut first_err = None;
        for p in self.created.drain(..).rev() {
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            let res = if meta.is_dir() {
                let empty = fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    fs::remove_dir(&p)
                } else {
                    Ok(())
                }
            } else if meta.is_file() && meta.size() == 0 {
                fs::remove_file(&p)
            } else {
                Ok(())
            };
            if let Err(e) = res {
                first_err.get_or_insert(Error::io(format!("remove mount point {p:?}"), e));
            }
        }
        for (p, times) in self.parents.drain(..).rev() {
            // Best effort: a parent the process removed has no times to restore.
            let _ = rustix::fs::utimensat(CWD, &p, &times, AtFlags::SYMLINK_NOFOLLOW);
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn times_of(path: &Path) -> Option<Timestamps> {
    let st = rustix::fs::lstat(path).ok()?;
    Some(Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn secure_join_stays_in_root() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).map_err(|e| Error::io("mkdir", e))?;
        symlink("/a", root.join("abs")).map_err(|e| Error::io("symlink", e))?;
        symlink("../../../..", root.join("a/up")).map_err(|e| Error::io("symlink", e))?;
        assert_eq!(secure_join(root, "/abs/b")?, root.join("a/b"));
        assert_eq!(secure_join(root, "/a/up/etc")?, root.join("etc"));
        assert_eq!(secure_join(root, "/../../x")?, root.join("x"));
        assert_eq!(secure_join(root, "/a/missing/c")?, root.join("a/missing/c"));
        Ok(())
    }

    #[test]
    fn stubs_are_removed_and_times_restored() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = tmp.path();
        fs::create_dir(root.join("etc")).map_err(|e| Error::io("mkdir", e))?;
        let old = Timestamps {
            last_access: Timespec {
                tv_sec: 1000,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: 2000,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(CWD, root.join("etc"), &old, AtFlags::empty())
            .map_err(|e| Error::io("utimensat", e.into()))?;
        let mut stubs = Stubs::default();
        stubs.ensure(root, "/etc/hosts", StubKind::File)?;
        stubs.ensure(root, "/proc", StubKind::Dir)?;
        stubs.ensure(root, "/x/y/z", StubKind::Dir)?;
        assert!(root.join("etc/hosts").is_file());
        assert!(root.join("x/y/z").is_dir());
        stubs.cleanup()?;
        assert!(!root.join("etc/hosts").exists());
        assert!(!root.join("x").exists());
        assert!(!root.join("proc").exists());
        let st = fs::metadata(root.join("etc")).map_err(|e| Error::io("stat", e))?;
        assert_eq!(st.mtime(), 2000);
        Ok(())
    }

    #[test]
    fn non_empty_stub_is_kept() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = tmp.path();
        let mut stubs = Stubs::default();
        stubs.ensure(root, "/data", StubKind::Dir)?;
        fs::write(root.join("data/f"), b"x").map_err(|e| Error::io("write", e))?;
        stubs.cleanup()?;
        assert!(root.join("data/f").exists());
        Ok(())
    }
}
