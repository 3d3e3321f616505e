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

/// Builds diagnostics for one file: knows its name and source. The line
/// index is made on the first diagnostic, so a clean file never pays for it.
#[derive(Clone, Debug)]
pub(crate) struct Reporter<'a> {
    pub file: &'a str,
    src: &'a str,
    lines: std::cell::OnceCell<Vec<&'a str>>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        Reporter {
            file,
            src,
            lines: std::cell::OnceCell::new(),
        }
    }

    /// The text of 1-based `line`, or "" if out of range.
    pub fn line_text(&self, line: usize) -> &'a str {
        let lines = self.lines.get_or_init(|| {
            self.src
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect()
        });
        line.checked_sub(1)
            .and_then(|i| lines.get(i))
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

/// Levenshtein distance with buffers reused across calls.
#[derive(Default)]
struct Distance {
    b: Vec<char>,
    prev: Vec<usize>,
    cur: Vec<usize>,
}

impl Distance {
    fn between(&mut self, a: &[char], b: &str) -> usize {
        self.b.clear();
        self.b.extend(b.chars());
        let n = self.b.len();
        self.prev.clear();
        self.prev.extend(0..=n);
        self.cur.clear();
        self.cur.resize(n + 1, 0);
        for (i, ca) in a.iter().enumerate() {
            self.cur[0] = i + 1;
            for (j, cb) in self.b.iter().enumerate() {
                let cost = usize::from(ca != cb);
                self.cur[j + 1] = (self.prev[j] + cost)
                    .min(self.prev[j + 1] + 1)
                    .min(self.cur[j] + 1);
            }
            std::mem::swap(&mut self.prev, &mut self.cur);
        }
        self.prev[n]
    }
}

/// Levenshtein distance of two short byte strings if it is below `limit`;
/// `None` when it is not, or past 31 bytes. Stops as soon as a whole row of
/// the table reaches `limit` (no later cell can be smaller).
fn ascii_distance(a: &[u8], b: &[u8], limit: usize) -> Option<usize> {
    const N: usize = 32;
    if a.len() >= N || b.len() >= N {
        return None;
    }
    let mut prev = [0u8; N];
    let mut cur = [0u8; N];
    let n = b.len();
    for (j, p) in prev[..=n].iter_mut().enumerate() {
        *p = j as u8;
    }
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i as u8 + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let cost = u8::from(ca != cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur[j + 1] = v;
            row_min = row_min.min(v);
        }
        if usize::from(row_min) >= limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = usize::from(prev[n]);
    (d < limit).then_some(d)
}

/// BuildKit's suggestion rule: the closest option within distance 2
/// (case-insensitive unless `case_sensitive`), printed in the case style of
/// `val`. `None` when `val` matches an option exactly or nothing is close.
pub(crate) fn suggest<'o>(
    val: &str,
    options: impl IntoIterator<Item = &'o str>,
    case_sensitive: bool,
) -> Option<String> {
    use std::borrow::Cow;
    let fold = |s: &'o str| -> Cow<'o, str> {
        if case_sensitive {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(s.to_lowercase())
        }
    };
    let v: Vec<char> = if case_sensitive {
        val.chars().collect()
    } else {
        val.to_lowercase().chars().collect()
    };
    let mut dist = Distance::default();
    let mut best: Option<Cow<'o, str>> = None;
    let mut min = 3;
    let ascii = case_sensitive && val.is_ascii();
    let val_set = val.bytes().fold(0u128, |m, b| m | 1u128 << (b & 127));
    for opt in options {
        let opt_ascii = opt.is_ascii();
        // The distance is at least the difference in length.
        let chars = if opt_ascii {
            opt.len()
        } else {
            opt.chars().count()
        };
        if chars.abs_diff(v.len()) >= min {
            continue;
        }
        if ascii && opt_ascii {
            // Common case (variable names): bytes, no allocation.
            if opt == val {
                return None;
            }
            if min == 1 {
                // Only an exact match (no suggestion at all) beats 1.
                continue;
            }
            if opt.len() < 32 && val.len() < 32 {
                // Each distinct byte of `val` missing from `opt` costs at
                // least one edit: a cheap lower bound that skips most names.
                let have = opt.bytes().fold(0u128, |m, b| m | 1u128 << (b & 127));
                let missing = val_set & !have;
                if missing.count_ones() as usize >= min {
                    continue;
                }
                if let Some(d) = ascii_distance(val.as_bytes(), opt.as_bytes(), min) {
                    min = d;
                    best = Some(Cow::Borrowed(opt));
                }
                continue;
            }
        }
        let o = fold(opt);
        if o.chars().eq(v.iter().copied()) {
            return None;
        }
        let d = dist.between(&v, &o);
        if d < min {
            min = d;
            best = Some(o);
        }
    }
    let o = best?;
    Some(if case_sensitive {
        o.into_owned()
    } else if val == val.to_lowercase() {
        o.to_lowercase()
    } else if val == val.to_uppercase() {
        o.to_uppercase()
    } else {
        o.into_owned()
    })
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

    /// Plain Levenshtein distance, for checking the pruned one.
    fn levenshtein(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }

    proptest::proptest! {
        /// The bounded, pruned search finds what a plain one does: nothing
        /// when an option equals the value, else the first option at the
        /// smallest distance below 3.
        #[test]
        fn suggest_matches_a_plain_search(
            val in "[ab1_]{0,6}",
            opts in proptest::collection::vec("[ab1_]{0,6}", 0..8),
        ) {
            let want = if opts.contains(&val) {
                None
            } else {
                let mut best: Option<(usize, &String)> = None;
                for o in &opts {
                    let d = levenshtein(&val, o);
                    if d < 3 && best.is_none_or(|(m, _)| d < m) {
                        best = Some((d, o));
                    }
                }
                best.map(|(_, o)| o.clone())
            };
            let got = suggest(&val, opts.iter().map(String::as_str), true);
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn suggestions() {
        let opts = ["RUN", "COPY", "FROM"];
        assert_eq!(suggest("RUNN", opts, false).as_deref(), Some("RUN"));
        assert_eq!(suggest("runn", opts, false).as_deref(), Some("run"));
        assert_eq!(suggest("xyzzy", opts, false), None);
        assert_eq!(suggest("run", opts, false), None);
        let vars = ["PATH", "HOME", "VERSION", "PFAD_Ü"];
        assert_eq!(suggest("PAHT", vars, true).as_deref(), Some("PATH"));
        assert_eq!(suggest("path", vars, true), None);
        assert_eq!(suggest("PATH", vars, true), None);
        assert_eq!(suggest("VERSIN", vars, true).as_deref(), Some("VERSION"));
        assert_eq!(suggest("PFAD_U", vars, true).as_deref(), Some("PFAD_Ü"));
    }
}
