//! Working directory, stubs and mount targets: BuildKit's behaviour, and
//! never a host path through a link the image planted.

use super::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Timestamps, CWD};

/// A rootfs and a "host" dir beside it holding `secret`.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().expect("tmp");
    let (root, host) = (t.path().join("root"), t.path().join("host"));
    fs::create_dir(&root).expect("mkdir");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("secret"), b"s").expect("write");
    (t, root, host)
}

fn host_untouched(host: &Path) {
    let names: Vec<_> = fs::read_dir(host)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec!["secret"], "something was created on the host");
}

fn inside(root: &Path, host: &Path) -> PathBuf {
    root.join(host.strip_prefix("/").expect("abs"))
}

#[test]
fn workdir_is_0755_and_resolves_inside() -> Result<()> {
    let (_t, root, host) = setup();
    symlink(&host, root.join("app")).map_err(|e| Error::io("ln", e))?;
    let r = open_root(&root)?;
    ensure_workdir(&r, "/app/sub")?;
    let md = fs::metadata(inside(&root, &host).join("sub")).map_err(|e| Error::io("stat", e))?;
    assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    host_untouched(&host);
    // A chain longer than the kernel follows fails closed.
    for i in 0..41 {
        symlink(format!("/c{}", i + 1), root.join(format!("c{i}")))
            .map_err(|e| Error::io("ln", e))?;
    }
    symlink(&host, root.join("c41")).map_err(|e| Error::io("ln", e))?;
    assert!(ensure_workdir(&r, "/c0/x").is_err());
    host_untouched(&host);
    Ok(())
}

#[test]
fn stubs_are_removed_and_times_restored() -> Result<()> {
    let (_t, root, _) = setup();
    let root = root.as_path();
    fs::create_dir(root.join("etc")).map_err(|e| Error::io("mkdir", e))?;
    let old = Timestamps {
        last_access: Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: 2000,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(CWD, root.join("etc"), &old, AtFlags::empty())
        .map_err(|e| Error::io("utimensat", e.into()))?;
    let r = open_root(root)?;
    let mut stubs = Stubs::default();
    stubs.ensure(&r, "/etc/hosts", StubKind::File)?;
    stubs.ensure(&r, "/proc", StubKind::Dir)?;
    stubs.ensure(&r, "/x/y/z", StubKind::Dir)?;
    assert!(root.join("etc/hosts").is_file());
    assert!(root.join("x/y/z").is_dir());
    stubs.cleanup()?;
    assert!(!root.join("etc/hosts").exists());
    assert!(!root.join("x").exists());
    assert!(!root.join("proc").exists());
    let st = fs::metadata(root.join("etc")).map_err(|e| Error::io("stat", e))?;
    assert_eq!(st.mtime(), 2000);
    Ok(())
}

#[test]
fn non_empty_stub_is_kept() -> Result<()> {
    let (_t, root, _) = setup();
    let r = open_root(&root)?;
    let mut stubs = Stubs::default();
    stubs.ensure(&r, "/data", StubKind::Dir)?;
    fs::write(root.join("data/f"), b"x").map_err(|e| Error::io("write", e))?;
    stubs.cleanup()?;
    assert!(root.join("data/f").exists());
    Ok(())
}

#[test]
fn stubs_through_links_to_the_host_stay_inside() -> Result<()> {
    let (_t, root, host) = setup();
    // /etc -> <host dir>; /run/x -> <host dir>/planted (dangling).
    symlink(&host, root.join("etc")).map_err(|e| Error::io("ln", e))?;
    fs::create_dir(root.join("run")).map_err(|e| Error::io("mkdir", e))?;
    symlink(host.join("planted"), root.join("run/x")).map_err(|e| Error::io("ln", e))?;
    let r = open_root(&root)?;
    let mut stubs = Stubs::default();
    stubs.ensure(&r, "/etc/hosts", StubKind::File)?;
    stubs.ensure(&r, "/run/x", StubKind::Dir)?;
    host_untouched(&host);
    assert!(inside(&root, &host).join("hosts").is_file());
    assert!(inside(&root, &host).join("planted").is_dir());
    // The runtime is handed the resolved paths, never the links.
    let mut mounts = vec![
        crate::spec::bind_mount(Path::new("/dev/null"), "/etc/hosts", true)?,
        crate::spec::tmpfs_mount("/run/x", None)?,
    ];
    resolve_destinations(&r, &mut mounts)?;
    assert_eq!(mounts[0].destination(), &host.join("hosts"));
    assert_eq!(mounts[1].destination(), &host.join("planted"));
    stubs.cleanup()?;
    host_untouched(&host);
    assert!(!inside(&root, &host).join("hosts").exists());
    Ok(())
}

#[test]
fn nested_targets_resolve_inside_the_parent_bind_source() -> Result<()> {
    let (t, root, host) = setup();
    // A stage mounted at /m whose /x links to the host dir.
    let stage = t.path().join("stage");
    fs::create_dir(&stage).map_err(|e| Error::io("mkdir", e))?;
    symlink(&host, stage.join("x")).map_err(|e| Error::io("ln", e))?;
    fs::create_dir_all(stage.join(host.strip_prefix("/").expect("abs")))
        .map_err(|e| Error::io("mkdir", e))?;
    fs::create_dir(root.join("m")).map_err(|e| Error::io("mkdir", e))?;
    let r = open_root(&root)?;
    let mut mounts = vec![
        crate::spec::bind_mount(&stage, "/m", false)?,
        crate::spec::tmpfs_mount("/m/x", None)?,
        crate::spec::tmpfs_mount("/m/x/new/deeper", None)?,
    ];
    resolve_destinations(&r, &mut mounts)?;
    assert_eq!(mounts[0].destination(), Path::new("/m"));
    // Inside the stage, /x is <stage>/<host path>: the tmpfs goes there.
    assert_eq!(
        mounts[1].destination(),
        &Path::new("/m").join(host.strip_prefix("/").expect("abs"))
    );
    assert!(mounts[2].destination().ends_with("new/deeper"));
    // A dangling link as a nested target is refused.
    symlink("/nowhere", stage.join("dangling")).map_err(|e| Error::io("ln", e))?;
    let mut bad = vec![
        crate::spec::bind_mount(&stage, "/m", false)?,
        crate::spec::tmpfs_mount("/m/dangling", None)?,
    ];
    assert!(resolve_destinations(&r, &mut bad).is_err());
    Ok(())
}
