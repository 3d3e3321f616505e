//! Small filesystem helpers shared by the snapshotters, the applier and the
//! differ: root-contained path resolution, xattrs, metadata-preserving tree
//! copies and atomic small-file writes.

use crate::{IoContext, Result};
use rbuild_fsroot::Root;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, CWD};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Open `rel` beneath `root` as if `root` were `/`: `..`, absolute paths
/// and symlinks (absolute or relative) are all resolved inside `root`, by
/// `rbuild-fsroot` (`openat2(RESOLVE_IN_ROOT)`, or its fail-closed walk
/// where `openat2` is refused). `O_NOFOLLOW` in `flags` means the last
/// component is not followed.
pub(crate) fn open_in_root(root: &Root, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let follow = !flags.contains(OFlags::NOFOLLOW);
    root.open_at(rel, flags & !OFlags::NOFOLLOW, follow)
}

/// A path naming an open fd, usable with path-only syscalls (`lsetxattr`).
/// The kernel resolves it to exactly the opened object.
pub(crate) fn fd_path(fd: impl AsFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// All extended attributes of `path` (not following symlinks), sorted by name.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path)?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr_query(path, name_os)?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                // Raced with a removal: skip it.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Set one extended attribute on `path` (not following symlinks).
pub(crate) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(
        path,
        OsStr::from_bytes(name),
        value,
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

/// Set one extended attribute on `path`, following symlinks (for
/// `/proc/self/fd/N` paths naming an opened directory).
pub(crate) fn set_xattr_follow(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::setxattr(
        path,
        OsStr::from_bytes(name),
        value,
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

/// Set owner, mode and mtime of `path` (symlinks: owner and mtime only).
pub(crate) fn set_meta(path: &Path, md: &fs::Metadata) -> io::Result<()> {
    let is_link = md.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        path,
        Some(rustix::fs::Uid::from_raw_unchecked(md.uid())),
        Some(rustix::fs::Gid::from_raw_unchecked(md.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !is_link {
        // chmod never follows: the mode goes to the object opened without
        // following, through its `/proc/self/fd` name.
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::chmodat(
            CWD,
            fd_path(&fd),
            Mode::from_raw_mode(md.mode() & 0o7777),
            AtFlags::empty(),
        )?;
    }
    set_mtime(path, md.mtime(), md.mtime_nsec())
}

/// Set atime and mtime of `path` (not following symlinks).
pub(crate) fn set_mtime(path: &Path, secs: i64, nsecs: i64) -> io::Result<()> {
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: nsecs as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Copy the tree at `src` into `dst` (which must exist and be empty),
/// preserving file types, hardlinks, devices, owners, modes, xattrs and
/// mtimes. Used by the copy snapshotter.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    for entry in walkdir::WalkDir::new(src).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(src).to_path_buf();
            crate::Error::Io {
                path,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let to = dst.join(rel);
        let md = entry.path().symlink_metadata().at(entry.path())?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).at(&to)?;
            dirs.push((to.clone(), md.clone()));
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    fs::hard_link(first, &to).at(&to)?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), to.clone());
            }
            copy_file_data(entry.path(), &to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).at(entry.path())?;
            std::os::unix::fs::symlink(&target, &to).at(&to)?;
        } else {
            let (file_type, dev) = if ft.is_char_device() {
                (rustix::fs::FileType::CharacterDevice, md.rdev())
            } else if ft.is_block_device() {
                (rustix::fs::FileType::BlockDevice, md.rdev())
            } else if ft.is_fifo() {
                (rustix::fs::FileType::Fifo, 0)
            } else {
                // Sockets are not part of a filesystem image.
                continue;
            };
            rustix::fs::mknodat(
                CWD,
                &to,
                file_type,
                Mode::from_raw_mode(md.mode() & 0o7777),
                dev,
            )
            .at(&to)?;
        }
        copy_xattrs(entry.path(), &to)?;
        set_meta(&to, &md).at(&to)?;
    }
    // Directory times last: creating children changed them.
    for (dir, md) in dirs.iter().rev() {
        set_meta(dir, md).at(dir)?;
    }
    let root_md = src.symlink_metadata().at(src)?;
    copy_xattrs(src, dst)?;
    set_meta(dst, &root_md).at(dst)?;
    Ok(())
}

/// Copy the xattrs of `src` onto `dst`.
pub(crate) fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    for (name, value) in list_xattrs(src).at(src)? {
        // Skip attributes this filesystem refuses (e.g. user.* on symlinks).
        match set_xattr(dst, &name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(e).at(dst),
        }
    }
    Ok(())
}

fn copy_file_data(src: &Path, dst: &Path) -> Result<()> {
    let mut from = fs::File::open(src).at(src)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .at(dst)?;
    io::copy(&mut from, &mut to).at(dst)?;
    Ok(())
}

/// Bytes used by the tree at `path` (allocated blocks, each inode counted
/// once) and its number of inodes.
pub(crate) fn tree_usage(path: &Path) -> Result<(u64, u64)> {
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    for entry in walkdir::WalkDir::new(path) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.io_error().map(|e| e.kind()) == Some(io::ErrorKind::NotFound) => continue,
            Err(e) => {
                return Err(crate::Error::Io {
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        let md = entry.metadata().map_err(|e| crate::Error::Io {
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        if seen.insert((md.dev(), md.ino())) {
            inodes += 1;
            bytes += md.blocks() * 512;
        }
    }
    Ok((bytes, inodes))
}

/// Write `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.as_file().sync_all().at(tmp.path())?;
    tmp.persist(path).map_err(|e| crate::Error::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    fsync_dir(dir);
    Ok(())
}

/// Best-effort fsync of a directory (makes renames and creations durable).
pub(crate) fn fsync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Remove `path` whatever it is (no error if it does not exist).
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    match path.symlink_metadata() {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path).at(path),
        Ok(_) => fs::remove_file(path).at(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// Split a byte path into its normal components, or `None` if it contains
/// `..`. Leading `/` and `.` components are dropped.
pub(crate) fn clean_components(path: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_components_rejects_dotdot() {
        assert_eq!(
            clean_components(b"./a//b/"),
            Some(vec![&b"a"[..], &b"b"[..]])
        );
        assert_eq!(
            clean_components(b"/abs/x"),
            Some(vec![&b"abs"[..], &b"x"[..]])
        );
        assert_eq!(clean_components(b"a/../../x"), None);
    }
}
