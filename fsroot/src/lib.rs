//! The one way rbuild touches a path inside a rootfs, a snapshot or an
//! export destination.
//!
//! A hostile Dockerfile or base image controls every symlink in a rootfs,
//! and rbuild runs as root, so a path inside a tree is never turned into a
//! host path and handed to a path-taking syscall: the kernel would follow
//! the last link wherever it points. Instead:
//!
//! - a [`Root`] is a directory handle (`O_PATH`); every lookup beneath it
//!   is made by the kernel with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)`, so `..`, absolute paths and symlinks
//!   (absolute or relative, however long the chain) resolve inside the
//!   root. Where `openat2` is unavailable (old kernels, seccomp profiles
//!   that refuse it), a component-by-component walk with `O_NOFOLLOW`
//!   resolves symlinks itself against the root and fails closed (`ELOOP`
//!   after 40 links, `ENOTDIR`), never returning an unresolved path;
//! - a [`Dir`] is a resolved directory handle, and every change inside it
//!   (create, remove, chown, chmod, utimes, xattrs, links) is made with the
//!   `*at` syscalls on that handle and one plain name that is never
//!   followed ([`Name`] refuses `/`, `.` and `..`).
//!
//! Design choice and its cost: callers hold handles, not paths, so an error
//! message names the path the caller asked for (callers add it), and each
//! step costs one or two syscalls more than a path walk by the kernel would.

mod dir;
mod node;
mod resolve;

pub use dir::{Dir, Name};
pub use node::Node;
pub use resolve::Resolver;
pub use rustix::fs::{FileType, Stat};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Symlinks followed at most while resolving one path (the kernel's limit).
pub const MAX_SYMLINKS: usize = 40;

/// A directory treated as `/` for every path resolved beneath it.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    resolver: Resolver,
}

impl Root {
    /// Open the directory at `path` (a trusted host path: the state dir, a
    /// snapshot dir, an export destination) as a root.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_with(path, Resolver::detect())
    }

    /// [`Root::open`] with a chosen resolver (tests force [`Resolver::Walk`]).
    pub fn open_with(path: impl AsRef<Path>, resolver: Resolver) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path.as_ref(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            dir: Dir::from_fd(fd),
            resolver,
        })
    }

    /// A root at an already-opened directory.
    pub fn from_dir(dir: Dir) -> Self {
        Self {
            dir,
            resolver: Resolver::detect(),
        }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The resolver in use.
    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    /// Open `path` (absolute or relative, both inside the root) with
    /// `flags`, following symlinks inside the root; the last component is
    /// followed only if `follow_last`.
    pub fn open_at(
        &self,
        path: impl AsRef<Path>,
        flags: OFlags,
        follow_last: bool,
    ) -> io::Result<OwnedFd> {
        resolve::open(
            self.resolver,
            self.dir.as_fd(),
            path.as_ref(),
            flags,
            follow_last,
        )
    }

    /// The directory at `path`, following every symlink inside the root.
    pub fn open_dir(&self, path: impl AsRef<Path>) -> io::Result<Dir> {
        self.open_at(path, OFlags::PATH | OFlags::DIRECTORY, true)
            .map(Dir::from_fd)
    }

    /// The parent directory of `path` (resolved, following symlinks) and
    /// the last component (not resolved). Fails with `InvalidInput` for the
    /// root itself.
    pub fn parent(&self, path: impl AsRef<Path>) -> io::Result<(Dir, Name)> {
        let (parent, name) = split_last(path.as_ref())?;
        Ok((self.open_dir(parent)?, name))
    }

    /// The directory and name of what `path` names once a symlink in its
    /// last component is followed too, inside the root, even when it
    /// dangles: the destination of a write that creates or replaces a file
    /// (BuildKit resolves COPY and mkfile destinations so). The name
    /// returned was not a symlink when looked at; a chain of more than
    /// [`MAX_SYMLINKS`] last-component links fails with `ELOOP`, as does a
    /// link whose target ends in `.` or `..` (`InvalidInput`).
    pub fn parent_following(&self, path: impl AsRef<Path>) -> io::Result<(Dir, Name)> {
        self.following(path.as_ref(), None)
    }

    /// [`Root::parent_following`], creating the missing parents of the
    /// final name with `mode` and `owner`, as [`Root::create_dir_all`].
    pub fn parent_following_or_create(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<(Dir, Name)> {
        self.following(path.as_ref(), Some((mode, owner)))
    }

    fn following(
        &self,
        path: &Path,
        create: Option<(u32, Option<(u32, u32)>)>,
    ) -> io::Result<(Dir, Name)> {
        let mut path = path.to_path_buf();
        for _ in 0..=MAX_SYMLINKS {
            let (parent, name) = split_last(&path)?;
            let dir = match create {
                Some((mode, owner)) => self.create_dir_all(parent, mode, owner)?,
                None => self.open_dir(parent)?,
            };
            match dir.try_stat(&name)? {
                Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    let target = dir.read_link(&name)?;
                    path = if target.is_absolute() {
                        target
                    } else {
                        parent.join(target)
                    };
                }
                _ => return Ok((dir, name)),
            }
        }
        Err(rustix::io::Errno::LOOP.into())
    }

    /// [`Root::parent`], creating missing parent directories with `mode`
    /// and `owner`, as `mkdir -p`.
    pub fn parent_or_create(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<(Dir, Name)> {
        let (parent, name) = split_last(path.as_ref())?;
        Ok((self.create_dir_all(parent, mode, owner)?, name))
    }

    /// `mkdir -p path` inside the root: existing directories (and symlinks
    /// to directories inside the root) are kept; created ones get `mode`
    /// and, if given, `owner`. A dangling symlink on the way is followed and
    /// its target created, as BuildKit's `MkdirAll` does. Returns the
    /// directory.
    pub fn create_dir_all(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<Dir> {
        self.create_dir_all_with(path, mode, owner, &mut |_, _| Ok(()))
    }

    /// [`Root::create_dir_all`], calling `before_create` with the parent
    /// handle and the name of each directory just before it is created (to
    /// remember what to remove again, and the parent's times to restore).
    pub fn create_dir_all_with(
        &self,
        path: impl AsRef<Path>,
        mode: u32,
        owner: Option<(u32, u32)>,
        before_create: &mut dyn FnMut(&Dir, &Name) -> io::Result<()>,
    ) -> io::Result<Dir> {
        resolve::create_dir_all(self, path.as_ref(), mode, owner, 0, before_create)
    }

    /// Metadata of `path`; the last component is followed only if
    /// `follow_last`.
    pub fn stat(&self, path: impl AsRef<Path>, follow_last: bool) -> io::Result<Stat> {
        let fd = self.open_at(path, OFlags::PATH, follow_last)?;
        rustix::fs::fstat(&fd).map_err(Into::into)
    }

    /// `path` with every symlink resolved inside the root, as an absolute
    /// path inside the root (`/` for the root itself), read back from the
    /// kernel (`/proc/self/fd`) after an in-root open. For handing a path to
    /// a consumer that only takes paths (a runtime's mount source or target)
    /// when nothing can change the tree meanwhile: a committed snapshot, or
    /// a rootfs before its process starts. Fails if the object is not below
    /// the root (it was moved away since).
    pub fn real_path(&self, path: impl AsRef<Path>, follow_last: bool) -> io::Result<PathBuf> {
        let fd = self.open_at(path, OFlags::PATH, follow_last)?;
        let real = std::fs::read_link(proc_path(&fd))?;
        let base = std::fs::read_link(proc_path(self.dir.as_fd()))?;
        match real.strip_prefix(&base) {
            Ok(rel) => Ok(Path::new("/").join(rel)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not below {}", real.display(), base.display()),
            )),
        }
    }

    /// [`Root::real_path`] as a host path: the root's own path joined with
    /// the resolved path inside it.
    pub fn real_host_path(&self, path: impl AsRef<Path>, follow_last: bool) -> io::Result<PathBuf> {
        let rel = self.real_path(path, follow_last)?;
        let base = std::fs::read_link(proc_path(self.dir.as_fd()))?;
        Ok(base.join(rel.strip_prefix("/").unwrap_or(&rel)))
    }

    /// Whether `path` exists (the last component not followed).
    pub fn exists(&self, path: impl AsRef<Path>) -> io::Result<bool> {
        match self.stat(path, false) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Open the regular file at `path` for reading, following symlinks
    /// inside the root. Anything but a regular file is refused (opening a
    /// fifo or device would block or act on the host's device).
    pub fn open_file(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let fd = self.open_at(path, OFlags::PATH, true)?;
        reopen_regular(fd.as_fd())
    }

    /// The whole content of the regular file at `path` (small files only:
    /// passwd, group).
    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        self.open_file(path)?.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// A path that names exactly the object `fd` refers to, for the few
/// syscalls that only take paths (a mount source, `lsetxattr`): the kernel
/// resolves `/proc/self/fd/N` to the opened object, never by name.
pub fn proc_path(fd: impl AsFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Reopen an `O_PATH` handle of a regular file for reading.
pub(crate) fn reopen_regular(fd: BorrowedFd<'_>) -> io::Result<File> {
    let st = rustix::fs::fstat(fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = rustix::fs::open(
        proc_path(fd),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(file))
}

/// Split `path` into its parent and last normal component.
fn split_last(path: &Path) -> io::Result<(&Path, Name)> {
    let bytes = path.as_os_str().as_bytes();
    let trimmed = {
        let mut b = bytes;
        while b.len() > 1 && b.ends_with(b"/") {
            b = &b[..b.len() - 1];
        }
        b
    };
    let (parent, last) = match trimmed.iter().rposition(|c| *c == b'/') {
        Some(i) => (&trimmed[..i.max(1).min(i + 1)], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let parent = if parent.is_empty() { &b"/"[..] } else { parent };
    let name = Name::new(OsStr::from_bytes(last)).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: has no last component to create", path.display()),
        )
    })?;
    Ok((Path::new(OsStr::from_bytes(parent)), name))
}

#[cfg(test)]
mod tests;
