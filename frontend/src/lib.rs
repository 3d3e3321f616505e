//! rbuild-frontend: Dockerfile → [`rbuild_graph::BuildGraph`] + image config,
//! matching BuildKit's `dockerfile2llb` behaviour.
//!
//! Pipeline (each stage its own module):
//! 1. [`parser`]: physical lines → [`parser::Node`]s (directives, escape,
//!    continuations, JSON/shell form, flags, heredocs). [`dump_ast`] renders
//!    BuildKit's AST dump format.
//! 2. [`instructions`]: nodes → typed stages with validated flags.
//! 3. [`shell`]: the shell-word lexer used to expand `$VAR`s per instruction,
//!    with the environment as it was *before* that instruction.
//! 4. `convert` (private): only the stages the target needs are lowered, in
//!    dependency order, into graph vertices; the image config (with BuildKit's
//!    history strings) is computed alongside.
//!
//! Key types: [`BuildOptions`], [`ImageResolver`], [`LoweredBuild`],
//! [`FrontendError`] (one or more [`Diagnostic`]s, `Dockerfile:LINE:COL`).
//!
//! Invariants:
//! - The frontend performs no IO: base image configs come from the caller's
//!   [`ImageResolver`], called once per distinct (reference, platform) and
//!   only for stages the target needs.
//! - Names, source positions and stage labels go to
//!   [`rbuild_graph::VertexMeta`], never into ops, so they never change a
//!   digest. Proxy build args go to `ExecMeta::proxy_env` only (unless
//!   declared with `ARG`).
//! - Errors never panic on input: every input-derived failure is a
//!   [`Diagnostic`].
//!
//! Design choice and its cost: the parser mirrors BuildKit's two-layer design
//! (untyped nodes, then typed instructions) so that `dump_ast` can reproduce
//! BuildKit's dumps byte for byte; the cost is a second pass over the nodes.

#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::field_reassign_with_default))]

mod convert;
mod debug;
pub mod error;
pub mod git_url;
pub mod instructions;
pub mod lint;
pub mod parser;
pub mod shell;

pub use debug::{graph_to_dot, graph_to_json};
pub use error::{Diagnostic, ErrorKind, FrontendError};
pub use lint::{CheckConfig, CheckWarning};

use error::Reporter;
use std::collections::BTreeMap;

/// Options of one build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// File name for messages, e.g. `Dockerfile`.
    pub dockerfile_name: String,
    /// `--target` stage name (default: the last stage).
    pub target: Option<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// Platform of the built image.
    pub target_platform: rbuild_graph::Platform,
    /// Platform of the builder.
    pub build_platform: rbuild_graph::Platform,
    /// `--label`s added to the final image config.
    pub labels: BTreeMap<String, String>,
    /// Name of the main context's Local source (`context`).
    pub context_name: String,
    /// `--build-context name=value`: `docker-image://ref` becomes an image
    /// source, anything else a Local source named `context:<name>`.
    pub named_contexts: BTreeMap<String, String>,
    /// Stages (by name or index; `*` for all) whose vertices ignore the cache.
    pub no_cache_filter: Vec<String>,
    /// Lower every stage, not only those the target needs (for build
    /// checks of the whole file, like `docker build --check`).
    pub all_stages: bool,
    /// `--add-host` entries, `(host, ip)`, added to `/etc/hosts` of every
    /// RUN (part of its definition, as in BuildKit).
    pub extra_hosts: Vec<(String, String)>,
    /// The main context's `.dockerignore`, for the experimental
    /// `CopyIgnoredFile` check; `None` when there is none.
    pub ignored: Option<IgnoredPaths>,
}

/// Which main-context paths `.dockerignore` excludes, as a predicate over
/// a cleaned, `/`-separated relative path: the frontend reads no files and
/// knows no pattern syntax (the caller compiles the patterns).
#[derive(Clone)]
pub struct IgnoredPaths(pub std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for IgnoredPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IgnoredPaths(..)")
    }
}

impl PartialEq for IgnoredPaths {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for IgnoredPaths {}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dockerfile_name: "Dockerfile".into(),
            target: None,
            build_args: BTreeMap::new(),
            target_platform: rbuild_graph::Platform::host(),
            build_platform: rbuild_graph::Platform::host(),
            labels: BTreeMap::new(),
            context_name: "context".into(),
            named_contexts: BTreeMap::new(),
            no_cache_filter: Vec::new(),
            all_stages: false,
            extra_hosts: Vec::new(),
            ignored: None,
        }
    }
}

/// A resolved base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Normalized, digest-pinned reference (used as `ImageSource.reference`).
    pub reference: String,
    /// The image config.
    pub config: rbuild_graph::ImageConfig,
}

/// Looks up image configs (the registry lives outside the frontend).
pub trait ImageResolver {
    /// Resolve `reference` (the FROM string as written, expanded) for `platform`.
    fn resolve(
        &self,
        reference: &str,
        platform: &rbuild_graph::Platform,
    ) -> Result<ResolvedImage, String>;
}

/// The result of lowering a Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoweredBuild {
    /// The graph (only what the target needs).
    pub graph: rbuild_graph::BuildGraph,
    /// The vertex whose output is the final rootfs.
    pub root: rbuild_graph::Digest,
    /// Full image config of the target stage, history included.
    pub config: rbuild_graph::ImageConfig,
    /// One per `config.history` entry: for a layer entry added by this build,
    /// the vertex whose output is the rootfs right after it; `None` for empty
    /// layers and for entries inherited from the base image.
    pub layer_vertices: Vec<Option<rbuild_graph::Digest>>,
    /// Non-fatal findings that are not build checks (unused build args).
    pub warnings: Vec<Diagnostic>,
    /// Build-check warnings (BuildKit's lint rules), in line order.
    pub checks: Vec<CheckWarning>,
}

fn parse_all(dockerfile: &str, file: &str) -> Result<parser::Ast, FrontendError> {
    let rep = Reporter::new(file, dockerfile);
    parser::parse(dockerfile).map_err(|errs| {
        let diags = errs
            .into_iter()
            .map(|e| {
                if e.line == 0 {
                    Diagnostic {
                        file: file.to_string(),
                        line: 0,
                        col: 0,
                        message: e.message,
                        source_line: String::new(),
                    }
                } else {
                    rep.at_line(e.line, e.message)
                }
            })
            .collect();
        FrontendError::many(ErrorKind::Syntax, diags)
    })
}

/// Parse, validate and lower a Dockerfile.
pub fn build(
    dockerfile: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<LoweredBuild, FrontendError> {
    let file = opts.dockerfile_name.as_str();
    let mut ast = parse_all(dockerfile, file)?;
    let rep = Reporter::new(file, dockerfile);
    let config = check_config(&ast, opts).map_err(|(line, e)| {
        FrontendError::single(rep.at_line(line, format!("failed to parse check options: {e}")))
    })?;
    let mut linter = lint::Linter::new(config);
    linter.inline_skips(&ast.nodes);
    for w in &ast.warnings {
        linter.run(
            lint::rules::NO_EMPTY_CONTINUATION,
            (w.line, w.line),
            "Empty continuation line".into(),
        );
    }
    let stages = match instructions::parse_stages(std::mem::take(&mut ast.nodes)) {
        Ok(s) => s,
        Err(errs) => return Err(instruction_errors(dockerfile, file, &rep, errs, linter)),
    };
    let mut lowered = convert::lower(&stages, ast.escape, dockerfile, opts, resolver, linter)?;
    if let Some(w) = syntax_warning(&ast, opts, &rep) {
        lowered.warnings.insert(0, w);
    }
    Ok(lowered)
}

/// Instructions that failed to parse, in BuildKit's words (`dockerfile
/// parse error on line N: …`), with the warnings of the checks BuildKit
/// runs while parsing the instructions before the first error.
fn instruction_errors(
    dockerfile: &str,
    file: &str,
    rep: &Reporter,
    errs: Vec<instructions::InstrError>,
    mut linter: lint::Linter,
) -> FrontendError {
    let first = errs.iter().map(|e| e.line).min().unwrap_or(0);
    let diags = errs
        .into_iter()
        .map(|e| {
            let msg = format!("dockerfile parse error on line {}: {}", e.line, e.message);
            rep.at_text(e.line, &e.needle, msg)
        })
        .collect();
    let mut err = FrontendError::many(ErrorKind::Syntax, diags);
    // The error path only: parse again and keep what precedes the error.
    if let Ok(ast) = parse_all(dockerfile, file) {
        let before: Vec<parser::Node> = ast
            .nodes
            .into_iter()
            .filter(|n| n.start_line < first)
            .collect();
        if let Ok(stages) = instructions::parse_stages(before) {
            lint::stages::check_parse_time(&mut linter, &stages);
        }
    }
    err.checks = linter.finish().0;
    err
}

/// BuildKit runs the frontend image a `# syntax=` directive (or the
/// `BUILDKIT_SYNTAX` build arg) names; rbuild has only its builtin
/// frontend, so it says so rather than ignore the request silently.
fn syntax_warning(ast: &parser::Ast, opts: &BuildOptions, rep: &Reporter) -> Option<Diagnostic> {
    let message = |how: &str, image: &str| {
        format!("{how} names the frontend image {image:?}; rbuild does not run frontend images and builds with its builtin Dockerfile frontend")
    };
    if let Some(v) = opts.build_args.get("BUILDKIT_SYNTAX") {
        return Some(Diagnostic {
            file: opts.dockerfile_name.clone(),
            line: 0,
            col: 0,
            message: message("--build-arg BUILDKIT_SYNTAX", v),
            source_line: String::new(),
        });
    }
    let d = ast.directives.iter().find(|d| d.name == "syntax")?;
    Some(rep.at_line(d.line, message("# syntax", &d.value)))
}

/// The build-check configuration: the `BUILDKIT_DOCKERFILE_CHECK` build arg
/// if given, else the `# check=` directive. Errors carry the directive line.
fn check_config(ast: &parser::Ast, opts: &BuildOptions) -> Result<CheckConfig, (usize, String)> {
    if let Some(v) = opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        return CheckConfig::parse(v).map_err(|e| (0, e));
    }
    match ast.directives.iter().find(|d| d.name == "check") {
        Some(d) => CheckConfig::parse(&d.value).map_err(|e| (d.line, e)),
        None => Ok(CheckConfig::default()),
    }
}

/// BuildKit's AST dump of a Dockerfile (`(from "alpine")` per line, no
/// trailing newline).
pub fn dump_ast(dockerfile: &str) -> Result<String, FrontendError> {
    let ast = parse_all(dockerfile, "Dockerfile")?;
    Ok(parser::dump_ast(&ast))
}

#[cfg(test)]
mod tests;
