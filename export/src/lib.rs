//! rbuild-export: turn a built image into outputs, without rebuilding.
//!
//! The exporter's input is what the solver already produced: an
//! [`ImageConfig`](rbuild_graph::ImageConfig) and a list of [`Layer`]s whose
//! compressed blobs are already in the [`ContentStore`](rbuild_cache::ContentStore).
//!
//! - [`assemble_image`] adds `rootfs`, applies `SOURCE_DATE_EPOCH`, writes the
//!   config and the manifest (OCI or Docker schema 2 media types) as canonical
//!   JSON (sorted keys, compact) into the content store, and returns an
//!   [`AssembledImage`].
//! - An [`Exporter`] writes an assembled image somewhere: an OCI image layout
//!   as a tar or a directory ([`OciExporter`]), a docker-archive tar
//!   ([`DockerExporter`]), the final rootfs as a directory ([`LocalExporter`])
//!   or as one tarball ([`TarExporter`]). [`exporter_for`] picks one from an
//!   [`OutputSpec`], which [`parse_output_spec`] reads from buildx's
//!   `--output` syntax.
//!
//! Invariants:
//! - Exporters only assemble: they read blobs from the content store and never
//!   compress, build or fetch anything. Registry push belongs to the registry
//!   crate.
//! - Nothing holds a whole layer in memory: tar entries are streamed from blob
//!   files, and every streamed blob is checked against its digest as it is read.
//! - Output is deterministic: archive entries are sorted, owned by 0:0, and
//!   stamped with `SOURCE_DATE_EPOCH` (or 0), so the same inputs give the same
//!   bytes.
//!
//! Design choice and its cost: the rootfs outputs (`local`, `tar`) write
//! the image's *final* tree and never replay layer history onto the
//! destination. The layers are applied, in order, by the one layer applier
//! (`rbuild_cache::apply_layer`, whiteouts deleting) into a [`FinalTree`] in
//! a scratch directory inside rbuild's state dir; `type=local` then copies
//! that tree into `dest` through directory handles on `dest` (nothing there
//! is followed, nothing the image lacks is touched) and `type=tar` tars it
//! in sorted order. This costs disk space equal to the rootfs and one extra
//! write of it, about as much as unpacking the layers again; merging the
//! solver's unpacked snapshots instead would save the copy but needs the
//! snapshots (and lazy base layers unpacked) at export time.

#![deny(missing_docs)]

mod apply;
mod assemble;
mod exporter;
mod oci;
mod spec;
mod tario;
mod tree;

pub use apply::FinalTree;
pub use assemble::{
    assemble_image, canonical_json, format_rfc3339, media_types, AssembleOptions, AssembledImage,
    Layer,
};
pub use exporter::{
    exporter_for, DockerExporter, ExportContext, Exporter, LocalExporter, OciExporter, TarExporter,
};
pub use spec::{parse_output_spec, Compression, Destination, OutputKind, OutputSpec};

use rbuild_graph::Digest;
use std::path::PathBuf;

/// Errors of the export crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IO error, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written (or `-` for stdout).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing the export to stdout failed (for a broken pipe: the reading
    /// command exited first).
    #[error("writing the export to stdout: {0}")]
    Stdout(std::io::Error),
    /// The content store failed (missing blob, IO error, …).
    #[error(transparent)]
    Store(#[from] rbuild_cache::Error),
    /// JSON could not be encoded or decoded.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The `--output` value could not be parsed.
    #[error("invalid --output {spec:?}: {reason}")]
    InvalidSpec {
        /// The whole spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The number of non-empty history entries differs from the layer count.
    #[error(
        "image history has {history} entries that add a layer but the image has {layers} layers"
    )]
    HistoryMismatch {
        /// History entries with `empty_layer: false`.
        history: usize,
        /// Layers given.
        layers: usize,
    },
    /// A media type cannot be used in the requested form.
    #[error("unsupported media type {media_type:?}: {reason}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Options that cannot be combined.
    #[error("{0}")]
    InvalidOptions(String),
    /// A blob in the store is not what its descriptor says.
    #[error("blob {digest} in the content store is corrupt: {reason}")]
    CorruptBlob {
        /// The blob's expected digest.
        digest: Digest,
        /// What was wrong.
        reason: String,
    },
    /// A layer could not be applied to the final tree (a refused entry:
    /// `..`, a malformed whiteout, a link out of the tree; or a broken tar).
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer's blob digest.
        digest: Digest,
        /// What the layer applier said.
        source: rbuild_cache::Error,
    },
    /// An existing OCI layout at the destination cannot be merged into.
    #[error("existing OCI layout at {path}: {reason}")]
    BadLayout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias of the export crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an IO error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
