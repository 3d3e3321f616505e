//! The graph under construction, hashed on a second thread.
//!
//! Lowering names each vertex by a [`VertexId`] (its creation index) and
//! hands it to a hashing thread, which encodes and hashes vertices in
//! creation order, so every input's digest is known when a vertex that
//! reads it is hashed. Encoding and hashing (a fifth of lowering on its
//! own) thus run beside the rest of the lowering instead of after it.
//!
//! Inputs are deduplicated by id. Source vertices (which have no inputs)
//! are interned by their op, so the context, scratch, an image or a git
//! remote used twice is one id; two ids with one digest only arise for two
//! identical chains of steps, which is harmless: the vertex then lists the
//! same input twice.

use rbuild_graph::{BuildGraph, Digest, Input, InputIndex, Op, SourceOp, VertexMeta};
use std::collections::HashMap;
use std::sync::mpsc;

/// A vertex of the graph being lowered: its creation index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct VertexId(u32);

impl VertexId {
    /// The root of a stage before its base is known; never sent to the
    /// hashing thread (every base sets the root first).
    pub const UNSET: VertexId = VertexId(u32::MAX);
}

/// One output of a vertex being lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputRef {
    /// Which output of that vertex.
    pub output: u32,
    /// The vertex.
    pub vertex: VertexId,
}

impl InputRef {
    /// Output 0 of `vertex`.
    pub fn root(vertex: VertexId) -> Self {
        Self { output: 0, vertex }
    }
}

/// The index of output 0 of `v` in `inputs`, adding it if missing.
pub(crate) fn input_index(inputs: &mut Vec<InputRef>, v: VertexId) -> InputIndex {
    let i = match inputs.iter().position(|x| x.vertex == v && x.output == 0) {
        Some(i) => i,
        None => {
            inputs.push(InputRef::root(v));
            inputs.len() - 1
        }
    };
    InputIndex(i as u32)
}

struct Pending {
    op: Op,
    inputs: Vec<InputRef>,
    meta: VertexMeta,
}

/// Vertices are sent in batches: one channel message per vertex costs
/// more than hashing a small one.
const BATCH: usize = 32;

/// The sending side of the graph under construction.
pub(crate) struct GraphBuilder {
    tx: Option<mpsc::Sender<Vec<Pending>>>,
    batch: Vec<Pending>,
    next: u32,
    /// Sources added so far, and whether their metadata has a location.
    sources: HashMap<SourceOp, (VertexId, bool)>,
}

/// What the hashing thread returns: the graph and each id's digest.
pub(crate) struct Hashed {
    graph: BuildGraph,
    digests: Vec<Digest>,
}

impl Hashed {
    /// The digest of a vertex lowered earlier.
    pub fn digest(&self, v: VertexId) -> Option<Digest> {
        self.digests.get(v.0 as usize).cloned()
    }

    /// The finished graph.
    pub fn into_graph(self) -> BuildGraph {
        self.graph
    }
}

impl GraphBuilder {
    /// Run `lower` with a builder whose vertices are hashed on a second
    /// thread; returns its result and the hashed graph.
    pub fn run<T>(lower: impl FnOnce(&mut GraphBuilder) -> T) -> (T, Hashed) {
        let (tx, rx) = mpsc::channel::<Vec<Pending>>();
        std::thread::scope(|s| {
            let hasher = s.spawn(move || hash_all(rx));
            let mut b = GraphBuilder {
                tx: Some(tx),
                batch: Vec::with_capacity(BATCH),
                next: 0,
                sources: HashMap::new(),
            };
            let out = lower(&mut b);
            b.flush();
            b.tx = None;
            let hashed = match hasher.join() {
                Ok(h) => h,
                // The hashing thread only panics on a bug; surface it here.
                Err(p) => std::panic::resume_unwind(p),
            };
            (out, hashed)
        })
    }

    /// Add a vertex; its id. A source added again keeps its first id; its
    /// metadata is replaced only by metadata with a source location (an
    /// image first read by `COPY --from`, then named by a `FROM`), which
    /// the hashing thread's `BuildGraph::add` applies.
    pub fn add(&mut self, op: Op, inputs: Vec<InputRef>, meta: VertexMeta) -> VertexId {
        let Op::Source(source) = &op else {
            return self.push(op, inputs, meta);
        };
        let located = meta.location.is_some();
        match self.sources.get(source).copied() {
            Some((id, had_location)) if had_location || !located => id,
            Some((id, _)) => {
                self.sources.insert(source.clone(), (id, true));
                self.push(op, inputs, meta);
                id
            }
            None => {
                let key = source.clone();
                let id = self.push(op, inputs, meta);
                self.sources.insert(key, (id, located));
                id
            }
        }
    }

    /// Queue a vertex for hashing; its id.
    fn push(&mut self, op: Op, inputs: Vec<InputRef>, meta: VertexMeta) -> VertexId {
        let id = VertexId(self.next);
        self.next += 1;
        self.batch.push(Pending { op, inputs, meta });
        if self.batch.len() >= BATCH {
            self.flush();
        }
        id
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        if let Some(tx) = &self.tx {
            // The receiver lives until `run` has dropped the sender.
            let _ = tx.send(batch);
        }
    }
}

/// Hash vertices in creation order (inputs always come before readers).
fn hash_all(rx: mpsc::Receiver<Vec<Pending>>) -> Hashed {
    let mut graph = BuildGraph::new();
    let mut digests: Vec<Digest> = Vec::new();
    for batch in rx {
        for p in batch {
            let inputs = p
                .inputs
                .iter()
                .map(|i| Input {
                    output: i.output,
                    // Ids are creation indices, so an input id is always
                    // below the reader's and already hashed.
                    vertex: digests[i.vertex.0 as usize].clone(),
                })
                .collect();
            digests.push(graph.add(p.op, inputs, p.meta));
        }
    }
    Hashed { graph, digests }
}
