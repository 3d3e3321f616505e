//! The image's final filesystem, computed once in a scratch directory.
//!
//! The rootfs outputs never replay layer history onto the user's
//! destination: the layers are applied, in order, by the one layer applier
//! ([`rbuild_cache::apply_layer`], in delete-whiteouts mode) into a scratch
//! directory inside rbuild's state dir, and only the resulting tree is
//! written out ([`FinalTree::write_local`], [`FinalTree::write_tar`]). A
//! whiteout, an opaque marker or a link planted by a layer therefore acts on
//! the scratch tree only.

use crate::tree;
use crate::{Error, IoContext, Result};
use rbuild_cache::ApplyTarget;
use rbuild_fsroot::{Dir, Root};
use rbuild_graph::Digest;
use std::io::{Read, Write};
use std::path::Path;

/// The final filesystem of an image, unpacked in a private scratch
/// directory (removed on drop).
#[derive(Debug)]
pub struct FinalTree {
    dir: tempfile::TempDir,
    root: Root,
}

impl FinalTree {
    /// An empty tree in a fresh directory under `scratch` (created if
    /// missing; rbuild passes `<state dir>/tmp`).
    pub fn new_in(scratch: &Path) -> Result<Self> {
        std::fs::create_dir_all(scratch).at(scratch)?;
        let dir = tempfile::Builder::new()
            .prefix(".rbuild-rootfs-")
            .tempdir_in(scratch)
            .at(scratch)?;
        let root = Root::open(dir.path()).at(dir.path())?;
        Ok(Self { dir, root })
    }

    /// Apply one layer (plain, gzip or zstd tar) on top of the tree: its
    /// whiteouts delete what lower layers put here. `digest` names the
    /// layer in errors. The stream is read to its end, so a
    /// digest-verifying reader underneath sees EOF.
    pub fn apply(&mut self, layer: impl Read, digest: &Digest) -> Result<()> {
        rbuild_cache::apply_layer(layer, &ApplyTarget::plain(self.dir.path()))
            .map(|_| ())
            .map_err(|source| Error::Layer {
                digest: digest.clone(),
                source,
            })
    }

    /// Where the tree is (inside the scratch directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn top(&self) -> &Dir {
        self.root.dir()
    }

    /// Write the tree into the directory `dest` (created if missing).
    /// Every change goes through handles on `dest`'s directories: a path
    /// the image has replaces what `dest` holds there (a directory stays
    /// and takes the image's metadata), a symlink in `dest` or in the image
    /// is never followed, and nothing else in `dest` is touched.
    pub fn write_local(&self, dest: &Path) -> Result<()> {
        tree::write_local(self.top(), self.path(), dest)
    }

    /// Tar the tree to `w`: entries sorted by name (depth first), owners
    /// and modes as in the image, hard links as link entries, mtimes
    /// clamped to `clamp` when given; sockets are skipped.
    pub fn write_tar(&self, clamp: Option<u64>, w: &mut dyn Write) -> Result<()> {
        tree::write_tar(self.top(), self.path(), clamp, w)
    }
}
