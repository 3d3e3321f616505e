//! Image references, parsed and normalized as docker does
//! (`github.com/distribution/reference`, `ParseNormalizedNamed` plus
//! `TagNameOnly`).

use crate::{Error, Result};
use rbuild_graph::Digest;
use std::fmt;
use std::str::FromStr;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference:
/// `registry/repository[:tag][@digest]`.
///
/// Invariant: `tag` is `None` only when `digest` is `Some` (a reference with
/// neither gets the tag `latest`, as docker does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry name, with port if any (`docker.io`, `127.0.0.1:5000`,
    /// `[::1]:5000`). Docker Hub is always `docker.io`.
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`).
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any (it wins over the tag when resolving).
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalize a reference such as `busybox`,
    /// `localhost:5000/app:1.0` or `ghcr.io/o/r@sha256:…`.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest = if let Some(rest) = d.split_once(':') {
                    if rest.0 != "sha256" {
                        return Err(bad(&format!(
                            "unsupported digest algorithm {:?} (only sha256)",
                            rest.0
                        )));
                    }
                    Digest::from_str(d)
                        .map_err(|_| bad("digest must be sha256:<64 lowercase hex digits>"))?
                } else {
                    return Err(bad("digest must be sha256:<64 lowercase hex digits>"));
                };
                (n, Some(digest))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| bad(&r))?;
        }
        let (registry, remainder) = split_domain(name);
        if registry != DOCKER_HUB {
            validate_domain(&registry).map_err(|r| bad(&r))?;
        }
        let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_string()
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(&format!("name longer than {MAX_NAME_LEN} characters")));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (with port) to send API requests to: `registry-1.docker.io`
    /// for Docker Hub, the registry name otherwise.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest if known, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            input: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// docker's message for a malformed reference.
pub const INVALID_FORMAT: &str = "invalid reference format";
/// docker's message for a reference whose repository has capitals.
pub const NOT_LOWERCASE: &str = "invalid reference format: repository name must be lowercase";

/// Parse `input` as docker parses a name given on its command line
/// (`-t`, `docker-image://`, a cache `ref=`): [`Reference::parse`]'s
/// grammar, but the error is docker's own text ([`NOT_LOWERCASE`],
/// [`INVALID_FORMAT`], or the one for a 64-hex-digit name), which scripts
/// match on.
pub fn parse_normalized(input: &str) -> std::result::Result<Reference, String> {
    let hex64 = input.len() == 64
        && input
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if hex64 {
        return Err(format!(
            "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings"
        ));
    }
    // docker checks capitals first: in the repository name after the
    // registry, up to the first ':' (so a bad tag after it does not hide them).
    let (_, remainder) = split_domain(input);
    let remote = remainder.split(':').next().unwrap_or(remainder);
    if remote.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(NOT_LOWERCASE.to_string());
    }
    Reference::parse(input).map_err(|_| INVALID_FORMAT.to_string())
}

/// The API host for a registry name (`docker.io` → `registry-1.docker.io`).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB || registry == "index.docker.io" {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// Normalize a registry name as written by a user (`index.docker.io`,
/// `https://index.docker.io/v1/`, `HTTPS://Host:5000/`) to the form used in
/// references (`docker.io`, `host:5000`).
pub fn normalize_registry(name: &str) -> String {
    let s = name.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// Split `name` into (registry, remainder) as docker's `splitDockerDomain`.
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            let reg = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (reg.to_string(), rest)
        }
        _ => (DOCKER_HUB.to_string(), name),
    }
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() {
        return Err("empty tag".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!(
            "invalid tag {tag:?}: letters, digits, '_', '.', '-' only, not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid registry {domain:?}: unclosed '['"))?;
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(format!("invalid registry {domain:?}: bad IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("invalid registry {domain:?}"))?,
            ),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("invalid registry {domain:?}: bad port"));
        }
    }
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                let l = label.as_bytes();
                !l.is_empty()
                    && l.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                    && l[0] != b'-'
                    && l[l.len() - 1] != b'-'
            });
        if !ok {
            return Err(format!("invalid registry host {h:?}"));
        }
    }
    Ok(())
}

/// Repository: `/`-separated components of `[a-z0-9]+` joined by
/// `.`, `_`, `__` or runs of `-`.
fn validate_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository name".into());
    }
    if repo.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository name {repo:?} must be lowercase"));
    }
    for comp in repo.split('/') {
        if !valid_component(comp) {
            return Err(format!(
                "invalid repository component {comp:?}: lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or "-"+, followed by an alnum.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_messages_for_command_line_names() {
        for (input, expected) in [
            ("UPPER/Bad:tag:x", NOT_LOWERCASE),
            ("Busybox", NOT_LOWERCASE),
            ("reg.io/Org/app", NOT_LOWERCASE),
            ("app:tag:x", INVALID_FORMAT),
            ("app:", INVALID_FORMAT),
            ("-app", INVALID_FORMAT),
            ("", INVALID_FORMAT),
            ("app@sha256:1", INVALID_FORMAT),
        ] {
            assert_eq!(
                parse_normalized(input).expect_err(input),
                expected,
                "{input:?}"
            );
        }
        let hex = "a".repeat(64);
        assert!(parse_normalized(&hex)
            .expect_err("64 hex digits")
            .contains("cannot specify 64-byte hexadecimal strings"));
        // A capital tag and a capital registry are fine, as in docker.
        let r = parse_normalized("Reg.IO:5000/app:V1").expect("capital registry");
        assert_eq!(r.to_string(), "Reg.IO:5000/app:V1");
        assert_eq!(
            parse_normalized("busybox").expect("busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    fn check(input: &str, expected: &str) {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.to_string(), expected, "{input}");
        // Display output parses back to the same reference.
        assert_eq!(Reference::parse(expected).expect("reparse"), r);
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_docker() {
        check("busybox", "docker.io/library/busybox:latest");
        check("busybox:1.36", "docker.io/library/busybox:1.36");
        check("library/busybox", "docker.io/library/busybox:latest");
        check("docker.io/busybox", "docker.io/library/busybox:latest");
        check(
            "index.docker.io/busybox",
            "docker.io/library/busybox:latest",
        );
        check("index.docker.io/user/app:v1", "docker.io/user/app:v1");
        check("user/app", "docker.io/user/app:latest");
        check("localhost/app", "localhost/app:latest");
        check("localhost:5000/app:1", "localhost:5000/app:1");
        check("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t");
        check("[::1]:5000/app", "[::1]:5000/app:latest");
        check("ghcr.io/o/r-x_y.z__w", "ghcr.io/o/r-x_y.z__w:latest");
        check("my-registry.example/app", "my-registry.example/app:latest");
        check(
            &format!("busybox@{D}"),
            &format!("docker.io/library/busybox@{D}"),
        );
        check(
            &format!("busybox:1.36@{D}"),
            &format!("docker.io/library/busybox:1.36@{D}"),
        );
        check(
            &format!("localhost:5000/app@{D}"),
            &format!("localhost:5000/app@{D}"),
        );
    }

    #[test]
    fn fields_and_hosts() {
        let r = Reference::parse("busybox").expect("parse");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.object(), "latest");
        let r = Reference::parse(&format!("localhost:5000/app:1@{D}")).expect("parse");
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.object(), D);
        assert_eq!(r.tag.as_deref(), Some("1"));
        let r = Reference::parse(&format!("app@{D}")).expect("parse");
        assert_eq!(r.tag, None);
        // An uppercase first component is a domain, as in docker.
        let r = Reference::parse("Host/app").expect("parse");
        assert_eq!(r.registry, "Host");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-x",
            "busybox:a/b",
            "a//b",
            "a/",
            "-a",
            "a-",
            "a...b",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "host:port/app",
            "[::1/app",
            &format!("busybox:{}", "t".repeat(129)),
            &format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")),
        ] {
            let e = Reference::parse(bad).expect_err(bad);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidReference, "{bad}");
        }
        let e = Reference::parse("docker.io/Library/busybox").expect_err("upper");
        assert!(e.to_string().contains("must be lowercase"), "{e}");
    }

    #[test]
    fn registry_normalization() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("registry-1.docker.io"), "docker.io");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000/"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_registry("ghcr.io"), "ghcr.io");
    }
}
