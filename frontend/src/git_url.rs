//! Git URLs as BuildKit's Dockerfile frontend reads them: which sources are
//! git repositories, and the ref, subdirectory and options they carry.
//!
//! Forms (all may be mixed; conflicting values are errors):
//!
//! - `<remote>#<ref>[:<subdir>]`, the classic fragment;
//! - `<remote>##ref=<ref>,commit=<hex>,subdir=<dir>`, the CSV fragment;
//! - `<remote>?ref=…&branch=…&tag=…&commit=…&subdir=…&keep-git-dir=…&submodules=…`,
//!   the query form of Dockerfile 1.18. `branch=x` means `refs/heads/x` and
//!   `tag=x` `refs/tags/x`; `commit=` (alias `checksum=`) is the commit the
//!   ref must resolve to (a full or abbreviated hex id, checked by the
//!   solver), the default branch when no ref is given.
//!
//! The remote handed to git is the URL without query and fragment.

use rbuild_graph::GitSource;

fn is_http(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The URL up to its query and fragment.
fn base(s: &str) -> &str {
    s.split(['?', '#']).next().unwrap_or(s)
}

/// Whether an ADD source or a named context is a git repository URL: an
/// scp-style `user@host:path`, `git://` and `ssh://` URLs, and `http(s)://`
/// and `file://` URLs whose path ends in `.git`.
pub fn is_git(s: &str) -> bool {
    let path = base(s).trim_end_matches('/');
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || ((is_http(s) || s.starts_with("file://")) && path.ends_with(".git"))
}

/// A parsed git URL: the source without the options that come from the
/// Dockerfile's flags.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GitUrl {
    /// The remote for git (no query, no fragment).
    pub remote: String,
    /// Branch, tag, full ref name or commit.
    pub reference: Option<String>,
    /// Sub directory of the checkout.
    pub subdir: Option<String>,
    /// Expected commit (hex prefix).
    pub checksum: Option<String>,
    /// `keep-git-dir=` of the query.
    pub keep_git_dir: Option<bool>,
    /// `submodules=` of the query.
    pub submodules: Option<bool>,
}

/// Decode `%XX` escapes and `+` of a query component.
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid URL escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("invalid UTF-8 in {s:?}"))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid {key} value {v:?}: expected a boolean")),
    }
}

/// Set `slot` to `value`, or fail when it already holds another value.
fn set(slot: &mut Option<String>, value: String, what: &str) -> Result<(), String> {
    match slot {
        Some(old) if *old != value => Err(format!("{what} conflicts: {old:?} vs {value:?}")),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Parse a git URL in any of the forms of the module docs.
pub fn parse(url: &str) -> Result<GitUrl, String> {
    let (before, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (remote, query) = before.split_once('?').unwrap_or((before, ""));
    let mut g = GitUrl {
        remote: remote.to_string(),
        ..GitUrl::default()
    };
    if let Some(csv) = fragment.strip_prefix('#') {
        for field in csv.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))?;
            let v = v.to_string();
            match k.to_ascii_lowercase().as_str() {
                "ref" => g.reference = Some(v),
                "commit" => g.checksum = Some(v),
                "subdir" => g.subdir = Some(v),
                other => {
                    return Err(format!(
                    "unexpected key '{other}' in '{field}' (supported keys: ref, commit, subdir)"
                ))
                }
            }
        }
    } else if !fragment.is_empty() {
        let (r, d) = match fragment.split_once(':') {
            Some((r, d)) => (r, Some(d)),
            None => (fragment, None),
        };
        g.reference = Some(r.to_string()).filter(|r| !r.is_empty());
        g.subdir = d.map(str::to_string);
    }
    let mut seen = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (unescape(k)?, unescape(v)?);
        if seen.contains(&k) {
            return Err(format!(
                "query parameter {k:?} cannot be specified multiple times"
            ));
        }
        seen.push(k.clone());
        match k.as_str() {
            "ref" => set(&mut g.reference, v, "ref")?,
            "branch" => set(&mut g.reference, format!("refs/heads/{v}"), "ref")?,
            "tag" => set(&mut g.reference, format!("refs/tags/{v}"), "ref")?,
            "commit" | "checksum" => set(&mut g.checksum, v, "commit")?,
            "subdir" => set(&mut g.subdir, v, "subdir")?,
            "keep-git-dir" => g.keep_git_dir = Some(parse_bool(&k, &v)?),
            "submodules" => g.submodules = Some(parse_bool(&k, &v)?),
            other => return Err(format!("unexpected query parameter {other:?} in git URL")),
        }
    }
    Ok(g)
}

/// Whether `s` is a hex commit id or an abbreviation of one.
pub fn is_hex_commit(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The graph source for `url`, with the `--keep-git-dir` and `--checksum`
/// flags of an ADD (they win over, or must agree with, the URL's own).
pub fn git_source(
    url: &str,
    keep_git_dir: Option<bool>,
    checksum: Option<&str>,
) -> Result<GitSource, String> {
    let mut g = parse(url)?;
    if let Some(c) = checksum {
        match &g.checksum {
            Some(q) if !q.starts_with(c) && !c.starts_with(q) => {
                return Err(format!("checksum conflicts: {c:?} vs commit {q:?}"))
            }
            Some(q) if q.len() >= c.len() => {}
            _ => g.checksum = Some(c.to_string()),
        }
    }
    if let Some(c) = &g.checksum {
        if !is_hex_commit(c) {
            return Err(format!(
                "invalid checksum {c} for Git URL, expected hex commit hash"
            ));
        }
    }
    Ok(GitSource {
        checksum: g.checksum.map(|c| c.to_ascii_lowercase()),
        keep_git_dir: keep_git_dir.or(g.keep_git_dir).unwrap_or(false),
        reference: g.reference,
        remote: g.remote,
        skip_submodules: g.submodules == Some(false),
        subdir: g.subdir.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "http://127.0.0.1:1/.git";

    fn src(url: &str) -> GitSource {
        git_source(url, None, None).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn git_urls_are_told_from_http_files() {
        for s in [
            "git@example.com:x/y.git",
            "git://h/r",
            "ssh://h/r",
            "https://h/r.git",
            "https://h/r.git#main:sub",
            "http://h/.git?ref=base",
            "http://h/.git?subdir=sub&ref=feature",
            "file:///srv/r.git",
            "file:///srv/r.git/",
        ] {
            assert!(is_git(s), "{s}");
        }
        for s in [
            "https://h/r.tar.gz",
            "https://h/r?x=.git",
            "file:///srv/r",
            "./r.git",
        ] {
            assert!(!is_git(s), "{s}");
        }
    }

    #[test]
    fn classic_and_csv_fragments() {
        let g = src(&format!("{R}#feature:sub"));
        assert_eq!(g.remote, R);
        assert_eq!(g.reference.as_deref(), Some("feature"));
        assert_eq!(g.subdir.as_deref(), Some("sub"));
        let g = src(&format!("{R}#:sub"));
        assert_eq!((g.reference, g.subdir.as_deref()), (None, Some("sub")));
        let g = src(&format!("{R}##ref=v1,subdir=d,commit=abc123"));
        assert_eq!(g.reference.as_deref(), Some("v1"));
        assert_eq!(g.subdir.as_deref(), Some("d"));
        assert_eq!(g.checksum.as_deref(), Some("abc123"));
        assert!(git_source(&format!("{R}##bogus=1"), None, None).is_err());
    }

    #[test]
    fn query_form_refs_and_options() {
        let g = src(&format!("{R}?ref=base"));
        assert_eq!(
            (g.remote.as_str(), g.reference.as_deref()),
            (R, Some("base"))
        );
        let g = src(&format!("{R}?branch=base"));
        assert_eq!(g.reference.as_deref(), Some("refs/heads/base"));
        let g = src(&format!("{R}?tag=v0.0.2#refs/tags/v0.0.2"));
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v0.0.2"));
        let g = src(&format!("{R}?subdir=sub&ref=feature"));
        assert_eq!(g.subdir.as_deref(), Some("sub"));
        assert_eq!(g.reference.as_deref(), Some("feature"));
        let g = src(&format!("{R}?commit=ABCDEF12"));
        assert_eq!(
            (g.reference, g.checksum.as_deref()),
            (None, Some("abcdef12"))
        );
        let g = src(&format!("{R}?keep-git-dir=true&submodules=false"));
        assert!(g.keep_git_dir && g.skip_submodules);
        let g = src(R);
        assert!(!g.keep_git_dir && !g.skip_submodules && g.checksum.is_none());
        // The flag wins over the query.
        let g = git_source(&format!("{R}?keep-git-dir=true"), Some(false), None).unwrap();
        assert!(!g.keep_git_dir);
        let g = src(&format!("{R}?ref=a%2Fb"));
        assert_eq!(g.reference.as_deref(), Some("a/b"));
    }

    #[test]
    fn query_form_conflicts_and_garbage() {
        let e = |u: String| git_source(&u, None, None).unwrap_err();
        assert!(e(format!("{R}?tag=v0.0.2#refs/heads/master")).contains("ref conflicts"));
        assert!(e(format!("{R}?ref=a&branch=a")).contains("ref conflicts"));
        assert!(e(format!("{R}?subdir=a#main:b")).contains("subdir conflicts"));
        assert!(e(format!("{R}?ref=a&ref=a")).contains("multiple times"));
        assert!(e(format!("{R}?depth=1")).contains("unexpected query parameter"));
        assert!(e(format!("{R}?keep-git-dir=maybe")).contains("boolean"));
        assert!(e(format!("{R}?commit=xyz")).contains("expected hex commit hash"));
    }

    #[test]
    fn checksum_flag_is_a_hex_commit_agreeing_with_the_url() {
        let sha = "428d3a65a234eed08589ddb0c9c07a0daad054bb";
        let g = git_source(&format!("{R}#v1"), None, Some(sha)).unwrap();
        assert_eq!(g.checksum.as_deref(), Some(sha));
        let g = git_source(&format!("{R}?commit={sha}"), None, Some(&sha[..8])).unwrap();
        assert_eq!(g.checksum.as_deref(), Some(sha));
        let e = git_source(&format!("{R}#v1"), None, Some("foobar")).unwrap_err();
        assert!(
            e.contains("invalid checksum") && e.contains("expected hex commit hash"),
            "{e}"
        );
        let e = git_source(&format!("{R}?commit=1234"), None, Some("abcd")).unwrap_err();
        assert!(e.contains("checksum conflicts"), "{e}");
        assert!(is_hex_commit(&"a".repeat(64)));
        assert!(!is_hex_commit(&"a".repeat(65)));
        assert!(!is_hex_commit("sha256:abcd"));
    }
}
