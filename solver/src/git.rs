//! Git sources: `ADD <git url>[#ref[:subdir]] <dest>` and
//! `--build-context name=<git url>`, with the `git` command-line client.
//!
//! On every build the ref is resolved to a commit with `git ls-remote` (a
//! full commit sha is taken as is). The cache key is the source with the
//! ref replaced by that commit, so a branch that moved misses and a rebuild
//! of the same commit hits, whatever ref name led to it (BuildKit keys on
//! the commit, `.git` kept or not, and the subdirectory). On a miss the
//! commit is fetched shallowly (`--depth=1`, by ref name, then by sha, then
//! the whole repository when the server allows neither) into a scratch
//! repository and checked out into a new snapshot.
//!
//! What lands in the snapshot is what BuildKit puts there: the tree of the
//! commit (or of its subdirectory), without `.git` unless `keep_git_dir`
//! (then `.git` is a shallow repository with HEAD detached at the commit
//! and `origin` set to the remote without credentials), submodules checked
//! out, files owned by the user rbuild runs as (root: 0:0), modes from git
//! under umask 022, and mtimes of the checkout, as in BuildKit's default
//! (an exported layer clamps them to `SOURCE_DATE_EPOCH` when it is set).
//!
//! git runs as in BuildKit: no system or user git configuration, no
//! terminal prompts, `protocol.file.allow=user`; proxy variables are passed
//! through. Credentials are not supported; an SSH remote uses the agent of
//! `--ssh default` when given.
//!
//! Cost: one `ls-remote` round trip per git source per build, even when
//! cached; no shared clone across builds, so each miss fetches again.

use crate::ops::{cache_key, Ops, VertexResult};
use crate::progress::{Event, LogStream};
use crate::Error;
use rbuild_graph::{Digest, GitSource, Op, SourceOp, VertexMeta};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a git source failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` program could not be started.
    #[error("failed to run git: {0} (install git)")]
    NotInstalled(#[source] std::io::Error),
    /// A git command failed talking to the remote.
    #[error("failed to fetch remote {remote}: {message}")]
    Fetch {
        /// The remote, without credentials.
        remote: String,
        /// git's last error lines.
        message: String,
    },
    /// The ref names nothing in the repository.
    #[error("repository {remote} does not contain ref {reference}")]
    NoSuchRef {
        /// The remote, without credentials.
        remote: String,
        /// The ref asked for.
        reference: String,
    },
    /// Checking the commit out failed.
    #[error("failed to checkout remote {remote}: {message}")]
    Checkout {
        /// The remote, without credentials.
        remote: String,
        /// What went wrong.
        message: String,
    },
    /// The subdirectory is not a directory of the commit.
    #[error("failed to open subdir {subdir:?} of {remote}: {message}")]
    Subdir {
        /// The remote, without credentials.
        remote: String,
        /// The subdirectory asked for.
        subdir: String,
        /// Why.
        message: String,
    },
}

/// `url` with the password of its user info replaced, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority
        .rsplit_once('@')
        .and_then(|(info, host)| Some((info.split_once(':')?.0, host)))
    {
        Some((user, host)) => format!("{scheme}://{user}:xxxxx@{host}{path}"),
        None => url.to_string(),
    }
}

/// Whether `s` is a full commit id (sha1 or sha256).
pub fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The ref to check out and the commit it names, from `git ls-remote`
/// output for `reference`: a branch first, then a tag (its peeled commit
/// for an annotated tag), then any full ref name, then the first line.
pub fn pick_ref(ls_remote: &str, reference: &str) -> Option<(String, String)> {
    let lines: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(sha, _)| is_commit(sha))
        .collect();
    let find = |name: &str| lines.iter().find(|(_, n)| *n == name).map(|(s, _)| *s);
    let mut candidates = vec![
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
    ];
    if reference == "HEAD" || reference.starts_with("refs/") {
        candidates.insert(0, reference.to_string());
    }
    for c in candidates {
        if let Some(sha) = find(&format!("{c}^{{}}")).or_else(|| find(&c)) {
            return Some((c, sha.to_string()));
        }
    }
    lines
        .iter()
        .find(|(_, n)| !n.ends_with("^{}"))
        .map(|(sha, name)| (name.to_string(), sha.to_string()))
}

/// `subdir` as a relative path inside the repository (`None`: its root).
pub fn clean_subdir(subdir: &str) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in Path::new(subdir).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err("it leaves the repository".into());
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A finished git command: its stdout, or its exit status and stderr.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    /// The last lines of stderr, for an error message.
    fn message(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join("; ");
        if tail.is_empty() {
            "git exited with an error".into()
        } else {
            tail
        }
    }
}

/// Runs git for one vertex, streaming its stderr as the vertex's output.
struct Git<'a> {
    ops: &'a Ops,
    vertex: &'a Digest,
}

impl Git<'_> {
    fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<Output, Error> {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "protocol.file.allow=user"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", "/dev/null")
            .env("LC_ALL", "C")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -F /dev/null -o StrictHostKeyChecking=no",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in std::env::vars_os() {
            let name = k.to_string_lossy().to_ascii_uppercase();
            if matches!(
                name.as_str(),
                "HTTP_PROXY" | "HTTPS_PROXY" | "NO_PROXY" | "ALL_PROXY"
            ) {
                cmd.env(k, v);
            }
        }
        if let Some(sock) = self.ops.ssh.get("default") {
            cmd.env("SSH_AUTH_SOCK", sock);
        }
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        // SAFETY: between fork and exec the child only calls umask(2), which
        // is async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(GitError::NotInstalled)?;
        let mut stdout = child.stdout.take();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let mut stderr = child.stderr.take();
        let events = self.ops.events.clone();
        let vertex = self.vertex.clone();
        let err_reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Some(Ok(n)) = stderr.as_mut().map(|e| e.read(&mut buf)) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                let _ = events.send(Event::Log {
                    vertex: vertex.clone(),
                    stream: LogStream::Stderr,
                    data: buf[..n].to_vec(),
                });
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let status = loop {
            if self.ops.cancel.is_cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(e) => return Err(Error::Io("wait for git".into(), e)),
            }
        };
        Ok(Output {
            ok: status.success(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

/// Where a fetch puts the commit and how to name it there.
struct Fetch<'a> {
    /// `--git-dir`.
    git_dir: &'a Path,
    /// The commit wanted.
    commit: &'a str,
    /// The ref that names it on the remote, if not a bare sha.
    remote_ref: Option<&'a str>,
    /// Also create the same ref locally (kept `.git`).
    local_ref: bool,
}

impl Ops {
    /// Resolve, and on a miss fetch and check out, one git source.
    pub(crate) fn git(
        &self,
        vertex: &Digest,
        g: &GitSource,
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        let t = self.started(vertex, meta);
        let git = Git { ops: self, vertex };
        let shown = redact(&g.remote);
        let reference = g.reference.as_deref().unwrap_or("HEAD");
        let (remote_ref, commit) = if is_commit(reference) {
            (None, reference.to_ascii_lowercase())
        } else {
            // `<ref>^{}` lists the commit an annotated tag points at.
            let peeled = format!("{reference}^{{}}");
            let out = git.run(None, &["ls-remote", &g.remote, reference, &peeled])?;
            if !out.ok {
                return Err(GitError::Fetch {
                    remote: shown,
                    message: out.message(),
                }
                .into());
            }
            let (r, sha) = pick_ref(&out.stdout, reference).ok_or_else(|| GitError::NoSuchRef {
                remote: shown.clone(),
                reference: reference.to_string(),
            })?;
            self.emit(Event::Note {
                vertex: vertex.clone(),
                text: format!("{reference} is commit {sha}"),
            });
            (Some(r), sha)
        };
        let subdir = match g.subdir.as_deref().map(clean_subdir).transpose() {
            Ok(s) => s.flatten(),
            Err(message) => {
                return Err(GitError::Subdir {
                    remote: shown,
                    subdir: g.subdir.clone().unwrap_or_default(),
                    message,
                }
                .into())
            }
        };
        let resolved = GitSource {
            reference: Some(commit.clone()),
            subdir: subdir.as_ref().map(|s| s.to_string_lossy().into_owned()),
            ..g.clone()
        };
        let key = cache_key(&Op::Source(SourceOp::Git(resolved)), &[], &[]);
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        let scratch =
            tempfile::tempdir_in(&self.tmp).map_err(|e| Error::Io("git scratch dir".into(), e))?;
        self.build_snapshot(vertex, meta, key, "git", None, t, |root| {
            let keep = g.keep_git_dir && subdir.is_none();
            let checkout = |git_dir: &Path, work: &Path| {
                let fetch = Fetch {
                    git_dir,
                    commit: &commit,
                    remote_ref: remote_ref.as_deref(),
                    local_ref: keep,
                };
                self.fetch(&git, &fetch, &shown)?;
                checkout_into(&git, git_dir, work, &commit, &shown)
            };
            if keep {
                let git_dir = root.join(".git");
                init(&git, &git_dir, false, &g.remote, &shown)?;
                checkout(&git_dir, root)?;
                tidy_kept(&git, &git_dir, &shown)
            } else {
                let git_dir = scratch.path().join("repo.git");
                init(&git, &git_dir, true, &g.remote, &shown)?;
                match &subdir {
                    None => checkout(&git_dir, root),
                    Some(sub) => {
                        let work = tempfile::Builder::new()
                            .prefix(".checkout")
                            .tempdir_in(root)
                            .map_err(|e| Error::Io("git checkout dir".into(), e))?;
                        checkout(&git_dir, work.path())?;
                        lift(&work.path().join(sub), root).map_err(|message| {
                            Error::from(GitError::Subdir {
                                remote: shown.clone(),
                                subdir: sub.to_string_lossy().into_owned(),
                                message,
                            })
                        })
                    }
                }
            }
        })
    }

    /// Get `f.commit` into `f.git_dir`: shallow by ref name, shallow by sha,
    /// then everything (servers that refuse unadvertised objects or depth).
    fn fetch(&self, git: &Git<'_>, f: &Fetch<'_>, shown: &str) -> Result<(), Error> {
        let dir = f.git_dir.to_string_lossy().into_owned();
        let has_commit = || -> Result<bool, Error> {
            let want = format!("{}^{{commit}}", f.commit);
            Ok(git
                .run(None, &["--git-dir", &dir, "cat-file", "-e", &want])?
                .ok)
        };
        let base = ["--git-dir", &dir, "fetch", "-q", "-u", "--no-tags"];
        let mut last = None;
        if let Some(r) = f.remote_ref {
            let spec = if f.local_ref && r != "HEAD" {
                format!("{r}:{r}")
            } else {
                r.to_string()
            };
            let out = git.run(None, &[&base[..], &["--depth=1", "origin", &spec]].concat())?;
            if out.ok && has_commit()? {
                return Ok(());
            }
            last = Some(out);
        }
        let out = git.run(
            None,
            &[&base[..], &["--depth=1", "origin", f.commit]].concat(),
        )?;
        if out.ok && has_commit()? {
            return Ok(());
        }
        let shallow = f.git_dir.join("shallow").exists();
        let mut args = base.to_vec();
        if shallow {
            args.push("--unshallow");
        }
        args.extend([
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ]);
        let full = git.run(None, &args)?;
        if full.ok && has_commit()? {
            return Ok(());
        }
        let failed = [Some(full), Some(out), last]
            .into_iter()
            .flatten()
            .find(|o| !o.ok);
        Err(GitError::Fetch {
            remote: shown.to_string(),
            message: match failed {
                Some(o) => o.message(),
                None => format!("commit {} is not in the repository", f.commit),
            },
        }
        .into())
    }
}

/// A new repository at `git_dir` with `origin` set to `remote`.
fn init(git: &Git<'_>, git_dir: &Path, bare: bool, remote: &str, shown: &str) -> Result<(), Error> {
    let dir = git_dir.to_string_lossy().into_owned();
    let mut args = vec!["-c", "init.defaultBranch=master", "init", "-q"];
    if bare {
        args.push("--bare");
        args.push(&dir);
    } else {
        // `git init <worktree>` makes `<worktree>/.git`.
        args.push(git_dir.parent().and_then(Path::to_str).unwrap_or("."));
    }
    for a in [
        args,
        vec!["--git-dir", &dir, "remote", "add", "origin", remote],
    ] {
        let out = git.run(None, &a)?;
        if !out.ok {
            return Err(GitError::Checkout {
                remote: shown.to_string(),
                message: out.message(),
            }
            .into());
        }
    }
    Ok(())
}

/// Check `commit` out into `work`, with its submodules.
fn checkout_into(
    git: &Git<'_>,
    git_dir: &Path,
    work: &Path,
    commit: &str,
    shown: &str,
) -> Result<(), Error> {
    let dir = git_dir.to_string_lossy().into_owned();
    let wt = work.to_string_lossy().into_owned();
    let base = [
        "--git-dir",
        &dir,
        "--work-tree",
        &wt,
        "-c",
        "advice.detachedHead=false",
    ];
    let mut steps: Vec<Vec<&str>> =
        vec![[&base[..], &["checkout", "-q", "--detach", commit]].concat()];
    if work.join(".gitmodules").exists() {
        steps.push(
            [
                &base[..],
                &[
                    "submodule",
                    "update",
                    "-q",
                    "--init",
                    "--recursive",
                    "--depth=1",
                ],
            ]
            .concat(),
        );
    }
    for a in steps {
        let out = git.run(Some(work), &a)?;
        if !out.ok {
            return Err(GitError::Checkout {
                remote: shown.to_string(),
                message: out.message(),
            }
            .into());
        }
    }
    Ok(())
}

/// A kept `.git` as BuildKit leaves it: origin without credentials, no
/// FETCH_HEAD, no reflog.
fn tidy_kept(git: &Git<'_>, git_dir: &Path, shown: &str) -> Result<(), Error> {
    let dir = git_dir.to_string_lossy().into_owned();
    for a in [
        vec!["--git-dir", &dir, "remote", "set-url", "origin", shown],
        vec![
            "--git-dir",
            &dir,
            "reflog",
            "expire",
            "--all",
            "--expire=now",
        ],
    ] {
        let out = git.run(None, &a)?;
        if !out.ok {
            return Err(GitError::Checkout {
                remote: shown.to_string(),
                message: out.message(),
            }
            .into());
        }
    }
    match std::fs::remove_file(git_dir.join("FETCH_HEAD")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Io("remove FETCH_HEAD".into(), e))
        }
        _ => Ok(()),
    }
}

/// Move the entries of directory `from` into `to` (same filesystem).
fn lift(from: &Path, to: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::rename(entry.path(), to.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "1111111111111111111111111111111111111111";
    const SHA_B: &str = "2222222222222222222222222222222222222222";
    const SHA_C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn pick_ref_prefers_branches_then_peeled_tags() {
        let out = format!(
            "{SHA_A}\trefs/heads/feature/v1\n{SHA_B}\trefs/tags/v1\n{SHA_C}\trefs/tags/v1^{{}}\n"
        );
        // An annotated tag resolves to the commit it points at.
        assert_eq!(
            pick_ref(&out, "v1"),
            Some(("refs/tags/v1".into(), SHA_C.into()))
        );
        let out = format!("{SHA_A}\trefs/heads/main\n{SHA_B}\trefs/tags/main\n");
        assert_eq!(
            pick_ref(&out, "main"),
            Some(("refs/heads/main".into(), SHA_A.into()))
        );
        let out = format!("{SHA_A}\tHEAD\n");
        assert_eq!(pick_ref(&out, "HEAD"), Some(("HEAD".into(), SHA_A.into())));
        let out = format!("{SHA_B}\trefs/pull/7/head\n");
        assert_eq!(
            pick_ref(&out, "refs/pull/7/head"),
            Some(("refs/pull/7/head".into(), SHA_B.into()))
        );
        assert_eq!(pick_ref("", "main"), None);
    }

    #[test]
    fn subdirs_are_relative_and_stay_inside() {
        assert_eq!(clean_subdir("/"), Ok(None));
        assert_eq!(clean_subdir("./"), Ok(None));
        assert_eq!(clean_subdir("/a/b/"), Ok(Some(PathBuf::from("a/b"))));
        assert_eq!(clean_subdir("a/../c"), Ok(Some(PathBuf::from("c"))));
        assert!(clean_subdir("../x").is_err());
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("https://user:secret@example.com/r.git"),
            "https://user:xxxxx@example.com/r.git"
        );
        assert_eq!(
            redact("https://token@example.com/r.git"),
            "https://token@example.com/r.git"
        );
        assert_eq!(
            redact("git://127.0.0.1:9418/r.git"),
            "git://127.0.0.1:9418/r.git"
        );
        assert_eq!(redact("git@example.com:x/y.git"), "git@example.com:x/y.git");
    }

    #[test]
    fn commits_are_full_hex_ids() {
        assert!(is_commit(SHA_A));
        assert!(is_commit(&"ab".repeat(32)));
        assert!(!is_commit("main"));
        assert!(!is_commit("1111111"));
    }
}
