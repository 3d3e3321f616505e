//! The rules BuildKit applies to `--from` references between stages:
//! values are never expanded, a stage may only read stages defined before
//! it, and ONBUILD triggers of a base may bring in stages nothing else
//! needed (they are lowered when the trigger is read, as BuildKit adds
//! them to its dependency graph then).

use super::dispatch::{self, resolve_from, FromRef};
use super::{run, Ctx};
use crate::error::FrontendError;
use crate::instructions::{Command, Instruction};

/// A `--from` of one command: its raw value and, for a `RUN --mount`, the
/// raw mount target (BuildKit names it in the error).
struct FromUse<'c> {
    value: String,
    mount_target: Option<&'c str>,
}

fn froms(c: &Command) -> Vec<FromUse<'_>> {
    match &c.inst {
        Instruction::Copy(cp) => cp
            .from
            .iter()
            .map(|f| FromUse {
                value: f.clone(),
                mount_target: None,
            })
            .collect(),
        Instruction::Run(r) => r
            .mounts
            .iter()
            .filter_map(|m| {
                let value = run::mount_from(m)?;
                let target = m
                    .split(',')
                    .filter_map(|f| f.split_once('='))
                    .find(|(k, _)| {
                        matches!(
                            k.trim().to_ascii_lowercase().as_str(),
                            "target" | "dst" | "destination"
                        )
                    })
                    .map_or("", |(_, v)| v);
                Some(FromUse {
                    value,
                    mount_target: Some(target),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// BuildKit's errors for a variable in `COPY --from` (any value that
/// expansion would change) and in `RUN --mount=from=` (a `$` that is not
/// the last character). Checked for every stage, built or not, before any
/// stage is lowered.
pub(crate) fn literal_from(ctx: &Ctx<'_>, c: &Command) -> Result<(), FrontendError> {
    let line = c.node.start_line;
    for f in froms(c) {
        let msg = if f.mount_target.is_some() {
            let var = f.value.find('$').is_some_and(|i| i + 1 < f.value.len());
            var.then_some("'from' doesn't support variable expansion, define alias stage instead")
        } else {
            let expanded =
                crate::shell::Lexer::new(ctx.escape).process_word(&f.value, &ctx.global.map);
            (expanded.as_deref().ok() != Some(f.value.as_str())).then_some(
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            )
        };
        if let Some(msg) = msg {
            return Err(FrontendError::single(ctx.diag(line, &f.value, msg)));
        }
    }
    Ok(())
}

/// Stage `i` (or a trigger it runs) may only read stages defined before
/// it: BuildKit dispatches stages in file order and fails a read of one not
/// dispatched yet.
fn defined_before(ctx: &Ctx<'_>, i: usize, commands: &[Command]) -> Result<(), FrontendError> {
    for c in commands {
        let line = c.node.start_line;
        for f in froms(c) {
            let FromRef::Stage(j) = resolve_from(ctx, i, &f.value, line)? else {
                continue;
            };
            if j < i {
                continue;
            }
            let stage = ctx.stages[i].name.as_deref().unwrap_or("");
            let msg = match f.mount_target {
                None => format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {stage:?}",
                    f.value
                ),
                Some(t) => format!(
                    "cannot mount from stage {:?} to {t:?}, stage needs to be defined before current command",
                    f.value
                ),
            };
            return Err(FrontendError::single(ctx.diag(line, &f.value, msg)));
        }
    }
    Ok(())
}

/// Lower stage `i` unless it already is (an ONBUILD trigger may have
/// needed it earlier).
pub(crate) fn lower_stage(ctx: &mut Ctx<'_>, i: usize) -> Result<(), FrontendError> {
    if ctx.states[i].is_some() {
        return Ok(());
    }
    let stages = ctx.stages;
    defined_before(ctx, i, &stages[i].commands)?;
    let st = dispatch::dispatch_stage(ctx, i)?;
    ctx.states[i] = Some(st);
    Ok(())
}

/// Before stage `i` runs the ONBUILD triggers of its base: lower the
/// stages they read that are not lowered yet (with their dependencies).
/// Those stages are all defined before `i`, so no stage being lowered is
/// among them.
pub(crate) fn lower_trigger_deps(
    ctx: &mut Ctx<'_>,
    i: usize,
    triggers: &[Command],
) -> Result<(), FrontendError> {
    defined_before(ctx, i, triggers)?;
    let mut need = Vec::new();
    for c in triggers {
        literal_from(ctx, c)?;
        for f in froms(c) {
            if let FromRef::Stage(j) = resolve_from(ctx, i, &f.value, c.node.start_line)? {
                if ctx.states[j].is_none() {
                    need.push(j);
                }
            }
        }
    }
    if need.is_empty() {
        return Ok(());
    }
    let deps = dispatch::stage_deps(ctx)?;
    let order = super::topo(&deps, &need).map_err(|k| {
        let name = ctx.stages[k].name.clone().unwrap_or_else(|| k.to_string());
        FrontendError::single(ctx.diag(
            ctx.stages[k].node.start_line,
            "",
            format!("circular dependency detected on stage: {name}"),
        ))
    })?;
    for k in order {
        if k >= i {
            // Only reachable through a reference `defined_before` rejects
            // when stage `k`'s reader is lowered.
            continue;
        }
        lower_stage(ctx, k)?;
    }
    Ok(())
}
