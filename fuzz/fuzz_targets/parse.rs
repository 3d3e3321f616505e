//! Fuzz the Dockerfile parser, the lexer and lowering: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::{build, BuildOptions, ImageResolver, ResolvedImage};

/// Every image resolves to an empty config, so lowering runs past FROM.
struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, r: &str, p: &rbuild_graph::Platform) -> Result<ResolvedImage, String> {
        if r.contains("fail") {
            return Err(format!("no image {r}"));
        }
        Ok(ResolvedImage {
            reference: format!("example.invalid/{r}"),
            config: rbuild_graph::ImageConfig {
                architecture: p.architecture.clone(),
                os: p.os.clone(),
                ..Default::default()
            },
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let _ = rbuild_frontend::dump_ast(src);
    let _ = build(src, &BuildOptions::default(), &NoImages);
    let env = std::collections::BTreeMap::<String, String>::new();
    let _ = rbuild_frontend::shell::Lexer::default().process(src, &env);
});
