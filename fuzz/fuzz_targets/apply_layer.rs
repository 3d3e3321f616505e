//! Fuzz cache's layer applier: arbitrary bytes as a (possibly compressed)
//! layer tar, applied in both whiteout modes into a fresh directory. It may
//! fail, never panic, and never change anything outside that directory.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rbuild_cache::{apply_layer, ApplyTarget, WhiteoutMode};
use std::sync::OnceLock;

static ARENA: OnceLock<common::Arena> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let arena = ARENA.get_or_init(|| common::Arena::new("apply_layer"));
    let (mode, tar) = match data.split_first() {
        Some((m, rest)) if m & 1 == 1 => (WhiteoutMode::Overlay, rest),
        Some((_, rest)) => (WhiteoutMode::Delete, rest),
        None => return,
    };
    let root = arena.fresh("root");
    let mut target = ApplyTarget::plain(&root);
    target.mode = mode;
    let _ = apply_layer(tar, &target);
    arena.check(&["root"]);
});
