//! File actions (COPY, mkdir, mkfile, rm) applied to a mounted root
//! filesystem, with BuildKit's copy semantics.
//!
//! Every destination path is resolved inside the root: symlinks are followed
//! relative to the root and `..` never climbs above it, so a hostile image
//! cannot make COPY write outside its rootfs.

use crate::ignore::Matcher;
use rbuild_graph::{Chmod, Chown, CopyAction, MkdirAction, MkfileAction, RmAction, UserRef};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Errors of a file action, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A source path matched nothing.
    #[error("failed to compute cache key: {0:?}: not found")]
    NotFound(String),
    /// A user or group name is not in the destination's /etc/passwd or /etc/group.
    #[error("unable to convert {kind} {name:?} to a numeric id: not found in the image")]
    UnknownUser {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A bad `--chmod` value.
    #[error("invalid chmod {0:?}")]
    BadChmod(String),
    /// An IO error.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: String,
        /// The error.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, FileOpError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileOpError + 'a {
    move |source| FileOpError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// Resolve `path` (absolute inside the rootfs) to a host path under `root`,
/// following symlinks inside the root; the last component is followed only
/// if `follow_last`. Missing components are kept as they are.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsStr::new("..").to_os_string()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&parts);
        candidate.push(&c);
        let is_last = pending.is_empty();
        if (!is_last || follow_last) && hops < 40 {
            if let Ok(target) = fs::read_link(&candidate) {
                hops += 1;
                let t = Path::new(&target);
                if t.is_absolute() {
                    parts.clear();
                }
                for comp in t.components().rev() {
                    match comp {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push(OsStr::new("..").to_os_string()),
                        _ => {}
                    }
                }
                continue;
            }
        }
        parts.push(c);
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

/// Numeric owner resolved against the destination rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

fn lookup(root: &Path, file: &str, name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(resolve_in_root(root, file, true)).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) {
            let id = f.get(2)?.parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        } else {
            None
        }
    })
}

/// Resolve a `--chown` spec against the destination's passwd and group files.
pub fn resolve_owner(root: &Path, chown: &Chown) -> Result<Owner> {
    let (uid, primary) = match &chown.user {
        UserRef::Id(id) => (*id, None),
        UserRef::Name(n) => {
            let (u, g) =
                lookup(root, "/etc/passwd", n).ok_or_else(|| FileOpError::UnknownUser {
                    kind: "user",
                    name: n.clone(),
                })?;
            (u, Some(g))
        }
    };
    let gid = match &chown.group {
        Some(UserRef::Id(g)) => *g,
        Some(UserRef::Name(n)) => {
            lookup(root, "/etc/group", n)
                .ok_or_else(|| FileOpError::UnknownUser {
                    kind: "group",
                    name: n.clone(),
                })?
                .0
        }
        None => primary.unwrap_or(uid),
    };
    Ok(Owner { uid, gid })
}

/// Apply a symbolic (`u+x,g-w,o=r`) or octal chmod to `mode`.
pub fn apply_chmod(chmod: &Chmod, mode: u32, is_dir: bool) -> Result<u32> {
    match chmod {
        Chmod::Octal(m) => Ok(*m & 0o7777),
        Chmod::Symbolic(s) => {
            let mut mode = mode & 0o7777;
            for clause in s.split(',') {
                let op_pos = clause
                    .find(['+', '-', '='])
                    .ok_or_else(|| FileOpError::BadChmod(s.clone()))?;
                let (who, rest) = clause.split_at(op_pos);
                let mut mask = 0u32;
                for w in who.chars() {
                    mask |= match w {
                        'u' => 0o4700,
                        'g' => 0o2070,
                        'o' => 0o1007,
                        'a' => 0o7777,
                        _ => return Err(FileOpError::BadChmod(s.clone())),
                    };
                }
                if who.is_empty() {
                    mask = 0o7777;
                }
                let op = rest.chars().next().unwrap_or('+');
                let mut bits = 0u32;
                for p in rest[1..].chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' => {
                            if is_dir || mode & 0o111 != 0 {
                                0o111
                            } else {
                                0
                            }
                        }
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => return Err(FileOpError::BadChmod(s.clone())),
                    };
                }
                let bits = bits & mask;
                mode = match op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(mask & 0o7777)) | bits,
                };
            }
            Ok(mode)
        }
    }
}

/// Go's `path.Match` on one path component: `*`, `?`, `[…]`, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        if p.is_empty() {
            return n.is_empty();
        }
        match p[0] {
            '*' => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            '?' => !n.is_empty() && m(&p[1..], &n[1..]),
            '[' => {
                if n.is_empty() {
                    return false;
                }
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let c = n[0];
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        if class[i] <= c && c <= class[i + 2] {
                            hit = true;
                        }
                        i += 3;
                    } else {
                        if class[i] == c {
                            hit = true;
                        }
                        i += 1;
                    }
                }
                hit != negate && m(&p[end + 1..], &n[1..])
            }
            '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && m(&p[2..], &n[1..]),
            c => !n.is_empty() && n[0] == c && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand `src` (relative to the source root, may contain wildcards) to the
/// matching paths inside the source root, sorted.
pub fn expand_sources(
    src_root: &Path,
    src: &str,
    wildcard: bool,
    filter: Option<&Matcher>,
) -> Vec<String> {
    let mut out = expand_unfiltered(src_root, src, wildcard);
    if let Some(f) = filter.filter(|f| !f.is_empty()) {
        out.retain(|p| p == "/" || !f.excludes(p) || f.has_exclusions());
    }
    out
}

fn expand_unfiltered(src_root: &Path, src: &str, wildcard: bool) -> Vec<String> {
    let clean: Vec<String> = Path::new(src)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if !wildcard || !has_wildcard(src) {
        let p = format!("/{}", clean.join("/"));
        let host = resolve_in_root(src_root, &p, false);
        return if fs::symlink_metadata(&host).is_ok() {
            vec![p]
        } else {
            vec![]
        };
    }
    let mut current = vec![String::new()];
    for comp in &clean {
        let mut next = Vec::new();
        for prefix in &current {
            if has_wildcard(comp) {
                let dir =
                    resolve_in_root(src_root, if prefix.is_empty() { "/" } else { prefix }, true);
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob_match(comp, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| format!("{prefix}/{n}")));
            } else {
                let p = format!("{prefix}/{comp}");
                if fs::symlink_metadata(resolve_in_root(src_root, &p, false)).is_ok() {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    if clean.is_empty() {
        return vec!["/".into()];
    }
    current
}

/// How copied files get their owner.
#[derive(Clone, Copy, Debug)]
pub enum OwnerMode {
    /// Keep the source's owner (COPY --from a stage or image).
    Keep,
    /// Everything owned by this owner (--chown, or root for the context).
    Set(Owner),
}

/// Run a COPY action from `src_root` into `dest_root`.
pub fn copy(
    src_root: &Path,
    dest_root: &Path,
    a: &CopyAction,
    owner: OwnerMode,
    filter: Option<&Matcher>,
) -> Result<()> {
    let filter = filter.filter(|f| !f.is_empty());
    let matches = expand_sources(src_root, &a.src, a.allow_wildcard, filter);
    if matches.is_empty() {
        if a.allow_empty_wildcard && has_wildcard(&a.src) {
            return Ok(());
        }
        return Err(FileOpError::NotFound(a.src.clone()));
    }
    let dest_is_dir_hint = a.dest.ends_with('/') || matches.len() > 1 && has_wildcard(&a.src);
    let dest_host = resolve_in_root(dest_root, &a.dest, true);
    let created_owner = match owner {
        OwnerMode::Set(o) => o,
        OwnerMode::Keep => Owner { uid: 0, gid: 0 },
    };
    for m in &matches {
        let src_host = resolve_in_root(src_root, m, a.follow_symlinks);
        let meta = fs::symlink_metadata(&src_host).map_err(io_err("stat", &src_host))?;
        if meta.is_dir() && a.dir_copy_contents {
            mkdir_all(dest_root, &a.dest, 0o755, created_owner, a.create_dest_path)?;
            let target = resolve_in_root(dest_root, &a.dest, true);
            let ctx = Walk {
                owner,
                chmod: a.mode.as_ref(),
                filter,
            };
            copy_dir_contents(&src_host, &target, m, &ctx)?;
            continue;
        }
        let target = if dest_is_dir_hint || dest_host.is_dir() {
            if a.create_dest_path {
                mkdir_all(dest_root, &a.dest, 0o755, created_owner, true)?;
            }
            let name = Path::new(m)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            resolve_in_root(dest_root, &a.dest, true).join(name)
        } else {
            if a.create_dest_path {
                if let Some(parent) = Path::new(&a.dest).parent() {
                    mkdir_all(
                        dest_root,
                        &parent.to_string_lossy(),
                        0o755,
                        created_owner,
                        true,
                    )?;
                }
            }
            dest_host.clone()
        };
        if filter.is_some_and(|f| f.excludes(m)) && !meta.is_dir() {
            continue;
        }
        if a.attempt_unpack && meta.is_file() && is_tar_archive(&src_host) {
            // ADD of a local archive: extract it into the destination dir.
            mkdir_all(dest_root, &a.dest, 0o755, created_owner, true)?;
            let dir = resolve_in_root(dest_root, &a.dest, true);
            let file = fs::File::open(&src_host).map_err(io_err("open", &src_host))?;
            let reader = rbuild_cache::decompress_reader(io::BufReader::new(file))
                .map_err(io_err("decompress", &src_host))?;
            rbuild_cache::apply_layer(reader, &rbuild_cache::ApplyTarget::plain(&dir)).map_err(
                |e| FileOpError::Io {
                    op: "extract",
                    path: src_host.display().to_string(),
                    source: io::Error::other(e.to_string()),
                },
            )?;
            continue;
        }
        copy_entry(&src_host, &target, &meta, owner, a.mode.as_ref())?;
        if meta.is_dir() {
            let ctx = Walk {
                owner,
                chmod: a.mode.as_ref(),
                filter,
            };
            copy_dir_contents(&src_host, &target, m, &ctx)?;
        }
    }
    Ok(())
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
fn any_included(dir: &Path, rel: &str, filter: Option<&Matcher>) -> bool {
    let Some(f) = filter else { return true };
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let child = format!(
            "{}/{}",
            rel.trim_end_matches('/'),
            e.file_name().to_string_lossy()
        );
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        !f.excludes(&child) || (is_dir && any_included(&e.path(), &child, filter))
    })
}

fn copy_dir_contents(src: &Path, dest: &Path, rel: &str, w: &Walk<'_>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(io_err("read dir", src))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let s = e.path();
        let d = dest.join(e.file_name());
        let child_rel = format!(
            "{}/{}",
            rel.trim_end_matches('/'),
            e.file_name().to_string_lossy()
        );
        let meta = fs::symlink_metadata(&s).map_err(io_err("stat", &s))?;
        if meta.is_dir() {
            if !dir_may_have_included(w.filter, &child_rel) {
                continue;
            }
            // An excluded directory is created only for what `!` patterns
            // bring back inside it.
            if w.filter.is_some_and(|f| f.excludes(&child_rel))
                && !any_included(&s, &child_rel, w.filter)
            {
                continue;
            }
        } else if w.filter.is_some_and(|f| f.excludes(&child_rel)) {
            continue;
        }
        copy_entry(&s, &d, &meta, w.owner, w.chmod)?;
        if meta.is_dir() {
            copy_dir_contents(&s, &d, &child_rel, w)?;
        }
    }
    // Directory mtimes are set after their contents were written.
    let meta = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    set_times(dest, &meta)?;
    Ok(())
}

fn copy_entry(
    src: &Path,
    dest: &Path,
    meta: &fs::Metadata,
    owner: OwnerMode,
    chmod: Option<&Chmod>,
) -> Result<()> {
    let ft = meta.file_type();
    let (uid, gid) = match owner {
        OwnerMode::Keep => (meta.uid(), meta.gid()),
        OwnerMode::Set(o) => (o.uid, o.gid),
    };
    if let Ok(existing) = fs::symlink_metadata(dest) {
        if !(existing.is_dir() && ft.is_dir()) {
            if existing.is_dir() {
                fs::remove_dir_all(dest).map_err(io_err("remove", dest))?;
            } else {
                fs::remove_file(dest).map_err(io_err("remove", dest))?;
            }
        }
    }
    let mut mode = meta.permissions().mode() & 0o7777;
    if let Some(c) = chmod {
        mode = apply_chmod(c, mode, ft.is_dir())?;
    }
    if ft.is_dir() {
        match fs::create_dir(dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("mkdir", dest)(e)),
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("readlink", src))?;
        symlink(&target, dest).map_err(io_err("symlink", dest))?;
        std::os::unix::fs::lchown(dest, Some(uid), Some(gid)).map_err(io_err("chown", dest))?;
        set_times(dest, meta)?;
        return Ok(());
    } else if ft.is_file() {
        fs::copy(src, dest).map_err(io_err("copy", dest))?;
    } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
        let kind = if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_fifo() {
            rustix::fs::FileType::Fifo
        } else {
            rustix::fs::FileType::Socket
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dest,
            kind,
            rustix::fs::Mode::from_raw_mode(mode),
            meta.rdev(),
        )
        .map_err(|e| io_err("mknod", dest)(e.into()))?;
    }
    std::os::unix::fs::lchown(dest, Some(uid), Some(gid)).map_err(io_err("chown", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dest))?;
    set_times(dest, meta)?;
    Ok(())
}

fn set_times(dest: &Path, meta: &fs::Metadata) -> Result<()> {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dest,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("utimes", dest)(e.into()))
}

/// Whether `path` is a tar archive (plain, gzip or zstd), as ADD unpacks.
fn is_tar_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(f) = fs::File::open(path) else {
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

/// `mkdir -p` inside the root; created directories get `mode` and `owner`.
pub fn mkdir_all(root: &Path, path: &str, mode: u32, owner: Owner, parents: bool) -> Result<()> {
    let comps: Vec<String> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let mut cur = String::new();
    for (i, c) in comps.iter().enumerate() {
        cur.push('/');
        cur.push_str(c);
        let host = resolve_in_root(root, &cur, true);
        if host.is_dir() {
            continue;
        }
        if i + 1 < comps.len() && !parents {
            return Err(FileOpError::NotFound(cur));
        }
        fs::create_dir(&host).map_err(io_err("mkdir", &host))?;
        std::os::unix::fs::lchown(&host, Some(owner.uid), Some(owner.gid))
            .map_err(io_err("chown", &host))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &host))?;
    }
    Ok(())
}

/// Run a mkdir action.
pub fn mkdir(root: &Path, a: &MkdirAction) -> Result<()> {
    let owner = match &a.owner {
        Some(c) => resolve_owner(root, c)?,
        None => Owner { uid: 0, gid: 0 },
    };
    mkdir_all(root, &a.path, a.mode, owner, a.make_parents)
}

/// Run a mkfile action.
pub fn mkfile(root: &Path, a: &MkfileAction) -> Result<()> {
    let owner = match &a.owner {
        Some(c) => resolve_owner(root, c)?,
        None => Owner { uid: 0, gid: 0 },
    };
    let host = resolve_in_root(root, &a.path, true);
    fs::write(&host, a.data.as_bytes()).map_err(io_err("write", &host))?;
    std::os::unix::fs::lchown(&host, Some(owner.uid), Some(owner.gid))
        .map_err(io_err("chown", &host))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(a.mode)).map_err(io_err("chmod", &host))
}

/// Run an rm action.
pub fn rm(root: &Path, a: &RmAction) -> Result<()> {
    let paths = if a.allow_wildcard {
        expand_sources(root, &a.path, true, None)
    } else {
        vec![a.path.clone()]
    };
    for p in paths {
        let host = resolve_in_root(root, &p, false);
        let res = match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&host),
            Ok(_) => fs::remove_file(&host),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && a.allow_not_found => {}
            Err(e) => return Err(io_err("remove", &host)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_never_escapes_root() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path();
        fs::create_dir_all(root.join("a")).expect("mkdir");
        symlink("/etc", root.join("a/abs")).expect("ln");
        symlink("../../../../etc", root.join("a/rel")).expect("ln");
        assert_eq!(
            resolve_in_root(root, "/a/abs/passwd", true),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/a/rel/passwd", true),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "/../../x", true), root.join("x"));
        assert_eq!(resolve_in_root(root, "/a/abs", false), root.join("a/abs"));
    }

    #[test]
    fn glob_matches_like_go() {
        assert!(glob_match("*.go", "main.go"));
        assert!(!glob_match("*.go", "main.rs"));
        assert!(glob_match("f?o", "foo"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
    }

    #[test]
    fn chmod_symbolic_and_octal() {
        assert_eq!(
            apply_chmod(&Chmod::Octal(0o755), 0o644, false).expect("ok"),
            0o755
        );
        let s = |x: &str| Chmod::Symbolic(x.into());
        assert_eq!(apply_chmod(&s("u+x"), 0o644, false).expect("ok"), 0o744);
        assert_eq!(apply_chmod(&s("go-r"), 0o644, false).expect("ok"), 0o600);
        assert_eq!(apply_chmod(&s("a=r"), 0o755, false).expect("ok"), 0o444);
        assert_eq!(apply_chmod(&s("+X"), 0o644, true).expect("ok"), 0o755);
        assert!(apply_chmod(&s("q+x"), 0o644, false).is_err());
    }
}
