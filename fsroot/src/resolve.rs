//! Path resolution beneath a root handle: `openat2(RESOLVE_IN_ROOT)`, or a
//! component walk that resolves symlinks itself and fails closed.

use crate::{Dir, Name, Root, MAX_SYMLINKS};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How paths are resolved beneath a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// The kernel resolves in the root: `openat2(RESOLVE_IN_ROOT |
    /// RESOLVE_NO_MAGICLINKS)` (Linux ≥ 5.6).
    Openat2,
    /// One component at a time with `O_NOFOLLOW`; symlinks are read and
    /// resolved against the root, at most [`MAX_SYMLINKS`] of them.
    Walk,
}

impl Resolver {
    /// `Openat2` where the kernel (and any seccomp profile) allows it,
    /// else `Walk`. Probed once per process.
    pub fn detect() -> Self {
        static DETECTED: OnceLock<Resolver> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            match rustix::fs::openat2(
                rustix::fs::CWD,
                "/",
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(_) => Resolver::Openat2,
                Err(_) => Resolver::Walk,
            }
        })
    }
}

/// Open `path` beneath `root` (see [`Root::open_at`]).
pub(crate) fn open(
    resolver: Resolver,
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    follow_last: bool,
) -> io::Result<OwnedFd> {
    let mut flags = flags | OFlags::CLOEXEC;
    if !follow_last {
        flags |= OFlags::NOFOLLOW;
    }
    if resolver == Resolver::Openat2 {
        let rel = relative(path);
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks to
        // retry. After a few tries the walk, which cannot race out, decides.
        for _ in 0..4 {
            match rustix::fs::openat2(
                root,
                rel,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                other => return other.map_err(Into::into),
            }
        }
    }
    walk(root, path, flags, follow_last)
}

/// `path` without leading slashes (`.` when empty).
fn relative(path: &Path) -> &Path {
    let b = path.as_os_str().as_bytes();
    let start = b.iter().position(|c| *c != b'/').unwrap_or(b.len());
    if start == b.len() {
        Path::new(".")
    } else {
        Path::new(OsStr::from_bytes(&b[start..]))
    }
}

fn components(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes
        .split(|c| *c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// The component walk: every directory on the way is held open, `..` pops
/// one (never above the root), a symlink's target is pushed in front of
/// what remains (from the root if absolute).
fn walk(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    follow_last: bool,
) -> io::Result<OwnedFd> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: VecDeque<Vec<u8>> = components(path.as_os_str().as_bytes())
        .map(<[u8]>::to_vec)
        .collect();
    let mut links = 0usize;
    while let Some(c) = pending.pop_front() {
        if c == b".." {
            stack.pop();
            continue;
        }
        let last = pending.is_empty();
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let name = OsStr::from_bytes(&c);
        let fd = rustix::fs::openat(
            cur,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Symlink && (!last || follow_last) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP.into());
            }
            let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
            let target = target.as_bytes();
            if target.starts_with(b"/") {
                stack.clear();
            }
            for t in components(target).rev() {
                pending.push_front(t.to_vec());
            }
            continue;
        }
        if last {
            if flags & !(OFlags::CLOEXEC | OFlags::NOFOLLOW) == OFlags::PATH {
                return Ok(fd);
            }
            // Reopen by name without following: a swap to a symlink since
            // the check above fails with ELOOP rather than escaping.
            return Ok(rustix::fs::openat(
                cur,
                name,
                flags | OFlags::NOFOLLOW,
                Mode::empty(),
            )?);
        }
        if kind != FileType::Directory {
            return Err(Errno::NOTDIR.into());
        }
        stack.push(fd);
    }
    // Nothing left (the root, or a path ending in `..`): the directory reached.
    let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
    Ok(rustix::fs::openat(
        cur,
        ".",
        flags & !OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// `mkdir -p` beneath the root (see [`Root::create_dir_all`]).
pub(crate) fn create_dir_all(
    root: &Root,
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    depth: usize,
    before_create: &mut dyn FnMut(&Dir, &Name) -> io::Result<()>,
) -> io::Result<Dir> {
    if depth > MAX_SYMLINKS {
        return Err(Errno::LOOP.into());
    }
    let comps: Vec<&[u8]> = components(path.as_os_str().as_bytes()).collect();
    let mut prefix = PathBuf::from("/");
    let mut cur = root.dir().try_clone()?;
    for (i, c) in comps.iter().enumerate() {
        let name = OsStr::from_bytes(c);
        prefix.push(name);
        match root.open_dir(&prefix) {
            Ok(d) => {
                cur = d;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // `prefix` minus its last component resolved to `cur`; the last
        // component is missing, or a symlink whose target is missing.
        let name = Name::new(name)?;
        match cur.stat(&name) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                let target = cur.read_link(&name)?;
                let mut next = if target.is_absolute() {
                    PathBuf::from("/")
                } else {
                    prefix.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                next.push(&target);
                for rest in &comps[i + 1..] {
                    next.push(OsStr::from_bytes(rest));
                }
                return create_dir_all(root, &next, mode, owner, depth + 1, before_create);
            }
            Ok(_) => return Err(Errno::NOTDIR.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        before_create(&cur, &name)?;
        match cur.create_dir(&name, mode) {
            Ok(()) => {
                if let Some((uid, gid)) = owner {
                    cur.set_owner(&name, uid, gid)?;
                }
            }
            // Created concurrently: use it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        cur = cur.open_dir(&name)?;
    }
    Ok(cur)
}
