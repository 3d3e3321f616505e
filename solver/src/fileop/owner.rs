//! Owners and modes of what a file action creates: `--chown` names looked
//! up in the destination's `/etc/passwd` and `/etc/group` (read through the
//! destination's root handle), and `--chmod` applied to a source mode.

use super::{FileOpError, Result};
use rbuild_fsroot::Root;
use rbuild_graph::{Chmod, Chown, UserRef};

/// Numeric owner resolved against the destination rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// `0:0`.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };

    pub(crate) fn pair(self) -> (u32, u32) {
        (self.uid, self.gid)
    }
}

/// The ids of `name` in the passwd-format `file` of the root: (id, gid).
/// A missing or unreadable file (a link chain, a fifo) knows no one.
fn lookup(root: &Root, file: &str, name: &str) -> Option<(u32, u32)> {
    let bytes = root.read(file).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) {
            let id = f.get(2)?.parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        } else {
            None
        }
    })
}

/// Resolve a `--chown` spec against the destination's passwd and group files.
pub fn resolve_owner_in(root: &Root, chown: &Chown) -> Result<Owner> {
    let (uid, primary) = match &chown.user {
        UserRef::Id(id) => (*id, None),
        UserRef::Name(n) => {
            let (u, g) =
                lookup(root, "/etc/passwd", n).ok_or_else(|| FileOpError::UnknownUser {
                    kind: "user",
                    name: n.clone(),
                })?;
            (u, Some(g))
        }
    };
    let gid = match &chown.group {
        Some(UserRef::Id(g)) => *g,
        Some(UserRef::Name(n)) => {
            lookup(root, "/etc/group", n)
                .ok_or_else(|| FileOpError::UnknownUser {
                    kind: "group",
                    name: n.clone(),
                })?
                .0
        }
        None => primary.unwrap_or(uid),
    };
    Ok(Owner { uid, gid })
}

/// The owner of what a mkdir or mkfile action creates: its `--chown`, or root.
pub(crate) fn owner_of(root: &Root, chown: Option<&Chown>) -> Result<Owner> {
    match chown {
        Some(c) => resolve_owner_in(root, c),
        None => Ok(Owner::ROOT),
    }
}

/// Apply a symbolic (`u+x,g-w,o=r`) or octal chmod to `mode`.
pub fn apply_chmod(chmod: &Chmod, mode: u32, is_dir: bool) -> Result<u32> {
    match chmod {
        Chmod::Octal(m) => Ok(*m & 0o7777),
        Chmod::Symbolic(s) => {
            let mut mode = mode & 0o7777;
            for clause in s.split(',') {
                let op_pos = clause
                    .find(['+', '-', '='])
                    .ok_or_else(|| FileOpError::BadChmod(s.clone()))?;
                let (who, rest) = clause.split_at(op_pos);
                let mut mask = 0u32;
                for w in who.chars() {
                    mask |= match w {
                        'u' => 0o4700,
                        'g' => 0o2070,
                        'o' => 0o1007,
                        'a' => 0o7777,
                        _ => return Err(FileOpError::BadChmod(s.clone())),
                    };
                }
                if who.is_empty() {
                    mask = 0o7777;
                }
                let op = rest.chars().next().unwrap_or('+');
                let mut bits = 0u32;
                for p in rest[1..].chars() {
                    bits |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' => {
                            if is_dir || mode & 0o111 != 0 {
                                0o111
                            } else {
                                0
                            }
                        }
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => return Err(FileOpError::BadChmod(s.clone())),
                    };
                }
                let bits = bits & mask;
                mode = match op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(mask & 0o7777)) | bits,
                };
            }
            Ok(mode)
        }
    }
}
