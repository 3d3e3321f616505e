//! The exporters: one per output type, all behind [`Exporter`].

use crate::apply::FinalTree;
use crate::assemble::AssembledImage;
use crate::oci::{normalize_name, write_layout_dir, write_layout_tar, ImageName};
use crate::spec::{Destination, OutputKind, OutputSpec};
use crate::tario::{archive_mtime, open_layer, with_output};
use crate::{Error, Result};
use rbuild_cache::ContentStore;
use rbuild_graph::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What every exporter reads: the store holding the blobs and the assembled
/// image.
#[derive(Clone, Copy, Debug)]
pub struct ExportContext<'a> {
    /// The content store holding the manifest, config and layer blobs.
    pub store: &'a ContentStore,
    /// The image to export.
    pub image: &'a AssembledImage,
    /// Stamps archive entries (0 when unset) and clamps rootfs mtimes.
    pub source_date_epoch: Option<i64>,
    /// Where `type=local` and `type=tar` compute the image's final tree
    /// before writing it (rbuild passes `<state dir>/tmp`; the system
    /// temporary directory when unset). Never the destination's directory.
    pub scratch_dir: Option<&'a Path>,
}

/// Writes an assembled image somewhere. Exporters never build or compress;
/// they only copy and arrange what is in the content store.
pub trait Exporter {
    /// Write the output.
    fn export(&self, cx: &ExportContext<'_>) -> Result<()>;
}

fn parse_names(names: &[String]) -> Result<Vec<ImageName>> {
    names.iter().map(|n| normalize_name(n)).collect()
}

/// `type=oci`: an OCI image layout, as a tar (`tar=true`, to a file or
/// stdout) or as a directory merged into any layout already there.
/// `index.json` gets one entry per name, annotated with
/// `io.containerd.image.name` (full name) and
/// `org.opencontainers.image.ref.name` (tag), as BuildKit writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciExporter {
    /// File, directory (`tar=false`) or stdout.
    pub dest: Destination,
    /// Tar (true) or directory (false).
    pub tar: bool,
    /// Image names (`name=`).
    pub names: Vec<String>,
}

impl OciExporter {
    /// Write the layout tar to `w`.
    pub fn write_to(&self, cx: &ExportContext<'_>, w: &mut dyn Write) -> Result<()> {
        write_layout(cx, &Destination::Stdout, true, &self.names, false, Some(w))
    }
}

impl Exporter for OciExporter {
    fn export(&self, cx: &ExportContext<'_>) -> Result<()> {
        write_layout(cx, &self.dest, self.tar, &self.names, false, None)
    }
}

/// `type=docker`: a docker-archive tar that `docker load` and `podman load`
/// accept. Like BuildKit's, it is an OCI layout plus a Docker
/// `manifest.json` (Config, RepoTags, Layers), with layers kept compressed
/// as `blobs/sha256/<hex>`. With `tar=false` the same files go into a
/// directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerExporter {
    /// File, directory (`tar=false`) or stdout.
    pub dest: Destination,
    /// Tar (true) or directory (false).
    pub tar: bool,
    /// Image names; tagged ones become `RepoTags`.
    pub names: Vec<String>,
}

impl DockerExporter {
    /// Write the docker-archive tar to `w`.
    pub fn write_to(&self, cx: &ExportContext<'_>, w: &mut dyn Write) -> Result<()> {
        write_layout(cx, &Destination::Stdout, true, &self.names, true, Some(w))
    }
}

impl Exporter for DockerExporter {
    fn export(&self, cx: &ExportContext<'_>) -> Result<()> {
        write_layout(cx, &self.dest, self.tar, &self.names, true, None)
    }
}

/// The OCI layout (`docker=false`) or docker-archive (`docker=true`) of
/// an image: to `w` when given, else as a tar to `dest` or, with
/// `tar=false`, as a directory at `dest`.
fn write_layout(
    cx: &ExportContext<'_>,
    dest: &Destination,
    tar: bool,
    names: &[String],
    docker: bool,
    w: Option<&mut dyn Write>,
) -> Result<()> {
    let names = parse_names(names)?;
    let mtime = archive_mtime(cx.source_date_epoch);
    match (w, dest, tar) {
        (Some(w), _, _) => write_layout_tar(cx.store, cx.image, &names, mtime, docker, w),
        (None, dest, true) => with_output(dest, |w| {
            write_layout_tar(cx.store, cx.image, &names, mtime, docker, w)
        }),
        (None, Destination::Path(dir), false) => {
            write_layout_dir(cx.store, cx.image, &names, dir, docker)
        }
        (None, Destination::Stdout, false) => Err(Error::InvalidOptions(format!(
            "{} directory cannot be written to stdout",
            if docker {
                "a docker archive"
            } else {
                "an OCI layout"
            }
        ))),
    }
}

/// The layers' diff_ids, from the config's `rootfs`.
fn diff_ids(image: &AssembledImage) -> Result<Vec<Digest>> {
    let v: serde_json::Value = serde_json::from_slice(&image.config_json)?;
    let ids: Vec<Digest> = match v["rootfs"]["diff_ids"].as_array() {
        Some(a) => a
            .iter()
            .map(|d| {
                d.as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::InvalidOptions(format!("bad diff_id {d} in config")))
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    if ids.len() != image.layers.len() {
        return Err(Error::InvalidOptions(format!(
            "config lists {} diff_ids for {} layers",
            ids.len(),
            image.layers.len()
        )));
    }
    Ok(ids)
}

/// The image's final tree: every layer applied, in order, in a scratch
/// directory (never at the destination).
fn final_tree(cx: &ExportContext<'_>) -> Result<FinalTree> {
    let scratch = cx
        .scratch_dir
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut tree = FinalTree::new_in(&scratch)?;
    for (desc, diff_id) in cx.image.layers.iter().zip(diff_ids(cx.image)?) {
        let r = open_layer(cx.store, desc, &diff_id)?;
        tree.apply(r, &desc.digest)?;
    }
    Ok(tree)
}

/// `type=local`: the image's final filesystem as files in a directory
/// (created if missing). What the image has replaces what is there (an
/// existing directory stays and takes the image's metadata); nothing else in
/// the directory, and nothing outside it, is touched. Modes, owners (when
/// running as root), symlinks, hard links, devices, fifos, xattrs and mtimes
/// come from the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalExporter {
    /// The directory to fill.
    pub dest: PathBuf,
}

impl Exporter for LocalExporter {
    fn export(&self, cx: &ExportContext<'_>) -> Result<()> {
        final_tree(cx)?.write_local(&self.dest)
    }
}

/// `type=tar`: the image's final filesystem as one tarball, entries sorted
/// by name, mtimes clamped to `SOURCE_DATE_EPOCH` when it is set. The tree
/// is computed in the scratch directory first, so this needs disk space
/// for the rootfs there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarExporter {
    /// File or stdout.
    pub dest: Destination,
}

impl TarExporter {
    /// Write the rootfs tar to `w`.
    pub fn write_to(&self, cx: &ExportContext<'_>, w: &mut dyn Write) -> Result<()> {
        let tree = final_tree(cx)?;
        let clamp = cx.source_date_epoch.map(|e| u64::try_from(e).unwrap_or(0));
        tree.write_tar(clamp, w)
    }
}

impl Exporter for TarExporter {
    fn export(&self, cx: &ExportContext<'_>) -> Result<()> {
        with_output(&self.dest, |w| self.write_to(cx, w))
    }
}

/// The exporter for a parsed `--output`. `type=image`/`registry` is not
/// handled here (the registry crate pushes), and is an error.
pub fn exporter_for(spec: &OutputSpec) -> Result<Box<dyn Exporter>> {
    let dest = spec.dest.clone().ok_or_else(|| {
        Error::InvalidOptions(format!(
            "output type={} needs a destination",
            spec.kind.name()
        ))
    })?;
    Ok(match spec.kind {
        OutputKind::Oci => Box::new(OciExporter {
            dest,
            tar: spec.tar,
            names: spec.names.clone(),
        }),
        OutputKind::Docker => Box::new(DockerExporter {
            dest,
            tar: spec.tar,
            names: spec.names.clone(),
        }),
        OutputKind::Local => match dest {
            Destination::Path(p) => Box::new(LocalExporter { dest: p }),
            Destination::Stdout => {
                return Err(Error::InvalidOptions(
                    "type=local cannot write to stdout".to_string(),
                ))
            }
        },
        OutputKind::Tar => Box::new(TarExporter { dest }),
        OutputKind::Image => {
            return Err(Error::InvalidOptions(
                "type=image/registry is pushed by the registry client, not by an exporter"
                    .to_string(),
            ))
        }
    })
}
