//! OCI image layouts, as a tar stream or a directory (merged into an
//! existing layout when there is one).

use crate::assemble::{canonical_json, media_types as mt, AssembledImage};
use crate::tario::{append_blob, append_bytes, append_dir, open_verified, write_atomic};
use crate::{Error, IoContext, Result};
use rbuild_cache::{ContentStore, Descriptor};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// `io.containerd.image.name`: the full image name.
pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// `org.opencontainers.image.ref.name`: the tag.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An image name split the way the OCI layout annotations want it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageName {
    /// Fully qualified: `docker.io/library/foo:latest`.
    pub full: String,
    /// The familiar form Docker prints: `foo:latest`.
    pub familiar: String,
    /// The tag (or `tag@digest`, or the digest), for `ref.name`.
    pub object: String,
    /// Whether the name has a tag (a digest-only name cannot be a RepoTag).
    pub tagged: bool,
}

/// Normalize an image name like Docker does: add `docker.io/` (and
/// `library/`) when there is no registry, and `:latest` when there is no
/// tag and no digest.
pub(crate) fn normalize_name(name: &str) -> Result<ImageName> {
    let bad =
        |reason: &str| Error::InvalidOptions(format!("invalid image name {name:?}: {reason}"));
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("empty or contains whitespace"));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    if let Some(d) = digest {
        d.parse::<rbuild_graph::Digest>()
            .map_err(|_| bad("digest is not sha256:<64 hex>"))?;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if repo.is_empty() || repo.ends_with('/') || repo.starts_with('/') || repo.contains("//") {
        return Err(bad("empty path component"));
    }
    if let Some(t) = tag {
        let valid = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(bad("invalid tag"));
        }
    }
    let (domain, path) = match repo.split_once('/') {
        Some((d, p)) if d.contains(['.', ':']) || d == "localhost" => (d, p.to_string()),
        _ => ("docker.io", repo.to_string()),
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository names must be lowercase"));
    }
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let tag = match (tag, digest) {
        (None, None) => Some("latest"),
        (t, _) => t,
    };
    let mut object = String::new();
    if let Some(t) = tag {
        object.push_str(t);
    }
    if let Some(d) = digest {
        if !object.is_empty() {
            object.push('@');
        }
        object.push_str(d);
    }
    let sep = if tag.is_some() { ":" } else { "@" };
    let full = format!("{domain}/{path}{sep}{object}");
    let familiar_repo = if domain == "docker.io" {
        path.strip_prefix("library/").unwrap_or(&path).to_string()
    } else {
        format!("{domain}/{path}")
    };
    Ok(ImageName {
        familiar: format!("{familiar_repo}{sep}{object}"),
        full,
        object,
        tagged: tag.is_some(),
    })
}

/// Index entries for `image`: one per name (BuildKit and containerd do the
/// same), or one without names. Each keeps the manifest descriptor's own
/// annotations (`annotation-manifest-descriptor.*`); the name annotations
/// win over a user annotation of the same key.
fn index_descriptors(image: &AssembledImage, names: &[ImageName]) -> Vec<Descriptor> {
    if names.is_empty() {
        return vec![image.manifest.clone()];
    }
    names
        .iter()
        .map(|n| {
            let mut d = image.manifest.clone();
            let mut a = d.annotations.take().unwrap_or_default();
            a.insert(ANNOTATION_IMAGE_NAME.to_string(), n.full.clone());
            a.insert(ANNOTATION_REF_NAME.to_string(), n.object.clone());
            d.annotations = Some(a);
            d
        })
        .collect()
}

/// The layout's `index.json`, with the image's index annotations
/// (`annotation-index.*`) when it has any.
fn index_json(
    manifests: &[serde_json::Value],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = serde_json::to_value(annotations)?;
    }
    canonical_json(&index)
}

/// docker-archive `manifest.json`: Config, RepoTags, Layers.
pub(crate) fn docker_manifest_json(image: &AssembledImage, names: &[ImageName]) -> Result<Vec<u8>> {
    let blob = |d: &Descriptor| format!("blobs/sha256/{}", d.digest.hex());
    let tags: Vec<&str> = names
        .iter()
        .filter(|n| n.tagged)
        .map(|n| n.familiar.as_str())
        .collect();
    let layers: Vec<String> = image.layers.iter().map(blob).collect();
    canonical_json(&serde_json::json!([{
        "Config": blob(&image.config),
        "RepoTags": tags,
        "Layers": layers,
    }]))
}

/// All blobs of the image, deduplicated, sorted by digest.
fn blobs(image: &AssembledImage) -> Vec<&Descriptor> {
    let mut all: BTreeMap<&rbuild_graph::Digest, &Descriptor> = BTreeMap::new();
    for d in std::iter::once(&image.manifest)
        .chain(std::iter::once(&image.config))
        .chain(image.layers.iter())
    {
        all.insert(&d.digest, d);
    }
    all.into_values().collect()
}

/// Write the image as an OCI layout tar to `w`, with entries in sorted order
/// (`blobs/…`, `index.json`, `manifest.json` when `docker`, `oci-layout`).
pub(crate) fn write_layout_tar(
    store: &ContentStore,
    image: &AssembledImage,
    names: &[ImageName],
    mtime: u64,
    docker: bool,
    w: &mut dyn Write,
) -> Result<()> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Deterministic);
    append_dir(&mut b, "blobs/", mtime)?;
    append_dir(&mut b, "blobs/sha256/", mtime)?;
    for d in blobs(image) {
        append_blob(
            &mut b,
            store,
            d,
            &format!("blobs/sha256/{}", d.digest.hex()),
            mtime,
        )?;
    }
    let manifests = index_descriptors(image, names)
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    append_bytes(
        &mut b,
        "index.json",
        &index_json(&manifests, &image.index_annotations)?,
        mtime,
    )?;
    if docker {
        append_bytes(
            &mut b,
            "manifest.json",
            &docker_manifest_json(image, names)?,
            mtime,
        )?;
    }
    append_bytes(&mut b, "oci-layout", OCI_LAYOUT, mtime)?;
    let w = b.into_inner().at("tar")?;
    w.flush().at("tar")
}

/// Copy a blob into `blobs/sha256/` of a layout directory unless an equally
/// sized file is already there.
fn copy_blob(store: &ContentStore, d: &Descriptor, blob_dir: &Path) -> Result<()> {
    let dest = blob_dir.join(d.digest.hex());
    if fs::metadata(&dest)
        .map(|m| m.is_file() && m.len() == d.size)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(blob_dir)
        .at(blob_dir)?;
    let mut r = open_verified(store, d)?;
    io::copy(&mut r, &mut tmp).at(&dest)?;
    tmp.as_file().sync_all().at(&dest)?;
    tmp.persist(&dest).map_err(|e| Error::Io {
        path: dest.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// Write the image into an OCI layout directory, creating it if needed. An
/// existing `index.json` is kept, except for entries that carry one of our
/// ref names (replaced) or, without names, an unnamed entry for the same
/// manifest.
pub(crate) fn write_layout_dir(
    store: &ContentStore,
    image: &AssembledImage,
    names: &[ImageName],
    dir: &Path,
    docker: bool,
) -> Result<()> {
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).at(&blob_dir)?;
    let layout = dir.join("oci-layout");
    match fs::read(&layout) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::BadLayout {
                    path: dir.to_path_buf(),
                    reason: format!("oci-layout: {e}"),
                })?;
            if v["imageLayoutVersion"] != "1.0.0" {
                return Err(Error::BadLayout {
                    path: dir.to_path_buf(),
                    reason: format!("unsupported imageLayoutVersion {}", v["imageLayoutVersion"]),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at(&layout),
    }
    for d in blobs(image) {
        copy_blob(store, d, &blob_dir)?;
    }

    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match fs::read(&index_path) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::BadLayout {
                    path: dir.to_path_buf(),
                    reason: format!("index.json: {e}"),
                })?;
            match v.get("manifests") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(Error::BadLayout {
                        path: dir.to_path_buf(),
                        reason: "index.json: manifests is not an array".to_string(),
                    })
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at(&index_path),
    };
    let ours = index_descriptors(image, names);
    let ref_name = |v: &serde_json::Value| {
        v.get("annotations")
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .and_then(|r| r.as_str())
            .map(String::from)
    };
    let our_refs: Vec<&str> = names.iter().map(|n| n.object.as_str()).collect();
    let our_digest = image.manifest.digest.to_string();
    manifests.retain(|m| match ref_name(m) {
        Some(r) => !our_refs.contains(&r.as_str()),
        None => !(names.is_empty() && m["digest"] == our_digest.as_str()),
    });
    for d in ours {
        manifests.push(serde_json::to_value(d)?);
    }
    write_atomic(
        &index_path,
        &index_json(&manifests, &image.index_annotations)?,
    )?;
    if docker {
        write_atomic(
            &dir.join("manifest.json"),
            &docker_manifest_json(image, names)?,
        )?;
    }
    if !layout.exists() {
        write_atomic(&layout, OCI_LAYOUT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = normalize_name("foo").expect("foo");
        assert_eq!(n.full, "docker.io/library/foo:latest");
        assert_eq!(n.familiar, "foo:latest");
        assert_eq!(n.object, "latest");
        let n = normalize_name("localhost:5000/a/b:1.0").expect("reg");
        assert_eq!(n.full, "localhost:5000/a/b:1.0");
        assert_eq!(n.familiar, n.full);
        assert_eq!(n.object, "1.0");
        let n = normalize_name("user/app:v2").expect("hub");
        assert_eq!(n.full, "docker.io/user/app:v2");
        assert_eq!(n.familiar, "user/app:v2");
        let d = format!("sha256:{}", "a".repeat(64));
        let n = normalize_name(&format!("foo@{d}")).expect("digest");
        assert_eq!(n.full, format!("docker.io/library/foo@{d}"));
        assert!(!n.tagged);
        for bad in ["", "Foo", "foo:", "foo:-x", "a//b", "foo@sha256:zz", "a b"] {
            assert!(normalize_name(bad).is_err(), "{bad}");
        }
    }
}
