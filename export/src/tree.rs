//! Writers of a final tree: into a destination directory (`type=local`) or
//! as one tar stream (`type=tar`).
//!
//! Both walk the source tree (a [`FinalTree`](crate::FinalTree) in the
//! state dir) through directory handles, depth first with names sorted, and
//! never by host path: a symlink in the tree is an entry, never a way down.
//! The local writer mirrors every directory it enters with a handle on the
//! same directory in the destination, so each change there is an `*at`
//! call on one plain name that is never followed.

use crate::{IoContext, Result};
use rbuild_fsroot::{Dir, FileType, Name, Root, Stat};
use rustix::fs::Timespec;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What the walk reports for one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// A directory, before its children.
    Enter,
    /// The same directory, after its children.
    Leave,
    /// Anything that is not a directory.
    Leaf,
}

/// One entry of the source tree.
struct Node<'a> {
    /// The source directory holding it.
    dir: &'a Dir,
    /// Its name there.
    name: &'a Name,
    /// Its path relative to the tree's root.
    rel: &'a Path,
    /// Its metadata (not following a symlink).
    st: &'a Stat,
}

impl Node<'_> {
    fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.st.st_mode)
    }

    fn mtime(&self) -> Timespec {
        Timespec {
            tv_sec: self.st.st_mtime as _,
            tv_nsec: self.st.st_mtime_nsec as _,
        }
    }
}

type Visitor<'f> = dyn FnMut(Visit, &Node<'_>) -> Result<()> + 'f;

/// Walk everything below `dir` (not `dir` itself), depth first, names
/// sorted. `base` is the tree's host path, for error messages only.
fn walk(dir: &Dir, base: &Path, rel: &mut PathBuf, f: &mut Visitor<'_>) -> Result<()> {
    for name in dir.entries().at(base.join(&*rel))? {
        rel.push(name.as_os_str());
        let st = dir.stat(&name).at(base.join(&*rel))?;
        let node = Node {
            dir,
            name: &name,
            rel,
            st: &st,
        };
        if node.kind() == FileType::Directory {
            f(Visit::Enter, &node)?;
            let sub = dir.open_dir(&name).at(base.join(&*rel))?;
            walk(&sub, base, rel, f)?;
            let node = Node {
                dir,
                name: &name,
                rel,
                st: &st,
            };
            f(Visit::Leave, &node)?;
        } else {
            f(Visit::Leaf, &node)?;
        }
        rel.pop();
    }
    Ok(())
}

/// The extended attributes of `name` in `dir` worth copying, sorted: all
/// but `security.selinux` (the labels of the scratch directory's
/// filesystem, not the image's) and `trusted.overlay.*`.
fn xattrs(dir: &Dir, name: &Name) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = dir.nofollow_path(name);
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(&path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(&path)?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key == b"security.selinux" || key.starts_with(b"trusted.overlay.") {
            continue;
        }
        let mut value = vec![0u8; 256];
        loop {
            match rustix::fs::lgetxattr(&path, OsStr::from_bytes(key), &mut value[..]) {
                Ok(len) => {
                    value.truncate(len);
                    out.push((key.to_vec(), value));
                    break;
                }
                Err(rustix::io::Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr_query(&path, OsStr::from_bytes(key))?;
                    value.resize(want.max(value.len() * 2), 0);
                }
                Err(rustix::io::Errno::NODATA) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies a source tree into a destination directory.
struct LocalWriter<'a> {
    dest: &'a Path,
    /// Handles on the destination directories from `dest` down to the one
    /// mirroring the source directory being walked.
    stack: Vec<Rc<Dir>>,
    /// The first destination name of each multiply-linked source inode.
    links: HashMap<(u64, u64), (Rc<Dir>, Name)>,
    is_root: bool,
    buf: Vec<u8>,
}

impl LocalWriter<'_> {
    fn here(&self) -> io::Result<Rc<Dir>> {
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| io::Error::other("destination walk underflow"))
    }

    fn visit(&mut self, visit: Visit, n: &Node<'_>) -> Result<()> {
        let at = self.dest.join(n.rel);
        match visit {
            Visit::Enter => {
                let d = self.here().at(&at)?;
                match d.try_stat(n.name).at(&at)? {
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Some(_) => {
                        d.remove_all(n.name).at(&at)?;
                        d.create_dir(n.name, 0o700).at(&at)?;
                    }
                    None => d.create_dir(n.name, 0o700).at(&at)?,
                }
                // Opened without following: a link swapped in meanwhile fails.
                let sub = d.open_dir(n.name).at(&at)?;
                self.stack.push(Rc::new(sub));
                Ok(())
            }
            Visit::Leave => {
                self.stack.pop();
                let d = self.here().at(&at)?;
                self.metadata(&d, n).at(&at)
            }
            Visit::Leaf => {
                let d = self.here().at(&at)?;
                self.leaf(&d, n).at(&at)
            }
        }
    }

    fn leaf(&mut self, d: &Rc<Dir>, n: &Node<'_>) -> io::Result<()> {
        let kind = n.kind();
        if kind == FileType::Socket {
            return Ok(()); // not content: tar cannot carry it either
        }
        d.remove_all(n.name)?;
        let inode = (n.st.st_dev, n.st.st_ino);
        if n.st.st_nlink > 1 {
            if let Some((first_dir, first)) = self.links.get(&inode) {
                // A hard link shares the first name's metadata.
                return d.hard_link(n.name, first_dir, first);
            }
        }
        match kind {
            FileType::RegularFile => {
                let mut src = n.dir.open_file(n.name)?;
                let mut dst = d.create_file(n.name, 0o600)?;
                loop {
                    let k = src.read(&mut self.buf)?;
                    if k == 0 {
                        break;
                    }
                    dst.write_all(&self.buf[..k])?;
                }
            }
            FileType::Symlink => d.symlink(n.name, n.dir.read_link(n.name)?)?,
            FileType::Fifo => d.mknod(n.name, kind, 0o600, 0)?,
            FileType::CharacterDevice | FileType::BlockDevice => {
                d.mknod(n.name, kind, 0o600, n.st.st_rdev)?
            }
            _ => return Ok(()),
        }
        if n.st.st_nlink > 1 {
            self.links.insert(inode, (Rc::clone(d), n.name.clone()));
        }
        self.metadata(d, n)
    }

    /// Owner (as root), mode, xattrs and times of `n` onto `n.name` in `d`.
    /// The owner goes first: chown clears set-id bits.
    fn metadata(&self, d: &Dir, n: &Node<'_>) -> io::Result<()> {
        if self.is_root {
            d.set_owner(n.name, n.st.st_uid, n.st.st_gid)?;
        }
        if n.kind() != FileType::Symlink {
            d.set_mode(n.name, n.st.st_mode & 0o7777)?;
        }
        for (k, v) in xattrs(n.dir, n.name)? {
            d.set_xattr(n.name, &k, &v)?;
        }
        d.set_times(n.name, n.mtime(), n.mtime())
    }
}

/// Write the tree below `src` (at host path `base`, for messages) into the
/// directory `dest`, created if missing.
pub(crate) fn write_local(src: &Dir, base: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).at(dest)?;
    let root = Root::open(dest).at(dest)?;
    let top = root.dir().try_clone().at(dest)?;
    let mut w = LocalWriter {
        dest,
        stack: vec![Rc::new(top)],
        links: HashMap::new(),
        is_root: rustix::process::geteuid().is_root(),
        buf: vec![0; 256 * 1024],
    };
    walk(src, base, &mut PathBuf::new(), &mut |v, n| w.visit(v, n))
}

/// Tar the tree below `src` to `w`: entries sorted by name, owners and modes
/// as on disk, hard links as link entries, mtimes clamped to `clamp` when
/// given. User and group names are left empty; sockets are skipped.
pub(crate) fn write_tar(
    src: &Dir,
    base: &Path,
    clamp: Option<u64>,
    w: &mut dyn Write,
) -> Result<()> {
    let mut b = tar::Builder::new(w);
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(src, base, &mut PathBuf::new(), &mut |visit, n| {
        if visit == Visit::Leave {
            return Ok(());
        }
        let at = base.join(n.rel);
        let kind = n.kind();
        let st = n.st;
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
        h.set_mtime(clamp.map_or(mtime, |c| mtime.min(c)));
        h.set_size(0);
        if kind == FileType::Socket {
            return Ok(()); // sockets cannot be archived
        }
        let inode = (st.st_dev, st.st_ino);
        if kind != FileType::Directory && st.st_nlink > 1 {
            if let Some(first) = inodes.get(&inode) {
                h.set_entry_type(tar::EntryType::Link);
                return b.append_link(&mut h, n.rel, first).at(&at);
            }
            inodes.insert(inode, n.rel.to_path_buf());
        }
        match kind {
            FileType::RegularFile => {
                let size = st.st_size as u64;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                let f = n.dir.open_file(n.name).at(&at)?;
                b.append_data(&mut h, n.rel, f.take(size)).at(&at)
            }
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, n.rel, io::empty()).at(&at)
            }
            FileType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = n.dir.read_link(n.name).at(&at)?;
                b.append_link(&mut h, n.rel, &target).at(&at)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                h.set_entry_type(match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                let rdev = st.st_rdev;
                h.set_device_major(rustix::fs::major(rdev)).at(&at)?;
                h.set_device_minor(rustix::fs::minor(rdev)).at(&at)?;
                b.append_data(&mut h, n.rel, io::empty()).at(&at)
            }
            _ => Ok(()),
        }
    })?;
    let w = b.into_inner().at(base)?;
    w.flush().at(base)
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
