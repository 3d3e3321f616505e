use super::*;

fn check(input: &str, expected: &str) {
    let ast = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
    assert_eq!(dump::dump_ast(&ast), expected, "input {input:?}");
}

fn check_err(input: &str, line: usize, msg: &str) {
    let e = parse(input).expect_err(input);
    assert_eq!(
        (e[0].line, e[0].message.as_str()),
        (line, msg),
        "input {input:?}"
    );
}

#[test]
fn dumps() {
    for (i, e) in [
        ("FROM a AS b\n", "(from \"a\" \"AS\" \"b\")"),
        ("cmd [\"a\",\"b\"]", "(cmd \"a\" \"b\")"),
        ("CMD ['a']", "(cmd \"['a']\")"),
        ("COPY --from=x -- a b", "(copy [\"--from=x\"] \"a\" \"b\")"),
        (
            "ENV a=b c=\"d e\"",
            "(env \"a\" \"b\" \"=\" \"c\" \"\\\"d e\\\"\" \"=\")",
        ),
        ("ENV a b c", "(env \"a\" \"b c\" \"\")"),
        ("ONBUILD RUN x", "(onbuild (run \"x\"))"),
        ("HEALTHCHECK NONE", "(healthcheck \"NONE\")"),
        ("FOO bar", "(foo \"\")"),
        ("RUN a \\\n\n  b", "(run \"a   b\")"),
        ("# escape=`\nRUN a `\n b\\", "(run \"a  b\\\\\")"),
        ("\u{feff}FROM a\r\nRUN b\r\n", "(from \"a\")\n(run \"b\")"),
    ] {
        check(i, e);
    }
}

#[test]
fn errors() {
    check_err("", 0, "file with no instructions");
    check_err("# a\n\n", 0, "file with no instructions");
    check_err("FROM a\nENV PATH\n", 2, "ENV must have two arguments");
    check_err(
        "# escape=x\nFROM a",
        1,
        "invalid escape token 'x' does not match ` or \\",
    );
    check_err("RUN <<EOF\nhi\n", 1, "unterminated heredoc");
    check_err(
        "CMD [1]",
        1,
        "when using JSON array syntax, arrays must be comprised of strings only",
    );
}

#[test]
fn heredocs_and_spans() {
    let src = "FROM a\nRUN <<EOF cat <<-'X'\necho $a\nEOF\n\tq\n\tX\nCOPY <<f /x\nbody\nf\n";
    let ast = parse(src).expect("parse");
    let run = &ast.nodes[1];
    assert_eq!((run.start_line, run.end_line), (2, 6));
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].content, "echo $a\n");
    assert!(run.heredocs[0].expand);
    assert_eq!(run.heredocs[1].name, "X");
    assert!(!run.heredocs[1].expand && run.heredocs[1].chomp);
    assert_eq!(run.heredocs[1].content, "\tq\n");
    assert_eq!(ast.nodes[2].heredocs[0].content, "body\n");
    assert_eq!(chomp_heredoc_content("\t\ta\n\tb\n"), "a\nb\n");
    let ast = parse("RUN [\"<<EOF\"]\nRUN \"<<NO\"\nUSER <<X\n").expect("parse");
    assert!(ast.nodes.iter().all(|n| n.heredocs.is_empty()));
}

#[test]
fn directives_and_warnings() {
    let ast = parse("# syntax=x\n# check=skip=all\nFROM a\nRUN a \\\n\n b\n").expect("parse");
    assert_eq!(ast.directives.len(), 2);
    assert_eq!(ast.warnings.len(), 1);
    check_err(
        "# escape=`\n# escape=\\\nFROM a",
        2,
        "only one escape parser directive can be used",
    );
}
