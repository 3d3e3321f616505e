//! Multi-stage Go and Java builds with the Debian-built base images: the
//! images run under podman, a second build is fully cached, a source change
//! rebuilds only the steps that read it, and proxy build-args invalidate
//! nothing.

mod common;
use common::*;

/// Step names that ran (DONE) and that came from the cache (CACHED), from
/// `--progress=plain` output.
fn steps(stderr: &str) -> (Vec<String>, Vec<String>) {
    let mut names = std::collections::HashMap::new();
    let (mut ran, mut cached) = (Vec::new(), Vec::new());
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, text)) = rest.split_once(' ') else {
            continue;
        };
        if text.starts_with('[') {
            names.insert(n.to_string(), text.to_string());
        } else if text == "CACHED" {
            cached.push(names.get(n).cloned().unwrap_or_default());
        } else if text.starts_with("DONE") {
            ran.push(names.get(n).cloned().unwrap_or_default());
        }
    }
    (ran, cached)
}

fn run_image(archive: &std::path::Path, name: &str) -> String {
    let load = podman(&["load", "-i", &archive.to_string_lossy()]);
    assert!(
        load.status.success(),
        "podman load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let run = podman(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        name,
    ]);
    let _ = podman(&["rmi", "-f", name]);
    assert!(
        run.status.success(),
        "podman run {name}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).trim().to_string()
}

#[test]
fn go_app_builds_runs_and_rebuilds_incrementally() {
    require_root();
    require_tool("podman", "podman");
    require_registry();
    let rb = Rbuild::new();
    let ctx = copy_example("go-app");
    let ctx_s = ctx.path().to_string_lossy().to_string();
    let out = tempfile::tempdir().expect("tmp");
    let archive = out.path().join("go.tar");
    let dest = format!("type=docker,dest={}", archive.display());
    rb.ok(["build", "-t", "rbuild-test/go-app:1", "-o", &dest, &ctx_s]);
    assert_eq!(
        run_image(&archive, "docker.io/rbuild-test/go-app:1"),
        "hello, world, from Go (uid 1000)"
    );

    // No change: every step cached, nothing runs.
    let again = rb.ok([
        "build",
        "--progress=plain",
        "-t",
        "rbuild-test/go-app:1",
        &ctx_s,
    ]);
    let (ran, cached) = steps(&again);
    assert!(
        ran.is_empty(),
        "nothing may run on a no-change rebuild: {ran:?}\n{again}"
    );
    assert!(cached.iter().any(|s| s.contains("go build")), "{again}");

    // A proxy build-arg is not part of any cache key.
    let proxied = rb.ok([
        "build",
        "--progress=plain",
        "--build-arg",
        "HTTP_PROXY=http://proxy.invalid:3128",
        "--build-arg",
        "no_proxy=example.invalid",
        &ctx_s,
    ]);
    let (ran, _) = steps(&proxied);
    assert!(
        ran.is_empty(),
        "a proxy build-arg must not invalidate anything: {ran:?}\n{proxied}"
    );

    // Change main.go: go.mod's COPY stays cached; COPY *.go, go build and the
    // final COPY --from run again.
    let main = ctx.path().join("main.go");
    let text = std::fs::read_to_string(&main)
        .expect("read")
        .replace("from Go", "from Go again");
    std::fs::write(&main, text).expect("write");
    let changed = rb.ok([
        "build",
        "--progress=plain",
        "-t",
        "rbuild-test/go-app:1",
        "-o",
        &dest,
        &ctx_s,
    ]);
    let (ran, cached) = steps(&changed);
    assert!(
        cached.iter().any(|s| s.contains("COPY go.mod")),
        "{changed}"
    );
    assert!(ran.iter().any(|s| s.contains("COPY *.go")), "{changed}");
    assert!(ran.iter().any(|s| s.contains("go build")), "{changed}");
    assert!(
        ran.iter().any(|s| s.contains("COPY --from=build")),
        "{changed}"
    );
    assert_eq!(ran.len(), 3, "only the dependent steps run: {ran:?}");
    // Every miss says why.
    assert!(
        changed.contains("cache miss: files changed: main.go"),
        "{changed}"
    );
    assert!(
        changed.contains("cache miss: an earlier step or the base image changed"),
        "{changed}"
    );

    // A changed build arg used by a RUN is named.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        std::fs::read_to_string(ctx.path().join("Dockerfile"))
            .expect("read")
            .replace("RUN CGO_ENABLED=0", "ARG VERSION=1\nRUN CGO_ENABLED=0"),
    )
    .expect("write");
    rb.ok(["build", "--build-arg", "VERSION=1", &ctx_s]);
    let bumped = rb.ok([
        "build",
        "--progress=plain",
        "--build-arg",
        "VERSION=2",
        &ctx_s,
    ]);
    assert!(
        bumped.contains("cache miss: build arg or env changed: VERSION"),
        "{bumped}"
    );
    assert_eq!(
        run_image(&archive, "docker.io/rbuild-test/go-app:1"),
        "hello, world, from Go again (uid 1000)"
    );
}

#[test]
fn java_app_builds_and_runs_on_the_jre_image() {
    require_root();
    require_tool("podman", "podman");
    require_registry();
    let rb = Rbuild::new();
    let out = tempfile::tempdir().expect("tmp");
    let archive = out.path().join("java.tar");
    rb.ok([
        "build",
        "-t",
        "rbuild-test/java-app:1",
        "-o",
        &format!("type=docker,dest={}", archive.display()),
        "examples/java-app",
    ]);
    let said = run_image(&archive, "docker.io/rbuild-test/java-app:1");
    assert!(said.starts_with("hello from Java 1"), "{said}");
    let again = rb.ok(["build", "--progress=plain", "examples/java-app"]);
    assert!(steps(&again).0.is_empty(), "{again}");
}
