//! One conformance suite, run against every snapshotter.

use super::*;
use crate::testutil::{assert_same, describe, file, names, require_root, rich_tree};
use crate::{apply_layer, write_layer_tar, DiffOptions};
use std::fs;

type Open = fn(&Path) -> Box<dyn Snapshotter>;

fn open_overlay(root: &Path) -> Box<dyn Snapshotter> {
    require_root("the overlay snapshotter");
    let s = OverlaySnapshotter::open(root).expect("open overlay snapshotter");
    if let Err(e) = s.check_supported() {
        panic!("overlayfs is needed for this test and cannot be mounted here: {e}");
    }
    Box::new(s)
}

fn open_copy(root: &Path) -> Box<dyn Snapshotter> {
    Box::new(CopySnapshotter::open(root).expect("open copy snapshotter"))
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(tempfile::TempDir);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(self.0.path());
    }
}

/// Mount `key` at a fresh dir, run `f` on it, unmount.
fn with_mount<T>(s: &dyn Snapshotter, key: &str, f: impl FnOnce(&Path) -> T) -> T {
    require_root("mounting snapshots");
    let m = Mounted(tempfile::tempdir().expect("tempdir"));
    s.mount(key, m.0.path()).expect("mount");
    let out = f(m.0.path());
    unmount(m.0.path()).expect("unmount");
    out
}

fn lifecycle(open: Open) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = open(tmp.path());
    s.prepare("a-active", None).expect("prepare a");
    assert_eq!(s.stat("a-active").expect("stat").kind, Kind::Active);
    with_mount(&*s, "a-active", |m| {
        file(m, "keep", b"keep", 0o644, 1_000);
        file(m, "gone", b"gone", 0o644, 1_000);
        file(m, "dir/inner", b"inner", 0o600, 1_000);
    });
    s.commit("a", "a-active").expect("commit a");
    assert!(matches!(
        s.stat("a-active"),
        Err(Error::SnapshotNotFound(_))
    ));
    let a = s.stat("a").expect("stat a");
    assert_eq!((a.kind, a.parent.clone()), (Kind::Committed, None));

    s.prepare("b-active", Some("a")).expect("prepare b");
    assert_eq!(
        s.stat("b-active").expect("stat").parent.as_deref(),
        Some("a")
    );
    with_mount(&*s, "b-active", |m| {
        assert_eq!(fs::read(m.join("keep")).expect("read keep"), b"keep");
        fs::remove_file(m.join("gone")).expect("rm");
        fs::remove_dir_all(m.join("dir")).expect("rm dir");
        file(m, "dir/new", b"new", 0o644, 2_000);
        file(m, "added", b"added", 0o644, 2_000);
    });
    s.commit("b", "b-active").expect("commit b");

    let spec = s.view("v", Some("b")).expect("view");
    assert!(match &spec {
        MountSpec::Bind { read_only, .. } => *read_only,
        MountSpec::Overlay { upper, .. } => upper.is_none(),
    });
    with_mount(&*s, "v", |m| {
        assert_eq!(names(m), ["added", "dir", "keep"]);
        assert_eq!(names(&m.join("dir")), ["new"]);
        assert!(
            fs::write(m.join("x"), b"x").is_err(),
            "a view must be read-only"
        );
    });
    // `a` is untouched by its child.
    s.view("va", Some("a")).expect("view a");
    with_mount(&*s, "va", |m| assert_eq!(names(m), ["dir", "gone", "keep"]));

    assert!(matches!(s.remove("a"), Err(Error::HasChildren(_))));
    for k in ["v", "va", "b", "a"] {
        s.remove(k).expect("remove");
    }
    assert!(s.list().expect("list").is_empty());
    assert_eq!(
        fs::read_dir(tmp.path().join("snapshots"))
            .expect("dir")
            .count(),
        0
    );
}

fn errors(open: Open) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = open(tmp.path());
    s.prepare("k", None).expect("prepare");
    assert!(matches!(
        s.prepare("k", None),
        Err(Error::SnapshotExists(_))
    ));
    assert!(matches!(
        s.prepare("x", Some("k")),
        Err(Error::InvalidSnapshotState { .. })
    ));
    assert!(matches!(
        s.prepare("x", Some("nope")),
        Err(Error::SnapshotNotFound(_))
    ));
    s.prepare("k2", None).expect("prepare");
    s.commit("c", "k").expect("commit");
    assert!(matches!(s.commit("c", "k2"), Err(Error::SnapshotExists(_))));
    assert!(matches!(
        s.commit("c2", "c"),
        Err(Error::InvalidSnapshotState { .. })
    ));
    s.view("v", Some("c")).expect("view");
    assert!(matches!(
        s.commit("c3", "v"),
        Err(Error::InvalidSnapshotState { .. })
    ));
    assert!(matches!(
        s.apply_target("c"),
        Err(Error::InvalidSnapshotState { .. })
    ));
    assert!(matches!(s.stat("missing"), Err(Error::SnapshotNotFound(_))));
}

fn persistence_and_usage(open: Open) {
    let tmp = tempfile::tempdir().expect("tempdir");
    {
        let s = open(tmp.path());
        s.prepare("a", None).expect("prepare");
        file(
            &s.upper_dir("a").expect("upper"),
            "big",
            &vec![1u8; 1 << 20],
            0o644,
            0,
        );
        s.commit("base", "a").expect("commit");
        s.prepare("child", Some("base")).expect("prepare");
        let u = s.usage("base").expect("usage");
        assert!(u.size >= 1 << 20 && u.inodes == 2, "{u:?}");
    }
    // A directory without metadata is a leftover of an interrupted prepare.
    fs::create_dir_all(tmp.path().join("snapshots/999/fs")).expect("mkdir");
    let s = open(tmp.path());
    let keys: Vec<_> = s
        .list()
        .expect("list")
        .into_iter()
        .map(|i| (i.key, i.kind, i.parent))
        .collect();
    assert_eq!(
        keys,
        [
            ("base".to_string(), Kind::Committed, None),
            ("child".to_string(), Kind::Active, Some("base".to_string()))
        ]
    );
    assert!(!tmp.path().join("snapshots/999").exists());
    // Two handles on one root see each other's changes.
    let s2 = open(tmp.path());
    s2.commit("child-c", "child")
        .expect("commit via second handle");
    assert_eq!(s.stat("child-c").expect("stat").kind, Kind::Committed);
}

/// Apply a rich layer, change it through a mount, diff, and check that the
/// diff applied on the parent reproduces the mounted tree exactly.
fn diff_apply_roundtrip(open: Open) {
    require_root("owners, devices and trusted xattrs");
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = open(tmp.path());
    let src = tempfile::tempdir().expect("tempdir");
    rich_tree(src.path());
    let mut layer1 = Vec::new();
    let src_diff = DiffSource::Compare {
        lower: None,
        upper: src.path().to_path_buf(),
    };
    write_layer_tar(&src_diff, &mut layer1, &DiffOptions::default()).expect("tar");

    s.prepare("l1", None).expect("prepare");
    apply_layer(&layer1[..], &s.apply_target("l1").expect("target")).expect("apply");
    s.commit("base", "l1").expect("commit");
    with_mount(
        &*s,
        &{
            s.view("vbase", Some("base")).expect("view");
            "vbase".to_string()
        },
        |m| {
            assert_same(&describe(src.path(), true), &describe(m, true));
        },
    );

    s.prepare("l2", Some("base")).expect("prepare");
    let expected = with_mount(&*s, "l2", |m| {
        fs::remove_file(m.join("etc/passwd")).expect("rm");
        fs::remove_dir_all(m.join("deep")).expect("rm");
        fs::create_dir(m.join("deep")).expect("mkdir"); // overlay: opaque dir
        file(m, "deep/fresh", b"fresh", 0o640, 3_000);
        file(m, "bin/sgid", b"changed", 0o2755, 3_001);
        fs::set_permissions(
            m.join("dev"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        crate::fsutil::set_mtime(&m.join("dev"), 1_500_000_000, 0).expect("mtime");
        describe(m, false)
    });
    s.commit("top", "l2").expect("commit");
    let mut layer2 = Vec::new();
    write_layer_tar(
        &s.diff_source("top").expect("diff"),
        &mut layer2,
        &DiffOptions::default(),
    )
    .expect("tar");
    let mut again = Vec::new();
    write_layer_tar(
        &s.diff_source("top").expect("diff"),
        &mut again,
        &DiffOptions::default(),
    )
    .expect("tar");
    assert_eq!(layer2, again, "diff must be reproducible");

    // Apply both layers into a plain directory (delete mode).
    let out = tempfile::tempdir().expect("tempdir");
    for layer in [&layer1, &layer2] {
        let t = ApplyTarget {
            dir: out.path().to_path_buf(),
            mode: crate::WhiteoutMode::Delete,
            lowers: vec![],
        };
        apply_layer(&layer[..], &t).expect("apply");
    }
    assert_same(&expected, &describe(out.path(), false));

    // And on top of the same snapshotter (its own apply mode).
    s.prepare("l3", Some("base")).expect("prepare");
    apply_layer(&layer2[..], &s.apply_target("l3").expect("target")).expect("apply");
    with_mount(&*s, "l3", |m| assert_same(&expected, &describe(m, false)));
}

fn long_chain(open: Open) {
    require_root("mounting snapshots");
    let base = tempfile::tempdir().expect("tempdir");
    // A long root makes the lowerdir string exceed a page.
    let root = base.path().join("r".repeat(200));
    let s = open(&root);
    let mut parent: Option<String> = None;
    for i in 0..30 {
        let key = format!("k{i}");
        s.prepare(&key, parent.as_deref()).expect("prepare");
        file(
            &s.upper_dir(&key).expect("upper"),
            &format!("f{i}"),
            b"x",
            0o644,
            0,
        );
        s.commit(&format!("c{i}"), &key).expect("commit");
        parent = Some(format!("c{i}"));
    }
    s.prepare("top", parent.as_deref()).expect("prepare");
    if let MountSpec::Overlay { .. } = s.mounts("top").expect("mounts") {
        let (_, _, opts) = s.mounts("top").expect("mounts").to_options();
        assert!(
            opts.join(",").len() > 4096,
            "test must exercise the long-options path"
        );
    }
    with_mount(&*s, "top", |m| assert_eq!(names(m).len(), 30));
}

macro_rules! conformance {
    ($($name:ident => $open:expr),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test] fn lifecycle() { super::lifecycle($open) }
            #[test] fn errors() { super::errors($open) }
            #[test] fn persistence_and_usage() { super::persistence_and_usage($open) }
            #[test] fn diff_apply_roundtrip() { super::diff_apply_roundtrip($open) }
            #[test] fn long_chain() { super::long_chain($open) }
        }
    )*};
}

conformance! {
    overlay => open_overlay,
    copy => open_copy,
}

#[test]
fn a_root_keeps_its_implementation() {
    require_root("probing overlayfs");
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = open_default(tmp.path()).expect("open default");
    assert_eq!(
        s.name(),
        "overlayfs",
        "overlayfs must be usable here (root, kernel support)"
    );
    drop(s);
    assert!(matches!(
        CopySnapshotter::open(tmp.path()),
        Err(Error::InvalidSnapshotState { .. })
    ));
    let copy = tempfile::tempdir().expect("tempdir");
    CopySnapshotter::open(copy.path()).expect("copy");
    assert_eq!(open_default(copy.path()).expect("reopen").name(), "copy");
}
