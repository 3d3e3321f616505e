//! Remote build contexts: `rbuild build <git url>`, as `docker build` and
//! BuildKit take one. The repository is checked out (by the solver's git
//! code, with the build's `--secret id=GIT_AUTH_TOKEN` and `--ssh default`)
//! into a temporary directory that is then the context directory, with the
//! Dockerfile read from it (`-f` is relative to the repository). The
//! checkout is what a git source holds: no `.git` unless the build arg
//! `BUILDKIT_CONTEXT_KEEP_GIT_DIR` is true, submodules checked out.
//!
//! `--build-arg SOURCE_DATE_EPOCH=context` becomes the commit's time, as in
//! BuildKit.
//!
//! Cost: the context is fetched before the build starts and is not cached
//! across builds (the steps that use it are, by content).

use super::{parse_build_args, parse_secrets, parse_ssh, read_dockerfile, Input};
use crate::cli::BuildArgs;
use anyhow::{Context, Result};
use std::path::Path;

/// The build's input for `args.context`: a remote git context fetched
/// here, or whatever [`super::read_input`] reads. With a git context, the
/// commit time is returned too.
pub(super) fn read_build_input(args: &BuildArgs) -> Result<(Input, Option<i64>)> {
    let url = args.context.as_str();
    if !rbuild_frontend::git_url::is_git(url) {
        return Ok((super::read_input(url, args.file.as_deref())?, None));
    }
    let build_args = parse_build_args(&args.build_args)?;
    let keep = build_args
        .get("BUILDKIT_CONTEXT_KEEP_GIT_DIR")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"));
    let src = rbuild_frontend::git_url::git_source(url, Some(keep), None)
        .map_err(|e| anyhow::anyhow!("unable to prepare context: {url}: {e}"))?;
    let env = rbuild_solver::git::GitEnv {
        proxy: rbuild_registry::ProxyConfig::from_env(),
        ssh_sock: parse_ssh(&args.ssh)?.remove("default"),
        secrets: parse_secrets(&args.secrets)?
            .into_iter()
            .filter(|(k, _)| k.starts_with("GIT_AUTH_"))
            .collect(),
    };
    let dir = tempfile::Builder::new()
        .prefix("rbuild-context-")
        .tempdir()
        .context("make a directory for the git context")?;
    let checkout = rbuild_solver::git::checkout_to(&src, dir.path(), &std::env::temp_dir(), &env)
        .with_context(|| format!("unable to prepare context: {url}"))?;
    let file = args.file.as_deref().unwrap_or(Path::new("Dockerfile"));
    let path = dir.path().join(file.strip_prefix("/").unwrap_or(file));
    let dockerfile = read_dockerfile(&path)?;
    let input = Input {
        dockerfile,
        dockerfile_name: super::display_name(file),
        context: Some(dir.path().to_path_buf()),
        _unpacked: Some(dir),
    };
    Ok((input, Some(checkout.commit_time)))
}

/// `args` with `--build-arg SOURCE_DATE_EPOCH=context` replaced by the
/// context's commit time; `None` when there is nothing to replace.
pub(super) fn with_context_epoch(args: &BuildArgs, commit_time: Option<i64>) -> Option<BuildArgs> {
    let t = commit_time?;
    let i = args
        .build_args
        .iter()
        .rposition(|a| a.starts_with("SOURCE_DATE_EPOCH="))?;
    if args.build_args[i] != "SOURCE_DATE_EPOCH=context" {
        return None;
    }
    let mut out = args.clone();
    out.build_args[i] = format!("SOURCE_DATE_EPOCH={t}");
    Some(out)
}
