//! The persistent cache index: cache key → committed snapshot, and snapshot →
//! its layer blob. One small file per record, written atomically (temp file +
//! rename), so a killed build leaves every record either whole or absent and
//! several processes can share one state dir.

use rbuild_cache::Descriptor;
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The layer blob made from a snapshot (or pulled for it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The (compressed) blob in the content store.
    pub descriptor: Descriptor,
    /// True when the layer has no entries (the exporter drops it).
    #[serde(default)]
    pub empty: bool,
}

/// What a cache key resolves to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The committed snapshot holding the result; `None` for an empty rootfs.
    pub snapshot: Option<String>,
    /// The key later steps build on, when it differs from the looked-up
    /// one: a COPY from a stage found by the content it copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_key: Option<Digest>,
    /// When the result was made (seconds since the Unix epoch): the
    /// `created` time of its history entry. A hit keeps it, so an
    /// unchanged rebuild gives the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}

/// The on-disk index.
#[derive(Clone, Debug)]
pub struct CacheIndex {
    root: PathBuf,
}

impl CacheIndex {
    /// Open the index under `root` (created if needed).
    pub fn open(root: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(root.join("keys"))?;
        fs::create_dir_all(root.join("layers"))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The index's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write a record file atomically.
    pub(crate) fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.write_atomic(path, bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
        let bytes = fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The record of a cache key.
    pub fn get(&self, key: &Digest) -> Option<CacheRecord> {
        Self::read(&self.root.join("keys").join(key.hex()))
    }

    /// Remember a cache key's result.
    pub fn put(&self, key: &Digest, rec: &CacheRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        self.write_atomic(&self.root.join("keys").join(key.hex()), &bytes)
    }

    /// Forget a cache key (its snapshot disappeared).
    pub fn remove(&self, key: &Digest) {
        let _ = fs::remove_file(self.root.join("keys").join(key.hex()));
    }

    fn layer_path(&self, snapshot: &str, compression: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("{snapshot}.{compression}"))
    }

    /// The layer made from `snapshot` with `compression`, if any.
    pub fn layer(&self, snapshot: &str, compression: &str) -> Option<LayerRecord> {
        Self::read(&self.layer_path(snapshot, compression))
    }

    /// Remember the layer made from `snapshot`.
    pub fn put_layer(
        &self,
        snapshot: &str,
        compression: &str,
        rec: &LayerRecord,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        self.write_atomic(&self.layer_path(snapshot, compression), &bytes)
    }
}
