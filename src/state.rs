//! The state directory: content store, snapshots, cache index, and rbuild's
//! own image store. The state root is itself an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/`), so `skopeo`, `umoci` or `podman` read the
//! images rbuild built straight from it (`oci:<root>:<name>`).

use anyhow::{Context, Result};
use rbuild_cache::Descriptor;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where rbuild keeps its state when `--root` is not given.
pub fn default_root() -> PathBuf {
    if rustix_is_root() {
        return PathBuf::from("/var/lib/rbuild");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("rbuild");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/rbuild")
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Make sure the state root is an OCI layout (marker file and index).
pub fn init_layout(root: &Path) -> Result<()> {
    fs::create_dir_all(root).with_context(|| format!("create state dir {}", root.display()))?;
    let marker = root.join("oci-layout");
    if !marker.exists() {
        write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let index = root.join("index.json");
    if !index.exists() {
        write_atomic(
            &index,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
        )?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("write {}", path.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Normalize a tag as docker does for a local name: add `:latest` when no
/// tag or digest is given.
pub fn normalize_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Record `manifest` under each name in the state root's `index.json`
/// (replacing older entries with the same name), under an exclusive lock.
pub fn tag_image(root: &Path, manifest: &Descriptor, names: &[String]) -> Result<()> {
    let lock_path = root.join("index.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    lock.lock().context("lock the image index")?;
    let index_path = root.join("index.json");
    let text = fs::read(&index_path).with_context(|| format!("read {}", index_path.display()))?;
    let mut index: serde_json::Value = serde_json::from_slice(&text).context("parse index.json")?;
    let manifests = index
        .get_mut("manifests")
        .and_then(|m| m.as_array_mut())
        .context("index.json has no manifests array")?;
    for name in names {
        manifests.retain(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(|v| v.as_str())
                != Some(name.as_str())
        });
        let mut d = serde_json::to_value(manifest)?;
        d["annotations"] = serde_json::json!({
            "org.opencontainers.image.ref.name": name,
            "io.containerd.image.name": name,
        });
        manifests.push(d);
    }
    write_atomic(&index_path, &serde_json::to_vec(&index)?)?;
    drop(lock);
    Ok(())
}
