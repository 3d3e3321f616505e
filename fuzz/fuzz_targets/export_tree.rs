//! Fuzz the rootfs exporters' final-tree path: arbitrary bytes as one or
//! two layer tars, applied into a scratch tree, then written with the
//! `type=local` writer into a destination that already holds files and
//! links, and with the `type=tar` writer. Nothing outside the destination
//! and the scratch directory may change.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rbuild_export::FinalTree;
use rbuild_graph::Digest;
use std::sync::OnceLock;

static ARENA: OnceLock<common::Arena> = OnceLock::new();

/// The destination's prior content: the user's file, and links that a
/// writer following them would leave dest through.
fn seed_dest(dest: &std::path::Path, canary: &std::path::Path) {
    std::fs::create_dir_all(dest.join("notes")).expect("notes");
    std::fs::write(dest.join("notes/keep.txt"), b"mine").expect("keep");
    let _ = std::os::unix::fs::symlink(canary.join("dir"), dest.join("etc"));
    let _ = std::os::unix::fs::symlink(canary.join("file"), dest.join("f"));
    let _ = std::os::unix::fs::symlink("../../canary", dest.join("up"));
}

fuzz_target!(|data: &[u8]| {
    let arena = ARENA.get_or_init(|| common::Arena::new("export_tree"));
    // First two bytes: where the second layer starts (none if past the end).
    let layers: Vec<&[u8]> = match data {
        [a, b, rest @ ..] => {
            let split = usize::from(u16::from_le_bytes([*a, *b]));
            if split < rest.len() {
                vec![&rest[..split], &rest[split..]]
            } else {
                vec![rest]
            }
        }
        _ => return,
    };
    let scratch = arena.fresh("scratch");
    let dest = arena.fresh("dest");
    seed_dest(&dest, &arena.base.join("canary"));
    {
        let mut tree = FinalTree::new_in(&scratch).expect("scratch tree");
        let digest = Digest::sha256_of(b"fuzz");
        let applied = layers.iter().all(|l| tree.apply(*l, &digest).is_ok());
        if applied {
            let _ = tree.write_local(&dest);
            let _ = tree.write_tar(Some(0), &mut std::io::sink());
        }
    }
    arena.check(&["scratch", "dest"]);
    // The tree is removed with the handle; the user's file survives
    // unless the image has a file at that path.
    assert!(
        std::fs::read_dir(&scratch)
            .expect("scratch")
            .next()
            .is_none(),
        "scratch tree left behind"
    );
});
