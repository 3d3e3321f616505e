//! Leases: what running processes hold, so a concurrent prune spares it.
//!
//! A lease is one JSON file under the leases directory naming blobs and
//! snapshots. A lease with an [`Owner`] (a pid and that process's start
//! time, from `/proc/<pid>/stat`) protects only while its owner runs: a
//! build killed by SIGKILL leaves a dead lease, which protects nothing and
//! is removed by [`Leases::remove_dead`]. The start time makes a reused pid
//! harmless.
//!
//! Protocol with [`crate::prune`]: a process adds a name to its lease
//! *before* it creates the thing (or, for something that exists already,
//! before it checks that it still exists), and every addition holds the
//! shared GC lock ([`Leases::shared_lock`]), while a prune holds the
//! exclusive one ([`Leases::exclusive_lock`]) from listing candidates to
//! removing them. So anything a prune can see is either named by a live
//! lease it reads, or not used by any running build; and a build that
//! looks for something after adding it to its lease finds it whole or not
//! at all.

use crate::{Error, IoContext, Result};
use rbuild_graph::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The process owning a lease: its pid and its start time (clock ticks
/// since boot, field 22 of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time of that process, in clock ticks after boot.
    pub start: u64,
}

impl Owner {
    /// The process `pid`, if it runs now.
    pub fn of(pid: u32) -> Option<Owner> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(Owner {
            pid,
            start: parse_start_time(&stat)?,
        })
    }

    /// This process (computed once).
    pub fn current() -> Option<Owner> {
        static ME: OnceLock<Option<Owner>> = OnceLock::new();
        *ME.get_or_init(|| Owner::of(std::process::id()))
    }

    /// Whether this exact process (same pid, same start time) still runs.
    /// A zombie counts as dead: it holds nothing any more.
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        parse_start_time(&stat) == Some(self.start) && !matches!(state, Some("Z" | "X"))
    }

    /// A prefix for file names made by this owner (`<pid>-<start>-`), which
    /// [`Owner::from_name`] reads back.
    pub fn name_prefix(&self) -> String {
        format!("{}-{}-", self.pid, self.start)
    }

    /// The owner a file name made with [`Owner::name_prefix`] names.
    pub fn from_name(name: &str) -> Option<Owner> {
        let mut parts = name.splitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        parts.next()?;
        Some(Owner { pid, start })
    }
}

/// Field 22 (starttime) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after
/// its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
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
    /// The process holding the lease; it protects only while that runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Lease {
    /// Whether the lease still protects: not expired, owner alive. A lease
    /// of an older rbuild without an owner, named `build-<pid>-…`, is live
    /// while a process `<pid>` runs.
    pub fn is_live(&self, now: i64) -> bool {
        if self.expires.is_some_and(|t| t <= now) {
            return false;
        }
        match &self.owner {
            Some(o) => o.is_alive(),
            None => legacy_pid(&self.id).is_none_or(|p| Owner::of(p).is_some()),
        }
    }
}

fn legacy_pid(id: &str) -> Option<u32> {
    id.strip_prefix("build-")?.split('-').next()?.parse().ok()
}

/// The set of leases: one file per lease in a directory.
#[derive(Clone, Debug)]
pub struct Leases {
    dir: PathBuf,
}

/// A held GC lock (shared or exclusive); released when dropped.
#[derive(Debug)]
pub struct GcLock {
    _file: fs::File,
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

    fn lock(&self, exclusive: bool) -> Result<GcLock> {
        let p = self.dir.join("gc.lock");
        let f = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        if exclusive { f.lock() } else { f.lock_shared() }.at(&p)?;
        Ok(GcLock { _file: f })
    }

    /// The GC lock, shared: held while adding to a lease, so no prune is
    /// between reading the leases and removing what they do not name.
    pub fn shared_lock(&self) -> Result<GcLock> {
        self.lock(false)
    }

    /// The GC lock, exclusive: held by a prune from listing what it may
    /// remove until it removed it. Never take it while holding the shared
    /// one (in this process too: the two are different open files).
    pub fn exclusive_lock(&self) -> Result<GcLock> {
        self.lock(true)
    }

    /// Write (create or replace) a lease.
    pub fn put(&self, lease: &Lease) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(lease)
            .map_err(|e| Error::Lease(lease.id.clone(), e.to_string()))?;
        // Atomic (temp file + rename) but not fsynced: a lease only matters
        // while its process runs, and a crash ends that anyway.
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

    /// Add protected items to lease `id` (creating it if needed). Not
    /// serialized against other writers of the same lease: a process with
    /// a lease of its own uses [`ProcessLease`].
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

    fn all(&self) -> Result<Vec<(PathBuf, Lease)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).at(&self.dir)? {
            let p = e.at(&self.dir)?.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let b = match fs::read(&p) {
                Ok(b) => b,
                // Released meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&p),
            };
            let lease: Lease =
                serde_json::from_slice(&b).map_err(|err| Error::CorruptMetadata {
                    path: p.clone(),
                    reason: err.to_string(),
                })?;
            out.push((p, lease));
        }
        Ok(out)
    }

    /// All leases that still protect ([`Lease::is_live`]).
    pub fn live(&self) -> Result<Vec<Lease>> {
        let now = crate::snapshot::now_secs();
        let mut out: Vec<Lease> = self
            .all()?
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| l.is_live(now))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Remove the files of leases that no longer protect; returns how many.
    pub fn remove_dead(&self) -> Result<usize> {
        let now = crate::snapshot::now_secs();
        let mut n = 0;
        for (p, l) in self.all()? {
            if !l.is_live(now) {
                crate::fsutil::remove_any(&p)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// This process's lease: everything a build creates or reuses is added to
/// it as it goes, and it protects until the process ends (or
/// [`ProcessLease::release`]).
#[derive(Debug)]
pub struct ProcessLease {
    leases: Leases,
    state: Mutex<Lease>,
    released: std::sync::atomic::AtomicBool,
}

impl ProcessLease {
    /// A new lease `<prefix>-<pid>-<start>-<n>` owned by this process,
    /// written at once (empty).
    pub fn acquire(leases: Leases, prefix: &str) -> Result<Arc<ProcessLease>> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let owner = Owner::current()
            .ok_or_else(|| Error::Lease(prefix.into(), "cannot read /proc/self/stat".into()))?;
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lease = Lease {
            id: format!("{prefix}-{}{n}", owner.name_prefix()),
            owner: Some(owner),
            ..Lease::default()
        };
        let _gc = leases.shared_lock()?;
        leases.put(&lease)?;
        Ok(Arc::new(ProcessLease {
            leases,
            state: Mutex::new(lease),
            released: Default::default(),
        }))
    }

    /// The lease id.
    pub fn id(&self) -> String {
        self.state.lock().map(|l| l.id.clone()).unwrap_or_default()
    }

    /// Protect `digests` and `snapshots` until the lease ends. Call it
    /// before creating them, or before checking that they exist. After
    /// [`ProcessLease::release`] this does nothing.
    pub fn add(&self, digests: &[Digest], snapshots: &[&str]) -> Result<()> {
        let mut lease = self
            .state
            .lock()
            .map_err(|_| Error::Lease(String::new(), "lease state poisoned".into()))?;
        let new = digests.iter().any(|d| !lease.digests.contains(d))
            || snapshots.iter().any(|s| !lease.snapshots.contains(*s));
        if !new || self.released.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        lease.digests.extend(digests.iter().cloned());
        lease
            .snapshots
            .extend(snapshots.iter().map(|s| s.to_string()));
        let _gc = self.leases.shared_lock()?;
        self.leases.put(&lease)
    }

    /// Whether the lease names snapshot `name`.
    pub fn holds_snapshot(&self, name: &str) -> bool {
        self.state.lock().is_ok_and(|l| l.snapshots.contains(name))
    }

    /// End the lease now (it also ends with the process).
    pub fn release(&self) -> Result<()> {
        // Under the state lock, so no addition rewrites the file afterwards.
        let lease = self
            .state
            .lock()
            .map_err(|_| Error::Lease(String::new(), "lease state poisoned".into()))?;
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.leases.release(&lease.id)
    }
}

impl Drop for ProcessLease {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
