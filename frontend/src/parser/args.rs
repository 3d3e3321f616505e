//! Per-instruction argument rules (BuildKit's `line_parsers`).

use super::take_reusing;
use super::Node;
use crate::shell::is_space;

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+`.
fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_ws(s: &str) -> Vec<String> {
    s.split(is_ws)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Split at the first whitespace run into at most two parts.
fn split_ws2(s: &str) -> (&str, Option<&str>) {
    match s.find(is_ws) {
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_ws))),
        None => (s, None),
    }
}

/// Deepest `ONBUILD ONBUILD …` chain the parser builds nodes for (each
/// level is a recursive call). The instruction layer rejects any chain
/// (BuildKit's message); the parser stops long ones with the same message.
pub const MAX_ONBUILD_NESTING: usize = 8;

/// Build a node from one logical line.
pub(super) fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    node_at_depth(line, escape, 0)
}

/// [`node_from_line`] for an `ONBUILD` trigger nested `depth` levels deep.
fn node_at_depth(line: &str, escape: char, depth: usize) -> Result<Node, String> {
    let (cmd, rest) = split_ws2(line.trim_matches(is_space));
    let (args_text, flags) = match rest {
        Some(r) => extract_flags(r),
        None => (String::new(), Vec::new()),
    };
    let rest = args_text.trim_matches(is_space);
    let mut node = Node {
        value: cmd.to_string(),
        original: line.to_string(),
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        comments: Vec::new(),
    };
    match cmd.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => match parse_json(rest) {
            Json::Ok(v) => {
                node.args = v;
                node.json = true;
            }
            Json::NotStrings => return Err(NOT_STRING_ARRAY.into()),
            Json::No => node.args = split_ws(rest),
        },
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json) = parse_maybe_json(rest)?;
        }
        "arg" => node.args = parse_words(rest, escape),
        "env" => node.args = parse_name_val(rest, "ENV", escape)?,
        "label" => node.args = parse_name_val(rest, "LABEL", escape)?,
        "expose" | "from" => node.args = split_ws(rest),
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "healthcheck" => {
            let sep = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            if sep > 0 {
                let typ = &rest[..sep];
                let cmd = rest[sep..].trim_start_matches(|c: char| c.is_ascii_whitespace());
                let (mut a, json) = parse_maybe_json(cmd)?;
                a.insert(0, typ.to_string());
                node.args = a;
                node.json = json;
            }
        }
        "onbuild" => {
            if depth >= MAX_ONBUILD_NESTING {
                return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
            }
            if !rest.is_empty() {
                node.sub = Some(Box::new(node_at_depth(rest, escape, depth + 1)?));
            }
        }
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

enum Json {
    Ok(Vec<String>),
    NotStrings,
    No,
}

fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Json::No;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(vals) => {
            let mut out = Vec::with_capacity(vals.len());
            for v in vals {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Ok(out)
        }
        Err(_) => Json::No,
    }
}

fn parse_maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest) {
        Json::Ok(v) => Ok((v, true)),
        Json::NotStrings => Err(NOT_STRING_ARRAY.into()),
        Json::No => Ok((vec![rest.to_string()], false)),
    }
}

/// Leading `--flag` words: returns the remaining text and the flags.
pub(crate) fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word: Vec<u8> = Vec::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    let flush = |word: &mut Vec<u8>, words: &mut Vec<String>| {
        words.push(String::from_utf8_lossy(word).into_owned());
        word.clear();
    };
    while pos <= b.len() {
        let ch = b.get(pos).copied().unwrap_or(0);
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if ch.is_ascii_whitespace() || ch == 0x0b {
                pos += 1;
                continue;
            }
            if ch != b'-' || b.get(pos + 1) != Some(&b'-') {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if pos == b.len() {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                flush(&mut word, &mut words);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_ascii_whitespace() || ch == 0x0b {
                phase = Phase::Spaces;
                if word == b"--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    flush(&mut word, &mut words);
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = b[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // Quote phase.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = b[pos];
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

/// Shell-ish words with quotes and escapes kept (BuildKit's `parseWords`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut chars = rest.chars();
    let mut words = Vec::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    loop {
        let Some(ch) = chars.next() else {
            if (in_word || in_quote) && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        if !in_word && !in_quote {
            if is_space(ch) {
                continue;
            }
            in_word = true;
        }
        if in_word {
            if is_space(ch) {
                in_word = false;
                if blank_ok || !word.is_empty() {
                    words.push(take_reusing(&mut word));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                in_word = false;
                in_quote = true;
            }
            let mut c = ch;
            if ch == escape {
                // A trailing escape is dropped.
                let Some(next) = chars.next() else { continue };
                word.push(ch);
                c = next;
            }
            word.push(c);
            continue;
        }
        // In quote.
        if ch == quote {
            in_quote = false;
            in_word = true;
        }
        let mut c = ch;
        if ch == escape && quote != '\'' {
            let Some(next) = chars.next() else {
                in_quote = false;
                in_word = true;
                continue;
            };
            word.push(ch);
            c = next;
        }
        word.push(c);
    }
    words
}

/// ENV / LABEL arguments as `key value sep` triples.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let (k, v) = split_ws2(rest);
        return match v {
            Some(v) => Ok(vec![k.to_string(), v.to_string(), String::new()]),
            None => Err(format!("{key} must have two arguments")),
        };
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for mut w in words {
        let Some(eq) = w.find('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        // The key keeps the word's buffer.
        let v = w[eq + 1..].to_string();
        w.truncate(eq);
        out.extend([w, v, "=".to_string()]);
    }
    Ok(out)
}
