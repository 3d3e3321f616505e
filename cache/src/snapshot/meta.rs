//! Crash-safe snapshot metadata shared by both snapshotters.
//!
//! Layout under the snapshotter root:
//! - `snapshots/<id>/meta.json`: `{key, kind, parent, created}`, written
//!   atomically (temp + fsync + rename). A snapshot exists iff this file
//!   exists; a directory without it is the leftover of an interrupted
//!   prepare or remove and is deleted on open.
//! - `lock`: `flock`ed shared for reads, exclusive for changes, so several
//!   processes can share a root.
//! - `generation`: bumped on every change; a process rescans when it moved.

use crate::fsutil::{self, write_atomic};
use crate::snapshot::{Info, Kind};
use crate::{Error, IoContext, Result};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What is persisted per snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    pub key: String,
    pub kind: Kind,
    /// Numeric id of the parent snapshot.
    pub parent: Option<u64>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

#[derive(Default)]
pub(crate) struct State {
    generation: Option<u64>,
    pub by_key: BTreeMap<String, u64>,
    pub by_id: BTreeMap<u64, Meta>,
}

impl State {
    /// Id of the snapshot with this key.
    pub fn id(&self, key: &str) -> Result<u64> {
        self.by_key
            .get(key)
            .copied()
            .ok_or_else(|| Error::SnapshotNotFound(key.to_string()))
    }

    /// Metadata of the snapshot with this key.
    pub fn get(&self, key: &str) -> Result<(u64, &Meta)> {
        let id = self.id(key)?;
        let meta = self
            .by_id
            .get(&id)
            .ok_or_else(|| Error::SnapshotNotFound(key.to_string()))?;
        Ok((id, meta))
    }

    /// Ids from `id` up through its ancestors (self first).
    pub fn chain(&self, id: u64) -> Vec<u64> {
        let mut out = vec![id];
        let mut cur = self.by_id.get(&id).and_then(|m| m.parent);
        while let Some(p) = cur {
            if out.contains(&p) {
                break;
            }
            out.push(p);
            cur = self.by_id.get(&p).and_then(|m| m.parent);
        }
        out
    }

    /// Public info of a snapshot.
    pub fn info(&self, id: u64, meta: &Meta) -> Info {
        Info {
            key: meta.key.clone(),
            id,
            kind: meta.kind,
            parent: meta
                .parent
                .and_then(|p| self.by_id.get(&p))
                .map(|m| m.key.clone()),
            created: meta.created,
        }
    }

    /// Whether any snapshot has `id` as parent.
    pub fn has_children(&self, id: u64) -> bool {
        self.by_id.values().any(|m| m.parent == Some(id))
    }
}

/// The metadata store.
pub(crate) struct MetaStore {
    root: PathBuf,
    state: Mutex<State>,
}

/// A locked view of the metadata, valid while held.
pub(crate) struct Locked<'a> {
    store: &'a MetaStore,
    pub state: MutexGuard<'a, State>,
    _lock: fs::File,
    exclusive: bool,
}

impl MetaStore {
    pub fn open(root: &Path) -> Result<Self> {
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).at(&snaps)?;
        let store = Self {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
        };
        // Remove leftovers of interrupted prepares/removes.
        let locked = store.lock(true)?;
        for e in fs::read_dir(&snaps).at(&snaps)? {
            let e = e.at(&snaps)?;
            if !e.path().join("meta.json").exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        drop(locked);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the snapshot with this id.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Lock (shared or exclusive) and refresh from disk if another process
    /// changed something.
    pub fn lock(&self, exclusive: bool) -> Result<Locked<'_>> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lock_path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).at(&lock_path)?;
        let generation = self.read_generation()?;
        if state.generation != Some(generation) {
            *state = self.scan()?;
            state.generation = Some(generation);
        }
        Ok(Locked {
            store: self,
            state,
            _lock: file,
            exclusive,
        })
    }

    fn read_generation(&self) -> Result<u64> {
        let p = self.root.join("generation");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).at(&p),
        }
    }

    fn scan(&self) -> Result<State> {
        let snaps = self.root.join("snapshots");
        let mut state = State::default();
        for e in fs::read_dir(&snaps).at(&snaps)? {
            let e = e.at(&snaps)?;
            let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            let p = e.path().join("meta.json");
            let bytes = match fs::read(&p) {
                Ok(b) => b,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).at(&p),
            };
            let meta: Meta =
                serde_json::from_slice(&bytes).map_err(|err| Error::CorruptMetadata {
                    path: p.clone(),
                    reason: err.to_string(),
                })?;
            state.by_key.insert(meta.key.clone(), id);
            state.by_id.insert(id, meta);
        }
        Ok(state)
    }
}

impl Locked<'_> {
    fn bump(&mut self) -> Result<()> {
        debug_assert!(self.exclusive);
        let next = self.store.read_generation()? + 1;
        write_atomic(
            &self.store.root.join("generation"),
            next.to_string().as_bytes(),
        )?;
        self.state.generation = Some(next);
        Ok(())
    }

    /// Allocate an id and create its directory (without metadata yet).
    pub fn create_dir(&mut self) -> Result<(u64, PathBuf)> {
        let mut id = self.state.by_id.keys().next_back().copied().unwrap_or(0) + 1;
        loop {
            let dir = self.store.dir(id);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok((id, dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => id += 1,
                Err(e) => return Err(e).at(&dir),
            }
        }
    }

    /// Persist `meta` for `id` (creating or replacing it).
    pub fn put(&mut self, id: u64, meta: Meta) -> Result<()> {
        let bytes = serde_json::to_vec(&meta).map_err(|e| Error::CorruptMetadata {
            path: self.store.dir(id),
            reason: e.to_string(),
        })?;
        write_atomic(&self.store.dir(id).join("meta.json"), &bytes)?;
        if let Some(old) = self.state.by_id.insert(id, meta.clone()) {
            self.state.by_key.remove(&old.key);
        }
        self.state.by_key.insert(meta.key, id);
        self.bump()
    }

    /// Delete the snapshot `id`: metadata first (so a crash leaves only an
    /// orphan directory, cleaned on open), then its files.
    pub fn delete(&mut self, id: u64) -> Result<()> {
        let dir = self.store.dir(id);
        let meta = dir.join("meta.json");
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&meta),
        }
        fsutil::fsync_dir(&dir);
        if let Some(old) = self.state.by_id.remove(&id) {
            self.state.by_key.remove(&old.key);
        }
        self.bump()?;
        fsutil::remove_any(&dir)
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
