//! Disk usage, leases and pruning.
//!
//! A lease is one JSON file under the leases directory naming the blobs and
//! snapshots a running build needs; [`prune`] never removes anything a live
//! lease names, nor the parents of such snapshots, nor active or view
//! snapshots (they are in use by definition).

use crate::export::LayerCache;
use crate::snapshot::{Kind, Snapshotter};
use crate::{ContentStore, Error, IoContext, Result};
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Space used by the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes in blobs.
    pub blob_bytes: u64,
    /// Number of blobs.
    pub blobs: u64,
    /// Bytes in snapshot directories.
    pub snapshot_bytes: u64,
    /// Number of snapshots.
    pub snapshots: u64,
}

impl DiskUsage {
    /// Blobs plus snapshots.
    pub fn total(&self) -> u64 {
        self.blob_bytes + self.snapshot_bytes
    }
}

/// Measure the space used by `store` and `snapshotter`.
pub fn du(store: &ContentStore, snapshotter: Option<&dyn Snapshotter>) -> Result<DiskUsage> {
    let mut u = DiskUsage::default();
    for d in store.list()? {
        u.blob_bytes += store.size(&d).unwrap_or(0);
        u.blobs += 1;
    }
    if let Some(s) = snapshotter {
        for info in s.list()? {
            u.snapshot_bytes += s.usage(&info.key)?.size;
            u.snapshots += 1;
        }
    }
    Ok(u)
}

/// What a lease protects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease id (also its file name).
    pub id: String,
    /// Protected blobs.
    pub digests: BTreeSet<Digest>,
    /// Protected snapshots (keys or names), with their parents.
    pub snapshots: BTreeSet<String>,
    /// Seconds since the epoch after which the lease no longer protects.
    pub expires: Option<i64>,
}

/// The set of leases: one file per lease in a directory.
#[derive(Clone, Debug)]
pub struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// Open (creating if needed) the leases directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || id.starts_with('.')
        {
            return Err(Error::Lease(id.into(), "ids are [A-Za-z0-9._-]+".into()));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Write (create or replace) a lease.
    pub fn put(&self, lease: &Lease) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(lease)
            .map_err(|e| Error::Lease(lease.id.clone(), e.to_string()))?;
        // Atomic (temp file + rename) but not fsynced: a lease only matters
        // while its build runs, and a crash ends the build anyway.
        let path = self.path(&lease.id)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).at(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes).at(tmp.path())?;
        tmp.persist(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Read a lease.
    pub fn get(&self, id: &str) -> Result<Lease> {
        let p = self.path(id)?;
        let b = fs::read(&p).at(&p)?;
        serde_json::from_slice(&b).map_err(|e| Error::Lease(id.into(), e.to_string()))
    }

    /// Add protected items to lease `id` (creating it if needed).
    pub fn add(&self, id: &str, digests: &[Digest], snapshots: &[&str]) -> Result<()> {
        let mut lease = self.get(id).unwrap_or_else(|_| Lease {
            id: id.into(),
            ..Lease::default()
        });
        lease.digests.extend(digests.iter().cloned());
        lease
            .snapshots
            .extend(snapshots.iter().map(|s| s.to_string()));
        self.put(&lease)
    }

    /// Drop a lease (no error if missing).
    pub fn release(&self, id: &str) -> Result<()> {
        crate::fsutil::remove_any(&self.path(id)?)
    }

    /// All leases that have not expired.
    pub fn live(&self) -> Result<Vec<Lease>> {
        let now = crate::snapshot::now_secs();
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).at(&self.dir)? {
            let p = e.at(&self.dir)?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let b = fs::read(&p).at(&p)?;
            let lease: Lease =
                serde_json::from_slice(&b).map_err(|err| Error::CorruptMetadata {
                    path: p.clone(),
                    reason: err.to_string(),
                })?;
            if lease.expires.is_none_or(|t| t > now) {
                out.push(lease);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Limits of [`prune`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Stop once blobs plus snapshots use at most this many bytes.
    pub keep_bytes: u64,
    /// Only remove items at least this old.
    pub older_than: Option<Duration>,
}

/// What [`prune`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Removed snapshots.
    pub snapshots: Vec<String>,
    /// Removed blobs.
    pub blobs: Vec<Digest>,
    /// Bytes freed (approximate for snapshots).
    pub freed: u64,
}

/// Remove unprotected committed snapshots (leaves first, oldest first) and
/// then unprotected blobs (oldest first) until usage is at most
/// `keep_bytes`. Layer-cache entries whose blob is gone are dropped.
pub fn prune(
    store: &ContentStore,
    snapshotter: &dyn Snapshotter,
    leases: &Leases,
    cache: Option<&LayerCache>,
    opts: &PruneOptions,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let mut usage = du(store, Some(snapshotter))?.total();
    let live = leases.live()?;
    let now = crate::snapshot::now_secs();
    let min_age = opts.older_than.map_or(0, |d| d.as_secs() as i64);

    // Snapshots: protect leased and in-use ones, and all their ancestors.
    loop {
        if usage <= opts.keep_bytes {
            break;
        }
        let infos: BTreeMap<String, _> = snapshotter
            .list()?
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect();
        let mut protected = BTreeSet::new();
        let mut stack: Vec<String> = live
            .iter()
            .flat_map(|l| l.snapshots.iter().cloned())
            .chain(
                infos
                    .values()
                    .filter(|i| i.kind != Kind::Committed)
                    .map(|i| i.key.clone()),
            )
            .collect();
        while let Some(k) = stack.pop() {
            if let Some(info) = infos.get(&k) {
                if protected.insert(k) {
                    stack.extend(info.parent.clone());
                }
            }
        }
        let parents: BTreeSet<&String> = infos.values().filter_map(|i| i.parent.as_ref()).collect();
        let victim = infos
            .values()
            .filter(|i| !protected.contains(&i.key) && !parents.contains(&i.key))
            .filter(|i| now - i.created >= min_age)
            .min_by_key(|i| (i.created, i.id));
        let Some(v) = victim else { break };
        let size = snapshotter.usage(&v.key)?.size;
        snapshotter.remove(&v.key)?;
        usage = usage.saturating_sub(size);
        report.freed += size;
        report.snapshots.push(v.key.clone());
    }

    // Blobs.
    let leased: BTreeSet<Digest> = live
        .iter()
        .flat_map(|l| l.digests.iter().cloned())
        .collect();
    let mut blobs = Vec::new();
    for d in store.list()? {
        if leased.contains(&d) {
            continue;
        }
        let p = store.blob_path(&d);
        let md = fs::metadata(&p).at(&p)?;
        let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
        if age.as_secs() as i64 >= min_age {
            blobs.push((mtime, d, md.len()));
        }
    }
    blobs.sort();
    for (_, d, size) in blobs {
        if usage <= opts.keep_bytes {
            break;
        }
        store.delete(&d)?;
        usage = usage.saturating_sub(size);
        report.freed += size;
        report.blobs.push(d);
    }

    if let Some(c) = cache {
        for (k, layer) in c.entries()? {
            if !store.contains(&layer.descriptor.digest) {
                c.remove(&k)?;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
