//! Property tests: the lexer, the parser and the whole frontend never panic.

use proptest::prelude::*;
use rbuild_frontend::shell::Lexer;
use rbuild_frontend::{build, BuildOptions, ImageResolver, ResolvedImage};
use std::collections::BTreeMap;

struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, r: &str, _: &rbuild_graph::Platform) -> Result<ResolvedImage, String> {
        Err(format!("no image {r}"))
    }
}

fn dockerfile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM scratch AS a\n".to_string()),
        Just("RUN --mount=type=cache,target=/c echo $A \\\n".to_string()),
        Just("COPY --from=a <<EOF /x\n".to_string()),
        Just("EOF\n".to_string()),
        Just("ARG A=${B:-c}\n".to_string()),
        Just("ENV X=\"y z\" W=1\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("HEALTHCHECK --interval=1s CMD [\"x\"]\n".to_string()),
        Just("ONBUILD RUN x\n".to_string()),
        Just("WORKDIR ../a\n".to_string()),
        Just("EXPOSE 80-81/udp\n".to_string()),
        "[ -~\t\\\\`$'\"{}<>#\n]{0,40}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn lexer_never_panics(s in "\\PC{0,60}", esc in prop_oneof![Just('\\'), Just('`')]) {
        let env: BTreeMap<String, String> = [("A".to_string(), "a b".to_string())].into();
        for (rq, re, sq, su) in [(false, false, false, false), (true, true, false, true), (false, false, true, false)] {
            let mut l = Lexer::new(esc);
            l.raw_quotes = rq;
            l.raw_escapes = re;
            l.skip_process_quotes = sq;
            l.skip_unset_env = su;
            let _ = l.process(&s, &env);
        }
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = rbuild_frontend::dump_ast(&s);
    }

    #[test]
    fn frontend_never_panics(s in dockerfile_text()) {
        let _ = rbuild_frontend::dump_ast(&s);
        let _ = build(&s, &BuildOptions::default(), &NoImages);
    }
}
