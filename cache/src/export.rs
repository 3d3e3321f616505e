//! Export a snapshot as a layer blob: tar → sha256 (diff_id) → compress →
//! content store, in one streaming pass; plus a cache so each compressed
//! layer is computed once.

use crate::compress::{compress_writer, media_type, CompressOptions};
use crate::diff::{write_layer_tar, DiffOptions, DiffSource};
use crate::snapshot::{Kind, Snapshotter};
use crate::{ContentStore, Descriptor, Error, IoContext, Result};
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A layer: the digest of its uncompressed tar and the descriptor of the
/// (possibly compressed) blob in the content store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// sha256 of the uncompressed tar (goes into the image config).
    pub diff_id: Digest,
    /// The blob (goes into the manifest).
    pub descriptor: Descriptor,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write the layer of `source` into `store` compressed as `compress` says,
/// hashing the uncompressed stream on the way. Nothing is held in memory
/// beyond a few compression blocks.
pub fn export_layer(
    store: &ContentStore,
    source: &DiffSource,
    diff: &DiffOptions,
    compress: &CompressOptions,
) -> Result<Layer> {
    let blob = store.writer()?;
    let cw = compress_writer(blob, compress).at(store.root())?;
    let mut hw = HashWriter {
        inner: cw,
        hasher: Sha256::new(),
        count: 0,
    };
    write_layer_tar(source, &mut hw, diff)?;
    let blob = hw.inner.finish().at(store.root())?;
    let (digest, size) = blob.commit(None)?;
    Ok(Layer {
        diff_id: Digest::from_sha256(hw.hasher.finalize().into()),
        descriptor: Descriptor::new(media_type(compress.compression, false), digest, size),
        uncompressed_size: hw.count,
    })
}

/// Export committed snapshot `key`, reusing a cached blob when `cache`
/// already has this snapshot with these options (and the blob is still in
/// the store).
pub fn export_snapshot(
    store: &ContentStore,
    snapshotter: &dyn Snapshotter,
    key: &str,
    cache: Option<&LayerCache>,
    diff: &DiffOptions,
    compress: &CompressOptions,
) -> Result<Layer> {
    let info = snapshotter.stat(key)?;
    let cache_key = (info.kind == Kind::Committed)
        .then(|| layer_cache_key(snapshotter.name(), &info, compress, diff.source_date_epoch));
    if let (Some(c), Some(k)) = (cache, &cache_key) {
        if let Some(layer) = c.get(k)? {
            // Leased before it is looked for: a concurrent prune cannot
            // remove it once this says it is there.
            if store.hold(&layer.descriptor.digest)? {
                return Ok(layer);
            }
        }
    }
    let layer = export_layer(store, &snapshotter.diff_source(key)?, diff, compress)?;
    if let (Some(c), Some(k)) = (cache, &cache_key) {
        c.put(k, &layer)?;
    }
    Ok(layer)
}

/// The layer-cache key of snapshot `info` exported with `compress`: one
/// line each for the snapshotter, snapshot id, key and creation time, the
/// algorithm, the level and SOURCE_DATE_EPOCH.
///
/// The text is fixed: changing it orphans every cached layer. The level
/// line is `None` for the default level and `Some(N)` otherwise (the text
/// the first release wrote for the default), so caches made before levels
/// were honoured stay valid, and a blob made at one level is never reused
/// for another. Thread counts are not part of the key: the bytes do not
/// depend on them.
fn layer_cache_key(
    snapshotter: &str,
    info: &crate::Info,
    compress: &CompressOptions,
    source_date_epoch: Option<i64>,
) -> String {
    let level = compress.explicit_level();
    let opt = |v: Option<i64>| v.map_or_else(|| "None".to_string(), |v| format!("Some({v})"));
    format!(
        "{snapshotter}\n{}\n{}\n{}\n{}\n{}\n{}",
        info.id,
        info.key,
        info.created,
        compress.compression.as_str(),
        opt(level.map(i64::from)),
        opt(source_date_epoch)
    )
}

/// Remembers exported layers: (snapshot, options) → [`Layer`], one small
/// JSON file per entry, written atomically.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    layer: Layer,
}

impl LayerCache {
    /// Open (creating if needed) a cache in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Digest::sha256_of(key.as_bytes()).hex()))
    }

    /// The layer cached under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Layer>> {
        let p = self.path(key);
        match fs::read(&p) {
            Ok(b) => Ok(serde_json::from_slice::<Entry>(&b)
                .ok()
                .filter(|e| e.key == key)
                .map(|e| e.layer)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&p),
        }
    }

    /// Remember `layer` under `key`.
    pub fn put(&self, key: &str, layer: &Layer) -> Result<()> {
        let bytes = serde_json::to_vec(&Entry {
            key: key.to_string(),
            layer: layer.clone(),
        })
        .map_err(|e| Error::CorruptMetadata {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&self.path(key), &bytes)
    }

    /// All entries: (key, layer).
    pub fn entries(&self) -> Result<Vec<(String, Layer)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).at(&self.dir)? {
            let p = e.at(&self.dir)?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Ok(entry) = serde_json::from_slice::<Entry>(&fs::read(&p).at(&p)?) {
                out.push((entry.key, entry.layer));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Forget the entry under `key`.
    pub fn remove(&self, key: &str) -> Result<()> {
        crate::fsutil::remove_any(&self.path(key))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
