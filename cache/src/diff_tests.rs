use super::*;
use crate::testutil::{file, require_root, rich_tree};

fn tar_of(source: &DiffSource, epoch: Option<i64>) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer_tar(
        source,
        &mut out,
        &DiffOptions {
            source_date_epoch: epoch,
        },
    )
    .expect("tar");
    out
}

fn full(dir: &Path) -> DiffSource {
    DiffSource::Compare {
        lower: None,
        upper: dir.to_path_buf(),
    }
}

/// (path, type, uid, gid, mtime, link) of every entry.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u64, u64, u64, Option<String>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let h = e.header();
            assert!(
                h.username_bytes().is_none_or(|u| u.is_empty()),
                "uname must be empty"
            );
            assert!(
                h.groupname_bytes().is_none_or(|g| g.is_empty()),
                "gname must be empty"
            );
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.entry_type(),
                e.header().uid().expect("uid"),
                e.header().gid().unwrap_or(u64::MAX),
                h.mtime().expect("mtime"),
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            )
        })
        .collect()
}

#[test]
fn identical_trees_give_identical_bytes_with_clamped_mtimes() {
    require_root("owners and device nodes");
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    rich_tree(a.path());
    rich_tree(b.path());
    let epoch = Some(1_550_000_000);
    let ta = tar_of(&full(a.path()), epoch);
    let tb = tar_of(&full(b.path()), epoch);
    assert_eq!(ta, tb, "same inputs must give byte-identical tars");
    let es = entries(&ta);
    // Everything newer than the epoch is clamped; older stays.
    for (path, _, _, _, mtime, _) in &es {
        assert!(*mtime <= 1_550_000_000, "{path} mtime {mtime}");
    }
    let dir_mtime = es.iter().find(|e| e.0 == "etc/").expect("etc").4;
    assert_eq!(dir_mtime, 1_500_000_000);
}

#[test]
fn entries_are_sorted_with_numeric_ids_pax_names_and_hardlinks() {
    require_root("owners and device nodes");
    let a = tempfile::tempdir().expect("tmp");
    rich_tree(a.path());
    let tar = tar_of(&full(a.path()), None);
    let es = entries(&tar);
    let paths: Vec<&str> = es.iter().map(|e| e.0.as_str()).collect();
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(130));
    let expected = [
        "abs-etc",
        "bin/",
        "bin/pw",
        "bin/sgid",
        "bin/tool",
        "bin/tool-link",
        "deep/",
        &format!("deep/{}/", "d".repeat(120)),
        &long,
        "dev/",
        "dev/fifo",
        "dev/null",
        "etc/",
        "etc/passwd",
        "longlink",
    ];
    assert_eq!(paths, expected);
    let get = |p: &str| es.iter().find(|e| e.0 == p).expect("entry").clone();
    assert_eq!(
        (get("etc/passwd").2, get("etc/passwd").3),
        (1000, 3_000_000)
    );
    assert_eq!((get("bin/pw").2, get("bin/pw").3), (5, 6));
    assert_eq!(get("bin/tool-link").1, tar::EntryType::Link);
    assert_eq!(get("bin/tool-link").5.as_deref(), Some("bin/tool"));
    assert_eq!(get("longlink").5, Some("x".repeat(150)));
    assert_eq!(get("dev/null").1, tar::EntryType::Char);
    // xattrs travel as PAX records; mode bits survive.
    let mut ar = tar::Archive::new(&tar[..]);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mode = e.header().mode().expect("mode");
        let xattrs: Vec<String> = e
            .pax_extensions()
            .expect("pax")
            .map(|p| {
                p.filter_map(|x| x.ok())
                    .map(|x| x.key().unwrap_or("").to_string())
                    .filter(|k| k.starts_with("SCHILY.xattr."))
                    .collect()
            })
            .unwrap_or_default();
        match path.as_str() {
            "bin/tool" => {
                assert_eq!(mode, 0o4755);
                assert_eq!(xattrs, ["SCHILY.xattr.user.note"]);
            }
            "bin/sgid" => assert_eq!(mode, 0o2711),
            "etc/" => assert_eq!(xattrs, ["SCHILY.xattr.trusted.test"]),
            _ => {}
        }
    }
    // GNU tar reads it, long names included.
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("l.tar");
    std::fs::write(&p, &tar).expect("write");
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&p)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l == long));
}

#[test]
fn overlay_upper_whiteouts_and_opaque_dirs() {
    require_root("whiteout devices and trusted xattrs");
    let u = tempfile::tempdir().expect("tmp");
    let up = u.path();
    file(up, "d/new", b"n", 0o644, 100);
    std::fs::create_dir(up.join("opq")).expect("mkdir");
    file(up, "opq/kept", b"k", 0o644, 100);
    crate::fsutil::set_xattr(&up.join("opq"), b"trusted.overlay.opaque", b"y").expect("xattr");
    crate::fsutil::set_xattr(&up.join("d"), b"trusted.overlay.origin", b"zz").expect("xattr");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("d/deleted"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .expect("mknod");
    let tar = tar_of(
        &DiffSource::Overlay {
            upper: up.to_path_buf(),
        },
        Some(50),
    );
    let paths: Vec<(String, tar::EntryType)> =
        entries(&tar).into_iter().map(|e| (e.0, e.1)).collect();
    let reg = tar::EntryType::Regular;
    let dir = tar::EntryType::Directory;
    assert_eq!(
        paths,
        [
            ("d/".to_string(), dir),
            ("d/.wh.deleted".to_string(), reg),
            ("d/new".to_string(), reg),
            ("opq/".to_string(), dir),
            ("opq/.wh..wh..opq".to_string(), reg),
            ("opq/kept".to_string(), reg),
        ]
    );
    assert!(
        !tar.windows(15).any(|w| w == b"trusted.overlay"),
        "overlay's own xattrs must not leak into the layer"
    );
}

#[test]
fn compare_emits_only_changes() {
    let (l, u) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    for root in [l.path(), u.path()] {
        file(root, "same", b"same", 0o644, 100);
        file(root, "sub/same", b"same", 0o644, 100);
        file(root, "changed", b"old", 0o644, 100);
        file(root, "gone/x", b"x", 0o644, 100);
        crate::fsutil::set_mtime(&root.join("sub"), 100, 0).expect("mtime");
    }
    file(u.path(), "changed", b"new", 0o644, 100); // same size and mtime: content compared
    std::fs::remove_dir_all(u.path().join("gone")).expect("rm");
    file(u.path(), "added/f", b"f", 0o600, 100);
    let tar = tar_of(
        &DiffSource::Compare {
            lower: Some(l.path().to_path_buf()),
            upper: u.path().to_path_buf(),
        },
        None,
    );
    let paths: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(paths, ["added/", "added/f", "changed", ".wh.gone"]);
}
