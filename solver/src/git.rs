//! Git sources: `ADD <git url> <dest>`, `--build-context name=<git url>`
//! and a git URL as the build context, with the `git` command-line client.
//!
//! On every build the ref is resolved to a commit with `git ls-remote` (a
//! full commit sha is taken as is), the way BuildKit resolves it: the full
//! ref name (`refs/<ref>`), then a branch, then a tag (an annotated tag's
//! commit). A `checksum` (`ADD --checksum=<commit>`, `?commit=`) must be a
//! prefix of that commit or of the annotated tag object, else the source
//! fails with "expected checksum to match". The cache key is the source
//! with the ref replaced by the commit and without the checksum, so a
//! branch that moved misses, and a rebuild of the same commit hits whatever
//! ref name (or checksum) led to it (BuildKit keys on the commit, `.git`
//! kept or not, submodules, and the subdirectory). On a miss the commit is
//! fetched shallowly (`--depth=1`, by ref name, then by sha, then the whole
//! repository when the server allows neither, as dumb HTTP does) into a
//! scratch repository (sha256 when the commit id is) and checked out into
//! a new snapshot.
//!
//! What lands in the snapshot is what BuildKit puts there: the tree of the
//! commit (or of its subdirectory), without `.git` unless `keep_git_dir`
//! (then `.git` is a shallow repository with HEAD detached at the commit
//! and `origin` set to the remote without credentials), submodules checked
//! out unless `skip_submodules`, files owned by the user rbuild runs as
//! (root: 0:0), modes from git under umask 022, and mtimes of the checkout,
//! as in BuildKit's default (an exported layer clamps them to
//! `SOURCE_DATE_EPOCH` when it is set).
//!
//! How git runs (no configuration, proxies, credentials) is [`run`]'s job.
//!
//! Cost: one `ls-remote` round trip per git source per build, even when
//! cached; no shared clone across builds, so each miss fetches again.

mod run;

pub use run::GitEnv;

use crate::ops::{cache_key, Ops, VertexResult};
use crate::progress::Event;
use crate::Error;
use rbuild_graph::{Digest, GitSource, Op, SourceOp, VertexMeta};
use run::Git;
use std::path::{Component, Path, PathBuf};

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
    #[error("repository does not contain ref {reference} (remote {remote})")]
    NoSuchRef {
        /// The remote, without credentials.
        remote: String,
        /// The ref asked for.
        reference: String,
    },
    /// The checksum is not a hex commit id.
    #[error("invalid checksum {0} for Git URL, expected hex commit hash")]
    InvalidChecksum(String),
    /// The ref resolved to another commit than the checksum names.
    #[error("expected checksum to match {checksum}, got {got}")]
    ChecksumMismatch {
        /// The checksum asked for.
        checksum: String,
        /// The commit (or commit and tag object) the ref names.
        got: String,
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

/// What a ref resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The ref that names it on the remote (`None`: a bare commit id).
    pub remote_ref: Option<String>,
    /// The commit (an annotated tag's target).
    pub commit: String,
    /// The annotated tag object, when the ref is one.
    pub tag_object: Option<String>,
}

/// The ref and commit `git ls-remote` output names for `reference`, as
/// BuildKit picks them: `HEAD` itself, else the full name `refs/<ref>`, a
/// branch `refs/heads/<ref>`, then a tag `refs/tags/<ref>` (annotated:
/// the commit it points at).
pub fn pick_ref(ls_remote: &str, reference: &str) -> Option<Resolved> {
    let lines: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(sha, _)| is_commit(sha))
        .collect();
    let find = |name: &str| lines.iter().find(|(_, n)| *n == name).map(|(s, _)| *s);
    let found = |name: String, sha: &str| Resolved {
        remote_ref: Some(name),
        commit: sha.to_ascii_lowercase(),
        tag_object: None,
    };
    if reference == "HEAD" {
        return find("HEAD").map(|sha| found("HEAD".into(), sha));
    }
    let tail = |p: &str| format!("{p}{}", reference.strip_prefix(p).unwrap_or(reference));
    let partial = tail("refs/");
    let head = tail("refs/heads/");
    for name in [partial, head] {
        if let Some(sha) = find(&name) {
            return Some(found(name, sha));
        }
    }
    let tag = tail("refs/tags/");
    let sha = find(&tag)?;
    Some(match find(&format!("{tag}^{{}}")) {
        Some(peeled) => Resolved {
            tag_object: Some(sha.to_ascii_lowercase()),
            ..found(tag, peeled)
        },
        None => found(tag, sha),
    })
}

/// Check `checksum` (a hex prefix) against a resolved commit or tag object.
pub fn verify_checksum(checksum: Option<&str>, r: &Resolved) -> Result<(), GitError> {
    let Some(c) = checksum else {
        return Ok(());
    };
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitError::InvalidChecksum(c.to_string()));
    }
    let c = c.to_ascii_lowercase();
    let matches = |s: &str| s.starts_with(&c);
    if matches(&r.commit) || r.tag_object.as_deref().is_some_and(matches) {
        return Ok(());
    }
    Err(GitError::ChecksumMismatch {
        checksum: c,
        got: match &r.tag_object {
            Some(t) => format!("{t} or {}", r.commit),
            None => r.commit.clone(),
        },
    })
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

/// Resolve `g`'s ref on its remote and verify its checksum.
fn resolve(git: &Git<'_>, g: &GitSource, shown: &str) -> Result<Resolved, Error> {
    let reference = g.reference.as_deref().unwrap_or("HEAD");
    if let Some(c) = &g.checksum {
        if c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::InvalidChecksum(c.clone()).into());
        }
    }
    let resolved = if is_commit(reference) {
        Resolved {
            remote_ref: None,
            commit: reference.to_ascii_lowercase(),
            tag_object: None,
        }
    } else {
        // `<ref>^{}` lists the commit an annotated tag points at.
        let peeled = format!("{reference}^{{}}");
        let out = git.run(None, &["ls-remote", &g.remote, reference, &peeled])?;
        if !out.ok {
            return Err(GitError::Fetch {
                remote: shown.to_string(),
                message: out.message(),
            }
            .into());
        }
        pick_ref(&out.stdout, reference).ok_or_else(|| GitError::NoSuchRef {
            remote: shown.to_string(),
            reference: reference.to_string(),
        })?
    };
    verify_checksum(g.checksum.as_deref(), &resolved)?;
    Ok(resolved)
}

/// The source's subdirectory, checked.
fn subdir_of(g: &GitSource, shown: &str) -> Result<Option<PathBuf>, Error> {
    match g.subdir.as_deref().map(clean_subdir).transpose() {
        Ok(s) => Ok(s.flatten()),
        Err(message) => Err(GitError::Subdir {
            remote: shown.to_string(),
            subdir: g.subdir.clone().unwrap_or_default(),
            message,
        }
        .into()),
    }
}

/// A git checkout made outside the solver (the build context).
#[derive(Clone, Debug)]
pub struct Checkout {
    /// The commit checked out.
    pub commit: String,
    /// Its committer time, in seconds since the epoch.
    pub commit_time: i64,
}

/// Check `g` out into the empty directory `dest` (a git URL given as the
/// build context), as a git source's snapshot would hold it. `tmp` holds
/// the scratch repository.
pub fn checkout_to(
    g: &GitSource,
    dest: &Path,
    tmp: &Path,
    env: &GitEnv,
) -> Result<Checkout, Error> {
    let git = Git::new(env, &g.remote);
    let shown = redact(&g.remote);
    let resolved = resolve(&git, g, &shown)?;
    let subdir = subdir_of(g, &shown)?;
    let scratch = tempfile::tempdir_in(tmp).map_err(|e| Error::Io("git scratch dir".into(), e))?;
    let git_dir = materialize(&git, g, &resolved, subdir.as_deref(), dest, scratch.path())?;
    let dir = git_dir.to_string_lossy().into_owned();
    let out = git.run(
        None,
        &[
            "--git-dir",
            &dir,
            "show",
            "-s",
            "--format=%ct",
            &resolved.commit,
        ],
    )?;
    let commit_time = out
        .stdout
        .trim()
        .parse::<i64>()
        .map_err(|_| GitError::Checkout {
            remote: shown.clone(),
            message: format!("no commit time for {}: {}", resolved.commit, out.message()),
        })?;
    Ok(Checkout {
        commit: resolved.commit,
        commit_time,
    })
}

impl Ops {
    /// The git environment of this build.
    fn git_env(&self) -> GitEnv {
        GitEnv {
            proxy: self.registry.config().proxy.clone(),
            ssh_sock: self.ssh.get("default").cloned(),
            secrets: self
                .secrets
                .iter()
                .filter(|(k, _)| k.starts_with("GIT_AUTH_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Resolve, and on a miss fetch and check out, one git source.
    pub(crate) fn git(
        &self,
        vertex: &Digest,
        g: &GitSource,
        meta: &VertexMeta,
    ) -> Result<VertexResult, Error> {
        let t = self.started(vertex, meta);
        let env = self.git_env();
        let mut git = Git::new(&env, &g.remote);
        git.log = Some((&self.events, vertex));
        git.cancel = Some(&self.cancel);
        let shown = redact(&g.remote);
        let resolved = resolve(&git, g, &shown)?;
        if resolved.remote_ref.is_some() {
            let asked = g.reference.as_deref().unwrap_or("HEAD");
            self.emit(Event::Note {
                vertex: vertex.clone(),
                text: format!("{asked} is commit {}", resolved.commit),
            });
        }
        let subdir = subdir_of(g, &shown)?;
        let keyed = GitSource {
            reference: Some(resolved.commit.clone()),
            subdir: subdir.as_ref().map(|s| s.to_string_lossy().into_owned()),
            checksum: None,
            ..g.clone()
        };
        let key = cache_key(&Op::Source(SourceOp::Git(keyed)), &[], &[]);
        if let Some(hit) = self.hit(vertex, meta, &key) {
            return Ok(hit);
        }
        let scratch =
            tempfile::tempdir_in(&self.tmp).map_err(|e| Error::Io("git scratch dir".into(), e))?;
        self.build_snapshot(vertex, meta, key, "git", None, t, |root| {
            materialize(&git, g, &resolved, subdir.as_deref(), root, scratch.path()).map(|_| ())
        })
    }
}

/// Fetch the resolved commit and check it out into `root` as the source
/// says (`.git` kept, a subdirectory lifted, submodules); returns the git
/// directory that holds the commit.
fn materialize(
    git: &Git<'_>,
    g: &GitSource,
    r: &Resolved,
    subdir: Option<&Path>,
    root: &Path,
    scratch: &Path,
) -> Result<PathBuf, Error> {
    let shown = redact(&g.remote);
    let keep = g.keep_git_dir && subdir.is_none();
    let sha256 = r.commit.len() == 64;
    let checkout = |git_dir: &Path, work: &Path| {
        let fetch = Fetch {
            git_dir,
            commit: &r.commit,
            remote_ref: r.remote_ref.as_deref(),
            local_ref: keep,
        };
        fetch_commit(git, &fetch, &shown)?;
        checkout_into(git, git_dir, work, &r.commit, !g.skip_submodules, &shown)
    };
    if keep {
        let git_dir = root.join(".git");
        init(git, &git_dir, false, sha256, &g.remote, &shown)?;
        checkout(&git_dir, root)?;
        tidy_kept(git, &git_dir, &shown)?;
        return Ok(git_dir);
    }
    let git_dir = scratch.join("repo.git");
    init(git, &git_dir, true, sha256, &g.remote, &shown)?;
    match subdir {
        None => checkout(&git_dir, root)?,
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
            })?;
        }
    }
    Ok(git_dir)
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

/// Get `f.commit` into `f.git_dir`: shallow by ref name, shallow by sha,
/// then everything (servers that refuse unadvertised objects or depth).
fn fetch_commit(git: &Git<'_>, f: &Fetch<'_>, shown: &str) -> Result<(), Error> {
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

/// A new repository at `git_dir` with `origin` set to `remote`.
fn init(
    git: &Git<'_>,
    git_dir: &Path,
    bare: bool,
    sha256: bool,
    remote: &str,
    shown: &str,
) -> Result<(), Error> {
    let dir = git_dir.to_string_lossy().into_owned();
    let mut args = vec!["-c", "init.defaultBranch=master", "init", "-q"];
    if sha256 {
        args.push("--object-format=sha256");
    }
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

/// Check `commit` out into `work`, with its submodules if asked.
fn checkout_into(
    git: &Git<'_>,
    git_dir: &Path,
    work: &Path,
    commit: &str,
    submodules: bool,
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
    let out = git.run(
        Some(work),
        &[&base[..], &["checkout", "-q", "--detach", commit]].concat(),
    )?;
    if !out.ok {
        return Err(GitError::Checkout {
            remote: shown.to_string(),
            message: out.message(),
        }
        .into());
    }
    if submodules && work.join(".gitmodules").exists() {
        update_submodules(git, &base, work, shown)?;
    }
    Ok(())
}

/// `git submodule update --init --recursive`, shallow first; servers that
/// cannot serve a shallow fetch (dumb HTTP) get a full one.
fn update_submodules(git: &Git<'_>, base: &[&str], work: &Path, shown: &str) -> Result<(), Error> {
    let update = ["submodule", "update", "-q", "--init", "--recursive"];
    let out = git.run(Some(work), &[base, &update[..], &["--depth=1"]].concat())?;
    if out.ok {
        return Ok(());
    }
    let full = git.run(Some(work), &[base, &update[..]].concat())?;
    if full.ok {
        return Ok(());
    }
    Err(GitError::Checkout {
        remote: shown.to_string(),
        message: format!("update submodules: {}", full.message()),
    }
    .into())
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
mod tests;
