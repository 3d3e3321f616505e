//! Ref resolution, checksums, subdirectories and redaction.

use super::*;

const SHA_A: &str = "1111111111111111111111111111111111111111";
const SHA_B: &str = "2222222222222222222222222222222222222222";
const SHA_C: &str = "3333333333333333333333333333333333333333";

fn picked(r: &str, sha: &str) -> Option<Resolved> {
    Some(Resolved {
        remote_ref: Some(r.into()),
        commit: sha.into(),
        tag_object: None,
    })
}

#[test]
fn pick_ref_prefers_full_names_then_branches_then_peeled_tags() {
    let out = format!(
        "{SHA_A}\trefs/heads/feature/v1\n{SHA_B}\trefs/tags/v1\n{SHA_C}\trefs/tags/v1^{{}}\n"
    );
    // An annotated tag resolves to the commit it points at.
    assert_eq!(
        pick_ref(&out, "v1"),
        Some(Resolved {
            remote_ref: Some("refs/tags/v1".into()),
            commit: SHA_C.into(),
            tag_object: Some(SHA_B.into()),
        })
    );
    let out = format!("{SHA_A}\trefs/heads/main\n{SHA_B}\trefs/tags/main\n");
    assert_eq!(pick_ref(&out, "main"), picked("refs/heads/main", SHA_A));
    assert_eq!(
        pick_ref(&out, "refs/tags/main"),
        picked("refs/tags/main", SHA_B)
    );
    let out = format!("{SHA_A}\tHEAD\n");
    assert_eq!(pick_ref(&out, "HEAD"), picked("HEAD", SHA_A));
    let out = format!("{SHA_B}\trefs/pull/7/head\n");
    assert_eq!(
        pick_ref(&out, "refs/pull/7/head"),
        picked("refs/pull/7/head", SHA_B)
    );
    assert_eq!(pick_ref("", "main"), None);
}

#[test]
fn pick_ref_never_takes_a_ref_of_another_name() {
    // `?branch=v1` asks for refs/heads/v1: a tag v1 does not answer it.
    let out = format!("{SHA_B}\trefs/tags/v1\n");
    assert_eq!(pick_ref(&out, "refs/heads/v1"), None);
    // ls-remote matches tails: refs/heads/x/main is not main.
    let out = format!("{SHA_A}\trefs/heads/x/main\n");
    assert_eq!(pick_ref(&out, "main"), None);
}

#[test]
fn checksums_are_hex_prefixes_of_the_commit_or_tag_object() {
    let r = Resolved {
        remote_ref: Some("refs/tags/v1".into()),
        commit: SHA_C.into(),
        tag_object: Some(SHA_B.into()),
    };
    assert!(verify_checksum(None, &r).is_ok());
    assert!(verify_checksum(Some("3333"), &r).is_ok());
    assert!(verify_checksum(Some(SHA_B), &r).is_ok());
    let e = verify_checksum(Some("1111"), &r)
        .expect_err("mismatch")
        .to_string();
    assert!(e.contains("expected checksum to match 1111"), "{e}");
    let e = verify_checksum(Some("foobar"), &r)
        .expect_err("garbage")
        .to_string();
    assert_eq!(
        e,
        "invalid checksum foobar for Git URL, expected hex commit hash"
    );
    let plain = Resolved {
        tag_object: None,
        ..r
    };
    assert!(verify_checksum(Some(&SHA_C.to_ascii_uppercase()[..10]), &plain).is_ok());
}

#[test]
fn subdirs_are_relative_and_stay_inside() {
    assert_eq!(clean_subdir("/"), Ok(None));
    assert_eq!(clean_subdir("./"), Ok(None));
    assert_eq!(clean_subdir("/a/b/"), Ok(Some(PathBuf::from("a/b"))));
    assert_eq!(clean_subdir("a/../c"), Ok(Some(PathBuf::from("c"))));
    assert!(clean_subdir("../x").is_err());
}

#[test]
fn redact_hides_passwords_only() {
    assert_eq!(
        redact("https://user:secret@example.com/r.git"),
        "https://user:xxxxx@example.com/r.git"
    );
    assert_eq!(
        redact("https://token@example.com/r.git"),
        "https://token@example.com/r.git"
    );
    assert_eq!(
        redact("git://127.0.0.1:9418/r.git"),
        "git://127.0.0.1:9418/r.git"
    );
    assert_eq!(redact("git@example.com:x/y.git"), "git@example.com:x/y.git");
}

#[test]
fn commits_are_full_hex_ids() {
    assert!(is_commit(SHA_A));
    assert!(is_commit(&"ab".repeat(32)));
    assert!(!is_commit("main"));
    assert!(!is_commit("1111111"));
}
