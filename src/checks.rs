//! Printing build-check results the way `docker build --check` does.

use rbuild_frontend::CheckWarning;
use std::fmt::Write;

/// "1 warning" / "2 warnings".
pub fn count(n: usize) -> String {
    if n == 1 {
        "1 warning".into()
    } else {
        format!("{n} warnings")
    }
}

/// Print the `--check` report to stdout.
pub fn print_report(checks: &[CheckWarning], file: &str, src: &str) {
    print!("{}", report(checks, file, src));
}

/// buildx's check report: a summary line, then per warning the rule, its
/// documentation URL, the message and the source lines around it.
pub fn report(checks: &[CheckWarning], file: &str, src: &str) -> String {
    let mut out = String::new();
    match checks.len() {
        0 => out.push_str("Check complete, no warnings found.\n"),
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => {
            let _ = writeln!(out, "Check complete, {n} warnings have been found!");
        }
    }
    for c in checks {
        let _ = write!(out, "\nWARNING: {}", c.rule.name);
        if !c.rule.url.is_empty() {
            let _ = write!(out, " - {}", c.rule.url);
        }
        let _ = writeln!(out, "\n{}", c.message);
        out.push_str(&snippet(file, src, c.line, c.end_line.max(c.line)));
    }
    out
}

/// BuildKit's source excerpt: the lines `start..=end` marked `>>>`, padded
/// with context lines (four in all for a one-line range, two otherwise).
fn snippet(file: &str, src: &str, start: usize, end: usize) -> String {
    let lines: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if start < 1 || start > lines.len() {
        return String::new();
    }
    let (mut first, mut last) = (start, end.min(lines.len()));
    let pad = if last == first { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if first > 1 {
            first -= 1;
            p += 1;
        }
        if last != lines.len() {
            last += 1;
            p += 1;
        }
        p += 1;
    }
    let rule = "-".repeat(20);
    let mut out = format!("{file}:{start}\n{rule}\n");
    for i in first..=last {
        let mark = if (start..=end).contains(&i) {
            ">>>"
        } else {
            "   "
        };
        let _ = writeln!(out, " {i:>3} | {mark} {}", lines[i - 1]);
    }
    let _ = writeln!(out, "{rule}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_frontend::lint::rules;

    #[test]
    fn report_matches_buildx() {
        let src = "FROM busybox as b\nRUN true\nRUN true\nRUN true\nCMD echo\n";
        let w = CheckWarning {
            rule: rules::FROM_AS_CASING,
            message: "'as' and 'FROM' keywords' casing do not match".into(),
            line: 1,
            end_line: 1,
        };
        assert_eq!(
            report(&[w], "Dockerfile", src),
            "Check complete, 1 warning has been found!\n\
             \n\
             WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
             'as' and 'FROM' keywords' casing do not match\n\
             Dockerfile:1\n\
             --------------------\n\
             \x20  1 | >>> FROM busybox as b\n\
             \x20  2 |     RUN true\n\
             \x20  3 |     RUN true\n\
             --------------------\n"
        );
        assert_eq!(
            report(&[], "Dockerfile", src),
            "Check complete, no warnings found.\n"
        );
    }
}
