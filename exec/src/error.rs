//! The crate's error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run could not be carried out. A process that exits non-zero is not
/// an error (see [`crate::ExitStatus`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The request is invalid (bad path, bad mount target, empty args…).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The user or group could not be resolved in the rootfs.
    #[error("user resolution: {0}")]
    User(String),
    /// Building or writing the runtime spec failed.
    #[error("runtime spec: {0}")]
    Spec(String),
    /// The external runtime binary is missing or not executable.
    #[error("OCI runtime {path:?} not found or not executable (install it: `apt-get install runc`): {reason}")]
    RuntimeNotFound {
        /// The path or name that was looked up.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The runtime failed to create or start the container (not the
    /// process's own exit).
    #[error("OCI runtime failed: {message}")]
    Runtime {
        /// What went wrong, with the runtime's last diagnostics.
        message: String,
    },
    /// The embedded runtime is not compiled in (feature `embedded-runtime`).
    #[error("the embedded runtime is not compiled in (cargo feature `embedded-runtime`); use an external runtime such as runc")]
    EmbeddedUnavailable,
    /// The run was cancelled through a [`crate::CancelToken`].
    #[error("run cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
