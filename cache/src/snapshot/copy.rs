//! The copy snapshotter: every snapshot is a full directory tree, made by
//! copying its parent (like containerd's "native" snapshotter). Works on
//! any filesystem and without mount privileges for applying and diffing;
//! costs a full copy per prepare.

use super::{Common, Info, Kind, MountSpec, Snapshotter, Usage};
use crate::apply::{ApplyTarget, WhiteoutMode};
use crate::diff::DiffSource;
use crate::{IoContext, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Snapshots as full copies.
pub struct CopySnapshotter {
    common: Common,
}

impl CopySnapshotter {
    /// Open (creating if needed) a snapshotter rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            common: Common::open(root.as_ref(), "copy")?,
        })
    }
}

fn init(dir: &Path, chain: &[PathBuf]) -> Result<()> {
    let fs_dir = dir.join("fs");
    fs::create_dir(&fs_dir).at(&fs_dir)?;
    if let Some(parent) = chain.first() {
        crate::fsutil::copy_tree(parent, &fs_dir)?;
    }
    Ok(())
}

impl Snapshotter for CopySnapshotter {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<MountSpec> {
        let (id, _) = self.common.create(key, parent, Kind::Active, init)?;
        Ok(MountSpec::Bind {
            source: self.common.fs(id),
            read_only: false,
        })
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<MountSpec> {
        let (id, _) = self.common.create(key, parent, Kind::View, init)?;
        Ok(MountSpec::Bind {
            source: self.common.fs(id),
            read_only: true,
        })
    }

    fn mounts(&self, key: &str) -> Result<MountSpec> {
        let (id, kind, _) = self.common.resolve(key)?;
        Ok(MountSpec::Bind {
            source: self.common.fs(id),
            read_only: kind != Kind::Active,
        })
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.common.commit(name, key).map(|_| ())
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
        let (id, _) = self.common.require_active(key)?;
        Ok(ApplyTarget {
            dir: self.common.fs(id),
            mode: WhiteoutMode::Delete,
            lowers: Vec::new(),
        })
    }

    fn diff_source(&self, key: &str) -> Result<DiffSource> {
        let (id, _, chain) = self.common.resolve(key)?;
        Ok(DiffSource::Compare {
            lower: chain.first().cloned(),
            upper: self.common.fs(id),
        })
    }
}
