use super::*;
use crate::ContentStore;

/// A process that has exited and been reaped: its owner record is dead.
fn dead_owner() -> Owner {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    // Read its start time while it is still ours (a zombie until reaped).
    let owner = Owner::of(pid).expect("child stat");
    child.wait().expect("wait");
    owner
}

#[test]
fn start_time_is_read_after_the_last_parenthesis() {
    // A command name with spaces and a ')' must not shift the fields.
    let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2";
    assert_eq!(parse_start_time(stat), Some(987654));
    assert_eq!(parse_start_time("42 (x"), None);
}

#[test]
fn leases_of_live_processes_protect_and_dead_ones_do_not() {
    let tmp = tempfile::tempdir().expect("tmp");
    let leases = Leases::open(tmp.path()).expect("leases");
    let me = Owner::current().expect("own stat");
    assert!(me.is_alive());
    let dead = dead_owner();
    assert!(!dead.is_alive(), "an exited process is dead");
    // Same pid, other start time: a reused pid is not the owner.
    let reused = Owner {
        pid: me.pid,
        start: me.start + 1,
    };
    assert!(!reused.is_alive());
    for (id, owner) in [
        ("live", Some(me)),
        ("dead", Some(dead)),
        ("reused", Some(reused)),
    ] {
        leases
            .put(&Lease {
                id: id.into(),
                owner,
                snapshots: [id.to_string()].into(),
                ..Lease::default()
            })
            .expect("put");
    }
    let ids: Vec<String> = leases
        .live()
        .expect("live")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec!["live".to_string()]);
    assert_eq!(leases.remove_dead().expect("remove"), 2);
    assert!(leases.get("live").is_ok());
    assert!(leases.get("dead").is_err() && leases.get("reused").is_err());
}

#[test]
fn process_lease_records_additions_and_ends_when_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let leases = Leases::open(tmp.path()).expect("leases");
    let lease = ProcessLease::acquire(leases.clone(), "build").expect("acquire");
    let d = Digest::sha256_of(b"x");
    lease
        .add(std::slice::from_ref(&d), &["snap-a"])
        .expect("add");
    let live = leases.live().expect("live");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].owner, Owner::current());
    assert!(live[0].digests.contains(&d) && live[0].snapshots.contains("snap-a"));
    drop(lease);
    assert!(leases.live().expect("live").is_empty());
}

#[test]
fn ingest_sweep_spares_files_of_running_processes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path()).expect("store");
    let ingest = tmp.path().join("ingest");
    let me = Owner::current().expect("own stat");
    // A blob being written by this (running) process.
    let mut w = store.writer().expect("writer");
    std::io::Write::write_all(&mut w, b"in flight").expect("write");
    let mine = format!("{}leftover", me.name_prefix());
    std::fs::write(ingest.join(&mine), b"x").expect("write");
    let theirs = format!("{}leftover", dead_owner().name_prefix());
    std::fs::write(ingest.join(&theirs), b"x").expect("write");
    std::fs::write(ingest.join(".tmpOLD"), b"x").expect("write");

    assert_eq!(store.clean_ingest().expect("clean"), 2);
    assert!(ingest.join(&mine).exists());
    assert!(!ingest.join(&theirs).exists() && !ingest.join(".tmpOLD").exists());
    // The writer's file survived the sweep: its commit works.
    let (d, _) = w.commit(None).expect("commit after a sweep");
    assert_eq!(store.read_blob(&d).expect("read"), b"in flight");
}

#[test]
fn blobs_are_leased_before_they_are_visible() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ContentStore::open(tmp.path().join("content")).expect("store");
    let leases = Leases::open(tmp.path().join("leases")).expect("leases");
    let old = store.put(b"already there").expect("put");
    let lease = ProcessLease::acquire(leases.clone(), "build").expect("acquire");
    store.clone().set_lease(lease.clone());
    let new = store.put(b"written by the build").expect("put");
    assert!(store.hold(&old).expect("hold"));
    let held = &leases.live().expect("live")[0].digests;
    assert!(held.contains(&new) && held.contains(&old), "{held:?}");
}
