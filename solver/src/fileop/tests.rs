//! File actions: BuildKit's semantics, and every way a hostile tree could
//! make one reach the host (each of these failed, or wrote or read the
//! host, with the user-space resolver this module replaced).

use super::*;
use rbuild_graph::{Chmod, CopyAction, InputIndex, UserRef};
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// A source tree, a destination tree and a "host" dir beside them that
/// nothing may touch (it holds `secret`, mode 0600).
struct Trees {
    _t: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
    host: PathBuf,
}

fn trees() -> Trees {
    let t = tempfile::tempdir().expect("tmp");
    let (src, dest, host) = (
        t.path().join("src"),
        t.path().join("dest"),
        t.path().join("host"),
    );
    for d in [&src, &dest, &host] {
        fs::create_dir(d).expect("mkdir");
    }
    fs::write(host.join("secret"), b"host secret").expect("write");
    fs::set_permissions(host.join("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(src.join("app.py"), b"print('hi')\n").expect("write");
    Trees {
        _t: t,
        src,
        dest,
        host,
    }
}

impl Trees {
    /// The host dir is exactly as `trees()` left it.
    fn assert_host_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.host)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["secret"], "something was created on the host");
        let md = fs::symlink_metadata(self.host.join("secret")).expect("stat");
        assert_eq!(md.mode() & 0o7777, 0o600, "host file chmodded");
        assert_eq!(md.uid(), rustix::process::geteuid().as_raw(), "chowned");
        assert_eq!(
            fs::read(self.host.join("secret")).expect("read"),
            b"host secret"
        );
    }

    /// `<tree>/name -> l1 -> … -> l<n> -> target`: `n + 1` links.
    fn chain(tree: &Path, name: &str, n: usize, target: &Path) {
        symlink("/l1", tree.join(name)).expect("ln");
        for i in 1..n {
            symlink(format!("/l{}", i + 1), tree.join(format!("l{i}"))).expect("ln");
        }
        symlink(target, tree.join(format!("l{n}"))).expect("ln");
    }
}

fn copy_action(src: &str, dest: &str) -> CopyAction {
    CopyAction {
        allow_empty_wildcard: false,
        allow_wildcard: true,
        attempt_unpack: false,
        create_dest_path: true,
        dest: dest.into(),
        dir_copy_contents: true,
        exclude_patterns: Vec::new(),
        follow_symlinks: true,
        include_patterns: Vec::new(),
        mode: None,
        owner: None,
        parents: false,
        source: InputIndex(0),
        src: src.into(),
    }
}

fn workdir(path: &str) -> MkdirAction {
    MkdirAction {
        make_parents: true,
        mode: 0o755,
        owner: None,
        path: path.into(),
    }
}

fn too_many_links(r: Result<()>) {
    match r {
        Err(FileOpError::TooManyLinks { .. }) => {}
        other => panic!("expected a too-many-links error, got {other:?}"),
    }
}

#[test]
fn workdir_and_copy_through_a_41_link_chain_fail_closed() {
    let t = trees();
    // /app -> /l1 -> … -> /l41 -> <host dir>: 42 links, more than the 40
    // the old resolver followed before handing the rest to the kernel.
    Trees::chain(&t.dest, "app", 41, &t.host);
    too_many_links(mkdir(&t.dest, &workdir("/app")));
    let copy_app = copy_action("app.py", "/app/");
    too_many_links(copy(&t.src, &t.dest, &copy_app, OwnerMode::Keep, None));
    // The file form of the destination, and heredoc files, too.
    let to_file = copy_action("app.py", "/app/app.py");
    too_many_links(copy(&t.src, &t.dest, &to_file, OwnerMode::Keep, None));
    let heredoc = MkfileAction {
        data: "x".into(),
        mode: 0o644,
        owner: None,
        path: "/app/run.sh".into(),
    };
    too_many_links(mkfile(&t.dest, &heredoc));
    t.assert_host_untouched();
}

#[test]
fn a_destination_through_an_absolute_link_to_a_host_dir_lands_inside() {
    let t = trees();
    symlink(&t.host, t.dest.join("app")).expect("ln");
    mkdir(&t.dest, &workdir("/app")).expect("workdir");
    copy(
        &t.src,
        &t.dest,
        &copy_action("app.py", "/app/"),
        OwnerMode::Keep,
        None,
    )
    .expect("copy");
    // As BuildKit: the link resolves inside the rootfs.
    let inside = t.dest.join(t.host.strip_prefix("/").expect("abs"));
    assert_eq!(
        fs::read(inside.join("app.py")).expect("copied inside"),
        b"print('hi')\n"
    );
    // A file destination that is a dangling link to a host path, too.
    symlink(t.host.join("planted"), t.dest.join("out")).expect("ln");
    copy(
        &t.src,
        &t.dest,
        &copy_action("app.py", "/out"),
        OwnerMode::Keep,
        None,
    )
    .expect("copy");
    assert!(inside.join("planted").is_file());
    t.assert_host_untouched();
}

#[test]
fn chmod_and_chown_never_reach_a_link_target() {
    let t = trees();
    // The source has a link to the host file; the destination already has
    // one at the name the copy writes, and one where a dir gets created.
    symlink(t.host.join("secret"), t.src.join("link")).expect("ln");
    fs::create_dir(t.dest.join("d")).expect("mkdir");
    symlink(t.host.join("secret"), t.dest.join("d/app.py")).expect("ln");
    let mut a = copy_action("link", "/d/");
    a.follow_symlinks = false;
    a.mode = Some(Chmod::Octal(0o4777));
    a.owner = Some(Chown {
        user: UserRef::Id(1234),
        group: Some(UserRef::Id(1234)),
    });
    let owner = OwnerMode::Set(Owner {
        uid: 1234,
        gid: 1234,
    });
    copy(&t.src, &t.dest, &a, owner, None).expect("copy link");
    let copied = fs::symlink_metadata(t.dest.join("d/link")).expect("stat");
    assert!(copied.file_type().is_symlink(), "copied as a link");
    assert_eq!(copied.uid(), 1234, "the link itself is chowned");
    let mut f = copy_action("app.py", "/d/");
    f.mode = Some(Chmod::Octal(0o4777));
    copy(&t.src, &t.dest, &f, owner, None).expect("copy over a link");
    let replaced = fs::symlink_metadata(t.dest.join("d/app.py")).expect("stat");
    assert!(
        replaced.is_file(),
        "the link is replaced, not written through"
    );
    assert_eq!(replaced.mode() & 0o7777, 0o4777);
    // rm of a link removes the link.
    let r = RmAction {
        allow_not_found: false,
        allow_wildcard: false,
        path: "/d/link".into(),
    };
    rm(&t.dest, &r).expect("rm");
    assert!(!t.dest.join("d/link").exists());
    t.assert_host_untouched();
}

#[test]
fn copy_from_a_stage_never_reads_through_a_link_chain() {
    let t = trees();
    // The source stage: /chain/x -> … -> <host secret>, 42 links; and an
    // absolute link to the host dir.
    fs::create_dir(t.src.join("chain")).expect("mkdir");
    Trees::chain(&t.src, "chain/x", 41, &t.host.join("secret"));
    too_many_links(copy(
        &t.src,
        &t.dest,
        &copy_action("/chain/x", "/got"),
        OwnerMode::Keep,
        None,
    ));
    assert!(!t.dest.join("got").exists());
    symlink(&t.host, t.src.join("hostdir")).expect("ln");
    let e = copy(
        &t.src,
        &t.dest,
        &copy_action("/hostdir/secret", "/got"),
        OwnerMode::Keep,
        None,
    )
    .expect_err("the host dir is not in the stage");
    assert!(matches!(e, FileOpError::NotFound(_)), "{e}");
    // Copied without following, the chain is a link in the image.
    let mut as_link = copy_action("/chain/x", "/got");
    as_link.follow_symlinks = false;
    copy(&t.src, &t.dest, &as_link, OwnerMode::Keep, None).expect("copy link");
    assert!(fs::symlink_metadata(t.dest.join("got"))
        .expect("stat")
        .file_type()
        .is_symlink());
    t.assert_host_untouched();
}

#[test]
fn chown_names_are_read_inside_the_destination() {
    let t = trees();
    // /etc -> <host dir with a passwd naming "evil">: resolved inside.
    let host_etc = t.host.join("etc");
    fs::create_dir(&host_etc).expect("mkdir");
    fs::write(host_etc.join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").expect("w");
    symlink(&host_etc, t.dest.join("etc")).expect("ln");
    let chown = Chown {
        user: UserRef::Name("evil".into()),
        group: None,
    };
    assert!(matches!(
        resolve_owner(&t.dest, &chown),
        Err(FileOpError::UnknownUser { .. })
    ));
    fs::remove_file(t.dest.join("etc")).expect("rm");
    fs::create_dir(t.dest.join("etc")).expect("mkdir");
    fs::write(t.dest.join("etc/passwd"), "app:x:1000:1001::/:/bin/sh\n").expect("w");
    let chown = Chown {
        user: UserRef::Name("app".into()),
        group: None,
    };
    assert_eq!(
        resolve_owner(&t.dest, &chown).expect("owner"),
        Owner {
            uid: 1000,
            gid: 1001
        }
    );
}

#[test]
fn copy_keeps_buildkit_semantics() {
    let t = trees();
    fs::create_dir_all(t.src.join("dir/sub")).expect("mkdir");
    fs::write(t.src.join("dir/sub/f"), b"f").expect("write");
    fs::set_permissions(t.src.join("dir/sub/f"), fs::Permissions::from_mode(0o751)).expect("chmod");
    symlink("sub/f", t.src.join("dir/rel")).expect("ln");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.src.join("dir/fifo"),
        FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    let f = fs::File::options()
        .write(true)
        .open(t.src.join("dir/sub/f"))
        .expect("open");
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .expect("mtime");
    // COPY dir /out/ copies the contents, creating /out.
    copy(
        &t.src,
        &t.dest,
        &copy_action("dir", "/out/"),
        OwnerMode::Keep,
        None,
    )
    .expect("copy");
    let f = fs::symlink_metadata(t.dest.join("out/sub/f")).expect("stat");
    assert_eq!(f.mode() & 0o7777, 0o751);
    assert_eq!(f.mtime(), 1_000_000);
    assert_eq!(
        fs::read_link(t.dest.join("out/rel")).expect("link"),
        Path::new("sub/f")
    );
    assert!(fs::symlink_metadata(t.dest.join("out/fifo"))
        .expect("fifo")
        .file_type()
        .is_fifo());
    // Wildcards, a file dest, and --chmod.
    fs::write(t.src.join("b.txt"), b"b").expect("write");
    fs::write(t.src.join("a.txt"), b"a").expect("write");
    let mut w = copy_action("*.txt", "/txt/");
    w.mode = Some(Chmod::Symbolic("u=rw,go=r".into()));
    copy(&t.src, &t.dest, &w, OwnerMode::Keep, None).expect("copy");
    assert_eq!(fs::read(t.dest.join("txt/a.txt")).expect("a"), b"a");
    let b = fs::metadata(t.dest.join("txt/b.txt")).expect("b");
    assert_eq!(b.mode() & 0o777, 0o644);
    copy(
        &t.src,
        &t.dest,
        &copy_action("a.txt", "/renamed"),
        OwnerMode::Keep,
        None,
    )
    .expect("copy");
    assert_eq!(fs::read(t.dest.join("renamed")).expect("a"), b"a");
    let missing = copy(
        &t.src,
        &t.dest,
        &copy_action("nope", "/x"),
        OwnerMode::Keep,
        None,
    );
    assert!(matches!(missing, Err(FileOpError::NotFound(_))));
    // mkdir without parents needs the parent.
    let mut m = workdir("/no/such");
    m.make_parents = false;
    assert!(matches!(mkdir(&t.dest, &m), Err(FileOpError::NotFound(_))));
    // rm with a wildcard.
    let r = RmAction {
        allow_not_found: false,
        allow_wildcard: true,
        path: "/txt/*.txt".into(),
    };
    rm(&t.dest, &r).expect("rm");
    assert_eq!(fs::read_dir(t.dest.join("txt")).expect("ls").count(), 0);
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
