//! Test helpers: a two-layer busybox image in a fresh content store, and
//! checks that the external consumers are installed.

#![allow(dead_code)]

use flate2::write::GzEncoder;
use rbuild_cache::{ContentStore, Descriptor};
use rbuild_export::{assemble_image, media_types, AssembleOptions, AssembledImage, Layer};
use rbuild_graph::{ContainerConfig, Digest, HistoryEntry, ImageConfig};
use std::path::Path;
use std::process::{Command, Output};

/// `SOURCE_DATE_EPOCH` used by the tests.
pub const EPOCH: i64 = 1_700_000_000;

/// A file-like entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u64, u64, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// Build an uncompressed layer tar from entries (deterministic headers).
pub fn layer_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).expect("dir");
            }
            E::File(p, mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).expect("file");
            }
            E::Owned(p, mode, uid, gid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).expect("file");
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("symlink");
            }
            E::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("hardlink");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// Gzip `tar` into the store; returns the layer.
pub fn put_layer(store: &ContentStore, tar: &[u8]) -> Layer {
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(tar).expect("gzip");
    let blob = gz.finish().expect("gzip");
    let digest = store.put(&blob).expect("put");
    Layer {
        diff_id: Digest::sha256_of(tar),
        descriptor: Descriptor::new(media_types::OCI_LAYER_GZIP, digest, blob.len() as u64),
    }
}

/// The two layers of the test image.
pub fn busybox_layers(store: &ContentStore) -> Vec<Layer> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: apt-get install busybox-static");
    let base = layer_tar(&[
        E::Dir("bin", 0o755),
        E::File("bin/busybox", 0o755, &busybox),
        E::Symlink("bin/sh", "busybox"),
        E::Symlink("bin/cat", "/bin/busybox"),
        E::Symlink("bin/echo", "busybox"),
        E::Hardlink("bin/busybox-link", "bin/busybox"),
        E::Dir("data", 0o755),
        E::File("data/a", 0o644, b"a\n"),
        E::File("data/b", 0o644, b"b\n"),
        E::Dir("etc", 0o755),
        E::File("etc/old", 0o644, b"to be deleted\n"),
        E::File("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        E::Owned("etc/secret", 0o640, 0, 42, b"s3cret\n"),
        E::Dir("root", 0o700),
        E::Dir("tmp", 0o1777),
    ]);
    let top = layer_tar(&[
        E::Dir("app", 0o755),
        E::File("app/hello.txt", 0o644, b"hello from rbuild\n"),
        E::Dir("data", 0o755),
        E::File("data/.wh..wh..opq", 0o644, b""),
        E::File("data/c", 0o600, b"c\n"),
        E::File("etc/.wh.old", 0o644, b""),
    ]);
    vec![put_layer(store, &base), put_layer(store, &top)]
}

/// The config of the test image.
pub fn busybox_config() -> ImageConfig {
    let h = |by: &str, empty| HistoryEntry {
        created: Some("2024-01-01T00:00:00Z".into()),
        created_by: Some(by.into()),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer: empty,
    };
    ImageConfig {
        created: Some("2024-01-01T00:00:00Z".into()),
        author: None,
        architecture: "amd64".into(),
        os: "linux".into(),
        config: ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "GREETING=hi".into()]),
            cmd: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat hello.txt; echo $GREETING".into(),
            ]),
            working_dir: Some("/app".into()),
            ..Default::default()
        },
        history: vec![
            h("ADD rootfs / # buildkit", false),
            h("ENV GREETING=hi", true),
            h("RUN /bin/sh -c make-app # buildkit", false),
            h("WORKDIR /app", true),
        ],
        variant: None,
    }
}

/// A store with the test image assembled in it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: ContentStore,
    pub image: AssembledImage,
}

/// Assemble the test image.
pub fn fixture(oci_mediatypes: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ContentStore::open(dir.path().join("store")).expect("store");
    let layers = busybox_layers(&store);
    let opts = AssembleOptions {
        oci_mediatypes,
        source_date_epoch: Some(EPOCH),
        ..Default::default()
    };
    let image = assemble_image(&store, &busybox_config(), &layers, &opts).expect("assemble");
    Fixture { dir, store, image }
}

/// Fail (never skip) when a consumer is missing.
pub fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{bin} is required by this test but not installed: apt-get install {package}"
    );
}

/// Run a command; panic with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// podman with the flags this machine needs.
pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args([
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]);
    c
}

/// Mode bits of a path (not following symlinks).
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}
