//! Layer diff: turn a snapshot's changes into a reproducible OCI layer tar.
//!
//! Output rules (so identical inputs give byte-identical tars): entries in
//! depth-first order with names sorted bytewise in each directory; ustar
//! headers with numeric uid/gid and empty uname/gname; no atime/ctime; PAX
//! records only for long names/link targets, big ids and xattrs; mtimes
//! clamped to `SOURCE_DATE_EPOCH` when given; hardlinks inside the layer
//! kept as link entries. The tar is streamed: memory use does not depend on
//! the size of the layer.

use crate::fsutil::list_xattrs;
use crate::{Error, IoContext, Result};
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What to diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffSource {
    /// An overlay upper dir: everything in it is the change; char 0/0
    /// devices are whiteouts and `trusted.overlay.opaque=y` marks opaque
    /// directories.
    Overlay {
        /// The upper directory.
        upper: PathBuf,
    },
    /// Two full trees: the change from `lower` (or nothing) to `upper`.
    Compare {
        /// The parent tree, if any.
        lower: Option<PathBuf>,
        /// The new tree.
        upper: PathBuf,
    },
}

/// Options of [`write_layer_tar`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Clamp every mtime to at most this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// Write the uncompressed layer tar of `source` to `out`.
pub fn write_layer_tar(source: &DiffSource, out: impl Write, opts: &DiffOptions) -> Result<()> {
    let mut w = TarWriter {
        out,
        epoch: opts.source_date_epoch,
        links: HashMap::new(),
        buf: vec![0; 256 * 1024],
    };
    match source {
        DiffSource::Overlay { upper } => w.overlay(upper)?,
        DiffSource::Compare { lower, upper } => {
            w.compare(b"", lower.as_deref(), upper)?;
        }
    }
    w.out.write_all(&[0u8; 1024]).at(Path::new("<layer tar>"))?;
    w.out.flush().at(Path::new("<layer tar>"))?;
    Ok(())
}

struct TarWriter<W> {
    out: W,
    epoch: Option<i64>,
    /// (dev, ino) of multiply-linked files already written → their tar name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn child(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = rel.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// Directory entries sorted by name.
fn sorted_names(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).at(dir)? {
        names.push(e.at(dir)?.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}

fn os(b: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(b))
}

fn is_whiteout_dev(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut v = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut v[..]),
        Ok(1) if v[0] == b'y'
    )
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where len counts the whole record.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

const MAX_OCTAL_ID: u64 = 0o7777777;

impl<W: Write> TarWriter<W> {
    fn clamp(&self, t: i64) -> u64 {
        let t = match self.epoch {
            Some(e) if t > e => e,
            _ => t,
        };
        t.max(0) as u64
    }

    fn overlay(&mut self, upper: &Path) -> Result<()> {
        for entry in walkdir::WalkDir::new(upper)
            .min_depth(1)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| Error::Io {
                path: e.path().unwrap_or(upper).to_path_buf(),
                source: e.into(),
            })?;
            let rel = entry.path().strip_prefix(upper).unwrap_or(entry.path());
            let rel = rel.as_os_str().as_bytes();
            let md = entry.path().symlink_metadata().at(entry.path())?;
            if is_whiteout_dev(&md) {
                let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
                    Some(i) => (&rel[..i], &rel[i + 1..]),
                    None => (&b""[..], rel),
                };
                let mut wh = b".wh.".to_vec();
                wh.extend_from_slice(name);
                self.whiteout(&child(parent, &wh), md.mtime())?;
                continue;
            }
            self.entry(rel, entry.path(), &md)?;
            if md.is_dir() && is_opaque(entry.path()) {
                self.whiteout(&child(rel, b".wh..wh..opq"), md.mtime())?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, rel: &[u8], lower: Option<&Path>, upper: &Path) -> Result<()> {
        let up = sorted_names(upper)?;
        let low = match lower {
            Some(l) => sorted_names(l)?,
            None => Vec::new(),
        };
        let (mut i, mut j) = (0, 0);
        while i < up.len() || j < low.len() {
            let ord = match (up.get(i), low.get(j)) {
                (Some(u), Some(l)) => u.cmp(l),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Greater => {
                    // Only in lower: deleted.
                    let lp = lower.map(|l| l.join(os(&low[j]))).unwrap_or_default();
                    let mtime = lp.symlink_metadata().map(|m| m.mtime()).unwrap_or(0);
                    let mut wh = b".wh.".to_vec();
                    wh.extend_from_slice(&low[j]);
                    self.whiteout(&child(rel, &wh), mtime)?;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    let name = &up[i];
                    self.tree(&child(rel, name), &upper.join(os(name)))?;
                    i += 1;
                }
                std::cmp::Ordering::Equal => {
                    let name = &up[i];
                    let (lp, upth) = (
                        lower.map(|l| l.join(os(name))).unwrap_or_default(),
                        upper.join(os(name)),
                    );
                    let crel = child(rel, name);
                    let lm = lp.symlink_metadata().at(&lp)?;
                    let um = upth.symlink_metadata().at(&upth)?;
                    if um.is_dir() && lm.is_dir() {
                        if !same_meta(&lp, &lm, &upth, &um)? {
                            self.entry(&crel, &upth, &um)?;
                        }
                        self.compare(&crel, Some(&lp), &upth)?;
                    } else if um.is_dir() {
                        self.tree(&crel, &upth)?;
                    } else if !same_file(&lp, &lm, &upth, &um)? {
                        self.entry(&crel, &upth, &um)?;
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Emit `path` and, if it is a directory, everything below it.
    fn tree(&mut self, rel: &[u8], path: &Path) -> Result<()> {
        let md = path.symlink_metadata().at(path)?;
        self.entry(rel, path, &md)?;
        if md.is_dir() {
            for name in sorted_names(path)? {
                self.tree(&child(rel, &name), &path.join(os(&name)))?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &[u8], mtime: i64) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.clamp(mtime));
        zero_dev(&mut h);
        self.header(h, rel, None, &[], 0, 0)
    }

    fn entry(&mut self, rel: &[u8], path: &Path, md: &Metadata) -> Result<()> {
        use tar::EntryType as T;
        let ft = md.file_type();
        let mut h = tar::Header::new_ustar();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid().into());
        h.set_gid(md.gid().into());
        h.set_mtime(self.clamp(md.mtime()));
        h.set_size(0);
        zero_dev(&mut h);
        let mut name = rel.to_vec();
        let mut link = None;
        let mut data = false;
        if ft.is_dir() {
            h.set_entry_type(T::Directory);
            name.push(b'/');
        } else if ft.is_file() {
            let first = if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                match self.links.get(&key) {
                    Some(first) => Some(first.clone()),
                    None => {
                        self.links.insert(key, rel.to_vec());
                        None
                    }
                }
            } else {
                None
            };
            match first {
                Some(first) => {
                    h.set_entry_type(T::Link);
                    link = Some(first);
                }
                None => {
                    h.set_entry_type(T::Regular);
                    h.set_size(md.len());
                    data = true;
                }
            }
        } else if ft.is_symlink() {
            h.set_entry_type(T::Symlink);
            let target = fs::read_link(path).at(path)?;
            link = Some(target.as_os_str().as_bytes().to_vec());
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                T::Char
            } else {
                T::Block
            });
            let rdev = md.rdev();
            h.set_device_major(rustix::fs::major(rdev)).at(path)?;
            h.set_device_minor(rustix::fs::minor(rdev)).at(path)?;
        } else if ft.is_fifo() {
            h.set_entry_type(T::Fifo);
        } else {
            return Ok(()); // sockets do not belong in a layer
        }
        let xattrs: Vec<_> = list_xattrs(path)
            .at(path)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with(b"trusted.overlay."))
            .collect();
        self.header(
            h,
            &name,
            link.as_deref(),
            &xattrs,
            md.uid().into(),
            md.gid().into(),
        )?;
        if data {
            let mut f = File::open(path).at(path)?;
            self.copy_data(&mut f, md.len(), path)?;
        }
        Ok(())
    }

    /// Write a (PAX +) ustar header for `name`.
    fn header(
        &mut self,
        mut h: tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        uid: u64,
        gid: u64,
    ) -> Result<()> {
        let here = Path::new("<layer tar>");
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax_record(&mut pax, b"path", name);
        }
        if let Some(l) = link {
            if l.len() > 100 {
                pax_record(&mut pax, b"linkpath", l);
            }
        }
        if uid > MAX_OCTAL_ID {
            pax_record(&mut pax, b"uid", uid.to_string().as_bytes());
        }
        if gid > MAX_OCTAL_ID {
            pax_record(&mut pax, b"gid", gid.to_string().as_bytes());
        }
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            let mut ph = tar::Header::new_ustar();
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_uid(0);
            ph.set_gid(0);
            ph.set_mtime(h.mtime().unwrap_or(0));
            ph.set_size(pax.len() as u64);
            zero_dev(&mut ph);
            let base = name
                .strip_suffix(b"/")
                .unwrap_or(name)
                .rsplit(|b| *b == b'/')
                .next()
                .unwrap_or(b"");
            let mut pname = b"PaxHeaders/".to_vec();
            pname.extend_from_slice(&base[..base.len().min(89)]);
            set_name(&mut ph, &pname);
            ph.set_cksum();
            self.out.write_all(ph.as_bytes()).at(here)?;
            self.out.write_all(&pax).at(here)?;
            self.pad(pax.len() as u64)?;
        }
        set_name(&mut h, &name[..name.len().min(100)]);
        if let Some(l) = link {
            if let Some(u) = h.as_ustar_mut() {
                let n = l.len().min(100);
                u.linkname[..n].copy_from_slice(&l[..n]);
            }
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes()).at(here)
    }

    fn copy_data(&mut self, f: &mut File, size: u64, path: &Path) -> Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = f.read(&mut self.buf[..want]).at(path)?;
            if n == 0 {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being archived",
                    ),
                });
            }
            self.out.write_all(&self.buf[..n]).map_err(io_err(path))?;
            left -= n as u64;
        }
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; 512][..512 - rem])
                .at(Path::new("<layer tar>"))?;
        }
        Ok(())
    }
}

/// Write explicit zero device numbers, as GNU tar does.
fn zero_dev(h: &mut tar::Header) {
    let _ = h.set_device_major(0);
    let _ = h.set_device_minor(0);
}

fn set_name(h: &mut tar::Header, name: &[u8]) {
    if let Some(u) = h.as_ustar_mut() {
        u.name = [0; 100];
        let n = name.len().min(100);
        u.name[..n].copy_from_slice(&name[..n]);
    }
}

fn same_meta(lp: &Path, lm: &Metadata, up: &Path, um: &Metadata) -> Result<bool> {
    Ok(lm.mode() == um.mode()
        && lm.uid() == um.uid()
        && lm.gid() == um.gid()
        && lm.mtime() == um.mtime()
        && lm.mtime_nsec() == um.mtime_nsec()
        && list_xattrs(lp).at(lp)? == list_xattrs(up).at(up)?)
}

fn same_file(lp: &Path, lm: &Metadata, up: &Path, um: &Metadata) -> Result<bool> {
    if lm.file_type() != um.file_type()
        || lm.len() != um.len()
        || lm.rdev() != um.rdev()
        || !same_meta(lp, lm, up, um)?
    {
        return Ok(false);
    }
    if lm.file_type().is_symlink() {
        return Ok(fs::read_link(lp).at(lp)? == fs::read_link(up).at(up)?);
    }
    if lm.is_file() && lm.mtime_nsec() == 0 {
        // Coarse timestamps cannot prove equality: compare the bytes.
        return same_content(lp, up);
    }
    Ok(true)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (File::open(a).at(a)?, File::open(b).at(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).at(a)?;
        let nb = read_full(&mut fb, &mut bb).at(b)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
