//! A fixed place beside each fuzz run's work dir, with a canary tree the
//! target must never change. Its path is fixed (not random) so that the
//! dictionary (`fuzz/tar.dict`) can name it in symlink and hardlink targets
//! and absolute entry names.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// (mode, uid, gid, size, content or link target) of each canary entry.
pub type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, u64, Vec<u8>)>;

/// `/tmp/rbuild-fuzz/<target>`: the canary tree in `canary/` and this
/// process's work dir `work-<pid>/`.
pub struct Arena {
    pub base: PathBuf,
    pub work: PathBuf,
    canary: PathBuf,
    before: Snapshot,
}

fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).expect("stat canary");
        let data = if md.file_type().is_symlink() {
            fs::read_link(&p)
                .expect("readlink")
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            fs::read(&p).expect("read canary")
        } else {
            Vec::new()
        };
        if md.is_dir() {
            for e in fs::read_dir(&p).expect("read_dir canary") {
                stack.push(e.expect("entry").path());
            }
        }
        out.insert(p, (md.mode(), md.uid(), md.gid(), md.len(), data));
    }
    out
}

impl Arena {
    /// Create (or reuse) the arena of `target`.
    pub fn new(target: &str) -> Self {
        let base = PathBuf::from("/tmp/rbuild-fuzz").join(target);
        let canary = base.join("canary");
        if !canary.join("done").exists() {
            fs::create_dir_all(canary.join("dir")).expect("canary");
            fs::write(canary.join("file"), b"canary").expect("canary");
            fs::set_permissions(canary.join("file"), fs::Permissions::from_mode(0o644))
                .expect("chmod");
            fs::write(canary.join("dir/inner"), b"inner").expect("canary");
            let _ = std::os::unix::fs::symlink("file", canary.join("link"));
            fs::write(canary.join("done"), b"").expect("canary");
        }
        let work = base.join(format!("work-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).expect("work");
        let before = snapshot(&canary);
        Self {
            base,
            work,
            canary,
            before,
        }
    }

    /// A fresh, empty `work/<name>`.
    pub fn fresh(&self, name: &str) -> PathBuf {
        let p = self.work.join(name);
        // std's remove_dir_all never follows symlinks.
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("fresh dir");
        p
    }

    /// Panic unless the canary tree is as it was, and `base` holds only the
    /// canary and work dirs, and `work` only `allowed`.
    pub fn check(&self, allowed: &[&str]) {
        assert_eq!(snapshot(&self.canary), self.before, "canary tree changed");
        for e in fs::read_dir(&self.base).expect("base") {
            let n = e.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(
                n == "canary" || n.starts_with("work-"),
                "written beside work: {n}"
            );
        }
        for e in fs::read_dir(&self.work).expect("work") {
            let n = e.expect("entry").file_name().to_string_lossy().into_owned();
            assert!(allowed.contains(&n.as_str()), "written into work: {n}");
        }
    }
}
