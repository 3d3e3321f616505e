//! `.dockerignore` with Docker's semantics (a port of moby's
//! `patternmatcher` on `regex`): `*`, `?`, `[…]`, `**` across directories,
//! `!` exceptions where the last matching pattern wins, a leading `/` and
//! other path noise cleaned away, and a path excluded when one of its parent
//! directories is.

use regex::Regex;

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    /// The patterns as given (after cleaning), for cache keys and dumps.
    pub source: Vec<String>,
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}: {message}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub message: String,
}

/// Go's `filepath.Clean` for slash-separated relative paths.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Parse the text of a `.dockerignore` file into patterns, as
/// `ignorefile.ReadAll` does: comments, blank lines, `!`, cleaning.
pub fn parse_dockerignore(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches('\u{feff}');
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim().to_string();
        if p.is_empty() {
            continue;
        }
        let mut invert = false;
        if let Some(rest) = p.strip_prefix('!') {
            invert = true;
            p = rest.trim().to_string();
        }
        if !p.is_empty() {
            p = clean_path(&p);
            // Leading slashes are ignored: patterns are relative to the context.
            if p.len() > 1 {
                p = p.trim_start_matches('/').to_string();
            }
        }
        if invert {
            p = format!("!{p}");
        }
        out.push(p);
    }
    out
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match ch {
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    i += 1;
                    if chars.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    if i + 1 >= chars.len() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '.' | '$' | '+' | '(' | ')' | '{' | '}' | '|' | '^' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    re.push_str(&regex::escape(&n.to_string()));
                    i += 1;
                } else {
                    re.push_str("\\\\");
                }
            }
            c => re.push(c),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re)
}

impl Matcher {
    /// Compile patterns as returned by [`parse_dockerignore`].
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut out = Vec::new();
        for p in patterns {
            let (exclusion, body) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            if body.is_empty() {
                return Err(PatternError {
                    pattern: p.clone(),
                    message: "illegal exclusion pattern: \"!\"".into(),
                });
            }
            let cleaned = clean_path(body);
            let regex = compile(&cleaned).map_err(|e| PatternError {
                pattern: p.clone(),
                message: e.to_string(),
            })?;
            out.push(Pattern { regex, exclusion });
        }
        Ok(Self {
            patterns: out,
            source: patterns.to_vec(),
        })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern re-includes (`!`), so excluded directories
    /// must still be walked.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let file = clean_path(path.trim_start_matches('/'));
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.regex.is_match(&file);
            if !hit && parent != "." {
                for i in 0..parent_dirs.len() {
                    if p.regex.is_match(&parent_dirs[..=i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ignore: &str, cases: &[(&str, bool)]) {
        let m = Matcher::new(&parse_dockerignore(ignore)).expect("compile");
        for (path, want) in cases {
            assert_eq!(m.excludes(path), *want, "{ignore:?} on {path:?}");
        }
    }

    #[test]
    fn docker_semantics() {
        check(
            "*.md",
            &[
                ("README.md", true),
                ("docs/README.md", false),
                ("a.txt", false),
            ],
        );
        check(
            "**/*.md",
            &[("README.md", true), ("docs/x/README.md", true)],
        );
        check(
            "docs",
            &[("docs", true), ("docs/a/b.txt", true), ("docsx", false)],
        );
        check("/build/\n", &[("build/out", true), ("src/build", false)]);
        check(
            "*.md\n!README.md",
            &[("README.md", false), ("CHANGES.md", true)],
        );
        check(
            "# comment\n\n  node_modules  ",
            &[("node_modules/x", true), ("# comment", false)],
        );
        check(
            "a/**/b",
            &[("a/b", true), ("a/x/y/b", true), ("a/x/c", false)],
        );
        check("./src/../tmp", &[("tmp/x", true), ("src/tmp", false)]);
        check("file?.txt", &[("file1.txt", true), ("file10.txt", false)]);
        check("[a-c].go", &[("b.go", true), ("d.go", false)]);
        check("**", &[("anything/at/all", true)]);
        check("*\n!keep\n", &[("keep", false), ("other", true)]);
    }

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean_path("a//b/./c/.."), "a/b");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("../x"), "../x");
        assert_eq!(clean_path(""), ".");
    }
}
