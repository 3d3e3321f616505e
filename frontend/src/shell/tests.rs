use super::*;

fn env() -> BTreeMap<String, String> {
    [
        ("PWD", "/home"),
        ("NULL", ""),
        ("V", "abcabc"),
        ("SP", " a  b "),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn check(input: &str, expected: &str) {
    let got = Lexer::default().process_word(input, &env());
    match got {
        Ok(s) => assert_eq!(s, expected, "input {input:?}"),
        Err(e) => assert_eq!("error", expected, "input {input:?}: {e}"),
    }
}

#[test]
fn words_and_expansions() {
    for (i, e) in [
        ("he'll'o", "hello"),
        ("he\\'llo", "he'llo"),
        ("\"abc\\tdef\"", "abc\\tdef"),
        ("hello\\", "hello"),
        ("$PWD", "/home"),
        ("${NULL:-x}", "x"),
        ("${NULL-x}", ""),
        ("${PWD:+y}", "y"),
        ("${XX+y}", ""),
        ("${XX?}", "error"),
        ("${NULL:?}", "error"),
        ("${V#*b}", "cabc"),
        ("${V##*b}", "c"),
        ("${V%b*}", "abca"),
        ("${V%%b*}", "a"),
        ("${V/b/X}", "aXcabc"),
        ("${V//b/X}", "aXcaXc"),
        ("${V///}", "abcabc"),
        ("${V//x}", "error"),
        ("${V:#a}", "error"),
        ("${A=b}", "error"),
        ("${}", "error"),
        ("$1x", "x"),
        ("$.", "$."),
        ("${aaa:-bbb}}", "bbb}"),
    ] {
        check(i, e);
    }
}

#[test]
fn error_messages() {
    let l = Lexer::default();
    let e = l.process_word("${X:?need $PWD}", &env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${X:?need $PWD}\": X: need /home"
    );
    let e = l.process_word("${X?}", &env()).unwrap_err();
    assert!(e.to_string().ends_with("X: is not allowed to be unset"));
}

#[test]
fn splitting_and_matches() {
    let l = Lexer::default();
    let x = l.process("a${SP}b \"${SP}\" $NOPE", &env()).unwrap();
    assert_eq!(x.words, vec!["a", "a", "b", "b", " a  b "]);
    assert!(x.matched.contains("SP"));
    assert!(x.unmatched.contains("NOPE"));
}

#[test]
fn raw_modes() {
    let mut l = Lexer::default();
    l.raw_quotes = true;
    l.raw_escapes = true;
    assert_eq!(l.process_word("a'b'\\c", &env()).unwrap(), "a'b'\\c");
    let mut l = Lexer::default();
    l.skip_unset_env = true;
    assert_eq!(
        l.process_word("$X ${Y} ${Z:-q}", &env()).unwrap(),
        "$X ${Y} ${Z:-q}"
    );
}

/// `${a:-${a:-…x…}}` nested `depth` levels.
fn nested(depth: usize) -> String {
    format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth))
}

/// Regression: 10,000 nested substitutions overflowed the stack and
/// aborted rbuild; now they are an error, and normal depths still expand.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let l = Lexer::default();
    assert_eq!(l.process_word(&nested(MAX_NESTING), &env()).unwrap(), "x");
    let deep = format!("\"{}\"", nested(MAX_NESTING));
    assert_eq!(l.process_word(&deep, &env()).unwrap(), "x");
    for depth in [MAX_NESTING + 1, 10_000] {
        let e = l.process_word(&nested(depth), &env()).unwrap_err();
        assert_eq!(
            e.message, "substitutions nested deeper than 128 levels",
            "depth {depth}"
        );
        let e = l.process_words(&format!("\"{}\"", nested(depth)), &env());
        assert!(e.is_err(), "quoted, depth {depth}");
    }
    let e = l.process_word(&format!("${{V/{}/y}}", nested(10_000)), &env());
    assert!(e.is_err(), "in a replacement pattern");
}
