//! BuildKit's texts and behaviours through the CLI: the error messages
//! users grep for, entitlements, masked secret env values, `--shm-size`
//! and `--ulimit`, and a Dockerfile read through a symlink. Each test names
//! the BuildKit integration test it follows.

mod common;
use common::*;
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn busybox() -> String {
    format!("{}/library/busybox:latest", registry())
}

/// Run a build expected to fail with exit code 1; its stderr.
fn fails(rb: &Rbuild, args: &[&str]) -> String {
    let out = rb.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "expected exit 1:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn frontend_errors_have_buildkits_words() {
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let c = ctx.path().to_string_lossy().to_string();
    for (df, want) in [
        // testCopyInvalidChmod
        (
            "FROM scratch\nCOPY --chmod=64a foo /\n",
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777",
        ),
        // testMountInvalid
        (
            "FROM scratch\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n",
            "unknown flag: --mont (did you mean mount?)",
        ),
        // testMountFromError
        (
            "FROM scratch AS test\nFROM scratch\nENV ttt=test\nRUN --mount=from=$ttt,type=cache,target=/tmp ls\n",
            "'from' doesn't support variable expansion, define alias stage instead",
        ),
        // testOutOfOrderStage
        (
            "FROM scratch AS target\nCOPY --from=build / /out\nFROM scratch AS build\nFROM target\n",
            "cannot copy from stage \"build\", it needs to be defined before current stage \"target\"",
        ),
        // testWarningsBeforeError
        (
            "FROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n",
            "dockerfile parse error on line 3: unknown instruction: BADCMD",
        ),
    ] {
        write(ctx.path(), "Dockerfile", df);
        let err = fails(&rb, &["build", &c]);
        assert!(err.contains(want), "{df}\n{err}");
    }
    // The warnings found before the parse error are printed.
    assert!(
        err_has_warning(
            &rb,
            &c,
            "StageNameCasing: Stage name 'BadStageName' should be lowercase (line 1)"
        ),
        "StageNameCasing missing"
    );
}

fn err_has_warning(rb: &Rbuild, ctx: &str, warning: &str) -> bool {
    fails(rb, &["build", ctx]).contains(warning)
}

#[test]
fn entitlements_are_named_as_buildkit_names_them() {
    // testRunHostNetwork / testRunSecurityInsecure, denied.
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let c = ctx.path().to_string_lossy().to_string();
    for (flag, want) in [
        ("--network=host", "entitlement network.host is not allowed"),
        (
            "--security=insecure",
            "entitlement security.insecure is not allowed",
        ),
    ] {
        write(
            ctx.path(),
            "Dockerfile",
            &format!("FROM {}\nRUN {flag} true\n", busybox()),
        );
        require_registry();
        let err = fails(&rb, &["build", &c]);
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn missing_required_secret_and_masked_secret_env() {
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let c = ctx.path().to_string_lossy().to_string();
    // testSecretRequiredWithoutValue
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nRUN --mount=type=secret,required,id=mysecret true\n",
            busybox()
        ),
    );
    let err = fails(&rb, &["build", &c]);
    assert!(err.contains("secret mysecret: not found"), "{err}");
    // testSecretAsEnviron: the step name shows `****`, never the value.
    write(ctx.path(), "pw", "pw");
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nENV SECRET_ENV=foo\nRUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ ! -f /run/secrets/mysecret ]\n",
            busybox()
        ),
    );
    let secret = format!("id=mysecret,src={}/pw", c);
    let log = rb.ok(["build", "--progress=plain", "--secret", &secret, &c]);
    assert!(log.contains("[ \"****\" == \"pw\" ] && "), "{log}");
    assert!(!log.contains("[ \"foo\""), "{log}");
}

#[test]
fn shm_size_and_ulimit_reach_run() {
    // testShmSize / testUlimit.
    require_root();
    require_registry();
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    let out = tempfile::tempdir().expect("tmp");
    write(
        ctx.path(),
        "Dockerfile",
        &format!(
            "FROM {} AS base\nRUN mount | grep /dev/shm > /shm && ulimit -n > /ulimit\nFROM scratch\nCOPY --from=base /shm /ulimit /\n",
            busybox()
        ),
    );
    let dest = format!("type=local,dest={}", out.path().display());
    rb.ok([
        "build",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=1062:1062",
        "-o",
        &dest,
        &ctx.path().to_string_lossy(),
    ]);
    let shm = std::fs::read_to_string(out.path().join("shm")).expect("shm");
    assert!(shm.contains("size=131072k"), "{shm}");
    assert_eq!(shm.lines().count(), 1, "one /dev/shm mount: {shm}");
    let ulimit = std::fs::read_to_string(out.path().join("ulimit")).expect("ulimit");
    assert_eq!(ulimit.trim(), "1062");
    // A bad value is a usage error (exit 2), as for every flag.
    let bad = rb.run([
        "build",
        "--ulimit",
        "bogus=1",
        &ctx.path().to_string_lossy(),
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid ulimit type: bogus"), "{err}");
}

#[test]
fn a_symlinked_dockerfile_is_followed() {
    // testSymlinkedDockerfile; with -f naming the link, too.
    let rb = Rbuild::new();
    let ctx = tempfile::tempdir().expect("tmp");
    write(ctx.path(), "Dockerfile.web", "FROM scratch\nENV foo bar\n");
    std::os::unix::fs::symlink("Dockerfile.web", ctx.path().join("Dockerfile")).expect("link");
    let c = ctx.path().to_string_lossy().to_string();
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    rb.ok(["build", "-o", &dest, &c]);
    let f = ctx.path().join("Dockerfile").to_string_lossy().to_string();
    rb.ok(["build", "-f", &f, "-o", &dest, &c]);
}
