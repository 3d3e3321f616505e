//! Progress events the solver emits; the CLI renders them.

use rbuild_graph::Digest;
use std::time::Duration;

/// Which output stream a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One progress event of a vertex.
#[derive(Clone, Debug)]
pub enum Event {
    /// The vertex started running.
    Started {
        /// The vertex.
        vertex: Digest,
        /// Its progress label.
        name: String,
    },
    /// The vertex's result came from the cache.
    Cached {
        /// The vertex.
        vertex: Digest,
        /// Its progress label.
        name: String,
    },
    /// A note about the vertex, e.g. why the cache missed.
    Note {
        /// The vertex.
        vertex: Digest,
        /// The text.
        text: String,
    },
    /// Output of a running process.
    Log {
        /// The vertex.
        vertex: Digest,
        /// Which stream.
        stream: LogStream,
        /// The bytes, as produced.
        data: Vec<u8>,
    },
    /// The vertex finished successfully.
    Done {
        /// The vertex.
        vertex: Digest,
        /// How long it ran.
        elapsed: Duration,
    },
    /// The vertex failed.
    Failed {
        /// The vertex.
        vertex: Digest,
        /// The error text.
        error: String,
    },
}

/// Where events go: an unbounded channel (the renderer never blocks the build).
pub type EventSender = tokio::sync::mpsc::UnboundedSender<Event>;
