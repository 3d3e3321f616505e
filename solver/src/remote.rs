//! Lazy results and shared build caches (`--cache-from` / `--cache-to`).
//!
//! A result can be known by its layers only (a [`LazyChain`]): an imported
//! cache record, or a base image. Its snapshots are unpacked the first time
//! a step needs the files; an export that only needs the layer blobs (a
//! push to the registry that already has them) never downloads them.
//!
//! An exported cache is one OCI image manifest whose config has the media
//! type [`CACHE_CONFIG_MEDIA_TYPE`] and lists, for each cache key, the
//! layers that rebuild its result; the layers are the manifest's layers.
//! It is stored in a registry (`type=registry`) or in an OCI layout
//! directory (`type=local`). `type=inline` puts the records for the image's
//! own layers into the image config under [`INLINE_CACHE_KEY`].

use crate::index::LayerRecord;
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Media type of the config of an exported cache manifest.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// Key of the inline cache records in an image config.
pub const INLINE_CACHE_KEY: &str = "rbuild.cache.v1";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Errors of cache import and export.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The registry failed. The message carries the registry's own (a
    /// digest mismatch, a status, a dropped connection): callers that keep
    /// only the text (`Error::Pull`) must not lose the root cause.
    #[error("{what}: {source}")]
    Registry {
        /// What was being done.
        what: String,
        /// The registry error.
        #[source]
        source: Box<rbuild_registry::Error>,
    },
    /// A file of a local cache could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] rbuild_cache::Error),
    /// The cache's metadata is not what rbuild writes.
    #[error("{0}")]
    Invalid(String),
}

/// Where the blobs of lazily known layers can be fetched from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    /// A repository of a registry.
    Registry(rbuild_registry::Reference),
    /// An OCI layout directory.
    Layout(PathBuf),
}

impl BlobSource {
    /// Copy `desc` into `store` (verified), unless it is there already.
    pub fn fetch(
        &self,
        client: &rbuild_registry::Client,
        store: &ContentStore,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        if store.contains(&desc.digest) {
            return Ok(());
        }
        match self {
            BlobSource::Registry(r) => tokio::runtime::Handle::current()
                .block_on(client.fetch_blob(r, desc, store))
                .map_err(|source| CacheError::Registry {
                    what: format!("fetch {} from {r}", desc.digest),
                    source: Box::new(source),
                }),
            BlobSource::Layout(dir) => {
                let path = layout_blob(dir, &desc.digest);
                let mut file = std::fs::File::open(&path).map_err(|source| CacheError::Io {
                    what: format!("open {}", path.display()),
                    source,
                })?;
                store.ingest(&mut file, Some((&desc.digest, desc.size)))?;
                Ok(())
            }
        }
    }
}

fn layout_blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm()).join(d.hex())
}

/// The OCI chain ID of a layer stack: `sha256(parent_chain + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// A result known by its layers: unpacked into snapshots named by chain
/// ID (`layer-<chain>`) when first needed.
#[derive(Debug)]
pub struct LazyChain {
    /// Where the blobs come from.
    pub source: Arc<BlobSource>,
    /// The layers, base first (empty layers left out).
    pub layers: Vec<LayerRecord>,
    /// A cache key to record in the local index once unpacked.
    pub remember: Option<Digest>,
}

impl LazyChain {
    /// The snapshot names of the chain, base first.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.layers.len());
        let mut chain: Option<Digest> = None;
        for l in &self.layers {
            let c = chain_id(chain.as_ref(), &l.diff_id);
            out.push(format!("layer-{}", c.hex()));
            chain = Some(c);
        }
        out
    }

    /// The name of the top snapshot (`None` for an empty filesystem).
    pub fn top(&self) -> Option<String> {
        self.names().pop()
    }
}

/// One layer of an exported cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    /// The blob.
    pub blob: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// A cache key and the layers (indexes into [`CacheConfig::layers`]) that
/// rebuild its result, base first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The cache key.
    pub key: Digest,
    /// Layer indexes, base first.
    pub layers: Vec<usize>,
    /// The key later steps build on, when it differs from `key` (see
    /// [`crate::index::CacheRecord::result_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Digest>,
}

/// The contents of a `RUN --mount=type=cache` directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMountEntry {
    /// The cache mount's id.
    pub id: String,
    /// Index of its tarball in [`CacheConfig::layers`].
    pub layer: usize,
}

/// The config blob of an exported cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Every layer blob, deduplicated.
    pub layers: Vec<CacheLayer>,
    /// The records.
    pub records: Vec<CacheEntry>,
    /// Exported cache mounts (`cache-mounts=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_mounts: Vec<CacheMountEntry>,
}

impl CacheConfig {
    fn layer_index(&mut self, l: &LayerRecord) -> usize {
        if let Some(i) = self
            .layers
            .iter()
            .position(|x| x.blob.digest == l.descriptor.digest)
        {
            return i;
        }
        self.layers.push(CacheLayer {
            blob: l.descriptor.clone(),
            diff_id: l.diff_id.clone(),
        });
        self.layers.len() - 1
    }

    /// Add the record of `key` (layers base first; empty ones are skipped).
    /// A key already present keeps its first record.
    pub fn add_record(&mut self, key: &Digest, layers: &[LayerRecord]) {
        self.add_record_with_result(key, layers, None)
    }

    /// [`CacheConfig::add_record`] for a key whose result is known to later
    /// steps by another key.
    pub fn add_record_with_result(
        &mut self,
        key: &Digest,
        layers: &[LayerRecord],
        result: Option<&Digest>,
    ) {
        if self.records.iter().any(|r| &r.key == key) {
            return;
        }
        let idx = layers
            .iter()
            .filter(|l| !l.empty)
            .map(|l| self.layer_index(l))
            .collect();
        self.records.push(CacheEntry {
            key: key.clone(),
            layers: idx,
            result: result.cloned(),
        });
    }

    /// Add the tarball of cache mount `id`.
    pub fn add_cache_mount(&mut self, id: &str, layer: &LayerRecord) {
        let i = self.layer_index(layer);
        self.cache_mounts.push(CacheMountEntry {
            id: id.to_string(),
            layer: i,
        });
    }

    fn check(&self) -> Result<(), CacheError> {
        let n = self.layers.len();
        let bad = self
            .records
            .iter()
            .any(|r| r.layers.iter().any(|&i| i >= n))
            || self.cache_mounts.iter().any(|m| m.layer >= n);
        if bad {
            return Err(CacheError::Invalid(
                "cache config names a layer it does not list".into(),
            ));
        }
        Ok(())
    }

    /// Write the config and its manifest into `store`; returns the
    /// manifest's descriptor, its bytes and every blob it names (config
    /// first).
    pub fn write_manifest(
        &self,
        store: &ContentStore,
    ) -> Result<(Descriptor, Vec<u8>, Vec<Descriptor>), CacheError> {
        let config = serde_json::to_vec(self).map_err(|e| CacheError::Invalid(e.to_string()))?;
        let config_digest = store.put(&config)?;
        let config_desc =
            Descriptor::new(CACHE_CONFIG_MEDIA_TYPE, config_digest, config.len() as u64);
        let layers: Vec<Descriptor> = self.layers.iter().map(|l| l.blob.clone()).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layers,
        });
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| CacheError::Invalid(e.to_string()))?;
        let digest = store.put(&bytes)?;
        let desc = Descriptor::new(OCI_MANIFEST, digest, bytes.len() as u64);
        let mut blobs = vec![config_desc];
        blobs.extend(layers);
        Ok((desc, bytes, blobs))
    }
}

/// Records of an inline cache: the first `layers` non-empty layers of the
/// image rebuild the result of `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineEntry {
    /// The cache key.
    pub key: Digest,
    /// How many of the image's layers make the result.
    pub layers: usize,
    /// The key later steps build on, when it differs from `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Digest>,
}

/// Every imported cache, consulted when the local index misses. Earlier
/// sources win when two know the same key.
#[derive(Debug, Default)]
pub struct RemoteCache {
    records: HashMap<Digest, (Arc<LazyChain>, Option<Digest>)>,
    mounts: HashMap<String, (Arc<BlobSource>, Descriptor)>,
}

impl RemoteCache {
    /// Add the records of one imported cache.
    pub fn add(&mut self, source: Arc<BlobSource>, config: &CacheConfig) {
        for r in &config.records {
            if self.records.contains_key(&r.key) {
                continue;
            }
            let layers = r
                .layers
                .iter()
                .filter_map(|&i| config.layers.get(i))
                .map(|l| LayerRecord {
                    diff_id: l.diff_id.clone(),
                    descriptor: l.blob.clone(),
                    empty: false,
                })
                .collect();
            let chain = Arc::new(LazyChain {
                source: source.clone(),
                layers,
                remember: None,
            });
            self.records
                .insert(r.key.clone(), (chain, r.result.clone()));
        }
        for m in &config.cache_mounts {
            if let Some(l) = config.layers.get(m.layer) {
                self.mounts
                    .entry(m.id.clone())
                    .or_insert_with(|| (source.clone(), l.blob.clone()));
            }
        }
    }

    /// The imported result of `key`, and the key later steps build on
    /// when it is not `key`.
    pub fn get(&self, key: &Digest) -> Option<(Arc<LazyChain>, Option<Digest>)> {
        self.records.get(key).cloned()
    }

    /// The imported contents of cache mount `id`.
    pub fn cache_mount(&self, id: &str) -> Option<(Arc<BlobSource>, Descriptor)> {
        self.mounts.get(id).cloned()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing was imported.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.mounts.is_empty()
    }
}

fn reg_err(what: String) -> impl FnOnce(rbuild_registry::Error) -> CacheError {
    move |source| CacheError::Registry {
        what,
        source: Box::new(source),
    }
}

/// Read the cache stored at `reference`: an exported cache manifest, or an
/// image with inline cache records. Fetches the manifest and the config
/// only.
pub async fn import_registry(
    client: &rbuild_registry::Client,
    reference: &rbuild_registry::Reference,
    platform: &rbuild_graph::Platform,
) -> Result<CacheConfig, CacheError> {
    let resolved = client
        .resolve(reference, platform)
        .await
        .map_err(reg_err(format!("resolve {reference}")))?;
    let manifest: serde_json::Value = serde_json::from_slice(&resolved.manifest)
        .map_err(|e| CacheError::Invalid(format!("manifest of {reference}: {e}")))?;
    config_from(&manifest, &resolved.config, &resolved.layers)
        .map_err(|e| CacheError::Invalid(format!("{reference}: {e}")))
}

/// Interpret a manifest and its config as a cache.
fn config_from(
    manifest: &serde_json::Value,
    config: &[u8],
    layers: &[Descriptor],
) -> Result<CacheConfig, CacheError> {
    let config_type = manifest
        .pointer("/config/mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if config_type == CACHE_CONFIG_MEDIA_TYPE {
        let c: CacheConfig = serde_json::from_slice(config)
            .map_err(|e| CacheError::Invalid(format!("cache config: {e}")))?;
        c.check()?;
        return Ok(c);
    }
    // An image: its inline records refer to its own layers.
    let value: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| CacheError::Invalid(format!("image config: {e}")))?;
    let Some(inline) = value.get(INLINE_CACHE_KEY) else {
        return Err(CacheError::Invalid(
            "neither a cache manifest nor an image with inline cache".into(),
        ));
    };
    let entries: Vec<InlineEntry> = serde_json::from_value(inline.clone())
        .map_err(|e| CacheError::Invalid(format!("inline cache: {e}")))?;
    let diff_ids: Vec<Digest> = value
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(CacheError::Invalid(
            "image config and manifest disagree on the layers".into(),
        ));
    }
    let mut out = CacheConfig {
        layers: layers
            .iter()
            .zip(diff_ids)
            .map(|(blob, diff_id)| CacheLayer {
                blob: blob.clone(),
                diff_id,
            })
            .collect(),
        ..Default::default()
    };
    for e in entries {
        if e.layers > out.layers.len() {
            return Err(CacheError::Invalid(
                "inline cache names too many layers".into(),
            ));
        }
        out.records.push(CacheEntry {
            key: e.key,
            layers: (0..e.layers).collect(),
            result: e.result,
        });
    }
    Ok(out)
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> CacheError {
    move |source| CacheError::Io { what, source }
}

fn read_json(path: &Path) -> Result<serde_json::Value, CacheError> {
    let bytes = std::fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CacheError::Invalid(format!("{}: {e}", path.display())))
}

/// Read the cache in OCI layout `dir` under `tag`.
pub fn import_layout(dir: &Path, tag: &str) -> Result<CacheConfig, CacheError> {
    let index = read_json(&dir.join("index.json"))?;
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .ok_or_else(|| CacheError::Invalid(format!("{}: no manifests", dir.display())))?;
    let entry = manifests
        .iter()
        .find(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(|v| v.as_str())
                == Some(tag)
        })
        .ok_or_else(|| {
            CacheError::Invalid(format!("{} has no cache tagged {tag:?}", dir.display()))
        })?;
    let digest: Digest = entry
        .get("digest")
        .and_then(|d| d.as_str())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| CacheError::Invalid(format!("{}: bad manifest digest", dir.display())))?;
    let manifest_path = layout_blob(dir, &digest);
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(io_err(format!("read {}", manifest_path.display())))?;
    if Digest::sha256_of(&manifest_bytes) != digest {
        return Err(CacheError::Invalid(format!(
            "{} does not match its digest",
            manifest_path.display()
        )));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| CacheError::Invalid(format!("{}: {e}", manifest_path.display())))?;
    let config_desc: Descriptor = serde_json::from_value(manifest["config"].clone())
        .map_err(|e| CacheError::Invalid(format!("cache manifest config: {e}")))?;
    let layers: Vec<Descriptor> = serde_json::from_value(manifest["layers"].clone())
        .map_err(|e| CacheError::Invalid(format!("cache manifest layers: {e}")))?;
    let config_path = layout_blob(dir, &config_desc.digest);
    let config =
        std::fs::read(&config_path).map_err(io_err(format!("read {}", config_path.display())))?;
    if Digest::sha256_of(&config) != config_desc.digest {
        return Err(CacheError::Invalid(format!(
            "{} does not match its digest",
            config_path.display()
        )));
    }
    config_from(&manifest, &config, &layers)
}

/// Write a cache manifest (already in `store`, with its blobs) into OCI
/// layout `dir` under `tag`, replacing an older cache of that tag. Blobs
/// the directory has already are not copied again.
pub fn export_layout(
    store: &ContentStore,
    dir: &Path,
    tag: &str,
    manifest: &Descriptor,
    blobs: &[Descriptor],
) -> Result<(), CacheError> {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).map_err(io_err(format!("create {}", blob_dir.display())))?;
    // Several builds may export into one directory at once: index.json is
    // read, changed and replaced under an flock of the directory itself (no
    // lock file in the user's layout), and every temp file has a unique
    // name in the directory it is renamed in.
    let lock = std::fs::File::open(dir)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(io_err(format!("lock {}", dir.display())))?;
    for d in blobs.iter().chain(std::iter::once(manifest)) {
        let dest = layout_blob(dir, &d.digest);
        if dest.exists() {
            continue;
        }
        let src = store.blob_path(&d.digest);
        // Hard links are free when the layout is on the same filesystem.
        if std::fs::hard_link(&src, &dest).is_ok() {
            continue;
        }
        tempfile::NamedTempFile::new_in(&blob_dir)
            .and_then(|mut tmp| {
                std::io::copy(&mut std::fs::File::open(&src)?, &mut tmp)?;
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))?;
                tmp.persist(&dest).map_err(|e| e.error)
            })
            .map_err(io_err(format!("copy {} into {}", d.digest, dir.display())))?;
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err(format!("write {}/oci-layout", dir.display())))?;
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match read_json(&index_path) {
        Ok(v) => v
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    manifests.retain(|m| {
        m.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|v| v.as_str())
            != Some(tag)
    });
    let mut entry =
        serde_json::to_value(manifest).map_err(|e| CacheError::Invalid(e.to_string()))?;
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    manifests.push(entry);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| CacheError::Invalid(e.to_string()))?;
    tempfile::NamedTempFile::new_in(dir)
        .and_then(|mut tmp| {
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(&index_path).map_err(|e| e.error)
        })
        .map_err(io_err(format!("write {}", index_path.display())))?;
    drop(lock);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Regression: a lazy layer failing its digest reported only "fetch
    /// sha256:… from …"; `Error::Pull` keeps the text, which now ends with
    /// the root cause.
    #[test]
    fn fetch_errors_keep_their_root_cause_in_the_text() {
        let e = CacheError::Registry {
            what: "fetch sha256:00 from r/x:1".into(),
            source: Box::new(rbuild_registry::Error::DigestMismatch {
                what: "blob r/x@sha256:00".into(),
                expected: Digest::sha256_of(b"a"),
                actual: Digest::sha256_of(b"b"),
            }),
        };
        let pull = crate::Error::Pull {
            reference: "r/x:1".into(),
            message: e.to_string(),
        };
        let text = pull.to_string();
        assert!(text.contains("fetch sha256:00 from r/x:1: "), "{text}");
        assert!(text.contains("digest mismatch: expected sha256:"), "{text}");

        // A real fetch: the registry's transport error reaches the text.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _guard = rt.enter();
        let mut cfg = rbuild_registry::RegistryConfig {
            max_attempts: 1,
            ..Default::default()
        };
        cfg.proxy = Default::default();
        let client = rbuild_registry::Client::new(cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let source =
            BlobSource::Registry(rbuild_registry::Reference::parse("127.0.0.1:1/x:1").unwrap());
        let desc = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            Digest::sha256_of(b"layer"),
            5,
        );
        let text = source
            .fetch(&client, &store, &desc)
            .unwrap_err()
            .to_string();
        assert!(text.starts_with("fetch sha256:"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(
            text.contains("error sending request") || text.contains("onnection refused"),
            "{text}"
        );
    }

    fn layer(n: u8, empty: bool) -> LayerRecord {
        LayerRecord {
            diff_id: Digest::sha256_of(&[n]),
            descriptor: Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Digest::sha256_of(&[n, n]),
                10 + n as u64,
            ),
            empty,
        }
    }

    #[test]
    fn records_share_layers_and_skip_empty_ones() {
        let mut c = CacheConfig::default();
        let k1 = Digest::sha256_of(b"k1");
        let k2 = Digest::sha256_of(b"k2");
        c.add_record(&k1, &[layer(1, false), layer(2, true)]);
        c.add_record(&k2, &[layer(1, false), layer(2, true), layer(3, false)]);
        c.add_record(&k2, &[layer(9, false)]);
        assert_eq!(c.layers.len(), 2);
        assert_eq!(c.records[0].layers, vec![0]);
        assert_eq!(c.records[1].layers, vec![0, 1]);
        assert_eq!(c.records.len(), 2);
        c.check().unwrap();
    }

    #[test]
    fn earlier_sources_win_and_chains_are_named_by_chain_id() {
        let mut a = CacheConfig::default();
        let k = Digest::sha256_of(b"k");
        a.add_record(&k, &[layer(1, false), layer(2, false)]);
        let mut b = CacheConfig::default();
        b.add_record(&k, &[layer(5, false)]);
        let mut rc = RemoteCache::default();
        rc.add(Arc::new(BlobSource::Layout("a".into())), &a);
        rc.add(Arc::new(BlobSource::Layout("b".into())), &b);
        let (chain, _) = rc.get(&k).unwrap();
        assert_eq!(chain.layers.len(), 2);
        assert_eq!(*chain.source, BlobSource::Layout("a".into()));
        let c1 = chain_id(None, &layer(1, false).diff_id);
        let c2 = chain_id(Some(&c1), &layer(2, false).diff_id);
        assert_eq!(chain.top(), Some(format!("layer-{}", c2.hex())));
    }

    #[test]
    fn inline_records_refer_to_the_image_layers() {
        let l1 = layer(1, false);
        let l2 = layer(2, false);
        let k = Digest::sha256_of(b"k");
        let config = serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [l1.diff_id, l2.diff_id]},
            INLINE_CACHE_KEY: [{"key": k, "layers": 1}],
        });
        let manifest = serde_json::json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"}});
        let c = config_from(
            &manifest,
            &serde_json::to_vec(&config).unwrap(),
            &[l1.descriptor.clone(), l2.descriptor.clone()],
        )
        .unwrap();
        assert_eq!(
            c.records,
            vec![CacheEntry {
                key: k,
                layers: vec![0],
                result: None
            }]
        );
        assert_eq!(c.layers[1].diff_id, l2.diff_id);
    }

    #[test]
    fn a_layout_round_trips_and_a_corrupt_one_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::open(tmp.path().join("store")).unwrap();
        let blob = b"layer bytes";
        let d = store.put(blob).unwrap();
        let l = LayerRecord {
            diff_id: Digest::sha256_of(b"diff"),
            descriptor: Descriptor::new("application/vnd.oci.image.layer.v1.tar", d, 11),
            empty: false,
        };
        let mut c = CacheConfig::default();
        let k = Digest::sha256_of(b"k");
        c.add_record(&k, std::slice::from_ref(&l));
        c.add_cache_mount("go-build", &l);
        let (m, _, blobs) = c.write_manifest(&store).unwrap();
        let dir = tmp.path().join("cache");
        export_layout(&store, &dir, "latest", &m, &blobs).unwrap();
        let back = import_layout(&dir, "latest").unwrap();
        assert_eq!(back, c);
        assert!(import_layout(&dir, "other").is_err());
        std::fs::write(dir.join("index.json"), b"{not json").unwrap();
        assert!(import_layout(&dir, "latest").is_err());
    }
}
