//! Heredoc detection (`<<EOF`, `<<-EOF`, `3<<EOF`, quoted terminators).

use super::Heredoc;
use crate::shell::Lexer;
use std::collections::BTreeMap;

/// `^(\d*)<<(-?)(.*)$` split into parts, or `None`.
fn split_opener(word: &str) -> Option<(u32, bool, &str)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let fd = word[..digits].parse().unwrap_or(0);
    Some((fd, chomp, rest))
}

/// Parse one shell word as a heredoc opener; `Ok(None)` when it is not one.
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let Some((fd, chomp, rest)) = split_opener(src) else {
        return Ok(None);
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let empty: BTreeMap<String, String> = BTreeMap::new();
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &empty).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &empty).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    }))
}

/// All heredoc openers of a logical line, in order.
pub(super) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    let empty: BTreeMap<String, String> = BTreeMap::new();
    let words = lex.process_words(line, &empty).unwrap_or_default();
    let mut docs = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let mut word = words[i].clone();
        // `<< EOF`: an opener separated from its terminator by spaces.
        if let (Some((_, _, "")), Some(next)) = (split_opener(&word), words.get(i + 1)) {
            word.push_str(next);
            i += 1;
        }
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
        i += 1;
    }
    Ok(docs)
}

/// Strip leading tabs from every line (for `<<-`).
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}
