//! File actions (COPY, mkdir, mkfile, rm) applied to a mounted root
//! filesystem, with BuildKit's copy semantics.
//!
//! A hostile image controls every symlink in the trees these actions read
//! and write, and rbuild runs as root, so no path inside a tree is ever
//! joined onto a host path: sources are selected and read through a
//! [`Root`] on the source tree, destinations are created through a [`Root`]
//! on the destination and [`rbuild_fsroot::Dir`] handles, and every change
//! (create, chown, chmod, utimes, remove) is an `*at` call that never
//! follows its last component. Symlinks resolve inside their tree (an
//! absolute link to a host directory names that directory inside the
//! rootfs); a chain the kernel will not follow (more than 40 links) fails
//! the action with "too many links" instead of escaping.
//!
//! - [`select`]: what a source names (wildcards), separate from the copy;
//! - [`copy`]: COPY/ADD itself;
//! - [`owner`]: `--chown` lookups and `--chmod`.

mod copy;
mod owner;
mod select;

pub use copy::{copy, copy_in, OwnerMode};
pub use owner::{apply_chmod, resolve_owner_in, Owner};
pub use select::{expand_sources, glob_match};

use owner::owner_of;
use rbuild_fsroot::{Dir, FileType, Root};
use rbuild_graph::{Chown, MkdirAction, MkfileAction, RmAction};
use select::absent;
use std::io::{self, Write};
use std::path::Path;

/// Errors of a file action, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A source path matched nothing.
    #[error("failed to compute cache key: {0:?}: not found")]
    NotFound(String),
    /// A user or group name is not in the destination's /etc/passwd or /etc/group.
    #[error("unable to convert {kind} {name:?} to a numeric id: not found in the image")]
    UnknownUser {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A bad `--chmod` value.
    #[error("invalid chmod {0:?}")]
    BadChmod(String),
    /// A path crosses more symlinks than the kernel follows (40): refused
    /// rather than resolved outside the tree.
    #[error("{op} {path}: too many links")]
    TooManyLinks {
        /// What was being done.
        op: &'static str,
        /// The path inside the tree.
        path: String,
    },
    /// An IO error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path inside the tree (or the tree's host path when opening it).
        path: String,
        /// The error.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, FileOpError>;

/// An error mapper for `op` on `path` (a path inside a tree).
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a str,
) -> impl FnOnce(io::Error) -> FileOpError + 'a {
    move |source| {
        if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            FileOpError::TooManyLinks {
                op,
                path: path.to_string(),
            }
        } else {
            FileOpError::Io {
                op,
                path: path.to_string(),
                source,
            }
        }
    }
}

/// Open the tree at `dir` (a trusted host path: a snapshot mount, a
/// context) as a root.
pub fn open_root(dir: &Path) -> Result<Root> {
    Root::open(dir).map_err(|source| FileOpError::Io {
        op: "open",
        path: dir.display().to_string(),
        source,
    })
}

/// Resolve a `--chown` spec against the passwd and group files of the tree
/// at `root`.
pub fn resolve_owner(root: &Path, chown: &Chown) -> Result<Owner> {
    resolve_owner_in(&open_root(root)?, chown)
}

/// `mkdir path` inside the root, with every missing parent if `parents`
/// (else a missing parent is [`FileOpError::NotFound`]); created
/// directories get `mode` and `owner`, existing ones (or links to
/// directories inside the root) are kept as they are. Returns the directory.
pub fn mkdir_in(root: &Root, path: &str, mode: u32, owner: Owner, parents: bool) -> Result<Dir> {
    if parents {
        return root
            .create_dir_all(path, mode, Some(owner.pair()))
            .map_err(io_err("mkdir", path));
    }
    match root.open_dir(path) {
        Ok(d) => return Ok(d),
        Err(e) if absent(&e) => {}
        Err(e) => return Err(io_err("mkdir", path)(e)),
    }
    let (dir, name) = match root.parent_following(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FileOpError::NotFound(path.to_string()))
        }
        Err(e) => return Err(io_err("mkdir", path)(e)),
    };
    dir.create_dir(&name, mode).map_err(io_err("mkdir", path))?;
    dir.set_owner(&name, owner.uid, owner.gid)
        .map_err(io_err("chown", path))?;
    dir.open_dir(&name).map_err(io_err("mkdir", path))
}

/// Run a mkdir action.
pub fn mkdir(root: &Path, a: &MkdirAction) -> Result<()> {
    let root = open_root(root)?;
    let owner = owner_of(&root, a.owner.as_ref())?;
    mkdir_in(&root, &a.path, a.mode, owner, a.make_parents).map(drop)
}

/// Run a mkfile action (a heredoc file): the destination's last link is
/// followed inside the root, as BuildKit does; what is there is replaced.
pub fn mkfile(root: &Path, a: &MkfileAction) -> Result<()> {
    let root = open_root(root)?;
    let owner = owner_of(&root, a.owner.as_ref())?;
    let path = a.path.as_str();
    let (dir, name) = root.parent_following(path).map_err(io_err("write", path))?;
    if let Some(st) = dir.try_stat(&name).map_err(io_err("stat", path))? {
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(io_err("write", path)(io::Error::from_raw_os_error(
                rustix::io::Errno::ISDIR.raw_os_error(),
            )));
        }
        dir.remove_all(&name).map_err(io_err("remove", path))?;
    }
    let mut f = dir
        .create_file(&name, a.mode & 0o7777)
        .map_err(io_err("write", path))?;
    f.write_all(a.data.as_bytes())
        .map_err(io_err("write", path))?;
    drop(f);
    dir.set_owner(&name, owner.uid, owner.gid)
        .map_err(io_err("chown", path))?;
    dir.set_mode(&name, a.mode & 0o7777)
        .map_err(io_err("chmod", path))
}

/// Run an rm action: each path's parent is resolved inside the root and
/// the last component removed, never followed.
pub fn rm(root: &Path, a: &RmAction) -> Result<()> {
    let root = open_root(root)?;
    let paths = if a.allow_wildcard {
        expand_sources(&root, &a.path, true, None)?
    } else {
        vec![a.path.clone()]
    };
    for p in paths {
        let not_found = || {
            io_err("remove", &p)(io::Error::from_raw_os_error(
                rustix::io::Errno::NOENT.raw_os_error(),
            ))
        };
        let (dir, name) = match root.parent(&p) {
            Ok(x) => x,
            Err(e) if absent(&e) && a.allow_not_found => continue,
            Err(e) if absent(&e) => return Err(not_found()),
            Err(e) => return Err(io_err("remove", &p)(e)),
        };
        match dir.try_stat(&name).map_err(io_err("stat", &p))? {
            Some(_) => dir.remove_all(&name).map_err(io_err("remove", &p))?,
            None if a.allow_not_found => {}
            None => return Err(not_found()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
