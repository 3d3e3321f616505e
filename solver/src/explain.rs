//! Explaining cache misses: each step remembers what its last cache key was
//! made of, so a miss can say which input changed (a file, an ARG/ENV value,
//! the instruction, the base image or an earlier step).

use crate::index::CacheIndex;
use rbuild_graph::{Digest, Op, VertexMeta};
use serde::{Deserialize, Serialize};

/// What a step's cache key was made of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The cache key.
    pub key: String,
    /// Digest of the op definition.
    pub op: String,
    /// Exec environment as (name, value digest): values are not stored.
    pub env: Vec<(String, String)>,
    /// argv digest, working dir and user of an exec.
    pub process: Vec<String>,
    /// Cache keys of the inputs.
    pub inputs: Vec<String>,
    /// Local files read, as (path, digest of mode and content).
    pub files: Vec<(String, String)>,
    /// Whether the step ran to success (a record is written before it runs).
    /// Records from before this field existed count as finished.
    #[serde(default = "finished_default")]
    pub finished: bool,
}

fn finished_default() -> bool {
    true
}

impl StepRecord {
    /// The record of a step about to be looked up.
    pub fn new(key: &Digest, op: &Op, inputs: &[Digest], files: &[(String, Digest)]) -> Self {
        let op_json = serde_json::to_vec(op).unwrap_or_default();
        let (env, process) = match op {
            Op::Exec(e) => (
                e.meta
                    .env
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Digest::sha256_of(v.as_bytes()).short().to_string(),
                        )
                    })
                    .collect(),
                vec![
                    Digest::sha256_of(e.meta.args.join("\0").as_bytes()).to_string(),
                    e.meta.cwd.clone(),
                    e.meta.user.clone(),
                ],
            ),
            _ => (Vec::new(), Vec::new()),
        };
        Self {
            key: key.to_string(),
            op: Digest::sha256_of(&op_json).to_string(),
            env,
            process,
            inputs: inputs.iter().map(|d| d.to_string()).collect(),
            files: files
                .iter()
                .map(|(p, d)| (p.clone(), d.to_string()))
                .collect(),
            finished: false,
        }
    }
}

/// A stable identity for "the same step" across builds: the Dockerfile and
/// the step's position label (`[build 3/5]`).
pub fn step_id(meta: &VertexMeta) -> Option<Digest> {
    let label = meta
        .name
        .split_once(']')
        .map(|(l, _)| l)
        .filter(|l| l.starts_with('['))?;
    let file = meta
        .location
        .as_ref()
        .map(|l| l.file.as_str())
        .unwrap_or("");
    Some(Digest::sha256_of(format!("{file}\n{label}").as_bytes()))
}

fn list(names: &[String]) -> String {
    const MAX: usize = 5;
    let mut s = names
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX {
        s.push_str(&format!(" (+{} more)", names.len() - MAX));
    }
    s
}

/// Why `now` missed, given the step's previous record.
pub fn explain(prev: Option<&StepRecord>, now: &StepRecord) -> String {
    let Some(prev) = prev else {
        return "cache miss: no earlier build of this step".into();
    };
    if prev.key == now.key {
        return if prev.finished {
            "cache miss: the earlier result is gone (pruned)".into()
        } else {
            "cache miss: the last run of this step did not finish (it failed or was interrupted)"
                .into()
        };
    }
    let mut why = Vec::new();
    if prev.op != now.op {
        let mut changed: Vec<String> = now
            .env
            .iter()
            .filter(|(k, v)| prev.env.iter().find(|(pk, _)| pk == k).map(|(_, pv)| pv) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        changed.extend(
            prev.env
                .iter()
                .filter(|(k, _)| !now.env.iter().any(|(nk, _)| nk == k))
                .map(|(k, _)| k.clone()),
        );
        if !changed.is_empty() {
            why.push(format!("build arg or env changed: {}", list(&changed)));
        }
        if prev.process.first() != now.process.first() {
            why.push("the command changed".into());
        }
        if prev.process.get(1) != now.process.get(1) {
            why.push("WORKDIR changed".into());
        }
        if prev.process.get(2) != now.process.get(2) {
            why.push("USER changed".into());
        }
        if why.is_empty() {
            why.push(
                "the instruction or a build option it uses changed (such as --add-host)".into(),
            );
        }
    }
    if prev.files != now.files {
        let mut changed: Vec<String> = now
            .files
            .iter()
            .filter(|f| !prev.files.contains(f))
            .map(|(p, _)| p.trim_start_matches('/').to_string())
            .collect();
        changed.extend(
            prev.files
                .iter()
                .filter(|(p, _)| !now.files.iter().any(|(np, _)| np == p))
                .map(|(p, _)| format!("{} (removed)", p.trim_start_matches('/'))),
        );
        if changed.is_empty() {
            why.push("file metadata changed".into());
        } else {
            why.push(format!("files changed: {}", list(&changed)));
        }
    }
    if why.is_empty() && prev.inputs != now.inputs {
        let idx: Vec<usize> = (0..now.inputs.len())
            .filter(|&i| prev.inputs.get(i) != now.inputs.get(i))
            .collect();
        if idx.contains(&0) {
            why.push("an earlier step or the base image changed".into());
        }
        if idx.iter().any(|&i| i > 0) {
            why.push("a source it copies from or mounts changed".into());
        }
    }
    if why.is_empty() {
        why.push("the cache key changed".into());
    }
    format!("cache miss: {}", why.join("; "))
}

impl CacheIndex {
    /// The previous record of a step.
    pub fn step(&self, id: &Digest) -> Option<StepRecord> {
        let bytes = std::fs::read(self.root().join("steps").join(id.hex())).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remember the record of a step.
    pub fn put_step(&self, id: &Digest, rec: &StepRecord) -> std::io::Result<()> {
        let dir = self.root().join("steps");
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        self.write_file(&dir.join(id.hex()), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str) -> StepRecord {
        StepRecord {
            key: key.into(),
            op: "op1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_what_changed() {
        assert!(explain(None, &rec("a")).contains("no earlier build"));
        let mut a = rec("a");
        a.files = vec![
            ("/main.go".into(), "1".into()),
            ("/util.go".into(), "2".into()),
        ];
        let mut b = a.clone();
        b.key = "b".into();
        b.files[0].1 = "9".into();
        assert_eq!(explain(Some(&a), &b), "cache miss: files changed: main.go");
        let mut c = rec("c");
        c.op = "op2".into();
        c.env = vec![("VERSION".into(), "x".into())];
        let mut d = rec("d");
        d.env = vec![("VERSION".into(), "y".into())];
        assert_eq!(
            explain(Some(&d), &c),
            "cache miss: build arg or env changed: VERSION"
        );
        let mut e = rec("e");
        e.inputs = vec!["k1".into()];
        let mut f = rec("f");
        f.inputs = vec!["k2".into()];
        assert!(explain(Some(&e), &f).contains("earlier step or the base image"));
    }

    #[test]
    fn same_key_tells_a_failed_run_from_a_pruned_result() {
        let failed = rec("a");
        assert_eq!(
            explain(Some(&failed), &rec("a")),
            "cache miss: the last run of this step did not finish (it failed or was interrupted)"
        );
        let done = StepRecord {
            finished: true,
            ..rec("a")
        };
        assert_eq!(
            explain(Some(&done), &rec("a")),
            "cache miss: the earlier result is gone (pruned)"
        );
        // A record written before `finished` existed counts as finished.
        let old: StepRecord = serde_json::from_str(
            r#"{"key":"a","op":"op1","env":[],"process":[],"inputs":[],"files":[]}"#,
        )
        .expect("old record");
        assert!(old.finished);
    }
}
