//! A resolved directory handle and the changes made through it: every
//! call takes one plain name, never followed.

use crate::{proc_path, reopen_regular};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One path component: not empty, no `/`, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(OsString);

impl Name {
    /// Check `name` is a single plain component.
    pub fn new(name: impl AsRef<OsStr>) -> io::Result<Self> {
        let n = name.as_ref();
        let b = n.as_bytes();
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{n:?} is not a single path component"),
            ));
        }
        Ok(Self(n.to_os_string()))
    }

    /// The name.
    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }
}

impl AsRef<OsStr> for Name {
    fn as_ref(&self) -> &OsStr {
        &self.0
    }
}

/// An open directory (an `O_PATH` handle) inside a root.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn times(atime: Timespec, mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: atime,
        last_modification: mtime,
    }
}

impl Dir {
    /// Wrap a directory handle.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// A second handle to the same directory.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?,
        })
    }

    /// Metadata of the directory itself.
    pub fn self_stat(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// Metadata of `name` (not following a symlink).
    pub fn stat(&self, name: &Name) -> io::Result<Stat> {
        Ok(rustix::fs::statat(
            &self.fd,
            name.as_os_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Metadata of `name`, or `None` if it does not exist.
    pub fn try_stat(&self, name: &Name) -> io::Result<Option<Stat>> {
        match self.stat(name) {
            Ok(st) => Ok(Some(st)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The subdirectory `name`; a symlink is refused (`ELOOP`/`ENOTDIR`).
    pub fn open_dir(&self, name: &Name) -> io::Result<Dir> {
        Ok(Dir::from_fd(rustix::fs::openat(
            &self.fd,
            name.as_os_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?))
    }

    /// An `O_PATH` handle of `name` itself, whatever it is.
    pub fn open_path(&self, name: &Name) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.fd,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// Open the regular file `name` for reading (anything else is refused).
    pub fn open_file(&self, name: &Name) -> io::Result<File> {
        let fd = self.open_path(name)?;
        reopen_regular(fd.as_fd())
    }

    /// Create the regular file `name` (it must not exist) with exactly
    /// `mode` (the umask does not apply), open for writing.
    pub fn create_file(&self, name: &Name, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(File::from(fd))
    }

    /// Create the directory `name` with exactly `mode`.
    pub fn create_dir(&self, name: &Name, mode: u32) -> io::Result<()> {
        rustix::fs::mkdirat(&self.fd, name.as_os_str(), Mode::from_raw_mode(0o700))?;
        self.set_mode(name, mode)
    }

    /// Create the symlink `name` pointing at `target` (never resolved).
    pub fn symlink(&self, name: &Name, target: impl AsRef<OsStr>) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(
            target.as_ref(),
            &self.fd,
            name.as_os_str(),
        )?)
    }

    /// Create the special file `name` (device, fifo, socket) with `mode`.
    pub fn mknod(&self, name: &Name, kind: FileType, mode: u32, dev: u64) -> io::Result<()> {
        rustix::fs::mknodat(
            &self.fd,
            name.as_os_str(),
            kind,
            Mode::from_raw_mode(0o600),
            dev,
        )?;
        self.set_mode(name, mode)
    }

    /// Hard-link `src_name` of `src` (not following a symlink) as `name`.
    pub fn hard_link(&self, name: &Name, src: &Dir, src_name: &Name) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &src.fd,
            src_name.as_os_str(),
            &self.fd,
            name.as_os_str(),
            AtFlags::empty(),
        )?)
    }

    /// Rename `name` to `to_name` in `to` (replacing a non-directory).
    pub fn rename(&self, name: &Name, to: &Dir, to_name: &Name) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.fd,
            name.as_os_str(),
            &to.fd,
            to_name.as_os_str(),
        )?)
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &Name) -> io::Result<PathBuf> {
        let t = rustix::fs::readlinkat(&self.fd, name.as_os_str(), Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// Remove `name` and, for a directory, everything below it; symlinks
    /// are removed, never followed. A missing `name` is not an error.
    pub fn remove_all(&self, name: &Name) -> io::Result<()> {
        let st = match self.try_stat(name)? {
            Some(st) => st,
            None => return Ok(()),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = self.open_dir(name)?;
            for child in sub.entries()? {
                sub.remove_all(&child)?;
            }
            match rustix::fs::unlinkat(&self.fd, name.as_os_str(), AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        } else {
            match rustix::fs::unlinkat(&self.fd, name.as_os_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }

    /// The names in this directory (without `.` and `..`), sorted.
    pub fn entries(&self) -> io::Result<Vec<Name>> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for e in rustix::fs::Dir::new(fd)? {
            let e = e?;
            let b = e.file_name().to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            out.push(Name(OsStr::from_bytes(b).to_os_string()));
        }
        out.sort();
        Ok(out)
    }

    /// Set the owner of `name` (a symlink itself, not its target).
    pub fn set_owner(&self, name: &Name, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            name.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Set the permission bits of `name`; a symlink is left as it is
    /// (Linux ignores a link's own mode, and its target is never touched).
    pub fn set_mode(&self, name: &Name, mode: u32) -> io::Result<()> {
        let fd = self.open_path(name)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Ok(());
        }
        // `/proc/self/fd/N` names exactly the opened inode.
        Ok(rustix::fs::chmodat(
            rustix::fs::CWD,
            proc_path(&fd),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )?)
    }

    /// Set the access and modification times of `name` (not following).
    pub fn set_times(&self, name: &Name, atime: Timespec, mtime: Timespec) -> io::Result<()> {
        Ok(rustix::fs::utimensat(
            &self.fd,
            name.as_os_str(),
            &times(atime, mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Set the times of this directory itself.
    pub fn set_self_times(&self, atime: Timespec, mtime: Timespec) -> io::Result<()> {
        Ok(rustix::fs::utimensat(
            rustix::fs::CWD,
            proc_path(&self.fd),
            &times(atime, mtime),
            AtFlags::empty(),
        )?)
    }

    /// Set the permission bits of this directory itself.
    pub fn set_self_mode(&self, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::chmodat(
            rustix::fs::CWD,
            proc_path(&self.fd),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )?)
    }

    /// Set the owner of this directory itself.
    pub fn set_self_owner(&self, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )?)
    }

    /// Set the extended attribute `key` of `name` (not following).
    pub fn set_xattr(&self, name: &Name, key: &[u8], value: &[u8]) -> io::Result<()> {
        // The directory is pinned by its handle; `lsetxattr` does not follow
        // the last component.
        let path = proc_path(&self.fd).join(name.as_os_str());
        Ok(rustix::fs::lsetxattr(
            &path,
            OsStr::from_bytes(key),
            value,
            rustix::fs::XattrFlags::empty(),
        )?)
    }

    /// A path naming `name` inside this pinned directory, for path-only
    /// syscalls that do not follow the last component (`lgetxattr`).
    pub fn nofollow_path(&self, name: &Name) -> PathBuf {
        proc_path(&self.fd).join(name.as_os_str())
    }
}
