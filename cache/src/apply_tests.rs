use super::*;
use crate::testutil::{names, require_root, RawTar};
use std::fs;
use std::os::unix::fs::MetadataExt;

fn delete_target(dir: &Path) -> ApplyTarget {
    ApplyTarget {
        dir: dir.to_path_buf(),
        mode: WhiteoutMode::Delete,
        lowers: vec![],
    }
}

/// A sandbox: `root` is the apply target, `outside` a sibling the layer
/// must never touch.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("a/b")).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"secret").expect("write");
    Sandbox {
        _tmp: tmp,
        root,
        outside,
    }
}

impl Sandbox {
    fn apply(&self, tar: Vec<u8>) -> Result<ApplyStats> {
        apply_layer(&tar[..], &delete_target(&self.root))
    }
    fn outside_untouched(&self) {
        assert_eq!(
            names(&self.outside),
            ["secret"],
            "a file appeared outside the root"
        );
        assert_eq!(
            fs::read(self.outside.join("secret")).expect("read"),
            b"secret"
        );
        assert_eq!(
            fs::metadata(self.outside.join("secret"))
                .expect("md")
                .nlink(),
            1
        );
    }
}

#[test]
fn dotdot_entry_is_rejected() {
    let s = sandbox();
    let err = s
        .apply(
            RawTar::new()
                .file("a/b/../../../outside/pwned", b"x")
                .finish(),
        )
        .expect_err("must reject");
    assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
    s.outside_untouched();
}

#[test]
fn absolute_path_is_contained() {
    let s = sandbox();
    let abs = format!("{}/pwned", s.outside.display());
    s.apply(RawTar::new().file(&abs, b"x").finish())
        .expect("apply");
    s.outside_untouched();
    let inside = s.root.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).expect("contained copy"), b"x");
}

#[test]
fn write_through_absolute_symlink_is_contained() {
    let s = sandbox();
    let target = s.outside.display().to_string();
    let res = s.apply(
        RawTar::new()
            .symlink("esc", &target)
            .file("esc/pwned", b"x")
            .finish(),
    );
    s.outside_untouched();
    // Either rejected or written inside the root; never outside.
    if res.is_ok() {
        let inside = s.root.join(target.trim_start_matches('/')).join("pwned");
        assert!(inside.exists());
    }
}

#[test]
fn write_through_relative_symlink_is_contained() {
    let s = sandbox();
    let res = s.apply(
        RawTar::new()
            .symlink("a/up", "../../../../../../../../outside")
            .file("a/up/pwned", b"x")
            .finish(),
    );
    s.outside_untouched();
    if res.is_ok() {
        assert!(s.root.join("outside/pwned").exists());
    }
}

#[test]
fn file_replacing_a_symlink_does_not_follow_it() {
    let s = sandbox();
    let target = s.outside.join("secret").display().to_string();
    s.apply(
        RawTar::new()
            .symlink("f", &target)
            .file("f", b"overwritten")
            .finish(),
    )
    .expect("apply");
    s.outside_untouched();
    assert_eq!(fs::read(s.root.join("f")).expect("read"), b"overwritten");
}

#[test]
fn hardlink_escapes_are_rejected_or_contained() {
    let s = sandbox();
    let err = s
        .apply(RawTar::new().hardlink("h", "../outside/secret").finish())
        .expect_err("dotdot hardlink");
    assert!(matches!(err, Error::UnsafePath { .. }), "{err}");
    let abs = s.outside.join("secret").display().to_string();
    assert!(s
        .apply(RawTar::new().hardlink("h2", &abs).finish())
        .is_err());
    let dir = s.outside.display().to_string();
    assert!(s
        .apply(
            RawTar::new()
                .symlink("s", &dir)
                .hardlink("h3", "s/secret")
                .finish()
        )
        .is_err());
    s.outside_untouched();
    assert!(!s.root.join("h2").exists() && !s.root.join("h3").exists());
}

#[test]
fn whiteouts_in_delete_mode() {
    let s = sandbox();
    fs::write(s.root.join("a/gone"), b"x").expect("write");
    fs::write(s.root.join("a/b/old"), b"x").expect("write");
    fs::write(s.root.join("top"), b"x").expect("write");
    let tar = RawTar::new()
        .file("a/b/new", b"n")
        .file("a/b/.wh..wh..opq", b"")
        .file("a/.wh.gone", b"")
        .file(".wh.top", b"")
        .file(".wh.never-existed", b"")
        .finish();
    s.apply(tar).expect("apply");
    assert_eq!(names(&s.root), ["a"]);
    assert_eq!(names(&s.root.join("a")), ["b"]);
    assert_eq!(
        names(&s.root.join("a/b")),
        ["new"],
        "opaque keeps this layer's entries only"
    );
}

#[test]
fn whiteouts_in_overlay_mode() {
    require_root("overlay whiteouts (mknod, trusted xattrs)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (upper, lower) = (tmp.path().join("u"), tmp.path().join("l"));
    fs::create_dir_all(lower.join("d/sub")).expect("mkdir");
    fs::set_permissions(
        lower.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    fs::write(lower.join("d/file"), b"lower").expect("write");
    fs::create_dir_all(&upper).expect("mkdir");
    let tar = RawTar::new()
        .file("d/.wh.file", b"")
        .file("o/.wh..wh..opq", b"")
        .hardlink("d/link", "d/file2")
        .finish();
    // The hardlink target exists only in the lower: it is copied up.
    fs::write(lower.join("d/file2"), b"target").expect("write");
    let t = ApplyTarget {
        dir: upper.clone(),
        mode: WhiteoutMode::Overlay,
        lowers: vec![lower.clone()],
    };
    apply_layer(&tar[..], &t).expect("apply");
    let wh = fs::symlink_metadata(upper.join("d/file")).expect("whiteout");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    let mut v = [0u8; 2];
    let n = rustix::fs::lgetxattr(upper.join("o"), "trusted.overlay.opaque", &mut v[..])
        .expect("opaque");
    assert_eq!(&v[..n], b"y");
    // The implied parent `d` took the lower dir's mode.
    assert_eq!(
        fs::metadata(upper.join("d")).expect("md").mode() & 0o7777,
        0o711
    );
    assert_eq!(fs::read(upper.join("d/link")).expect("read"), b"target");
    assert_eq!(fs::metadata(upper.join("d/link")).expect("md").nlink(), 2);
}

#[test]
fn diff_id_is_sha256_of_uncompressed_tar_whatever_the_compression() {
    let tar = RawTar::new().dir("d").file("d/f", &[5u8; 5000]).finish();
    let want = Digest::sha256_of(&tar);
    for c in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        let mut opts = crate::CompressOptions::new(c);
        opts.threads = 2;
        let mut w = crate::compress_writer(Vec::new(), &opts).expect("writer");
        w.write_all(&tar).expect("write");
        let blob = w.finish().expect("finish");
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = apply_layer(&blob[..], &delete_target(dir.path())).expect("apply");
        assert_eq!(stats.diff_id, want, "{c:?}");
        assert_eq!(stats.size, tar.len() as u64);
        assert_eq!(
            fs::read(dir.path().join("d/f")).expect("read"),
            vec![5u8; 5000]
        );
    }
}

#[test]
fn replaces_dir_with_file_and_keeps_dir_over_dir() {
    let s = sandbox();
    fs::write(s.root.join("a/b/x"), b"x").expect("write");
    s.apply(RawTar::new().dir("a").file("a/b", b"now a file").finish())
        .expect("apply");
    assert_eq!(fs::read(s.root.join("a/b")).expect("read"), b"now a file");
}
use crate::Compression;

#[test]
fn gnu_long_names_and_pax_records_are_honoured() {
    require_root("chown to arbitrary ids");
    let long = format!("{}/{}", "a".repeat(150), "b".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o4750);
    h.set_uid(1234);
    h.set_gid(4321);
    h.set_mtime(1_234_567_890);
    // `append_data` writes a GNU `././@LongLink` entry for the long name.
    b.append_data(&mut h, &long, &b"long"[..]).expect("append");
    let mut tar = b.into_inner().expect("tar");
    tar.truncate(tar.len() - 1024); // drop the end-of-archive blocks
                                    // A PAX header carrying an xattr and an overlay xattr that must be dropped.
    let mut records = Vec::new();
    for (k, v) in [
        ("SCHILY.xattr.user.k", "v"),
        ("SCHILY.xattr.trusted.overlay.opaque", "y"),
    ] {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 2;
        if (len.to_string() + &body).len() != len {
            len += 1;
        }
        records.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    let mut ph = tar::Header::new_ustar();
    ph.set_entry_type(tar::EntryType::XHeader);
    ph.set_path("PaxHeaders/d").expect("path");
    ph.set_size(records.len() as u64);
    ph.set_mode(0o644);
    ph.set_uid(0);
    ph.set_gid(0);
    ph.set_mtime(0);
    ph.set_cksum();
    tar.extend_from_slice(ph.as_bytes());
    tar.extend_from_slice(&records);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    let rest = RawTar::new().dir("d").finish();
    tar.extend_from_slice(&rest);

    let s = sandbox();
    s.apply(tar).expect("apply");
    let p = s.root.join(&long);
    let md = fs::symlink_metadata(&p).expect("long file");
    assert_eq!(fs::read(&p).expect("read"), b"long");
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 4321, 0o4750)
    );
    assert_eq!(md.mtime(), 1_234_567_890);
    let xattrs = list_xattrs(&s.root.join("d")).expect("xattrs");
    assert_eq!(xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
}

#[test]
fn dot_whiteouts_are_refused() {
    // `.wh..` would name the parent itself and `.wh...` its parent: a
    // whiteout may only hide one entry below its directory.
    for name in [".wh..", ".wh...", "a/.wh..", "a/b/.wh...", ".wh."] {
        let s = sandbox();
        let err = s
            .apply(RawTar::new().file(name, b"").finish())
            .expect_err(name);
        assert!(matches!(err, Error::UnsafePath { .. }), "{name}: {err}");
        assert!(s.root.join("a/b").is_dir(), "{name}: deleted the tree");
        s.outside_untouched();
    }
}

#[test]
fn whiteouts_below_symlinked_parents_stay_inside() {
    let s = sandbox();
    let abs = s.outside.display().to_string();
    // A link planted by an earlier layer, and one planted by this layer,
    // both naming the host dir; a relative one climbing out.
    std::os::unix::fs::symlink(&s.outside, s.root.join("old")).expect("ln");
    std::os::unix::fs::symlink("../../../../../../outside", s.root.join("a/up")).expect("ln");
    let tar = RawTar::new()
        .symlink("new", &abs)
        .file("new/.wh.secret", b"")
        .file("old/.wh.secret", b"")
        .file("a/up/.wh.secret", b"")
        .file("old/.wh..wh..opq", b"")
        .finish();
    // Refused or applied inside the root (the opaque dir below the
    // dangling `old` fails: the link is not replaced by a directory);
    // never outside.
    let _ = s.apply(tar);
    s.outside_untouched();
    assert!(s.root.join("a/b").is_dir());
}
