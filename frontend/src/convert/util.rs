//! Small helpers: paths, owners, modes, vertex labels.

use rbuild_graph::{Chmod, Chown, UserRef};

/// Clean an absolute-or-relative slash path like Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
    if is_clean(p) {
        return p.to_string();
    }
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(p.len() + 1);
    if abs {
        out.push('/');
    }
    for (i, s) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Is `p` what [`clean_path`] would return for it (no empty, `.` or `..`
/// segment, no trailing slash)?
fn is_clean(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    let rest = p.strip_prefix('/').unwrap_or(p);
    !rest.is_empty() && rest.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// `path.Join(base, p)` cleaned, or `p` cleaned when absolute.
pub fn resolve_path(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        clean_path(p)
    } else {
        let base = if base.is_empty() { "/" } else { base };
        let mut joined = String::with_capacity(base.len() + 1 + p.len());
        joined.push_str(base);
        joined.push('/');
        joined.push_str(p);
        clean_path(&joined)
    }
}

fn user_ref(s: &str) -> UserRef {
    match s.parse::<u32>() {
        Ok(n) => UserRef::Id(n),
        Err(_) => UserRef::Name(s.to_string()),
    }
}

/// Parse `user[:group]` into an owner; `None` for an empty string.
pub fn parse_chown(s: &str) -> Option<Chown> {
    if s.is_empty() {
        return None;
    }
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    Some(Chown {
        user: user_ref(u),
        group: g.filter(|g| !g.is_empty()).map(user_ref),
    })
}

/// Parse a `--chmod` value: octal, or symbolic like `u+x,g-w` / `a=rX`.
///
/// A value that looks numeric (starts with a digit) but is not octal up to
/// `07777` gets BuildKit's text, which users grep for.
pub fn parse_chmod(s: &str) -> Result<Chmod, String> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return s
            .chars()
            .all(|c| c.is_digit(8))
            .then(|| u32::from_str_radix(s, 8).ok())
            .flatten()
            .filter(|m| *m <= 0o7777)
            .map(Chmod::Octal)
            .ok_or_else(|| {
                format!(
                    "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
                )
            });
    }
    let ok = !s.is_empty()
        && s.split(',').all(|clause| {
            let who = clause.trim_start_matches(['u', 'g', 'o', 'a']);
            let mut chars = who.chars();
            matches!(chars.next(), Some('+' | '-' | '=')) && chars.all(|c| "rwxXst+-=".contains(c))
        });
    if ok {
        Ok(Chmod::Symbolic(s.to_string()))
    } else {
        Err(format!("invalid chmod parameter: '{s}'. it should be octal string like 0755 or symbolic mode like u+x"))
    }
}

/// Go `%q` of a string slice: `["a" "b"]`.
pub fn go_quote_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| crate::parser::go_quote(s)).collect();
    format!("[{}]", q.join(" "))
}

/// Go `%v` of a string slice: `[a b]`.
pub fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_matches_go_path_clean() {
        // Expected values are Go's `path.Clean`.
        for (p, want) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("a/b", "a/b"),
            ("a//b", "a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("a/..", "."),
            ("./a", "a"),
            ("/a/b/..", "/a"),
            ("/a/.b/c.", "/a/.b/c."),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(clean_path(p), want, "{p:?}");
        }
        assert_eq!(resolve_path("/w", "x/../y"), "/w/y");
        assert_eq!(resolve_path("", "x"), "/x");
        assert_eq!(resolve_path("/w", "/abs/"), "/abs");
    }

    #[test]
    fn invalid_numeric_chmod_has_buildkits_text() {
        // testAddInvalidChmod / testCopyInvalidChmod.
        for v in ["64a", "10000", "9"] {
            assert_eq!(
                parse_chmod(v),
                Err(format!(
                    "invalid chmod parameter: '{v}'. it should be octal string and between 0 and 07777"
                ))
            );
        }
        assert_eq!(parse_chmod("0755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(parse_chmod("7777"), Ok(Chmod::Octal(0o7777)));
        assert_eq!(parse_chmod("u+x"), Ok(Chmod::Symbolic("u+x".into())));
        assert!(parse_chmod("u*x").is_err());
    }
}
