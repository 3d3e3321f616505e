use super::*;
use crate::compress::{decompress_reader, CompressOptions, Compression};
use crate::snapshot::{CopySnapshotter, Snapshotter};
use crate::testutil::file;
use std::io::Read;

#[test]
fn export_layer_hashes_compresses_and_stores_in_one_pass() {
    let tree = tempfile::tempdir().expect("tmp");
    file(tree.path(), "a/b", &vec![3u8; 3 << 20], 0o644, 100);
    file(tree.path(), "c", b"c", 0o600, 100);
    let source = DiffSource::Compare {
        lower: None,
        upper: tree.path().to_path_buf(),
    };
    let mut plain = Vec::new();
    write_layer_tar(&source, &mut plain, &DiffOptions::default()).expect("tar");
    let store_dir = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(store_dir.path()).expect("store");
    for c in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let layer = export_layer(
            &store,
            &source,
            &DiffOptions::default(),
            &CompressOptions::new(c),
        )
        .expect("export");
        assert_eq!(layer.diff_id, Digest::sha256_of(&plain), "{c:?}");
        assert_eq!(layer.uncompressed_size, plain.len() as u64);
        assert_eq!(layer.descriptor.media_type, crate::media_type(c, false));
        let blob = store.read_blob(&layer.descriptor.digest).expect("blob");
        assert_eq!(blob.len() as u64, layer.descriptor.size);
        assert_eq!(Digest::sha256_of(&blob), layer.descriptor.digest);
        let mut out = Vec::new();
        decompress_reader(&blob[..])
            .expect("reader")
            .read_to_end(&mut out)
            .expect("read");
        assert_eq!(out, plain, "{c:?}");
    }
}

#[test]
fn exported_layers_are_cached_per_snapshot_and_compression() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path().join("content")).expect("store");
    let snaps = CopySnapshotter::open(tmp.path().join("snaps")).expect("snapshotter");
    let cache = LayerCache::open(tmp.path().join("layers")).expect("cache");
    snaps.prepare("k", None).expect("prepare");
    file(
        &snaps.upper_dir("k").expect("dir"),
        "f",
        b"data",
        0o644,
        100,
    );
    let opts = DiffOptions::default();
    let gz = CompressOptions::new(Compression::Gzip);
    // Active snapshots are never cached (they still change).
    export_snapshot(&store, &snaps, "k", Some(&cache), &opts, &gz).expect("export");
    assert!(cache.entries().expect("entries").is_empty());
    snaps.commit("c", "k").expect("commit");
    let first = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz).expect("export");
    assert_eq!(cache.entries().expect("entries").len(), 1);
    // Change the tree behind the cache's back: a hit must not re-tar.
    file(
        &snaps.upper_dir("c").expect("dir"),
        "f2",
        b"more",
        0o644,
        100,
    );
    let again = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz).expect("export");
    assert_eq!(first, again);
    let zst = export_snapshot(
        &store,
        &snaps,
        "c",
        Some(&cache),
        &opts,
        &CompressOptions::new(Compression::Zstd),
    )
    .expect("export");
    assert_ne!(zst.descriptor.digest, first.descriptor.digest);
    assert_eq!(cache.entries().expect("entries").len(), 2);
    // A cached entry whose blob was deleted is recomputed.
    store.delete(&first.descriptor.digest).expect("delete");
    let redone = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz).expect("export");
    assert!(store.contains(&redone.descriptor.digest));
}

#[test]
fn each_level_gets_its_own_cached_blob_and_the_default_keeps_its_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path().join("content")).expect("store");
    let snaps = CopySnapshotter::open(tmp.path().join("snaps")).expect("snapshotter");
    let cache = LayerCache::open(tmp.path().join("layers")).expect("cache");
    snaps.prepare("k", None).expect("prepare");
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
        .collect();
    file(&snaps.upper_dir("k").expect("dir"), "t", &text, 0o644, 100);
    snaps.commit("c", "k").expect("commit");
    let opts = DiffOptions::default();
    let gz = |level| {
        CompressOptions::new(Compression::Gzip)
            .with_level(level)
            .expect("level")
    };
    let default = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz(None)).expect("6");
    let fast = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz(Some(1))).expect("1");
    let best = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz(Some(9))).expect("9");
    assert_eq!(fast.diff_id, best.diff_id);
    assert_eq!(fast.diff_id, default.diff_id);
    assert_ne!(fast.descriptor.digest, best.descriptor.digest);
    assert_ne!(fast.descriptor.digest, default.descriptor.digest);
    assert_eq!(cache.entries().expect("entries").len(), 3);
    // Level 6 given explicitly is the default level: same record, same blob.
    let six = export_snapshot(&store, &snaps, "c", Some(&cache), &opts, &gz(Some(6))).expect("6");
    assert_eq!(six, default);
    assert_eq!(cache.entries().expect("entries").len(), 3);
    // The default level's key is the text caches were written under before
    // levels were honoured: existing caches stay valid.
    let info = snaps.stat("c").expect("stat");
    let keys: Vec<String> = cache
        .entries()
        .expect("entries")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let prefix = format!("copy\n{}\nc\n{}\ngzip\n", info.id, info.created);
    for (level, epoch) in [("None", "None"), ("Some(1)", "None"), ("Some(9)", "None")] {
        let want = format!("{prefix}{level}\n{epoch}");
        assert!(keys.contains(&want), "{want:?} not in {keys:?}");
    }
}
