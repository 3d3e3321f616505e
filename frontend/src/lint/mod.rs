//! Build checks: BuildKit's Dockerfile lint rules, reported as warnings.
//!
//! The rules live in [`rules`]; the static ones (casing, stage names,
//! MAINTAINER, FROM arguments) are checked over the parsed stages in
//! `stages`, the rest while lowering, where the environment of each
//! instruction is known. Which rules run follows the `# check=` directive
//! (or the `BUILDKIT_DOCKERFILE_CHECK` build arg, which wins), as in
//! BuildKit: `skip=<rules>|all`, `error=<bool>`, `experimental=<rules>|all`.
//!
//! A warning is a [`CheckWarning`]: rule, BuildKit's message, and the lines
//! of the instruction. With `error=true`, a build that produced any warning
//! fails with BuildKit's `lint violation found for rules: …`.

pub mod rules;
pub(crate) mod stages;

pub use rules::Rule;

use std::collections::BTreeMap;
use std::fmt;

/// One finding of a build check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckWarning {
    /// The rule that fired.
    pub rule: Rule,
    /// BuildKit's message (`'as' and 'FROM' keywords' casing do not match`).
    pub message: String,
    /// 1-based first line of the instruction (0: no position).
    pub line: usize,
    /// 1-based last line of the instruction.
    pub end_line: usize,
}

impl fmt::Display for CheckWarning {
    /// BuildKit's short form: `Rule: message (line N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.name, self.message)?;
        if self.line > 0 {
            write!(f, " (line {})", self.line)?;
        }
        Ok(())
    }
}

/// Which rules run, from `# check=…` (BuildKit's `ParseLintOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=A,B`.
    pub skip: Vec<String>,
    /// `error=true`: warnings fail the build.
    pub error: bool,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=A,B`.
    pub experimental: Vec<String>,
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',').map(|r| r.trim().to_string()).collect()
}

fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl CheckConfig {
    /// Parse a `check` directive value; the error is BuildKit's message.
    pub fn parse(s: &str) -> Result<CheckConfig, String> {
        let s = s.trim();
        let mut c = CheckConfig::default();
        if s.is_empty() {
            return Ok(c);
        }
        for part in s.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            match k.trim() {
                "skip" => match v.trim() {
                    "all" => c.skip_all = true,
                    v => c.skip = split_list(v),
                },
                "experimental" => match v.trim() {
                    "all" => c.experimental_all = true,
                    v => c.experimental = split_list(v),
                },
                "error" => {
                    let v = v.trim();
                    c.error = go_parse_bool(v).ok_or_else(|| {
                        format!(
                            "failed to parse check option {part:?}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                        )
                    })?;
                }
                k => return Err(format!("invalid check option {k:?}")),
            }
        }
        Ok(c)
    }

    /// Does `rule` run under this configuration?
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.iter().any(|r| r == rule.name)
        } else {
            !self.skip_all && !self.skip.iter().any(|r| r == rule.name)
        }
    }
}

/// Collects the warnings of the rules that are enabled.
#[derive(Clone, Debug, Default)]
pub(crate) struct Linter {
    pub config: CheckConfig,
    pub warnings: Vec<CheckWarning>,
    /// Rules skipped for one instruction, by its first line: a
    /// `# check=skip=…` comment right above it, as BuildKit honours.
    pub inline: BTreeMap<usize, CheckConfig>,
}

impl Linter {
    pub fn new(config: CheckConfig) -> Self {
        Linter {
            config,
            warnings: Vec::new(),
            inline: BTreeMap::new(),
        }
    }

    /// Record the `# check=skip=…` comments directly above each node.
    pub fn inline_skips(&mut self, nodes: &[crate::parser::Node]) {
        for n in nodes {
            for c in &n.comments {
                let Some((k, v)) = c.split_once('=') else {
                    continue;
                };
                if !k.trim().eq_ignore_ascii_case("check") {
                    continue;
                }
                if let Ok(cfg) = CheckConfig::parse(v) {
                    if cfg.skip_all || !cfg.skip.is_empty() {
                        self.inline.insert(n.start_line, cfg);
                    }
                }
            }
        }
    }

    /// Report `rule` at `lines` (first, last) unless it is disabled.
    pub fn run(&mut self, rule: Rule, lines: (usize, usize), message: String) {
        if !self.config.enabled(&rule) {
            return;
        }
        if let Some(c) = self.inline.get(&lines.0) {
            if c.skip_all || c.skip.iter().any(|r| r == rule.name) {
                return;
            }
        }
        let w = CheckWarning {
            rule,
            message,
            line: lines.0,
            end_line: lines.1,
        };
        // The same word expanded twice (e.g. for the history text) must not
        // report twice. Warnings arrive in line order within a stage, so
        // only the tail of the same line is compared.
        let dup = self
            .warnings
            .iter()
            .rev()
            .take_while(|x| x.line == w.line)
            .any(|x| *x == w);
        if !dup {
            self.warnings.push(w);
        }
    }

    /// The warnings in line order (stable for one line).
    pub fn finish(mut self) -> (Vec<CheckWarning>, Option<String>) {
        self.warnings.sort_by_key(|w| w.line);
        let err = (self.config.error && !self.warnings.is_empty()).then(|| {
            let mut names: Vec<&str> = self.warnings.iter().map(|w| w.rule.name).collect();
            names.sort_unstable();
            names.dedup();
            format!("lint violation found for rules: {}", names.join(", "))
        });
        (self.warnings, err)
    }
}

/// BuildKit's secret-name test: a `_`-separated part of `key` is one of
/// the secret words and none is one of the allowed words (case-insensitive).
pub fn is_secret_key(key: &str) -> bool {
    const DENY: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: &[&str] = &["public", "file", "version"];
    let has = |words: &[&str]| {
        key.split('_')
            .any(|p| words.iter().any(|w| p.eq_ignore_ascii_case(w)))
    };
    has(DENY) && !has(ALLOW)
}

/// Would `reference.ParseNormalizedNamed` accept `s`? (`[domain/]path[:tag][@digest]`,
/// lower-case path components.)
pub fn valid_reference(s: &str) -> bool {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return false;
        };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let mut cs = t.chars();
        let ok_first = cs
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_first || t.len() > 128 || !cs.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first part with '.', ':' or "localhost" is a registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        if h.is_empty()
            || !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
            || port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return false;
        }
    }
    parts.iter().all(|p| valid_path_component(p))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
