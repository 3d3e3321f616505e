//! Resource options of a run: `--ulimit` (the process's rlimits) and
//! `--shm-size` (the size of `/dev/shm`), in Docker's syntax.

/// A resource limit of the sandboxed process (`--ulimit nofile=1024:2048`),
/// OCI's `process.rlimits` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// The OCI type, e.g. `RLIMIT_NOFILE`.
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The names Docker's `--ulimit` accepts.
const NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

impl Rlimit {
    /// Parse Docker's `NAME=SOFT[:HARD]` (`-1` is unlimited); the error says
    /// what is wrong.
    pub fn parse(s: &str) -> Result<Rlimit, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
        if !NAMES.contains(&name) {
            return Err(format!("invalid ulimit type: {name}"));
        }
        let num = |v: &str| -> Result<u64, String> {
            if v == "-1" {
                return Ok(u64::MAX);
            }
            v.parse::<u64>()
                .map_err(|_| format!("invalid ulimit value {v:?} in {s}"))
        };
        let (soft, hard) = match value.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let v = num(value)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
        Ok(Rlimit {
            kind: format!("RLIMIT_{}", name.to_ascii_uppercase()),
            soft,
            hard,
        })
    }
}

/// Parse a size as Docker's `--shm-size` takes it: bytes, or a number
/// with a `b`, `k`, `m` or `g` suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_in_dockers_syntax() {
        assert_eq!(
            Rlimit::parse("nofile=1062:1062"),
            Ok(Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                soft: 1062,
                hard: 1062
            })
        );
        assert_eq!(
            Rlimit::parse("nproc=5").map(|r| (r.soft, r.hard)),
            Ok((5, 5))
        );
        assert!(Rlimit::parse("nofile").is_err());
        assert!(Rlimit::parse("bogus=1").is_err());
        assert!(Rlimit::parse("nofile=2:1").is_err());
    }

    #[test]
    fn sizes_in_dockers_syntax() {
        assert_eq!(parse_size("134217728"), Ok(134217728));
        assert_eq!(parse_size("128m"), Ok(128 << 20));
        assert_eq!(parse_size("128mb"), Ok(128 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("10b"), Ok(10));
        assert!(parse_size("x").is_err());
        assert!(parse_size("0").is_err());
    }
}
