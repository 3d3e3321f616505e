//! `-o type=local` and `-o type=tar` write the image's final tree: layer
//! history (whiteouts, links replaced later, fifos) never acts on the
//! destination, its parent or its neighbours. Hostile tars at the unit
//! level are in `export/src/tree_tests.rs`; here the layers come from RUN.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// A context whose Dockerfile builds on the test registry's busybox.
fn context(body: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/library/busybox:latest\n{body}", registry()),
    )
    .expect("write Dockerfile");
    ctx
}

/// `out/dest` holding the user's `notes/keep.txt`, and `out/sibling` beside
/// it with a canary file.
fn destination() -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tmp");
    fs::create_dir_all(out.path().join("dest/notes")).expect("notes");
    fs::write(out.path().join("dest/notes/keep.txt"), b"mine").expect("keep");
    fs::create_dir_all(out.path().join("sibling")).expect("sibling");
    let canary = out.path().join("sibling/canary");
    fs::write(&canary, b"canary").expect("canary");
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o644)).expect("chmod");
    out
}

fn assert_neighbours_untouched(out: &Path) {
    let canary = out.join("sibling/canary");
    assert_eq!(
        fs::read(&canary).expect("canary"),
        b"canary",
        "sibling changed"
    );
    assert_eq!(
        fs::metadata(&canary).expect("canary").mode() & 0o7777,
        0o644
    );
    let sib: Vec<_> = fs::read_dir(out.join("sibling"))
        .expect("sibling")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(sib, vec!["canary"], "written into the sibling");
}

/// The image's history deletes and replaces things a replay would act on
/// in dest: `/notes` (which dest has too), a directory `/a` replaced by a
/// link to dest's sibling, a link `/d` to the sibling; plus a fifo and a
/// hard link.
fn hostile_history(sibling: &Path) -> String {
    let s = sibling.display();
    format!(
        "RUN mkdir -p /notes /a && echo image > /notes/img.txt && chmod 4755 /a && echo hi > /one\n\
         RUN rm -rf /notes /a && ln -s {s} /a && ln -s {s}/canary /d && mkfifo /fifo && ln /one /two\n"
    )
}

/// name -> (type, mode, link target) of a directory tree (not following).
fn tree_listing(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, String)>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let md = fs::symlink_metadata(&p).expect("stat");
            let ft = md.file_type();
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            let (t, link) = if ft.is_dir() {
                ('d', String::new())
            } else if ft.is_symlink() {
                let l = fs::read_link(&p).expect("link");
                ('l', l.to_string_lossy().into_owned())
            } else if ft.is_fifo() {
                ('p', String::new())
            } else if ft.is_char_device() {
                ('c', String::new())
            } else {
                ('f', String::new())
            };
            let mode = if t == 'l' { 0o777 } else { md.mode() & 0o7777 };
            out.insert(rel, (t, mode, link));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The same listing of a tar stream (hard links count as files).
fn tar_listing(tar: &[u8]) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(tar).entries().expect("entries") {
        let e = e.expect("entry");
        let h = e.header();
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let (t, link) = match h.entry_type() {
            tar::EntryType::Directory => ('d', String::new()),
            tar::EntryType::Symlink => (
                'l',
                e.link_name()
                    .expect("link")
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Fifo => ('p', String::new()),
            tar::EntryType::Char => ('c', String::new()),
            _ => ('f', String::new()),
        };
        let mode = h.mode().expect("mode") & 0o7777;
        out.insert(name.trim_end_matches('/').to_string(), (t, mode, link));
    }
    out
}

#[test]
fn local_export_writes_the_final_tree_and_keeps_dest_and_its_neighbours() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let out = destination();
    let ctx = context(&hostile_history(&out.path().join("sibling")));
    let dest = out.path().join("dest");
    rb.ok([
        "build",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        &ctx.path().to_string_lossy(),
    ]);

    // `RUN rm -rf /notes` removed the image's notes, not the user's.
    assert_eq!(
        fs::read(dest.join("notes/keep.txt")).expect("keep"),
        b"mine"
    );
    assert!(!dest.join("notes/img.txt").exists());
    // The links are written as links, and nothing went through them.
    let sibling = out.path().join("sibling");
    assert_eq!(fs::read_link(dest.join("a")).expect("a"), sibling);
    assert_eq!(
        fs::read_link(dest.join("d")).expect("d"),
        sibling.join("canary")
    );
    assert_neighbours_untouched(out.path());
    // Fifo and hard link of the image.
    let fifo = fs::symlink_metadata(dest.join("fifo")).expect("fifo");
    assert!(fifo.file_type().is_fifo(), "fifo is not a fifo");
    let ino = |n: &str| fs::metadata(dest.join(n)).expect(n).ino();
    assert_eq!(ino("one"), ino("two"), "hard link not kept");
    assert!(dest.join("bin/busybox").is_file());

    // A second export over the first replaces, and still keeps the user's.
    rb.ok([
        "build",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        &ctx.path().to_string_lossy(),
    ]);
    assert_eq!(
        fs::read(dest.join("notes/keep.txt")).expect("keep"),
        b"mine"
    );
    assert_neighbours_untouched(out.path());
}

#[test]
fn tar_export_streams_the_same_tree_as_local() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let out = destination();
    let ctx = context(&hostile_history(&out.path().join("sibling")));
    let ctx_s = ctx.path().to_string_lossy().into_owned();
    let fresh = out.path().join("fresh");
    rb.ok([
        "build",
        "-o",
        &format!("type=local,dest={}", fresh.display()),
        &ctx_s,
    ]);
    let tar = out.path().join("rootfs.tar");
    rb.ok([
        "build",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        &ctx_s,
    ]);

    let listed = tar_listing(&fs::read(&tar).expect("tar"));
    assert_eq!(
        listed,
        tree_listing(&fresh),
        "type=tar and type=local differ"
    );
    assert_eq!(listed["fifo"].0, 'p');
    assert!(!listed.contains_key("notes"));
    assert_neighbours_untouched(out.path());
    // The tree was computed in the state dir, not beside the tar.
    let mut beside: Vec<_> = fs::read_dir(out.path())
        .expect("out")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, vec!["dest", "fresh", "rootfs.tar", "sibling"]);
}

#[test]
fn a_file_named_like_a_dotdot_whiteout_never_deletes_dests_parent() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let out = destination();
    // A file the differ writes as an entry named `.wh...`: replayed as a
    // whiteout it would remove `dest/..`.
    let ctx = context("RUN touch '/.wh...' /marker\n");
    let ctx_s = ctx.path().to_string_lossy().into_owned();
    let dest = out.path().join("dest");
    let local = rb.run([
        "build",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        &ctx_s,
    ]);
    let tar = out.path().join("rootfs.tar");
    let tarred = rb.run([
        "build",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        &ctx_s,
    ]);

    assert_eq!(
        fs::read(dest.join("notes/keep.txt")).expect("keep"),
        b"mine"
    );
    assert_neighbours_untouched(out.path());
    // The applier refuses the entry: the export fails, and says why.
    for (what, o) in [("local", &local), ("tar", &tarred)] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "type={what} exported a .wh... entry");
        assert!(stderr.contains("whiteout"), "type={what}: {stderr}");
    }
    assert!(!tar.exists(), "a failed tar export left its output");
}
