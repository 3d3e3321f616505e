//! Git sources in every BuildKit form, end to end, against repositories
//! served over git's dumb HTTP protocol by a small server in the test (no
//! internet): `ADD --checksum=<commit>`, the query form (`?ref=`, `branch=`,
//! `tag=`, `commit=`, `subdir=`, `keep-git-dir=`, `submodules=`) mixed with
//! `#ref:subdir`, its errors, `file://` repositories, `GIT_AUTH_TOKEN` for a
//! private remote, git through a proxy, and a git URL as the build context.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Run git with no user or system configuration; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    require_tool("git", "git");
    let out = Command::new("git")
        .args(["-c", "user.name=rbuild", "-c", "user.email=rbuild@test"])
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_COMMITTER_DATE", "2023-11-14T22:15:01Z")
        .env("GIT_AUTHOR_DATE", "2023-11-14T22:15:01Z")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A static file server for dumb-HTTP git: logs each request target, and
/// with `auth` answers 401 to requests without that `Authorization` value.
/// Absolute targets (a proxy's requests) are served by their path.
struct Http {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Http {
    fn start(dir: PathBuf, auth: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (dir, auth, log) = (dir.clone(), auth.clone(), l.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().expect("clone"));
                    let mut first = String::new();
                    let _ = r.read_line(&mut first);
                    let mut authorized = auth.is_none();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("authorization")
                                && Some(v.trim()) == auth.as_deref()
                            {
                                authorized = true;
                            }
                        }
                    }
                    let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                    log.lock().expect("log").push(target.clone());
                    let path = match target.split_once("://") {
                        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
                        None => target,
                    };
                    let path = path
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    let mut w = conn;
                    let body = std::fs::read(dir.join(path));
                    let _ = match (authorized, body) {
                        (false, _) => w.write_all(
                            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        ),
                        (true, Ok(b)) => w
                            .write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                    b.len()
                                )
                                .as_bytes(),
                            )
                            .and_then(|()| w.write_all(&b)),
                        (true, Err(_)) => w.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        ),
                    };
                });
            }
        });
        Http { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

/// `www/repo.git` (bare, served) with a submodule `www/sm.git` named by
/// its served URL: `base` = foo "base", sub/s "sub", submodule `sm` (its
/// `file` = "123"), lightweight tag `v1`; `master` = foo "latest" with the
/// annotated tag `v2`. Setting it up never contacts the server.
struct Repo {
    dir: tempfile::TempDir,
    base: String,
    latest: String,
    v2_tag: String,
}

/// A server for `<tmp>/www` and the repository made there.
fn serve_repo(auth: Option<String>) -> (Http, Repo) {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Http::start(dir.path().join("www"), auth);
    let (www, work, smw) = (
        dir.path().join("www"),
        dir.path().join("work"),
        dir.path().join("smw"),
    );
    for d in [&www, &work, &smw] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    git(&smw, &["init", "-q"]);
    std::fs::write(smw.join("file"), "123\n").expect("write");
    git(&smw, &["add", "file"]);
    git(&smw, &["commit", "-q", "-m", "sm"]);
    git(&smw, &["clone", "-q", "--bare", ".", "../www/sm.git"]);
    git(&www.join("sm.git"), &["update-server-info"]);

    git(&work, &["init", "-q"]);
    std::fs::write(work.join("foo"), "base\n").expect("write");
    std::fs::create_dir(work.join("sub")).expect("mkdir");
    std::fs::write(work.join("sub/s"), "sub\n").expect("write");
    git(&work, &["submodule", "-q", "add", "../smw", "sm"]);
    let sm_url = srv.url("sm.git");
    git(
        &work,
        &["config", "-f", ".gitmodules", "submodule.sm.url", &sm_url],
    );
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "base"]);
    git(&work, &["branch", "base"]);
    git(&work, &["tag", "v1"]);
    let base = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("foo"), "latest\n").expect("write");
    git(&work, &["commit", "-q", "-am", "latest"]);
    git(&work, &["tag", "-a", "v2", "-m", "release 2"]);
    let latest = git(&work, &["rev-parse", "HEAD"]);
    let v2_tag = git(&work, &["rev-parse", "v2"]);
    git(&work, &["clone", "-q", "--bare", ".", "../www/repo.git"]);
    git(&www.join("repo.git"), &["update-server-info"]);
    let repo = Repo {
        dir,
        base,
        latest,
        v2_tag,
    };
    (srv, repo)
}

fn build(
    rb: &Rbuild,
    ctx: &Path,
    dockerfile: &str,
    extra: &[&str],
) -> (PathBuf, String, tempfile::TempDir) {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    let ctx_s = ctx.to_string_lossy().to_string();
    let mut args = vec!["build", "--progress=plain", "-o", &dest];
    args.extend_from_slice(extra);
    args.push(&ctx_s);
    let log = rb.ok(&args);
    (out.path().to_path_buf(), log, out)
}

fn fails(rb: &Rbuild, ctx: &Path, dockerfile: &str) -> String {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let out = rb.run(["build", "--progress=plain", &ctx.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "build succeeded:\n{err}");
    err
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

/// The step whose label contains `label` was CACHED in `log`.
fn cached(log: &str, label: &str) -> bool {
    let Some(n) = log
        .lines()
        .find(|l| l.contains(label))
        .and_then(|l| l.split_whitespace().next())
    else {
        panic!("no step {label:?} in:\n{log}");
    };
    log.lines().any(|l| l == format!("{n} CACHED"))
}

#[test]
fn add_git_query_forms_checksums_and_submodules() {
    require_root();
    let (srv, repo) = serve_repo(None);
    let r = srv.url("repo.git");
    let short = &repo.latest[..8];
    let (base, tag) = (&repo.base, &repo.v2_tag);
    let ctx = tempfile::tempdir().expect("tmp");
    let rb = Rbuild::new();
    let df = format!(
        "FROM scratch\n\
         ADD {r}?ref=base /ref/\n\
         ADD {r}?branch=base /branch/\n\
         ADD {r}?tag=v2#refs/tags/v2 /tag/\n\
         ADD {r}?commit={short} /commit/\n\
         ADD {r}?subdir=sub&ref=base /sub/\n\
         ADD {r}#base:sub /subold/\n\
         ADD {r}?keep-git-dir=true /keep/\n\
         ADD --checksum={base} {r}#v1 /checksum/\n\
         ADD --checksum={tag} {r}#v2 /tagobj/\n\
         ADD {r}?submodules=false /nosub/\n"
    );
    let (out, log, _keep) = build(&rb, ctx.path(), &df, &[]);
    for (p, want) in [
        ("ref/foo", "base\n"),
        ("branch/foo", "base\n"),
        ("tag/foo", "latest\n"),
        ("commit/foo", "latest\n"),
        ("sub/s", "sub\n"),
        ("subold/s", "sub\n"),
        ("keep/foo", "latest\n"),
        ("checksum/foo", "base\n"),
        ("tagobj/foo", "latest\n"),
        ("nosub/foo", "latest\n"),
    ] {
        assert_eq!(read(&out, p), want, "{p}");
    }
    assert!(!out.join("sub/foo").exists() && !out.join("ref/.git").exists());
    assert_eq!(read(&out, "keep/.git/HEAD").trim(), repo.latest);
    // Submodules are checked out unless submodules=false.
    assert_eq!(read(&out, "ref/sm/file"), "123\n");
    assert!(out.join("nosub/sm").is_dir() && !out.join("nosub/sm/file").exists());

    // The same ADD with a --checksum (full or short) hits the first build's cache.
    let df2 = format!(
        "FROM scratch\nADD --checksum={} {r}?ref=base /ref/\n",
        &base[..10]
    );
    let (_, log2, _keep) = build(&rb, ctx.path(), &df2, &[]);
    assert!(cached(&log2, "[1/1]"), "not cached:\n{log2}\nfirst:\n{log}");
}

#[test]
fn git_checksum_and_ref_errors_are_buildkits() {
    require_root();
    let (srv, repo) = serve_repo(None);
    let r = srv.url("repo.git");
    let ctx = tempfile::tempdir().expect("tmp");
    let rb = Rbuild::new();
    for (df, want) in [
        (
            format!("FROM scratch\nADD --checksum={} {r}#v2 /x\n", repo.base),
            "expected checksum to match",
        ),
        (
            format!("FROM scratch\nADD {r}?commit={} /x\n", &repo.base[..8]),
            "expected checksum to match",
        ),
        (
            format!("FROM scratch\nADD --checksum=foobar {r}#v2 /x\n"),
            "expected hex commit hash",
        ),
        (
            format!("FROM scratch\nADD {r}?branch=v1 /x\n"),
            "repository does not contain ref refs/heads/v1",
        ),
        (
            format!("FROM scratch\nADD {r}?tag=v2#refs/heads/master /x\n"),
            "ref conflicts",
        ),
        (
            format!("FROM scratch\nADD {r}?depth=1 /x\n"),
            "unexpected query parameter",
        ),
    ] {
        let err = fails(&rb, ctx.path(), &df);
        assert!(err.contains(want), "{df}: want {want:?} in:\n{err}");
        assert!(err.contains("Dockerfile:2"), "{df}:\n{err}");
    }
}

#[test]
fn file_urls_private_remotes_and_proxies() {
    require_root();
    // A local bare repository through file://.
    let (srv, repo) = serve_repo(None);
    let ctx = tempfile::tempdir().expect("tmp");
    let rb = Rbuild::new();
    let file_url = format!("file://{}", repo.dir.path().join("www/repo.git").display());
    let (out, _, _keep) = build(
        &rb,
        ctx.path(),
        &format!("FROM scratch\nADD {file_url}?ref=base&submodules=false /f/\n"),
        &[],
    );
    assert_eq!(read(&out, "f/foo"), "base\n");

    // Through a proxy: the remote's host exists only behind it.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nADD http://git.proxied.invalid/repo.git?submodules=false /p/\n",
    )
    .expect("write Dockerfile");
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(rb.path())
        .args(["build", "--progress=plain", "-o"])
        .arg(format!(
            "type=local,dest={}",
            ctx.path().join("out").display()
        ))
        .arg(ctx.path())
        .env("HTTP_PROXY", format!("http://127.0.0.1:{}", srv.port))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run rbuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&ctx.path().join("out"), "p/foo"), "latest\n");
    assert!(
        srv.requests()
            .iter()
            .any(|t| t.starts_with("http://git.proxied.invalid/repo.git/")),
        "{:?}",
        srv.requests()
    );

    // A private remote: without GIT_AUTH_TOKEN it fails, with it the
    // server sees x-access-token basic auth, and the kept .git has no token.
    let token = "s3cret-t0ken";
    let header = {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s 'x-access-token:{token}' | base64 -w0"))
            .output()
            .expect("base64");
        format!("basic {}", String::from_utf8_lossy(&out.stdout))
    };
    let (private, _repo2) = serve_repo(Some(header));
    let url = private.url("repo.git");
    let df = format!("FROM scratch\nADD {url}?ref=base&submodules=false&keep-git-dir=true /k/\n");
    let err = fails(&rb, ctx.path(), &df);
    assert!(err.contains("failed to fetch remote"), "{err}");
    let tok_file = ctx.path().join("token");
    std::fs::write(&tok_file, token).expect("write token");
    let secret = format!("id=GIT_AUTH_TOKEN,src={}", tok_file.display());
    let (out, _, _keep) = build(&rb, ctx.path(), &df, &["--secret", &secret]);
    assert_eq!(read(&out, "k/foo"), "base\n");
    assert!(!read(&out, "k/.git/config").contains(token));
}

#[test]
fn a_git_url_is_the_build_context() {
    require_root();
    let (srv, _repo) = serve_repo(None);
    // Put a Dockerfile in the repository (on master).
    let work = _repo.dir.path().join("work");
    std::fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY foo sub/s /\n").expect("write");
    git(&work, &["add", "Dockerfile"]);
    git(&work, &["commit", "-q", "-m", "dockerfile"]);
    git(&work, &["push", "-q", "../www/repo.git", "master"]);
    git(
        &_repo.dir.path().join("www/repo.git"),
        &["update-server-info"],
    );
    let rb = Rbuild::new();
    let out = tempfile::tempdir().expect("tmp");
    let img = out.path().join("img.tar");
    let url = format!("{}#master", srv.url("repo.git"));
    rb.ok([
        "build",
        "--progress=plain",
        "--build-arg",
        "SOURCE_DATE_EPOCH=context",
        "-o",
        &format!("type=oci,dest={}", img.display()),
        &url,
    ]);
    // The image config is dated with the commit (2023-11-14T22:15:01Z).
    let tar = std::fs::read(&img).expect("read image");
    let text = String::from_utf8_lossy(&tar);
    assert!(
        text.contains("\"created\":\"2023-11-14T22:15:01Z\""),
        "no commit date in the image"
    );
    let dest = out.path().join("files");
    rb.ok([
        "build",
        "--progress=plain",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        &url,
    ]);
    assert_eq!(read(&dest, "foo"), "latest\n");
    assert_eq!(read(&dest, "s"), "sub\n");
}
