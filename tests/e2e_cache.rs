//! Shared build cache: `--cache-to`/`--cache-from` through the real
//! registry, an OCI layout directory and inline image config; cache mounts
//! travelling with the cache; broken sources; two builds at once on one
//! state dir.
//!
//! Whether a RUN executed is observed on the host: every RUN appends its
//! name to a log in a cache mount (`id=runlog`), which lives in the state
//! dir and never travels with the cache unless `cache-mounts=true`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const MULTI: &str = r#"ARG REGISTRY
FROM ${REGISTRY}/library/busybox:latest AS base
RUN --mount=type=cache,id=runlog,target=/runlog echo base >> /runlog/log && echo base > /base.txt
FROM base AS build
COPY a.txt /src/a.txt
RUN --mount=type=cache,id=runlog,target=/runlog echo build >> /runlog/log && cat /src/a.txt > /out.txt
FROM ${REGISTRY}/library/busybox:latest
COPY b.txt /b.txt
RUN --mount=type=cache,id=runlog,target=/runlog echo final >> /runlog/log && echo final > /final.txt
COPY --from=build /out.txt /out.txt
"#;

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write");
    std::fs::write(dir.path().join("a.txt"), "a1\n").expect("write");
    std::fs::write(dir.path().join("b.txt"), "b1\n").expect("write");
    dir
}

/// The RUN steps that executed in state dir `rb` (sorted: stages run in
/// parallel).
fn ran(rb: &Rbuild) -> Vec<String> {
    let log = rb
        .path()
        .join("cache-mounts")
        .join(sha256_hex(b"runlog"))
        .join("log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos:x}", std::process::id())
}

fn build_args(ctx: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "build".into(),
        "--progress=plain".into(),
        "--build-arg".into(),
        format!("REGISTRY={}", registry()),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(ctx.to_string_lossy().to_string());
    v
}

/// Lines of plain progress saying a step missed the cache.
fn misses(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("cache miss") || l.contains("cache disabled"))
        .collect()
}

/// The layer digests of a pushed image, from the registry.
fn pushed_layers(repo_tag: &str) -> Vec<String> {
    let (repo, tag) = repo_tag.rsplit_once(':').expect("tag");
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", registry());
    let m = cmd(
        "curl",
        &[
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &url,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&m).expect("manifest json");
    v["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

fn has_blob(rb: &Rbuild, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    rb.path().join("blobs/sha256").join(hex).exists()
}

fn file_in_image(rb: &Rbuild, ctx: &Path, extra: &[&str], file: &str) -> String {
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-o", &dest]);
    rb.ok(build_args(ctx, &args));
    std::fs::read_to_string(out.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn registry_cache_makes_a_fresh_state_dir_fully_cached_and_lazy() {
    require_root();
    require_registry();
    let ctx = context(MULTI);
    let cache = format!("{}/{}:buildcache", registry(), unique("cache/e2e"));
    let to = format!("--cache-to=type=registry,ref={cache}");
    let from = format!("--cache-from=type=registry,ref={cache}");

    let a = Rbuild::new();
    let out = a.ok(build_args(ctx.path(), &[&to]));
    assert!(out.contains("exporting cache to"), "{out}");
    assert_eq!(
        ran(&a),
        ["base", "build", "final"],
        "first build runs every step"
    );

    // A fresh runner: everything comes from the registry cache, no RUN
    // executes, and the push moves no layer bytes through this machine.
    let b = Rbuild::new();
    let image = format!("{}:v1", unique("test/e2e-cache"));
    let name = format!("{}/{image}", registry());
    let out = b.ok(build_args(ctx.path(), &[&from, "-t", &name, "--push"]));
    assert!(misses(&out).is_empty(), "every step is cached:\n{out}");
    assert_eq!(out.matches("CACHED").count(), 6, "{out}");
    assert!(ran(&b).is_empty(), "no RUN executed: {:?}", ran(&b));
    let layers = pushed_layers(&image);
    assert!(
        layers.len() >= 4,
        "busybox, COPY, RUN, COPY --from: {layers:?}"
    );
    for l in &layers {
        assert!(
            !has_blob(&b, l),
            "layer {l} was downloaded by a fully cached push"
        );
    }
    // The pushed image is complete: every blob is in the registry.
    let oci = tempfile::tempdir().expect("tmp");
    cmd(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:x", oci.path().display()),
        ],
    );

    // One source change: only the steps that read it run.
    std::fs::write(ctx.path().join("a.txt"), "a2\n").expect("write");
    let got = file_in_image(&b, ctx.path(), &[&from], "out.txt");
    assert_eq!(got, "a2\n");
    assert_eq!(ran(&b), ["build"], "only the dependent RUN executed");
}

#[test]
fn local_cache_round_trips_and_mode_min_keeps_only_the_image_chain() {
    require_root();
    require_registry();
    let ctx = context(MULTI);
    let dir = tempfile::tempdir().expect("tmp");
    let max = dir.path().join("max");
    let min = dir.path().join("min");

    let a = Rbuild::new();
    a.ok(build_args(
        ctx.path(),
        &[
            &format!("--cache-to=type=local,dest={}", max.display()),
            &format!("--cache-to=type=local,dest={},mode=min", min.display()),
        ],
    ));
    assert!(max.join("index.json").is_file() && max.join("oci-layout").is_file());

    let b = Rbuild::new();
    let out = file_in_image(
        &b,
        ctx.path(),
        &[&format!("--cache-from=type=local,src={}", max.display())],
        "out.txt",
    );
    assert_eq!(out, "a1\n");
    assert!(ran(&b).is_empty(), "mode=max: nothing runs: {:?}", ran(&b));

    // mode=min exported only the final image's chain: the other stages run.
    let c = Rbuild::new();
    c.ok(build_args(
        ctx.path(),
        &[&format!("--cache-from=type=local,src={}", min.display())],
    ));
    assert_eq!(ran(&c), ["base", "build"], "mode=min");

    // One source change on a fresh runner: only the dependent RUN executes.
    std::fs::write(ctx.path().join("a.txt"), "a2\n").expect("write");
    let d = Rbuild::new();
    let out = file_in_image(
        &d,
        ctx.path(),
        &[&format!("--cache-from=type=local,src={}", max.display())],
        "out.txt",
    );
    assert_eq!(out, "a2\n");
    assert_eq!(ran(&d), ["build"], "only the step reading a.txt ran");

    // A second export to the same directory replaces the tag in place.
    std::fs::write(ctx.path().join("b.txt"), "b2\n").expect("write");
    a.ok(build_args(
        ctx.path(),
        &[&format!("--cache-to=type=local,dest={}", max.display())],
    ));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(max.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
}

#[test]
fn inline_cache_is_read_back_from_the_image() {
    require_root();
    require_registry();
    let ctx = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nCOPY a.txt /a.txt\nRUN --mount=type=cache,id=runlog,target=/runlog echo one >> /runlog/log && echo one > /one\n",
    );
    let name = format!("{}/{}:v1", registry(), unique("test/e2e-inline"));
    let a = Rbuild::new();
    a.ok(build_args(
        ctx.path(),
        &["--cache-to=type=inline", "-t", &name, "--push"],
    ));
    let b = Rbuild::new();
    let got = file_in_image(&b, ctx.path(), &["--cache-from", &name], "one");
    assert_eq!(got, "one\n");
    assert!(ran(&b).is_empty(), "inline cache hit: {:?}", ran(&b));
}

#[test]
fn cache_mounts_travel_only_when_asked() {
    require_root();
    require_registry();
    let fill = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nRUN --mount=type=cache,id=data,target=/data echo kept > /data/f\n",
    );
    let read = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nRUN --mount=type=cache,id=data,target=/data cat /data/f > /seen || echo none > /seen\n",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let with = dir.path().join("with");
    let without = dir.path().join("without");
    let a = Rbuild::new();
    a.ok(build_args(
        fill.path(),
        &[
            &format!(
                "--cache-to=type=local,dest={},cache-mounts=true",
                with.display()
            ),
            &format!("--cache-to=type=local,dest={}", without.display()),
        ],
    ));
    let b = Rbuild::new();
    let seen = file_in_image(
        &b,
        read.path(),
        &[&format!("--cache-from=type=local,src={}", with.display())],
        "seen",
    );
    assert_eq!(seen, "kept\n", "the cache mount came with the cache");
    let c = Rbuild::new();
    let seen = file_in_image(
        &c,
        read.path(),
        &[&format!(
            "--cache-from=type=local,src={}",
            without.display()
        )],
        "seen",
    );
    assert_eq!(seen, "none\n", "cache mounts are not exported by default");
}

#[test]
fn a_missing_or_corrupt_cache_is_a_warning_not_a_failure() {
    require_root();
    require_registry();
    let ctx = context(MULTI);
    let corrupt = tempfile::tempdir().expect("tmp");
    std::fs::write(corrupt.path().join("index.json"), "{ not json").expect("write");
    std::fs::write(corrupt.path().join("oci-layout"), "{}").expect("write");
    let a = Rbuild::new();
    let out = a.ok(build_args(
        ctx.path(),
        &[
            &format!(
                "--cache-from={}/{}:none",
                registry(),
                unique("cache/missing")
            ),
            &format!("--cache-from=type=local,src={}", corrupt.path().display()),
            "--cache-from=type=local,src=/nonexistent/rbuild-cache",
        ],
    ));
    assert_eq!(
        out.matches("WARNING: cache import from").count(),
        3,
        "one warning per broken source:\n{out}"
    );
    assert!(out.contains("building without it"), "{out}");
    assert_eq!(ran(&a), ["base", "build", "final"]);

    // Bad specs are errors before anything runs.
    let bad = a.run(build_args(ctx.path(), &["--cache-to=type=gha"]));
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unsupported cache type \"gha\""), "{err}");
}

#[test]
fn two_builds_at_once_on_one_state_dir_share_results() {
    require_root();
    require_registry();
    let common = "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nRUN --mount=type=cache,id=runlog,target=/runlog echo shared >> /runlog/log && sleep 1 && echo shared > /shared\n";
    let x = context(&format!(
        "{common}RUN --mount=type=cache,id=runlog,target=/runlog echo x >> /runlog/log && echo x > /x\n"
    ));
    let y = context(&format!(
        "{common}RUN --mount=type=cache,id=runlog,target=/runlog echo y >> /runlog/log && echo y > /y\n"
    ));
    let rb = Rbuild::new();
    let spawn = |ctx: &Path, tag: &str| {
        Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(rb.path())
            .args(build_args(ctx, &["-t", tag]))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rbuild")
    };
    let px = spawn(x.path(), "x");
    let py = spawn(y.path(), "y");
    for (p, name) in [(px, "x"), (py, "y")] {
        let out = p.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "build {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(
        rb.path()
            .join("cache-mounts")
            .join(sha256_hex(b"runlog"))
            .join("log"),
    )
    .expect("log");
    let mut log: Vec<&str> = log.lines().collect();
    log.sort();
    assert_eq!(log, ["shared", "x", "y"], "the shared step ran once");

    // The store is intact: every blob matches its digest.
    let blobs = rb.path().join("blobs/sha256");
    let mut n = 0;
    for e in std::fs::read_dir(&blobs).expect("blobs") {
        let e = e.expect("entry");
        let bytes = std::fs::read(e.path()).expect("read blob");
        assert_eq!(
            sha256_hex(&bytes),
            e.file_name().to_string_lossy(),
            "blob {} is corrupt",
            e.path().display()
        );
        n += 1;
    }
    assert!(n > 0);
    // Both images are tagged in the state dir's index.
    let index = std::fs::read_to_string(rb.path().join("index.json")).expect("index");
    assert!(
        index.contains("x:latest") && index.contains("y:latest"),
        "{index}"
    );

    // The lock files of finished builds are leftovers that prune removes.
    assert!(rb.path().join("locks").read_dir().expect("locks").count() > 0);
    rb.ok(["prune"]);
    assert_eq!(
        rb.path().join("locks").read_dir().expect("locks").count(),
        0
    );
}

#[test]
fn copy_from_a_rebuilt_stage_with_the_same_output_stays_cached() {
    require_root();
    require_registry();
    // As in BuildKit, COPY --from is also keyed by the content it copies.
    let ctx = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest AS build\nCOPY a.txt /a.txt\nRUN --mount=type=cache,id=runlog,target=/runlog echo build >> /runlog/log && echo constant > /out.txt\nFROM ${REGISTRY}/library/busybox:latest\nCOPY --from=build /out.txt /out.txt\nRUN --mount=type=cache,id=runlog,target=/runlog echo after >> /runlog/log && cat /out.txt > /copy.txt\n",
    );
    let rb = Rbuild::new();
    rb.ok(build_args(ctx.path(), &[]));
    std::fs::write(ctx.path().join("a.txt"), "a2\n").expect("write");
    let out = rb.ok(build_args(ctx.path(), &[]));
    let log = std::fs::read_to_string(
        rb.path()
            .join("cache-mounts")
            .join(sha256_hex(b"runlog"))
            .join("log"),
    )
    .expect("log");
    assert_eq!(
        log, "build\nafter\nbuild\n",
        "the step after the copy stayed cached:\n{out}"
    );
    let copy_line = out
        .lines()
        .position(|l| l.contains("COPY --from=build"))
        .expect("COPY --from step");
    let rest: Vec<&str> = out.lines().skip(copy_line + 1).take(1).collect();
    assert!(rest[0].ends_with("CACHED"), "{out}");
}

#[test]
fn cache_mount_from_a_stage_and_private_sharing() {
    require_root();
    require_registry();
    // from/source seed a new cache mount with a stage's directory.
    let ctx = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest AS seed\nRUN mkdir -p /seed/sub && echo seeded > /seed/sub/f\nFROM ${REGISTRY}/library/busybox:latest\nRUN --mount=type=cache,id=seeded,target=/c,from=seed,source=/seed cat /c/sub/f > /got\n",
    );
    let rb = Rbuild::new();
    let got = file_in_image(&rb, ctx.path(), &[], "got");
    assert_eq!(got, "seeded\n");

    // sharing=private: a step that finds the cache in use gets its own.
    let hex = sha256_hex(b"priv");
    let locks = rb.path().join("locks");
    std::fs::create_dir_all(&locks).expect("locks");
    let held = std::fs::File::create(locks.join(format!("cache-mount-{hex}"))).expect("lock file");
    held.lock().expect("hold the shared instance");
    let ctx = context(
        "ARG REGISTRY\nFROM ${REGISTRY}/library/busybox:latest\nRUN --mount=type=cache,id=priv,target=/p,sharing=private echo mine > /p/f\n",
    );
    rb.ok(build_args(ctx.path(), &[]));
    let mounts = rb.path().join("cache-mounts");
    assert!(
        !mounts.join(&hex).join("f").exists(),
        "wrote into the busy instance"
    );
    assert_eq!(
        std::fs::read_to_string(mounts.join(format!("{hex}-1")).join("f")).expect("private"),
        "mine\n"
    );
    drop(held);
}
