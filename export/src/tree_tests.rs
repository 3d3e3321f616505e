//! Hostile layers through the rootfs exporters (`type=local`, `type=tar`):
//! each test fails if a layer could again act on the destination's parent,
//! a host path behind a symlink, or the user's files in `dest`.

use crate::{
    assemble_image, media_types, AssembleOptions, Destination, Error, ExportContext, Exporter,
    FinalTree, Layer, LocalExporter, TarExporter,
};
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_graph::{Digest, ImageConfig};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a raw test entry is.
enum K<'a> {
    File(&'a [u8]),
    Dir,
    Sym(&'a [u8]),
    Hard(&'a [u8]),
    /// A fifo whose device fields are filled with this byte (NUL as GNU tar
    /// leaves them, `b'0'` as Python's tarfile writes them, spaces).
    Fifo(u8),
    Char(u32, u32),
}

/// An uncompressed layer of raw entries: names and link targets are copied
/// into the header as they are, `..` and absolute paths included.
fn layer(entries: &[(&str, u32, K<'_>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, mode, kind) in entries {
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        let mut data: &[u8] = &[];
        match kind {
            K::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                data = d;
            }
            K::Dir => h.set_entry_type(tar::EntryType::Directory),
            K::Sym(t) | K::Hard(t) => {
                h.set_entry_type(if matches!(kind, K::Sym(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
            }
            K::Fifo(fill) => {
                h.set_entry_type(tar::EntryType::Fifo);
                let gnu = h.as_gnu_mut().expect("gnu header");
                gnu.dev_major = [*fill; 8];
                gnu.dev_minor = [*fill; 8];
                if *fill == b'0' {
                    gnu.dev_major[7] = 0;
                    gnu.dev_minor[7] = 0;
                }
            }
            K::Char(ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(*ma).expect("major");
                h.set_device_minor(*mi).expect("minor");
            }
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// A scratch area: the store, the state dir's tmp, and `out/` holding the
/// destination, a sibling of it, and a file only the host owns.
struct Env {
    dir: tempfile::TempDir,
    store: ContentStore,
    scratch: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path().join("state/store")).expect("store");
        for d in ["out/sibling", "state/tmp/other-build", "host/dir"] {
            fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        fs::write(dir.path().join("out/sibling/keep"), b"sibling").expect("w");
        fs::write(dir.path().join("state/tmp/other-build/keep"), b"o").expect("w");
        let host_file = dir.path().join("host/file");
        fs::write(&host_file, b"host").expect("w");
        fs::set_permissions(&host_file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let host_dir = dir.path().join("host/dir");
        fs::set_permissions(&host_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let scratch = dir.path().join("state/tmp");
        Self {
            dir,
            store,
            scratch,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The absolute host path of `rel`, as a symlink or entry target.
    fn abs(&self, rel: &str) -> String {
        self.p(rel).to_str().expect("utf8").to_string()
    }

    fn dest(&self) -> PathBuf {
        self.p("out/dest")
    }

    fn local(&self, layers: &[Vec<u8>]) -> crate::Result<()> {
        let image = self.image(layers);
        LocalExporter { dest: self.dest() }.export(&self.cx(&image))
    }

    fn tar(&self, layers: &[Vec<u8>]) -> crate::Result<Vec<u8>> {
        let image = self.image(layers);
        let out = self.p("out/rootfs.tar");
        TarExporter {
            dest: Destination::Path(out.clone()),
        }
        .export(&self.cx(&image))?;
        Ok(fs::read(out).expect("read tar"))
    }

    fn cx<'a>(&'a self, image: &'a crate::AssembledImage) -> ExportContext<'a> {
        ExportContext {
            store: &self.store,
            image,
            source_date_epoch: None,
            scratch_dir: Some(&self.scratch),
        }
    }

    fn image(&self, layers: &[Vec<u8>]) -> crate::AssembledImage {
        let layers: Vec<Layer> = layers
            .iter()
            .map(|t| Layer {
                diff_id: Digest::sha256_of(t),
                descriptor: Descriptor::new(
                    media_types::OCI_LAYER,
                    self.store.put(t).expect("put"),
                    t.len() as u64,
                ),
            })
            .collect();
        assemble_image(
            &self.store,
            &ImageConfig::default(),
            &layers,
            &AssembleOptions::default(),
        )
        .expect("assemble")
    }

    /// Everything outside `out/dest` and the store is as [`Env::new`] left
    /// it: the sibling, the other build's scratch, the host file and dir.
    fn assert_outside_untouched(&self) {
        assert_eq!(
            fs::read(self.p("out/sibling/keep")).expect("sib"),
            b"sibling"
        );
        assert_eq!(
            fs::read(self.p("state/tmp/other-build/keep")).expect("other"),
            b"o"
        );
        assert_eq!(fs::read(self.p("host/file")).expect("host"), b"host");
        assert_eq!(mode(&self.p("host/file")), 0o644, "host file chmodded");
        assert_eq!(mode(&self.p("host/dir")), 0o755, "host dir chmodded");
        assert_eq!(
            names(&self.p("host/dir")),
            Vec::<String>::new(),
            "host dir written"
        );
        let mut out = names(&self.p("out"));
        out.retain(|n| n != "dest" && n != "rootfs.tar");
        assert_eq!(out, vec!["sibling"], "stray files beside dest");
        assert_eq!(
            names(&self.p("state/tmp")),
            vec!["other-build"],
            "scratch left"
        );
        assert_eq!(names(self.dir.path()), vec!["host", "out", "state"]);
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").mode() & 0o7777
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .expect("read_dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// name -> (type, mode, link target or device) of a tar stream.
fn listing(tar: &[u8]) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(tar).entries().expect("entries") {
        let e = e.expect("entry");
        let h = e.header();
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let t = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Fifo => 'p',
            tar::EntryType::Char => 'c',
            other => panic!("unexpected {other:?}"),
        };
        let extra = match t {
            'l' | 'h' => e
                .link_name()
                .expect("link")
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default(),
            'c' => format!(
                "{}:{}",
                h.device_major().expect("maj").unwrap_or(0),
                h.device_minor().expect("min").unwrap_or(0)
            ),
            _ => String::new(),
        };
        let mode = h.mode().expect("mode") & 0o7777;
        out.insert(name.trim_end_matches('/').to_string(), (t, mode, extra));
    }
    out
}

fn is_layer_error(r: &crate::Result<impl Sized>) -> bool {
    matches!(r, Err(Error::Layer { .. }))
}

#[test]
fn whiteout_of_dotdot_at_the_root_deletes_nothing() {
    for evil in [".wh...", ".wh..", "sub/.wh...", "./.wh..."] {
        let env = Env::new();
        let l1 = layer(&[("f", 0o644, K::File(b"1")), ("sub", 0o755, K::Dir)]);
        let l2 = layer(&[(evil, 0o644, K::File(b""))]);
        let layers = [l1, l2];
        assert!(is_layer_error(&env.local(&layers)), "{evil}: local");
        assert!(is_layer_error(&env.tar(&layers)), "{evil}: tar");
        env.assert_outside_untouched();
    }
}

#[test]
fn dotdot_and_absolute_entries_stay_in_dest() {
    let env = Env::new();
    for evil in ["../escaped", "a/../../escaped", "../../escaped"] {
        let l = layer(&[(evil, 0o644, K::File(b"x"))]);
        assert!(
            is_layer_error(&env.local(std::slice::from_ref(&l))),
            "{evil}"
        );
        assert!(is_layer_error(&env.tar(&[l])), "{evil}");
    }
    assert!(!env.p("out/escaped").exists() && !env.p("escaped").exists());

    // An absolute name is a path inside the image.
    let abs = format!("{}/x", env.abs("host/dir"));
    let l = layer(&[(abs.as_str(), 0o644, K::File(b"abs"))]);
    env.local(std::slice::from_ref(&l)).expect("absolute name");
    let inside = env.dest().join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).expect("inside"), b"abs");
    let listed = listing(&env.tar(&[l]).expect("tar"));
    assert!(
        listed.contains_key(abs.trim_start_matches('/')),
        "{listed:?}"
    );
    env.assert_outside_untouched();
}

#[test]
fn directory_replaced_by_symlink_never_chmods_the_host() {
    let env = Env::new();
    let file = env.abs("host/file");
    let dir = env.abs("host/dir");
    let cases: Vec<Vec<Vec<u8>>> = vec![
        // One layer: a set-id directory, then a link to a host file there.
        vec![layer(&[
            ("a", 0o4755, K::Dir),
            ("a", 0o777, K::Sym(file.as_bytes())),
        ])],
        // A directory, then later a link to a host dir and a set-id file in it.
        vec![
            layer(&[("a", 0o755, K::Dir)]),
            layer(&[
                ("a", 0o777, K::Sym(dir.as_bytes())),
                ("a/f", 0o4755, K::File(b"suid")),
            ]),
        ],
        // The same in one layer.
        vec![layer(&[
            ("a", 0o4755, K::Dir),
            ("a", 0o777, K::Sym(dir.as_bytes())),
            ("a/f", 0o4755, K::File(b"suid")),
        ])],
    ];
    for layers in &cases {
        let _ = fs::remove_dir_all(env.dest());
        // Today the applier refuses these (fail closed); either way the
        // host is untouched.
        if env.local(layers).is_ok() {
            let a = env.dest().join("a");
            let md = fs::symlink_metadata(&a).expect("a");
            assert!(md.file_type().is_symlink(), "a is not the image's link");
        }
        let _ = env.tar(layers);
        env.assert_outside_untouched();
    }
}

#[test]
fn symlinks_in_the_image_are_never_followed_out_of_dest() {
    let env = Env::new();
    let dir = env.abs("host/dir");
    let file = env.abs("host/file");
    let l1 = layer(&[("etc", 0o755, K::Dir)]);
    let l2 = layer(&[
        ("d", 0o777, K::Sym(dir.as_bytes())),
        ("d2", 0o777, K::Sym(file.as_bytes())),
        ("e", 0o777, K::Sym(b"/etc")),
        ("up", 0o777, K::Sym(b"../../..")),
        ("e/x", 0o644, K::File(b"through e")),
        ("up/etc/y", 0o644, K::File(b"through up")),
    ]);
    env.local(&[l1.clone(), l2.clone()]).expect("local");
    let dest = env.dest();
    assert_eq!(fs::read(dest.join("etc/x")).expect("etc/x"), b"through e");
    assert_eq!(fs::read(dest.join("etc/y")).expect("etc/y"), b"through up");
    assert_eq!(fs::read_link(dest.join("d")).expect("d"), Path::new(&dir));
    let listed = listing(&env.tar(&[l1, l2.clone()]).expect("tar"));
    assert_eq!(listed["d"], ('l', 0o777, dir.clone()));
    assert_eq!(listed["etc/x"].0, 'f');

    // A write through a link whose target is not in the image.
    let l3 = layer(&[
        ("d", 0o777, K::Sym(dir.as_bytes())),
        ("d/x", 0o644, K::File(b"x")),
    ]);
    let _ = env.local(std::slice::from_ref(&l3));
    let _ = env.tar(&[l3]);
    env.assert_outside_untouched();
}

#[test]
fn hard_links_out_of_the_image_are_refused() {
    let env = Env::new();
    let file = env.abs("host/file");
    for target in ["../../host/file", "a/../../x", file.as_str()] {
        let l = layer(&[("h", 0o644, K::Hard(target.as_bytes()))]);
        assert!(
            is_layer_error(&env.local(std::slice::from_ref(&l))),
            "{target}"
        );
        assert!(is_layer_error(&env.tar(&[l])), "{target}");
    }
    assert_eq!(fs::metadata(env.p("host/file")).expect("f").nlink(), 1);
    env.assert_outside_untouched();
}

#[test]
fn hard_links_of_the_image_are_kept() {
    let env = Env::new();
    let l = layer(&[
        ("bin", 0o755, K::Dir),
        ("bin/a", 0o755, K::File(b"prog")),
        ("bin/b", 0o755, K::Hard(b"bin/a")),
        ("c", 0o755, K::Hard(b"/bin/a")),
    ]);
    env.local(std::slice::from_ref(&l)).expect("local");
    let ino = |p: &str| fs::metadata(env.dest().join(p)).expect(p).ino();
    assert_eq!(ino("bin/a"), ino("bin/b"));
    assert_eq!(ino("bin/a"), ino("c"));
    let listed = listing(&env.tar(&[l]).expect("tar"));
    assert_eq!(listed["bin/b"], ('h', 0o755, "bin/a".into()));
    assert_eq!(listed["c"], ('h', 0o755, "bin/a".into()));
}

#[test]
fn fifos_as_gnu_tar_and_python_write_them() {
    let env = Env::new();
    let l = layer(&[
        ("gnu", 0o644, K::Fifo(0)),
        ("python", 0o600, K::Fifo(b'0')),
        ("spaces", 0o640, K::Fifo(b' ')),
    ]);
    env.local(std::slice::from_ref(&l)).expect("local");
    for (n, m) in [("gnu", 0o644), ("python", 0o600), ("spaces", 0o640)] {
        let md = fs::symlink_metadata(env.dest().join(n)).expect(n);
        assert!(md.file_type().is_fifo(), "{n} is not a fifo");
        assert_eq!(md.mode() & 0o7777, m);
    }
    let listed = listing(&env.tar(&[l]).expect("tar"));
    assert_eq!(listed["gnu"], ('p', 0o644, String::new()));
    assert_eq!(listed["python"].0, 'p');
}

#[test]
fn char_devices_are_created_inside_dest_as_root() {
    let env = Env::new();
    let l = layer(&[("dev", 0o755, K::Dir), ("dev/null", 0o666, K::Char(1, 3))]);
    if !rustix::process::geteuid().is_root() {
        assert!(env.local(&[l]).is_err(), "a device needs root");
        return;
    }
    env.local(std::slice::from_ref(&l)).expect("local");
    let md = fs::symlink_metadata(env.dest().join("dev/null")).expect("null");
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
    let listed = listing(&env.tar(&[l]).expect("tar"));
    assert_eq!(listed["dev/null"], ('c', 0o666, "1:3".into()));
    env.assert_outside_untouched();
}

#[test]
fn existing_dest_keeps_what_the_image_lacks_and_follows_no_link() {
    let env = Env::new();
    let dest = env.dest();
    fs::create_dir_all(dest.join("notes")).expect("notes");
    fs::write(dest.join("notes/keep.txt"), b"mine").expect("keep");
    fs::create_dir_all(dest.join("x")).expect("x");
    fs::write(dest.join("x/inner"), b"mine").expect("x/inner");
    fs::write(dest.join("bin"), b"a file where the image has a dir").expect("bin");
    std::os::unix::fs::symlink(env.p("host/dir"), dest.join("etc")).expect("etc");
    std::os::unix::fs::symlink(env.p("host/file"), dest.join("f")).expect("f");
    fs::create_dir_all(dest.join("app")).expect("app");
    fs::set_permissions(dest.join("app"), fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::write(dest.join("app/user.txt"), b"mine").expect("user");

    let l1 = layer(&[
        ("notes", 0o755, K::Dir),
        ("notes/img.txt", 0o644, K::File(b"image")),
        ("etc", 0o755, K::Dir),
    ]);
    let l2 = layer(&[
        (".wh.notes", 0o644, K::File(b"")),
        ("etc/passwd", 0o644, K::File(b"root:x:0:0::/:/bin/sh\n")),
        ("bin", 0o755, K::Dir),
        ("bin/sh", 0o755, K::File(b"sh")),
        ("x", 0o600, K::File(b"image x")),
        ("f", 0o4755, K::File(b"image f")),
        ("app", 0o751, K::Dir),
    ]);
    env.local(&[l1, l2]).expect("local");

    assert_eq!(
        fs::read(dest.join("notes/keep.txt")).expect("keep"),
        b"mine"
    );
    assert!(!dest.join("notes/img.txt").exists());
    let etc = fs::symlink_metadata(dest.join("etc")).expect("etc");
    assert!(etc.is_dir(), "dest's etc link was not replaced");
    assert_eq!(fs::read(dest.join("etc/passwd")).expect("p").len(), 22);
    assert_eq!(fs::read(dest.join("bin/sh")).expect("sh"), b"sh");
    assert_eq!(fs::read(dest.join("x")).expect("x"), b"image x");
    assert_eq!(fs::read(dest.join("f")).expect("f"), b"image f");
    assert_eq!(mode(&dest.join("f")), 0o4755);
    assert_eq!(fs::read(dest.join("app/user.txt")).expect("u"), b"mine");
    assert_eq!(
        mode(&dest.join("app")),
        0o751,
        "kept dir takes the image's mode"
    );
    env.assert_outside_untouched();
}

#[test]
fn sockets_are_skipped_and_tar_matches_local() {
    let env = Env::new();
    let mut tree = FinalTree::new_in(&env.p("state/tmp")).expect("tree");
    let l = layer(&[
        ("d", 0o750, K::Dir),
        ("d/f", 0o640, K::File(b"f")),
        ("d/l", 0o777, K::Sym(b"f")),
        ("p", 0o600, K::Fifo(0)),
    ]);
    tree.apply(&l[..], &Digest::sha256_of(&l)).expect("apply");
    let _sock = std::os::unix::net::UnixListener::bind(tree.path().join("d/sock")).expect("sock");
    tree.write_local(&env.dest()).expect("local");
    assert_eq!(names(&env.dest().join("d")), vec!["f", "l"]);
    let mut tar = Vec::new();
    tree.write_tar(None, &mut tar).expect("tar");
    let listed = listing(&tar);
    let want: BTreeMap<String, (char, u32, String)> = [
        ("d", ('d', 0o750, "")),
        ("d/f", ('f', 0o640, "")),
        ("d/l", ('l', 0o777, "f")),
        ("p", ('p', 0o600, "")),
    ]
    .into_iter()
    .map(|(n, (t, m, x))| (n.to_string(), (t, m, x.to_string())))
    .collect();
    assert_eq!(listed, want);
    drop(tree);
    assert_eq!(names(&env.p("state/tmp")), vec!["other-build"]);
}
