//! Image sources: resolve the pinned manifest, fetch the layer blobs
//! concurrently, and unpack each layer into its own snapshot (in parallel:
//! overlay layer directories do not depend on each other), chained by the
//! OCI chain ID so images sharing a base share its snapshots.

use crate::index::LayerRecord;
use crate::ops::Ops;
use crate::Error;
use rbuild_graph::{Digest, ImageSource};
use std::io::Read;

/// The chain ID of a layer stack: `sha256(parent_chain + " " + diff_id)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

fn pull_err(reference: &str, e: impl std::fmt::Display) -> Error {
    Error::Pull {
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

/// Make sure every layer of `img` is unpacked; return the top snapshot.
pub fn pull_image(ops: &Ops, img: &ImageSource) -> Result<Option<String>, Error> {
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

    // Protect the blobs from a concurrent prune until the build ends.
    let blobs: Vec<Digest> = resolved.layers.iter().map(|l| l.digest.clone()).collect();
    ops.protect(&blobs, &[]);

    // Names of the layer snapshots, base first.
    let mut names = Vec::new();
    let mut chain: Option<Digest> = None;
    for d in &diff_ids {
        let c = chain_id(chain.as_ref(), d);
        names.push(format!("layer-{}", c.hex()));
        chain = Some(c);
    }

    // Fetch the blobs of missing layers, bounded concurrency in the client.
    let missing: Vec<usize> = (0..names.len())
        .filter(|&i| !ops.snaps.exists(&names[i]))
        .collect();
    let fetches = missing.iter().map(|&i| {
        let desc = resolved.layers[i].clone();
        let reference = reference.clone();
        let client = ops.registry.clone();
        let store = ops.store.clone();
        async move { client.fetch_blob(&reference, &desc, &store).await }
    });
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for f in fetches {
            set.spawn(f);
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
            r.map_err(|e| pull_err(&img.reference, e))?
                .map_err(|e| pull_err(&img.reference, e))?;
        }
        Ok::<(), Error>(())
    })?;

    // Unpack in order: each snapshot's parent must be committed first.
    let mut parent: Option<String> = None;
    for (i, name) in names.iter().enumerate() {
        let desc = &resolved.layers[i];
        if !ops.snaps.exists(name) {
            let work = ops.snaps.prepare_unmounted(parent.as_deref())?;
            let unpacked = (|| {
                let target = ops.snaps.apply_target(&work)?;
                let blob = ops.store.open_blob(&desc.digest)?;
                let reader: Box<dyn Read + Send> =
                    Box::new(std::io::BufReader::with_capacity(256 * 1024, blob));
                let stats = rbuild_cache::apply_layer(reader, &target)?;
                if stats.diff_id != diff_ids[i] {
                    return Err(pull_err(
                        &img.reference,
                        format!(
                            "layer {} unpacks to {} but the config says {}",
                            desc.digest, stats.diff_id, diff_ids[i]
                        ),
                    ));
                }
                Ok(())
            })();
            match unpacked {
                Ok(()) => {
                    ops.snaps.commit(work, name)?;
                }
                Err(e) => {
                    ops.snaps.abort(work);
                    return Err(e);
                }
            }
        }
        ops.index
            .put_layer(
                name,
                "pulled",
                &LayerRecord {
                    diff_id: diff_ids[i].clone(),
                    descriptor: desc.clone(),
                    empty: false,
                },
            )
            .map_err(|e| Error::Io("write layer index".into(), e))?;
        parent = Some(name.clone());
    }
    Ok(parent)
}
