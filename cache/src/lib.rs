//! rbuild's on-disk state: the content store (blobs), snapshots (unpacked
//! trees), layer diff and apply, and the cache index.
//!
//! Invariants:
//! - A blob is visible under `blobs/sha256/<hex>` only after its size and
//!   digest were verified and its bytes fsynced: readers never see a partial
//!   blob, and a kill at any moment leaves at most a stray temp file under
//!   `ingest/`, which the next open removes.
//! - This crate knows nothing of Dockerfiles, registries or the solver.

#![deny(missing_docs)]

mod content;

pub use content::{BlobWriter, ContentStore, Descriptor};
pub use rbuild_graph::Digest;

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
