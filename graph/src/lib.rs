//! The rbuild build IR: a content-addressed DAG of typed operations.
//!
//! A [`BuildGraph`] holds [`Vertex`]es keyed by their [`Digest`]. A vertex is an
//! [`Op`] plus the explicit [`Input`]s it reads (other vertices' outputs). The
//! digest of a vertex is the sha256 of its canonical encoding (see
//! [`Vertex::canonical_bytes`]), which covers the op definition and the digests
//! of its inputs, so equal definitions collapse into one vertex whatever order
//! they were added in.
//!
//! Invariants:
//! - Nothing that may change without changing the result is hashed: names,
//!   source positions and progress labels live in [`VertexMeta`], beside the
//!   graph; proxy variables live in [`ExecMeta::proxy_env`], which the canonical
//!   encoding skips; secrets appear only by id.
//! - The canonical encoding is JSON with sorted object keys and no
//!   insignificant whitespace (through `serde_json::Value`, whose map is a
//!   `BTreeMap` because `preserve_order` is never enabled).
//! - This crate performs no IO and depends on nothing of ours.
//!
//! Cost of the choice: JSON is larger and slower to encode than a binary
//! format, but it is stable, inspectable (`rbuild debug graph`) and fast
//! enough for graphs of thousands of vertices.

#![deny(missing_docs)]

mod digest;
mod image;
mod op;

pub use digest::{Digest, DigestError, Hex};
pub use image::{ContainerConfig, Empty, HealthConfig, HistoryEntry, ImageConfig};
pub use op::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A reference to one output of another vertex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Input {
    /// Which output of that vertex (exec ops have one output per writable mount).
    pub output: u32,
    /// Digest of the vertex producing the output.
    pub vertex: Digest,
}

/// A node of the build graph: an operation and the inputs it reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// The vertex outputs this op reads, addressed by position ([`InputIndex`]).
    pub inputs: Vec<Input>,
    /// What this vertex does.
    pub op: Op,
}

impl Vertex {
    /// The canonical encoding the digest is computed over: sorted-key compact
    /// JSON of `{"inputs":[…],"op":…}` with fields outside the definition
    /// (proxy variables) skipped. Fields of IR structs must stay in
    /// alphabetical order (a test checks it).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Every struct of the IR declares its fields in sorted order and maps
        // are BTreeMaps, so serde_json's direct output already has sorted
        // keys; `canonical_encoding_is_sorted_json` checks this for every
        // op variant. (Going through `serde_json::Value` gives the same bytes
        // at three times the cost.) Serializing plain data cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The vertex digest: sha256 over [`Vertex::canonical_bytes`].
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.canonical_bytes())
    }
}

/// A position in a source file, kept beside the graph (never hashed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLocation {
    /// Source file name as the user gave it (e.g. `Dockerfile`).
    pub file: String,
    /// 1-based first line.
    pub line: u32,
    /// 1-based last line (for continued instructions).
    pub end_line: u32,
}

/// Metadata of a vertex that does not change its result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexMeta {
    /// Progress label, e.g. `[build 3/5] RUN go build ./...`.
    pub name: String,
    /// Where in the Dockerfile the vertex came from.
    pub location: Option<SourceLocation>,
    /// Stage name or index the vertex belongs to.
    pub stage: Option<String>,
    /// Vertices that must not be cached (e.g. `--no-cache-filter`).
    pub ignore_cache: bool,
}

/// Errors building or validating a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// An input refers to a vertex the graph does not contain.
    #[error("vertex {vertex} reads unknown input {input}")]
    UnknownInput {
        /// The reading vertex.
        vertex: Box<Digest>,
        /// The missing input.
        input: Box<Digest>,
    },
    /// A digest string could not be parsed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A content-addressed build graph with its side metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildGraph {
    /// All vertices by digest.
    pub vertices: BTreeMap<Digest, Vertex>,
    /// Names and source positions, by vertex digest.
    pub meta: BTreeMap<Digest, VertexMeta>,
}

impl BuildGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a vertex (deduplicated by digest) and return its digest. Metadata
    /// of the first insertion wins, as BuildKit does for identical vertices,
    /// except that metadata with a source location replaces metadata
    /// without one (an image first named by `COPY --from`, then by `FROM`).
    pub fn add(&mut self, op: Op, inputs: Vec<Input>, meta: VertexMeta) -> Digest {
        let vertex = Vertex { op, inputs };
        let digest = vertex.digest();
        self.vertices.entry(digest.clone()).or_insert(vertex);
        match self.meta.entry(digest.clone()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(meta);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if e.get().location.is_none() && meta.location.is_some() {
                    e.insert(meta);
                }
            }
        }
        digest
    }

    /// The vertex with this digest.
    pub fn get(&self, digest: &Digest) -> Option<&Vertex> {
        self.vertices.get(digest)
    }

    /// Check that every input refers to a vertex of this graph.
    pub fn validate(&self) -> Result<(), GraphError> {
        for (d, v) in &self.vertices {
            for i in &v.inputs {
                if !self.vertices.contains_key(&i.vertex) {
                    return Err(GraphError::UnknownInput {
                        vertex: Box::new(d.clone()),
                        input: Box::new(i.vertex.clone()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The vertices `root` depends on (itself included), inputs before the
    /// vertices that read them. Deterministic for a given graph.
    pub fn topo_order(&self, root: &Digest) -> Vec<Digest> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        // Iterative post-order DFS (graphs can be deep: one vertex per instruction).
        let mut stack: Vec<(Digest, bool)> = vec![(root.clone(), false)];
        while let Some((d, expanded)) = stack.pop() {
            if expanded {
                out.push(d);
                continue;
            }
            if !seen.insert(d.clone()) {
                continue;
            }
            stack.push((d.clone(), true));
            if let Some(v) = self.vertices.get(&d) {
                for i in v.inputs.iter().rev() {
                    if !seen.contains(&i.vertex) {
                        stack.push((i.vertex.clone(), false));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
