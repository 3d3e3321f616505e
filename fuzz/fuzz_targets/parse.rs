//! Fuzz the Dockerfile parser, the lexer and lowering: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::{build, BuildOptions, ImageResolver, ResolvedImage};

struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, r: &str, _: &rbuild_graph::Platform) -> Result<ResolvedImage, String> {
        Err(format!("no image {r}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let _ = rbuild_frontend::dump_ast(src);
    let _ = build(src, &BuildOptions::default(), &NoImages);
    let env = std::collections::BTreeMap::<String, String>::new();
    let _ = rbuild_frontend::shell::Lexer::default().process(src, &env);
});
