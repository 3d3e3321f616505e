//! Where the files a step reads from a build context, and the source of a
//! `RUN --mount=type=bind`, come from.
//!
//! - **The filtered context.** No step ever sees the user's context
//!   directory itself. The first time a build needs a context (a COPY's
//!   cache key, a COPY, a bind mount, a cache-mount seed), its
//!   `.dockerignore`-filtered content is copied into a committed snapshot,
//!   `context-<hex>`, named after the content checksum of that selection
//!   (and the ignore patterns), so a later build of unchanged content
//!   reuses it without copying. As in BuildKit, whose context transfer
//!   leaves ignored files behind, a symlink whose target is ignored
//!   dangles there: COPY of it fails with "not found" and a RUN never
//!   reads the ignored file through it. Symlinks are copied as links and
//!   never followed; device nodes and sockets are left out.
//! - **Bind mounts never write their source.** A read-only bind mounts a
//!   read-only view of the snapshot (the stage's, or the filtered
//!   context's); a `rw` bind mounts a throwaway work snapshot on it (an
//!   overlay whose upper and work dirs live in the state dir's snapshot
//!   store), aborted after the RUN, so its writes reach neither the
//!   stage's snapshot, nor another RUN, nor the host. A single-file source
//!   is a file inside that overlay, copied up on its first write.
//! - **Sources are resolved in-root.** The mount's selector is resolved
//!   inside the mounted tree by the kernel ([`rbuild_fsroot::Root`]), so a
//!   symlink in a stage cannot point a bind mount at a host path.
//!
//! Design choice and its cost: one snapshot per distinct context content,
//! made by one walk of the context per build (file digests are memoized by
//! inode and times, so an unchanged context is only stat'ed) plus a full
//! copy whenever the content changed. Owners, modes and times are copied
//! from the context; since the snapshot is keyed by content (like every
//! COPY cache key), a context whose files were only touched reuses the
//! older snapshot, with the older times. Old context snapshots are build
//! cache like any other and go with `rbuild prune --all`.
//!
//! Lock order: the cross-process lock `context-<hex>` may be taken while a
//! step holds its `key-<key>` lock, never the other way round.

use crate::checksum::Selection;
use crate::fileop::FileOpError;
use crate::ignore::Matcher;
use crate::ops::{LocalContext, Ops, ResultValue, VertexResult};
use crate::snap::{Snaps, View, Work};
use crate::Error;
use rbuild_cache::Snapshotter as _;
use rbuild_fsroot::{Dir, FileType, Name, Root, Stat};
use rbuild_graph::{Digest, Mount};
use rustix::fs::Timespec;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

/// The filtered-context snapshots of one build: context directory →
/// committed snapshot name, made at most once per build.
#[derive(Debug, Default)]
pub struct ContextSnapshots {
    made: Mutex<HashMap<PathBuf, String>>,
}

/// What one bind mount holds until its RUN ends.
#[derive(Debug)]
enum Hold {
    /// A read-only view, released.
    View(View),
    /// A throwaway writable snapshot, aborted (its writes are discarded).
    Work(Work),
    /// An empty scratch directory, removed.
    Scratch(tempfile::TempDir),
}

/// The bind mounts of one RUN: everything they mounted is released when
/// this is dropped, on every path out of the step.
pub struct Binds<'a> {
    snaps: &'a Snaps,
    holds: Vec<Hold>,
}

impl<'a> Binds<'a> {
    /// No bind mounts yet.
    pub fn new(snaps: &'a Snaps) -> Self {
        Self {
            snaps,
            holds: Vec::new(),
        }
    }
}

impl Drop for Binds<'_> {
    fn drop(&mut self) {
        for h in self.holds.drain(..) {
            match h {
                Hold::View(v) => self.snaps.release_view(v),
                Hold::Work(w) => self.snaps.abort(w),
                Hold::Scratch(d) => drop(d),
            }
        }
    }
}

impl Ops {
    /// The host path to bind at `m.target` for a `type=bind` mount: inside
    /// a read-only view of the input (`readonly`) or a throwaway writable
    /// snapshot on it, `m.selector` resolved in-root.
    pub(crate) fn bind_source(
        &self,
        inputs: &[VertexResult],
        m: &Mount,
        readonly: bool,
        binds: &mut Binds<'_>,
    ) -> Result<PathBuf, Error> {
        let tree = match m.input {
            None => {
                let d = tempfile::tempdir_in(&self.tmp)
                    .map_err(|e| Error::Io("scratch mount".into(), e))?;
                let p = d.path().to_path_buf();
                binds.holds.push(Hold::Scratch(d));
                p
            }
            Some(i) => {
                let input = inputs
                    .get(i.0 as usize)
                    .ok_or_else(|| Error::Internal(format!("input {} missing", i.0)))?;
                let snapshot = match &input.value {
                    ResultValue::Local(c) => Some(self.context_snapshot(c)?),
                    ResultValue::Snapshot(s) => {
                        self.ensure(s.as_deref())?;
                        s.clone()
                    }
                };
                if readonly {
                    let v = self.snaps.view(snapshot.as_deref())?;
                    let p = v.mountpoint.clone();
                    binds.holds.push(Hold::View(v));
                    p
                } else {
                    let w = self.snaps.prepare(snapshot.as_deref())?;
                    let p = w.mountpoint.clone();
                    binds.holds.push(Hold::Work(w));
                    p
                }
            }
        };
        let selector = if m.selector.is_empty() {
            "/"
        } else {
            &m.selector
        };
        let resolved = Root::open(&tree).and_then(|r| r.real_host_path(selector, true));
        resolved.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::File(FileOpError::NotFound(m.selector.clone())),
            _ => Error::Io(format!("bind mount source {:?}", m.selector), e),
        })
    }

    /// The directory holding the `.dockerignore`-filtered copy of `ctx`
    /// (a committed snapshot: read it, never write it).
    pub(crate) fn context_root(&self, ctx: &LocalContext) -> Result<PathBuf, Error> {
        let name = self.context_snapshot(ctx)?;
        Ok(self.snaps.snapshotter().upper_dir(&name)?)
    }

    /// The checksum of what `src` selects in the filtered context. A
    /// selected symlink whose target is not there (ignored, or missing) is
    /// "not found", as in BuildKit.
    pub(crate) fn context_selection(
        &self,
        ctx: &LocalContext,
        src: &str,
        follow: bool,
    ) -> Result<Selection, Error> {
        let root = self.context_root(ctx)?;
        self.hasher
            .checksum_detailed(&root, src, follow, Some(&ctx.ignore))
            .map_err(|e| match e {
                Error::Io(_, io) if io.kind() == io::ErrorKind::NotFound => {
                    Error::File(FileOpError::NotFound(src.to_string()))
                }
                e => e,
            })
    }

    /// The committed snapshot of the filtered content of `ctx`, made (or
    /// found) once per build and protected by the build's lease.
    pub(crate) fn context_snapshot(&self, ctx: &LocalContext) -> Result<String, Error> {
        let mut made = self
            .state
            .context_snapshots
            .made
            .lock()
            .map_err(|_| Error::Internal("context snapshots poisoned".into()))?;
        if let Some(name) = made.get(&ctx.path) {
            return Ok(name.clone());
        }
        let sum = self
            .hasher
            .checksum(&ctx.path, "/", false, Some(&ctx.ignore))?;
        let mut material = format!("rbuild filtered context v1\n{sum}\n");
        for p in &ctx.ignore.source {
            material.push_str(p);
            material.push('\n');
        }
        let name = format!("context-{}", Digest::sha256_of(material.as_bytes()).hex());
        self.protect(&[], &[&name]);
        if !self.snaps.exists(&name) {
            let _lock = self.lock(&name)?;
            if !self.snaps.exists(&name) {
                self.materialize_context(ctx, &name)?;
            }
        }
        made.insert(ctx.path.clone(), name.clone());
        Ok(name)
    }

    /// Copy the filtered content of `ctx` into a new snapshot `name`.
    fn materialize_context(&self, ctx: &LocalContext, name: &str) -> Result<(), Error> {
        let work = self.snaps.prepare(None)?;
        let copied = (|| {
            let src = Root::open(&ctx.path)?;
            let dst = Root::open(&work.mountpoint)?;
            copy_filtered(src.dir(), dst.dir(), "", &ctx.ignore)?;
            let st = src.dir().self_stat()?;
            let d = dst.dir();
            d.set_self_owner(st.st_uid, st.st_gid)?;
            d.set_self_mode(st.st_mode)?;
            let (atime, mtime) = times(&st);
            d.set_self_times(atime, mtime)
        })();
        if let Err(e) = copied {
            self.snaps.abort(work);
            return Err(Error::Io(
                format!("copy the build context {}", ctx.path.display()),
                e,
            ));
        }
        self.snaps.commit(work, name)?;
        Ok(())
    }
}

/// Access and modification times of `st`.
fn times(st: &Stat) -> (Timespec, Timespec) {
    (
        Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    )
}

/// `rel/name`, or `name` at the top.
fn child(rel: &str, name: &Name) -> String {
    let n = name.as_os_str().to_string_lossy();
    if rel.is_empty() {
        n.into_owned()
    } else {
        format!("{rel}/{n}")
    }
}

/// Copy what `filter` lets through of directory `src` (context path
/// `rel`) into the empty directory `dst`. An excluded directory is made
/// only for what `!` patterns bring back inside it, as COPY does.
fn copy_filtered(src: &Dir, dst: &Dir, rel: &str, filter: &Matcher) -> io::Result<()> {
    for name in src.entries()? {
        let path = child(rel, &name);
        let st = src.stat(&name)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let excluded = filter.excludes(&path);
        match kind {
            FileType::Directory => {
                if excluded && !filter.has_exclusions() {
                    continue;
                }
                let sub = src.open_dir(&name)?;
                if excluded && !any_included(&sub, &path, filter)? {
                    continue;
                }
                dst.create_dir(&name, 0o700)?;
                copy_filtered(&sub, &dst.open_dir(&name)?, &path, filter)?;
            }
            _ if excluded => continue,
            FileType::RegularFile => {
                let mut from = src.open_file(&name)?;
                let mut to = dst.create_file(&name, 0o600)?;
                io::copy(&mut from, &mut to)?;
            }
            FileType::Symlink => dst.symlink(&name, src.read_link(&name)?)?,
            FileType::Fifo => dst.mknod(&name, kind, st.st_mode, 0)?,
            // Devices and sockets of a context are never handed to a step.
            _ => continue,
        }
        dst.set_owner(&name, st.st_uid, st.st_gid)?;
        dst.set_mode(&name, st.st_mode)?;
        let (atime, mtime) = times(&st);
        dst.set_times(&name, atime, mtime)?;
    }
    Ok(())
}

/// Whether anything below directory `dir` (context path `rel`) is let
/// through by `filter`.
fn any_included(dir: &Dir, rel: &str, filter: &Matcher) -> io::Result<bool> {
    for name in dir.entries()? {
        let path = child(rel, &name);
        if !filter.excludes(&path) {
            return Ok(true);
        }
        let st = dir.stat(&name)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && any_included(&dir.open_dir(&name)?, &path, filter)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walk(dir) {
            let rel = e
                .strip_prefix(dir)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let meta = fs::symlink_metadata(&e).map(|m| m.file_type());
            let kind = match meta {
                Ok(t) if t.is_symlink() => format!(
                    " -> {}",
                    fs::read_link(&e)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default()
                ),
                Ok(t) if t.is_dir() => "/".to_string(),
                _ => format!(" = {}", fs::read_to_string(&e).unwrap_or_default()),
            };
            out.push(format!("{}{kind}", rel.display()));
        }
        out.sort();
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(dir) else {
            return out;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            }
        }
        out
    }

    fn check(files: &[(&str, &str)], links: &[(&str, &str)], ignore: &[&str], want: &[&str]) {
        let src = tempfile::tempdir().expect("tmp");
        let dst = tempfile::tempdir().expect("tmp");
        for (p, content) in files {
            let f = src.path().join(p);
            fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            fs::write(&f, content).expect("write");
        }
        for (p, target) in links {
            std::os::unix::fs::symlink(target, src.path().join(p)).expect("symlink");
        }
        let patterns: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        let m = Matcher::new(&patterns).expect("patterns");
        let s = Root::open(src.path()).expect("open");
        let d = Root::open(dst.path()).expect("open");
        copy_filtered(s.dir(), d.dir(), "", &m).expect("copy");
        assert_eq!(tree(dst.path()), want);
    }

    #[test]
    fn ignored_files_are_left_out_and_links_to_them_dangle() {
        check(
            &[
                ("main.go", "package main"),
                (".env", "SECRET"),
                ("a/b.txt", "b"),
            ],
            &[("link", ".env"), ("up", "../../etc/passwd")],
            &[".env"],
            &[
                "a/",
                "a/b.txt = b",
                "link -> .env",
                "main.go = package main",
                "up -> ../../etc/passwd",
            ],
        );
    }

    #[test]
    fn excluded_directory_is_made_only_for_what_is_brought_back() {
        check(
            &[
                ("d/keep.txt", "k"),
                ("d/drop.txt", "x"),
                ("e/drop.txt", "x"),
            ],
            &[],
            &["d", "e", "!d/keep.txt"],
            &["d/", "d/keep.txt = k"],
        );
    }
}
