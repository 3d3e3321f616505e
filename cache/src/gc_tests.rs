use super::*;
use crate::snapshot::CopySnapshotter;
use crate::testutil::file;
use std::io::{BufRead, Write};

#[test]
fn leases_protect_blobs_and_snapshot_chains_from_prune() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path().join("content")).expect("store");
    let snaps = CopySnapshotter::open(tmp.path().join("snaps")).expect("snaps");
    let leases = Leases::open(tmp.path().join("leases")).expect("leases");
    let keep = store.put(&vec![1u8; 10_000]).expect("put");
    let drop1 = store.put(&vec![2u8; 10_000]).expect("put");
    for (k, parent) in [
        ("base", None),
        ("mid", Some("base")),
        ("top", Some("mid")),
        ("other", None),
    ] {
        snaps.prepare(&format!("{k}-a"), parent).expect("prepare");
        file(
            &snaps.upper_dir(&format!("{k}-a")).expect("dir"),
            k,
            &vec![0u8; 8192],
            0o644,
            0,
        );
        snaps.commit(k, &format!("{k}-a")).expect("commit");
    }
    snaps
        .prepare("busy", Some("other"))
        .expect("prepare active");
    leases
        .add("build-1", std::slice::from_ref(&keep), &["top"])
        .expect("lease");
    let before = du(&store, Some(&snaps)).expect("du");
    assert_eq!((before.blobs, before.snapshots), (2, 5));
    assert!(before.blob_bytes >= 20_000);

    let report = prune(&store, &snaps, &leases, None, &PruneOptions::default()).expect("prune");
    assert_eq!(report.blobs, vec![drop1]);
    assert!(
        report.snapshots.is_empty(),
        "top's chain is leased, other is busy's parent"
    );
    assert!(store.contains(&keep));

    // Too-young items survive an age limit.
    snaps.remove("busy").expect("remove");
    leases.release("build-1").expect("release");
    let young = PruneOptions {
        keep_bytes: 0,
        older_than: Some(Duration::from_secs(3600)),
    };
    assert!(prune(&store, &snaps, &leases, None, &young)
        .expect("prune")
        .snapshots
        .is_empty());

    let report = prune(&store, &snaps, &leases, None, &PruneOptions::default()).expect("prune");
    assert_eq!(report.snapshots.len(), 4, "{report:?}");
    assert_eq!(report.blobs, vec![keep]);
    assert_eq!(du(&store, Some(&snaps)).expect("du").total(), 0);
}

#[test]
fn stray_ingest_file_is_invisible_and_cleaned() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path()).expect("store");
    let good = store.put(b"good").expect("put");
    // Simulate a kill during ingest: a partial temp file is left behind.
    std::fs::write(tmp.path().join("ingest/.tmpXYZ"), b"partial").expect("write");
    let store = ContentStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.list().expect("list"), vec![good]);
    store.clean_ingest().expect("clean");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("ingest"))
            .expect("dir")
            .count(),
        0
    );
}

const CHILD_ENV: &str = "RBUILD_CACHE_CRASH_CHILD";

/// The child half of `kill_during_commit_leaves_only_valid_blobs`: writes
/// blobs forever, reporting each commit on stdout.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when spawned by the parent test
    };
    let store = ContentStore::open(&dir).expect("store");
    let mut out = std::io::stdout();
    for i in 0u64.. {
        let mut w = store.writer().expect("writer");
        for j in 0..64u64 {
            w.write_all(&[(i + j) as u8; 16 * 1024]).expect("write");
        }
        w.commit(None).expect("commit");
        writeln!(out, "committed {i}").expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn kill_during_commit_leaves_only_valid_blobs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "gc::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    // Wait for a few commits, then kill it mid-write (no sleeping).
    let mut seen = 0;
    while seen < 5 {
        let line = lines.next().expect("child output").expect("line");
        if line.starts_with("committed") {
            seen += 1;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    let store = ContentStore::open(tmp.path()).expect("reopen");
    let blobs = store.list().expect("list");
    assert!(blobs.len() >= 5, "{} blobs", blobs.len());
    for d in &blobs {
        let bytes = store.read_blob(d).expect("read");
        assert_eq!(
            &Digest::sha256_of(&bytes),
            d,
            "blob content must match its name"
        );
    }
    store.clean_ingest().expect("clean");
    assert_eq!(store.list().expect("list"), blobs);
}
