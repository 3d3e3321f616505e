//! Layer compression options end to end: `compression-level=` changes the
//! blobs but not the content, out-of-range levels are refused, and each
//! compressed blob is made once and reused by later exports and pushes.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A context: busybox plus one layer of compressible text.
fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    let text: String = (0..60_000)
        .map(|i| format!("record {} value {:x}\n", i % 1237, (i * 7919) % 65_521))
        .collect();
    std::fs::write(ctx.path().join("data.txt"), text).expect("write data");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nCOPY data.txt /data.txt\n",
            registry()
        ),
    )
    .expect("write Dockerfile");
    ctx
}

/// Layer digests (manifest) and diff_ids (config) of an image.
fn layers(reference: &str) -> (Vec<String>, Vec<String>) {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(|d| d.as_str().expect("digest string").to_string())
            .collect()
    };
    let info: serde_json::Value = serde_json::from_str(&cmd(
        "skopeo",
        &["inspect", "--tls-verify=false", reference],
    ))
    .expect("inspect json");
    let config: serde_json::Value = serde_json::from_str(&cmd(
        "skopeo",
        &["inspect", "--tls-verify=false", "--config", reference],
    ))
    .expect("config json");
    (
        strings(&info["Layers"]),
        strings(&config["rootfs"]["diff_ids"]),
    )
}

fn archive(path: &Path) -> String {
    format!("oci-archive:{}", path.display())
}

/// Every file in `dir` (not recursive) with (inode, mtime in ns): a file
/// that was rewritten (temp file + rename) gets a new inode.
fn files(dir: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let md = e.metadata().expect("metadata");
        if md.is_file() {
            out.insert(
                e.path(),
                (md.ino(), md.mtime() * 1_000_000_000 + md.mtime_nsec()),
            );
        }
    }
    out
}

#[test]
fn compression_level_changes_layer_digests_but_not_diff_ids() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    let ctx = context();
    let out = tempfile::tempdir().expect("tmp");
    let export = |name: &str, opts: &str| {
        let dest = out.path().join(name);
        rb.ok([
            "build",
            "-q",
            "-o",
            &format!("type=oci,dest={},{opts}", dest.display()),
            &ctx.path().to_string_lossy(),
        ]);
        layers(&archive(&dest))
    };
    let (l1, d1) = export("l1.tar", "compression=gzip,compression-level=1");
    let (l9, d9) = export("l9.tar", "compression=gzip,compression-level=9");
    let (l6, d6) = export("l6.tar", "compression=gzip");
    assert_eq!(l1.len(), 2, "busybox + COPY: {l1:?}");
    assert_eq!(
        d1, d9,
        "the uncompressed content must not depend on the level"
    );
    assert_eq!(d1, d6);
    // The pulled busybox layer keeps its blob (no force-compression)…
    assert_eq!(l1[0], l9[0]);
    assert_eq!(l1[0], l6[0]);
    // …and the COPY layer is a different blob at each level.
    assert_ne!(l1[1], l9[1], "level 1 and 9 gave the same blob");
    assert_ne!(l1[1], l6[1], "level 1 and the default gave the same blob");
    assert_ne!(l9[1], l6[1], "level 9 and the default gave the same blob");
    // Level 6 is the default: the same blob as no level at all.
    let (l6b, _) = export("l6b.tar", "compression=gzip,compression-level=6");
    assert_eq!(l6b, l6);
    // zstd levels too.
    let (z1, dz1) = export("z1.tar", "compression=zstd,compression-level=1");
    let (z19, dz19) = export("z19.tar", "compression=zstd,compression-level=19");
    assert_eq!(dz1, d1);
    assert_eq!(dz19, d1);
    assert_ne!(z1[1], z19[1], "zstd level 1 and 19 gave the same blob");
}

#[test]
fn out_of_range_compression_levels_are_refused() {
    let rb = Rbuild::new();
    for (opts, msg) in [
        (
            "compression=gzip,compression-level=10",
            "compression-level=10 is out of range for gzip: expected 0-9",
        ),
        (
            "compression-level=-1",
            "compression-level=-1 is out of range for gzip: expected 0-9",
        ),
        (
            "compression=zstd,compression-level=23",
            "compression-level=23 is out of range for zstd: expected 1-22",
        ),
        (
            "compression=zstd,compression-level=0",
            "compression-level=0 is out of range for zstd: expected 1-22",
        ),
    ] {
        let out = rb.run([
            "build",
            "-o",
            &format!("type=oci,dest=/nonexistent/x.tar,{opts}"),
            "examples/hello",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{opts}: accepted");
        assert!(stderr.contains(msg), "{opts}: {stderr}");
    }
}

#[test]
fn compressed_blobs_are_made_once_and_reused_by_later_exports_and_pushes() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    let ctx = context();
    let out = tempfile::tempdir().expect("tmp");
    let opts = "compression=gzip,compression-level=1";
    let build = |dest: &Path| {
        rb.ok([
            "build",
            "-q",
            "-o",
            &format!("type=oci,dest={},{opts}", dest.display()),
            &ctx.path().to_string_lossy(),
        ]);
    };
    let first = out.path().join("first.tar");
    build(&first);
    let records = files(&rb.path().join("layer-cache"));
    let blobs = files(&rb.path().join("blobs/sha256"));
    assert!(!records.is_empty(), "no layer record was written");

    let second = out.path().join("second.tar");
    build(&second);
    assert_eq!(layers(&archive(&first)), layers(&archive(&second)));
    assert_eq!(
        files(&rb.path().join("layer-cache")),
        records,
        "the second export rewrote a layer record: the layer was compressed again"
    );
    let after = files(&rb.path().join("blobs/sha256"));
    for (path, id) in &blobs {
        assert_eq!(
            after.get(path),
            Some(id),
            "{} was rewritten",
            path.display()
        );
    }

    // A push of the same build sends the same blobs, made no new record.
    let name = format!("{}/rbuild-e2e/levels:p{}", registry(), std::process::id());
    rb.ok([
        "build",
        "-q",
        "-o",
        &format!("type=registry,name={name},{opts}"),
        &ctx.path().to_string_lossy(),
    ]);
    assert_eq!(
        layers(&format!("docker://{name}")).0,
        layers(&archive(&first)).0
    );
    assert_eq!(files(&rb.path().join("layer-cache")), records);
}

#[test]
fn force_compression_recompresses_pulled_layers_once() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_registry();
    let rb = Rbuild::new();
    let ctx = context();
    let out = tempfile::tempdir().expect("tmp");
    let export = |name: &str, opts: &str| {
        let dest = out.path().join(name);
        rb.ok([
            "build",
            "-q",
            "-o",
            &format!("type=oci,dest={},{opts}", dest.display()),
            &ctx.path().to_string_lossy(),
        ]);
        layers(&archive(&dest))
    };
    let (plain, diff_ids) = export("plain.tar", "compression=gzip");
    let (forced, forced_ids) = export(
        "forced.tar",
        "compression=gzip,compression-level=1,force-compression=true",
    );
    assert_eq!(forced_ids, diff_ids);
    assert_ne!(
        forced[0], plain[0],
        "force-compression with a level must recompress the pulled layer"
    );
    let index = rb.path().join("index/layers");
    let recompressed: Vec<_> = files(&index)
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with(".gzip-1"))
        .collect();
    assert_eq!(recompressed.len(), 1, "{:?}", files(&index));
    let (again, _) = export(
        "again.tar",
        "compression=gzip,compression-level=1,force-compression=true",
    );
    assert_eq!(again, forced);
    for (path, id) in &recompressed {
        assert_eq!(
            files(&index).get(path),
            Some(id),
            "the pulled layer was recompressed again"
        );
    }
    // Without a level, force-compression keeps a pulled gzip layer (BuildKit
    // only converts between algorithms).
    let (same, _) = export("same.tar", "compression=gzip,force-compression=true");
    assert_eq!(same[0], plain[0]);
}
