//! Build checks from the command line: warnings with their line during a
//! build, `# check=error=true`, and `rbuild build --check`.

mod common;
use common::*;

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("write");
    ctx
}

fn busybox() -> String {
    format!("{}/library/busybox:latest", registry())
}

#[test]
fn build_prints_check_warnings_with_their_line() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&format!("FROM {} as base\nCMD echo hi\n", busybox()));
    let stderr = rb.ok(["build", "--progress=plain", &ctx.path().to_string_lossy()]);
    assert!(
        stderr.contains(
            "WARNING: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"),
        "{stderr}"
    );
}

#[test]
fn check_error_true_fails_the_build_after_the_warnings() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&format!(
        "# check=error=true\nFROM {} as base\nCMD [\"sh\"]\n",
        busybox()
    ));
    let out = rb.run(["build", "--progress=plain", &ctx.path().to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "WARNING: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("ERROR: lint violation found for rules: FromAsCasing"),
        "{stderr}"
    );
}

#[test]
fn check_flag_reports_without_building() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&format!(
        "FROM {} as base\nRUN exit 1\nFROM base\nMAINTAINER me\n",
        busybox()
    ));
    let out = rb.run(["build", "--check", &ctx.path().to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings make the check fail; `RUN exit 1` was never run.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("Check complete, 2 warnings have been found!\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\nDockerfile:1\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(">>> MAINTAINER me"), "{stdout}");
    assert!(stderr.contains("build checks found 2 warnings"), "{stderr}");
    assert!(!stderr.contains("exit code"), "{stderr}");

    let clean = context(&format!("FROM {}\nCMD [\"sh\"]\n", busybox()));
    let out = rb.run(["build", "--check", &clean.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Check complete, no warnings found.\n"
    );
}

#[test]
fn copy_ignored_file_uses_the_contexts_dockerignore_when_enabled() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = context(&format!(
        "# check=experimental=CopyIgnoredFile\nFROM {}\nCOPY keep.txt secret.txt /\n",
        busybox()
    ));
    std::fs::write(ctx.path().join("keep.txt"), "k").expect("write");
    std::fs::write(ctx.path().join("secret.txt"), "s").expect("write");
    std::fs::write(ctx.path().join(".dockerignore"), "secret.txt\n").expect("write");
    let out = rb.run(["build", "--check", &ctx.path().to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "WARNING: CopyIgnoredFile - https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/\n\
             Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore\n\
             Dockerfile:3\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("keep.txt\" that"), "{stdout}");

    // A `!` re-inclusion turns the check off, as in BuildKit.
    std::fs::write(ctx.path().join(".dockerignore"), "*.txt\n!keep.txt\n").expect("write");
    let out = rb.run(["build", "--check", &ctx.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
