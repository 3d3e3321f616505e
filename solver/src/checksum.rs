//! Content checksums of local files for COPY cache keys: relative path, type,
//! mode, size, content (or link target); never mtime, never the host path.
//! File digests are remembered by (device, inode, size, mtime, ctime), so
//! selecting the same files twice reads them once.

use crate::fileop;
use crate::ignore::Matcher;
use crate::Error;
use rbuild_fsroot::{FileType, Node};
use rbuild_graph::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

type StatKey = (u64, u64, u64, i64, i64, i64, i64);

/// Hashes selections of local directories, memoizing file digests.
#[derive(Default)]
pub struct ContextHasher {
    files: Mutex<HashMap<StatKey, [u8; 32]>>,
    /// Hash owners too (files of a stage keep them when copied; a build
    /// context's files are copied as 0:0, so their owners never count).
    owners: bool,
}

impl ContextHasher {
    /// A hasher with an empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// A hasher that also covers each entry's uid and gid (for the files
    /// of a stage or an image).
    pub fn with_owners() -> Self {
        Self {
            owners: true,
            ..Self::default()
        }
    }

    /// A hasher whose memo is loaded from `path` (written by
    /// [`ContextHasher::save`]); a missing or unreadable file gives an
    /// empty memo. This is what makes a no-change rebuild skip reading
    /// the context: unchanged (inode, size, mtime, ctime) means unchanged
    /// content.
    pub fn load(path: &Path) -> Self {
        let mut files = HashMap::new();
        if let Ok(bytes) = fs::read(path) {
            // 7 little-endian u64/i64 fields and the 32-byte digest per entry.
            for rec in bytes.chunks_exact(7 * 8 + 32) {
                let f = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rec[i * 8..i * 8 + 8]);
                    b
                };
                let k: StatKey = (
                    u64::from_le_bytes(f(0)),
                    u64::from_le_bytes(f(1)),
                    u64::from_le_bytes(f(2)),
                    i64::from_le_bytes(f(3)),
                    i64::from_le_bytes(f(4)),
                    i64::from_le_bytes(f(5)),
                    i64::from_le_bytes(f(6)),
                );
                let mut d = [0u8; 32];
                d.copy_from_slice(&rec[56..88]);
                files.insert(k, d);
            }
        }
        Self {
            files: Mutex::new(files),
            owners: false,
        }
    }

    /// Write the memo to `path` atomically (at most `limit` entries).
    pub fn save(&self, path: &Path, limit: usize) -> std::io::Result<()> {
        use std::io::Write;
        let files = self
            .files
            .lock()
            .map_err(|_| std::io::Error::other("hash memo poisoned"))?;
        let mut out = Vec::with_capacity(files.len().min(limit) * 88);
        for (k, d) in files.iter().take(limit) {
            out.extend_from_slice(&k.0.to_le_bytes());
            out.extend_from_slice(&k.1.to_le_bytes());
            out.extend_from_slice(&k.2.to_le_bytes());
            out.extend_from_slice(&k.3.to_le_bytes());
            out.extend_from_slice(&k.4.to_le_bytes());
            out.extend_from_slice(&k.5.to_le_bytes());
            out.extend_from_slice(&k.6.to_le_bytes());
            out.extend_from_slice(d);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&out)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    fn file_digest(&self, node: &Node, rel: &str) -> Result<[u8; 32], Error> {
        let st = node.stat();
        let k: StatKey = (
            st.st_dev,
            st.st_ino,
            st.st_size as _,
            st.st_mtime as _,
            st.st_mtime_nsec as _,
            st.st_ctime as _,
            st.st_ctime_nsec as _,
        );
        if let Some(d) = self
            .files
            .lock()
            .map_err(|_| Error::Internal("hash memo poisoned".into()))?
            .get(&k)
        {
            return Ok(*d);
        }
        let read_err = |e| Error::Io(format!("read {rel}"), e);
        let mut f = node.open_file().map_err(read_err)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d: [u8; 32] = h.finalize().into();
        self.files
            .lock()
            .map_err(|_| Error::Internal("hash memo poisoned".into()))?
            .insert(k, d);
        Ok(d)
    }

    /// Hash `node` (at `rel` in its tree) and, for a directory, what is
    /// below it; every child is opened through its parent's handle.
    fn walk(
        &self,
        node: Node,
        rel: &str,
        filter: Option<&Matcher>,
        h: &mut Sha256,
        files: &mut Vec<(String, Digest)>,
    ) -> Result<(), Error> {
        let st = *node.stat();
        let mode: u32 = st.st_mode as _;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(mode.to_le_bytes());
        if self.owners {
            h.update(st.st_uid.to_le_bytes());
            h.update(st.st_gid.to_le_bytes());
        }
        match node.kind() {
            FileType::RegularFile => {
                let size: u64 = st.st_size as _;
                h.update(b"f");
                h.update(size.to_le_bytes());
                let d = self.file_digest(&node, rel)?;
                h.update(d);
                let mut entry = Sha256::new();
                entry.update(mode.to_le_bytes());
                entry.update(d);
                files.push((
                    rel.to_string(),
                    Digest::from_sha256(entry.finalize().into()),
                ));
            }
            FileType::Symlink => {
                h.update(b"l");
                let t = node
                    .read_link()
                    .map_err(|e| Error::Io(format!("readlink {rel}"), e))?;
                h.update(t.as_os_str().as_encoded_bytes());
            }
            FileType::Directory => {
                h.update(b"d");
                let dir = node
                    .into_dir()
                    .map_err(|e| Error::Io(format!("read dir {rel}"), e))?;
                let names = dir
                    .entries()
                    .map_err(|e| Error::Io(format!("read dir {rel}"), e))?;
                for n in names {
                    let child_rel = format!(
                        "{}/{}",
                        rel.trim_end_matches('/'),
                        n.as_os_str().to_string_lossy()
                    );
                    let child = dir
                        .node(&n)
                        .map_err(|e| Error::Io(format!("stat {child_rel}"), e))?;
                    if let Some(f) = filter {
                        let is_dir = child.kind() == FileType::Directory;
                        if f.excludes(&child_rel) && !(is_dir && f.has_exclusions()) {
                            continue;
                        }
                    }
                    self.walk(child, &child_rel, filter, h, files)?;
                }
            }
            _ => {
                let rdev: u64 = st.st_rdev as _;
                h.update(b"o");
                h.update(rdev.to_le_bytes());
            }
        }
        h.update([0xff]);
        Ok(())
    }

    /// Checksum of what `src` (may contain wildcards) selects under `root`.
    pub fn checksum(
        &self,
        root: &Path,
        src: &str,
        follow: bool,
        filter: Option<&Matcher>,
    ) -> Result<Digest, Error> {
        Ok(self.checksum_detailed(root, src, follow, filter)?.digest)
    }

    /// Like [`ContextHasher::checksum`], also counting the matches of
    /// `src` and listing each selected regular file with a digest of its mode
    /// and content (to explain cache misses). Everything is read through a
    /// root handle on `root`: symlinks resolve inside it.
    pub fn checksum_detailed(
        &self,
        root: &Path,
        src: &str,
        follow: bool,
        filter: Option<&Matcher>,
    ) -> Result<Selection, Error> {
        let filter = filter.filter(|f| !f.is_empty());
        let root = fileop::open_root(root)?;
        let mut h = Sha256::new();
        let mut files = Vec::new();
        let matches = fileop::expand_sources(&root, src, true, filter)?;
        for m in &matches {
            let node = root.node(m, follow).map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    Error::File(fileop::FileOpError::TooManyLinks {
                        op: "stat",
                        path: m.clone(),
                    })
                } else {
                    Error::Io(format!("stat {m}"), e)
                }
            })?;
            self.walk(node, m, filter, &mut h, &mut files)?;
        }
        Ok(Selection {
            digest: Digest::from_sha256(h.finalize().into()),
            matched: matches.len(),
            files,
        })
    }
}

/// What a COPY source selects in a local directory.
#[derive(Debug)]
pub struct Selection {
    /// Checksum of everything selected.
    pub digest: Digest,
    /// How many paths `src` matched (before descending into directories).
    pub matched: usize,
    /// Regular files selected, as (path, digest of mode and content).
    pub files: Vec<(String, Digest)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn memo_survives_save_and_load() {
        let t = tempfile::tempdir().expect("tmp");
        fs::write(t.path().join("a.txt"), "one").expect("write");
        let h = ContextHasher::new();
        let sum = h.checksum(t.path(), "a.txt", true, None).expect("sum");
        let memo = t.path().join("memo");
        h.save(&memo, 1000).expect("save");
        let h2 = ContextHasher::load(&memo);
        assert_eq!(h2.files.lock().expect("lock").len(), 1);
        assert_eq!(
            h2.checksum(t.path(), "a.txt", true, None).expect("sum"),
            sum
        );
    }

    #[test]
    fn checksum_ignores_mtime_and_sees_content_and_mode() {
        let t = tempfile::tempdir().expect("tmp");
        fs::write(t.path().join("a.txt"), "one").expect("write");
        fs::write(t.path().join("b.txt"), "two").expect("write");
        let h = ContextHasher::new();
        let a1 = h.checksum(t.path(), "a.txt", true, None).expect("sum");
        let all1 = h.checksum(t.path(), "*.txt", true, None).expect("sum");
        // Touching b.txt's content changes the wildcard sum but not a.txt's.
        fs::write(t.path().join("b.txt"), "TWO").expect("write");
        assert_eq!(h.checksum(t.path(), "a.txt", true, None).expect("sum"), a1);
        assert_ne!(
            h.checksum(t.path(), "*.txt", true, None).expect("sum"),
            all1
        );
        // mtime alone changes nothing.
        let before = h.checksum(t.path(), "a.txt", true, None).expect("sum");
        let f = fs::File::options()
            .write(true)
            .open(t.path().join("a.txt"))
            .expect("open");
        f.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("mtime");
        assert_eq!(
            h.checksum(t.path(), "a.txt", true, None).expect("sum"),
            before
        );
        // Mode changes it.
        fs::set_permissions(t.path().join("a.txt"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        assert_ne!(
            h.checksum(t.path(), "a.txt", true, None).expect("sum"),
            before
        );
    }
}
