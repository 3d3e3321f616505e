//! Bad input ends with a short error naming what failed, exit code 1, and no
//! panic or backtrace.

mod common;
use common::*;

fn fails(rb: &Rbuild, args: &[&str]) -> String {
    let out = rb.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    stderr
}

#[test]
fn missing_dockerfile_names_the_file() {
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let err = fails(&rb, &["build", &ctx.path().to_string_lossy()]);
    assert!(err.contains("failed to read dockerfile"), "{err}");
    assert!(
        err.contains(&format!("{}/Dockerfile", ctx.path().display())),
        "{err}"
    );
    assert!(err.contains("no such file or directory"), "{err}");
}

#[test]
fn a_lowercase_dockerfile_is_found_and_reported_as_dockerfile() {
    // BuildKit accepts `dockerfile` when there is no `Dockerfile`.
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(
        ctx.path().join("dockerfile"),
        "FROM scratch\nCOPY a /a\nRUNN x\n",
    )
    .expect("write");
    let err = fails(&rb, &["build", &ctx.path().to_string_lossy()]);
    assert!(
        err.contains("Dockerfile:3:1: dockerfile parse error on line 3: unknown instruction: RUNN"),
        "{err}"
    );
}

#[test]
fn unreachable_registry_names_the_image_and_the_line() {
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "# base\nFROM 127.0.0.1:9/library/busybox:latest\nRUN true\n",
    )
    .expect("write");
    let err = fails(&rb, &["build", &ctx.path().to_string_lossy()]);
    assert!(err.contains("127.0.0.1:9/library/busybox:latest"), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn failing_run_shows_command_exit_code_line_and_output() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nRUN echo first line; echo about to fail >&2; exit 3\nRUN echo never\n",
            registry()
        ),
    )
    .expect("write");
    let err = fails(
        &rb,
        &["build", "--progress=plain", &ctx.path().to_string_lossy()],
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("echo first line; echo about to fail >&2; exit 3"),
        "{err}"
    );
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
    assert!(
        !err.contains("never\n#"),
        "the next step must not run:\n{err}"
    );
    // Running it again, the miss is explained by the failure, not a prune.
    let again = fails(
        &rb,
        &["build", "--progress=plain", &ctx.path().to_string_lossy()],
    );
    assert!(
        again.contains("cache miss: the last run of this step did not finish"),
        "{again}"
    );
}
