//! COPY and ADD: sources read through a root on the source tree, each entry
//! recreated through directory handles on the destination (owners, modes,
//! times; symlinks copied as links, never followed; devices, fifos and
//! sockets recreated), local tar archives unpacked for ADD.

use super::owner::Owner;
use super::select::{expand_sources, has_wildcard};
use super::{apply_chmod, io_err, mkdir_in, open_root, FileOpError, Result};
use crate::ignore::Matcher;
use rbuild_fsroot::{Dir, FileType, Name, Node, Root, Stat};
use rbuild_graph::{Chmod, CopyAction};
use rustix::fs::Timespec;
use std::io::{self, Read};
use std::path::Path;

/// How copied files get their owner.
#[derive(Clone, Copy, Debug)]
pub enum OwnerMode {
    /// Keep the source's owner (COPY --from a stage or image).
    Keep,
    /// Everything owned by this owner (--chown, or root for the context).
    Set(Owner),
}

/// Run a COPY action from the tree at `src_root` into the tree at
/// `dest_root`.
pub fn copy(
    src_root: &Path,
    dest_root: &Path,
    a: &CopyAction,
    owner: OwnerMode,
    filter: Option<&Matcher>,
) -> Result<()> {
    copy_in(
        &open_root(src_root)?,
        &open_root(dest_root)?,
        a,
        owner,
        filter,
    )
}

/// [`copy`] between two open roots.
pub fn copy_in(
    src: &Root,
    dest: &Root,
    a: &CopyAction,
    owner: OwnerMode,
    filter: Option<&Matcher>,
) -> Result<()> {
    let filter = filter.filter(|f| !f.is_empty());
    let matches = expand_sources(src, &a.src, a.allow_wildcard, filter)?;
    if matches.is_empty() {
        if a.allow_empty_wildcard && has_wildcard(&a.src) {
            return Ok(());
        }
        return Err(FileOpError::NotFound(a.src.clone()));
    }
    let dest_is_dir_hint = a.dest.ends_with('/') || matches.len() > 1 && has_wildcard(&a.src);
    let created = match owner {
        OwnerMode::Set(o) => o,
        OwnerMode::Keep => Owner::ROOT,
    };
    let w = Walk {
        owner,
        chmod: a.mode.as_ref(),
        filter,
    };
    let dest_path = a.dest.as_str();
    let open_dest_dir = || dest.open_dir(dest_path).map_err(io_err("open", dest_path));
    for m in &matches {
        let node = src.node(m, a.follow_symlinks).map_err(io_err("stat", m))?;
        let is_dir = node.kind() == FileType::Directory;
        if is_dir && a.dir_copy_contents {
            let target = mkdir_in(dest, dest_path, 0o755, created, a.create_dest_path)?;
            let src_dir = node.into_dir().map_err(io_err("open", m))?;
            copy_dir_contents(&src_dir, &target, m, dest_path, &w)?;
            continue;
        }
        let name = Path::new(m).file_name().map(Name::new).transpose();
        let name = name.map_err(io_err("copy", m))?;
        let (dir, name, target_path) = if dest_is_dir_hint || dest.open_dir(dest_path).is_ok() {
            let dir = if a.create_dest_path {
                mkdir_in(dest, dest_path, 0o755, created, true)?
            } else {
                open_dest_dir()?
            };
            let Some(name) = name else {
                // The source is the root of its tree: its contents.
                let src_dir = node.into_dir().map_err(io_err("open", m))?;
                copy_dir_contents(&src_dir, &dir, m, dest_path, &w)?;
                continue;
            };
            let p = join(dest_path, &name);
            (dir, name, p)
        } else {
            let (dir, name) = if a.create_dest_path {
                dest.parent_following_or_create(dest_path, 0o755, Some(created.pair()))
            } else {
                dest.parent_following(dest_path)
            }
            .map_err(io_err("copy to", dest_path))?;
            (dir, name, dest_path.to_string())
        };
        if filter.is_some_and(|f| f.excludes(m)) && !is_dir {
            continue;
        }
        if a.attempt_unpack && node.kind() == FileType::RegularFile && is_tar_archive(&node) {
            // ADD of a local archive: extract it into the destination dir.
            let into = mkdir_in(dest, dest_path, 0o755, created, true)?;
            unpack(&node, &into, m)?;
            continue;
        }
        copy_entry(&node, &dir, &name, &target_path, owner, a.mode.as_ref())?;
        if is_dir {
            let sub = dir.open_dir(&name).map_err(io_err("open", &target_path))?;
            let src_dir = node.into_dir().map_err(io_err("open", m))?;
            copy_dir_contents(&src_dir, &sub, m, &target_path, &w)?;
        }
    }
    Ok(())
}

/// `parent/name` for messages.
fn join(parent: &str, name: &Name) -> String {
    format!(
        "{}/{}",
        parent.trim_end_matches('/'),
        name.as_os_str().to_string_lossy()
    )
}

/// What a recursive copy carries along.
struct Walk<'a> {
    owner: OwnerMode,
    chmod: Option<&'a Chmod>,
    filter: Option<&'a Matcher>,
}

/// True when `rel` or anything below it might be included.
fn dir_may_have_included(filter: Option<&Matcher>, rel: &str) -> bool {
    match filter {
        Some(f) => !f.excludes(rel) || f.has_exclusions(),
        None => true,
    }
}

/// Whether anything below `dir` (context path `rel`) is included.
fn any_included(dir: &Dir, rel: &str, filter: Option<&Matcher>) -> bool {
    let Some(f) = filter else { return true };
    let Ok(names) = dir.entries() else {
        return false;
    };
    names.iter().any(|n| {
        let child = join(rel, n);
        if !f.excludes(&child) {
            return true;
        }
        let Ok(st) = dir.stat(n) else { return false };
        FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && dir
                .open_dir(n)
                .is_ok_and(|d| any_included(&d, &child, filter))
    })
}

/// Copy what is in `src` (source path `rel`) into `dest` (destination path
/// `dest_path`), then give `dest` the times of `src`.
fn copy_dir_contents(
    src: &Dir,
    dest: &Dir,
    rel: &str,
    dest_path: &str,
    w: &Walk<'_>,
) -> Result<()> {
    for name in src.entries().map_err(io_err("read dir", rel))? {
        let child_rel = join(rel, &name);
        let node = src.node(&name).map_err(io_err("stat", &child_rel))?;
        let is_dir = node.kind() == FileType::Directory;
        if is_dir {
            if !dir_may_have_included(w.filter, &child_rel) {
                continue;
            }
            // An excluded directory is created only for what `!` patterns
            // bring back inside it.
            if w.filter.is_some_and(|f| f.excludes(&child_rel)) {
                let sub = src.open_dir(&name).map_err(io_err("open", &child_rel))?;
                if !any_included(&sub, &child_rel, w.filter) {
                    continue;
                }
            }
        } else if w.filter.is_some_and(|f| f.excludes(&child_rel)) {
            continue;
        }
        let child_dest = join(dest_path, &name);
        copy_entry(&node, dest, &name, &child_dest, w.owner, w.chmod)?;
        if is_dir {
            let sub = dest.open_dir(&name).map_err(io_err("open", &child_dest))?;
            let src_dir = node.into_dir().map_err(io_err("open", &child_rel))?;
            copy_dir_contents(&src_dir, &sub, &child_rel, &child_dest, w)?;
        }
    }
    // Directory times are set after their contents were written.
    let st = src.self_stat().map_err(io_err("stat", rel))?;
    dest.set_self_times(atime(&st), mtime(&st))
        .map_err(io_err("utimes", dest_path))
}

/// Recreate `src` as `name` in `dir` (`path` names it for messages):
/// whatever is there is replaced, except a directory by a directory.
fn copy_entry(
    src: &Node,
    dir: &Dir,
    name: &Name,
    path: &str,
    owner: OwnerMode,
    chmod: Option<&Chmod>,
) -> Result<()> {
    let st = src.stat();
    let kind = src.kind();
    let is_dir = kind == FileType::Directory;
    let (uid, gid) = match owner {
        OwnerMode::Keep => (st.st_uid, st.st_gid),
        OwnerMode::Set(o) => (o.uid, o.gid),
    };
    if let Some(existing) = dir.try_stat(name).map_err(io_err("stat", path))? {
        let existing_dir = FileType::from_raw_mode(existing.st_mode) == FileType::Directory;
        if !(existing_dir && is_dir) {
            dir.remove_all(name).map_err(io_err("remove", path))?;
        }
    }
    let mut mode = st.st_mode & 0o7777;
    if let Some(c) = chmod {
        mode = apply_chmod(c, mode, is_dir)?;
    }
    match kind {
        FileType::Directory => match dir.create_dir(name, mode) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("mkdir", path)(e)),
        },
        FileType::Symlink => {
            let target = src.read_link().map_err(io_err("readlink", path))?;
            dir.symlink(name, &target)
                .map_err(io_err("symlink", path))?;
            dir.set_owner(name, uid, gid)
                .map_err(io_err("chown", path))?;
            return dir
                .set_times(name, atime(st), mtime(st))
                .map_err(io_err("utimes", path));
        }
        FileType::RegularFile => {
            let mut from = src.open_file().map_err(io_err("read", path))?;
            let mut to = dir
                .create_file(name, mode)
                .map_err(io_err("create", path))?;
            io::copy(&mut from, &mut to).map_err(io_err("copy", path))?;
        }
        FileType::BlockDevice | FileType::CharacterDevice | FileType::Fifo | FileType::Socket => {
            dir.mknod(name, kind, mode, st.st_rdev)
                .map_err(io_err("mknod", path))?;
        }
        // Nothing a filesystem holds.
        FileType::Unknown => return Ok(()),
    }
    // Owner first (a chown clears set-id bits), then mode, then times.
    dir.set_owner(name, uid, gid)
        .map_err(io_err("chown", path))?;
    dir.set_mode(name, mode).map_err(io_err("chmod", path))?;
    dir.set_times(name, atime(st), mtime(st))
        .map_err(io_err("utimes", path))
}

fn atime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_atime as _,
        tv_nsec: st.st_atime_nsec as _,
    }
}

fn mtime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_mtime as _,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

/// Whether the file is a tar archive (plain, gzip or zstd), as ADD unpacks.
fn is_tar_archive(node: &Node) -> bool {
    let Ok(f) = node.open_file() else {
        return false;
    };
    let Ok(mut r) = rbuild_cache::decompress_reader(io::BufReader::new(f)) else {
        return false;
    };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// Unpack the archive `node` (source path `src_path`) into `into` with the
/// one layer applier, which resolves every entry inside `into`.
fn unpack(node: &Node, into: &Dir, src_path: &str) -> Result<()> {
    let file = node.open_file().map_err(io_err("open", src_path))?;
    let reader = rbuild_cache::decompress_reader(io::BufReader::new(file))
        .map_err(io_err("decompress", src_path))?;
    // `/proc/self/fd/N` names exactly the directory handle: nothing is
    // resolved by name again.
    let target = rbuild_cache::ApplyTarget::plain(rbuild_fsroot::proc_path(into));
    rbuild_cache::apply_layer(reader, &target).map_err(|e| FileOpError::Io {
        op: "extract",
        path: src_path.to_string(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(())
}
