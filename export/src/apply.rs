//! A small layer applier (for `type=local` and `type=tar`), and the writer
//! that tars an applied rootfs deterministically.
//!
//! Paths inside the rootfs are resolved against the rootfs, never the host:
//! a symlink met while resolving a parent directory is followed inside the
//! root (`..` stops at the root, absolute targets restart at the root), and
//! the final component is never followed. `..` in an entry name is an error.

use crate::{Error, IoContext, Result};
use rbuild_graph::Digest;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const MAX_SYMLINKS: usize = 255;

/// Split a tar path into normal components; `None` if it has a `..`.
fn components(raw: &[u8]) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Some(out)
}

/// Resolve `comps` (all of them directories to pass through) inside `root`,
/// following symlinks inside the root and creating missing directories
/// (0755, root-owned) when `create` is set. Returns the host path.
fn resolve_dir(root: &Path, comps: &[OsString], create: bool) -> io::Result<PathBuf> {
    let mut cur: Vec<OsString> = Vec::new();
    let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let mut p = root.to_path_buf();
        p.extend(&cur);
        p.push(&c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = fs::read_link(&p)?;
                let bytes = target.as_os_str().as_bytes();
                if bytes.starts_with(b"/") {
                    cur.clear();
                }
                for t in bytes.split(|b| *b == b'/').rev() {
                    queue.push_front(OsStr::from_bytes(t).to_os_string());
                }
            }
            Ok(m) if m.is_dir() => cur.push(c),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&p)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
                cur.push(c);
            }
            Err(e) => return Err(e),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&cur);
    Ok(p)
}

/// Remove whatever is at `p` (not following a symlink); missing is fine.
fn remove_all(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_times(p: &Path, mtime: u64) -> io::Result<()> {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: mtime as i64,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime as i64,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

struct Applier<'a> {
    root: &'a Path,
    layer: &'a Digest,
    is_root: bool,
    /// Logical paths this layer wrote (for opaque directories).
    written: HashSet<Vec<OsString>>,
    /// Directory modes and times, set when the layer is done.
    dirs: Vec<(PathBuf, u32, u64)>,
}

impl Applier<'_> {
    fn bad(&self, entry: &[u8], reason: impl Into<String>) -> Error {
        Error::BadLayerEntry {
            digest: self.layer.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn entry(&mut self, mut e: tar::Entry<'_, impl Read>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let comps = components(&raw).ok_or_else(|| self.bad(&raw, "path contains \"..\""))?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root itself: keep the directory as it is
        };
        let name_str = name.to_string_lossy();
        let io_err = |e: io::Error| self.bad(&raw, e.to_string());

        if name_str == WHITEOUT_OPAQUE {
            let dir = resolve_dir(self.root, parent, true).map_err(io_err)?;
            for child in fs::read_dir(&dir).at(&dir)? {
                let child = child.at(&dir)?;
                let mut logical = parent.to_vec();
                logical.push(child.file_name());
                if !self.written.contains(&logical) {
                    remove_all(&child.path()).map_err(io_err)?;
                }
            }
            return Ok(());
        }
        if name_str.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let dir = match resolve_dir(self.root, parent, false) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(e)),
            };
            return remove_all(&dir.join(OsStr::from_bytes(hidden))).map_err(io_err);
        }

        let dir = resolve_dir(self.root, parent, true).map_err(io_err)?;
        let target = dir.join(name);
        let is_dir_entry = kind == tar::EntryType::Directory;
        // Only an existing directory survives, and only for a directory entry.
        let keep_existing_dir = match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && is_dir_entry => true,
            Ok(_) => {
                remove_all(&target).map_err(io_err)?;
                false
            }
            Err(_) => false,
        };
        let h = e.header();
        let mode = h.mode().map_err(io_err)? & 0o7777;
        let uid = h.uid().map_err(io_err)?;
        let gid = h.gid().map_err(io_err)?;
        let mtime = h.mtime().map_err(io_err)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err)?;
                io::copy(&mut e, &mut f).map_err(io_err)?;
            }
            tar::EntryType::Directory => {
                if !keep_existing_dir {
                    fs::create_dir(&target).map_err(io_err)?;
                }
            }
            tar::EntryType::Symlink => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(&raw, "symlink without a target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(io_err)?;
            }
            tar::EntryType::Link => {
                let link = e
                    .link_name_bytes()
                    .ok_or_else(|| self.bad(&raw, "hard link without a target"))?;
                let lc = components(&link)
                    .ok_or_else(|| self.bad(&raw, "hard link target contains \"..\""))?;
                let Some((lname, lparent)) = lc.split_last() else {
                    return Err(self.bad(&raw, "hard link to the root"));
                };
                let src = resolve_dir(self.root, lparent, false)
                    .map_err(io_err)?
                    .join(lname);
                fs::hard_link(&src, &target).map_err(io_err)?;
                self.written.insert(comps);
                return Ok(()); // a hard link shares the target's metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = h.device_major().map_err(io_err)?.unwrap_or(0);
                let minor = h.device_minor().map_err(io_err)?.unwrap_or(0);
                let ft = match kind {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &target,
                    ft,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io_err(e.into()))?;
            }
            other => {
                return Err(self.bad(&raw, format!("unsupported tar entry type {other:?}")));
            }
        }
        if self.is_root {
            let (u, g) = (
                u32::try_from(uid).map_err(|_| self.bad(&raw, "uid out of range"))?,
                u32::try_from(gid).map_err(|_| self.bad(&raw, "gid out of range"))?,
            );
            std::os::unix::fs::lchown(&target, Some(u), Some(g)).map_err(io_err)?;
        }
        if let Some(exts) = e.pax_extensions().map_err(io_err)? {
            for ext in exts {
                let ext = ext.map_err(io_err)?;
                if let Some(attr) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    rustix::fs::lsetxattr(
                        &target,
                        OsStr::from_bytes(attr),
                        ext.value_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|e| io_err(e.into()))?;
                }
            }
        }
        if kind == tar::EntryType::Directory {
            self.dirs.push((target, mode, mtime));
        } else if kind != tar::EntryType::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err)?;
            set_times(&target, mtime).map_err(io_err)?;
        } else {
            set_times(&target, mtime).map_err(io_err)?;
        }
        self.written.insert(comps);
        Ok(())
    }
}

/// Apply one uncompressed layer tar to the rootfs directory `root`:
/// whiteouts (`.wh.NAME`) delete, opaque markers (`.wh..wh..opq`) empty a
/// directory of what lower layers put there, and every other entry is
/// created with its mode, owner (when running as root), xattrs and mtime.
/// `digest` names the layer in errors. The stream is read to its end, so
/// a digest-verifying reader underneath sees EOF.
pub fn apply_layer(root: &Path, layer: &mut dyn Read, digest: &Digest) -> Result<()> {
    let mut applier = Applier {
        root,
        layer: digest,
        is_root: rustix::process::geteuid().is_root(),
        written: HashSet::new(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(layer);
    let bad = |e: io::Error| Error::BadLayerEntry {
        digest: digest.clone(),
        entry: String::new(),
        reason: e.to_string(),
    };
    for e in archive.entries().map_err(bad)? {
        applier.entry(e.map_err(bad)?)?;
    }
    // Read past the end-of-archive marker so a verifying reader below sees EOF.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(bad)?;
    for (p, mode, mtime) in applier.dirs.iter().rev() {
        fs::set_permissions(p, fs::Permissions::from_mode(*mode)).at(p)?;
        set_times(p, *mtime).at(p)?;
    }
    Ok(())
}

/// Tar the tree under `root` to `w`: entries sorted by name, owners and
/// modes as on disk, hard links as link entries, mtimes clamped to `clamp`
/// when given. User and group names are left empty.
pub(crate) fn write_tree_tar(root: &Path, clamp: Option<u64>, w: &mut dyn Write) -> Result<()> {
    let mut b = tar::Builder::new(w);
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for ent in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let ent = ent.map_err(|e| Error::Io {
            path: e
                .path()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("walk loop")),
        })?;
        let p = ent.path();
        let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
        let m = fs::symlink_metadata(p).at(p)?;
        let ft = m.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        let mtime = u64::try_from(m.mtime()).unwrap_or(0);
        h.set_mtime(clamp.map_or(mtime, |c| mtime.min(c)));
        h.set_size(0);
        if !ft.is_dir() && m.nlink() > 1 {
            if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, &rel, first).at(p)?;
                continue;
            }
            inodes.insert((m.dev(), m.ino()), rel.clone());
        }
        use std::os::unix::fs::FileTypeExt;
        if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = fs::File::open(p).at(p)?;
            b.append_data(&mut h, &rel, f.take(m.len())).at(p)?;
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &rel, io::empty()).at(p)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(p).at(p)?;
            b.append_link(&mut h, &rel, &target).at(p)?;
        } else {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets cannot be archived
            });
            let rdev = m.rdev();
            h.set_device_major(rustix::fs::major(rdev)).at(p)?;
            h.set_device_minor(rustix::fs::minor(rdev)).at(p)?;
            b.append_data(&mut h, &rel, io::empty()).at(p)?;
        }
    }
    let w = b.into_inner().at(root)?;
    w.flush().at(root)
}
