//! Image outputs checked by real consumers: skopeo, umoci, podman.

mod common;

use common::*;
use rbuild_export::{
    exporter_for, parse_output_spec, Destination, DockerExporter, ExportContext, Exporter,
    OciExporter,
};
use std::process::Command;

fn cx(f: &Fixture) -> ExportContext<'_> {
    ExportContext {
        store: &f.store,
        image: &f.image,
        source_date_epoch: Some(EPOCH),
        scratch_dir: None,
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn oci_archive_is_read_by_skopeo() {
    require("skopeo", "skopeo");
    let f = fixture(true);
    let tar = f.dir.path().join("image.tar");
    let spec = format!(
        "type=oci,dest={},name=localhost/rbuild-test:v1",
        tar.display()
    );
    exporter_for(&parse_output_spec(&spec).expect("spec"))
        .expect("exporter")
        .export(&cx(&f))
        .expect("export");

    let arg = format!("oci-archive:{}", tar.display());
    let out = run(Command::new("skopeo").args(["inspect", &arg]));
    let v = json(&out.stdout);
    assert_eq!(v["Digest"], f.image.manifest.digest.to_string());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["Env"], serde_json::json!(["PATH=/bin", "GREETING=hi"]));
    assert_eq!(v["Created"], "2023-11-14T22:13:20Z");

    let out = run(Command::new("skopeo").args(["inspect", "--config", "--raw", &arg]));
    assert_eq!(out.stdout, f.image.config_json, "config bytes differ");
    let c = json(&out.stdout);
    assert_eq!(
        c["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "cat hello.txt; echo $GREETING"])
    );
    assert_eq!(c["config"]["WorkingDir"], "/app");
    assert_eq!(c["history"].as_array().map(Vec::len), Some(4));

    // Docker media types in an OCI archive are read too.
    let f = fixture(false);
    let tar = f.dir.path().join("docker-types.tar");
    OciExporter {
        dest: Destination::Path(tar.clone()),
        tar: true,
        names: vec![],
    }
    .export(&cx(&f))
    .expect("export");
    let arg = format!("oci-archive:{}", tar.display());
    let v = json(&run(Command::new("skopeo").args(["inspect", &arg])).stdout);
    assert_eq!(v["Digest"], f.image.manifest.digest.to_string());
}

#[test]
fn oci_layout_is_unpacked_by_umoci_and_merges() {
    use std::os::unix::fs::MetadataExt;
    require("umoci", "umoci");
    let f = fixture(true);
    let layout = f.dir.path().join("layout");
    for name in ["rbuild-test:v1", "rbuild-test:v2", "rbuild-test:v1"] {
        OciExporter {
            dest: Destination::Path(layout.clone()),
            tar: false,
            names: vec![name.to_string()],
        }
        .export(&cx(&f))
        .expect("export");
    }
    let index = json(&std::fs::read(layout.join("index.json")).expect("index"));
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(refs, vec!["v2", "v1"], "{index}");
    assert_eq!(
        index["manifests"][1]["annotations"]["io.containerd.image.name"],
        "docker.io/library/rbuild-test:v1"
    );

    let bundle = f.dir.path().join("bundle");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(mode(&rootfs.join("bin/busybox")), 0o755);
    assert_eq!(mode(&rootfs.join("etc/secret")), 0o640);
    assert_eq!(mode(&rootfs.join("tmp")), 0o1777);
    assert_eq!(mode(&rootfs.join("root")), 0o700);
    let secret = std::fs::metadata(rootfs.join("etc/secret")).expect("secret");
    assert_eq!(secret.gid(), 42);
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).expect("sh"),
        std::path::Path::new("busybox")
    );
    assert!(!rootfs.join("etc/old").exists(), "whiteout not applied");
    assert!(!rootfs.join("data/a").exists(), "opaque dir not applied");
    assert_eq!(std::fs::read(rootfs.join("data/c")).expect("c"), b"c\n");
    let cfg = json(&std::fs::read(bundle.join("config.json")).expect("runtime config"));
    assert_eq!(cfg["process"]["cwd"], "/app");
}

#[test]
fn docker_archive_is_loaded_and_run_by_podman() {
    require("podman", "podman");
    require("runc", "runc");
    let f = fixture(false);
    let tar = f.dir.path().join("docker.tar");
    let name = format!("localhost/rbuild-export-test:{}", std::process::id());
    DockerExporter {
        dest: Destination::Path(tar.clone()),
        tar: true,
        names: vec![name.clone()],
    }
    .export(&cx(&f))
    .expect("export");

    // manifest.json as docker load reads it.
    let mut archive = tar::Archive::new(std::fs::File::open(&tar).expect("open"));
    let mut manifest = None;
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_str() == Some("manifest.json") {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut s).expect("read");
            manifest = Some(json(&s));
        }
    }
    let m = manifest.expect("manifest.json in the archive");
    assert_eq!(m[0]["RepoTags"], serde_json::json!([name]));
    assert_eq!(
        m[0]["Config"],
        format!("blobs/sha256/{}", f.image.config.digest.hex())
    );
    assert_eq!(m[0]["Layers"].as_array().map(Vec::len), Some(2));

    let load = podman()
        .arg("load")
        .arg("-i")
        .arg(&tar)
        .output()
        .expect("podman load");
    let run_out = podman()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            &name,
        ])
        .output()
        .expect("podman run");
    let _ = podman().args(["rmi", "-f", &name]).output();
    assert!(
        load.status.success(),
        "podman load failed: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(
        run_out.status.success(),
        "podman run failed: {}",
        String::from_utf8_lossy(&run_out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run_out.stdout),
        "hello from rbuild\nhi\n"
    );
}

#[test]
fn archives_are_deterministic() {
    let a = fixture(true);
    let b = fixture(true);
    assert_eq!(a.image, b.image, "assembly is not deterministic");
    for docker in [false, true] {
        let mut outs = Vec::new();
        for f in [&a, &b] {
            let mut buf = Vec::new();
            if docker {
                DockerExporter {
                    dest: Destination::Stdout,
                    tar: true,
                    names: vec!["foo:1".into()],
                }
                .write_to(&cx(f), &mut buf)
                .expect("docker");
            } else {
                OciExporter {
                    dest: Destination::Stdout,
                    tar: true,
                    names: vec!["foo:1".into()],
                }
                .write_to(&cx(f), &mut buf)
                .expect("oci");
            }
            outs.push(buf);
        }
        assert!(outs[0] == outs[1], "docker={docker}: archives differ");
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(&outs[0][..]);
        for e in archive.entries().expect("entries") {
            let e = e.expect("entry");
            assert_eq!(e.header().mtime().expect("mtime"), EPOCH as u64);
            assert_eq!(e.header().uid().expect("uid"), 0);
            names.push(e.path().expect("path").to_string_lossy().into_owned());
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.last().map(String::as_str), Some("oci-layout"));
    }
}

#[test]
fn corrupt_blob_fails_the_export() {
    let f = fixture(true);
    let layer = &f.image.layers[1];
    let path = f.store.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path).expect("blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt");
    let out = f.dir.path().join("out.tar");
    let err = OciExporter {
        dest: Destination::Path(out.clone()),
        tar: true,
        names: vec![],
    }
    .export(&cx(&f))
    .expect_err("corrupt blob");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!out.exists(), "a failed export left a partial file");
}

#[test]
fn docker_archive_is_read_by_skopeo_as_docker_archive() {
    require("skopeo", "skopeo");
    for oci_types in [false, true] {
        let f = fixture(oci_types);
        let tar = f.dir.path().join("docker.tar");
        let spec = format!(
            "type=docker,dest={},name=rbuild-test:v1,oci-mediatypes={oci_types}",
            tar.display()
        );
        exporter_for(&parse_output_spec(&spec).expect("spec"))
            .expect("exporter")
            .export(&cx(&f))
            .expect("export");
        let arg = format!("docker-archive:{}", tar.display());
        let v = json(&run(Command::new("skopeo").args(["inspect", &arg])).stdout);
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{v}");
        assert_eq!(v["Env"], serde_json::json!(["PATH=/bin", "GREETING=hi"]));
        let raw = run(Command::new("skopeo").args(["inspect", "--config", "--raw", &arg]));
        assert_eq!(raw.stdout, f.image.config_json);
    }
}
