//! One opened object inside a root (whatever its type), for readers that
//! walk a tree: COPY sources, content checksums.

use crate::{reopen_regular, Dir, Name, Root};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, OFlags, Stat};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An `O_PATH` handle of one object inside a root and its metadata, taken
/// when it was opened: a later swap of the name to a symlink changes
/// nothing, every read goes through the handle.
#[derive(Debug)]
pub struct Node {
    fd: OwnedFd,
    stat: Stat,
}

impl Node {
    fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let stat = rustix::fs::fstat(&fd)?;
        Ok(Self { fd, stat })
    }

    /// Metadata of the object (never of a link's target).
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    /// The object's type.
    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    /// Open the object for reading; anything but a regular file is refused.
    pub fn open_file(&self) -> io::Result<File> {
        reopen_regular(self.fd.as_fd())
    }

    /// The target of the symlink this object is (never resolved).
    pub fn read_link(&self) -> io::Result<PathBuf> {
        let t = rustix::fs::readlinkat(&self.fd, "", Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// The object as a directory handle (`ENOTDIR` if it is not one).
    pub fn into_dir(self) -> io::Result<Dir> {
        if self.kind() != FileType::Directory {
            return Err(rustix::io::Errno::NOTDIR.into());
        }
        Ok(Dir::from_fd(self.fd))
    }
}

impl AsFd for Node {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    /// The object at `path`, following symlinks inside the root; the last
    /// component is followed only if `follow_last`.
    pub fn node(&self, path: impl AsRef<Path>, follow_last: bool) -> io::Result<Node> {
        Node::from_fd(self.open_at(path, OFlags::PATH, follow_last)?)
    }
}

impl Dir {
    /// The object `name` in this directory (a symlink itself, not followed).
    pub fn node(&self, name: &Name) -> io::Result<Node> {
        Node::from_fd(self.open_path(name)?)
    }
}
