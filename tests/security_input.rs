//! Bounded input handling through the CLI: hostile Dockerfiles and image
//! names fail early with a clear message, never crash rbuild and never
//! start a build.

mod common;

use common::Rbuild;
use std::path::Path;

/// A context dir with `dockerfile` and a file `f`.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("context dir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    std::fs::write(dir.path().join("f"), "x").expect("write f");
    dir
}

/// Run `rbuild build ARGS CONTEXT`; assert it failed by exiting (not by a
/// signal such as SIGSEGV or SIGABRT) and return stderr.
fn fails(rb: &Rbuild, args: &[&str], ctx: &Path) -> String {
    let out = rb.run(
        ["build"]
            .iter()
            .copied()
            .chain(args.iter().copied())
            .chain([ctx.to_str().expect("utf-8 path")]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "expected a failing exit, got {}:\n{stderr}",
        out.status
    );
    stderr
}

/// Nothing was built: no step ran and no layer blob was written.
fn nothing_built(rb: &Rbuild, stderr: &str) {
    assert!(!stderr.contains("COPY f"), "a step ran:\n{stderr}");
    let blobs = rb.path().join("blobs/sha256");
    let n = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "blobs were written to {}", blobs.display());
}

const DOCKERFILE: &str = "FROM scratch\nCOPY f /f\n";

/// Regression: `-t UPPER/Bad:tag:x` was accepted; docker refuses it.
#[test]
fn uppercase_tag_is_refused_with_dockers_message() {
    let rb = Rbuild::new();
    let ctx = context(DOCKERFILE);
    let stderr = fails(&rb, &["-t", "UPPER/Bad:tag:x"], ctx.path());
    assert!(
        stderr.contains(
            "invalid tag \"UPPER/Bad:tag:x\": invalid reference format: repository name must be lowercase"
        ),
        "{stderr}"
    );
    nothing_built(&rb, &stderr);
}

#[test]
fn malformed_tag_is_an_invalid_reference_format() {
    let rb = Rbuild::new();
    let ctx = context(DOCKERFILE);
    for bad in ["app:tag:x", "app:", "app_", "a//b"] {
        let stderr = fails(&rb, &["-t", "ok", "-t", bad], ctx.path());
        assert!(
            stderr.contains(&format!("invalid tag {bad:?}: invalid reference format")),
            "{bad}: {stderr}"
        );
        assert!(!stderr.contains("lowercase"), "{bad}: {stderr}");
        nothing_built(&rb, &stderr);
    }
}

#[test]
fn bad_build_context_image_is_refused() {
    let rb = Rbuild::new();
    let ctx = context(DOCKERFILE);
    let stderr = fails(
        &rb,
        &["--build-context", "x=docker-image://BAD"],
        ctx.path(),
    );
    assert!(
        stderr.contains(
            "invalid --build-context \"x=docker-image://BAD\": invalid reference format: repository name must be lowercase"
        ),
        "{stderr}"
    );
    nothing_built(&rb, &stderr);
}

#[test]
fn bad_cache_refs_are_refused() {
    let rb = Rbuild::new();
    let ctx = context(DOCKERFILE);
    let stderr = fails(&rb, &["--cache-to", "type=registry,ref=BAD"], ctx.path());
    assert!(
        stderr.contains("ref \"BAD\": invalid reference format: repository name must be lowercase"),
        "{stderr}"
    );
    nothing_built(&rb, &stderr);
    let stderr = fails(&rb, &["--cache-from", "a:b:c"], ctx.path());
    assert!(stderr.contains("invalid reference format"), "{stderr}");
    nothing_built(&rb, &stderr);
}

/// Regression: `${a:-${a:-…}}` 10,000 deep aborted rbuild with a stack
/// overflow (SIGABRT); now it is an error at the Dockerfile line.
#[test]
fn deeply_nested_substitution_is_an_error_not_a_crash() {
    let rb = Rbuild::new();
    let deep = format!("{}x{}", "${a:-".repeat(10_000), "}".repeat(10_000));
    let ctx = context(&format!("FROM scratch\nENV X={deep}\nCOPY f /f\n"));
    let stderr = fails(&rb, &[], ctx.path());
    assert!(
        stderr.contains("Dockerfile:2:7: failed to process"),
        "{}",
        &stderr[..stderr.len().min(500)]
    );
    assert!(stderr.contains("substitutions nested deeper than 128 levels"));
    nothing_built(&rb, &stderr);
}

/// A chain of thousands of `ONBUILD` in one instruction was one recursive
/// call each in the parser.
#[test]
fn long_onbuild_chain_is_an_error_not_a_crash() {
    let rb = Rbuild::new();
    let chain = "ONBUILD \\\n".repeat(100_000);
    let ctx = context(&format!("FROM scratch\n{chain}RUN true\nCOPY f /f\n"));
    let stderr = fails(&rb, &[], ctx.path());
    assert!(
        stderr.contains("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        "{}",
        &stderr[..stderr.len().min(500)]
    );
    nothing_built(&rb, &stderr);
}
