//! Diagnostics and the crate error type.
//!
//! Every Dockerfile problem is a [`Diagnostic`] with a 1-based line and column
//! and the source line it points at; [`FrontendError`] carries one or more of
//! them so that a single run reports every syntax error, not only the first.

use std::fmt;

/// One problem found in a Dockerfile, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given in [`crate::BuildOptions::dockerfile_name`].
    pub file: String,
    /// 1-based line (0 when the problem has no position, e.g. an empty file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Human readable message (BuildKit wording where BuildKit has one).
    pub message: String,
    /// The source line the position points at (empty when unknown).
    pub source_line: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        write!(f, "\n {} | {}", self.line, self.source_line)
    }
}

/// What went wrong, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The Dockerfile could not be parsed or is semantically invalid.
    Syntax,
    /// Resolving a base image failed.
    Resolve,
    /// Build checks found problems and the Dockerfile asks for that to fail
    /// the build (`# check=error=true`).
    Check,
}

/// The error of [`crate::build`] and [`crate::dump_ast`]: one or more diagnostics.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FrontendError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// The diagnostics, in source order (at least one).
    pub diagnostics: Vec<Diagnostic>,
    /// Build-check warnings found before the failure (for [`ErrorKind::Check`]
    /// the warnings that failed the build), for the caller to show.
    pub checks: Vec<crate::CheckWarning>,
}

impl FrontendError {
    /// An error made of a single diagnostic.
    pub fn single(d: Diagnostic) -> Self {
        FrontendError {
            kind: ErrorKind::Syntax,
            diagnostics: vec![d],
            checks: Vec::new(),
        }
    }

    /// An error of the given kind made of several diagnostics.
    pub fn many(kind: ErrorKind, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.line, d.col));
        FrontendError {
            kind,
            diagnostics,
            checks: Vec::new(),
        }
    }
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if self.kind == ErrorKind::Check {
                // BuildKit's message has no position.
                write!(f, "{}", d.message)?;
            } else {
                write!(f, "{d}")?;
            }
        }
        Ok(())
    }
}

/// Builds diagnostics for one file: knows its name and source lines.
#[derive(Clone, Debug)]
pub(crate) struct Reporter<'a> {
    pub file: &'a str,
    pub lines: Vec<&'a str>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let lines = src
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        Reporter { file, lines }
    }

    /// The text of 1-based `line`, or "" if out of range.
    pub fn line_text(&self, line: usize) -> &'a str {
        line.checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .copied()
            .unwrap_or("")
    }

    /// A diagnostic at `line`, column of the first non-blank character.
    pub fn at_line(&self, line: usize, message: impl Into<String>) -> Diagnostic {
        let text = self.line_text(line);
        let col = text.len() - text.trim_start().len() + 1;
        self.at(line, col, message)
    }

    /// A diagnostic at `line`, pointing at the first occurrence of `needle`
    /// in the line (or the start of the line).
    pub fn at_text(&self, line: usize, needle: &str, message: impl Into<String>) -> Diagnostic {
        let text = self.line_text(line);
        match (!needle.is_empty()).then(|| text.find(needle)).flatten() {
            Some(i) => self.at(line, text[..i].chars().count() + 1, message),
            None => self.at_line(line, message),
        }
    }

    /// A diagnostic at an explicit position.
    pub fn at(&self, line: usize, col: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            source_line: self.line_text(line).to_string(),
        }
    }
}

/// Levenshtein distance over chars.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// BuildKit's suggestion rule: the closest option within distance 2
/// (case-insensitive unless `case_sensitive`), printed in the case style of
/// `val`. `None` when `val` matches an option exactly or nothing is close.
pub(crate) fn suggest<'o>(
    val: &str,
    options: impl IntoIterator<Item = &'o str>,
    case_sensitive: bool,
) -> Option<String> {
    let v = if case_sensitive {
        val.to_string()
    } else {
        val.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut min = 3;
    for opt in options {
        let o = if case_sensitive {
            opt.to_string()
        } else {
            opt.to_lowercase()
        };
        if o == v {
            return None;
        }
        let d = levenshtein(&v, &o);
        if d < min {
            min = d;
            best = Some(if case_sensitive {
                o
            } else if val == val.to_lowercase() {
                o.to_lowercase()
            } else if val == val.to_uppercase() {
                o.to_uppercase()
            } else {
                o
            });
        }
    }
    best
}

/// `msg` with ` (did you mean X?)` appended when a suggestion exists.
pub(crate) fn with_suggestion<'o>(
    msg: String,
    val: &str,
    options: impl IntoIterator<Item = &'o str>,
    case_sensitive: bool,
) -> String {
    match suggest(val, options, case_sensitive) {
        Some(s) => format!("{msg} (did you mean {s}?)"),
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_blocks() {
        let r = Reporter::new("Dockerfile", "FROM a\nRUNN x\n");
        let e = FrontendError::many(
            ErrorKind::Syntax,
            vec![r.at_line(2, "unknown instruction: RUNN"), r.at(1, 1, "x")],
        );
        assert_eq!(
            e.to_string(),
            "Dockerfile:1:1: x\n 1 | FROM a\nDockerfile:2:1: unknown instruction: RUNN\n 2 | RUNN x"
        );
    }

    #[test]
    fn suggestions() {
        let opts = ["RUN", "COPY", "FROM"];
        assert_eq!(suggest("RUNN", opts, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", opts, false).as_deref(), Some("run"));
        assert_eq!(suggest("xyzzy", opts, false), None);
        assert_eq!(suggest("run", opts, false), None);
    }
}
