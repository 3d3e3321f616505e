//! The content store: immutable blobs addressed by sha256.

use crate::{Error, IoContext, Owner, ProcessLease, Result};
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// An OCI content descriptor: media type, digest and size of a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the blob.
    pub media_type: String,
    /// Digest of the blob.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Annotations, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (in an index), if any, as the raw JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with no annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            annotations: None,
            platform: None,
        }
    }
}

/// A directory of blobs: `<root>/blobs/sha256/<hex>`, with in-progress
/// writes under `<root>/ingest/<pid>-<start>-…` (named after the writing
/// process, see [`Owner::name_prefix`]).
///
/// With a lease ([`ContentStore::set_lease`], shared by all clones), every
/// blob this process commits, stores or [`ContentStore::hold`]s is added
/// to it before it becomes visible or is looked at.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
    lease: Arc<OnceLock<Arc<ProcessLease>>>,
}

impl ContentStore {
    /// Open (creating if needed) a store under `root`. Leftovers of
    /// interrupted ingests are never visible as blobs; remove them with
    /// [`ContentStore::clean_ingest`], which spares those of running
    /// processes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).at(&blobs)?;
        let ingest = root.join("ingest");
        fs::create_dir_all(&ingest).at(&ingest)?;
        Ok(Self {
            root,
            lease: Arc::default(),
        })
    }

    /// Protect everything this store (and its clones) writes or holds from
    /// here on with `lease`. The first lease set stays.
    pub fn set_lease(&self, lease: Arc<ProcessLease>) {
        let _ = self.lease.set(lease);
    }

    fn lease_blob(&self, digest: &Digest) -> Result<()> {
        match self.lease.get() {
            Some(l) => l.add(std::slice::from_ref(digest), &[]),
            None => Ok(()),
        }
    }

    /// Add `digest` to this store's lease, then say whether the blob is
    /// present: a `true` stays true until the lease ends.
    pub fn hold(&self, digest: &Digest) -> Result<bool> {
        self.lease_blob(digest)?;
        Ok(self.contains(digest))
    }

    /// Remove the ingest files of processes that no longer run (and those
    /// of older versions, which did not name their owner); those of running
    /// processes are blobs being written. Returns how many were removed.
    pub fn clean_ingest(&self) -> Result<usize> {
        let ingest = self.root.join("ingest");
        let mut n = 0;
        for e in fs::read_dir(&ingest).at(&ingest)? {
            let e = e.at(&ingest)?;
            let name = e.file_name();
            let owner = name.to_str().and_then(Owner::from_name);
            if owner.is_some_and(|o| o.is_alive()) {
                continue;
            }
            if fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size of a present blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            Err(e) => Err(e).at(&p),
        }
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(digest.clone())),
            Err(e) => Err(e).at(&p),
        }
    }

    /// Read a whole (small) blob, such as a manifest or config.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let p = self.blob_path(digest);
        self.open_blob(digest)?.read_to_end(&mut buf).at(&p)?;
        Ok(buf)
    }

    /// Start writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter> {
        let dir = self.root.join("ingest");
        let owner = Owner::current()
            .map(|o| o.name_prefix())
            .ok_or_else(|| Error::Io {
                path: dir.clone(),
                source: io::Error::other("cannot read /proc/self/stat"),
            })?;
        let file = tempfile::Builder::new()
            .prefix(&owner)
            .tempfile_in(&dir)
            .at(&dir)?;
        Ok(BlobWriter {
            store: self.clone(),
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Store `bytes` and return their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if self.hold(&digest)? {
            return Ok(digest);
        }
        let mut w = self.writer()?;
        w.write_all(bytes).at(self.root())?;
        w.commit(Some((&digest, bytes.len() as u64)))?;
        Ok(digest)
    }

    /// Copy `reader` into the store, verifying against `expected` if given.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).at(self.root())?;
        w.commit(expected)
    }

    /// Delete a blob (no error if missing).
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at(&p),
        }
    }

    /// All blob digests present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Some(name) = e.file_name().to_str() {
                if let Ok(d) = format!("sha256:{name}").parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A blob being written: hashes while writing; [`BlobWriter::commit`]
/// verifies, fsyncs and renames it into place. Dropping it discards the data.
pub struct BlobWriter {
    store: ContentStore,
    file: io::BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Verify against `expected` (digest, size) if given, fsync, and move the
    /// blob into place. Returns its digest and size.
    pub fn commit(self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let digest = Digest::from_sha256(self.hasher.finalize().into());
        let size = self.size;
        if let Some((want, want_size)) = expected {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
            if want_size != size {
                return Err(Error::SizeMismatch {
                    digest,
                    expected: want_size,
                    actual: size,
                });
            }
        }
        let root = self.store.root.clone();
        let tmp = self.file.into_inner().map_err(|e| Error::Io {
            path: root.clone(),
            source: e.into_error(),
        })?;
        tmp.as_file().sync_all().at(tmp.path())?;
        // Leased before it is visible (or looked for): a prune never sees it
        // unprotected.
        self.store.lease_blob(&digest)?;
        let dest = self.store.blob_path(&digest);
        if dest.exists() {
            return Ok((digest, size));
        }
        tmp.persist(&dest).map_err(|e| Error::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        // Make the rename durable.
        if let Ok(dir) = File::open(dest.parent().unwrap_or(&root)) {
            let _ = dir.sync_all();
        }
        Ok((digest, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = ContentStore::open(dir.path()).expect("open");
        let d = s.put(b"hello").expect("put");
        assert_eq!(s.read_blob(&d).expect("read"), b"hello");
        assert_eq!(s.size(&d).expect("size"), 5);
        let wrong = Digest::sha256_of(b"other");
        let err = s
            .ingest(&mut &b"hello!"[..], Some((&wrong, 6)))
            .expect_err("mismatch");
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert_eq!(s.list().expect("list"), vec![d]);
        assert_eq!(
            fs::read_dir(dir.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }
}
