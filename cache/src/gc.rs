//! Disk usage and pruning.
//!
//! [`prune`] never removes anything a live lease names (see
//! [`crate::Leases`]), nor the parents of such snapshots, nor active or view
//! snapshots (they are in use by definition). Its caller holds the
//! exclusive GC lock ([`crate::Leases::exclusive_lock`]) around it.

use crate::export::LayerCache;
use crate::snapshot::{Kind, Snapshotter};
use crate::{ContentStore, IoContext, Leases, Result};
use rbuild_graph::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
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
/// `keep_bytes`. Layer-cache entries whose blob is gone are dropped. Hold
/// the exclusive GC lock of `leases` around the call, so no build adds to
/// its lease meanwhile.
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
        let md = match fs::metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at(&p),
        };
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
