//! Dockerfile parser: physical lines → logical instructions ([`Node`]s).
//!
//! This is the *syntactic* layer, matching BuildKit's `parser` package: parser
//! directives, escape character, line continuations (with comment and empty
//! lines inside them), JSON vs. shell form, flags, and heredoc bodies. It does
//! no variable expansion and does not validate instruction names or flags;
//! [`crate::instructions`] does that.

mod args;
mod dump;
mod heredoc;

pub use dump::dump_node;
pub(crate) use dump::{dump_ast, go_quote};
pub use heredoc::{chomp_heredoc_content, parse_heredoc};

use crate::shell::is_space;

/// Longest physical line accepted (BuildKit's scanner limit minus one).
pub const MAX_LINE_BYTES: usize = 65535;

/// A heredoc attached to an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// Terminator word with quotes removed (also the file name for COPY).
    pub name: String,
    /// Body, each line ending in `\n`, tabs not yet stripped.
    pub content: String,
    /// Expand variables in the body (no part of the terminator was quoted).
    pub expand: bool,
    /// `<<-`: strip leading tabs from body lines.
    pub chomp: bool,
    /// File descriptor number before `<<` (0 when absent).
    pub fd: u32,
}

/// A parser directive from the top of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name (`syntax`, `escape`, `check`).
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// One instruction as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The instruction word as written (`RUN`, `from`, …).
    pub value: String,
    /// The whole logical line (continuations joined).
    pub original: String,
    /// Flags (`--from=x`), quotes removed.
    pub flags: Vec<String>,
    /// Arguments (see the README of the conformance data for the rules).
    pub args: Vec<String>,
    /// For `ONBUILD`: the parsed trigger instruction.
    pub sub: Option<Box<Node>>,
    /// The arguments came from a JSON array.
    pub json: bool,
    /// Heredocs, in order.
    pub heredocs: Vec<Heredoc>,
    /// 1-based first physical line.
    pub start_line: usize,
    /// 1-based last physical line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// Lower-cased instruction word.
    pub fn keyword(&self) -> String {
        self.value.to_ascii_lowercase()
    }

    /// Whether the instruction word is `kw` (lower-case), in any casing.
    pub fn is(&self, kw: &str) -> bool {
        self.value.eq_ignore_ascii_case(kw)
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match &self.sub {
            Some(sub) if self.is("onbuild") => sub,
            _ => self,
        };
        (node.is("add") || node.is("copy") || node.is("run")) && !node.json
    }
}

/// The text of `buf` as a new string of exactly its length, leaving `buf`
/// empty with its capacity kept: a word buffer filled char by char then
/// grows once, not once per word.
pub(crate) fn take_reusing(buf: &mut String) -> String {
    let word = buf.as_str().to_owned();
    buf.clear();
    word
}

/// A parse problem at a line range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based first line (0: no position).
    pub line: usize,
    /// 1-based last line.
    pub end_line: usize,
    /// BuildKit's message.
    pub message: String,
}

/// A non-fatal finding (e.g. empty continuation lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseWarning {
    /// 1-based line.
    pub line: usize,
    /// Message.
    pub message: String,
}

/// The parsed file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ast {
    /// Instructions in source order.
    pub nodes: Vec<Node>,
    /// Directives found at the top.
    pub directives: Vec<Directive>,
    /// The escape character in effect.
    pub escape: char,
    /// Warnings.
    pub warnings: Vec<ParseWarning>,
}

struct Directives {
    escape: char,
    done: bool,
    line: usize,
    seen: Vec<Directive>,
}

impl Directives {
    /// Look at one (newline-trimmed) line while still in the directive block.
    fn possible(&mut self, line: &str, lineno: usize) -> Result<(), String> {
        self.line += 1;
        if self.done {
            return Ok(());
        }
        if self.line == 1 && line.starts_with("#!") {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.iter().any(|d| d.name == name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        if name == "escape" {
            match value.as_str() {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                _ => {
                    return Err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ))
                }
            }
        }
        self.seen.push(Directive {
            name,
            value,
            line: lineno,
        });
        Ok(())
    }
}

fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let first = rest.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..end];
    let rest = rest[end..].trim_start_matches(is_re_space);
    let value = rest.strip_prefix('=')?.trim_start_matches(is_re_space);
    let value = value.trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// Remove a trailing continuation (escape char + spaces/tabs, not itself
/// escaped). Returns the line and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Split into physical lines like Go's `bufio.ScanLines` (a trailing `\r` is
/// dropped; no empty final line after a final newline).
fn physical_lines(src: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if src.is_empty() || src.ends_with('\n') {
        lines.pop();
    }
    lines
}

/// Parse a Dockerfile. On failure, every error found is returned (parsing
/// resumes at the next instruction after a bad one).
pub fn parse(src: &str) -> Result<Ast, Vec<ParseError>> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines = physical_lines(src);
    let mut d = Directives {
        escape: '\\',
        done: false,
        line: 0,
        seen: Vec::new(),
    };
    let mut errors = Vec::new();
    // At most one instruction per line: no regrowth (and copying of nodes)
    // while parsing a long file.
    let mut nodes = Vec::with_capacity(lines.len().min(1 << 16));
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut i = 0;
    let err = |line: usize, end: usize, m: String| ParseError {
        line,
        end_line: end,
        message: m,
    };

    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        let lineno = i;
        if raw.len() > MAX_LINE_BYTES {
            errors.push(err(
                lineno,
                lineno,
                format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}"),
            ));
            continue;
        }
        let trimmed = raw.trim_start_matches(is_space);
        if is_comment(raw) {
            let c = trimmed[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        if let Err(m) = d.possible(trimmed, lineno) {
            errors.push(err(lineno, lineno, m));
        }
        let processed = if trimmed.starts_with('#') {
            ""
        } else {
            trimmed
        };
        let start_line = lineno;
        let (first, mut eol) = trim_continuation(processed, d.escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        let mut empty_continuation = false;
        while !eol && i < lines.len() {
            let raw = lines[i];
            i += 1;
            if let Err(m) = d.possible(raw, i) {
                errors.push(err(i, i, m));
            }
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, end) = trim_continuation(raw, d.escape);
            eol = end;
            line.push_str(cont);
        }
        if empty_continuation {
            warnings.push(ParseWarning {
                line: i,
                message: format!("Empty continuation line found in: {line}"),
            });
        }
        let mut node = match args::node_from_line(&line, d.escape) {
            Ok(n) => n,
            Err(m) => {
                errors.push(err(start_line, i, m));
                comments.clear();
                continue;
            }
        };
        if node.can_contain_heredoc() && line.contains("<<") {
            match heredoc::heredocs_from_line(&line) {
                Err(m) => errors.push(err(start_line, i, m)),
                Ok(docs) => {
                    for mut doc in docs {
                        let mut terminated = false;
                        while i < lines.len() {
                            let body = lines[i];
                            i += 1;
                            let candidate = if doc.chomp {
                                body.trim_start_matches('\t')
                            } else {
                                body
                            };
                            if candidate == doc.name {
                                terminated = true;
                                break;
                            }
                            doc.content.push_str(body);
                            doc.content.push('\n');
                        }
                        if !terminated {
                            errors.push(err(start_line, i, "unterminated heredoc".into()));
                            break;
                        }
                        let target = match node.sub.as_deref_mut() {
                            Some(sub) => sub,
                            None => &mut node,
                        };
                        target.heredocs.push(doc);
                    }
                }
            }
        }
        node.start_line = start_line;
        node.end_line = i;
        node.comments = std::mem::take(&mut comments);
        nodes.push(node);
    }
    if nodes.is_empty() && errors.is_empty() {
        errors.push(err(0, 0, "file with no instructions".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Ast {
        nodes,
        directives: d.seen,
        escape: d.escape,
        warnings,
    })
}

#[cfg(test)]
mod tests;
