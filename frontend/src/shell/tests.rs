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
