//! Image sources and lazy chains: resolve a pinned image to its layers
//! (manifest and config only), and unpack a [`LazyChain`] when a step first
//! needs its files: fetch the missing blobs concurrently, then unpack each
//! layer into its own snapshot, named by the OCI chain ID so images and
//! caches sharing a base share its snapshots.

use crate::index::{CacheRecord, LayerRecord};
use crate::ops::Ops;
use crate::remote::{BlobSource, LazyChain};
use crate::Error;
use rbuild_graph::{Digest, ImageSource};
use std::io::Read;
use std::sync::Arc;

fn pull_err(reference: &str, e: impl std::fmt::Display) -> Error {
    Error::Pull {
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

/// Resolve `img` to its layers without downloading them.
pub fn resolve_image(ops: &Ops, img: &ImageSource, key: &Digest) -> Result<LazyChain, Error> {
    let rt = tokio::runtime::Handle::current();
    let reference = rbuild_registry::Reference::parse(&img.reference)
        .map_err(|e| pull_err(&img.reference, e))?;
    let resolved = rt
        .block_on(ops.registry.resolve(&reference, &img.platform))
        .map_err(|e| pull_err(&img.reference, e))?;
    let config: serde_json::Value = serde_json::from_slice(&resolved.config)
        .map_err(|e| pull_err(&img.reference, format!("image config: {e}")))?;
    let diff_ids: Vec<Digest> = config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != resolved.layers.len() {
        return Err(pull_err(
            &img.reference,
            format!(
                "image config lists {} diff_ids for {} layers",
                diff_ids.len(),
                resolved.layers.len()
            ),
        ));
    }
    Ok(LazyChain {
        source: Arc::new(BlobSource::Registry(reference)),
        layers: resolved
            .layers
            .into_iter()
            .zip(diff_ids)
            .map(|(descriptor, diff_id)| LayerRecord {
                diff_id,
                descriptor,
                empty: false,
            })
            .collect(),
        remember: Some(key.clone()),
    })
}

fn source_name(s: &BlobSource) -> String {
    match s {
        BlobSource::Registry(r) => r.to_string(),
        BlobSource::Layout(p) => p.display().to_string(),
    }
}

/// Make sure every layer of `chain` is unpacked; return the top snapshot.
pub fn materialize(ops: &Ops, chain: &LazyChain) -> Result<Option<String>, Error> {
    let what = source_name(&chain.source);
    let names = chain.names();
    // Protect the blobs from a concurrent prune until the build ends.
    let blobs: Vec<Digest> = chain
        .layers
        .iter()
        .map(|l| l.descriptor.digest.clone())
        .collect();
    let snaps: Vec<&str> = names.iter().map(String::as_str).collect();
    ops.protect(&blobs, &snaps);

    let missing: Vec<usize> = (0..names.len())
        .filter(|&i| !ops.snaps.exists(&names[i]))
        .collect();
    fetch_all(
        ops,
        &chain.source,
        missing.iter().map(|&i| &chain.layers[i].descriptor),
    )
    .map_err(|e| pull_err(&what, e))?;

    // Unpack in order: each snapshot's parent must be committed first.
    let mut parent: Option<String> = None;
    for (name, layer) in names.iter().zip(&chain.layers) {
        if !ops.snaps.exists(name) {
            let _lock = ops.lock(name)?;
            if !ops.snaps.exists(name) {
                unpack(ops, parent.as_deref(), name, layer, &what)?;
            }
        }
        ops.index
            .put_layer(name, "pulled", layer)
            .map_err(|e| Error::Io("write layer index".into(), e))?;
        parent = Some(name.clone());
    }
    if let Some(key) = &chain.remember {
        ops.index
            .put(
                key,
                &CacheRecord {
                    snapshot: parent.clone(),
                    result_key: None,
                    created: None,
                },
            )
            .map_err(|e| Error::Io("write cache index".into(), e))?;
    }
    Ok(parent)
}

fn unpack(
    ops: &Ops,
    parent: Option<&str>,
    name: &str,
    layer: &LayerRecord,
    what: &str,
) -> Result<(), Error> {
    let work = ops.snaps.prepare_unmounted(parent)?;
    let unpacked = (|| {
        let target = ops.snaps.apply_target(&work)?;
        let blob = ops.store.open_blob(&layer.descriptor.digest)?;
        let reader: Box<dyn Read + Send> =
            Box::new(std::io::BufReader::with_capacity(256 * 1024, blob));
        let stats = rbuild_cache::apply_layer(reader, &target)?;
        if stats.diff_id != layer.diff_id {
            return Err(pull_err(
                what,
                format!(
                    "layer {} unpacks to {} but the config says {}",
                    layer.descriptor.digest, stats.diff_id, layer.diff_id
                ),
            ));
        }
        Ok(())
    })();
    match unpacked {
        Ok(()) => {
            ops.snaps.commit(work, name)?;
            Ok(())
        }
        Err(e) => {
            ops.snaps.abort(work);
            Err(e)
        }
    }
}

/// Fetch blobs from `source` into the store, four at a time.
pub fn fetch_all<'a>(
    ops: &Ops,
    source: &Arc<BlobSource>,
    descs: impl Iterator<Item = &'a rbuild_cache::Descriptor>,
) -> Result<(), crate::remote::CacheError> {
    let descs: Vec<rbuild_cache::Descriptor> = descs
        .filter(|d| !ops.store.contains(&d.digest))
        .cloned()
        .collect();
    if descs.is_empty() {
        return Ok(());
    }
    let rt = tokio::runtime::Handle::current();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for d in descs {
            let source = source.clone();
            let client = ops.registry.clone();
            let store = ops.store.clone();
            set.spawn_blocking(move || source.fetch(&client, &store, &d));
            if set.len() >= 4 {
                if let Some(r) = set.join_next().await {
                    results.push(r);
                }
            }
        }
        while let Some(r) = set.join_next().await {
            results.push(r);
        }
        for r in results {
            r.map_err(|e| crate::remote::CacheError::Invalid(format!("fetch task: {e}")))??;
        }
        Ok(())
    })
}
