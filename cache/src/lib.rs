//! rbuild's on-disk state: the content store (blobs), snapshots (unpacked
//! trees), layer diff and apply, compression, the exported-layer cache,
//! leases and garbage collection.
//!
//! Key types:
//! - [`ContentStore`]: immutable blobs under `blobs/sha256/<hex>`.
//! - [`Snapshotter`]: containerd-style snapshots (prepare → active →
//!   commit → committed; views), implemented by [`OverlaySnapshotter`]
//!   (default: overlayfs, a commit is a metadata change, no copying) and
//!   [`CopySnapshotter`] (plain directory copies, works everywhere). One
//!   conformance suite runs against both.
//! - [`apply_layer`] unpacks an OCI layer into an [`ApplyTarget`] (overlay
//!   whiteouts as char 0/0 devices and `trusted.overlay.opaque`, or deletes
//!   in a merged tree); every path is resolved with `openat2(RESOLVE_IN_ROOT)`
//!   so no entry can write outside the target.
//! - [`write_layer_tar`] / [`export_layer`] turn a [`DiffSource`] into a
//!   reproducible tar (sorted, numeric owners, clamped mtimes) and, in one
//!   streaming pass, into a compressed blob plus its diff_id.
//!
//! Design choice and its cost: snapshot metadata is one small JSON file per
//! snapshot (written atomically), guarded by a `flock` and a generation
//! counter, instead of a database. It survives kills at any point and lets
//! several processes share a root, at the cost of a directory scan when
//! another process changed something.
//!
//! Invariants:
//! - A blob is visible under `blobs/sha256/<hex>` only after its size and
//!   digest were verified and its bytes fsynced: readers never see a partial
//!   blob, and a kill at any moment leaves at most a stray temp file under
//!   `ingest/`, named after its writer; sweeps (`rbuild prune`) remove only
//!   those whose writer is dead.
//! - This crate knows nothing of Dockerfiles, registries or the solver.

#![deny(missing_docs)]

mod apply;
mod compress;
mod content;
mod diff;
mod export;
mod fsutil;
mod gc;
mod lease;
mod snapshot;
#[cfg(test)]
mod testutil;

pub use apply::{apply_layer, ApplyStats, ApplyTarget, WhiteoutMode};
pub use compress::{
    check_level, compress_writer, compression_of_media_type, crc32_combine, decompress_reader,
    detect_compression, media_type, CompressOptions, CompressWriter, Compression, LevelError,
    ParallelGzWriter, MEDIA_TYPE_DOCKER_GZIP, MEDIA_TYPE_DOCKER_TAR, MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD,
};
pub use content::{BlobWriter, ContentStore, Descriptor};
pub use diff::{write_layer_tar, DiffOptions, DiffSource};
pub use export::{export_layer, export_snapshot, Layer, LayerCache};
pub use gc::{du, prune, DiskUsage, PruneOptions, PruneReport};
pub use lease::{GcLock, Lease, Leases, Owner, ProcessLease};
pub use rbuild_graph::Digest;
pub use snapshot::{
    open_default, unmount, CopySnapshotter, Info, Kind, MountSpec, OverlaySnapshotter, Snapshotter,
    Usage,
};

/// Errors of the cache crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IO error, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Written bytes did not match the expected digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller said the content is.
        expected: Digest,
        /// What the content hashed to.
        actual: Digest,
    },
    /// Written bytes did not match the expected size.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Expected size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// A blob is not in the store.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    /// No snapshot has this key.
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// A snapshot with this key or name already exists.
    #[error("snapshot {0:?} already exists")]
    SnapshotExists(String),
    /// The operation does not fit the snapshot's kind (for example
    /// committing a committed snapshot, or preparing on an active parent).
    #[error("snapshot {key:?}: {reason}")]
    InvalidSnapshotState {
        /// The snapshot key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The snapshot still has children and cannot be removed.
    #[error("snapshot {0:?} has children")]
    HasChildren(String),
    /// Snapshot metadata on disk could not be parsed.
    #[error("corrupt metadata at {path}: {reason}")]
    CorruptMetadata {
        /// The metadata file.
        path: std::path::PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A layer entry would be written outside the target root (or is
    /// otherwise unsafe); the layer is rejected.
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafePath {
        /// The entry path as found in the tar.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A layer tar is malformed or uses an unsupported feature.
    #[error("invalid layer: {0}")]
    InvalidLayer(String),
    /// Mounting or unmounting failed (overlayfs or bind); usually means the
    /// process lacks CAP_SYS_ADMIN or the kernel lacks overlayfs.
    #[error("mount at {target}: {source} (needs root / CAP_SYS_ADMIN and overlayfs)")]
    Mount {
        /// The mount point.
        target: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A lease names something that does not exist or is malformed.
    #[error("lease {0:?}: {1}")]
    Lease(String, String),
}

/// Result alias of the cache crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an IO error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}
