use super::*;
use crate::parser::parse;

fn one(src: &str) -> Result<Instruction, String> {
    let ast = parse(src).map_err(|e| e[0].message.clone())?;
    parse_instruction(&ast.nodes[0]).map_err(|e| e.message)
}

fn check_err(src: &str, msg: &str) {
    assert_eq!(one(src).expect_err(src), msg, "{src}");
}

#[test]
fn flag_errors() {
    for (src, msg) in [
        ("COPY --chwon=1 a b", "unknown flag: --chwon (did you mean chown?)"),
        ("COPY --from a b", "missing a value on flag: --from"),
        ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
        ("COPY --from=a --from=b a b", "duplicate flag specified: --from"),
        ("ADD --from=a a b", "unknown flag: --from"),
        ("ENV --x=1 a=b", "unknown flag: --x"),
        ("RUNN x", "unknown instruction: RUNN (did you mean RUN?)"),
        ("copyy a b", "unknown instruction: copyy (did you mean copy?)"),
        ("COPY a", "COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("SHELL sh -c", "SHELL requires the arguments to be in JSON form"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("HEALTHCHECK FOO x", "Unknown type \"FOO\" in HEALTHCHECK (try CMD)"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --interval=1us CMD x", "Interval \"interval\" cannot be less than 1ms"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ] {
        check_err(src, msg);
    }
}

#[test]
fn typed_values() {
    let Ok(Instruction::Copy(c)) = one(
        "COPY --from=b --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x a \"b c\" /d/",
    ) else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("b"));
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert!(c.link && !c.parents);
    assert_eq!(c.excludes, vec!["*.md", "x"]);
    assert_eq!(c.sources.len(), 3);
    assert_eq!(c.dest, "/d/");
    let Ok(Instruction::Arg(a)) = one("ARG a b=c d=") else {
        panic!()
    };
    assert_eq!(
        a[1],
        ArgDecl {
            key: "b".into(),
            value: Some("c".into())
        }
    );
    assert_eq!(a[2].value.as_deref(), Some(""));
    let Ok(Instruction::Healthcheck(h)) =
        one("HEALTHCHECK --interval=1m --retries=2 CMD [\"a\", \"b\"]")
    else {
        panic!()
    };
    assert_eq!(h.test, vec!["CMD", "a", "b"]);
    assert_eq!((h.interval, h.retries), (60_000_000_000, 2));
    let Ok(Instruction::Run(r)) = one("RUN --mount=type=cache,target=/c --network=none echo hi")
    else {
        panic!()
    };
    assert_eq!(r.mounts, vec!["type=cache,target=/c"]);
    assert_eq!(r.network.as_deref(), Some("none"));
    assert_eq!(
        r.cmd,
        CmdLine {
            args: vec!["echo hi".into()],
            shell_form: true
        }
    );
    let Ok(Instruction::Onbuild(e)) = one("onbuild  RUN echo x") else {
        panic!()
    };
    assert_eq!(e, "RUN echo x");
}

#[test]
fn onbuild_trigger_keeps_heredoc_body() {
    // testOnBuildHeredoc: the trigger text is what BuildKit stores.
    let Ok(Instruction::Onbuild(e)) =
        one("ONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n")
    else {
        panic!()
    };
    assert_eq!(e, "RUN <<EOF\necho \"hello world\" >> /dest\nEOF");
    let again = parse(&e).expect("the trigger parses again");
    assert_eq!(again.nodes.len(), 1);
    assert_eq!(
        again.nodes[0].heredocs[0].content,
        "echo \"hello world\" >> /dest\n"
    );
}

#[test]
fn stages() {
    let ast = parse("ARG X\nFROM --platform=$P a AS Build\nRUN x\nFROM build\n").expect("parse");
    let s = parse_stages(ast.nodes.clone()).expect("stages");
    assert_eq!(s.meta_args.len(), 1);
    assert_eq!(s.stages[0].name.as_deref(), Some("build"));
    assert_eq!(s.stages[0].platform.as_deref(), Some("$P"));
    assert_eq!(s.stages[0].commands.len(), 1);
    let ast = parse("FROM a AS 1x\nFROM a b\nRUNN x\n").expect("parse");
    let e = parse_stages(ast.nodes.clone()).expect_err("errors");
    let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        vec![
        "invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
        "FROM requires either one or three arguments",
        "unknown instruction: RUNN (did you mean RUN?)",
    ]
    );
}
