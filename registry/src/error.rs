//! The crate's error type and the kinds callers branch on.

use rbuild_graph::Digest;
use std::path::PathBuf;

/// What went wrong, coarsely: the value callers branch on
/// (for exit codes, retry decisions, messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The image reference does not parse.
    InvalidReference,
    /// The registry has no such manifest, tag or blob.
    NotFound,
    /// Authentication failed or is missing (HTTP 401).
    Unauthorized,
    /// Authenticated but not allowed (HTTP 403).
    Denied,
    /// The image has no manifest for the requested platform.
    PlatformNotFound,
    /// Connection failures, timeouts, dropped connections, 5xx and 429
    /// after the retries ran out.
    Network,
    /// The registry answered something this client does not understand or
    /// an unexpected HTTP status.
    Protocol,
    /// Content did not match its digest or size.
    Integrity,
    /// A valid but unsupported feature (schema 1 manifests, non-sha256).
    Unsupported,
    /// The content store failed.
    Store,
    /// A local file could not be read or written.
    Io,
    /// The configuration file is invalid.
    Config,
    /// Reading or storing credentials failed.
    Credentials,
}

/// Errors of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry has no such object.
    #[error("{registry}: {what} not found")]
    NotFound {
        /// Registry host.
        registry: String,
        /// What was asked for (`manifest library/busybox:latest`).
        what: String,
    },
    /// Authentication failed (HTTP 401).
    #[error("authentication to {registry} failed (HTTP 401): {message}")]
    Unauthorized {
        /// Registry (or token server) host.
        registry: String,
        /// The server's message or what was missing.
        message: String,
    },
    /// Access denied (HTTP 403).
    #[error("access to {registry} denied (HTTP 403): {message}")]
    Denied {
        /// Registry host.
        registry: String,
        /// The server's message.
        message: String,
    },
    /// No manifest in the index matches the platform.
    #[error("{reference}: no image for platform {platform} (available: {available})")]
    PlatformNotFound {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A transport failure (connect, TLS, timeout, dropped connection).
    #[error("{registry}: {message}")]
    Transport {
        /// Registry host.
        registry: String,
        /// What failed, including the cause chain.
        message: String,
    },
    /// An HTTP status this client did not expect.
    #[error("{registry}: HTTP {status} for {method} {url}: {message}")]
    Status {
        /// Registry host.
        registry: String,
        /// HTTP status code.
        status: u16,
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// The server's error message, if any.
        message: String,
    },
    /// A malformed or unexpected answer.
    #[error("{registry}: bad response: {message}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What was wrong.
        message: String,
    },
    /// Content from the registry did not hash to its digest.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// Expected digest.
        expected: Digest,
        /// Actual digest.
        actual: Digest,
    },
    /// Content from the registry had the wrong size.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was fetched.
        what: String,
        /// Expected size.
        expected: u64,
        /// Actual size (possibly a lower bound when cut short).
        actual: u64,
    },
    /// A valid but unsupported feature.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] rbuild_cache::Error),
    /// A local IO error.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An invalid configuration.
    #[error("configuration {path}: {message}")]
    Config {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Credential lookup or storage failed.
    #[error("credentials for {registry}: {message}")]
    Credentials {
        /// Registry host.
        registry: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The kind of failure, for callers to branch on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference { .. } => ErrorKind::InvalidReference,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Unauthorized { .. } => ErrorKind::Unauthorized,
            Error::Denied { .. } => ErrorKind::Denied,
            Error::PlatformNotFound { .. } => ErrorKind::PlatformNotFound,
            Error::Transport { .. } => ErrorKind::Network,
            Error::Status { status, .. } if *status >= 500 || *status == 429 => ErrorKind::Network,
            Error::Status { .. } | Error::Protocol { .. } => ErrorKind::Protocol,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => ErrorKind::Integrity,
            Error::Store(
                rbuild_cache::Error::DigestMismatch { .. }
                | rbuild_cache::Error::SizeMismatch { .. },
            ) => ErrorKind::Integrity,
            Error::Store(_) => ErrorKind::Store,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Io { .. } => ErrorKind::Io,
            Error::Config { .. } => ErrorKind::Config,
            Error::Credentials { .. } => ErrorKind::Credentials,
        }
    }

    /// Whether retrying the same request may succeed (transport failures,
    /// 5xx, 429, and bytes cut short or corrupted in transit).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Network)
            || matches!(self, Error::SizeMismatch { expected, actual, .. } if actual < expected)
    }
}

/// Result alias of the registry crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Render a reqwest error with its cause chain (reqwest's Display alone
/// says only "error sending request").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
