//! A ready-queue scheduler over a [`BuildGraph`], generic over what a vertex
//! does ([`Runner`]). It knows nothing about Dockerfiles or filesystems.
//!
//! Invariants: each vertex reachable from the root runs at most once per
//! solve (the graph is already deduplicated by digest); a vertex starts only
//! after all its inputs finished; at most `jobs` vertices run at once; the
//! first failure cancels every running vertex and nothing new starts.

use rbuild_graph::{BuildGraph, Digest};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinSet;

/// What the scheduler runs for each vertex.
pub trait Runner: Send + Sync + 'static {
    /// The result of a vertex, handed to the vertices that read it.
    type Output: Clone + Send + Sync + 'static;
    /// A vertex failure.
    type Error: Send + 'static;
    /// Run `vertex` given the outputs of its inputs, in input order.
    fn run(
        self: Arc<Self>,
        graph: Arc<BuildGraph>,
        vertex: Digest,
        inputs: Vec<Self::Output>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + 'static;
}

/// A finished vertex task: which vertex, and what it returned.
type Finished<R> = (Digest, Result<<R as Runner>::Output, <R as Runner>::Error>);

/// Why a solve failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError<E> {
    /// A vertex failed; the others were cancelled.
    #[error("vertex {vertex} failed")]
    Vertex {
        /// The failing vertex.
        vertex: Digest,
        /// Its error.
        error: E,
    },
    /// The root (or an input) is not in the graph.
    #[error("vertex {0} is not in the graph")]
    Missing(Digest),
    /// A vertex task panicked or was aborted.
    #[error("vertex {0} task died: {1}")]
    Panicked(Digest, String),
}

/// Run everything `root` depends on with at most `jobs` vertices at a time,
/// and return the root's output.
pub async fn solve<R: Runner>(
    graph: Arc<BuildGraph>,
    root: &Digest,
    runner: Arc<R>,
    jobs: usize,
) -> Result<R::Output, SolveError<R::Error>> {
    let order = graph.topo_order(root);
    let mut waiting: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
    let mut ready = VecDeque::new();
    for d in &order {
        let v = graph.get(d).ok_or_else(|| SolveError::Missing(d.clone()))?;
        let distinct: BTreeSet<&Digest> = v.inputs.iter().map(|i| &i.vertex).collect();
        for i in &distinct {
            dependents.entry((*i).clone()).or_default().push(d.clone());
        }
        if distinct.is_empty() {
            ready.push_back(d.clone());
        } else {
            waiting.insert(d.clone(), distinct.len());
        }
    }

    let jobs = jobs.max(1);
    let mut done: BTreeMap<Digest, R::Output> = BTreeMap::new();
    let mut running: JoinSet<Finished<R>> = JoinSet::new();
    let mut ids = BTreeMap::new();
    loop {
        while running.len() < jobs {
            let Some(d) = ready.pop_front() else { break };
            let v = graph
                .get(&d)
                .ok_or_else(|| SolveError::Missing(d.clone()))?;
            let inputs = v
                .inputs
                .iter()
                .map(|i| {
                    done.get(&i.vertex)
                        .cloned()
                        .ok_or_else(|| SolveError::Missing(i.vertex.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let fut = runner.clone().run(graph.clone(), d.clone(), inputs);
            let dd = d.clone();
            let h = running.spawn(async move { (dd, fut.await) });
            ids.insert(h.id(), d);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (d, result) = match joined {
            Ok((_, (d, r))) => (d, r),
            Err(e) => {
                let d = ids.get(&e.id()).cloned().unwrap_or_else(|| root.clone());
                running.abort_all();
                return Err(SolveError::Panicked(d, e.to_string()));
            }
        };
        match result {
            Ok(out) => {
                for dep in dependents.get(&d).into_iter().flatten() {
                    if let Some(n) = waiting.get_mut(dep) {
                        *n -= 1;
                        if *n == 0 {
                            waiting.remove(dep);
                            ready.push_back(dep.clone());
                        }
                    }
                }
                done.insert(d, out);
            }
            Err(error) => {
                running.abort_all();
                while running.join_next().await.is_some() {}
                return Err(SolveError::Vertex { vertex: d, error });
            }
        }
    }
    done.remove(root)
        .ok_or_else(|| SolveError::Missing(root.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_graph::{Input, LocalSource, MergeOp, Op, SourceOp, VertexMeta};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A fake op runner: counts executions and peak concurrency, fails on
    /// request, and waits on a gate instead of sleeping for timing.
    #[derive(Default)]
    struct Fake {
        runs: Mutex<BTreeMap<Digest, usize>>,
        active: AtomicUsize,
        peak: AtomicUsize,
        fail: Option<String>,
        /// Leaves wait here until `release` leaves are running (proves overlap).
        barrier: Option<Arc<tokio::sync::Barrier>>,
        cancelled: Arc<AtomicUsize>,
    }

    struct DropCount(Arc<AtomicUsize>, bool);
    impl Drop for DropCount {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[allow(clippy::manual_async_fn)]
    impl Runner for Fake {
        type Output = Vec<String>;
        type Error = String;
        fn run(
            self: Arc<Self>,
            graph: Arc<BuildGraph>,
            vertex: Digest,
            inputs: Vec<Vec<String>>,
        ) -> impl Future<Output = Result<Vec<String>, String>> + Send + 'static {
            async move {
                *self
                    .runs
                    .lock()
                    .expect("lock")
                    .entry(vertex.clone())
                    .or_default() += 1;
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                let name = match &graph.vertices[&vertex].op {
                    Op::Source(SourceOp::Local(l)) => l.name.clone(),
                    _ => "merge".to_string(),
                };
                let mut guard = DropCount(self.cancelled.clone(), false);
                if self.fail.as_deref() == Some(name.as_str()) {
                    self.active.fetch_sub(1, Ordering::SeqCst);
                    guard.1 = true;
                    return Err(format!("{name} failed"));
                }
                if name.starts_with("slow") {
                    // Never finishes unless cancelled.
                    std::future::pending::<()>().await;
                }
                if let (Some(b), true) = (&self.barrier, inputs.is_empty()) {
                    b.wait().await;
                }
                guard.1 = true;
                self.active.fetch_sub(1, Ordering::SeqCst);
                let mut out: Vec<String> = inputs.into_iter().flatten().collect();
                out.push(name);
                Ok(out)
            }
        }
    }

    fn leaf(g: &mut BuildGraph, name: &str) -> Digest {
        g.add(
            Op::Source(SourceOp::Local(LocalSource {
                name: name.into(),
                include_patterns: vec![],
                exclude_patterns: vec![],
            })),
            vec![],
            VertexMeta::default(),
        )
    }

    fn merge(g: &mut BuildGraph, inputs: &[&Digest]) -> Digest {
        g.add(
            Op::Merge(MergeOp {}),
            inputs
                .iter()
                .map(|d| Input {
                    vertex: (*d).clone(),
                    output: 0,
                })
                .collect(),
            VertexMeta::default(),
        )
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn shared_vertex_runs_once_and_inputs_arrive_in_order() {
        let mut g = BuildGraph::new();
        let a = leaf(&mut g, "a");
        let b = leaf(&mut g, "b");
        let m1 = merge(&mut g, &[&a, &b]);
        let m2 = merge(&mut g, &[&a, &m1, &a]);
        let fake = Arc::new(Fake::default());
        let out = rt()
            .block_on(solve(Arc::new(g), &m2, fake.clone(), 4))
            .expect("solve");
        assert_eq!(out, ["a", "a", "b", "merge", "a", "merge"]);
        let runs = fake.runs.lock().expect("lock");
        assert_eq!(runs.len(), 4);
        assert!(runs.values().all(|&n| n == 1), "{runs:?}");
    }

    #[test]
    fn independent_vertices_run_concurrently_up_to_jobs() {
        let mut g = BuildGraph::new();
        let leaves: Vec<Digest> = (0..4).map(|i| leaf(&mut g, &format!("l{i}"))).collect();
        let refs: Vec<&Digest> = leaves.iter().collect();
        let root = merge(&mut g, &refs);
        // With jobs=2 the two first leaves must overlap to pass the barrier.
        let fake = Arc::new(Fake {
            barrier: Some(Arc::new(tokio::sync::Barrier::new(2))),
            ..Default::default()
        });
        rt().block_on(solve(Arc::new(g), &root, fake.clone(), 2))
            .expect("solve");
        assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn jobs_one_never_overlaps() {
        let mut g = BuildGraph::new();
        let leaves: Vec<Digest> = (0..5).map(|i| leaf(&mut g, &format!("l{i}"))).collect();
        let refs: Vec<&Digest> = leaves.iter().collect();
        let root = merge(&mut g, &refs);
        let fake = Arc::new(Fake::default());
        rt().block_on(solve(Arc::new(g), &root, fake.clone(), 1))
            .expect("solve");
        assert_eq!(fake.peak.load(Ordering::SeqCst), 1);
        assert_eq!(fake.runs.lock().expect("lock").len(), 6);
    }

    #[test]
    fn first_failure_cancels_the_rest() {
        let mut g = BuildGraph::new();
        let slow = leaf(&mut g, "slow");
        let bad = leaf(&mut g, "bad");
        let root = merge(&mut g, &[&slow, &bad]);
        let fake = Arc::new(Fake {
            fail: Some("bad".into()),
            ..Default::default()
        });
        let err = rt()
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    solve(Arc::new(g), &root, fake.clone(), 2),
                )
                .await
            })
            .expect("solve must not hang")
            .expect_err("must fail");
        match err {
            SolveError::Vertex { vertex, error } => {
                assert_eq!(vertex, bad);
                assert_eq!(error, "bad failed");
            }
            other => panic!("unexpected {other:?}"),
        }
        // The merge never ran; the slow vertex was dropped (cancelled).
        assert!(!fake.runs.lock().expect("lock").contains_key(&root));
        assert_eq!(fake.cancelled.load(Ordering::SeqCst), 1);
    }
}
