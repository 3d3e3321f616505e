//! Build arguments: global scope, automatic platform args, proxy args.

use super::Ctx;
use crate::error::FrontendError;
use crate::instructions::{Command, Instruction};
use crate::shell::Lexer;
use rbuild_graph::Platform;
use std::collections::BTreeMap;

/// Proxy build args usable without `ARG`.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Global (pre-FROM) args: name → value ("" for declared without value).
#[derive(Clone, Debug, Default)]
pub(crate) struct ArgScope {
    pub map: BTreeMap<String, String>,
}

/// The automatic platform args.
pub(crate) fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (pre, p) in [("TARGET", target), ("BUILD", build)] {
        v.push((format!("{pre}PLATFORM"), p.to_string()));
        v.push((format!("{pre}OS"), p.os.clone()));
        v.push((format!("{pre}ARCH"), p.architecture.clone()));
        v.push((
            format!("{pre}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    v
}

/// Expand the ARGs before the first FROM, with build-arg overrides.
pub(crate) fn global_scope(
    ctx: &mut Ctx<'_>,
    meta: &[Command],
    target_stage: &str,
) -> Result<ArgScope, FrontendError> {
    let mut scope = ArgScope::default();
    for (k, v) in platform_args(&ctx.opts.target_platform, &ctx.opts.build_platform) {
        scope.map.insert(k, v);
    }
    scope
        .map
        .insert("TARGETSTAGE".into(), target_stage.to_string());
    let lex = Lexer::new(ctx.escape);
    for cmd in meta {
        let Instruction::Arg(decls) = &cmd.inst else {
            continue;
        };
        for d in decls {
            ctx.used_args.insert(d.key.clone());
            let value = match (ctx.opts.build_args.get(&d.key), &d.value) {
                (Some(v), _) => v.clone(),
                (None, Some(def)) => lex.process_word(def, &scope.map).map_err(|e| {
                    FrontendError::single(ctx.diag(cmd.node.start_line, "", e.to_string()))
                })?,
                (None, None) => String::new(),
            };
            scope.map.insert(d.key.clone(), value);
        }
    }
    Ok(scope)
}

/// Warn about build args nobody declared.
pub(crate) fn unused_build_args(ctx: &mut Ctx<'_>) {
    let unused: Vec<&str> = ctx
        .opts
        .build_args
        .keys()
        .map(String::as_str)
        .filter(|k| !ctx.used_args.contains(*k) && !PROXY_ARGS.contains(k))
        .filter(|k| !k.starts_with("BUILDKIT_"))
        .collect();
    if !unused.is_empty() {
        let msg = format!(
            "One or more build-args [{}] were not consumed",
            unused.join(" ")
        );
        ctx.warnings.push(crate::Diagnostic {
            file: ctx.opts.dockerfile_name.clone(),
            line: 0,
            col: 0,
            message: msg,
            source_line: String::new(),
        });
    }
}

/// Proxy env for RUN. As in BuildKit, a proxy build arg in either spelling
/// (`http_proxy` or `HTTP_PROXY`) sets both spellings; given both, the
/// upper-case one wins.
pub(crate) fn proxy_env(ctx: &Ctx<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in PROXY_ARGS.chunks(2) {
        let [upper, lower] = pair else { continue };
        let args = &ctx.opts.build_args;
        if let Some(v) = args.get(*upper).or_else(|| args.get(*lower)) {
            out.push((upper.to_string(), v.clone()));
            out.push((lower.to_string(), v.clone()));
        }
    }
    out
}

/// The global scope from ARG defaults alone (no build args), for the
/// `InvalidDefaultArgInFrom` check; `None` if a default does not expand.
pub(crate) fn default_scope(
    ctx: &Ctx<'_>,
    meta: &[Command],
    target_stage: &str,
) -> Option<BTreeMap<String, String>> {
    let mut map: BTreeMap<String, String> =
        platform_args(&ctx.opts.target_platform, &ctx.opts.build_platform)
            .into_iter()
            .collect();
    map.insert("TARGETSTAGE".into(), target_stage.to_string());
    let lex = Lexer::new(ctx.escape);
    for cmd in meta {
        let Instruction::Arg(decls) = &cmd.inst else {
            continue;
        };
        for d in decls {
            if let Some(def) = &d.value {
                let v = lex.process_word(def, &map).ok()?;
                map.insert(d.key.clone(), v);
            }
        }
    }
    Some(map)
}
