//! Rootfs outputs (`type=local`, `type=tar`) and the final tree they write.

mod common;

use common::*;
use rbuild_export::{
    exporter_for, parse_output_spec, Destination, Error, ExportContext, Exporter, FinalTree,
    LocalExporter, TarExporter,
};
use rbuild_graph::Digest;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

fn cx(f: &Fixture) -> ExportContext<'_> {
    ExportContext {
        store: &f.store,
        image: &f.image,
        source_date_epoch: Some(EPOCH),
        scratch_dir: None,
    }
}

#[test]
fn local_output_is_the_final_tree() {
    let f = fixture(true);
    let dest = f.dir.path().join("rootfs");
    let spec = parse_output_spec(dest.to_str().expect("utf8")).expect("spec");
    exporter_for(&spec)
        .expect("exporter")
        .export(&cx(&f))
        .expect("export");

    let busybox = std::fs::read("/bin/busybox").expect("busybox");
    assert_eq!(
        std::fs::read(dest.join("bin/busybox")).expect("bb"),
        busybox
    );
    assert_eq!(mode(&dest.join("bin/busybox")), 0o755);
    assert_eq!(mode(&dest.join("tmp")), 0o1777);
    assert_eq!(mode(&dest.join("root")), 0o700);
    assert_eq!(mode(&dest.join("data/c")), 0o600);
    let secret = std::fs::metadata(dest.join("etc/secret")).expect("secret");
    assert_eq!((secret.mode() & 0o7777, secret.gid()), (0o640, 42));
    assert_eq!(secret.mtime(), 1_600_000_000);
    let bb = std::fs::metadata(dest.join("bin/busybox")).expect("bb");
    let hl = std::fs::metadata(dest.join("bin/busybox-link")).expect("link");
    assert_eq!(bb.ino(), hl.ino(), "hard link not preserved");
    assert_eq!(
        std::fs::read_link(dest.join("bin/cat")).expect("cat"),
        std::path::Path::new("/bin/busybox")
    );
    assert!(!dest.join("etc/old").exists());
    let data: Vec<String> = std::fs::read_dir(dest.join("data"))
        .expect("data")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(data, vec!["c"], "opaque directory kept lower entries");
    assert!(!dest.join("data/.wh..wh..opq").exists());
}

/// (type, mode, uid, gid, size, link target) of a tar entry.
type Row = (char, u32, u64, u64, u64, String);

/// Entry names in archive order, and name -> [`Row`].
fn listing(tar: &[u8]) -> (Vec<String>, BTreeMap<String, Row>) {
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().expect("entries") {
        let e = e.expect("entry");
        let h = e.header();
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let link = e
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Regular => 'f',
            other => panic!("unexpected {other:?}"),
        };
        assert!(
            h.mtime().expect("mtime") <= EPOCH as u64,
            "mtime not clamped"
        );
        order.push(name.clone());
        map.insert(
            name,
            (
                t,
                h.mode().expect("mode") & 0o7777,
                h.uid().expect("uid"),
                h.gid().expect("gid"),
                h.size().expect("size"),
                link,
            ),
        );
    }
    (order, map)
}

#[test]
fn tar_output_lists_the_final_tree_deterministically() {
    let f = fixture(true);
    let out = f.dir.path().join("rootfs.tar");
    let spec = format!("type=tar,dest={}", out.display());
    exporter_for(&parse_output_spec(&spec).expect("spec"))
        .expect("exporter")
        .export(&cx(&f))
        .expect("export");
    let first = std::fs::read(&out).expect("read");

    let mut second = Vec::new();
    TarExporter {
        dest: Destination::Stdout,
    }
    .write_to(&cx(&f), &mut second)
    .expect("again");
    assert!(first == second, "rootfs tars differ between runs");

    let (order, map) = listing(&first);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "entries not sorted");
    let names: Vec<&str> = order.iter().map(|s| s.trim_end_matches('/')).collect();
    assert_eq!(
        names,
        vec![
            "app",
            "app/hello.txt",
            "bin",
            "bin/busybox",
            "bin/busybox-link",
            "bin/cat",
            "bin/echo",
            "bin/sh",
            "data",
            "data/c",
            "etc",
            "etc/passwd",
            "etc/secret",
            "root",
            "tmp"
        ]
    );
    let get = |n: &str| {
        map.get(n)
            .or_else(|| map.get(&format!("{n}/")))
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    assert_eq!(get("etc/secret"), ('f', 0o640, 0, 42, 7, String::new()));
    assert_eq!(get("tmp").1, 0o1777);
    assert_eq!(get("bin/sh"), ('l', 0o777, 0, 0, 0, "busybox".into()));
    assert_eq!(get("bin/busybox-link").0, 'h');
    assert_eq!(get("bin/busybox-link").5, "bin/busybox");
    let mut a = tar::Archive::new(&first[..]);
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("p").to_str() == Some("app/hello.txt") {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            assert_eq!(s, "hello from rbuild\n");
        }
    }
}

#[test]
fn final_tree_rejects_dotdot_and_keeps_symlinks_inside_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let d = Digest::sha256_of(b"layer");
    let mut tree = FinalTree::new_in(&dir.path().join("scratch")).expect("tree");
    let root = tree.path().to_path_buf();

    // A symlink to an absolute host-looking path, then a file through it.
    let evil = outside.to_str().expect("utf8").to_string();
    let layer = layer_tar(&[
        E::Dir(evil.trim_start_matches('/'), 0o755),
        E::Symlink("escape", &evil),
        E::File("escape/pwned", 0o644, b"x"),
        E::Dir("etc", 0o755),
        E::Symlink("up", "../../.."),
        E::File("up/etc/also", 0o644, b"y"),
    ]);
    tree.apply(&layer[..], &d).expect("apply");
    assert!(!outside.join("pwned").exists(), "escaped the root");
    let inside = root.join(evil.trim_start_matches('/')).join("pwned");
    assert!(inside.is_file(), "{} missing", inside.display());
    assert!(root.join("etc/also").is_file());

    // `..` in a name is refused.
    let mut h = tar::Header::new_gnu();
    let name = b"a/../../evil";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"z"[..]).expect("append");
    let bad = b.into_inner().expect("tar");
    let err = tree.apply(&bad[..], &d).expect_err("dotdot");
    assert!(matches!(err, Error::Layer { .. }), "{err}");
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn final_tree_replaces_files_and_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Digest::sha256_of(b"layer");
    let mut tree = FinalTree::new_in(dir.path()).expect("tree");
    let l1 = layer_tar(&[
        E::Dir("x", 0o755),
        E::File("x/inner", 0o644, b"1"),
        E::File("y", 0o644, b"file"),
    ]);
    let l2 = layer_tar(&[E::File("x", 0o600, b"now a file"), E::Dir("y", 0o750)]);
    tree.apply(&l1[..], &d).expect("l1");
    tree.apply(&l2[..], &d).expect("l2");
    let out = dir.path().join("out");
    tree.write_local(&out).expect("write");
    assert_eq!(std::fs::read(out.join("x")).expect("x"), b"now a file");
    assert_eq!(mode(&out.join("x")), 0o600);
    assert!(out.join("y").is_dir());
    assert_eq!(mode(&out.join("y")), 0o750);
}

#[test]
fn local_exporter_verifies_diff_ids() {
    let mut f = fixture(true);
    // Claim a wrong diff_id: the applier must notice while streaming.
    let mut cfg: serde_json::Value = serde_json::from_slice(&f.image.config_json).expect("json");
    cfg["rootfs"]["diff_ids"][0] = serde_json::json!(Digest::sha256_of(b"nope").to_string());
    f.image.config_json = serde_json::to_vec(&cfg).expect("json");
    let err = LocalExporter {
        dest: f.dir.path().join("out"),
    }
    .export(&cx(&f))
    .expect_err("bad diff_id");
    assert!(err.to_string().contains("diff_id"), "{err}");
}
