//! Git sources end to end, against a local `git daemon` (git:// protocol)
//! that each test starts on a free port: `ADD` of a branch, a tag, a commit
//! and `#ref:subdir`, `--keep-git-dir`, `--build-context name=<git url>`,
//! and a rebuild when the branch moves.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Run git with no user or system configuration; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    require_tool("git", "git");
    let out = Command::new("git")
        .args(["-c", "user.name=rbuild", "-c", "user.email=rbuild@test"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository served by `git daemon` as `git://127.0.0.1:<port>/repo.git`,
/// with a work tree to commit and push from.
struct Server {
    dir: tempfile::TempDir,
    daemon: Child,
    url: String,
}

impl Server {
    /// Serve a repository whose first commit holds `files` on `main`.
    fn start(files: &[(&str, &str)]) -> Self {
        require_tool("git", "git");
        let dir = tempfile::tempdir().expect("tmp");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        let s = Self::serve(dir);
        s.commit(files, "first");
        git(&work, &["clone", "-q", "--bare", ".", "../base/repo.git"]);
        git(&work, &["remote", "add", "origin", "../base/repo.git"]);
        s
    }

    fn serve(dir: tempfile::TempDir) -> Self {
        let base = dir.path().join("base");
        std::fs::create_dir(&base).expect("mkdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // The daemon itself, not `git daemon` (a parent that would leave it
        // running when killed); quiet, so it holds no pipe of the test.
        let exec_path = git(dir.path(), &["--exec-path"]);
        let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
            ])
            .arg(&base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start git daemon (apt-get install -y git)");
        // Wait until the daemon accepts connections.
        let ready = (0..250).any(|_| {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            }
        });
        assert!(ready, "git daemon did not listen on port {port}");
        Self {
            dir,
            daemon,
            url: format!("git://127.0.0.1:{port}/repo.git"),
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Commit `files` (path, content; a `.sh` file is executable); returns
    /// the commit id.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let work = self.work();
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
            if path.ends_with(".sh") {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", message]);
        git(&work, &["rev-parse", "HEAD"])
    }

    fn push(&self) {
        git(&self.work(), &["push", "-q", "--tags", "origin", "main"]);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn build(rb: &Rbuild, ctx: &Path, extra: &[&str]) -> (PathBuf, String, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=local,dest={}", out.path().display());
    let ctx_s = ctx.to_string_lossy().to_string();
    let mut args = vec!["build", "--progress=plain", "-o", &dest];
    args.extend_from_slice(extra);
    args.push(&ctx_s);
    let log = rb.ok(&args);
    (out.path().to_path_buf(), log, out)
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
fn add_from_git_branch_tag_commit_and_subdir_and_rebuild_when_the_branch_moves() {
    require_root();
    require_registry();
    let srv = Server::start(&[
        ("a.txt", "one\n"),
        ("run.sh", "#!/bin/sh\necho run\n"),
        ("sub/s.txt", "sub\n"),
        ("sub/deep/d.txt", "deep\n"),
    ]);
    let first = git(&srv.work(), &["rev-parse", "HEAD"]);
    git(&srv.work(), &["tag", "-a", "v1", "-m", "release 1"]);
    let second = srv.commit(&[("a.txt", "two\n"), ("b.txt", "b\n")], "second");
    srv.push();

    let ctx = tempfile::tempdir().expect("tmp");
    let url = &srv.url;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\n\
             ADD {url}#v1 /tag\n\
             ADD {url}#{first} /bysha\n\
             ADD {url}#v1:sub /sub\n\
             ADD {url}#main /main\n\
             ADD --keep-git-dir=true {url}#main /keep\n",
            registry()
        ),
    )
    .expect("write Dockerfile");
    let rb = Rbuild::new();
    let (r, log, _keep) = build(&rb, ctx.path(), &[]);

    // A tag and a commit give the first commit, a branch its tip.
    assert_eq!(read(&r, "tag/a.txt"), "one\n");
    assert!(!r.join("tag/b.txt").exists());
    assert_eq!(read(&r, "bysha/a.txt"), "one\n");
    assert_eq!(read(&r, "main/a.txt"), "two\n");
    assert_eq!(read(&r, "main/b.txt"), "b\n");
    // #ref:subdir copies the subdirectory's contents.
    assert_eq!(read(&r, "sub/s.txt"), "sub\n");
    assert_eq!(read(&r, "sub/deep/d.txt"), "deep\n");
    assert!(!r.join("sub/a.txt").exists() && !r.join("sub/sub").exists());
    // No .git unless asked; files owned by root, modes from git.
    for d in ["tag", "bysha", "sub", "main"] {
        assert!(!r.join(d).join(".git").exists(), "{d}/.git exists");
    }
    let meta = std::fs::metadata(r.join("main/run.sh")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    let meta = std::fs::metadata(r.join("main/a.txt")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o644);
    // --keep-git-dir=true keeps a repository at the commit, origin set.
    assert_eq!(read(&r, "keep/.git/HEAD").trim(), second);
    assert!(read(&r, "keep/.git/config").contains(&format!("url = {url}")));
    assert!(!r.join("keep/.git/FETCH_HEAD").exists());
    assert_eq!(read(&r, "keep/a.txt"), "two\n");
    assert!(log.contains(&format!("main is commit {second}")), "{log}");
    assert!(log.contains(&format!("v1 is commit {first}")), "{log}");

    // Nothing moved: every step is cached.
    let (_, log, _keep) = build(&rb, ctx.path(), &[]);
    for step in ["[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"] {
        assert!(cached(&log, step), "{step} not cached:\n{log}");
    }

    // The branch moves: its steps rebuild, the tag, commit and subdir stay.
    let third = srv.commit(&[("c.txt", "c\n")], "third");
    srv.push();
    let (r, log, _keep) = build(&rb, ctx.path(), &[]);
    for step in ["[2/6]", "[3/6]", "[4/6]"] {
        assert!(cached(&log, step), "{step} not cached:\n{log}");
    }
    for step in ["[5/6]", "[6/6]"] {
        assert!(!cached(&log, step), "{step} cached:\n{log}");
    }
    assert_eq!(read(&r, "main/c.txt"), "c\n");
    assert_eq!(read(&r, "keep/.git/HEAD").trim(), third);
    assert!(!r.join("tag/c.txt").exists());
}

#[test]
fn git_build_context_and_unknown_refs() {
    require_root();
    require_registry();
    let srv = Server::start(&[("lib/l.txt", "lib\n"), ("top.txt", "top\n")]);
    srv.push();
    let ctx = tempfile::tempdir().expect("tmp");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nCOPY --from=src l.txt /from-context/\nCOPY --from=whole / /whole/\n",
            registry()
        ),
    )
    .expect("write Dockerfile");
    let rb = Rbuild::new();
    let src = format!("src={}#main:lib", srv.url);
    let whole = format!("whole={}", srv.url);
    let (r, _, _keep) = build(
        &rb,
        ctx.path(),
        &["--build-context", &src, "--build-context", &whole],
    );
    assert_eq!(read(&r, "from-context/l.txt"), "lib\n");
    assert_eq!(read(&r, "whole/top.txt"), "top\n");
    assert_eq!(read(&r, "whole/lib/l.txt"), "lib\n");
    assert!(!r.join("whole/.git").exists());

    // A ref the repository does not have fails naming it and the line.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\nADD {}#no-such-branch /x\n",
            registry(),
            srv.url
        ),
    )
    .expect("write Dockerfile");
    let out = rb.run(["build", "--progress=plain", &ctx.path().to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("repository does not contain ref no-such-branch"),
        "{err}"
    );
    assert!(err.contains(&srv.url), "{err}");
    assert!(err.contains("Dockerfile:2"), "{err}");
}
