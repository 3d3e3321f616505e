//! Shell-word lexer: quote removal and `$VAR` expansion as BuildKit does it.
//!
//! [`Lexer::process`] expands one word against an [`EnvGetter`] and returns
//! both the joined result ("ProcessWord") and the word-split list
//! ("ProcessWords"), plus the variable names that were looked up and found
//! ([`Expansion::matched`]) or not ([`Expansion::unmatched`]).
//!
//! Supported forms: `$v ${v} ${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?m} ${v?m}
//! ${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}`; positional (`$1`) and
//! special parameters (`$@ $* $# $? $- $$ $! $0`) expand to nothing.
//!
//! Substitutions nest (`${a:-${b:-c}}`) and each level is a recursive call;
//! [`MAX_NESTING`] bounds the depth, so a hostile Dockerfile gets an error
//! instead of overflowing the stack (BuildKit has no bound: Go stacks grow).

mod pattern;

/// Deepest nesting of `${…}` substitutions accepted in one word; deeper is
/// an error. Far beyond what any real Dockerfile writes (two or three).
pub const MAX_NESTING: usize = 128;

use std::collections::{BTreeMap, BTreeSet};

/// Something variables can be looked up in.
pub trait EnvGetter {
    /// The value of `name`, if set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl EnvGetter for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> EnvGetter for [(K, V)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> EnvGetter for Vec<(K, V)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<T: EnvGetter + ?Sized> EnvGetter for std::sync::Arc<T> {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// The result of expanding one word.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, quotes removed, no splitting.
    pub result: String,
    /// The expanded word split on unquoted whitespace (empty words dropped).
    pub words: Vec<String>,
    /// Variables that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not found.
    pub unmatched: BTreeSet<String>,
}

/// An expansion error; `Display` is BuildKit's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("failed to process \"{word}\": {message}")]
pub struct ShellError {
    /// The word being processed.
    pub word: String,
    /// What went wrong.
    pub message: String,
}

/// Lexer options; the default is the escape `\` with quote processing.
#[derive(Clone, Debug)]
pub struct Lexer {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character and default options.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expand `word` against `env`.
    pub fn process(&self, word: &str, env: &dyn EnvGetter) -> Result<Expansion, ShellError> {
        self.run(word, env, true, Track::All)
    }

    /// Expand `word` and return the joined result ("ProcessWord").
    pub fn process_word(&self, word: &str, env: &dyn EnvGetter) -> Result<String, ShellError> {
        self.run(word, env, false, Track::None).map(|e| e.result)
    }

    /// Expand `word` and return the joined result and the names of the
    /// variables it used that were not set ("ProcessWordWithMatches").
    pub fn process_word_unmatched(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<(String, BTreeSet<String>), ShellError> {
        self.run(word, env, false, Track::Unmatched)
            .map(|e| (e.result, e.unmatched))
    }

    /// Expand `word` and return the split words ("ProcessWords").
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        self.run(word, env, true, Track::None).map(|e| e.words)
    }

    /// The expansion; `split` computes [`Expansion::words`], `track` says
    /// which looked-up names to record (each costs allocations, so callers
    /// that need only the joined result skip them).
    fn run(
        &self,
        word: &str,
        env: &dyn EnvGetter,
        split: bool,
        track: Track,
    ) -> Result<Expansion, ShellError> {
        // Fast path: nothing to expand, unquote or unescape.
        if !word.contains(['$', '\'', '"', self.escape]) {
            return Ok(Expansion {
                result: word.to_string(),
                words: if split {
                    word.split(is_space)
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect()
                } else {
                    Vec::new()
                },
                matched: BTreeSet::new(),
                unmatched: BTreeSet::new(),
            });
        }
        let mut sw = ShellWord {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            split,
            track,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(message) => Err(ShellError {
                word: word.to_string(),
                message,
            }),
        }
    }
}

/// Which variable names an expansion records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Track {
    None,
    Unmatched,
    All,
}

/// Go's `unicode.IsSpace`.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// Word splitting of an expansion; does nothing unless `enabled`.
#[derive(Default)]
struct Words {
    enabled: bool,
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn new(enabled: bool) -> Self {
        Words {
            enabled,
            ..Words::default()
        }
    }
    fn add_char(&mut self, ch: char) {
        if !self.enabled {
            return;
        }
        if is_space(ch) {
            if self.in_word && !self.word.is_empty() {
                self.words.push(crate::parser::take_reusing(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        if !self.enabled {
            return;
        }
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct ShellWord<'a> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn EnvGetter,
    raw_escapes: bool,
    /// Compute the split words.
    split: bool,
    /// Which variable names to record.
    track: Track,
    /// Nesting depth of [`ShellWord::process_stop_on`] calls.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type R<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                if self.track == Track::All {
                    self.matched.insert(name.to_string());
                }
                Some(v.to_string())
            }
            None => {
                if self.track != Track::None {
                    self.unmatched.insert(name.to_string());
                }
                None
            }
        }
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> R<(String, Vec<String>)> {
        // The top-level call is depth 1; each `${…}` inside adds one.
        if self.depth > MAX_NESTING {
            return Err(format!(
                "substitutions nested deeper than {MAX_NESTING} levels"
            ));
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let r = self.stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> R<(String, Vec<String>)> {
        let mut result = String::with_capacity(self.chars.len() - self.pos);
        let mut words = Words::new(self.split);
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.pos += 1;
                let mut c = ch;
                if c == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    match self.next() {
                        None => break,
                        Some(n) => c = n,
                    }
                    words.add_raw_char(c);
                } else {
                    words.add_char(c);
                }
                result.push(c);
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> R<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> R<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn process_dollar(&mut self) -> R<String> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                null_is_unset = true;
                let Some(n) = self.next() else {
                    return Err("syntax error: missing '}'".into());
                };
                ch = n;
                chs.push(n);
                if !matches!(ch, '+' | '-' | '?') {
                    // Consume the rest so the error is about the modifier.
                    self.process_stop_on(Some('}'), false).map_err(|e| {
                        if self.peek().is_none() {
                            "syntax error: missing '}'".to_string()
                        } else {
                            e
                        }
                    })?;
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                self.modifier(&name, ch, &chs, null_is_unset)
            }
            '+' | '-' | '?' | '#' | '%' => self.modifier(&name, ch, &chs, null_is_unset),
            '/' => self.replace(&name),
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn modifier(&mut self, name: &str, ch: char, chs: &str, null_is_unset: bool) -> R<String> {
        let raw = ch == '#' || ch == '%';
        let (word, _) = self.process_stop_on(Some('}'), raw).map_err(|e| {
            if self.peek().is_none() {
                "syntax error: missing '}'".to_string()
            } else {
                e
            }
        })?;
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = value
            .as_deref()
            .is_none_or(|v| null_is_unset && v.is_empty());
        match ch {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match value {
                None => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => Err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                let value = value.unwrap_or_default();
                let (greedy, pat) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                let p = pattern::Pattern::compile(&pat)
                    .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
                Ok(if ch == '%' {
                    p.trim_suffix(&value, greedy)
                } else {
                    p.trim_prefix(&value, greedy)
                })
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn replace(&mut self, name: &str) -> R<String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let (pat, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
            if self.peek().is_none() {
                "syntax error: missing '/' in ${}".to_string()
            } else {
                e
            }
        })?;
        let (rep, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
            if self.peek().is_none() {
                "syntax error: missing '}'".to_string()
            } else {
                e
            }
        })?;
        let value = self.get_env(name);
        let Some(value) = value else {
            if self.lex.skip_unset_env {
                return Ok(format!("${{{name}/{pat}/{rep}}}"));
            }
            return Ok(String::new());
        };
        let p = pattern::Pattern::compile(&pat)
            .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
        Ok(p.replace(&value, &rep, all))
    }
}

#[cfg(test)]
mod tests;
