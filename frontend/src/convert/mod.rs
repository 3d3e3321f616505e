//! Lowering: typed stages → [`BuildGraph`] + image config (BuildKit's
//! `dockerfile2llb`).
//!
//! Only stages the target needs are lowered, in dependency order; base image
//! configs are resolved once per distinct (reference, platform).

mod args;
mod builder;
mod copy;
mod dispatch;
mod env;
mod order;
mod run;
pub(crate) mod util;
mod values;

use crate::error::{Diagnostic, ErrorKind, FrontendError, Reporter};
use crate::instructions::{Instruction, Stage, Stages};
use crate::lint::Linter;
use crate::{BuildOptions, ImageResolver, LoweredBuild, ResolvedImage};
use args::ArgScope;
pub(crate) use builder::{input_index, GraphBuilder, InputRef, VertexId};
use rbuild_graph::{
    ImageConfig, ImageSource, LocalSource, Op, Platform, SourceLocation, SourceOp, VertexMeta,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Default `PATH` BuildKit adds when an image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// History comment BuildKit writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The lowering state of one stage.
#[derive(Clone, Debug)]
pub(crate) struct StageState {
    pub index: usize,
    pub label: String,
    pub root: VertexId,
    pub image: ImageConfig,
    /// Exec env: ENV and ARG values, insertion order, replace in place.
    /// Shared: a RUN takes a reference; a change copies the list only if a
    /// RUN still holds it.
    pub env: rbuild_graph::Env,
    /// Name indexes over `env`, the config env and `build_args`.
    pub vars: env::VarIndex,
    /// ARGs declared in the stage, for RUN history.
    pub build_args: Vec<DeclaredArg>,
    pub cwd: String,
    pub user: String,
    pub shell: Vec<String>,
    pub platform: Platform,
    pub cmd_index: usize,
    pub cmd_total: usize,
    pub ignore_cache: bool,
    /// One per history entry added by this build: the rootfs vertex after it.
    pub layers: Vec<Option<VertexId>>,
    pub base_history: usize,
    /// A CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set_flag: bool,
    /// Stage label used in vertex names ("" when there is a single stage).
    pub name_prefix: String,
    /// Currently dispatching ONBUILD triggers of the base.
    pub on_build: bool,
    /// A WORKDIR was dispatched in this stage or its base stages.
    pub workdir_set: bool,
    /// Lines (first, last) of the instruction being dispatched.
    pub lines: (usize, usize),
    /// Lines of the last CMD, ENTRYPOINT and HEALTHCHECK of this stage.
    pub last_cmd: Option<(usize, usize)>,
    /// See `last_cmd`.
    pub last_entrypoint: Option<(usize, usize)>,
    /// See `last_cmd`.
    pub last_healthcheck: Option<(usize, usize)>,
}

/// An `ARG` declared in a stage (or inherited from its base stage).
#[derive(Clone, Debug)]
pub(crate) struct DeclaredArg {
    pub key: String,
    /// The value it was declared with (build arg, default or global).
    pub value: Option<String>,
    /// Where `key` is in [`StageState::env`], if it was there when declared
    /// (env entries never move: they are replaced in place or appended).
    pub env_index: Option<usize>,
}

impl StageState {
    /// The current value of a declared ARG as RUN history shows it: its
    /// env value (an ENV may have changed it), else its declared value.
    pub fn arg_value<'s>(&'s self, a: &'s DeclaredArg) -> &'s str {
        let from_env = match a.env_index {
            Some(i) => self.env.get(i).filter(|(k, _)| **k == *a.key),
            None => self.env_position(&a.key).and_then(|i| self.env.get(i)),
        };
        match from_env {
            Some((_, v)) => v,
            None => a.value.as_deref().unwrap_or(""),
        }
    }
}

/// Everything shared while lowering.
pub(crate) struct Ctx<'a> {
    pub opts: &'a BuildOptions,
    pub resolver: &'a dyn ImageResolver,
    pub rep: Reporter<'a>,
    pub escape: char,
    pub graph: &'a mut GraphBuilder,
    pub resolved: BTreeMap<(String, Platform), ResolvedImage>,
    pub states: Vec<Option<StageState>>,
    pub stages: &'a [Stage],
    pub global: ArgScope,
    pub used_args: BTreeSet<String>,
    pub warnings: Vec<Diagnostic>,
    /// Build checks (behind a `RefCell`: expansion reports undefined
    /// variables from `&Ctx`).
    pub lint: RefCell<Linter>,
}

impl Ctx<'_> {
    pub fn diag(&self, line: usize, needle: &str, msg: impl Into<String>) -> Diagnostic {
        self.rep.at_text(line, needle, msg)
    }

    /// Report a build-check warning.
    pub fn check(&self, rule: crate::lint::Rule, lines: (usize, usize), message: String) {
        self.lint.borrow_mut().run(rule, lines, message);
    }

    pub fn location(&self, start: usize, end: usize) -> Option<SourceLocation> {
        Some(SourceLocation {
            file: self.opts.dockerfile_name.clone(),
            line: start as u32,
            end_line: end as u32,
        })
    }

    /// Vertex metadata for a stage instruction; bumps the step counter.
    pub fn step_meta(&self, st: &mut StageState, text: &str, lines: (usize, usize)) -> VertexMeta {
        st.cmd_index += 1;
        // `[stage  3/12] ONBUILD text`: the index right-aligned to the
        // width of the total. Built by hand: one per step, and `format!`
        // was a twentieth of lowering.
        let total = st.cmd_total.to_string();
        let index = st.cmd_index.to_string();
        let width = total.len().max(1);
        let mut name = String::with_capacity(st.name_prefix.len() + 2 * width + text.len() + 16);
        name.push('[');
        if !st.name_prefix.is_empty() {
            name.push_str(&st.name_prefix);
            name.push(' ');
        }
        for _ in index.len()..width {
            name.push(' ');
        }
        name.push_str(&index);
        name.push('/');
        name.push_str(&total);
        name.push_str("] ");
        if st.on_build {
            name.push_str("ONBUILD ");
        }
        name.push_str(text);
        VertexMeta {
            name,
            location: self.location(lines.0, lines.1),
            stage: Some(st.label.clone()),
            ignore_cache: st.ignore_cache,
        }
    }

    /// The main context source vertex.
    pub fn context_vertex(&mut self) -> VertexId {
        self.graph.add(
            Op::Source(SourceOp::Local(LocalSource {
                name: self.opts.context_name.clone(),
                include_patterns: Vec::new(),
                exclude_patterns: Vec::new(),
            })),
            Vec::new(),
            VertexMeta {
                name: "[internal] load build context".into(),
                ..VertexMeta::default()
            },
        )
    }

    /// The empty filesystem.
    pub fn scratch_vertex(&mut self) -> VertexId {
        self.graph.add(
            Op::Source(SourceOp::Scratch),
            Vec::new(),
            VertexMeta::default(),
        )
    }

    /// Resolve an image once per (reference, platform).
    pub fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<ResolvedImage, FrontendError> {
        let key = (reference.to_string(), platform.clone());
        if let Some(r) = self.resolved.get(&key) {
            return Ok(r.clone());
        }
        let r = self.resolver.resolve(reference, platform).map_err(|e| {
            let names = self.stages.iter().filter_map(|s| s.name.as_deref());
            let msg =
                crate::error::with_suggestion(format!("{reference}: {e}"), reference, names, true);
            FrontendError::many(ErrorKind::Resolve, vec![self.diag(line, reference, msg)])
        })?;
        self.resolved.insert(key, r.clone());
        Ok(r)
    }

    /// The image source vertex for a resolved image.
    pub fn image_vertex(
        &mut self,
        r: &ResolvedImage,
        platform: &Platform,
        meta: VertexMeta,
    ) -> VertexId {
        self.graph.add(
            Op::Source(SourceOp::Image(ImageSource {
                reference: r.reference.clone(),
                platform: platform.clone(),
            })),
            Vec::new(),
            meta,
        )
    }

    /// The `--build-context` value for `name`, matching image-style names
    /// the way BuildKit does (`docker.io/library/alpine:latest` ≡ `alpine`).
    pub fn named_context_value(&self, name: &str) -> Option<String> {
        let key = familiar_name(name);
        self.opts
            .named_contexts
            .iter()
            .find(|(k, _)| familiar_name(k) == key)
            .map(|(_, v)| v.clone())
    }

    /// A named build context source (`--build-context name=…`).
    pub fn named_context(
        &mut self,
        name: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<Option<(VertexId, Option<ImageConfig>)>, FrontendError> {
        let Some(v) = self.named_context_value(name) else {
            return Ok(None);
        };
        if let Some(img) = v.strip_prefix("docker-image://") {
            let r = self.resolve(img, platform, line)?;
            let meta = VertexMeta {
                name: format!("[context {name}] {}", r.reference),
                ..VertexMeta::default()
            };
            let d = self.image_vertex(&r, platform, meta);
            return Ok(Some((d, Some(r.config))));
        }
        if copy::is_git(&v) {
            let src = crate::git_url::git_source(&v, None, None).map_err(|e| {
                FrontendError::single(self.diag(line, name, format!("build context {name}: {e}")))
            })?;
            let d = self.graph.add(
                Op::Source(SourceOp::Git(src)),
                Vec::new(),
                VertexMeta {
                    name: format!("[internal] load git source {v}"),
                    ..VertexMeta::default()
                },
            );
            return Ok(Some((d, None)));
        }
        let d = self.graph.add(
            Op::Source(SourceOp::Local(LocalSource {
                name: format!("context:{name}"),
                include_patterns: Vec::new(),
                exclude_patterns: Vec::new(),
            })),
            Vec::new(),
            VertexMeta {
                name: format!("[context {name}] load from client"),
                ..VertexMeta::default()
            },
        );
        Ok(Some((d, None)))
    }
}

/// Shorten an image name the way `reference.FamiliarString` does, without a
/// `:latest` tag.
pub(crate) fn familiar_name(name: &str) -> String {
    let n = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    n.strip_suffix(":latest").unwrap_or(n).to_string()
}

fn syntax(diags: Vec<Diagnostic>) -> FrontendError {
    FrontendError::many(ErrorKind::Syntax, diags)
}

/// Find a stage by name (case-insensitive). With duplicate names the last
/// one wins, as in BuildKit (which only warns: `DuplicateStageName`).
pub(crate) fn find_stage(stages: &[Stage], r: &str) -> Option<usize> {
    let lower = r.to_lowercase();
    stages
        .iter()
        .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// An error about the whole file (no line to point at).
fn file_diag(opts: &BuildOptions, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: opts.dockerfile_name.clone(),
        line: 0,
        col: 0,
        message: message.into(),
        source_line: String::new(),
    }
}

/// Lower parsed stages.
pub(crate) fn lower(
    parsed: &Stages,
    escape: char,
    src: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
    linter: Linter,
) -> Result<LoweredBuild, FrontendError> {
    if parsed.stages.is_empty() {
        return Err(FrontendError::single(file_diag(
            opts,
            "dockerfile contains no stages to build",
        )));
    }
    let (lowered, hashed) =
        GraphBuilder::run(|graph| lower_stages(parsed, escape, src, opts, resolver, linter, graph));
    let l = lowered?;
    let internal = || {
        FrontendError::single(file_diag(
            opts,
            "internal error: a lowered vertex was not hashed",
        ))
    };
    let root = hashed.digest(l.root).ok_or_else(internal)?;
    let layer_vertices = l
        .layer_vertices
        .iter()
        .map(|v| v.map(|v| hashed.digest(v).ok_or_else(internal)).transpose())
        .collect::<Result<_, _>>()?;
    Ok(LoweredBuild {
        graph: hashed.into_graph(),
        root,
        config: l.config,
        layer_vertices,
        warnings: l.warnings,
        checks: l.checks,
    })
}

/// A lowered build whose vertices are still named by id.
struct LoweredIds {
    root: VertexId,
    config: ImageConfig,
    layer_vertices: Vec<Option<VertexId>>,
    warnings: Vec<Diagnostic>,
    checks: Vec<crate::lint::CheckWarning>,
}

fn lower_stages(
    parsed: &Stages,
    escape: char,
    src: &str,
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
    linter: Linter,
    graph: &mut GraphBuilder,
) -> Result<LoweredIds, FrontendError> {
    let rep = Reporter::new(&opts.dockerfile_name, src);
    let mut ctx = Ctx {
        opts,
        resolver,
        rep,
        escape,
        graph,
        resolved: BTreeMap::new(),
        states: vec![None; parsed.stages.len()],
        stages: &parsed.stages,
        global: ArgScope::default(),
        used_args: BTreeSet::new(),
        warnings: Vec::new(),
        lint: RefCell::new(linter),
    };
    let target_name = match &opts.target {
        Some(t) => t.to_lowercase(),
        None => parsed
            .stages
            .last()
            .and_then(|s| s.name.clone())
            // BuildKit's name for an unnamed last stage.
            .unwrap_or_else(|| "default".into()),
    };
    ctx.global = args::global_scope(&mut ctx, &parsed.meta_args, &target_name)?;
    let defaults = args::default_scope(&ctx, &parsed.meta_args, &target_name);
    crate::lint::stages::check_stages(
        ctx.lint.get_mut(),
        parsed,
        escape,
        &ctx.global.map,
        defaults.as_ref(),
    );

    let target = match &opts.target {
        None => parsed.stages.len() - 1,
        Some(t) => find_stage(&parsed.stages, t).ok_or_else(|| {
            let names: Vec<&str> = parsed
                .stages
                .iter()
                .filter_map(|s| s.name.as_deref())
                .collect();
            let msg = crate::error::with_suggestion(
                format!("target stage {t:?} could not be found"),
                t,
                names,
                false,
            );
            FrontendError::single(file_diag(opts, msg))
        })?,
    };

    let deps = dispatch::stage_deps(&mut ctx)?;
    let roots: Vec<usize> = if opts.all_stages {
        (0..parsed.stages.len()).collect()
    } else {
        vec![target]
    };
    let order = topo(&deps, &roots).map_err(|i| {
        let s = &parsed.stages[i];
        let name = s.name.clone().unwrap_or_else(|| i.to_string());
        syntax(vec![ctx.diag(
            s.node.start_line,
            "",
            format!("circular dependency detected on stage: {name}"),
        )])
    })?;
    for i in order {
        order::lower_stage(&mut ctx, i)?;
    }
    let Some(st) = ctx.states[target].take() else {
        return Err(syntax(vec![]));
    };
    args::unused_build_args(&mut ctx);
    let (checks, failure) = ctx.lint.into_inner().finish();
    if let Some(message) = failure {
        let mut e = FrontendError::many(ErrorKind::Check, vec![file_diag(opts, message)]);
        e.checks = checks;
        return Err(e);
    }
    let mut config = st.image.clone();
    if !opts.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let mut layer_vertices = vec![None; st.base_history];
    layer_vertices.extend(st.layers.iter().cloned());
    layer_vertices.truncate(config.history.len());
    Ok(LoweredIds {
        root: st.root,
        config,
        layer_vertices,
        warnings: ctx.warnings,
        checks,
    })
}

/// Post-order of the stages the `roots` need; `Err(stage)` on a cycle.
/// Iterative (an explicit stack): a chain of thousands of stages must not
/// overflow the thread's stack.
fn topo(deps: &[Vec<usize>], roots: &[usize]) -> Result<Vec<usize>, usize> {
    // 0: not seen, 1: on the path being explored, 2: done.
    let mut state = vec![0u8; deps.len()];
    let mut out = Vec::new();
    // (stage, index of its next dependency to visit)
    let mut path: Vec<(usize, usize)> = Vec::new();
    for &r in roots {
        if state[r] == 2 {
            continue;
        }
        state[r] = 1;
        path.push((r, 0));
        while let Some(top) = path.last_mut() {
            let (i, next) = *top;
            match deps[i].get(next) {
                Some(&d) => {
                    top.1 += 1;
                    match state[d] {
                        2 => {}
                        1 => return Err(d),
                        _ => {
                            state[d] = 1;
                            path.push((d, 0));
                        }
                    }
                }
                None => {
                    state[i] = 2;
                    out.push(i);
                    path.pop();
                }
            }
        }
    }
    Ok(out)
}

/// Is this instruction one that produces a vertex (counts as a step)?
pub(crate) fn is_step(i: &Instruction) -> bool {
    matches!(
        i,
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Workdir(_)
    )
}

#[cfg(test)]
mod tests {
    use super::topo;

    /// Regression: a recursive walk overflowed the stack on a long chain.
    #[test]
    fn topo_of_a_long_chain_does_not_recurse() {
        let n: usize = 1_000_000;
        let deps: Vec<Vec<usize>> = (0..n)
            .map(|i| i.checked_sub(1).into_iter().collect())
            .collect();
        let order = topo(&deps, &[n - 1]).unwrap();
        assert_eq!(order.len(), n);
        assert!(order.iter().enumerate().all(|(i, s)| i == *s));
    }

    #[test]
    fn topo_reports_a_cycle_and_visits_shared_deps_once() {
        assert_eq!(topo(&[vec![1], vec![0]], &[0]), Err(0));
        assert_eq!(
            topo(&[vec![], vec![0], vec![0, 1]], &[2, 1]),
            Ok(vec![0, 1, 2])
        );
    }
}
