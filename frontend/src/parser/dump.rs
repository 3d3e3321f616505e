//! BuildKit's AST dump format: `(instr ["--flag"] "arg" ...)`.

use super::{Ast, Node};
use std::fmt::Write;

/// Go `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Approximation of Go's `unicode.IsPrint` for non-ASCII code points.
fn is_print(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(u, 0xad | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0xfeff)
        || matches!(u, 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf0000..)
        || u & 0xfffe == 0xfffe)
}

/// Dump one node without the surrounding parentheses.
pub fn dump_node(n: &Node) -> String {
    let mut s = n.value.to_lowercase();
    if !n.flags.is_empty() {
        let flags: Vec<String> = n.flags.iter().map(|f| go_quote(f)).collect();
        let _ = write!(s, " [{}]", flags.join(" "));
    }
    if let Some(sub) = &n.sub {
        let _ = write!(s, " ({})", dump_node(sub));
    }
    for a in &n.args {
        s.push(' ');
        s.push_str(&go_quote(a));
    }
    s.trim().to_string()
}

/// Dump a whole AST, one `(…)` per line, no trailing newline.
pub(crate) fn dump_ast(ast: &Ast) -> String {
    ast.nodes
        .iter()
        .map(|n| format!("({})", dump_node(n)))
        .collect::<Vec<_>>()
        .join("\n")
}
