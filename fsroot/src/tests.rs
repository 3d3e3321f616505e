//! Every attack on path resolution, against both resolvers.

use super::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

/// A root dir inside a temp dir, and an "outside" dir beside it that no
/// operation may touch.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    fs::create_dir(&root).expect("mkdir root");
    fs::create_dir(&outside).expect("mkdir outside");
    fs::write(outside.join("secret"), b"host").expect("write");
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    (t, root, outside)
}

fn name(s: &str) -> Name {
    Name::new(s).expect("name")
}

#[test]
fn symlinks_resolve_inside_the_root() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        fs::create_dir(root.join("etc")).expect("mkdir");
        fs::write(root.join("etc/passwd"), b"inside").expect("write");
        symlink(&outside, root.join("abs")).expect("ln");
        symlink("../../../../outside", root.join("rel")).expect("ln");
        symlink("/etc/passwd", root.join("pw")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        assert_eq!(root_h.read("/pw").expect("read"), b"inside", "{r:?}");
        assert_eq!(root_h.read("/../../etc/passwd").expect("read"), b"inside");
        // `abs` -> <host outside> is resolved inside the root: not found.
        let e = root_h
            .read("/abs/secret")
            .expect_err("must not reach the host");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{r:?}: {e}");
        let e = root_h
            .read("/rel/secret")
            .expect_err("must not reach the host");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{r:?}: {e}");
    }
}

#[test]
fn a_chain_of_41_links_fails_closed_instead_of_escaping() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        // l0 -> l1 -> ... -> l40 -> <outside>: the user-space resolver this
        // crate replaced gave up after 40 hops and returned `l40`, which the
        // kernel then followed to the host.
        for i in 0..41 {
            symlink(format!("/l{}", i + 1), root.join(format!("l{i}"))).expect("ln");
        }
        symlink(&outside, root.join("l41")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let e = root_h.open_dir("/l0").expect_err("too many links");
        assert_eq!(e.raw_os_error(), Some(libc_eloop()), "{r:?}: {e}");
        let e = root_h
            .parent_or_create("/l0/new", 0o755, None)
            .expect_err("refused");
        assert_eq!(e.raw_os_error(), Some(libc_eloop()), "{r:?}: {e}");
        assert!(!outside.join("new").exists());
    }
}

fn libc_eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

#[test]
fn mkdir_all_through_links_stays_inside() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        symlink(&outside, root.join("app")).expect("ln");
        symlink("/nowhere/deeper", root.join("dangling")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let d = root_h
            .create_dir_all("/app/sub", 0o750, Some((0, 0)))
            .expect("mkdir");
        assert_eq!(d.self_stat().expect("stat").st_mode & 0o7777, 0o750);
        assert!(root
            .join(outside.strip_prefix("/").expect("abs"))
            .join("sub")
            .is_dir());
        assert!(!outside.join("sub").exists(), "{r:?}: created on the host");
        root_h
            .create_dir_all("/dangling/x", 0o755, None)
            .expect("mkdir");
        assert!(root.join("nowhere/deeper/x").is_dir(), "{r:?}");
    }
}

#[test]
fn changes_through_a_dir_never_follow_the_last_link() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        symlink(outside.join("secret"), root.join("link")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let (dir, n) = root_h.parent("/link").expect("parent");
        dir.set_mode(&n, 0o4777).expect("chmod a link is a no-op");
        dir.set_times(&n, ts(1), ts(1)).expect("utimes");
        let md = fs::metadata(outside.join("secret")).expect("stat");
        assert_eq!(md.mode() & 0o7777, 0o600, "{r:?}: host file chmodded");
        assert_ne!(md.mtime(), 1, "{r:?}: host file touched");
        assert!(dir.open_file(&n).is_err(), "opened through a link");
        assert!(dir.create_file(&n, 0o644).is_err(), "wrote through a link");
        dir.remove_all(&n).expect("rm link");
        assert!(outside.join("secret").exists(), "{r:?}: host file removed");
    }
}

fn ts(s: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: 0,
    }
}

#[test]
fn remove_all_never_descends_a_link() {
    let (_t, root, outside) = setup();
    fs::create_dir(root.join("d")).expect("mkdir");
    symlink(&outside, root.join("d/out")).expect("ln");
    fs::write(root.join("d/f"), b"x").expect("write");
    let root_h = Root::open(&root).expect("root");
    root_h.dir().remove_all(&name("d")).expect("rm");
    assert!(!root.join("d").exists());
    assert!(outside.join("secret").exists());
}

#[test]
fn names_refuse_traversal() {
    for bad in ["", ".", "..", "a/b", "/x"] {
        assert!(Name::new(bad).is_err(), "{bad:?}");
    }
    let (_t, root, _) = setup();
    fs::create_dir(root.join("a")).expect("mkdir");
    let root_h = Root::open(&root).expect("root");
    assert!(root_h.parent("/").is_err());
    let (d, n) = root_h.parent("/a/../b/").expect("parent");
    assert_eq!(n, name("b"));
    assert_eq!(
        d.self_stat().expect("stat").st_ino,
        fs::metadata(&root).expect("md").ino()
    );
}

#[test]
fn only_regular_files_are_opened_for_reading() {
    let (_t, root, _) = setup();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let root_h = Root::open(&root).expect("root");
    // Would block forever if opened as a file.
    assert!(root_h.open_file("/fifo").is_err());
}

#[test]
fn created_files_get_exact_modes() {
    let (_t, root, _) = setup();
    let root_h = Root::open(&root).expect("root");
    let (d, n) = root_h
        .parent_or_create("/x/y/f", 0o755, None)
        .expect("parent");
    drop(d.create_file(&n, 0o4755).expect("create"));
    let md = fs::symlink_metadata(root.join("x/y/f")).expect("md");
    assert_eq!(md.mode() & 0o7777, 0o4755);
    assert!(d.create_file(&n, 0o644).is_err(), "create is exclusive");
    assert_eq!(d.entries().expect("ls"), vec![name("f")]);
}

#[test]
fn real_paths_are_resolved_inside_the_root() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        fs::create_dir_all(root.join("src/app")).expect("mkdir");
        symlink("/src", root.join("s")).expect("ln");
        symlink(&outside, root.join("out")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        assert_eq!(
            root_h.real_path("/s/app", true).expect("real"),
            Path::new("/src/app")
        );
        assert_eq!(root_h.real_path("/", true).expect("real"), Path::new("/"));
        let host = root_h.real_host_path("/s/app", true).expect("real");
        assert_eq!(host, fs::canonicalize(root.join("src/app")).expect("canon"));
        assert!(root_h.real_path("/out/secret", true).is_err(), "{r:?}");
    }
}

#[test]
fn parent_following_follows_a_dangling_last_link_inside_the_root() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        fs::create_dir(root.join("etc")).expect("mkdir");
        // A dangling absolute link to a host path, and a relative one.
        symlink(outside.join("new"), root.join("abs")).expect("ln");
        symlink("etc/rel-target", root.join("rel")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let e = root_h.parent_following("/abs").expect_err("no parent");
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{r:?}: {e}");
        let (d, n) = root_h
            .parent_following_or_create("/abs", 0o755, None)
            .expect("resolve");
        drop(d.create_file(&n, 0o644).expect("create"));
        assert!(!outside.join("new").exists(), "{r:?}: created on the host");
        let inside = root.join(outside.strip_prefix("/").expect("abs"));
        assert!(inside.join("new").is_file(), "{r:?}");
        let (d, n) = root_h.parent_following("/rel").expect("resolve");
        assert_eq!(n, name("rel-target"));
        drop(d.create_file(&n, 0o644).expect("create"));
        assert!(root.join("etc/rel-target").is_file(), "{r:?}");
        // A plain missing name is returned as it is.
        let (_, n) = root_h.parent_following("/etc/none").expect("resolve");
        assert_eq!(n, name("none"));
    }
}

#[test]
fn parent_following_fails_closed_on_long_chains() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        for i in 0..45 {
            symlink(format!("/l{}", i + 1), root.join(format!("l{i}"))).expect("ln");
        }
        symlink(outside.join("secret"), root.join("l45")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let e = root_h.parent_following("/l0").expect_err("too many links");
        assert_eq!(e.raw_os_error(), Some(libc_eloop()), "{r:?}: {e}");
    }
}

#[test]
fn nodes_read_what_they_opened() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        fs::create_dir(root.join("d")).expect("mkdir");
        fs::write(root.join("d/f"), b"inside").expect("write");
        symlink(outside.join("secret"), root.join("d/l")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let d = root_h.node("/d", true).expect("node");
        assert_eq!(d.kind(), FileType::Directory);
        let d = d.into_dir().expect("dir");
        let f = d.node(&name("f")).expect("node");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f.open_file().expect("open"), &mut s).expect("read");
        assert_eq!(s, "inside");
        let l = d.node(&name("l")).expect("node");
        assert_eq!(l.kind(), FileType::Symlink);
        assert_eq!(l.read_link().expect("readlink"), outside.join("secret"));
        assert!(l.open_file().is_err(), "{r:?}: read through a link");
        // Followed in-root, the absolute link to the host dangles.
        assert!(root_h.node("/d/l", true).is_err(), "{r:?}");
        assert!(f.into_dir().is_err());
    }
}

#[test]
fn create_dir_all_with_names_what_it_creates() {
    for r in BOTH {
        let (_t, root, outside) = setup();
        fs::create_dir(root.join("a")).expect("mkdir");
        symlink("/a/real", root.join("a/link")).expect("ln");
        let root_h = Root::open_with(&root, r).expect("root");
        let mut created = Vec::new();
        root_h
            .create_dir_all_with("/a/link/b", 0o755, None, &mut |d, n| {
                created.push((d.self_stat()?.st_ino, n.clone()));
                Ok(())
            })
            .expect("mkdir");
        let a_ino = fs::metadata(root.join("a")).expect("md").ino();
        let real_ino = fs::metadata(root.join("a/real")).expect("md").ino();
        assert_eq!(
            created,
            vec![(a_ino, name("real")), (real_ino, name("b"))],
            "{r:?}"
        );
        assert!(!outside.join("b").exists());
    }
}
