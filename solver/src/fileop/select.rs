//! Source selection: what a COPY source (or an rm path) names in a tree,
//! wildcards expanded with Go's `path.Match`, every lookup made through the
//! source's root handle. Kept apart from the copy itself so that more ways
//! of selecting (`--exclude`, `--parents`) have one place to go.

use super::{io_err, Result};
use crate::ignore::Matcher;
use rbuild_fsroot::Root;
use std::io;
use std::path::{Component, Path};

/// Whether `s` has a wildcard character.
pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A lookup error meaning "nothing there" (missing, or a file where a
/// directory was expected), as opposed to one that must fail the build
/// (a link chain that is too long, an IO error).
pub(crate) fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// Expand `src` (relative to the source root, may contain wildcards) to the
/// matching paths inside the source root, sorted. Matches are looked up
/// without following their last component; a lookup that fails other than
/// by absence (too many links) is an error.
pub fn expand_sources(
    src_root: &Root,
    src: &str,
    wildcard: bool,
    filter: Option<&Matcher>,
) -> Result<Vec<String>> {
    let mut out = expand_unfiltered(src_root, src, wildcard)?;
    if let Some(f) = filter.filter(|f| !f.is_empty()) {
        out.retain(|p| p == "/" || !f.excludes(p) || f.has_exclusions());
    }
    Ok(out)
}

/// Whether `p` exists in the root (its last component not followed).
fn present(root: &Root, p: &str) -> Result<bool> {
    match root.stat(p, false) {
        Ok(_) => Ok(true),
        Err(e) if absent(&e) => Ok(false),
        Err(e) => Err(io_err("stat", p)(e)),
    }
}

fn expand_unfiltered(src_root: &Root, src: &str, wildcard: bool) -> Result<Vec<String>> {
    let clean: Vec<String> = Path::new(src)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if !wildcard || !has_wildcard(src) {
        let p = format!("/{}", clean.join("/"));
        return Ok(if present(src_root, &p)? {
            vec![p]
        } else {
            vec![]
        });
    }
    let mut current = vec![String::new()];
    for comp in &clean {
        let mut next = Vec::new();
        for prefix in &current {
            if has_wildcard(comp) {
                let dir_path = if prefix.is_empty() { "/" } else { prefix };
                let dir = match src_root.open_dir(dir_path) {
                    Ok(d) => d,
                    Err(e) if absent(&e) => continue,
                    Err(e) => return Err(io_err("read dir", dir_path)(e)),
                };
                let names = dir.entries().map_err(io_err("read dir", dir_path))?;
                next.extend(
                    names
                        .iter()
                        .map(|n| n.as_os_str().to_string_lossy().into_owned())
                        .filter(|n| glob_match(comp, n))
                        .map(|n| format!("{prefix}/{n}")),
                );
            } else {
                let p = format!("{prefix}/{comp}");
                if present(src_root, &p)? {
                    next.push(p);
                }
            }
        }
        current = next;
    }
    if clean.is_empty() {
        return Ok(vec!["/".into()]);
    }
    Ok(current)
}

/// Go's `path.Match` on one path component: `*`, `?`, `[…]`, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        if p.is_empty() {
            return n.is_empty();
        }
        match p[0] {
            '*' => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            '?' => !n.is_empty() && m(&p[1..], &n[1..]),
            '[' => {
                if n.is_empty() {
                    return false;
                }
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let c = n[0];
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        if class[i] <= c && c <= class[i + 2] {
                            hit = true;
                        }
                        i += 3;
                    } else {
                        if class[i] == c {
                            hit = true;
                        }
                        i += 1;
                    }
                }
                hit != negate && m(&p[end + 1..], &n[1..])
            }
            '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && m(&p[2..], &n[1..]),
            c => !n.is_empty() && n[0] == c && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}
