//! The op implementations: the [`Runner`] that gives each vertex kind its
//! meaning over the content store, the snapshotter, the registry client and
//! the RUN sandbox.
//!
//! Every vertex first computes its cache key (the op definition without
//! metadata, its inputs' cache keys, and for COPY from a local context the
//! content checksum of the selected files); a key found in the index whose
//! snapshot still exists is a cache hit and nothing runs.

use crate::checksum::ContextHasher;
use crate::fileop::{self, Owner, OwnerMode};
use crate::ignore::Matcher;
use crate::index::{CacheIndex, CacheRecord, LayerRecord};
use crate::progress::{Event, EventSender, LogStream};
use crate::remote::{BlobSource, LazyChain, RemoteCache};
use crate::scheduler::Runner;
use crate::snap::Snaps;
use crate::Error;
use rbuild_cache::ContentStore;
use rbuild_graph::{
    BuildGraph, Digest, ExecOp, FileAction, FileOp, ImageSource, InputIndex, MountKind,
    NetworkMode, Op, SecurityMode, SourceOp, VertexMeta,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a vertex produced.
#[derive(Clone, Debug)]
pub struct VertexResult {
    /// The cache key of the result.
    pub key: Digest,
    /// The result itself.
    pub value: ResultValue,
}

/// The value of a vertex result.
#[derive(Clone, Debug)]
pub enum ResultValue {
    /// A root filesystem: a committed snapshot, or `None` for an empty one.
    Snapshot(Option<String>),
    /// A local directory on the host (a build context) and its ignore rules.
    Local(Arc<LocalContext>),
}

/// A local directory given to the build, with its `.dockerignore`.
#[derive(Debug)]
pub struct LocalContext {
    /// The directory.
    pub path: PathBuf,
    /// Excluded paths.
    pub ignore: Matcher,
}

/// Everything the ops need, shared by all vertices of a build.
pub struct Ops {
    /// The content store.
    pub store: ContentStore,
    /// The snapshotter.
    pub snaps: Snaps,
    /// The cache index.
    pub index: CacheIndex,
    /// The registry client.
    pub registry: Arc<rbuild_registry::Client>,
    /// The RUN sandbox.
    pub executor: Arc<rbuild_exec::Executor>,
    /// Local source name → host directory and ignore rules.
    pub contexts: BTreeMap<String, Arc<LocalContext>>,
    /// Secret id → value.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// SSH id → agent socket.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Network of RUN steps whose Dockerfile says `default`.
    pub network: rbuild_exec::Network,
    /// `--shm-size`: the size of RUN steps' `/dev/shm` (bytes).
    pub shm_size: Option<u64>,
    /// `--ulimit`: resource limits of RUN steps.
    pub ulimits: Vec<rbuild_exec::Rlimit>,
    /// Cancels running steps (Ctrl-C).
    pub cancel: rbuild_exec::CancelToken,
    /// The lease protecting this build's snapshots and blobs from a
    /// concurrent `rbuild prune` (also given to the store and `snaps`).
    pub lease: Option<Arc<rbuild_cache::ProcessLease>>,
    /// Directory for cache mounts (`RUN --mount=type=cache`).
    pub cache_mounts: PathBuf,
    /// Scratch space for mount points and secrets.
    pub tmp: PathBuf,
    /// Ignore the cache for every vertex.
    pub no_cache: bool,
    /// Progress events.
    pub events: EventSender,
    /// Content checksums of local files, shared across vertices.
    pub hasher: Arc<ContextHasher>,
    /// Cache-mount ids already emptied by this `--no-cache` build.
    pub emptied_cache_mounts: Mutex<std::collections::BTreeSet<String>>,
    /// Imported caches (`--cache-from`), consulted when the index misses.
    pub remote: RemoteCache,
    /// Directory of the lock files that keep concurrent builds on one state
    /// dir from doing the same work twice.
    pub locks: PathBuf,
    /// Shared state of this build (lazy results, results, cache mounts).
    pub state: BuildState,
}

/// A cache hit: the snapshot and the key later steps build on.
struct Hit {
    snapshot: Option<String>,
    key: Digest,
}

/// What a build learns as it runs, shared by its vertices.
#[derive(Debug, Default)]
pub struct BuildState {
    /// Lazy results not unpacked yet, by their top snapshot name.
    lazy: Mutex<HashMap<String, Arc<LazyChain>>>,
    /// Where blobs of lazy layers come from.
    blob_sources: Mutex<HashMap<Digest, Arc<BlobSource>>>,
    /// (cache key, snapshot) of every rootfs result, in completion order.
    results: Mutex<Vec<(Digest, Option<String>)>>,
    /// Cache mounts used by RUN steps: id → directory.
    cache_mounts: Mutex<BTreeMap<String, PathBuf>>,
    /// Definition keys of COPY steps whose result is known by its content
    /// key: (definition key, content key).
    aliases: Mutex<Vec<(Digest, Digest)>>,
    /// When each result snapshot of this build was made.
    pub(crate) created: crate::stamps::Created,
    /// The `.dockerignore`-filtered snapshot of each context.
    pub(crate) context_snapshots: crate::mounts::ContextSnapshots,
}

#[allow(clippy::manual_async_fn)] // the trait requires a 'static future
impl Runner for Ops {
    type Output = VertexResult;
    type Error = Error;

    fn run(
        self: Arc<Self>,
        graph: Arc<BuildGraph>,
        vertex: Digest,
        inputs: Vec<VertexResult>,
    ) -> impl Future<Output = Result<VertexResult, Error>> + Send + 'static {
        async move {
            let v = graph
                .get(&vertex)
                .ok_or_else(|| Error::Internal(format!("unknown vertex {vertex}")))?
                .clone();
            let meta = graph.meta.get(&vertex).cloned().unwrap_or_default();
            let this = self.clone();
            let vx = vertex.clone();
            let res =
                tokio::task::spawn_blocking(move || this.run_vertex(&vx, &v.op, &inputs, &meta))
                    .await
                    .map_err(|e| Error::Internal(format!("vertex task: {e}")))?;
            if let Ok(VertexResult {
                key,
                value: ResultValue::Snapshot(s),
            }) = &res
            {
                if let Ok(mut r) = self.state.results.lock() {
                    r.push((key.clone(), s.clone()));
                }
            }
            if let Err(e) = &res {
                let _ = self.events.send(Event::Failed {
                    vertex: vertex.clone(),
                    error: e.to_string(),
                });
            }
            res.map_err(|e| match e {
                e if e.vertex().is_some() => e,
                Error::Cancelled => Error::Cancelled,
                e => Error::AtVertex {
                    vertex: vertex.clone(),
                    error: Box::new(e),
                },
            })
        }
    }
}

/// The canonical key material of a vertex: its op, its inputs' keys, extras.
pub(crate) fn cache_key(op: &Op, inputs: &[VertexResult], extra: &[String]) -> Digest {
    let value = serde_json::json!({
        "op": serde_json::to_value(op).unwrap_or(serde_json::Value::Null),
        "inputs": inputs.iter().map(|i| i.key.to_string()).collect::<Vec<_>>(),
        "extra": extra,
    });
    Digest::sha256_of(&serde_json::to_vec(&value).unwrap_or_default())
}

fn last_lines(buf: &VecDeque<u8>, n: usize) -> Vec<String> {
    let bytes: Vec<u8> = buf.iter().copied().collect();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Ops {
    /// Add snapshots and blobs to this build's lease.
    pub fn protect(&self, digests: &[Digest], snapshots: &[&str]) {
        if let Some(lease) = &self.lease {
            let _ = lease.add(digests, snapshots);
        }
    }

    pub(crate) fn emit(&self, ev: Event) {
        let _ = self.events.send(ev);
    }

    fn input<'a>(
        &self,
        inputs: &'a [VertexResult],
        i: InputIndex,
    ) -> Result<&'a VertexResult, Error> {
        inputs
            .get(i.0 as usize)
            .ok_or_else(|| Error::Internal(format!("input {} missing", i.0)))
    }

    fn snapshot_of(&self, r: &VertexResult) -> Result<Option<String>, Error> {
        match &r.value {
            ResultValue::Snapshot(s) => {
                self.ensure(s.as_deref())?;
                Ok(s.clone())
            }
            ResultValue::Local(_) => Err(Error::Internal(
                "a local directory cannot be used as a root filesystem".into(),
            )),
        }
    }

    /// A hit in the index whose snapshot still exists, or else in an
    /// imported cache (a lazy result).
    fn lookup(&self, key: &Digest, meta: &VertexMeta) -> Option<Hit> {
        if self.no_cache || meta.ignore_cache {
            return None;
        }
        if let Some(rec) = self.index.get(key) {
            match &rec.snapshot {
                Some(s) if !self.snaps.exists(s) => self.index.remove(key),
                s => {
                    self.note_hit_created(key, &rec);
                    return Some(Hit {
                        snapshot: s.clone(),
                        key: rec.result_key.unwrap_or_else(|| key.clone()),
                    });
                }
            }
        }
        let (chain, result) = self.remote.get(key)?;
        Some(Hit {
            snapshot: self.register_lazy(chain),
            key: result.unwrap_or_else(|| key.clone()),
        })
    }

    /// Make a lazy chain usable as a result: its top snapshot name.
    fn register_lazy(&self, chain: Arc<LazyChain>) -> Option<String> {
        let top = chain.top()?;
        if self.snaps.exists(&top) {
            return Some(top);
        }
        if let Ok(mut b) = self.state.blob_sources.lock() {
            for l in &chain.layers {
                b.entry(l.descriptor.digest.clone())
                    .or_insert_with(|| chain.source.clone());
            }
        }
        if let Ok(mut l) = self.state.lazy.lock() {
            l.entry(top.clone()).or_insert(chain);
        }
        Some(top)
    }

    pub(crate) fn lazy(&self, name: &str) -> Option<Arc<LazyChain>> {
        self.state.lazy.lock().ok()?.get(name).cloned()
    }

    /// Unpack `snapshot` if it is a lazy result not unpacked yet.
    pub fn ensure(&self, snapshot: Option<&str>) -> Result<(), Error> {
        let Some(name) = snapshot else { return Ok(()) };
        if self.snaps.exists(name) {
            return Ok(());
        }
        match self.lazy(name) {
            Some(chain) => crate::pull::materialize(self, &chain).map(|_| ()),
            None => Ok(()),
        }
    }

    /// An exclusive lock shared with other rbuild processes on this state
    /// dir, held until the returned file is dropped.
    pub fn lock(&self, name: &str) -> Result<std::fs::File, Error> {
        let f = self.lock_file(name)?;
        f.lock().map_err(|e| self.lock_err(name, e))?;
        Ok(f)
    }

    /// The lock file `name` (created if needed), not locked yet.
    fn lock_file(&self, name: &str) -> Result<std::fs::File, Error> {
        std::fs::create_dir_all(&self.locks)
            .and_then(|()| {
                std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.locks.join(name))
            })
            .map_err(|e| self.lock_err(name, e))
    }

    fn lock_err(&self, name: &str, e: std::io::Error) -> Error {
        Error::Io(format!("lock {}", self.locks.join(name).display()), e)
    }

    /// The cache key and snapshot of every rootfs result of this build.
    pub fn results(&self) -> Vec<(Digest, Option<String>)> {
        self.state
            .results
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The cache mounts RUN steps of this build used: id → directory.
    pub fn used_cache_mounts(&self) -> BTreeMap<String, PathBuf> {
        self.state
            .cache_mounts
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Where a blob that is not in the store can be fetched from.
    pub fn blob_source(&self, digest: &Digest) -> Option<Arc<BlobSource>> {
        self.state.blob_sources.lock().ok()?.get(digest).cloned()
    }

    /// Fetch every blob of `descs` missing from the store from where its
    /// lazy layer came from.
    pub fn fetch_blobs(&self, descs: &[rbuild_cache::Descriptor]) -> Result<(), Error> {
        for d in descs {
            if self.store.contains(&d.digest) {
                continue;
            }
            let source = self.blob_source(&d.digest).ok_or_else(|| {
                Error::Internal(format!("blob {} is neither local nor remote", d.digest))
            })?;
            crate::pull::fetch_all(self, &source, std::iter::once(d)).map_err(|e| Error::Pull {
                reference: d.digest.to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    fn run_vertex(
        &self,
        vertex: &Digest,
        op: &Op,
        inputs: &[VertexResult],
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        match op {
            Op::Source(SourceOp::Scratch) => Ok(VertexResult {
                key: cache_key(op, &[], &[]),
                value: ResultValue::Snapshot(None),
            }),
            Op::Source(SourceOp::Local(l)) => {
                let ctx = self
                    .contexts
                    .get(&l.name)
                    .ok_or_else(|| Error::MissingContext(l.name.clone()))?
                    .clone();
                Ok(VertexResult {
                    key: cache_key(op, &[], &ctx.ignore.source),
                    value: ResultValue::Local(ctx),
                })
            }
            Op::Source(SourceOp::Image(img)) => self.image(vertex, op, img, meta),
            Op::Source(SourceOp::Http(h)) => self.http(vertex, op, h, meta),
            Op::Source(SourceOp::Git(g)) => self.git(vertex, g, meta),
            Op::Exec(e) => self.exec(vertex, op, e, inputs, meta),
            Op::File(f) => self.file(vertex, op, f, inputs, meta),
            Op::Merge(_) => self.merge(vertex, op, inputs, meta),
        }
    }

    /// The snapshot name of a result: its cache key, made unique when the
    /// cache is bypassed so an older result with the same key is replaced.
    fn result_name(&self, prefix: &str, key: &Digest, meta: &VertexMeta) -> String {
        if self.no_cache || meta.ignore_cache {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{prefix}-{}-{}-{nanos:x}", key.hex(), std::process::id())
        } else {
            format!("{prefix}-{}", key.hex())
        }
    }

    /// Remember what this step's key is made of and say why it missed. The
    /// record is marked finished by [`Ops::step_finished`] once it succeeds.
    fn record_step(
        &self,
        key: &Digest,
        op: &Op,
        inputs: &[VertexResult],
        files: &[(String, Digest)],
        meta: &VertexMeta,
    ) -> Option<String> {
        let id = crate::explain::step_id(meta)?;
        let input_keys: Vec<Digest> = inputs.iter().map(|i| i.key.clone()).collect();
        let now = crate::explain::StepRecord::new(key, op, &input_keys, files);
        let why = if self.no_cache || meta.ignore_cache {
            "cache disabled (--no-cache)".to_string()
        } else {
            crate::explain::explain(self.index.step(&id).as_ref(), &now)
        };
        let _ = self.index.put_step(&id, &now);
        Some(why)
    }

    /// Mark the step's record (written by [`Ops::record_step`]) finished.
    fn step_finished(&self, meta: &VertexMeta) {
        let Some(id) = crate::explain::step_id(meta) else {
            return;
        };
        if let Some(mut rec) = self.index.step(&id) {
            rec.finished = true;
            let _ = self.index.put_step(&id, &rec);
        }
    }

    fn note(&self, vertex: &Digest, text: Option<String>) {
        if let Some(text) = text {
            self.emit(Event::Note {
                vertex: vertex.clone(),
                text,
            });
        }
    }

    /// A cache hit for `key`, announced as CACHED.
    pub(crate) fn hit(
        &self,
        vertex: &Digest,
        meta: &VertexMeta,
        key: &Digest,
    ) -> Option<VertexResult> {
        let Hit {
            snapshot: s,
            key: k,
        } = self.lookup(key, meta)?;
        if &k != key {
            self.alias(key, &k);
        }
        let key = k;
        self.cached(vertex, meta);
        Some(VertexResult {
            key,
            value: ResultValue::Snapshot(s),
        })
    }

    /// Record `key`'s result in the index.
    fn remember(&self, key: &Digest, snapshot: Option<String>) -> Result<(), Error> {
        self.remember_as(key, snapshot, None)
    }

    /// Record `key`'s result, known to later steps as `result_key`.
    fn remember_as(
        &self,
        key: &Digest,
        snapshot: Option<String>,
        result_key: Option<Digest>,
    ) -> Result<(), Error> {
        let created = Some(self.created_for(snapshot.as_deref()));
        self.index
            .put(
                key,
                &CacheRecord {
                    snapshot,
                    result_key,
                    created,
                },
            )
            .map_err(|e| Error::Io("write cache index".into(), e))
    }

    /// Make the result of a step: a work snapshot on `parent`, mounted and
    /// filled by `fill`, then committed under a name from `key` (or thrown
    /// away if `fill` fails) and recorded in the index.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build_snapshot(
        &self,
        vertex: &Digest,
        meta: &VertexMeta,
        key: Digest,
        prefix: &str,
        parent: Option<&str>,
        started: Instant,
        fill: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<VertexResult, Error> {
        let work = self.snaps.prepare(parent)?;
        if let Err(e) = fill(&work.mountpoint) {
            self.snaps.abort(work);
            return Err(e);
        }
        let committed = self
            .snaps
            .commit(work, &self.result_name(prefix, &key, meta))?;
        self.remember(&key, Some(committed.clone()))?;
        self.done(vertex, started);
        Ok(VertexResult {
            key,
            value: ResultValue::Snapshot(Some(committed)),
        })
    }

    pub(crate) fn started(&self, vertex: &Digest, meta: &VertexMeta) -> Instant {
        self.emit(Event::Started {
            vertex: vertex.clone(),
            name: meta.name.clone(),
        });
        Instant::now()
    }

    fn done(&self, vertex: &Digest, t: Instant) {
        self.emit(Event::Done {
            vertex: vertex.clone(),
            elapsed: t.elapsed(),
        });
    }

    fn cached(&self, vertex: &Digest, meta: &VertexMeta) {
        self.emit(Event::Cached {
            vertex: vertex.clone(),
            name: meta.name.clone(),
        });
    }

    /// `ADD <url>`: download into a snapshot holding one file. The key is
    /// the URL plus the content digest (or the pinned `--checksum`).
    fn http(
        &self,
        vertex: &Digest,
        op: &Op,
        h: &rbuild_graph::HttpSource,
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        let t = self.started(vertex, meta);
        let fail = |m: String| Error::Pull {
            reference: h.url.clone(),
            message: m,
        };
        let rt = tokio::runtime::Handle::current();
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp)
            .map_err(|e| Error::Io("download".into(), e))?;
        let (digest, modified) = rt.block_on(async {
            use sha2::Digest as _;
            use std::io::Write as _;
            let client = reqwest::Client::builder()
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let mut resp = client
                .get(&h.url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| fail(e.to_string()))?;
            let modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            let mut hasher = sha2::Sha256::new();
            let mut file = tmp.as_file();
            while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .map_err(|e| Error::Io("download".into(), e))?;
            }
            Ok::<_, Error>((Digest::from_sha256(hasher.finalize().into()), modified))
        })?;
        if let Some(want) = &h.checksum {
            if *want != digest {
                return Err(fail(format!(
                    "digest mismatch: expected {want}, got {digest}"
                )));
            }
        }
        let key = cache_key(op, &[], &[digest.to_string()]);
        if let Some(Hit { snapshot: s, key }) = self.lookup(&key, meta) {
            self.done(vertex, t);
            return Ok(VertexResult {
                key,
                value: ResultValue::Snapshot(s),
            });
        }
        let name = h.filename.clone().unwrap_or_else(|| "__unnamed__".into());
        let mode = h.chmod.unwrap_or(0o600);
        self.build_snapshot(vertex, meta, key, "http", None, t, |root| {
            use std::os::unix::fs::PermissionsExt;
            let dest = root.join(name.trim_start_matches('/'));
            std::fs::copy(tmp.path(), &dest)
                .and_then(|_| {
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                })
                .and_then(|()| match modified {
                    Some(m) => std::fs::File::options()
                        .write(true)
                        .open(&dest)?
                        .set_modified(m),
                    None => Ok(()),
                })
                .map_err(|e| Error::Io(format!("write {}", dest.display()), e))
        })
    }

    fn image(
        &self,
        vertex: &Digest,
        op: &Op,
        img: &ImageSource,
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        // Pulled content is reused even with --no-cache: the reference is
        // pinned by digest, so the same key always means the same layers.
        let key = cache_key(op, &[], &[]);
        if let Some(rec) = self.index.get(&key) {
            if rec.snapshot.as_deref().is_none_or(|s| self.snaps.exists(s)) {
                self.cached(vertex, meta);
                return Ok(VertexResult {
                    key,
                    value: ResultValue::Snapshot(rec.snapshot),
                });
            }
        }
        // The layers are fetched and unpacked only when a step needs them.
        let t = self.started(vertex, meta);
        let chain = match self.remote.get(&key) {
            Some((c, _)) => c,
            None => Arc::new(crate::pull::resolve_image(self, img, &key)?),
        };
        let top = self.register_lazy(chain);
        if let Some(t) = &top {
            if self.snaps.exists(t) {
                self.remember(&key, top.clone())?;
            }
        }
        self.done(vertex, t);
        Ok(VertexResult {
            key,
            value: ResultValue::Snapshot(top),
        })
    }

    fn exec(
        &self,
        vertex: &Digest,
        op: &Op,
        e: &ExecOp,
        inputs: &[VertexResult],
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        let (extra, files) = self.mounted_context_content(e, inputs)?;
        let key = cache_key(op, inputs, &extra);
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        // Another build on this state dir may be making the same result.
        let _lock = self.lock(&format!("key-{}", key.hex()))?;
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        let miss = self.record_step(&key, op, inputs, &files, meta);
        let root = e
            .mounts
            .first()
            .filter(|m| m.target == "/")
            .ok_or_else(|| Error::Internal("exec without a root mount".into()))?;
        let parent = match root.input {
            Some(i) => self.snapshot_of(self.input(inputs, i)?)?,
            None => None,
        };
        let t = self.started(vertex, meta);
        self.note(vertex, miss);
        let r = self.build_snapshot(vertex, meta, key, "run", parent.as_deref(), t, |rootfs| {
            self.exec_in(vertex, e, inputs, rootfs)
        })?;
        self.step_finished(meta);
        Ok(r)
    }

    /// The content a RUN mounts from a local context (`--mount=type=bind`,
    /// or a cache mount seeded `from` it), keyed as COPY from the context
    /// is: the checksum of what the mount's source path selects, filtered
    /// by `.dockerignore`, one entry per such mount. A local source's own
    /// key names the context, not its files, so without this an edited
    /// file under a bind mount would leave the step cached. Mounts of a
    /// stage or an image need nothing here: their input's key is part of
    /// the step's key already. Also returns the selected files, so a miss
    /// names the file that changed.
    #[allow(clippy::type_complexity)]
    fn mounted_context_content(
        &self,
        e: &ExecOp,
        inputs: &[VertexResult],
    ) -> Result<(Vec<String>, Vec<(String, Digest)>), Error> {
        let mut extra = Vec::new();
        let mut files = Vec::new();
        for (n, m) in e.mounts.iter().enumerate().skip(1) {
            if !matches!(m.kind, MountKind::Bind { .. } | MountKind::Cache { .. }) {
                continue;
            }
            let Some(i) = m.input else { continue };
            let ResultValue::Local(l) = &self.input(inputs, i)?.value else {
                continue;
            };
            // What the mount shows: the filtered context snapshot.
            let sum = self.context_selection(l, &m.selector, true)?;
            if sum.matched == 0 {
                return Err(Error::File(fileop::FileOpError::NotFound(
                    m.selector.clone(),
                )));
            }
            extra.push(format!("mount:{n}:{}", sum.digest));
            files.extend(sum.files);
        }
        Ok((extra, files))
    }

    fn exec_in(
        &self,
        vertex: &Digest,
        e: &ExecOp,
        inputs: &[VertexResult],
        rootfs: &Path,
    ) -> Result<(), Error> {
        let mut env: Vec<String> = e.meta.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (k, v) in &e.meta.proxy_env {
            if !e.meta.env.iter().any(|(ek, _)| **ek == **k) {
                env.push(format!("{k}={v}"));
            }
        }
        let mut mounts = Vec::new();
        let mut binds = crate::mounts::Binds::new(&self.snaps);
        let mut locks = Vec::new();
        for m in e.mounts.iter().skip(1) {
            match &m.kind {
                MountKind::Bind { readonly } => {
                    // Never the context itself; `rw` writes are discarded.
                    let source = self.bind_source(inputs, m, *readonly, &mut binds)?;
                    mounts.push(rbuild_exec::ExecMount::Bind {
                        source,
                        target: m.target.clone(),
                        readonly: *readonly,
                    });
                }
                MountKind::Cache {
                    id,
                    mode,
                    uid,
                    gid,
                    readonly,
                    sharing,
                } => {
                    let hex = Digest::sha256_of(id.as_bytes()).hex().to_string();
                    let mut dir = self.cache_mounts.join(&hex);
                    match sharing {
                        rbuild_graph::CacheSharing::Locked => {
                            locks.push(self.lock(&format!("cache-mount-{hex}"))?);
                        }
                        // BuildKit: a writer that finds the cache in use gets
                        // a cache of its own (kept for later builds too).
                        rbuild_graph::CacheSharing::Private => {
                            let (d, l) = self.private_cache_dir(&hex)?;
                            dir = d;
                            locks.push(l);
                        }
                        rbuild_graph::CacheSharing::Shared => {}
                    }
                    if let Ok(mut m) = self.state.cache_mounts.lock() {
                        m.insert(id.clone(), dir.clone());
                    }
                    // --no-cache starts cache mounts empty, once per build.
                    if self.no_cache
                        && self
                            .emptied_cache_mounts
                            .lock()
                            .map(|mut a| a.insert(id.clone()))
                            .unwrap_or(false)
                    {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    if !dir.exists() {
                        if !self.no_cache {
                            self.import_cache_mount(id, &dir)?;
                        }
                        if let (false, Some(i)) = (dir.exists(), m.input) {
                            self.seed_cache_mount(self.input(inputs, i)?, &m.selector, &dir)?;
                        }
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| Error::Io("cache mount".into(), e))?;
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode));
                        let _ = std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid));
                    }
                    mounts.push(rbuild_exec::ExecMount::Bind {
                        source: dir,
                        target: m.target.clone(),
                        readonly: *readonly,
                    });
                }
                MountKind::Tmpfs { size } => mounts.push(rbuild_exec::ExecMount::Tmpfs {
                    target: m.target.clone(),
                    size: *size,
                }),
                MountKind::Secret {
                    id,
                    env: as_env,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(value) = self.secrets.get(id) else {
                        if *required {
                            return Err(Error::MissingSecret(id.clone()));
                        }
                        continue;
                    };
                    if let Some(name) = as_env {
                        env.push(format!("{name}={}", String::from_utf8_lossy(value)));
                    }
                    // From memory to the run's private tmpfs: a secret is
                    // never written to a disk (see rbuild_exec::ExecMount).
                    if !m.target.is_empty() {
                        mounts.push(rbuild_exec::ExecMount::Secret {
                            data: value.clone().into(),
                            target: m.target.clone(),
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        });
                    }
                }
                MountKind::Ssh { id, required, .. } => match self.ssh.get(id) {
                    Some(s) => mounts.push(rbuild_exec::ExecMount::Socket {
                        source: s.clone(),
                        target: if m.target.is_empty() {
                            "/run/buildkit/ssh_agent.0".into()
                        } else {
                            m.target.clone()
                        },
                    }),
                    None if *required => return Err(Error::MissingSecret(format!("ssh:{id}"))),
                    None => {}
                },
            }
        }
        // `--shm-size` sizes /dev/shm unless the step mounts its own there.
        if let Some(size) = self.shm_size {
            if !mounts.iter().any(|m| m.target() == "/dev/shm") {
                mounts.push(rbuild_exec::ExecMount::Tmpfs {
                    target: "/dev/shm".into(),
                    size: Some(size),
                });
            }
        }
        let req = rbuild_exec::RunRequest {
            rootfs: rootfs.to_path_buf(),
            process: rbuild_exec::ProcessSpec {
                args: e.meta.args.clone(),
                env,
                cwd: e.meta.cwd.clone(),
                user: e.meta.user.clone(),
                rlimits: self.ulimits.clone(),
            },
            mounts,
            network: match e.network {
                NetworkMode::None => rbuild_exec::Network::None,
                NetworkMode::Host => rbuild_exec::Network::Host,
                NetworkMode::Default => self.network,
            },
            insecure: e.security == SecurityMode::Insecure,
            hostname: rbuild_exec::DEFAULT_HOSTNAME.to_string(),
            extra_hosts: e.meta.extra_hosts.clone(),
        };
        let mut tail: VecDeque<u8> = VecDeque::new();
        let status = self.executor.run_cancellable(
            &req,
            &mut |chunk: rbuild_exec::OutputChunk| {
                tail.extend(chunk.data.iter().copied());
                while tail.len() > 64 * 1024 {
                    tail.pop_front();
                }
                self.emit(Event::Log {
                    vertex: vertex.clone(),
                    stream: match chunk.stream {
                        rbuild_exec::Stream::Stdout => LogStream::Stdout,
                        rbuild_exec::Stream::Stderr => LogStream::Stderr,
                    },
                    data: chunk.data,
                });
            },
            &self.cancel,
        );
        drop(binds);
        drop(locks);
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let status = status.map_err(|err| Error::Exec {
            vertex: vertex.clone(),
            command: e.meta.args.clone(),
            message: err.to_string(),
        })?;
        if status.success() {
            return Ok(());
        }
        Err(Error::RunFailed {
            vertex: vertex.clone(),
            command: e.meta.args.clone(),
            status: match status {
                rbuild_exec::ExitStatus::Code(c) => format!("exit code: {c}"),
                rbuild_exec::ExitStatus::Signal(s) => format!("killed by signal {s}"),
            },
            output: last_lines(&tail, 20),
        })
    }

    /// The directory of a `sharing=private` cache mount: the shared one if
    /// no other step uses it, else the first free private instance.
    fn private_cache_dir(&self, hex: &str) -> Result<(PathBuf, std::fs::File), Error> {
        for n in 0u32.. {
            let name = if n == 0 {
                hex.to_string()
            } else {
                format!("{hex}-{n}")
            };
            if let Some(l) = self.try_lock(&format!("cache-mount-{name}"))? {
                return Ok((self.cache_mounts.join(name), l));
            }
        }
        Err(Error::Internal("no free private cache mount".into()))
    }

    /// Like [`Ops::lock`], but `None` instead of waiting when it is held.
    pub fn try_lock(&self, name: &str) -> Result<Option<std::fs::File>, Error> {
        let f = self.lock_file(name)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(self.lock_err(name, e)),
        }
    }

    /// Fill a new cache mount from `from` (its `selector` subdirectory), as
    /// `RUN --mount=type=cache,from=…,source=…` does.
    fn seed_cache_mount(
        &self,
        from: &VertexResult,
        selector: &str,
        dir: &Path,
    ) -> Result<(), Error> {
        let io = |e| Error::Io(format!("seed cache mount {}", dir.display()), e);
        let mut view = None;
        let root = match &from.value {
            ResultValue::Local(c) => self.context_root(c)?,
            ResultValue::Snapshot(s) => {
                self.ensure(s.as_deref())?;
                let v = self.snaps.view(s.as_deref())?;
                let p = v.mountpoint.clone();
                view = Some(v);
                p
            }
        };
        // Resolved in-root; a selector that is missing or does not resolve
        // (a link chain) seeds nothing, as a missing one always did.
        let src = rbuild_fsroot::Root::open(&root)
            .and_then(|r| r.real_host_path(selector, true))
            .unwrap_or_default();
        let copied = (|| {
            std::fs::create_dir_all(dir).map_err(io)?;
            if src.is_dir() {
                let status = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(format!("{}/.", src.display()))
                    .arg(dir)
                    .status()
                    .map_err(io)?;
                if !status.success() {
                    return Err(io(std::io::Error::other(format!(
                        "cp -a exited with {status}"
                    ))));
                }
            }
            Ok(())
        })();
        if let Some(v) = view {
            self.snaps.release_view(v);
        }
        copied
    }

    /// Fill cache mount `id` at `dir` from an imported cache, if one has it.
    fn import_cache_mount(&self, id: &str, dir: &Path) -> Result<(), Error> {
        let Some((source, desc)) = self.remote.cache_mount(id) else {
            return Ok(());
        };
        let fail = |m: String| Error::Pull {
            reference: format!("cache mount {id}"),
            message: m,
        };
        crate::pull::fetch_all(self, &source, std::iter::once(&desc))
            .map_err(|e| fail(e.to_string()))?;
        let parent = dir.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::Io("cache mount".into(), e))?;
        let tmp = tempfile::tempdir_in(parent).map_err(|e| Error::Io("cache mount".into(), e))?;
        let blob = self.store.open_blob(&desc.digest)?;
        rbuild_cache::apply_layer(
            std::io::BufReader::new(blob),
            &rbuild_cache::ApplyTarget::plain(tmp.path()),
        )?;
        let staged = tmp.keep();
        if std::fs::rename(&staged, dir).is_err() {
            // Another build made it meanwhile: keep theirs.
            let _ = std::fs::remove_dir_all(&staged);
        }
        Ok(())
    }

    fn file(
        &self,
        vertex: &Digest,
        op: &Op,
        f: &FileOp,
        inputs: &[VertexResult],
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        // COPY from a local context is keyed by the content of what it selects.
        let mut extra = Vec::new();
        let mut files = Vec::new();
        for a in &f.actions {
            if let FileAction::Copy(c) = a {
                if let ResultValue::Local(l) = &self.input(inputs, c.source)?.value {
                    let sum = self.context_selection(l, &c.src, c.follow_symlinks)?;
                    let wildcard = c.allow_wildcard && c.src.contains(['*', '?', '[']);
                    if sum.matched == 0 && !(wildcard && c.allow_empty_wildcard) {
                        return Err(Error::File(fileop::FileOpError::NotFound(c.src.clone())));
                    }
                    extra.push(sum.digest.to_string());
                    files.extend(sum.files);
                }
            }
        }
        let key = cache_key(op, inputs, &extra);
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        let _lock = self.lock(&format!("key-{}", key.hex()))?;
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        // As BuildKit does, a COPY from a stage or an image is also keyed by
        // the content it copies: a rebuilt stage with the same output is
        // still a hit, and so are the steps after it.
        let content = self.content_key(op, f, inputs, &extra)?;
        if let Some(ck) = &content {
            if let Some(Hit { snapshot, key: k }) = self.lookup(ck, meta) {
                self.remember_as(&key, snapshot.clone(), Some(k.clone()))?;
                self.alias(&key, &k);
                self.cached(vertex, meta);
                return Ok(VertexResult {
                    key: k,
                    value: ResultValue::Snapshot(snapshot),
                });
            }
        }
        let miss = self.record_step(&key, op, inputs, &files, meta);
        let parent = match f.base {
            Some(i) => self.snapshot_of(self.input(inputs, i)?)?,
            None => None,
        };
        let t = self.started(vertex, meta);
        self.note(vertex, miss);
        let mut r = self.build_snapshot(
            vertex,
            meta,
            key.clone(),
            "file",
            parent.as_deref(),
            t,
            |root| self.file_in(f, inputs, root),
        )?;
        self.step_finished(meta);
        if let (Some(ck), ResultValue::Snapshot(s)) = (content, &r.value) {
            self.remember_as(&key, s.clone(), Some(ck.clone()))?;
            self.remember(&ck, s.clone())?;
            self.alias(&key, &ck);
            r.key = ck;
        }
        Ok(r)
    }

    fn alias(&self, definition: &Digest, content: &Digest) {
        if let Ok(mut a) = self.state.aliases.lock() {
            a.push((definition.clone(), content.clone()));
        }
    }

    /// The content key of a file op that copies from stages or images: the
    /// definition key with each such source's key replaced by a checksum
    /// of what the copy selects in it (with owners, which such a copy
    /// keeps). `None` when nothing is copied from a root filesystem.
    fn content_key(
        &self,
        op: &Op,
        f: &FileOp,
        inputs: &[VertexResult],
        extra: &[String],
    ) -> Result<Option<Digest>, Error> {
        let mut extra = extra.to_vec();
        let mut replaced: Vec<VertexResult> = inputs.to_vec();
        let mut any = false;
        let hasher = ContextHasher::with_owners();
        for a in &f.actions {
            let FileAction::Copy(c) = a else { continue };
            let src = self.input(inputs, c.source)?;
            let ResultValue::Snapshot(s) = &src.value else {
                continue;
            };
            self.ensure(s.as_deref())?;
            let view = self.snaps.view(s.as_deref())?;
            let sum = hasher.checksum(&view.mountpoint, &c.src, c.follow_symlinks, None);
            self.snaps.release_view(view);
            extra.push(format!("content:{}:{}", c.source.0, sum?));
            if let Some(r) = replaced.get_mut(c.source.0 as usize) {
                if Some(c.source) != f.base {
                    r.key = Digest::sha256_of(b"content-addressed input");
                }
            }
            any = true;
        }
        Ok(any.then(|| cache_key(op, &replaced, &extra)))
    }

    fn file_in(&self, f: &FileOp, inputs: &[VertexResult], root: &Path) -> Result<(), Error> {
        let mut views = Vec::new();
        let result = (|| {
            for a in &f.actions {
                match a {
                    FileAction::Copy(c) => {
                        let src = self.input(inputs, c.source)?;
                        let (src_root, default_owner, filter) = match &src.value {
                            ResultValue::Local(l) => (
                                self.context_root(l)?,
                                OwnerMode::Set(Owner { uid: 0, gid: 0 }),
                                Some(&l.ignore),
                            ),
                            ResultValue::Snapshot(s) => {
                                self.ensure(s.as_deref())?;
                                let v = self.snaps.view(s.as_deref())?;
                                let p = v.mountpoint.clone();
                                views.push(v);
                                (p, OwnerMode::Keep, None)
                            }
                        };
                        let owner = match &c.owner {
                            Some(ch) => OwnerMode::Set(fileop::resolve_owner(root, ch)?),
                            None => default_owner,
                        };
                        fileop::copy(&src_root, root, c, owner, filter)?;
                    }
                    FileAction::Mkdir(m) => fileop::mkdir(root, m)?,
                    FileAction::Mkfile(m) => fileop::mkfile(root, m)?,
                    FileAction::Rm(r) => fileop::rm(root, r)?,
                }
            }
            Ok(())
        })();
        for v in views {
            self.snaps.release_view(v);
        }
        result
    }

    fn merge(
        &self,
        vertex: &Digest,
        op: &Op,
        inputs: &[VertexResult],
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        let _ = (vertex, op, inputs, meta);
        Err(Error::Unsupported(
            "merge (COPY --link) is not implemented yet".into(),
        ))
    }

    /// The same layer content in another compression or level (same
    /// diff_id), made once and remembered in the index as
    /// `<snapshot>.<record name>` (`gzip-1`, `zstd`, …).
    fn recompress(
        &self,
        snapshot: &str,
        l: &LayerRecord,
        compress: &rbuild_cache::CompressOptions,
    ) -> Result<LayerRecord, Error> {
        let name = compress.record_name();
        if let Some(done) = self.index.layer(snapshot, &name) {
            if self.store.contains(&done.descriptor.digest) {
                return Ok(done);
            }
        }
        use std::io::Write as _;
        let io = |e: std::io::Error| Error::Io(format!("recompress {}", l.descriptor.digest), e);
        let blob = self.store.open_blob(&l.descriptor.digest)?;
        let mut reader =
            rbuild_cache::decompress_reader(std::io::BufReader::new(blob)).map_err(io)?;
        let writer = self.store.writer()?;
        let mut cw = rbuild_cache::compress_writer(writer, compress).map_err(io)?;
        std::io::copy(&mut reader, &mut cw).map_err(io)?;
        cw.flush().map_err(io)?;
        let (digest, size) = cw.finish().map_err(io)?.commit(None)?;
        let rec = LayerRecord {
            diff_id: l.diff_id.clone(),
            descriptor: rbuild_cache::Descriptor::new(
                rbuild_cache::media_type(compress.compression, false),
                digest,
                size,
            ),
            empty: l.empty,
        };
        self.index
            .put_layer(snapshot, &name, &rec)
            .map_err(|e| Error::Io("write layer index".into(), e))?;
        Ok(rec)
    }

    /// Snapshot names on the chain of `top` (itself and its parents).
    fn chain_names(&self, top: Option<&str>) -> Result<std::collections::HashSet<String>, Error> {
        let mut out = std::collections::HashSet::new();
        let Some(t) = top else { return Ok(out) };
        if !self.snaps.exists(t) {
            if let Some(lazy) = self.lazy(t) {
                out.extend(lazy.names());
                return Ok(out);
            }
        }
        let mut cur = Some(t.to_string());
        while let Some(s) = cur {
            cur = self.snaps.parent(&s)?;
            out.insert(s);
        }
        Ok(out)
    }

    /// The cache records of this build for export: (key, layers, the key
    /// later steps build on if not `key`) of every rootfs result (`all`),
    /// or only of those on the chain of `top`.
    #[allow(clippy::type_complexity)]
    pub fn cache_records(
        &self,
        top: Option<&str>,
        all: bool,
        compression: &rbuild_cache::CompressOptions,
        source_date_epoch: Option<i64>,
    ) -> Result<Vec<(Digest, Vec<LayerRecord>, Option<Digest>)>, Error> {
        let keep = self.chain_names(top)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut by_key = HashMap::new();
        for (key, snap) in self.results() {
            if !seen.insert(key.clone()) {
                continue;
            }
            if !all && snap.as_ref().is_some_and(|s| !keep.contains(s)) {
                continue;
            }
            let layers = self.layers(snap.as_deref(), compression, source_date_epoch, false)?;
            by_key.insert(key.clone(), layers.clone());
            out.push((key, layers, None));
        }
        let aliases = self
            .state
            .aliases
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        for (def, result) in aliases {
            if let Some(layers) = by_key.get(&result) {
                if seen.insert(def.clone()) {
                    out.push((def, layers.clone(), Some(result)));
                }
            }
        }
        Ok(out)
    }

    /// The layers of a result, base first, made (and cached) as needed.
    ///
    /// Layers built here are compressed as `compress` says (algorithm and
    /// level), once per snapshot, algorithm and level. Pulled layers keep
    /// their original blobs, as in BuildKit, unless `force_compression`:
    /// then a pulled layer of another algorithm, or any pulled layer when a
    /// non-default level was asked for, is recompressed (once; the result is
    /// remembered).
    pub fn layers(
        &self,
        top: Option<&str>,
        compress: &rbuild_cache::CompressOptions,
        source_date_epoch: Option<i64>,
        force_compression: bool,
    ) -> Result<Vec<LayerRecord>, Error> {
        if let Some(t) = top.filter(|t| !self.snaps.exists(t)) {
            if let Some(lazy) = self.lazy(t) {
                return Ok(lazy.layers.clone());
            }
        }
        let mut chain = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(s) = cur {
            cur = self.snaps.parent(&s)?;
            chain.push(s);
        }
        chain.reverse();
        let mut out = Vec::new();
        for s in chain {
            if let Some(l) = self.index.layer(&s, "pulled") {
                if self.store.contains(&l.descriptor.digest) {
                    let other_algorithm =
                        rbuild_cache::compression_of_media_type(&l.descriptor.media_type)
                            != Some(compress.compression);
                    if force_compression && (other_algorithm || compress.explicit_level().is_some())
                    {
                        out.push(self.recompress(&s, &l, compress)?);
                    } else {
                        out.push(l);
                    }
                    continue;
                }
            }
            out.push(
                self.snaps
                    .export_layer(&self.store, &s, compress, source_date_epoch)?,
            );
        }
        Ok(out)
    }
}
