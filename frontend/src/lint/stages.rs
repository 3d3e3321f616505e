//! The checks BuildKit runs over the parsed stages, before lowering: casing,
//! stage names, MAINTAINER, ARG use in FROM, definition comments.

use super::{rules, valid_reference, Linter};
use crate::instructions::{Instruction, Stage, Stages};
use crate::parser::Node;
use crate::shell::Lexer;
use std::collections::BTreeMap;

fn lines(n: &Node) -> (usize, usize) {
    (n.start_line, n.end_line)
}

fn is_lower(s: &str) -> bool {
    if s.is_ascii() {
        return !s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s == s.to_lowercase()
}

fn is_upper(s: &str) -> bool {
    if s.is_ascii() {
        return !s.bytes().any(|b| b.is_ascii_lowercase());
    }
    s == s.to_uppercase()
}

/// Everything that needs only the parsed file. `global` is the global ARG
/// scope with build args applied, `defaults` the same from ARG defaults
/// only (`None` when those could not be expanded).
pub(crate) fn check_stages(
    lint: &mut Linter,
    parsed: &Stages,
    escape: char,
    global: &BTreeMap<String, String>,
    defaults: Option<&BTreeMap<String, String>>,
) {
    check_parse_time(lint, parsed);
    for c in &parsed.meta_args {
        definition_description(lint, c);
    }
    for s in &parsed.stages {
        if let Some(name) = &s.name {
            let desc = [name.clone()];
            describe(lint, "FROM", &desc, &s.node);
        }
        for c in &s.commands {
            definition_description(lint, c);
        }
    }
    stage_names(lint, &parsed.stages);
    instruction_casing(lint, &parsed.stages);
    for s in &parsed.stages {
        from_args(lint, s, escape, global);
    }
    if let Some(defaults) = defaults {
        let lex = Lexer::new(escape);
        for s in &parsed.stages {
            let Ok(name) = lex.process_word(&s.base, defaults) else {
                return;
            };
            if !valid_reference(&name) {
                lint.run(
                    rules::INVALID_DEFAULT_ARG_IN_FROM,
                    lines(&s.node),
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        s.base
                    ),
                );
            }
        }
    }
}

/// The checks BuildKit runs while it parses each instruction, so their
/// warnings for the instructions before a parse error are still reported.
pub(crate) fn check_parse_time(lint: &mut Linter, parsed: &Stages) {
    for s in &parsed.stages {
        from_casing(lint, &s.node);
        for c in &s.commands {
            if matches!(c.inst, Instruction::Maintainer(_)) {
                lint.run(
                    rules::MAINTAINER_DEPRECATED,
                    lines(&c.node),
                    "Maintainer instruction is deprecated in favor of using label".into(),
                );
            }
        }
    }
}

fn from_casing(lint: &mut Linter, n: &Node) {
    if let [_, as_, name] = n.args.as_slice() {
        if !is_lower(name) {
            lint.run(
                rules::STAGE_NAME_CASING,
                lines(n),
                format!("Stage name '{name}' should be lowercase"),
            );
        }
        let from = &n.value;
        let mismatch = (is_lower(from) && !is_lower(as_))
            || (!is_lower(from) && is_upper(from) && !is_upper(as_));
        if mismatch {
            lint.run(
                rules::FROM_AS_CASING,
                lines(n),
                format!("'{as_}' and '{from}' keywords' casing do not match"),
            );
        }
    }
}

fn definition_description(lint: &mut Linter, c: &crate::instructions::Command) {
    if let Instruction::Arg(decls) = &c.inst {
        let keys: Vec<String> = decls.iter().map(|d| d.key.clone()).collect();
        describe(lint, "ARG", &keys, &c.node);
    }
}

/// `InvalidDefinitionDescription` (experimental): the comment right above a
/// named FROM or an ARG must start with the name.
fn describe(lint: &mut Linter, instruction: &str, keys: &[String], n: &Node) {
    let (Some(last), Some(first_key)) = (n.comments.last(), keys.first()) else {
        return;
    };
    let word = last.split(' ').next().unwrap_or("");
    if keys.iter().any(|k| k == word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        first_key.as_str()
    };
    lint.run(
        rules::INVALID_DEFINITION_DESCRIPTION,
        lines(n),
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    );
}

fn stage_names(lint: &mut Linter, stages: &[Stage]) {
    let mut seen: Vec<&str> = Vec::new();
    for s in stages {
        let Some(name) = s.name.as_deref() else {
            continue;
        };
        if matches!(name, "context" | "scratch") {
            lint.run(
                rules::RESERVED_STAGE_NAME,
                lines(&s.node),
                format!("Stage name should not use the same name as reserved stage {name:?}"),
            );
        }
        if seen.contains(&name) {
            lint.run(
                rules::DUPLICATE_STAGE_NAME,
                lines(&s.node),
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
        seen.push(name);
    }
}

fn instruction_casing(lint: &mut Linter, stages: &[Stage]) {
    let nodes = || {
        stages
            .iter()
            .flat_map(|s| std::iter::once(&s.node).chain(s.commands.iter().map(|c| &c.node)))
    };
    let (mut lower, mut upper) = (0, 0);
    for n in nodes() {
        if is_lower(&n.value) {
            lower += 1;
        } else if is_upper(&n.value) {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for n in nodes() {
        let casing = if majority_lower && !is_lower(&n.value) {
            "lowercase"
        } else if !majority_lower && !is_upper(&n.value) {
            "uppercase"
        } else {
            continue;
        };
        lint.run(
            rules::CONSISTENT_INSTRUCTION_CASING,
            lines(n),
            format!(
                "Command '{}' should match the case of the command majority ({casing})",
                n.value
            ),
        );
    }
}

/// UndefinedArgInFrom, RedundantTargetPlatform, FromPlatformFlagConstDisallowed.
fn from_args(lint: &mut Linter, s: &Stage, escape: char, global: &BTreeMap<String, String>) {
    let lex = Lexer::new(escape);
    let keys = || global.keys().map(String::as_str);
    let undeclared = |lint: &mut Linter, unmatched: &std::collections::BTreeSet<String>| {
        for arg in unmatched.iter().filter(|a| !global.contains_key(*a)) {
            let mut msg = format!("FROM argument '{arg}' is not declared");
            if let Some(s) = crate::error::suggest(arg, keys(), true) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            lint.run(rules::UNDEFINED_ARG_IN_FROM, lines(&s.node), msg);
        }
    };
    if let Ok(e) = lex.process(&s.base, global) {
        undeclared(lint, &e.unmatched);
    }
    let Some(p) = &s.platform else {
        return;
    };
    let Ok(e) = lex.process(p, global) else {
        return;
    };
    undeclared(lint, &e.unmatched);
    if e.matched.len() == 1
        && e.unmatched.is_empty()
        && e.matched.contains("TARGETPLATFORM")
        && global.get("TARGETPLATFORM") == Some(&e.result)
    {
        lint.run(
            rules::REDUNDANT_TARGET_PLATFORM,
            lines(&s.node),
            format!(
                "Setting platform to predefined {p} in FROM is redundant as this is the default behavior"
            ),
        );
    }
    if e.matched.is_empty() && e.unmatched.is_empty() {
        if let Some(plat) = rbuild_graph::Platform::parse(&e.result) {
            let name = s.name.as_deref().unwrap_or("");
            if !name.contains(plat.os.as_str()) && !name.contains(plat.architecture.as_str()) {
                lint.run(
                    rules::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                    lines(&s.node),
                    format!(
                        "FROM --platform flag should not use constant value {:?}",
                        e.result
                    ),
                );
            }
        }
    }
}
