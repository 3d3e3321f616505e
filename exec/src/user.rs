//! Resolve a Dockerfile `USER` string against the rootfs's `/etc/passwd` and
//! `/etc/group`, with the semantics of runc's `user.GetExecUser` (which
//! BuildKit uses).

use std::path::Path;

use rbuild_fsroot::Root;

use crate::rootfs::open_root;
use crate::{Error, Result};

/// A user resolved inside the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (only when no group was given explicitly).
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` if unknown).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Read `path` through the rootfs's root handle: symlinks resolve inside
/// the rootfs, and only a regular file is read (never a fifo or a device).
fn read_in_root(root: &Root, path: &str) -> Result<Option<String>> {
    match root.read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {path} in rootfs"), e)),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `user` (`""`, `name`, `uid`, `uid:gid`, `name:group`, …) in the
/// rootfs at `root`. A numeric uid without a passwd entry gets gid 0 unless a
/// group is given; a name that is not in `/etc/passwd` is an error.
pub fn resolve_user(root: &Path, user: &str) -> Result<ResolvedUser> {
    let root = &open_root(root)?;
    let passwd = read_in_root(root, "/etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            Error::User(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        })?),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part
            .parse::<u32>()
            .map_err(|_| Error::User(format!("invalid user {user_part:?}")))?,
    };
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let needs_groups = group_part.is_some_and(|g| !g.is_empty()) || entry.is_some();
    let groups = if needs_groups {
        read_in_root(root, "/etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| {
                        Error::User(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?,
            };
            // The primary group is in the group list too, as runc and
            // Docker set it (`id` shows `groups=<gid>`).
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids: vec![gid],
                home,
            })
        }
        None => {
            let gid = entry.map_or(0, |e| e.gid);
            let mut additional_gids = vec![gid];
            if let Some(e) = entry {
                for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
                    if !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids,
                home,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user: &str, expected: Option<(u32, u32, &[u32])>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let etc = tmp.path().join("etc");
        std::fs::create_dir(&etc).expect("mkdir");
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("write");
        std::fs::write(
            etc.join("group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n",
        )
        .expect("write");
        let got = resolve_user(tmp.path(), user).ok();
        let got = got
            .as_ref()
            .map(|u| (u.uid, u.gid, u.additional_gids.as_slice()));
        assert_eq!(got, expected, "user {user:?}");
    }

    #[test]
    fn passwd_is_read_inside_the_rootfs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (root, host) = (tmp.path().join("root"), tmp.path().join("host"));
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir(&host).expect("mkdir");
        std::fs::write(host.join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").expect("write");
        // /etc/passwd -> <host passwd>: resolved in the rootfs, it is missing.
        std::os::unix::fs::symlink(host.join("passwd"), root.join("etc/passwd")).expect("ln");
        assert!(
            resolve_user(&root, "evil").is_err(),
            "read the host's passwd"
        );
        // A fifo is never opened (it would block).
        std::fs::remove_file(root.join("etc/passwd")).expect("rm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        assert!(resolve_user(&root, "0").is_err());
    }

    #[test]
    fn table() {
        check("", Some((0, 0, &[0])));
        check("root", Some((0, 0, &[0])));
        check("app", Some((1000, 1000, &[1000, 10, 29])));
        check("1000", Some((1000, 1000, &[1000, 10, 29])));
        check("1000:1000", Some((1000, 1000, &[1000])));
        check("app:wheel", Some((1000, 10, &[10])));
        check("4242", Some((4242, 0, &[0])));
        check("4242:7", Some((4242, 7, &[7])));
        check("nobody", None);
        check("app:nogroup", None);
    }
}
