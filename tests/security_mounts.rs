//! Security: bind mounts never write the host, and no step sees what
//! `.dockerignore` excludes (issue "Bind mounts never write the host").
//!
//! Each test runs on both runtimes (the embedded youki sandbox and runc)
//! and fails if its hole comes back: a `rw` bind of the context that
//! deletes and plants files in the user's directory, a bind that shows an
//! ignored `.env`, a COPY or a RUN that reads an ignored file through a
//! symlink, and a `rw` bind of a stage whose writes reach the stage.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

const RUNTIMES: [&str; 2] = ["embedded", "runc"];

/// What `.env` holds: it must never reach an image or a step's output.
const SECRET: &str = "API_TOKEN=s3cr3t-do-not-leak";

/// A context with main.go, .git/hooks/, an ignored .env and `link -> .env`.
fn context(dockerfile_body: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    let p = ctx.path();
    std::fs::write(p.join("main.go"), "package main\n\nfunc main() {}\n").expect("main.go");
    std::fs::create_dir_all(p.join(".git/hooks")).expect(".git/hooks");
    std::fs::write(p.join(".git/HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    std::fs::write(p.join(".git/hooks/pre-commit.sample"), "#!/bin/sh\n").expect("hook");
    std::fs::write(p.join(".env"), SECRET).expect(".env");
    std::fs::write(p.join(".dockerignore"), ".env\n").expect(".dockerignore");
    std::os::unix::fs::symlink(".env", p.join("link")).expect("link");
    std::fs::write(
        p.join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\n{dockerfile_body}",
            registry()
        ),
    )
    .expect("Dockerfile");
    ctx
}

/// Every entry under `dir`, byte for byte: path, type, mode, owner, size,
/// mtime and content (or link target).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let rel = format!("{rel}/{}", n.to_string_lossy());
            let m = std::fs::symlink_metadata(&p).expect("stat");
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).expect("link").display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!("{:?}", std::fs::read(&p).expect("read"))
            };
            out.push(format!(
                "{rel} {:o} {}:{} {} {}.{} {what}",
                m.permissions().mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                m.mtime_nsec()
            ));
            if m.is_dir() {
                walk(&p, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out
}

/// `rbuild build --runtime RUNTIME -o type=local,dest=ROOTFS CTX`.
fn build(rb: &Rbuild, runtime: &str, ctx: &Path, rootfs: &Path) -> Output {
    rb.run([
        "build".as_ref(),
        "--runtime".as_ref(),
        runtime.as_ref(),
        "-o".as_ref(),
        format!("type=local,dest={}", rootfs.display()).as_ref(),
        ctx.as_os_str(),
    ])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the build succeeded.
fn ok(runtime: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{runtime}: rbuild failed ({}):\n{}",
        out.status,
        stderr(out)
    );
}

/// Fails if any file under `dir` holds the secret.
fn assert_no_secret(runtime: &str, dir: &Path) {
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", SECRET])
        .arg(dir)
        .output()
        .expect("grep");
    assert!(
        grep.stdout.is_empty(),
        "{runtime}: .env's content leaked into: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

#[test]
fn rw_context_bind_never_writes_the_host_context() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let ctx = context(
            "RUN --mount=type=bind,target=/src,rw rm -f /src/main.go && mkdir -p /src/.git/hooks \
             && echo pwned > /src/.git/hooks/post-checkout && test ! -e /src/main.go \
             && echo new > /src/new.txt\n\
             RUN --mount=type=bind,target=/src test -f /src/main.go \
             && test ! -e /src/.git/hooks/post-checkout && test ! -e /src/new.txt\n\
             RUN --mount=type=bind,target=/src,rw test -f /src/main.go && test ! -e /src/new.txt\n",
        );
        let before = listing(ctx.path());
        let rb = Rbuild::new();
        let rootfs = tempfile::tempdir().expect("tmp");
        ok(runtime, &build(&rb, runtime, ctx.path(), rootfs.path()));
        assert_eq!(
            listing(ctx.path()),
            before,
            "{runtime}: the host context changed"
        );
        assert!(!rootfs.path().join("src/new.txt").exists());
    }
}

#[test]
fn context_bind_shows_only_what_dockerignore_lets_through() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let rootfs = tempfile::tempdir().expect("tmp");
        // The ignored file is absent from a read-only and a rw bind, and a
        // link to it dangles.
        let ctx = context(
            "RUN --mount=type=bind,target=/src test -f /src/main.go && test -f /src/.git/HEAD \
             && test ! -e /src/.env && test -L /src/link && ! cat /src/link\n\
             RUN --mount=type=bind,target=/src,rw test ! -e /src/.env && ! cat /src/link\n\
             RUN --mount=type=bind,target=/src cat /src/link > /through-link || true\n",
        );
        ok(runtime, &build(&rb, runtime, ctx.path(), rootfs.path()));
        assert_no_secret(runtime, rootfs.path());
        // A RUN that reads .env fails: there is no such file, and a bind
        // of it (or of the link to it) is "not found".
        for body in [
            "RUN --mount=type=bind,target=/src cat /src/.env\n",
            "RUN --mount=type=bind,source=.env,target=/e cat /e\n",
            "RUN --mount=type=bind,source=link,target=/e,rw cat /e\n",
        ] {
            let ctx = context(body);
            let out = build(&rb, runtime, ctx.path(), rootfs.path());
            let err = stderr(&out);
            assert!(!out.status.success(), "{runtime}: {body} succeeded:\n{err}");
            assert!(
                !err.contains(SECRET),
                "{runtime}: {body} printed .env:\n{err}"
            );
        }
    }
}

/// BuildKit's context transfer leaves ignored files behind, so `link`
/// dangles there and `COPY link` fails with "not found": the image never
/// holds .env's content.
#[test]
fn copy_of_a_link_to_an_ignored_file_does_not_copy_the_file() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let rootfs = tempfile::tempdir().expect("tmp");
        let ctx = context("COPY link /x\n");
        let out = build(&rb, runtime, ctx.path(), rootfs.path());
        let err = stderr(&out);
        assert!(!err.contains(SECRET), "{runtime}: secret in output:\n{err}");
        assert!(!out.status.success(), "{runtime}: COPY link succeeded");
        assert!(err.contains("not found"), "{runtime}: {err}");
        assert_no_secret(runtime, rootfs.path());
        // The directory holding the link copies the link itself.
        let ctx = context("COPY . /ctx/\nRUN test -L /ctx/link && ! cat /ctx/link\n");
        ok(runtime, &build(&rb, runtime, ctx.path(), rootfs.path()));
        assert_no_secret(runtime, rootfs.path());
        assert!(!rootfs.path().join("ctx/.env").exists());
        let link = std::fs::read_link(rootfs.path().join("ctx/link")).expect("ctx/link");
        assert_eq!(link, Path::new(".env"));
    }
}

#[test]
fn rw_stage_bind_writes_are_discarded() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let rootfs = tempfile::tempdir().expect("tmp");
        // `data` has layers of its own on busybox (an overlay view);
        // `files` is one layer on scratch (a plain directory).
        let ctx = tempfile::tempdir().expect("tmp");
        std::fs::write(ctx.path().join("main.go"), "package main\n").expect("main.go");
        let base = format!("{}/library/busybox:latest", registry());
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM {base} AS data\n\
                 RUN mkdir /data && echo original > /data/f\n\
                 FROM scratch AS files\n\
                 COPY main.go /main.go\n\
                 FROM {base}\n\
                 RUN --mount=type=bind,from=data,source=/data,target=/d,rw \
                 echo changed > /d/f && echo new > /d/g && grep -qx changed /d/f\n\
                 RUN --mount=type=bind,from=data,source=/data/f,target=/one,rw \
                 echo changed > /one && grep -qx changed /one\n\
                 RUN --mount=type=bind,from=files,target=/m,rw \
                 echo pwned > /m/main.go && touch /m/planted\n\
                 RUN --mount=type=bind,from=data,source=/data,target=/d \
                 grep -qx original /d/f && test ! -e /d/g\n\
                 RUN --mount=type=bind,from=data,source=/data,target=/d,rw \
                 grep -qx original /d/f && test ! -e /d/g\n\
                 RUN --mount=type=bind,from=files,target=/m \
                 grep -qx 'package main' /m/main.go && test ! -e /m/planted\n\
                 COPY --from=data /data /copied\n\
                 COPY --from=files / /files\n"
            ),
        )
        .expect("Dockerfile");
        ok(runtime, &build(&rb, runtime, ctx.path(), rootfs.path()));
        let r = rootfs.path();
        assert_eq!(
            std::fs::read_to_string(r.join("copied/f")).expect("f"),
            "original\n"
        );
        assert!(!r.join("copied/g").exists(), "{runtime}: copied/g");
        assert_eq!(
            std::fs::read_to_string(r.join("files/main.go")).expect("main.go"),
            "package main\n"
        );
        assert!(!r.join("files/planted").exists(), "{runtime}: planted");
        // Mount points may stay in the image, empty.
        for p in ["d", "one", "m"] {
            let p = r.join(p);
            let empty = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::read_dir(&p).expect("dir").next().is_none(),
                Ok(m) => m.len() == 0,
                Err(_) => true,
            };
            assert!(empty, "{runtime}: {} has content in the image", p.display());
        }
    }
}
