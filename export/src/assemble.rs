//! Image assembly: config JSON with `rootfs`, and the manifest, as canonical
//! JSON blobs in the content store.

use crate::{Error, Result};
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::{Digest, ImageConfig};
use serde::Serialize;
use std::collections::BTreeMap;

/// Media type strings used by the exporters.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// OCI non-distributable uncompressed layer (deprecated in the spec).
    pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    /// OCI non-distributable gzip layer (deprecated in the spec).
    pub const OCI_LAYER_ND_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker uncompressed layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker foreign (non-distributable) gzip layer.
    pub const DOCKER_LAYER_FOREIGN: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}
use media_types as mt;

/// One layer of an image: the digest of its uncompressed tar (`diff_id`) and
/// the descriptor of its (usually compressed) blob in the content store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// sha256 of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The blob as stored; its media type says how it is compressed.
    pub descriptor: Descriptor,
}

/// Options of [`assemble_image`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembleOptions {
    /// OCI media types (default) or Docker schema 2 ones.
    pub oci_mediatypes: bool,
    /// When set, `created` and every history `created` become this time.
    pub source_date_epoch: Option<i64>,
    /// Manifest annotations (OCI media types only).
    pub annotations: BTreeMap<String, String>,
    /// Annotations of the manifest's descriptor, where an index lists it
    /// (an OCI layout's `index.json`).
    pub manifest_descriptor_annotations: BTreeMap<String, String>,
    /// Annotations of the index that lists the manifest (an OCI layout's
    /// `index.json`).
    pub index_annotations: BTreeMap<String, String>,
    /// Extra top-level config fields (e.g. inline cache records).
    pub extra_config: BTreeMap<String, serde_json::Value>,
    /// Accept layers whose blobs are not in the store (they exist in a
    /// registry the image is pushed to); their descriptors are trusted.
    pub allow_remote_layers: bool,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        Self {
            oci_mediatypes: true,
            source_date_epoch: None,
            annotations: BTreeMap::new(),
            manifest_descriptor_annotations: BTreeMap::new(),
            index_annotations: BTreeMap::new(),
            extra_config: BTreeMap::new(),
            allow_remote_layers: false,
        }
    }
}

/// The result of [`assemble_image`]: every blob it names is in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledImage {
    /// Descriptor of the manifest blob, with the manifest-descriptor
    /// annotations (an index that lists it carries them).
    pub manifest: Descriptor,
    /// Annotations for the index that lists the manifest.
    pub index_annotations: BTreeMap<String, String>,
    /// Descriptor of the config blob.
    pub config: Descriptor,
    /// Layer descriptors, in order, with the manifest's media types.
    pub layers: Vec<Descriptor>,
    /// The config bytes (canonical JSON).
    pub config_json: Vec<u8>,
    /// The manifest bytes (canonical JSON).
    pub manifest_json: Vec<u8>,
}

impl AssembledImage {
    /// Whether the manifest uses OCI media types.
    pub fn is_oci(&self) -> bool {
        self.manifest.media_type == mt::OCI_MANIFEST
    }
}

/// Serialize `value` canonically: through `serde_json::Value` (whose maps
/// are sorted by key), compact, no trailing newline.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let v = serde_json::to_value(value)?;
    Ok(serde_json::to_vec(&v)?)
}

/// Format seconds since the Unix epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn format_rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Map a layer media type to the requested family (OCI or Docker).
fn layer_media_type(media_type: &str, oci: bool) -> Result<&'static str> {
    let unsupported = |reason: &str| Error::UnsupportedMediaType {
        media_type: media_type.to_string(),
        reason: reason.to_string(),
    };
    let m = match media_type {
        mt::OCI_LAYER | mt::DOCKER_LAYER => {
            if oci {
                mt::OCI_LAYER
            } else {
                mt::DOCKER_LAYER
            }
        }
        mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP => {
            if oci {
                mt::OCI_LAYER_GZIP
            } else {
                mt::DOCKER_LAYER_GZIP
            }
        }
        mt::OCI_LAYER_ND_GZIP | mt::DOCKER_LAYER_FOREIGN => {
            if oci {
                mt::OCI_LAYER_ND_GZIP
            } else {
                mt::DOCKER_LAYER_FOREIGN
            }
        }
        mt::OCI_LAYER_ND if oci => mt::OCI_LAYER_ND,
        mt::OCI_LAYER_ZSTD if oci => mt::OCI_LAYER_ZSTD,
        mt::OCI_LAYER_ZSTD | mt::OCI_LAYER_ND => {
            return Err(unsupported(
                "Docker schema 2 has no such layer type; use oci-mediatypes=true",
            ))
        }
        _ => return Err(unsupported("not a known layer media type")),
    };
    Ok(m)
}

/// Drop annotations that are store-internal bookkeeping, not image content.
fn public_annotations(a: &Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = a
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("containerd.io/") && !k.starts_with("buildkit/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// The image config JSON object: `config` plus `rootfs`, with
/// `SOURCE_DATE_EPOCH` applied.
fn config_value(
    config: &ImageConfig,
    layers: &[Layer],
    source_date_epoch: Option<i64>,
) -> Result<serde_json::Value> {
    let mut config = config.clone();
    if let Some(epoch) = source_date_epoch {
        let t = format_rfc3339(epoch);
        config.created = Some(t.clone());
        for h in &mut config.history {
            h.created = Some(t.clone());
        }
    }
    let mut v = serde_json::to_value(&config)?;
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    match v.as_object_mut() {
        Some(obj) => {
            obj.insert(
                "rootfs".to_string(),
                serde_json::json!({ "type": "layers", "diff_ids": diff_ids }),
            );
        }
        None => {
            return Err(Error::InvalidOptions(
                "image config did not serialize to a JSON object".to_string(),
            ))
        }
    }
    Ok(v)
}

/// Assemble an image from its config and layers: write the config (with
/// `rootfs`) and the manifest as canonical JSON into `store`.
///
/// Every layer blob must already be in the store with the size its
/// descriptor says. When the history is not empty, the number of entries
/// with `empty_layer: false` must equal the number of layers (an image with
/// no history at all is valid OCI and accepted).
pub fn assemble_image(
    store: &ContentStore,
    config: &ImageConfig,
    layers: &[Layer],
    opts: &AssembleOptions,
) -> Result<AssembledImage> {
    if !config.history.is_empty() {
        let history = config.history.iter().filter(|h| !h.empty_layer).count();
        if history != layers.len() {
            return Err(Error::HistoryMismatch {
                history,
                layers: layers.len(),
            });
        }
    }
    if !opts.oci_mediatypes && !opts.annotations.is_empty() {
        return Err(Error::InvalidOptions(
            "manifest annotations need OCI media types (oci-mediatypes=true)".to_string(),
        ));
    }

    let mut layer_descs = Vec::with_capacity(layers.len());
    for l in layers {
        let d = &l.descriptor;
        let size = if opts.allow_remote_layers && !store.contains(&d.digest) {
            d.size
        } else {
            store.size(&d.digest)?
        };
        if size != d.size {
            return Err(Error::CorruptBlob {
                digest: d.digest.clone(),
                reason: format!("descriptor says {} bytes, store has {size}", d.size),
            });
        }
        let mut desc = Descriptor::new(
            layer_media_type(&d.media_type, opts.oci_mediatypes)?,
            d.digest.clone(),
            d.size,
        );
        if opts.oci_mediatypes {
            desc.annotations = public_annotations(&d.annotations);
        }
        layer_descs.push(desc);
    }

    let mut config_v = config_value(config, layers, opts.source_date_epoch)?;
    if let Some(obj) = config_v.as_object_mut() {
        for (k, v) in &opts.extra_config {
            obj.insert(k.clone(), v.clone());
        }
    }
    let config_json = canonical_json(&config_v)?;
    let config_digest = store.put(&config_json)?;
    let (manifest_type, config_type) = if opts.oci_mediatypes {
        (mt::OCI_MANIFEST, mt::OCI_CONFIG)
    } else {
        (mt::DOCKER_MANIFEST, mt::DOCKER_CONFIG)
    };
    let config_desc = Descriptor::new(config_type, config_digest, config_json.len() as u64);

    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_desc,
        "layers": layer_descs,
    });
    if !opts.annotations.is_empty() {
        if let Some(obj) = manifest.as_object_mut() {
            obj.insert(
                "annotations".to_string(),
                serde_json::to_value(&opts.annotations)?,
            );
        }
    }
    let manifest_json = canonical_json(&manifest)?;
    let manifest_digest = store.put(&manifest_json)?;
    let mut manifest_desc =
        Descriptor::new(manifest_type, manifest_digest, manifest_json.len() as u64);
    if !opts.manifest_descriptor_annotations.is_empty() {
        manifest_desc.annotations = Some(opts.manifest_descriptor_annotations.clone());
    }
    Ok(AssembledImage {
        manifest: manifest_desc,
        index_annotations: opts.index_annotations.clone(),
        config: config_desc,
        layers: layer_descs,
        config_json,
        manifest_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::HistoryEntry;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    fn store_with_layer() -> (tempfile::TempDir, ContentStore, Layer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("open");
        let blob = b"not really gzip, assembly does not look inside";
        let digest = store.put(blob).expect("put");
        let layer = Layer {
            diff_id: Digest::sha256_of(b"diff"),
            descriptor: Descriptor::new(mt::OCI_LAYER_GZIP, digest, blob.len() as u64),
        };
        (dir, store, layer)
    }

    fn config(history: Vec<HistoryEntry>) -> ImageConfig {
        ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            history,
            ..Default::default()
        }
    }

    #[test]
    fn history_must_match_layers() {
        let (_d, store, layer) = store_with_layer();
        let h = |empty| HistoryEntry {
            empty_layer: empty,
            ..Default::default()
        };
        let cfg = config(vec![h(false), h(false), h(true)]);
        let err = assemble_image(
            &store,
            &cfg,
            std::slice::from_ref(&layer),
            &AssembleOptions::default(),
        )
        .expect_err("mismatch");
        assert!(matches!(
            err,
            Error::HistoryMismatch {
                history: 2,
                layers: 1
            }
        ));
        let cfg = config(vec![h(true), h(false)]);
        assemble_image(&store, &cfg, &[layer], &AssembleOptions::default()).expect("ok");
    }

    #[test]
    fn docker_media_types_and_epoch() {
        let (_d, store, layer) = store_with_layer();
        let cfg = config(vec![HistoryEntry {
            created: Some("2020-01-01T00:00:00Z".into()),
            ..Default::default()
        }]);
        let opts = AssembleOptions {
            oci_mediatypes: false,
            source_date_epoch: Some(0),
            ..Default::default()
        };
        let img =
            assemble_image(&store, &cfg, std::slice::from_ref(&layer), &opts).expect("assemble");
        assert_eq!(img.manifest.media_type, mt::DOCKER_MANIFEST);
        assert_eq!(img.config.media_type, mt::DOCKER_CONFIG);
        assert_eq!(img.layers[0].media_type, mt::DOCKER_LAYER_GZIP);
        let c: serde_json::Value = serde_json::from_slice(&img.config_json).expect("json");
        assert_eq!(c["created"], "1970-01-01T00:00:00Z");
        assert_eq!(c["history"][0]["created"], "1970-01-01T00:00:00Z");
        assert_eq!(c["rootfs"]["diff_ids"][0], layer.diff_id.to_string());
        assert_eq!(
            store.read_blob(&img.manifest.digest).expect("m"),
            img.manifest_json
        );
        // Canonical: compact, keys sorted.
        let s = String::from_utf8(img.manifest_json.clone()).expect("utf8");
        assert!(s.starts_with(r#"{"config":{"digest":"#), "{s}");
        // Same inputs, same digest.
        let again = assemble_image(&store, &cfg, &[layer], &opts).expect("again");
        assert_eq!(again, img);
    }

    #[test]
    fn zstd_needs_oci() {
        let (_d, store, mut layer) = store_with_layer();
        layer.descriptor.media_type = mt::OCI_LAYER_ZSTD.into();
        let opts = AssembleOptions {
            oci_mediatypes: false,
            ..Default::default()
        };
        let err = assemble_image(&store, &config(vec![]), &[layer], &opts).expect_err("zstd");
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    }
}
