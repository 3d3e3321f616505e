//! Layer apply: unpack an OCI layer tar into a directory.
//!
//! The `tar` crate only parses; every filesystem change is made here with
//! `*at` syscalls on directory handles obtained by `openat2(RESOLVE_IN_ROOT)`,
//! so `..`, absolute paths and symlinks (even ones planted earlier in the
//! same layer) can never lead outside the target. Entries with a `..`
//! component are rejected outright.

use crate::compress::decompress_reader;
use crate::fsutil::{
    clean_components, fd_path, list_xattrs, open_in_root, set_xattr, set_xattr_follow,
};
use crate::{Error, IoContext, Result};
use rbuild_fsroot::Root;
use rbuild_graph::Digest;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, CWD};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How whiteouts are materialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target is an overlay upper dir: write whiteouts as char 0/0
    /// devices and opaque dirs as `trusted.overlay.opaque=y`.
    Overlay,
    /// The target is a merged tree: delete the whited-out paths.
    Delete,
}

/// Where a layer is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyTarget {
    /// The directory that receives the entries.
    pub dir: PathBuf,
    /// How whiteouts are handled.
    pub mode: WhiteoutMode,
    /// For [`WhiteoutMode::Overlay`]: the lower dirs (topmost first), used
    /// to copy up hardlink targets and the metadata of implied parents.
    pub lowers: Vec<PathBuf>,
}

impl ApplyTarget {
    /// A plain directory: whiteouts delete what they name.
    pub fn plain(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            mode: WhiteoutMode::Delete,
            lowers: Vec::new(),
        }
    }
}

/// What applying a layer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub size: u64,
    /// Number of entries applied (whiteouts included).
    pub entries: u64,
}

/// A reader that hashes what passes through it.
pub(crate) struct HashReader<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub count: u64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Apply the layer read from `reader` (plain, gzip or zstd: detected by
/// magic bytes) to `target`, returning its diff_id.
///
/// Hardlinks, symlinks, device nodes, fifos, xattrs (`SCHILY.xattr.*`,
/// except `trusted.overlay.*`), numeric owners, set-id bits and mtimes are
/// restored. Fails with [`Error::UnsafePath`] on an entry with `..`.
pub fn apply_layer(reader: impl Read, target: &ApplyTarget) -> Result<ApplyStats> {
    let mut hr = HashReader {
        inner: decompress_reader(reader).at(&target.dir)?,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut applier = Applier::new(target)?;
    {
        let mut archive = tar::Archive::new(&mut hr);
        let entries = archive
            .entries()
            .map_err(|e| Error::InvalidLayer(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::InvalidLayer(e.to_string()))?;
            applier.entry(&mut entry)?;
        }
    }
    applier.finish()?;
    // Hash the end-of-archive blocks and any padding too.
    io::copy(&mut hr, &mut io::sink()).at(&target.dir)?;
    Ok(ApplyStats {
        diff_id: Digest::from_sha256(hr.hasher.finalize().into()),
        size: hr.count,
        entries: applier.entries,
    })
}

struct Applier<'a> {
    target: &'a ApplyTarget,
    root: Root,
    lowers: Vec<Root>,
    /// Paths this layer created (for opaque dirs in Delete mode).
    written: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, Timespec)>,
    is_root: bool,
    entries: u64,
    buf: Vec<u8>,
}

fn unsafe_path(path: &[u8], reason: &'static str) -> Error {
    Error::UnsafePath {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

fn os(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// An all-NUL/space numeric field (some writers leave ids empty): zero.
fn blank(field: &[u8]) -> bool {
    field.iter().all(|b| *b == 0 || *b == b' ')
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Parse a PAX time (`1700000000.5`) into a timespec.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)?) * 10i64.pow(8 - i as u32);
    }
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    })
}

impl<'a> Applier<'a> {
    fn new(target: &'a ApplyTarget) -> Result<Self> {
        let root = Root::open(&target.dir).at(&target.dir)?;
        let mut lowers = Vec::new();
        if target.mode == WhiteoutMode::Overlay {
            for l in &target.lowers {
                lowers.push(Root::open(l).at(l)?);
            }
        }
        Ok(Self {
            target,
            root,
            lowers,
            written: HashSet::new(),
            dir_times: Vec::new(),
            is_root: rustix::process::geteuid().is_root(),
            entries: 0,
            buf: vec![0; 256 * 1024],
        })
    }

    /// An error mapper naming `rel` under the target (borrows only the
    /// target, not `self`).
    fn err_at(&self, rel: &[u8]) -> impl Fn(io::Error) -> Error + 'a {
        let path = self.target.dir.join(os(rel));
        move |source| Error::Io {
            path: path.clone(),
            source,
        }
    }

    /// Open directory `comps` under the root, creating missing components
    /// (with the metadata of the same dir in a lower layer, if any).
    fn ensure_dir(&mut self, comps: &[&[u8]]) -> Result<OwnedFd> {
        let full = join(comps);
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match open_in_root(&self.root, os(&full), flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err_at(&full)(e)),
        }
        let mut fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(&self.root, 0)
            .map_err(|e| self.err_at(b"")(e.into()))?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match open_in_root(&self.root, os(&prefix), flags) {
                Ok(next) => fd = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    rustix::fs::mkdirat(&fd, os(comps[i]), Mode::from_raw_mode(0o755))
                        .map_err(|e| self.err_at(&prefix)(e.into()))?;
                    if let Some(st) = self.lower_stat(&prefix) {
                        self.set_owner_mode_time(&fd, comps[i], &st)?;
                    }
                    fd = open_in_root(&self.root, os(&prefix), flags)
                        .map_err(|e| self.err_at(&prefix)(e))?;
                }
                Err(e) => return Err(self.err_at(&prefix)(e)),
            }
        }
        Ok(fd)
    }

    /// Stat of `rel` in the topmost lower layer that has it.
    fn lower_stat(&self, rel: &[u8]) -> Option<rustix::fs::Stat> {
        // Resolved inside each lower (never by the host's rules).
        self.lowers.iter().find_map(|l| l.stat(os(rel), false).ok())
    }

    fn set_owner_mode_time(&self, dir: &OwnedFd, name: &[u8], st: &rustix::fs::Stat) -> Result<()> {
        let rel = os(name);
        let e = |e: rustix::io::Errno| self.err_at(name)(e.into());
        if self.is_root {
            rustix::fs::chownat(
                dir,
                rel,
                Some(rustix::fs::Uid::from_raw_unchecked(st.st_uid)),
                Some(rustix::fs::Gid::from_raw_unchecked(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(e)?;
        }
        rustix::fs::chmodat(
            dir,
            rel,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(e)?;
        let ts = Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        };
        set_times(dir, rel, ts).map_err(e)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let comps = clean_components(&raw).ok_or_else(|| unsafe_path(&raw, "`..` in path"))?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root itself: keep the target's metadata
        };
        let (name, parent) = (name.to_vec(), parent.to_vec());
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                return self.opaque(&parent);
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(unsafe_path(&raw, "malformed whiteout"));
            }
            return self.whiteout(&parent, hidden);
        }
        let full = join(&comps);
        let dir = self.ensure_dir(&parent)?;
        let name = &name[..];

        // Collect PAX records before reading the data.
        let mut xattrs = Vec::new();
        let (mut uid, mut gid, mut mtime) = (None, None, None);
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| Error::InvalidLayer(e.to_string()))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| Error::InvalidLayer(e.to_string()))?;
                let key = ext.key_bytes();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !x.starts_with(b"trusted.overlay.") {
                        xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if key == b"uid" {
                    uid = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|s| s.parse().ok());
                } else if key == b"gid" {
                    gid = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|s| s.parse().ok());
                } else if key == b"mtime" {
                    mtime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        let h = entry.header();
        let bad =
            |e: io::Error| Error::InvalidLayer(format!("{}: {e}", String::from_utf8_lossy(&raw)));
        let mode = h.mode().map_err(bad)? & 0o7777;
        let uid: u64 = match uid {
            Some(u) => u,
            None if blank(&h.as_old().uid) => 0,
            None => h.uid().map_err(bad)?,
        };
        let gid: u64 = match gid {
            Some(g) => g,
            None if blank(&h.as_old().gid) => 0,
            None => h.gid().map_err(bad)?,
        };
        let mtime = match mtime {
            Some(t) => t,
            None => Timespec {
                tv_sec: h.mtime().map_err(bad)? as i64,
                tv_nsec: 0,
            },
        };
        let dev = if matches!(kind, T::Char | T::Block) {
            (
                h.device_major().map_err(bad)?.unwrap_or(0),
                h.device_minor().map_err(bad)?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let errf = self.err_at(&full);
        let err = |e: rustix::io::Errno| errf(e.into());

        // Replace whatever is there, except a directory by a directory.
        let existing = rustix::fs::statat(&dir, os(name), AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir =
            existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !(kind == T::Directory && existing_is_dir) {
            remove_at(&dir, name).map_err(&errf)?;
        }

        let fmode = Mode::from_raw_mode(mode);
        match kind {
            T::Directory => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(&dir, os(name), Mode::from_raw_mode(0o700)).map_err(err)?;
                }
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let fd = rustix::fs::openat(
                    &dir,
                    os(name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(err)?;
                let mut file = File::from(fd);
                loop {
                    let n = entry.read(&mut self.buf).map_err(bad)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&self.buf[..n]).map_err(&errf)?;
                }
            }
            T::Symlink => {
                let target = link.filter(|l| !l.is_empty()).ok_or_else(|| {
                    Error::InvalidLayer(format!(
                        "symlink {} without target",
                        String::from_utf8_lossy(&raw)
                    ))
                })?;
                rustix::fs::symlinkat(os(&target), &dir, os(name)).map_err(err)?;
            }
            T::Link => {
                let target = link.unwrap_or_default();
                return self.hardlink(&dir, name, &full, &target);
            }
            T::Char | T::Block | T::Fifo => {
                let (ft, rdev) = match kind {
                    T::Char => (FileType::CharacterDevice, rustix::fs::makedev(dev.0, dev.1)),
                    T::Block => (FileType::BlockDevice, rustix::fs::makedev(dev.0, dev.1)),
                    _ => (FileType::Fifo, 0),
                };
                rustix::fs::mknodat(&dir, os(name), ft, fmode, rdev).map_err(err)?;
            }
            other => {
                return Err(Error::InvalidLayer(format!(
                    "{}: unsupported entry type {other:?}",
                    String::from_utf8_lossy(&raw)
                )))
            }
        }
        self.written.insert(full.clone());

        // Owner first (chown clears set-id bits), then mode, xattrs, time.
        if self.is_root {
            rustix::fs::chownat(
                &dir,
                os(name),
                Some(rustix::fs::Uid::from_raw_unchecked(uid as u32)),
                Some(rustix::fs::Gid::from_raw_unchecked(gid as u32)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(err)?;
        }
        if kind != T::Symlink {
            rustix::fs::chmodat(&dir, os(name), fmode, AtFlags::empty()).map_err(err)?;
        }
        if !xattrs.is_empty() {
            let p = fd_path(&dir).join(os(name));
            for (k, v) in &xattrs {
                set_xattr(&p, k, v).map_err(&errf)?;
            }
        }
        if kind == T::Directory {
            self.dir_times.push((full, mtime));
        } else {
            set_times(&dir, os(name), mtime).map_err(err)?;
        }
        Ok(())
    }

    fn hardlink(&mut self, dir: &OwnedFd, name: &[u8], full: &[u8], target: &[u8]) -> Result<()> {
        let tcomps = clean_components(target)
            .ok_or_else(|| unsafe_path(full, "hardlink target has `..`"))?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(unsafe_path(full, "hardlink to the root"));
        };
        let tfull = join(&tcomps);
        let present = open_in_root(
            &self.root,
            os(&join(tparent)),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .ok()
        .filter(|d| rustix::fs::statat(d, os(tname), AtFlags::SYMLINK_NOFOLLOW).is_ok());
        let tdir = match present {
            Some(d) => d,
            None if self.target.mode == WhiteoutMode::Overlay => {
                self.copy_up(tparent, tname, &tfull)?
            }
            None => {
                return Err(Error::InvalidLayer(format!(
                    "{}: hardlink target {} not found",
                    String::from_utf8_lossy(full),
                    String::from_utf8_lossy(target)
                )))
            }
        };
        rustix::fs::linkat(&tdir, os(tname), dir, os(name), AtFlags::empty())
            .map_err(|e| self.err_at(full)(e.into()))?;
        self.written.insert(full.to_vec());
        Ok(())
    }

    /// Copy a regular file or symlink from the lowers into the upper dir
    /// (a hardlink target from an earlier layer). Returns its parent's fd.
    fn copy_up(&mut self, parent: &[&[u8]], name: &[u8], full: &[u8]) -> Result<OwnedFd> {
        let pjoined = join(parent);
        let not_found = || {
            Error::InvalidLayer(format!(
                "hardlink target {} not found",
                String::from_utf8_lossy(full)
            ))
        };
        let (src_dir, st) = self
            .lowers
            .iter()
            .find_map(|l| {
                let d = open_in_root(l, os(&pjoined), OFlags::PATH | OFlags::DIRECTORY).ok()?;
                let st = rustix::fs::statat(&d, os(name), AtFlags::SYMLINK_NOFOLLOW).ok()?;
                Some((d, st))
            })
            .ok_or_else(not_found)?;
        let dir = self.ensure_dir(parent)?;
        let errf = self.err_at(full);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    &src_dir,
                    os(name),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| errf(e.into()))?;
                let dst = rustix::fs::openat(
                    &dir,
                    os(name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| errf(e.into()))?;
                io::copy(&mut File::from(src), &mut File::from(dst)).map_err(&errf)?;
            }
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(&src_dir, os(name), Vec::new())
                    .map_err(|e| errf(e.into()))?;
                rustix::fs::symlinkat(t.as_c_str(), &dir, os(name)).map_err(|e| errf(e.into()))?;
            }
            _ => return Err(not_found()),
        }
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            self.set_owner_mode_time(&dir, name, &st)?;
        }
        for (k, v) in list_xattrs(&fd_path(&src_dir).join(os(name))).map_err(&errf)? {
            if !k.starts_with(b"trusted.overlay.") {
                let _ = set_xattr(&fd_path(&dir).join(os(name)), &k, &v);
            }
        }
        Ok(dir)
    }

    fn whiteout(&mut self, parent: &[&[u8]], name: &[u8]) -> Result<()> {
        let mut comps = parent.to_vec();
        comps.push(name);
        let full = join(&comps);
        if self.written.contains(&full) {
            return Ok(()); // a whiteout never hides entries of its own layer
        }
        match self.target.mode {
            WhiteoutMode::Overlay => {
                let dir = self.ensure_dir(parent)?;
                if rustix::fs::statat(&dir, os(name), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    return Ok(());
                }
                rustix::fs::mknodat(&dir, os(name), FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| self.err_at(&full)(e.into()))?;
            }
            WhiteoutMode::Delete => {
                let dir = match open_in_root(
                    &self.root,
                    os(&join(parent)),
                    OFlags::PATH | OFlags::DIRECTORY,
                ) {
                    Ok(d) => d,
                    Err(_) => return Ok(()), // nothing there to hide
                };
                remove_at(&dir, name).map_err(self.err_at(&full))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_comps: &[&[u8]]) -> Result<()> {
        let full = join(dir_comps);
        let dir = self.ensure_dir(dir_comps)?;
        match self.target.mode {
            WhiteoutMode::Overlay => {
                set_xattr_follow(&fd_path(&dir), b"trusted.overlay.opaque", b"y")
                    .map_err(self.err_at(&full))?;
            }
            WhiteoutMode::Delete => {
                let p = fd_path(&dir);
                let children = std::fs::read_dir(&p).map_err(self.err_at(&full))?;
                for child in children {
                    let child = child.map_err(self.err_at(&full))?;
                    let name = child.file_name();
                    let mut c = full.clone();
                    if !c.is_empty() {
                        c.push(b'/');
                    }
                    c.extend_from_slice(name.as_bytes());
                    if !self.written.contains(&c) {
                        remove_at(&dir, name.as_bytes()).map_err(self.err_at(&c))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Set directory mtimes last: creating their children changed them.
    fn finish(&mut self) -> Result<()> {
        for (rel, ts) in self.dir_times.iter().rev() {
            match open_in_root(
                &self.root,
                os(rel),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            ) {
                Ok(fd) => {
                    // Follow the /proc magic link to the opened directory.
                    rustix::fs::utimensat(
                        CWD,
                        fd_path(&fd),
                        &Timestamps {
                            last_access: *ts,
                            last_modification: *ts,
                        },
                        AtFlags::empty(),
                    )
                    .map_err(|e| self.err_at(rel)(e.into()))?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err_at(rel)(e)),
            }
        }
        Ok(())
    }
}

fn set_times(dir: impl AsFd, rel: &Path, ts: Timespec) -> rustix::io::Result<()> {
    rustix::fs::utimensat(
        dir,
        rel,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

/// Remove `name` in `dir` whatever it is; no error if it is missing.
fn remove_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            // The /proc path names exactly the opened parent; remove_dir_all
            // never follows symlinks below it.
            std::fs::remove_dir_all(fd_path(dir).join(os(name)))
        }
        Ok(_) => Ok(rustix::fs::unlinkat(dir, os(name), AtFlags::empty())?),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
