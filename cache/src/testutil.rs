//! Test helpers: build file trees, describe them, make tars.

use crate::fsutil::list_xattrs;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Fail (never skip) when the test needs root.
pub fn require_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{what} needs root (CAP_SYS_ADMIN, CAP_MKNOD, CAP_CHOWN): run the tests as root"
    );
}

/// A stable, readable description of a tree: one line per entry with type,
/// mode, owner, size, content hash, link target, device, xattrs and (when
/// `with_dir_mtimes` or for non-dirs) mtime.
pub fn describe(root: &Path, with_dir_mtimes: bool) -> String {
    let mut out = String::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.expect("walk");
        let rel = e.path().strip_prefix(root).expect("prefix");
        let md = e.path().symlink_metadata().expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "link"
        } else if ft.is_char_device() {
            "chr"
        } else if ft.is_block_device() {
            "blk"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        write!(
            out,
            "{} {kind} {:o} {}:{}",
            rel.display(),
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        )
        .expect("fmt");
        if ft.is_file() {
            let data = fs::read(e.path()).expect("read");
            write!(
                out,
                " size={} sha={}",
                data.len(),
                rbuild_graph::Digest::sha256_of(&data).short()
            )
            .expect("fmt");
            if md.nlink() > 1 {
                write!(out, " nlink={}", md.nlink()).expect("fmt");
            }
        }
        if ft.is_symlink() {
            write!(
                out,
                " -> {}",
                fs::read_link(e.path()).expect("readlink").display()
            )
            .expect("fmt");
        }
        if ft.is_char_device() || ft.is_block_device() {
            write!(
                out,
                " dev={},{}",
                rustix::fs::major(md.rdev()),
                rustix::fs::minor(md.rdev())
            )
            .expect("fmt");
        }
        for (k, v) in list_xattrs(e.path()).expect("xattrs") {
            if !k.starts_with(b"trusted.overlay.") {
                write!(
                    out,
                    " x:{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
                .expect("fmt");
            }
        }
        if !ft.is_dir() || with_dir_mtimes {
            write!(out, " mtime={}", md.mtime()).expect("fmt");
        }
        out.push('\n');
    }
    out
}

/// Assert two tree descriptions are equal, printing a line diff.
pub fn assert_same(left: &str, right: &str) {
    if left != right {
        let mut msg = String::new();
        for l in left.lines() {
            if !right.lines().any(|r| r == l) {
                writeln!(msg, "- {l}").expect("fmt");
            }
        }
        for r in right.lines() {
            if !left.lines().any(|l| l == r) {
                writeln!(msg, "+ {r}").expect("fmt");
            }
        }
        panic!("trees differ:\n{msg}\nleft:\n{left}\nright:\n{right}");
    }
}

/// Write a file with content, mode and mtime.
pub fn file(root: &Path, rel: &str, content: &[u8], mode: u32, mtime: i64) {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(&p, content).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    crate::fsutil::set_mtime(&p, mtime, 0).expect("mtime");
}

/// Build a rich tree (needs root: owners, devices, trusted xattrs).
pub fn rich_tree(root: &Path) {
    file(
        root,
        "etc/passwd",
        b"root:x:0:0::/root:/bin/sh\n",
        0o644,
        1_600_000_000,
    );
    file(root, "bin/tool", &vec![7u8; 70_000], 0o4755, 1_600_000_001);
    file(root, "bin/sgid", b"g", 0o2711, 1_600_000_002);
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-link")).expect("link");
    std::os::unix::fs::symlink("../etc/passwd", root.join("bin/pw")).expect("symlink");
    std::os::unix::fs::symlink("/etc", root.join("abs-etc")).expect("symlink");
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(130));
    file(root, &long, b"long name", 0o600, 1_600_000_003);
    std::os::unix::fs::symlink("x".repeat(150), root.join("longlink")).expect("symlink");
    rustix::fs::chownat(
        rustix::fs::CWD,
        root.join("etc/passwd"),
        Some(rustix::fs::Uid::from_raw_unchecked(1000)),
        Some(rustix::fs::Gid::from_raw_unchecked(3_000_000)),
        rustix::fs::AtFlags::empty(),
    )
    .expect("chown");
    rustix::fs::chownat(
        rustix::fs::CWD,
        root.join("bin/pw"),
        Some(rustix::fs::Uid::from_raw_unchecked(5)),
        Some(rustix::fs::Gid::from_raw_unchecked(6)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    fs::create_dir_all(root.join("dev")).expect("mkdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("dev/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    crate::fsutil::set_xattr(&root.join("bin/tool"), b"user.note", b"hello").expect("xattr");
    crate::fsutil::set_xattr(&root.join("etc"), b"trusted.test", b"\x00\x01bin").expect("xattr");
    fs::set_permissions(root.join("etc"), fs::Permissions::from_mode(0o750)).expect("chmod");
    // Fix directory times last.
    for d in ["etc", "bin", "dev", "deep"] {
        crate::fsutil::set_mtime(&root.join(d), 1_500_000_000, 0).expect("mtime");
    }
}

/// A tar built entry by entry with raw control (for attack layers).
pub struct RawTar {
    /// The tar bytes.
    pub bytes: Vec<u8>,
}

impl RawTar {
    /// Empty archive.
    pub fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    fn push(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname = [0; 100];
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    /// Add a regular file.
    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.push(name.as_bytes(), tar::EntryType::Regular, None, data, 0o644);
        self
    }

    /// Add a directory.
    pub fn dir(mut self, name: &str) -> Self {
        self.push(name.as_bytes(), tar::EntryType::Directory, None, b"", 0o755);
        self
    }

    /// Add a symlink.
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.push(
            name.as_bytes(),
            tar::EntryType::Symlink,
            Some(target.as_bytes()),
            b"",
            0o777,
        );
        self
    }

    /// Add a hardlink.
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.push(
            name.as_bytes(),
            tar::EntryType::Link,
            Some(target.as_bytes()),
            b"",
            0o644,
        );
        self
    }

    /// End the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes
    }
}

/// Names of a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| String::from_utf8_lossy(e.expect("entry").file_name().as_bytes()).into_owned())
        .collect();
    v.sort();
    v
}
