//! Per-stage and per-instruction lowering (everything but RUN and COPY/ADD).

use super::values::{health_history, parse_ports, valid_signal};
use super::{
    args, copy, is_step, run, util, Ctx, InputRef, StageState, VertexId, DEFAULT_PATH,
    HISTORY_COMMENT,
};
use crate::error::{Diagnostic, FrontendError};
use crate::instructions::{parse_instruction, Command, Instruction, KeyValue};
use crate::shell::Lexer;
use rbuild_graph::{
    Empty, FileAction, FileOp, HealthConfig, HistoryEntry, ImageConfig, InputIndex, MkdirAction,
    Op, Platform,
};
use std::collections::BTreeMap;

/// Where a `--from` / `FROM` / `from=` reference points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FromRef {
    /// Another stage, by index.
    Stage(usize),
    /// A `--build-context` name.
    Named(String),
    /// An image reference.
    Image(String),
}

fn err1(d: Diagnostic) -> FrontendError {
    FrontendError::single(d)
}

/// Resolve a `--from` value. Like BuildKit, the value is not expanded: a
/// stage name (case-insensitive), a stage index, a build context, or else an
/// image reference. `current` is the stage making the reference.
pub(crate) fn resolve_from(
    ctx: &Ctx<'_>,
    current: usize,
    raw: &str,
    line: usize,
) -> Result<FromRef, FrontendError> {
    let v = raw.to_string();
    if v.is_empty() {
        return Err(err1(ctx.diag(
            line,
            raw,
            format!("invalid from flag value {raw:?}"),
        )));
    }
    if let Ok(idx) = v.parse::<usize>() {
        if idx >= ctx.stages.len() {
            return Err(err1(ctx.diag(
                line,
                raw,
                format!("invalid stage index {idx}"),
            )));
        }
        if idx == current {
            let name = ctx.stages[idx]
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{idx}"));
            return Err(err1(ctx.diag(
                line,
                raw,
                format!("circular dependency detected on stage: {name}"),
            )));
        }
        return Ok(FromRef::Stage(idx));
    }
    if let Some(i) = super::find_stage(ctx.stages, &v) {
        if i == current {
            return Err(err1(ctx.diag(
                line,
                raw,
                format!(
                    "circular dependency detected on stage: {}",
                    v.to_lowercase()
                ),
            )));
        }
        return Ok(FromRef::Stage(i));
    }
    if ctx.named_context_value(&v).is_some() {
        return Ok(FromRef::Named(v));
    }
    let valid = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if !valid {
        return Err(err1(ctx.diag(
            line,
            raw,
            format!("failed to parse stage name {v:?}: invalid reference format"),
        )));
    }
    Ok(FromRef::Image(v))
}

/// The base of a stage: an earlier stage by name, a named context, an image.
fn resolve_base(ctx: &Ctx<'_>, i: usize) -> Result<FromRef, FrontendError> {
    let s = &ctx.stages[i];
    let line = s.node.start_line;
    let base = Lexer::new(ctx.escape)
        .process_word(&s.base, &ctx.global.map)
        .map_err(|e| err1(ctx.diag(line, &s.base, e.to_string())))?;
    if base.is_empty() {
        return Err(err1(ctx.diag(
            line,
            "",
            format!("base name ({}) should not be blank", s.base),
        )));
    }
    if let Some(j) = super::find_stage(&ctx.stages[..i], &base) {
        return Ok(FromRef::Stage(j));
    }
    if ctx.named_context_value(&base).is_some() {
        return Ok(FromRef::Named(base));
    }
    Ok(FromRef::Image(base))
}

/// Stage dependencies (FROM, COPY --from, RUN --mount from=).
pub(crate) fn stage_deps(ctx: &mut Ctx<'_>) -> Result<Vec<Vec<usize>>, FrontendError> {
    let mut deps = vec![Vec::new(); ctx.stages.len()];
    for (i, s) in ctx.stages.iter().enumerate() {
        if s.name
            .as_deref()
            .is_some_and(|n| ctx.named_context_value(n).is_some())
        {
            continue;
        }
        if let FromRef::Stage(j) = resolve_base(ctx, i)? {
            deps[i].push(j);
        }
        for c in &s.commands {
            let line = c.node.start_line;
            super::order::literal_from(ctx, c)?;
            let froms: Vec<String> = match &c.inst {
                Instruction::Copy(cp) => cp.from.iter().cloned().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| run::mount_from(m)).collect(),
                _ => Vec::new(),
            };
            for f in froms {
                if let FromRef::Stage(j) = resolve_from(ctx, i, &f, line)? {
                    deps[i].push(j);
                }
            }
        }
    }
    Ok(deps)
}

/// The config BuildKit starts `FROM scratch` with.
fn empty_image(p: &Platform) -> ImageConfig {
    let mut img = ImageConfig {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        ..ImageConfig::default()
    };
    img.config.working_dir = Some("/".into());
    img.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
    img
}

/// How many ONBUILD triggers of `img` produce a vertex.
fn trigger_steps(img: &ImageConfig) -> usize {
    img.config
        .on_build
        .iter()
        .flatten()
        .filter(|t| {
            let w = t
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            matches!(w.as_str(), "RUN" | "COPY" | "ADD" | "WORKDIR")
        })
        .count()
}

/// Lower one stage (its dependencies are already lowered).
pub(crate) fn dispatch_stage(ctx: &mut Ctx<'_>, i: usize) -> Result<StageState, FrontendError> {
    let stages = ctx.stages;
    let stage = &stages[i];
    let line = stage.node.start_line;
    let label = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
    let platform = match &stage.platform {
        None => ctx.opts.target_platform.clone(),
        Some(p) => {
            let v = Lexer::new(ctx.escape)
                .process_word(p, &ctx.global.map)
                .map_err(|e| err1(ctx.diag(line, p, e.to_string())))?;
            Platform::parse(&v)
                .ok_or_else(|| err1(ctx.diag(line, p, format!("failed to parse platform {v}"))))?
        }
    };
    let filter = &ctx.opts.no_cache_filter;
    let ignore_cache = filter
        .iter()
        .any(|f| f == "*" || *f == label || f == &i.to_string());
    let mut st = StageState {
        index: i,
        label: label.clone(),
        root: VertexId::UNSET,
        image: ImageConfig::default(),
        env: Default::default(),
        vars: Default::default(),
        build_args: Vec::new(),
        cwd: "/".into(),
        user: String::new(),
        shell: Vec::new(),
        platform: platform.clone(),
        cmd_index: 0,
        cmd_total: 0,
        ignore_cache,
        layers: Vec::new(),
        base_history: 0,
        cmd_set_flag: false,
        name_prefix: if stages.len() == 1 {
            String::new()
        } else {
            label.clone()
        },
        on_build: false,
        workdir_set: false,
        lines: (line, stage.node.end_line),
        last_cmd: None,
        last_entrypoint: None,
        last_healthcheck: None,
    };
    // `--build-context <stage>=…` replaces the whole stage.
    if let Some(name) = stage.name.as_deref() {
        if ctx.named_context_value(name).is_some() {
            let Some((d, cfg)) = ctx.named_context(name, &platform, line)? else {
                return Err(err1(ctx.diag(
                    line,
                    "",
                    format!("unknown build context {name}"),
                )));
            };
            st.root = d;
            st.image = cfg.unwrap_or_else(|| empty_image(&platform));
            return Ok(st);
        }
    }
    let base = resolve_base(ctx, i)?;
    st.cmd_total = usize::from(
        !matches!(&base, FromRef::Stage(_))
            && !matches!(&base, FromRef::Image(b) if b == "scratch"),
    ) + stage.commands.iter().filter(|c| is_step(&c.inst)).count();
    let mut inherited = false;
    match &base {
        FromRef::Stage(j) => {
            let Some(b) = ctx.states[*j].as_ref() else {
                return Err(err1(ctx.diag(line, "", "internal: base stage not lowered")));
            };
            // The base stage's whole state (env incl. ARG values, dir, user,
            // shell, declared ARGs) carries over, as in BuildKit.
            st.image = b.image.clone();
            st.cmd_total += trigger_steps(&st.image);
            st.root = b.root;
            st.platform = b.platform.clone();
            st.env = b.env.clone();
            st.build_args = b.build_args.clone();
            st.vars = b.vars.clone();
            st.cwd = b.cwd.clone();
            st.user = b.user.clone();
            st.shell = b.shell.clone();
            st.workdir_set = b.workdir_set;
            inherited = true;
        }
        FromRef::Image(b) if b == "scratch" => {
            st.image = empty_image(&platform);
            st.root = ctx.scratch_vertex();
        }
        FromRef::Image(b) => {
            let r = ctx.resolve(b, &platform, line)?;
            let (os, arch) = (&r.config.os, &r.config.architecture);
            if !os.is_empty()
                && !arch.is_empty()
                && (*os != platform.os || *arch != platform.architecture)
            {
                let actual = Platform {
                    os: os.clone(),
                    architecture: arch.clone(),
                    variant: r.config.variant.clone(),
                };
                ctx.check(
                    crate::lint::rules::INVALID_BASE_IMAGE_PLATFORM,
                    (line, stage.node.end_line),
                    format!(
                        "Base image {b} was pulled with platform {:?}, expected {:?} for current build",
                        actual.to_string(),
                        platform.to_string()
                    ),
                );
            }
            st.cmd_total += trigger_steps(&r.config);
            let h = &r.config.history;
            if !h.is_empty() && h.iter().all(|e| e.empty_layer) {
                // An image without layers is lowered like scratch.
                st.root = ctx.scratch_vertex();
            } else {
                let meta = ctx.step_meta(
                    &mut st,
                    &format!("FROM {}", r.reference),
                    (line, stage.node.end_line),
                );
                st.root = ctx.image_vertex(&r, &platform, meta);
            }
            st.image = r.config;
            st.image.created = None;
        }
        FromRef::Named(n) => {
            let n = n.clone();
            let Some((d, cfg)) = ctx.named_context(&n, &platform, line)? else {
                return Err(err1(ctx.diag(
                    line,
                    "",
                    format!("unknown build context {n}"),
                )));
            };
            st.root = d;
            st.image = cfg.unwrap_or_else(|| empty_image(&platform));
        }
    }
    if st.image.architecture.is_empty() {
        st.image.architecture = st.platform.architecture.clone();
        st.image.os = st.platform.os.clone();
        st.image.variant = st.platform.variant.clone();
    }
    if !inherited {
        let env = st.image.config.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.split('=').next() == Some("PATH")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for e in env.clone() {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            st.set_env(k, v);
        }
        if let Some(wd) = st
            .image
            .config
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty())
        {
            st.cwd = util::resolve_path("/", wd);
        }
        st.user = st.image.config.user.clone().unwrap_or_default();
        st.shell = st
            .image
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    }
    st.base_history = st.image.history.len();
    // ONBUILD triggers of the base run first.
    let mut commands: Vec<Command> = Vec::new();
    let onbuild_src = st.image.config.on_build.take().unwrap_or_default();
    for trig in &onbuild_src {
        let ast = crate::parser::parse(trig).map_err(|e| {
            err1(ctx.diag(
                line,
                "",
                format!(
                    "failed to parse onbuild trigger {trig:?}: {}",
                    e.first().map(|x| x.message.as_str()).unwrap_or("")
                ),
            ))
        })?;
        if ast.nodes.len() != 1 {
            return Err(err1(ctx.diag(
                line,
                "",
                "onbuild trigger should be a single expression",
            )));
        }
        for mut n in ast.nodes {
            n.start_line = line;
            n.end_line = stage.node.end_line;
            let inst = parse_instruction(&n).map_err(|e| err1(ctx.diag(line, "", e.message)))?;
            commands.push(Command { inst, node: n });
        }
    }
    super::order::lower_trigger_deps(ctx, i, &commands)?;
    st.on_build = true;
    for c in &commands {
        dispatch_command(ctx, &mut st, c)?;
    }
    st.on_build = false;
    for c in &stage.commands {
        dispatch_command(ctx, &mut st, c)?;
    }
    Ok(st)
}

/// Add a history entry.
pub(crate) fn commit(st: &mut StageState, msg: String, layer: bool) {
    st.image.history.push(HistoryEntry {
        created: None,
        created_by: Some(msg),
        comment: Some(HISTORY_COMMENT.into()),
        empty_layer: !layer,
    });
    st.layers.push(layer.then_some(st.root));
}

/// Expand one word with the stage env; variables that are neither set nor
/// declared ARGs are reported (`UndefinedVar`).
pub(crate) fn expand(
    ctx: &Ctx<'_>,
    st: &StageState,
    word: &str,
    line: usize,
) -> Result<String, FrontendError> {
    let (out, unmatched) = Lexer::new(ctx.escape)
        .process_word_unmatched(word, &st.vars())
        .map_err(|e| err1(ctx.diag(line, word, e.to_string())))?;
    report_undefined(ctx, st, &unmatched, line);
    Ok(out)
}

/// `UndefinedVar` for each name in `unmatched` that is not a declared ARG.
pub(crate) fn report_undefined(
    ctx: &Ctx<'_>,
    st: &StageState,
    unmatched: &std::collections::BTreeSet<String>,
    line: usize,
) {
    for name in unmatched {
        if st.is_declared_arg(name) {
            continue;
        }
        let mut msg = String::with_capacity(64);
        msg.push_str("Usage of undefined variable '$");
        msg.push_str(name);
        msg.push('\'');
        let keys = st.env.iter().map(|(k, _)| &**k);
        if let Some(s) = crate::error::suggest(name, keys, true) {
            msg.push_str(" (did you mean $");
            msg.push_str(&s);
            msg.push_str("?)");
        }
        let end = if st.lines.0 == line { st.lines.1 } else { line };
        ctx.check(crate::lint::rules::UNDEFINED_VAR, (line, end), msg);
    }
}

fn expand_kvs(
    ctx: &Ctx<'_>,
    st: &StageState,
    kvs: &[KeyValue],
    line: usize,
) -> Result<Vec<(String, String)>, FrontendError> {
    kvs.iter()
        .map(|kv| {
            Ok((
                expand(ctx, st, &kv.key, line)?,
                expand(ctx, st, &kv.value, line)?,
            ))
        })
        .collect()
}

fn with_shell(st: &StageState, cmd: &crate::instructions::CmdLine) -> Vec<String> {
    if cmd.shell_form {
        st.shell
            .iter()
            .cloned()
            .chain(cmd.args.iter().cloned())
            .collect()
    } else {
        cmd.args.clone()
    }
}

fn dispatch_command(
    ctx: &mut Ctx<'_>,
    st: &mut StageState,
    c: &Command,
) -> Result<(), FrontendError> {
    let line = c.node.start_line;
    let lines = (line, c.node.end_line);
    st.lines = lines;
    let name = c.node.value.as_str();
    match &c.inst {
        Instruction::Env(kvs) => {
            let pairs = expand_kvs(ctx, st, kvs, line)?;
            let mut msg = String::from("ENV");
            for (kv, (k, v)) in kvs.iter().zip(&pairs) {
                legacy_format(ctx, kv, name, lines);
                secret_key(ctx, "ENV", k, lines);
                msg.push(' ');
                let at = msg.len();
                msg.push_str(k);
                msg.push('=');
                msg.push_str(v);
                let entry = msg[at..].to_string();
                st.set_env(k, v);
                st.set_config_env(k, entry);
            }
            commit(st, msg, false);
        }
        Instruction::Label(kvs) => {
            let pairs = expand_kvs(ctx, st, kvs, line)?;
            for kv in kvs {
                legacy_format(ctx, kv, name, lines);
            }
            let mut msg = String::from("LABEL");
            let labels = st.image.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                msg.push(' ');
                msg.push_str(&k);
                msg.push('=');
                msg.push_str(&v);
                labels.insert(k, v);
            }
            commit(st, msg, false);
        }
        Instruction::Arg(decls) => {
            let mut parts = Vec::new();
            for d in decls {
                secret_key(ctx, "ARG", &d.key, lines);
                ctx.used_args.insert(d.key.clone());
                let value = if let Some(v) = ctx.opts.build_args.get(&d.key) {
                    Some(v.clone())
                } else if let Some(def) = &d.value {
                    Some(expand(ctx, st, def, line)?)
                } else {
                    ctx.global.map.get(&d.key).cloned()
                };
                let env_index = match &value {
                    Some(v) => Some(st.set_env(&d.key, v)),
                    None => st.env_position(&d.key),
                };
                st.declare_arg(super::DeclaredArg {
                    key: d.key.clone(),
                    value: value.clone(),
                    env_index,
                });
                parts.push(match &value {
                    Some(v) => format!("{}={v}", d.key),
                    None => d.key.clone(),
                });
            }
            commit(st, format!("ARG {}", parts.join(" ")), false);
        }
        Instruction::Expose(ports) => {
            let mut ps = Vec::new();
            for p in ports {
                let e = Lexer::new(ctx.escape)
                    .process(p, &st.vars())
                    .map_err(|e| err1(ctx.diag(line, p, e.to_string())))?;
                report_undefined(ctx, st, &e.unmatched, line);
                for w in e.words {
                    if let Some((_, proto)) = w.split_once('/') {
                        if proto != proto.to_lowercase() {
                            ctx.check(
                                crate::lint::rules::EXPOSE_PROTO_CASING,
                                lines,
                                format!(
                                    "Defined protocol '{w}' in EXPOSE instruction should be lowercase"
                                ),
                            );
                        }
                    }
                    let (ip, host, _) = super::values::split_port_parts(&w);
                    if !ip.is_empty() || !host.is_empty() {
                        ctx.check(
                            crate::lint::rules::EXPOSE_INVALID_FORMAT,
                            lines,
                            format!(
                                "EXPOSE instruction should not define an IP address or host-port mapping, found '{w}'"
                            ),
                        );
                    }
                    ps.extend(parse_ports(&w).map_err(|e| err1(ctx.diag(line, p, e)))?);
                }
            }
            let exposed = st
                .image
                .config
                .exposed_ports
                .get_or_insert_with(BTreeMap::new);
            for p in &ps {
                exposed.insert(p.clone(), Empty {});
            }
            // BuildKit prints the set of ports, sorted.
            ps.sort_unstable();
            ps.dedup();
            commit(st, format!("EXPOSE {}", util::go_list(&ps)), false);
        }
        Instruction::Volume(vols) => {
            let mut out = Vec::new();
            for v in vols {
                let v = expand(ctx, st, v, line)?;
                if v.is_empty() {
                    return Err(err1(ctx.diag(
                        line,
                        "",
                        "VOLUME specified can not be an empty string",
                    )));
                }
                out.push(v);
            }
            let map = st.image.config.volumes.get_or_insert_with(BTreeMap::new);
            for v in &out {
                map.insert(v.clone(), Empty {});
            }
            commit(st, format!("VOLUME {}", util::go_list(&out)), false);
        }
        Instruction::User(u) => {
            let u = expand(ctx, st, u, line)?;
            st.user = u.clone();
            st.image.config.user = Some(u.clone());
            commit(st, format!("USER {u}"), false);
        }
        Instruction::Workdir(w) => {
            let w = expand(ctx, st, w, line)?;
            if w.is_empty() {
                return Err(err1(ctx.diag(line, "", "cannot normalize nothing")));
            }
            if !st.workdir_set && !w.starts_with('/') {
                ctx.check(
                    crate::lint::rules::WORKDIR_RELATIVE_PATH,
                    lines,
                    format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                );
            }
            st.workdir_set = true;
            let wd = util::resolve_path(&st.cwd, &w);
            st.cwd = wd.clone();
            st.image.config.working_dir = Some(wd.clone());
            let layer = wd != "/";
            if layer {
                let text = run::display_text(ctx, st, &c.node);
                let meta = ctx.step_meta(st, &text, (line, c.node.end_line));
                st.root = ctx.graph.add(
                    Op::File(FileOp {
                        base: Some(InputIndex(0)),
                        actions: vec![FileAction::Mkdir(MkdirAction {
                            path: wd.clone(),
                            mode: 0o755,
                            make_parents: true,
                            owner: util::parse_chown(&st.user),
                        })],
                    }),
                    vec![InputRef::root(st.root)],
                    meta,
                );
            }
            commit(st, format!("WORKDIR {wd}"), layer);
        }
        Instruction::StopSignal(s) => {
            let s = expand(ctx, st, s, line)?;
            if !valid_signal(&s) {
                return Err(err1(ctx.diag(line, "", format!("Invalid signal: {s}"))));
            }
            st.image.config.stop_signal = Some(s.clone());
            commit(st, format!("STOPSIGNAL {s}"), false);
        }
        Instruction::Maintainer(m) => {
            st.image.author = Some(m.clone());
            commit(st, format!("MAINTAINER {m}"), false);
        }
        Instruction::Onbuild(expr) => {
            st.image
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(expr.clone());
        }
        Instruction::Healthcheck(h) => {
            used_once(ctx, &mut st.last_healthcheck, name, lines);
            let nz = |v: i64| (v != 0).then_some(v);
            st.image.config.healthcheck = Some(HealthConfig {
                test: Some(h.test.clone()),
                interval: nz(h.interval),
                timeout: nz(h.timeout),
                start_period: nz(h.start_period),
                start_interval: nz(h.start_interval),
                retries: nz(h.retries),
            });
            commit(st, health_history(h), false);
        }
        Instruction::Shell(sh) => {
            st.shell = sh.clone();
            st.image.config.shell = Some(sh.clone());
            commit(st, format!("SHELL {}", util::go_list(sh)), false);
        }
        Instruction::Cmd(cl) => {
            used_once(ctx, &mut st.last_cmd, name, lines);
            json_args(ctx, st, cl, name, lines);
            let args = with_shell(st, cl);
            commit(st, format!("CMD {}", util::go_quote_list(&args)), false);
            st.image.config.cmd = Some(args);
            st.image.config.args_escaped = Some(true);
            st.cmd_set();
        }
        Instruction::Entrypoint(cl) => {
            used_once(ctx, &mut st.last_entrypoint, name, lines);
            json_args(ctx, st, cl, name, lines);
            let args = with_shell(st, cl);
            commit(
                st,
                format!("ENTRYPOINT {}", util::go_quote_list(&args)),
                false,
            );
            st.image.config.entrypoint = Some(args);
            if !st.cmd_was_set() {
                st.image.config.cmd = None;
            }
        }
        Instruction::Run(r) => run::dispatch_run(ctx, st, r, &c.node)?,
        Instruction::Copy(cp) => copy::dispatch_copy(ctx, st, cp, &c.node)?,
    }
    Ok(())
}

impl StageState {
    fn cmd_set(&mut self) {
        self.cmd_set_flag = true;
    }
    fn cmd_was_set(&self) -> bool {
        self.cmd_set_flag
    }
}

/// Expose for RUN/COPY: proxy env.
pub(crate) fn proxy_env(ctx: &Ctx<'_>) -> Vec<(String, String)> {
    args::proxy_env(ctx)
}

/// `LegacyKeyValueFormat` for `ENV key value` / `LABEL key value`.
fn legacy_format(ctx: &Ctx<'_>, kv: &KeyValue, name: &str, lines: (usize, usize)) {
    if kv.no_delim {
        ctx.check(
            crate::lint::rules::LEGACY_KEY_VALUE_FORMAT,
            lines,
            format!(
                "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
            ),
        );
    }
}

/// `SecretsUsedInArgOrEnv`.
fn secret_key(ctx: &Ctx<'_>, instruction: &str, key: &str, lines: (usize, usize)) {
    if crate::lint::is_secret_key(key) {
        ctx.check(
            crate::lint::rules::SECRETS_USED_IN_ARG_OR_ENV,
            lines,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})"
            ),
        );
    }
}

/// `MultipleInstructionsDisallowed`: reported at the earlier instruction,
/// the one that has no effect.
fn used_once(ctx: &Ctx<'_>, last: &mut Option<(usize, usize)>, name: &str, lines: (usize, usize)) {
    if let Some(prev) = last.replace(lines) {
        ctx.check(
            crate::lint::rules::MULTIPLE_INSTRUCTIONS_DISALLOWED,
            prev,
            format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
        );
    }
}

/// `JSONArgsRecommended`: shell-form CMD/ENTRYPOINT without a SHELL.
fn json_args(
    ctx: &Ctx<'_>,
    st: &StageState,
    cl: &crate::instructions::CmdLine,
    name: &str,
    lines: (usize, usize),
) {
    if cl.shell_form && st.image.config.shell.as_ref().is_none_or(|s| s.is_empty()) {
        ctx.check(
            crate::lint::rules::JSON_ARGS_RECOMMENDED,
            lines,
            format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
        );
    }
}
