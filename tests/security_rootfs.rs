//! Security: a hostile base image cannot make COPY, WORKDIR, COPY --from
//! or a RUN's mounts write, change or read a host path through symlinks
//! (issue "the user-space resolver gave up after 40 links": it followed 40
//! links itself and handed the rest of the chain to the kernel, which
//! followed it to the host).
//!
//! Each test builds against a hostile stage made in the test: a busybox
//! stage whose `RUN` plants a chain of 46 symlinks ending at a host temp
//! dir (the old resolver's 40 plus a few the kernel would follow), one of
//! 301 (more than BuildKit's 255 too), and an absolute link straight to
//! that host dir. Innocent instructions on top of it either fail with
//! "too many links" or land inside the image (the absolute link resolves
//! in the rootfs, as in BuildKit); the host dir never changes and its
//! secret never reaches an image or the output. Every build runs on both
//! runtimes (the default embedded sandbox and runc), since the hostile
//! stage is made by a RUN.
//!
//! BuildKit follows up to 255 links in user space (continuity's
//! `RootPath`), so it fails with "too many links" only on the long chain;
//! rbuild lets the kernel resolve in the root (`openat2(RESOLVE_IN_ROOT)`),
//! whose limit is 40, so it fails closed on both chains.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The default runtime, then runc.
const RUNTIMES: [Option<&str>; 2] = [None, Some("runc")];

/// What the host's file holds: it must never reach an image or the output.
const SECRET: &str = "host-secret-never-in-an-image";

/// Links in the short planted chain (plus the link at its head): more than
/// the old resolver's 40, few enough that the kernel would follow the rest.
const CHAIN: usize = 45;

/// Links in the long planted chain: more than BuildKit's 255 too.
const LONG_CHAIN: usize = 300;

/// A host dir holding `secret` (mode 0600), which no build may touch.
struct Host {
    dir: tempfile::TempDir,
    before: Vec<String>,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("secret"), SECRET).expect("write");
        let before = listing(dir.path());
        Host { dir, before }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fails unless the host dir is exactly as it was: nothing created,
    /// changed, chmodded, chowned or removed.
    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            listing(self.path()),
            self.before,
            "{what}: the host dir changed"
        );
    }
}

/// Every entry under `dir`: name, mode, owner, size, mtime.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).expect("stat");
            format!(
                "{} {:o} {}:{} {} {}",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime()
            )
        })
        .collect();
    out.sort();
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if std::fs::symlink_metadata(&p).expect("stat").is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A context whose Dockerfile starts with the hostile stage `evil`:
/// `/c0 -> /c1 -> … -> /c45 -> <host>` with `/app` and `/chain/x` at its
/// head, `/d0 -> … -> /d300 -> <host>` with `/long` at its head, and
/// `/hostlink -> <host>`; then `body`.
fn context(host: &Path, body: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(ctx.path().join("app.py"), "print('hello')\n").expect("app.py");
    let h = host.display();
    let dockerfile = format!(
        "FROM {reg}/library/busybox:latest AS evil\n\
         RUN i=0; while [ $i -lt {CHAIN} ]; do ln -s /c$((i+1)) /c$i; i=$((i+1)); done; \
         i=0; while [ $i -lt {LONG_CHAIN} ]; do ln -s /d$((i+1)) /d$i; i=$((i+1)); done; \
         ln -s {h} /c{CHAIN} && ln -s {h} /d{LONG_CHAIN} && mkdir /chain \
         && ln -s /c0 /chain/x && ln -s /c0 /app && ln -s /d0 /long && ln -s {h} /hostlink\n\
         {body}",
        reg = registry()
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    ctx
}

/// `rbuild build [--runtime R] -o type=local,dest=OUT CTX`.
fn build(rb: &Rbuild, runtime: Option<&str>, ctx: &Path, out: &Path) -> Output {
    let mut args: Vec<std::ffi::OsString> = vec!["build".into()];
    if let Some(r) = runtime {
        args.push("--runtime".into());
        args.push(r.into());
    }
    args.push("-o".into());
    args.push(format!("type=local,dest={}", out.display()).into());
    args.push(ctx.as_os_str().to_os_string());
    rb.run(args)
}

fn name(runtime: Option<&str>) -> &str {
    runtime.unwrap_or("default runtime")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the build failed because of the link chain, without the
/// secret in its output.
fn fails_with_too_many_links(what: &str, out: &Output) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: the build succeeded:\n{err}");
    assert!(
        err.contains("too many links") || err.contains("Too many levels of symbolic links"),
        "{what}: not a link-chain error:\n{err}"
    );
    assert!(!err.contains(SECRET), "{what}: the host secret was printed");
}

fn succeeds(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: rbuild failed ({}):\n{}",
        out.status,
        stderr(out)
    );
}

/// Fails if any file under `dir` holds the secret.
fn assert_no_secret(what: &str, dir: &Path) {
    let grep = std::process::Command::new("grep")
        .args(["-r", "-l", "-F", SECRET])
        .arg(dir)
        .output()
        .expect("grep");
    assert!(
        grep.stdout.is_empty(),
        "{what}: the host secret reached the image: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

/// The host path `host` as it is found inside an exported rootfs `out`.
fn inside(out: &Path, host: &Path) -> PathBuf {
    out.join(host.strip_prefix("/").expect("absolute"))
}

#[test]
fn workdir_and_copy_onto_a_link_chain_fail_closed() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let host = Host::new();
        for body in [
            "FROM evil\nWORKDIR /app\n",
            "FROM evil\nCOPY app.py /app/\n",
            "FROM evil\nCOPY app.py /app/app.py\n",
            "FROM evil\nRUN --mount=type=tmpfs,target=/app/m true\n",
            "FROM evil\nWORKDIR /long\n",
            "FROM evil\nCOPY app.py /long/\n",
            "FROM evil\nWORKDIR /\nRUN --mount=type=tmpfs,target=/long/m true\n",
        ] {
            let what = format!("{}: {body:?}", name(runtime));
            let ctx = context(host.path(), body);
            let out = tempfile::tempdir().expect("tmp");
            fails_with_too_many_links(&what, &build(&rb, runtime, ctx.path(), out.path()));
            host.assert_untouched(&what);
        }
    }
}

#[test]
fn workdir_and_copy_onto_an_absolute_link_land_inside_the_image() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let host = Host::new();
        let what = name(runtime);
        // The RUN's working directory and a mount target go through the
        // link too: both are resolved inside the rootfs.
        let ctx = context(
            host.path(),
            "FROM evil\nWORKDIR /hostlink/app\nCOPY app.py /hostlink/app/\n\
             RUN --mount=type=tmpfs,target=/hostlink/m test -f app.py && touch made-by-run\n",
        );
        let out = tempfile::tempdir().expect("tmp");
        succeeds(what, &build(&rb, runtime, ctx.path(), out.path()));
        host.assert_untouched(what);
        let app = inside(out.path(), host.path()).join("app");
        assert_eq!(
            std::fs::read_to_string(app.join("app.py")).expect("app.py inside the image"),
            "print('hello')\n",
            "{what}"
        );
        assert!(app.join("made-by-run").is_file(), "{what}");
        // The mount point stub was removed again; the link is still a link.
        assert!(
            !inside(out.path(), host.path()).join("m").exists(),
            "{what}"
        );
        assert!(std::fs::symlink_metadata(out.path().join("hostlink"))
            .expect("hostlink")
            .file_type()
            .is_symlink());
        assert_no_secret(what, out.path());
    }
}

#[test]
fn copy_from_a_stage_never_reads_the_host_through_links() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let host = Host::new();
        let base = format!("FROM {}/library/busybox:latest\n", registry());
        // Through the chain: "too many links", as BuildKit.
        for copy in [
            "COPY --from=evil /chain/x /got\n",
            "COPY --from=evil /chain/x/secret /got\n",
            "COPY --from=evil /long/secret /got\n",
        ] {
            let what = format!("{}: {copy:?}", name(runtime));
            let ctx = context(host.path(), &format!("{base}{copy}"));
            let out = tempfile::tempdir().expect("tmp");
            fails_with_too_many_links(&what, &build(&rb, runtime, ctx.path(), out.path()));
            host.assert_untouched(&what);
        }
        // Through the absolute link: resolved inside the stage, which has
        // no such file.
        let what = format!("{}: COPY --from=evil /hostlink/secret", name(runtime));
        let ctx = context(
            host.path(),
            &format!("{base}COPY --from=evil /hostlink/secret /got\n"),
        );
        let out = tempfile::tempdir().expect("tmp");
        let res = build(&rb, runtime, ctx.path(), out.path());
        let err = stderr(&res);
        assert!(!res.status.success(), "{what}: succeeded:\n{err}");
        assert!(err.contains("not found"), "{what}: {err}");
        assert!(!err.contains(SECRET), "{what}: the host secret was printed");
        assert_no_secret(&what, out.path());
        // Copied as it is (the chain's head, not followed) it stays a link.
        let ctx = context(
            host.path(),
            &format!("{base}COPY --from=evil /chain /chain\n"),
        );
        let out = tempfile::tempdir().expect("tmp");
        succeeds(&what, &build(&rb, runtime, ctx.path(), out.path()));
        assert!(std::fs::symlink_metadata(out.path().join("chain/x"))
            .expect("chain/x")
            .file_type()
            .is_symlink());
        assert_no_secret(&what, out.path());
        host.assert_untouched(&what);
    }
}

#[test]
fn bind_mounts_of_a_stage_never_reach_the_host() {
    require_root();
    require_registry();
    for runtime in RUNTIMES {
        let rb = Rbuild::new();
        let host = Host::new();
        let base = format!("FROM {}/library/busybox:latest\n", registry());
        // The bind source is the chain itself: refused.
        let what = format!("{}: bind source=/chain/x", name(runtime));
        let ctx = context(
            host.path(),
            &format!(
                "{base}RUN --mount=type=bind,from=evil,source=/chain/x,target=/m,rw \
                 cat /m/secret > /leak; echo pwned > /m/pwned; true\n"
            ),
        );
        let out = tempfile::tempdir().expect("tmp");
        fails_with_too_many_links(&what, &build(&rb, runtime, ctx.path(), out.path()));
        host.assert_untouched(&what);
        // A rw bind of the dir holding the chain: inside the sandbox the
        // links resolve in the sandbox's own root, never the host's, and
        // a nested mount target through the chain is refused.
        let what = format!("{}: bind source=/chain,rw", name(runtime));
        let ctx = context(
            host.path(),
            &format!(
                "{base}RUN --mount=type=bind,from=evil,source=/chain,target=/m,rw \
                 sh -c 'cat /m/x/secret > /leak; echo pwned > /m/x/pwned; test -L /m/x'\n"
            ),
        );
        let out = tempfile::tempdir().expect("tmp");
        succeeds(&what, &build(&rb, runtime, ctx.path(), out.path()));
        host.assert_untouched(&what);
        assert_no_secret(&what, out.path());
        let what = format!("{}: nested target through a link", name(runtime));
        let ctx = context(
            host.path(),
            &format!(
                "{base}RUN --mount=type=bind,from=evil,source=/chain,target=/m \
                 --mount=type=tmpfs,target=/m/x/t true\n"
            ),
        );
        let out = tempfile::tempdir().expect("tmp");
        // Resolved inside the bound tree, the chain's head dangles there:
        // refused rather than handed to the runtime.
        let res = build(&rb, runtime, ctx.path(), out.path());
        assert!(
            !res.status.success(),
            "{what}: succeeded:\n{}",
            stderr(&res)
        );
        host.assert_untouched(&what);
    }
}
