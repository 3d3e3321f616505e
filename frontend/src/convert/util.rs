//! Small helpers: paths, owners, modes, vertex labels.

use rbuild_graph::{Chmod, Chown, UserRef};

/// Clean an absolute-or-relative slash path like Go's `path.Clean`.
pub fn clean_path(p: &str) -> String {
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
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `path.Join(base, p)` cleaned, or `p` cleaned when absolute.
pub fn resolve_path(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        clean_path(p)
    } else {
        clean_path(&format!(
            "{}/{}",
            if base.is_empty() { "/" } else { base },
            p
        ))
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
pub fn parse_chmod(s: &str) -> Result<Chmod, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(s, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .map(Chmod::Octal)
            .ok_or_else(|| format!("invalid chmod parameter: '{s}'"));
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
