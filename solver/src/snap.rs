//! The solver's use of the snapshotter: short-lived work snapshots that are
//! mounted, filled and committed under a result name, and read-only views.

use crate::index::LayerRecord;
use crate::Error;
use rbuild_cache::ProcessLease;
use rbuild_cache::{
    ApplyTarget, CompressOptions, ContentStore, DiffOptions, Kind, LayerCache, OverlaySnapshotter,
    Snapshotter,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An active snapshot being filled; commit or abort it.
#[derive(Debug)]
pub struct Work {
    key: String,
    /// Where the snapshot is mounted (empty when not mounted).
    pub mountpoint: PathBuf,
    mounted: bool,
}

/// A mounted read-only view of a committed snapshot (or an empty dir).
#[derive(Debug)]
pub struct View {
    key: Option<String>,
    /// Where the view is visible.
    pub mountpoint: PathBuf,
}

/// Snapshots as the solver uses them.
pub struct Snaps {
    inner: OverlaySnapshotter,
    mounts: PathBuf,
    layers: LayerCache,
    counter: AtomicU64,
    /// The build's lease: every snapshot key or name is added to it before
    /// the snapshot is created or looked for, so a concurrent prune never
    /// removes it.
    lease: Option<Arc<ProcessLease>>,
}

impl Snaps {
    /// Open the overlay snapshotter under `<root>/snapshots`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let inner = OverlaySnapshotter::open(root.join("snapshots"))?;
        let mounts = root.join("mnt");
        std::fs::create_dir_all(&mounts)
            .map_err(|e| Error::Io(format!("create {}", mounts.display()), e))?;
        let layers = LayerCache::open(root.join("layer-cache"))?;
        Ok(Self {
            inner,
            mounts,
            layers,
            counter: AtomicU64::new(0),
            lease: None,
        })
    }

    /// Hold every snapshot this build makes or uses with `lease`.
    pub fn with_lease(mut self, lease: Arc<ProcessLease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Add snapshot `name` to the build's lease (before making or using it).
    fn hold(&self, name: &str) -> Result<(), Error> {
        match &self.lease {
            Some(l) => Ok(l.add(&[], &[name])?),
            None => Ok(()),
        }
    }

    /// Check that overlayfs works here (root, kernel support).
    pub fn check(&self) -> Result<(), Error> {
        self.inner.check_supported().map_err(Error::from)
    }

    fn fresh_key(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
    }

    /// Whether a committed snapshot with this name exists. The name is
    /// added to the build's lease first, so a `true` stays true until the
    /// build ends (a name that cannot be leased counts as missing).
    pub fn exists(&self, name: &str) -> bool {
        self.hold(name).is_ok()
            && matches!(self.inner.stat(name), Ok(i) if i.kind == Kind::Committed)
    }

    /// The parent of a committed snapshot.
    pub fn parent(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.inner.stat(name)?.parent)
    }

    /// A new active snapshot on `parent`, mounted read-write.
    pub fn prepare(&self, parent: Option<&str>) -> Result<Work, Error> {
        let key = self.fresh_key("work");
        self.hold(&key)?;
        self.inner.prepare(&key, parent)?;
        let mountpoint = self.mounts.join(&key);
        let r = std::fs::create_dir_all(&mountpoint)
            .map_err(|e| Error::Io(format!("create {}", mountpoint.display()), e))
            .and_then(|()| self.inner.mount(&key, &mountpoint).map_err(Error::from));
        if let Err(e) = r {
            let _ = std::fs::remove_dir(&mountpoint);
            let _ = self.inner.remove(&key);
            return Err(e);
        }
        Ok(Work {
            key,
            mountpoint,
            mounted: true,
        })
    }

    /// A new active snapshot on `parent`, not mounted: fill it with
    /// [`Snaps::apply_target`] (unpacking a layer).
    pub fn prepare_unmounted(&self, parent: Option<&str>) -> Result<Work, Error> {
        let key = self.fresh_key("unpack");
        self.hold(&key)?;
        self.inner.prepare(&key, parent)?;
        Ok(Work {
            key,
            mountpoint: PathBuf::new(),
            mounted: false,
        })
    }

    /// Where a layer is unpacked into an unmounted work snapshot.
    pub fn apply_target(&self, work: &Work) -> Result<ApplyTarget, Error> {
        Ok(self.inner.apply_target(&work.key)?)
    }

    fn release(&self, work: &Work) {
        if work.mounted {
            let _ = rbuild_cache::unmount(&work.mountpoint);
            let _ = std::fs::remove_dir(&work.mountpoint);
        }
    }

    /// Commit `work` under `name`. If another build committed the same name
    /// meanwhile, its snapshot is used and this one removed.
    pub fn commit(&self, work: Work, name: &str) -> Result<String, Error> {
        self.release(&work);
        if let Err(e) = self.hold(name) {
            let _ = self.inner.remove(&work.key);
            return Err(e);
        }
        match self.inner.commit(name, &work.key) {
            Ok(()) => Ok(name.to_string()),
            Err(rbuild_cache::Error::SnapshotExists(_)) if self.exists(name) => {
                let _ = self.inner.remove(&work.key);
                Ok(name.to_string())
            }
            Err(e) => {
                let _ = self.inner.remove(&work.key);
                Err(e.into())
            }
        }
    }

    /// Throw `work` away.
    pub fn abort(&self, work: Work) {
        self.release(&work);
        let _ = self.inner.remove(&work.key);
    }

    /// A read-only view of `snapshot` (an empty directory for `None`).
    pub fn view(&self, snapshot: Option<&str>) -> Result<View, Error> {
        let key = self.fresh_key("view");
        let mountpoint = self.mounts.join(&key);
        std::fs::create_dir_all(&mountpoint)
            .map_err(|e| Error::Io(format!("create {}", mountpoint.display()), e))?;
        let Some(s) = snapshot else {
            return Ok(View {
                key: None,
                mountpoint,
            });
        };
        if let Err(e) = self.hold(&key) {
            let _ = std::fs::remove_dir(&mountpoint);
            return Err(e);
        }
        let r = self
            .inner
            .view(&key, Some(s))
            .and_then(|_| self.inner.mount(&key, &mountpoint));
        if let Err(e) = r {
            let _ = self.inner.remove(&key);
            let _ = std::fs::remove_dir(&mountpoint);
            return Err(e.into());
        }
        Ok(View {
            key: Some(key),
            mountpoint,
        })
    }

    /// Unmount and forget a view.
    pub fn release_view(&self, v: View) {
        if let Some(k) = &v.key {
            let _ = rbuild_cache::unmount(&v.mountpoint);
            let _ = self.inner.remove(k);
        }
        let _ = std::fs::remove_dir(&v.mountpoint);
    }

    /// The layer of committed snapshot `name`: its diff against its parent,
    /// compressed into the content store (computed once per algorithm and
    /// level, then reused).
    pub fn export_layer(
        &self,
        store: &ContentStore,
        name: &str,
        compress: &CompressOptions,
        source_date_epoch: Option<i64>,
    ) -> Result<LayerRecord, Error> {
        let layer = rbuild_cache::export_snapshot(
            store,
            &self.inner,
            name,
            Some(&self.layers),
            &DiffOptions { source_date_epoch },
            compress,
        )?;
        Ok(LayerRecord {
            empty: layer.uncompressed_size <= 1024,
            diff_id: layer.diff_id,
            descriptor: layer.descriptor,
        })
    }

    /// The underlying snapshotter (for `du` and `prune`).
    pub fn snapshotter(&self) -> &OverlaySnapshotter {
        &self.inner
    }
}
