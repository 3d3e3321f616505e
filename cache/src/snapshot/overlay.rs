//! The overlayfs snapshotter (default).
//!
//! Each snapshot owns `<root>/snapshots/<id>/fs` (its upper dir) and, while
//! active, `<root>/snapshots/<id>/work`. A committed snapshot's `fs` is used
//! directly as a lower dir of its children: commit copies nothing.

use super::{Common, Info, Kind, MountSpec, Snapshotter, Usage};
use crate::apply::{ApplyTarget, WhiteoutMode};
use crate::diff::DiffSource;
use crate::{IoContext, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Snapshots as overlayfs layers.
pub struct OverlaySnapshotter {
    common: Common,
}

impl OverlaySnapshotter {
    /// Open (creating if needed) a snapshotter rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            common: Common::open(root.as_ref(), "overlayfs")?,
        })
    }

    /// Check that overlayfs can be mounted here (needs root or
    /// CAP_SYS_ADMIN and a kernel with overlayfs): mounts a tiny overlay
    /// under the root and unmounts it.
    pub fn check_supported(&self) -> Result<()> {
        probe(self.common.meta.root())
    }

    fn spec(&self, id: u64, kind: Kind, chain: &[PathBuf]) -> MountSpec {
        let fs = self.common.fs(id);
        match (kind, chain.len()) {
            (Kind::View, 0) => MountSpec::Bind {
                source: fs,
                read_only: true,
            },
            (Kind::View, 1) => MountSpec::Bind {
                source: chain[0].clone(),
                read_only: true,
            },
            (Kind::View, _) => MountSpec::Overlay {
                lower: chain.to_vec(),
                upper: None,
                work: None,
            },
            (_, 0) => MountSpec::Bind {
                source: fs,
                read_only: kind == Kind::Committed,
            },
            (_, _) => MountSpec::Overlay {
                lower: chain.to_vec(),
                upper: Some(fs),
                work: Some(self.common.meta.dir(id).join("work")),
            },
        }
    }
}

/// Mount and unmount a tiny overlay in a temp dir under `dir`.
pub(crate) fn probe(dir: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("check-")
        .tempdir_in(dir)
        .at(dir)?;
    let base = tmp.path();
    for d in ["l1", "l2", "u", "w", "m"] {
        let p = base.join(d);
        fs::create_dir_all(&p).at(&p)?;
    }
    let spec = MountSpec::Overlay {
        lower: vec![base.join("l1"), base.join("l2")],
        upper: Some(base.join("u")),
        work: Some(base.join("w")),
    };
    let target = base.join("m");
    spec.mount(&target)?;
    super::unmount(&target)
}

impl Snapshotter for OverlaySnapshotter {
    fn name(&self) -> &'static str {
        "overlayfs"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<MountSpec> {
        let (id, chain) = self.common.create(key, parent, Kind::Active, |dir, _| {
            for d in ["fs", "work"] {
                let p = dir.join(d);
                fs::create_dir(&p).at(&p)?;
            }
            Ok(())
        })?;
        Ok(self.spec(id, Kind::Active, &chain))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<MountSpec> {
        let (id, chain) = self.common.create(key, parent, Kind::View, |dir, _| {
            let p = dir.join("fs");
            fs::create_dir(&p).at(&p)
        })?;
        Ok(self.spec(id, Kind::View, &chain))
    }

    fn mounts(&self, key: &str) -> Result<MountSpec> {
        let (id, kind, chain) = self.common.resolve(key)?;
        Ok(self.spec(id, kind, &chain))
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let id = self.common.commit(name, key)?;
        // The work dir is only needed while mounted read-write.
        let _ = crate::fsutil::remove_any(&self.common.meta.dir(id).join("work"));
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.common.remove(key)
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.common.stat(key)
    }

    fn list(&self) -> Result<Vec<Info>> {
        self.common.list()
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        self.common.usage(key)
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        let (id, _, _) = self.common.resolve(key)?;
        Ok(self.common.fs(id))
    }

    fn apply_target(&self, key: &str) -> Result<ApplyTarget> {
        let (id, chain) = self.common.require_active(key)?;
        Ok(ApplyTarget {
            dir: self.common.fs(id),
            mode: WhiteoutMode::Overlay,
            lowers: chain,
        })
    }

    fn diff_source(&self, key: &str) -> Result<DiffSource> {
        let (id, _, _) = self.common.resolve(key)?;
        Ok(DiffSource::Overlay {
            upper: self.common.fs(id),
        })
    }
}
