//! When each result was made, so an unchanged rebuild gives the same image.
//!
//! BuildKit's exporter dates a history entry by the creation time of its
//! layer's result, kept in the cache record, and the image config by the
//! last entry: a fully cached rebuild therefore produces the same config
//! and manifest digests, and only a step that runs again gets a new time.
//! rbuild does the same: every [`CacheRecord`] carries `created` (seconds
//! since the Unix epoch), a hit hands its record's time to its snapshot,
//! and the exporter reads the times of a snapshot chain with
//! [`Ops::layer_times`].
//!
//! Design choice and its cost: times are kept per build in memory, by
//! snapshot name, as results are found or made; a layer not made by a step
//! of this build (a pulled base layer, an imported cache record) has no
//! time, and its history entry keeps the base image's date or gets the
//! neighbouring step's, as BuildKit fills it. Records written before times
//! were kept get one on their next hit, so from then on rebuilds agree.

use crate::index::CacheRecord;
use crate::ops::Ops;
use crate::Error;
use rbuild_graph::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

/// Creation times of the snapshots this build found or made.
#[derive(Debug, Default)]
pub struct Created {
    times: Mutex<HashMap<String, i64>>,
}

impl Created {
    fn get(&self, snapshot: &str) -> Option<i64> {
        self.times.lock().ok()?.get(snapshot).copied()
    }

    fn set(&self, snapshot: &str, t: i64) {
        if let Ok(mut m) = self.times.lock() {
            m.entry(snapshot.to_string()).or_insert(t);
        }
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Ops {
    /// Note the creation time of a hit on `key`'s record `rec`. A record
    /// without one (written by an older rbuild) is given the time now.
    pub(crate) fn note_hit_created(&self, key: &Digest, rec: &CacheRecord) {
        let Some(s) = &rec.snapshot else { return };
        let t = match rec.created {
            Some(t) => t,
            None => {
                let t = now();
                let mut dated = rec.clone();
                dated.created = Some(t);
                let _ = self.index.put(key, &dated);
                t
            }
        };
        self.state.created.set(s, t);
    }

    /// The creation time to record for a result held in `snapshot`: the
    /// time already known for that snapshot (the same result found under
    /// another key), else now (a result just made).
    pub(crate) fn created_for(&self, snapshot: Option<&str>) -> i64 {
        let known = snapshot.and_then(|s| self.state.created.get(s));
        let t = known.unwrap_or_else(now);
        if let Some(s) = snapshot {
            self.state.created.set(s, t);
        }
        t
    }

    /// The creation time of each layer of `top`, base first, in the order
    /// of [`Ops::layers`]; `None` for a layer no step of this build found
    /// or made (pulled or imported).
    pub fn layer_times(&self, top: Option<&str>) -> Result<Vec<Option<i64>>, Error> {
        if let Some(t) = top.filter(|t| !self.snaps.exists(t)) {
            if let Some(lazy) = self.lazy(t) {
                return Ok(vec![None; lazy.layers.len()]);
            }
        }
        let mut chain = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(s) = cur {
            cur = self.snaps.parent(&s)?;
            chain.push(self.state.created.get(&s));
        }
        chain.reverse();
        Ok(chain)
    }
}
