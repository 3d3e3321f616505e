//! Snapshotters: unpacked filesystem trees with parents, modelled on
//! containerd's `snapshots.Snapshotter`.
//!
//! Lifecycle: [`Snapshotter::prepare`] makes an *active* (mutable) snapshot
//! on top of a committed parent; [`Snapshotter::commit`] turns it into a
//! *committed* (immutable) one under a new name, which can be the parent of
//! further snapshots; [`Snapshotter::view`] makes a read-only snapshot of a
//! parent. Every snapshot lives in `<root>/snapshots/<id>/fs` with a small
//! numeric id, so overlay `lowerdir=` strings stay short.

mod copy;
mod meta;
mod mount;
mod overlay;
#[cfg(test)]
mod tests;

pub use copy::CopySnapshotter;
pub(crate) use meta::now as now_secs;
pub use mount::{unmount, MountSpec};
pub use overlay::OverlaySnapshotter;

use crate::apply::ApplyTarget;
use crate::diff::DiffSource;
use crate::{Error, Result};
use meta::{Locked, Meta, MetaStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The state of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Mutable, made by `prepare`; can be committed.
    Active,
    /// Read-only, made by `view`; cannot be committed.
    View,
    /// Immutable, made by `commit`; can be a parent.
    Committed,
}

/// What is known about a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Its key (active, view) or name (committed).
    pub key: String,
    /// Its numeric id (names its directory; stable for its lifetime).
    pub id: u64,
    /// Its state.
    pub kind: Kind,
    /// Key of its parent, if any.
    pub parent: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// Space used by a snapshot's own directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated (each inode counted once).
    pub size: u64,
    /// Number of inodes.
    pub inodes: u64,
}

/// A snapshotter. Implementations: [`OverlaySnapshotter`] (default) and
/// [`CopySnapshotter`]; both pass the same conformance suite.
pub trait Snapshotter: Send + Sync {
    /// Short name of the implementation (`"overlayfs"`, `"copy"`).
    fn name(&self) -> &'static str;

    /// Create an active snapshot `key` on top of committed `parent` and
    /// return how to mount it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<MountSpec>;

    /// Create a read-only snapshot `key` of committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<MountSpec>;

    /// How to mount an existing active or view snapshot.
    fn mounts(&self, key: &str) -> Result<MountSpec>;

    /// Make active snapshot `key` immutable under `name`. `key` is gone
    /// afterwards. Unmount it first: for overlayfs the work dir is removed
    /// and the upper dir becomes the committed layer as it is.
    fn commit(&self, name: &str, key: &str) -> Result<()>;

    /// Remove a snapshot (it must have no children and must not be
    /// mounted).
    fn remove(&self, key: &str) -> Result<()>;

    /// Information about one snapshot.
    fn stat(&self, key: &str) -> Result<Info>;

    /// All snapshots, ordered by id.
    fn list(&self) -> Result<Vec<Info>>;

    /// Space used by the snapshot's own directory (not its parents).
    fn usage(&self, key: &str) -> Result<Usage>;

    /// The directory holding this snapshot's own data: the overlay upper
    /// dir, or the whole tree for the copy snapshotter.
    fn upper_dir(&self, key: &str) -> Result<PathBuf>;

    /// Where and how to apply a layer into active snapshot `key`.
    fn apply_target(&self, key: &str) -> Result<ApplyTarget>;

    /// What to diff to get the layer of snapshot `key` against its parent.
    fn diff_source(&self, key: &str) -> Result<DiffSource>;

    /// Mount snapshot `key` (active or view) at `target`.
    fn mount(&self, key: &str, target: &Path) -> Result<()> {
        self.mounts(key)?.mount(target)
    }
}

/// Open the default snapshotter under `root`: overlayfs when it can be
/// mounted here, else the copy snapshotter. A root keeps the
/// implementation it was first opened with.
pub fn open_default(root: impl AsRef<Path>) -> Result<Box<dyn Snapshotter>> {
    let root = root.as_ref();
    let existing = std::fs::read_to_string(root.join("driver")).ok();
    match existing.as_deref().map(str::trim) {
        Some("copy") => return Ok(Box::new(CopySnapshotter::open(root)?)),
        Some("overlayfs") => return Ok(Box::new(OverlaySnapshotter::open(root)?)),
        _ => {}
    }
    std::fs::create_dir_all(root).map_err(|e| Error::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    if rustix::process::geteuid().is_root() && overlay::probe(root).is_ok() {
        Ok(Box::new(OverlaySnapshotter::open(root)?))
    } else {
        Ok(Box::new(CopySnapshotter::open(root)?))
    }
}

/// Logic shared by both implementations: key bookkeeping and state checks.
pub(crate) struct Common {
    pub meta: MetaStore,
}

impl Common {
    /// Open the metadata under `root`, which must belong to `driver` (a
    /// root is never shared between implementations: their layouts differ).
    pub fn open(root: &Path, driver: &str) -> Result<Self> {
        let meta = MetaStore::open(root)?;
        let marker = root.join("driver");
        match std::fs::read_to_string(&marker) {
            Ok(found) if found.trim() == driver => {}
            Ok(found) => {
                return Err(Error::InvalidSnapshotState {
                    key: root.display().to_string(),
                    reason: format!(
                        "root belongs to the {} snapshotter, not {driver}",
                        found.trim()
                    ),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::fsutil::write_atomic(&marker, driver.as_bytes())?;
            }
            Err(e) => {
                return Err(Error::Io {
                    path: marker,
                    source: e,
                })
            }
        }
        Ok(Self { meta })
    }

    /// Create snapshot `key` of `kind` on `parent`; `init` fills its
    /// directory given the parent chain's directories (nearest first).
    pub fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        init: impl FnOnce(&Path, &[PathBuf]) -> Result<()>,
    ) -> Result<(u64, Vec<PathBuf>)> {
        if key.is_empty() {
            return Err(Error::InvalidSnapshotState {
                key: key.into(),
                reason: "empty key".into(),
            });
        }
        let mut l = self.meta.lock(true)?;
        if l.state.by_key.contains_key(key) {
            return Err(Error::SnapshotExists(key.into()));
        }
        let (parent_id, chain) = match parent {
            None => (None, Vec::new()),
            Some(p) => {
                let (pid, pmeta) = l.state.get(p)?;
                if pmeta.kind != Kind::Committed {
                    return Err(Error::InvalidSnapshotState {
                        key: p.into(),
                        reason: "parent is not committed".into(),
                    });
                }
                let chain = l.state.chain(pid).iter().map(|id| self.fs(*id)).collect();
                (Some(pid), chain)
            }
        };
        let (id, dir) = l.create_dir()?;
        let result = init(&dir, &chain).and_then(|()| {
            l.put(
                id,
                Meta {
                    key: key.into(),
                    kind,
                    parent: parent_id,
                    created: meta::now(),
                },
            )
        });
        if let Err(e) = result {
            let _ = crate::fsutil::remove_any(&dir);
            return Err(e);
        }
        Ok((id, chain))
    }

    /// The `fs` directory of snapshot `id`.
    pub fn fs(&self, id: u64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }

    pub fn lock(&self, exclusive: bool) -> Result<Locked<'_>> {
        self.meta.lock(exclusive)
    }

    /// Id, kind and parent chain dirs (nearest first, excluding self).
    pub fn resolve(&self, key: &str) -> Result<(u64, Kind, Vec<PathBuf>)> {
        let l = self.lock(false)?;
        let (id, m) = l.state.get(key)?;
        let chain = l.state.chain(id)[1..]
            .iter()
            .map(|id| self.fs(*id))
            .collect();
        Ok((id, m.kind, chain))
    }

    /// Mark active `key` committed as `name`; returns its id.
    pub fn commit(&self, name: &str, key: &str) -> Result<u64> {
        let mut l = self.lock(true)?;
        if l.state.by_key.contains_key(name) {
            return Err(Error::SnapshotExists(name.into()));
        }
        let (id, m) = l.state.get(key)?;
        if m.kind != Kind::Active {
            return Err(Error::InvalidSnapshotState {
                key: key.into(),
                reason: format!("cannot commit a {:?} snapshot", m.kind),
            });
        }
        let mut m = m.clone();
        m.kind = Kind::Committed;
        m.key = name.into();
        l.put(id, m)?;
        Ok(id)
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let mut l = self.lock(true)?;
        let (id, _) = l.state.get(key)?;
        if l.state.has_children(id) {
            return Err(Error::HasChildren(key.into()));
        }
        l.delete(id)
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        let l = self.lock(false)?;
        let (id, m) = l.state.get(key)?;
        Ok(l.state.info(id, m))
    }

    pub fn list(&self) -> Result<Vec<Info>> {
        let l = self.lock(false)?;
        Ok(l.state
            .by_id
            .iter()
            .map(|(id, m)| l.state.info(*id, m))
            .collect())
    }

    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (id, _, _) = self.resolve(key)?;
        let (size, inodes) = crate::fsutil::tree_usage(&self.fs(id))?;
        Ok(Usage { size, inodes })
    }

    /// Fails unless `key` is active.
    pub fn require_active(&self, key: &str) -> Result<(u64, Vec<PathBuf>)> {
        let (id, kind, chain) = self.resolve(key)?;
        if kind != Kind::Active {
            return Err(Error::InvalidSnapshotState {
                key: key.into(),
                reason: format!("expected an active snapshot, found {kind:?}"),
            });
        }
        Ok((id, chain))
    }
}
