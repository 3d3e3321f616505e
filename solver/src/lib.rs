//! The rbuild solver: schedules the build graph and runs its ops.
//!
//! - [`scheduler`] is generic over a [`scheduler::Runner`] and knows nothing
//!   about what ops mean (its tests use fake ops and touch no filesystem).
//! - [`ops`] implements the runner over the cache, exec and registry crates:
//!   cache keys, cache hits, pulls, RUN, file actions, layers for export;
//!   [`git`] fetches and checks out git sources for it.
//!
//! Invariants: the solver never prints (it emits [`progress::Event`]s); a
//! vertex digest (identity of a definition) and a cache key (identity of a
//! result, including the content of local files it reads) are different
//! things; proxy variables never reach a cache key.

#![deny(missing_docs)]

pub mod checksum;
pub mod explain;
pub mod fileop;
pub mod git;
pub mod ignore;
pub mod index;
pub mod mounts;
pub mod ops;
pub mod progress;
pub mod pull;
pub mod remote;
pub mod scheduler;
pub mod snap;
pub mod stamps;

use rbuild_graph::Digest;

/// Errors of the solver, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A RUN exited non-zero or was killed.
    #[error("process \"{}\" did not complete successfully: {status}", command.join(" "))]
    RunFailed {
        /// The vertex.
        vertex: Digest,
        /// argv.
        command: Vec<String>,
        /// `exit code: N` or `killed by signal N`.
        status: String,
        /// The last lines of output.
        output: Vec<String>,
    },
    /// The sandbox could not run the process at all.
    #[error("failed to run \"{}\": {message}", command.join(" "))]
    Exec {
        /// The vertex.
        vertex: Digest,
        /// argv.
        command: Vec<String>,
        /// What went wrong.
        message: String,
    },
    /// A file action failed.
    #[error(transparent)]
    File(#[from] fileop::FileOpError),
    /// Fetching or checking out a git source failed.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// Pulling an image failed.
    #[error("failed to pull {reference}: {message}")]
    Pull {
        /// The image.
        reference: String,
        /// Why.
        message: String,
    },
    /// The content store or a snapshot failed.
    #[error(transparent)]
    Cache(#[from] rbuild_cache::Error),
    /// An IO error while doing something named.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A local source name was not given a directory.
    #[error("no local directory was given for {0:?}")]
    MissingContext(String),
    /// A required secret or ssh agent was not provided.
    #[error("secret {0}: not found (pass it with --secret id={0},src=FILE)")]
    MissingSecret(String),
    /// An error of a step, tagged with its vertex (for the Dockerfile line).
    #[error("{error}")]
    AtVertex {
        /// The vertex.
        vertex: Digest,
        /// What went wrong.
        error: Box<Error>,
    },
    /// The build was interrupted.
    #[error("cancelled")]
    Cancelled,
    /// A feature the solver does not implement yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A bug: a state the solver should never reach.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The vertex the error belongs to, when known.
    pub fn vertex(&self) -> Option<&Digest> {
        match self {
            Error::RunFailed { vertex, .. }
            | Error::Exec { vertex, .. }
            | Error::AtVertex { vertex, .. } => Some(vertex),
            _ => None,
        }
    }
}
