//! Silent failures: builds that exited 0 with a wrong image. Each test
//! fails if the failure comes back: a bind-mounted context file edited
//! without the RUN rerunning, `--platform a,b` building one image for an
//! invented platform, annotations accepted and not written, flags and
//! output keys parsed and ignored, a no-change rebuild with a new digest,
//! and `COPY --exclude`/`--parents` copying what they should not.

mod common;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// A context directory holding `files` (name, content).
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, text) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, text).expect("write");
    }
    dir
}

/// `build --progress=plain --build-arg REGISTRY=… <extra> <ctx>`.
fn build_args(ctx: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "build".into(),
        "--progress=plain".into(),
        "--build-arg".into(),
        format!("REGISTRY={}", registry()),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(ctx.display().to_string());
    v
}

/// Run a build that must fail; its stderr.
fn fails(rb: &Rbuild, args: &[String]) -> String {
    let out = rb.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded:\n{stderr}");
    stderr
}

/// The names of the steps reported CACHED in `--progress=plain` output.
fn cached(stderr: &str) -> Vec<String> {
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Some((n, text)) = line.strip_prefix('#').and_then(|r| r.split_once(' ')) else {
            continue;
        };
        if text.starts_with('[') {
            names.insert(n.to_string(), text.to_string());
        } else if text == "CACHED" {
            out.push(names.get(n).cloned().unwrap_or_default());
        }
    }
    out
}

fn is_cached(stderr: &str, step: &str) -> bool {
    cached(stderr).iter().any(|s| s.contains(step))
}

/// An OCI layout directory: `index.json`, the first manifest, its config.
struct Layout {
    index: Value,
    manifest: Value,
    config: Value,
}

fn blob(dir: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = fs::read(dir.join("blobs/sha256").join(hex)).expect("blob");
    serde_json::from_slice(&bytes).expect("blob json")
}

fn layout(dir: &Path) -> Layout {
    let index: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index json");
    let manifest = blob(
        dir,
        index["manifests"][0]["digest"].as_str().expect("digest"),
    );
    let config = blob(dir, manifest["config"]["digest"].as_str().expect("config"));
    Layout {
        index,
        manifest,
        config,
    }
}

fn oci_dir_output(dir: &Path) -> String {
    format!("type=oci,tar=false,dest={}", dir.display())
}

// --- 1. RUN --mount=type=bind of the context is keyed by its content ---

const BIND: &str = r#"ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest AS gen
COPY gen.txt /gen.txt
FROM ${REGISTRY}/library/busybox:latest
RUN --mount=type=bind,source=go.mod,target=/w/go.mod cat /w/go.mod > /mod.txt
RUN --mount=type=bind,target=/w cat /w/main.go > /main.txt
RUN --mount=type=bind,from=gen,source=/gen.txt,target=/g.txt cat /g.txt > /gen.txt
"#;

#[test]
fn bind_mounted_context_files_are_part_of_the_run_cache_key() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&[
        ("Dockerfile", BIND),
        ("go.mod", "module m1\n"),
        ("main.go", "v1\n"),
        ("gen.txt", "g1\n"),
        ("notes.txt", "ignored 1\n"),
        (".dockerignore", "notes.txt\n"),
    ]);
    let out = tempfile::tempdir().expect("tmp");
    let dest = |n: u32| out.path().join(format!("rootfs{n}"));
    let build = |n: u32| {
        let o = format!("type=local,dest={}", dest(n).display());
        rb.ok(build_args(ctx.path(), &["-o", &o]))
    };
    let read = |n: u32, f: &str| fs::read_to_string(dest(n).join(f)).expect(f);
    build(1);
    assert_eq!(read(1, "main.txt"), "v1\n");

    // The edited main.go reruns the step that binds the whole context,
    // not the one that binds only go.mod.
    fs::write(ctx.path().join("main.go"), "v2\n").expect("edit");
    let log = build(2);
    assert_eq!(
        read(2, "main.txt"),
        "v2\n",
        "the old main.go shipped:\n{log}"
    );
    assert!(is_cached(&log, "cat /w/go.mod"), "{log}");
    assert!(!is_cached(&log, "cat /w/main.go"), "{log}");

    // go.mod bound alone: its edit reruns its step.
    fs::write(ctx.path().join("go.mod"), "module m2\n").expect("edit");
    let log = build(3);
    assert_eq!(read(3, "mod.txt"), "module m2\n", "{log}");
    assert!(!is_cached(&log, "cat /w/go.mod"), "{log}");

    // Unchanged, and a change to a .dockerignore'd file: all cached (the
    // base image, COPY gen.txt and the three RUN steps).
    let log = build(4);
    assert_eq!(cached(&log).len(), 5, "{log}");
    fs::write(ctx.path().join("notes.txt"), "ignored 2\n").expect("edit");
    let log = build(5);
    assert!(is_cached(&log, "cat /w/main.go"), "{log}");

    // A bind from a stage is keyed by that stage's result.
    fs::write(ctx.path().join("gen.txt"), "g2\n").expect("edit");
    let log = build(6);
    assert_eq!(read(6, "gen.txt"), "g2\n", "{log}");
    assert!(!is_cached(&log, "cat /g.txt"), "{log}");
}

// --- 2. --platform: one platform, normalized; lists refused ---

const PLATFORM: &str = "FROM scratch\nARG TARGETPLATFORM\nARG TARGETARCH\nARG TARGETVARIANT\nLABEL p=$TARGETPLATFORM a=$TARGETARCH v=$TARGETVARIANT\n";

#[test]
fn platform_lists_are_refused_and_single_platforms_normalized() {
    let rb = Rbuild::new();
    let ctx = context(&[("Dockerfile", PLATFORM)]);
    let err = fails(
        &rb,
        &build_args(ctx.path(), &["--platform", "linux/amd64,linux/arm64"]),
    );
    assert!(
        err.contains("--platform linux/amd64,linux/arm64: multi-platform builds are not supported yet; build each platform separately"),
        "{err}"
    );
    for (given, platform, arch) in [
        ("arm64", "linux/arm64", "arm64"),
        ("linux/arm64/v8", "linux/arm64", "arm64"),
        ("linux/x86_64", "linux/amd64", "amd64"),
    ] {
        let out = tempfile::tempdir().expect("tmp");
        rb.ok(build_args(
            ctx.path(),
            &["--platform", given, "-o", &oci_dir_output(out.path())],
        ));
        let l = layout(out.path());
        let labels = &l.config["config"]["Labels"];
        assert_eq!(labels["p"], platform, "{given}: {labels}");
        assert_eq!(labels["a"], arch, "{given}");
        assert_eq!(labels["v"], "", "{given}");
        assert_eq!(l.config["architecture"], arch, "{given}");
        assert!(l.config.get("variant").is_none(), "{given}: {}", l.config);
    }
    let err = fails(&rb, &build_args(ctx.path(), &["--platform", "linux/"]));
    assert!(err.contains("invalid --platform \"linux/\""), "{err}");
}

// --- 3. annotations and every -o key / flag: honoured or refused ---

#[test]
fn output_annotations_are_written_where_their_key_says() {
    let rb = Rbuild::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nLABEL a=b\n")]);
    let out = tempfile::tempdir().expect("tmp");
    let spec = format!(
        "{},name=annotated:1,annotation.org.opencontainers.image.title=Title,annotation-manifest.m=2,annotation-manifest-descriptor.d=3,annotation-index.i=4",
        oci_dir_output(out.path())
    );
    rb.ok(build_args(ctx.path(), &["-o", &spec]));
    let l = layout(out.path());
    assert_eq!(
        l.manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.title": "Title", "m": "2"})
    );
    assert_eq!(l.index["annotations"], serde_json::json!({"i": "4"}));
    let desc = &l.index["manifests"][0]["annotations"];
    assert_eq!(desc["d"], "3", "{desc}");
    assert_eq!(desc["org.opencontainers.image.ref.name"], "1", "{desc}");

    // docker-archive manifests (Docker media types) carry no annotations.
    let tar = out.path().join("d.tar");
    let err = fails(
        &rb,
        &build_args(
            ctx.path(),
            &[
                "-o",
                &format!("type=docker,dest={},annotation.a=1", tar.display()),
            ],
        ),
    );
    assert!(
        err.contains("annotation.a: Docker media types have no manifest annotations"),
        "{err}"
    );
    for (spec, needle) in [
        (
            "type=image,name=x,annotation-index.i=1",
            "annotation-index.i: a single-platform type=image output has no image index",
        ),
        (
            "type=registry,name=x,annotation-manifest-descriptor.d=1",
            "no index holding the manifest descriptor",
        ),
        (
            "type=oci,dest=x,annotation-index-descriptor.d=1",
            "has no index descriptor",
        ),
        (
            "type=image,name=x,name-canonical=true",
            "unknown key \"name-canonical\" for type=image",
        ),
    ] {
        let err = fails(&rb, &build_args(ctx.path(), &["-o", spec]));
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

#[test]
fn pushed_manifests_carry_their_annotations() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&[
        (
            "Dockerfile",
            "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nCOPY a.txt /a.txt\n",
        ),
        ("a.txt", "a\n"),
    ]);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let repo = format!("{}/rbuild-test/annotated", registry());
    let tag = format!("t{nanos:x}");
    let spec = format!("type=registry,name={repo}:{tag},annotation.pushed=yes");
    rb.ok(build_args(ctx.path(), &["-o", &spec]));
    let url = format!(
        "http://{}/v2/rbuild-test/annotated/manifests/{tag}",
        registry()
    );
    let text = cmd(
        "curl",
        &[
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &url,
        ],
    );
    let m: Value = serde_json::from_str(&text).expect("manifest");
    assert_eq!(m["annotations"]["pushed"], "yes", "{m}");
}

#[test]
fn parsed_keys_and_flags_are_honoured() {
    let rb = Rbuild::new();
    let ctx = context(&[(
        "Dockerfile",
        "# syntax=docker/dockerfile:1.7\nFROM scratch\nMAINTAINER Jane Doe <jane@example.com>\nLABEL a=b\n",
    )]);
    let out = tempfile::tempdir().expect("tmp");
    let dir = out.path().join("oci");
    let log = rb.ok(build_args(
        ctx.path(),
        &[
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
            "--build-arg",
            "SOURCE_DATE_EPOCH=10",
            "-o",
            &format!("{},oci-mediatypes=false", oci_dir_output(&dir)),
        ],
    ));
    assert!(
        log.contains("names the frontend image \"docker/dockerfile:1.7\"; rbuild does not run frontend images"),
        "{log}"
    );
    let l = layout(&dir);
    assert_eq!(l.config["author"], "Jane Doe <jane@example.com>");
    assert!(
        l.config.get("rbuild.cache.v1").is_some(),
        "BUILDKIT_INLINE_CACHE=1 wrote no inline cache: {}",
        l.config
    );
    assert_eq!(l.config["created"], "1970-01-01T00:00:10Z");
    assert_eq!(
        l.manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn malformed_flags_are_refused_naming_them() {
    let rb = Rbuild::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nLABEL a=b\n")]);
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let two_compressions = [
        "-o".to_string(),
        format!("{},compression=zstd", oci_dir_output(&a)),
        "-o".to_string(),
        format!("{},compression=gzip", oci_dir_output(&b)),
    ];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--build-arg".into(), "V:x".into()],
            "invalid --build-arg \"V:x\"",
        ),
        (
            vec!["--build-arg".into(), "=x".into()],
            "invalid --build-arg \"=x\"",
        ),
        (
            vec!["--secret".into(), "src=/dev/null".into()],
            "id= is required",
        ),
        (
            vec!["--allow".into(), "network.hots".into()],
            "invalid --allow \"network.hots\"",
        ),
        (
            vec![
                "--cache-to".into(),
                "type=local,dest=/tmp/x,compression=zstd".into(),
            ],
            "does not support the key \"compression\"",
        ),
        (
            vec!["--cache-from".into(), "type=local,src=/tmp/x,digest".into()],
            "field \"digest\" is not key=value",
        ),
        (
            vec!["--build-arg".into(), "SOURCE_DATE_EPOCH=yesterday".into()],
            "invalid --build-arg SOURCE_DATE_EPOCH=\"yesterday\"",
        ),
        (
            vec!["--build-arg".into(), "BUILDKIT_INLINE_CACHE=yes".into()],
            "invalid --build-arg BUILDKIT_INLINE_CACHE=\"yes\"",
        ),
        (vec!["--jobs".into(), "0".into()], "--jobs"),
        (
            two_compressions.to_vec(),
            "outputs ask for different layer compressions",
        ),
    ];
    for (flags, needle) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let err = fails(&rb, &build_args(ctx.path(), &flags));
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

// --- 4. a no-change rebuild is the same image ---

fn digest_of(meta: &Path) -> String {
    let v: Value = serde_json::from_slice(&fs::read(meta).expect("metadata")).expect("json");
    v["containerimage.digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[test]
fn cached_rebuilds_give_the_same_image_digest() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&[
        (
            "Dockerfile",
            "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nCOPY a.txt /a.txt\nENV X=1\nRUN cat /a.txt > /b.txt\nCOPY c.txt /c.txt\n",
        ),
        ("a.txt", "a\n"),
        ("c.txt", "c1\n"),
    ]);
    let tmp = tempfile::tempdir().expect("tmp");
    let build = |n: u32| -> (String, String, PathBuf) {
        let meta = tmp.path().join(format!("meta{n}.json"));
        let iid = tmp.path().join(format!("iid{n}"));
        let dir = tmp.path().join(format!("oci{n}"));
        let m = meta.display().to_string();
        let i = iid.display().to_string();
        rb.ok(build_args(
            ctx.path(),
            &[
                "--metadata-file",
                &m,
                "--iidfile",
                &i,
                "-o",
                &oci_dir_output(&dir),
            ],
        ));
        (
            digest_of(&meta),
            fs::read_to_string(&iid).expect("iid"),
            dir,
        )
    };
    let (d1, id1, dir1) = build(1);
    // Past a second boundary, so a time taken now would differ.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (d2, id2, _) = build(2);
    assert_eq!(id1, id2, "config digest changed on a cached rebuild");
    assert_eq!(d1, d2, "manifest digest changed on a cached rebuild");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::write(ctx.path().join("c.txt"), "c2\n").expect("edit");
    let (d3, id3, dir3) = build(3);
    assert_ne!(id3, id1);
    assert_ne!(d3, d1);
    let created = |dir: &Path| -> Vec<String> {
        layout(dir).config["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["created"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    let (h1, h3) = (created(&dir1), created(&dir3));
    let n = h1.len();
    assert_eq!(h1[..n - 1], h3[..n - 1], "cached steps kept their times");
    assert_ne!(h1[n - 1], h3[n - 1], "the rebuilt COPY got a new time");
    assert_eq!(
        layout(&dir3).config["created"].as_str(),
        Some(h3[n - 1].as_str()),
        "the image is dated by its last step"
    );
}

// --- 5. COPY --exclude / --parents: refused until the copy applies them ---

#[test]
fn copy_exclude_and_parents_are_refused_until_applied() {
    let rb = Rbuild::new();
    for (dockerfile, needle) in [
        (
            "FROM scratch\nCOPY --exclude=*.key a /e/\n",
            "COPY --exclude is not supported yet",
        ),
        (
            "FROM scratch\nADD --exclude=*.key a /e/\n",
            "ADD --exclude is not supported yet",
        ),
        (
            "FROM scratch\nCOPY --parents a/b/c.txt /p/\n",
            "COPY --parents is not supported yet",
        ),
    ] {
        let ctx = context(&[
            ("Dockerfile", dockerfile),
            ("a/b/c.txt", "c\n"),
            ("a/x.key", "secret\n"),
        ]);
        let out = tempfile::tempdir().expect("tmp");
        let o = format!("type=local,dest={}", out.path().display());
        let err = fails(&rb, &build_args(ctx.path(), &["-o", &o]));
        assert!(err.contains(needle), "{dockerfile}: {err}");
        assert!(
            !out.path().join("e/x.key").exists(),
            "the excluded file shipped"
        );
    }
}
