//! BuildKit conformance: parser dumps, negative parser cases, line spans and
//! the shell lexer tables, read from the shared conformance data
//! (`$REPO/../shared/conformance`, or `RBUILD_CONFORMANCE_DIR`).
//!
//! Prints `N passed, N failed` and fails on any failure or a missing data
//! directory (never passes silently).

use rbuild_frontend::shell::Lexer;
use rbuild_frontend::{dump_ast, parser};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("FAIL {name}: {}", detail()));
        }
    }
}

fn dirs(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parser_cases(root: &Path, t: &mut Tally) {
    let pos = dirs(&root.join("parser/testfiles"));
    assert!(!pos.is_empty(), "no parser test cases found");
    for d in pos {
        let name = format!(
            "parser/{}",
            d.file_name().unwrap_or_default().to_string_lossy()
        );
        let expected = read(&d.join("result"));
        let got = dump_ast(&read(&d.join("Dockerfile"))).map(|s| s + "\n");
        t.check(&name, got.as_deref() == Ok(expected.as_str()), || {
            format!("\n--- expected\n{expected}--- got\n{got:?}")
        });
    }
    let neg = dirs(&root.join("parser/testfiles-negative"));
    assert!(!neg.is_empty(), "no negative parser cases found");
    for d in neg {
        let name = format!(
            "negative/{}",
            d.file_name().unwrap_or_default().to_string_lossy()
        );
        let got = dump_ast(&read(&d.join("Dockerfile")));
        t.check(&name, got.is_err(), || format!("parsed: {got:?}"));
    }
    let src = read(&root.join("parser/testfile-line/Dockerfile"));
    let spans: Vec<(usize, usize)> = parser::parse(&src)
        .map(|a| a.nodes.iter().map(|n| (n.start_line, n.end_line)).collect())
        .unwrap_or_default();
    t.check(
        "testfile-line",
        spans == [(5, 5), (11, 12), (17, 31)],
        || format!("{spans:?}"),
    );
}

fn env_var_cases(root: &Path, t: &mut Tally) {
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lexer::new('\\');
    let text = read(&root.join("shell/envVarTest"));
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(f.len(), 3, "malformed envVarTest line {line:?}");
        match f[0] {
            "W" => continue,
            "A" | "U" => {}
            o => panic!("bad platform {o:?} in {line:?}"),
        }
        n += 1;
        let got = lex.process_word(f[1], &env);
        let ok = match (f[2], &got) {
            ("error", r) => r.is_err(),
            (e, Ok(g)) => g == e,
            (_, Err(_)) => false,
        };
        t.check(&format!("envVarTest {:?}", f[1]), ok, || {
            format!("expected {:?}, got {got:?}", f[2])
        });
    }
    assert!(n > 0, "no envVarTest rows");
}

fn words_cases(root: &Path, t: &mut Tally) {
    let text = read(&root.join("shell/wordsTest"));
    let lex = Lexer::new('\\');
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(e) = line.strip_prefix("ENV ") {
            let e = e.trim_start_matches(' ');
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            env.insert(k.to_string(), v.to_string());
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 2, "malformed wordsTest line {line:?}");
        n += 1;
        let input = f[0].trim();
        let expected: Vec<&str> = f[1].trim_start_matches(' ').split(',').collect();
        let got = lex.process_words(input, &env);
        let ok = match (&got, expected.as_slice()) {
            (r, ["error"]) => r.is_err(),
            (Ok(w), e) => w.iter().map(String::as_str).eq(e.iter().copied()),
            (Err(_), _) => false,
        };
        t.check(&format!("wordsTest {input:?}"), ok, || {
            format!("expected {expected:?}, got {got:?}")
        });
    }
    assert!(n > 0, "no wordsTest rows");
}

#[test]
fn buildkit_conformance() {
    let root = data_dir().join("buildkit");
    assert!(
        root.is_dir(),
        "conformance data not found at {} (set RBUILD_CONFORMANCE_DIR)",
        root.display()
    );
    let mut t = Tally::default();
    parser_cases(&root, &mut t);
    env_var_cases(&root, &mut t);
    words_cases(&root, &mut t);
    for f in &t.failed {
        println!("{f}");
    }
    println!("{} passed, {} failed", t.passed, t.failed.len());
    assert!(
        t.failed.is_empty(),
        "{} conformance failures",
        t.failed.len()
    );
}
