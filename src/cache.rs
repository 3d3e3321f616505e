//! `--cache-from` and `--cache-to`: parse the specs, import caches before
//! the solve (a failing source is a warning), export after it.

use anyhow::{bail, Context, Result};
use rbuild_solver::ops::Ops;
use rbuild_solver::remote::{self, BlobSource, CacheConfig, RemoteCache};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a cache lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheLocation {
    /// A registry repository (`type=registry,ref=…`).
    Registry(String),
    /// An OCI layout directory (`type=local,src=…|dest=…`) and tag.
    Local(PathBuf, String),
    /// Inside the image config (`type=inline`, export only).
    Inline,
}

/// One `--cache-to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTo {
    /// Where.
    pub location: CacheLocation,
    /// `mode=max` (every result, the default) or `min` (the image's own).
    pub max: bool,
    /// Export the contents of `RUN --mount=type=cache` too.
    pub cache_mounts: bool,
    /// A failed export is a warning instead of an error.
    pub ignore_error: bool,
}

fn kv(spec: &str) -> BTreeMap<String, String> {
    spec.split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn bool_opt(m: &BTreeMap<String, String>, k: &str, spec: &str) -> Result<bool> {
    match m.get(k).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => bail!("invalid cache option {k}={v:?} in {spec:?}: expected true or false"),
    }
}

fn location(m: &BTreeMap<String, String>, spec: &str, export: bool) -> Result<CacheLocation> {
    let ty = m.get("type").map(String::as_str).unwrap_or("registry");
    match ty {
        "registry" => match m.get("ref") {
            Some(r) if !r.is_empty() => {
                rbuild_registry::parse_normalized(r)
                    .map_err(|e| anyhow::anyhow!("invalid cache {spec:?}: ref {r:?}: {e}"))?;
                Ok(CacheLocation::Registry(r.clone()))
            }
            _ => bail!("invalid cache {spec:?}: type=registry needs ref=NAME"),
        },
        "local" => {
            let key = if export { "dest" } else { "src" };
            let dir = m
                .get(key)
                .filter(|d| !d.is_empty())
                .with_context(|| format!("invalid cache {spec:?}: type=local needs {key}=DIR"))?;
            let tag = m.get("tag").cloned().unwrap_or_else(|| "latest".into());
            Ok(CacheLocation::Local(PathBuf::from(dir), tag))
        }
        "inline" if export => Ok(CacheLocation::Inline),
        "inline" => bail!(
            "invalid --cache-from {spec:?}: to use an inline cache, name the image: type=registry,ref=IMAGE"
        ),
        other => bail!(
            "unsupported cache type {other:?} in {spec:?}: rbuild supports registry, local and inline"
        ),
    }
}

/// Parse a `--cache-from` spec (a bare reference means type=registry).
pub fn parse_from(spec: &str) -> Result<CacheLocation> {
    if !spec.contains('=') {
        rbuild_registry::parse_normalized(spec)
            .map_err(|e| anyhow::anyhow!("invalid --cache-from {spec:?}: {e}"))?;
        return Ok(CacheLocation::Registry(spec.to_string()));
    }
    location(&kv(spec), spec, false)
}

/// Parse a `--cache-to` spec.
pub fn parse_to(spec: &str) -> Result<CacheTo> {
    let m = kv(spec);
    let max = match m.get("mode").map(String::as_str) {
        None | Some("max") => true,
        Some("min") => false,
        Some(v) => bail!("invalid cache mode={v:?} in {spec:?}: expected min or max"),
    };
    Ok(CacheTo {
        location: location(&m, spec, true)?,
        max,
        cache_mounts: bool_opt(&m, "cache-mounts", spec)?,
        ignore_error: bool_opt(&m, "ignore-error", spec)?,
    })
}

/// Import every cache of `from`, in order. A source that cannot be read is
/// reported through `warn` and skipped.
pub fn import(
    rt: &tokio::runtime::Runtime,
    client: &rbuild_registry::Client,
    platform: &rbuild_graph::Platform,
    from: &[CacheLocation],
    warn: &mut dyn FnMut(String),
) -> RemoteCache {
    let mut out = RemoteCache::default();
    for loc in from {
        let got = match loc {
            CacheLocation::Registry(r) => rbuild_registry::Reference::parse(r)
                .map_err(anyhow::Error::from)
                .and_then(|reference| {
                    let c = rt
                        .block_on(remote::import_registry(client, &reference, platform))
                        .map_err(anyhow::Error::from)?;
                    Ok((BlobSource::Registry(reference), c))
                }),
            CacheLocation::Local(dir, tag) => remote::import_layout(dir, tag)
                .map(|c| (BlobSource::Layout(dir.clone()), c))
                .map_err(anyhow::Error::from),
            CacheLocation::Inline => continue,
        };
        match got {
            Ok((source, config)) => out.add(Arc::new(source), &config),
            Err(e) => warn(format!(
                "cache import from {} failed, building without it: {}",
                describe(loc),
                crate::error_text(&e)
            )),
        }
    }
    out
}

/// How a cache location is named in messages.
pub fn describe(loc: &CacheLocation) -> String {
    match loc {
        CacheLocation::Registry(r) => r.clone(),
        CacheLocation::Local(d, tag) => format!("{}:{tag}", d.display()),
        CacheLocation::Inline => "inline".into(),
    }
}

/// The cache records for `to`: every result (`mode=max`) or the results on
/// the final image's layer chain (`mode=min`, inline).
pub fn config_for(
    ops: &Ops,
    top: Option<&str>,
    to: &CacheTo,
    compression: &rbuild_cache::CompressOptions,
    epoch: Option<i64>,
) -> Result<CacheConfig> {
    let records = ops
        .cache_records(top, to.max, compression, epoch)
        .context("collect cache records")?;
    let mut config = CacheConfig::default();
    for (key, layers, result) in &records {
        config.add_record_with_result(key, layers, result.as_ref());
    }
    if to.cache_mounts {
        for (id, dir) in ops.used_cache_mounts() {
            let layer = rbuild_cache::export_layer(
                &ops.store,
                &rbuild_cache::DiffSource::Compare {
                    lower: None,
                    upper: dir.clone(),
                },
                &rbuild_cache::DiffOptions::default(),
                compression,
            )
            .with_context(|| format!("export cache mount {id}"))?;
            config.add_cache_mount(
                &id,
                &rbuild_solver::index::LayerRecord {
                    diff_id: layer.diff_id,
                    descriptor: layer.descriptor,
                    empty: false,
                },
            );
        }
    }
    Ok(config)
}

/// The inline cache records of an image whose layers are `image_layers`
/// (non-empty ones, base first).
pub fn inline_records(
    ops: &Ops,
    top: Option<&str>,
    image_layers: &[rbuild_solver::index::LayerRecord],
    compression: &rbuild_cache::CompressOptions,
    epoch: Option<i64>,
) -> Result<serde_json::Value> {
    let image: Vec<&rbuild_graph::Digest> = image_layers
        .iter()
        .filter(|l| !l.empty)
        .map(|l| &l.diff_id)
        .collect();
    let mut out = Vec::new();
    for (key, layers, result) in ops
        .cache_records(top, false, compression, epoch)
        .context("collect cache records")?
    {
        let own: Vec<&rbuild_graph::Digest> = layers
            .iter()
            .filter(|l| !l.empty)
            .map(|l| &l.diff_id)
            .collect();
        if own.len() <= image.len() && image[..own.len()] == own[..] {
            out.push(remote::InlineEntry {
                key,
                layers: own.len(),
                result,
            });
        }
    }
    Ok(serde_json::to_value(out)?)
}

/// Blobs a push to `target` can mount instead of uploading (lazy layers
/// from another repository of the same registry); the other lazy blobs are
/// fetched into the store first.
pub fn prepare_push(
    ops: &Ops,
    target: &rbuild_registry::Reference,
    blobs: &[rbuild_cache::Descriptor],
) -> Result<BTreeMap<rbuild_graph::Digest, String>> {
    let mut hints = BTreeMap::new();
    let mut fetch = Vec::new();
    for d in blobs {
        if ops.store.contains(&d.digest) {
            continue;
        }
        match ops.blob_source(&d.digest).as_deref() {
            Some(BlobSource::Registry(r)) if r.registry == target.registry => {
                hints.insert(d.digest.clone(), r.repository.clone());
            }
            _ => fetch.push(d.clone()),
        }
    }
    ops.fetch_blobs(&fetch).context("fetch layers to push")?;
    Ok(hints)
}

/// Export the cache to `to` (not inline: that goes into the image config).
pub fn export(
    rt: &tokio::runtime::Runtime,
    client: &rbuild_registry::Client,
    ops: &Ops,
    to: &CacheTo,
    config: &CacheConfig,
) -> Result<()> {
    let (manifest, bytes, blobs) = config
        .write_manifest(&ops.store)
        .context("write the cache manifest")?;
    match &to.location {
        CacheLocation::Registry(r) => {
            let reference = rbuild_registry::Reference::parse(r)
                .with_context(|| format!("invalid cache ref {r:?}"))?;
            let mount_from = prepare_push(ops, &reference, &blobs)?;
            rt.block_on(client.push_image_with(
                &reference,
                &ops.store,
                &bytes,
                &manifest.media_type,
                &blobs,
                &rbuild_registry::PushOptions { mount_from },
            ))
            .with_context(|| format!("push cache to {reference}"))?;
        }
        CacheLocation::Local(dir, tag) => {
            ops.fetch_blobs(&blobs).context("fetch cache layers")?;
            remote::export_layout(&ops.store, dir, tag, &manifest, &blobs)
                .with_context(|| format!("write cache to {}", dir.display()))?;
        }
        CacheLocation::Inline => {}
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            parse_from("127.0.0.1:5000/app:cache").unwrap(),
            CacheLocation::Registry("127.0.0.1:5000/app:cache".into())
        );
        assert_eq!(
            parse_from("type=local,src=/c").unwrap(),
            CacheLocation::Local("/c".into(), "latest".into())
        );
        let t = parse_to("type=registry,ref=r/x:c,mode=min,cache-mounts=true").unwrap();
        assert!(!t.max && t.cache_mounts && !t.ignore_error);
        let t = parse_to("type=local,dest=/d,tag=v1").unwrap();
        assert!(t.max);
        assert_eq!(t.location, CacheLocation::Local("/d".into(), "v1".into()));
        assert_eq!(
            parse_to("type=inline").unwrap().location,
            CacheLocation::Inline
        );
        let e = parse_to("type=gha").unwrap_err().to_string();
        assert!(e.contains("unsupported cache type \"gha\""), "{e}");
        assert!(parse_to("type=local")
            .unwrap_err()
            .to_string()
            .contains("dest=DIR"));
        assert!(parse_to("type=registry,ref=x,mode=all").is_err());
        assert!(parse_from("type=inline").is_err());
    }
}
