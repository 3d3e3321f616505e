//! Name indexes over a stage's variables, so that ENV, ARG and each `$VAR`
//! lookup cost O(1) instead of a scan of every variable set so far (a
//! Dockerfile of n ENV/ARG lines was O(n²) to lower).
//!
//! Three lists are indexed: the exec env ([`StageState::env`], unique
//! names, replaced in place or appended), the image config's `Env` (entries
//! `KEY=value`; the first entry of a name is the one ENV replaces) and the
//! declared ARGs. Each index remembers how many entries it covers and is
//! rebuilt when the list's length differs, so a list assigned wholesale
//! (a stage starting from its base) is never looked up through a stale
//! index.

use super::{DeclaredArg, StageState};
use crate::shell::EnvGetter;
use std::collections::HashMap;
use std::sync::Arc;

/// The indexes of one stage (see the module doc).
#[derive(Clone, Debug, Default)]
pub(crate) struct VarIndex {
    /// Exec env name → position in [`StageState::env`].
    exec: HashMap<Arc<str>, usize>,
    /// Config env name → position of its first entry.
    config: HashMap<String, usize>,
    /// Number of config env entries `config` covers.
    config_len: usize,
    /// Declared ARG name → position in [`StageState::build_args`].
    args: HashMap<String, usize>,
}

#[cfg(test)]
thread_local! {
    /// Entries visited by index rebuilds and unindexed lookups on this
    /// thread (lowering runs on the caller's thread), for the test that
    /// lowering stays linear.
    static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Count `n` entries visited by a scan (tests only).
fn scanned(n: usize) {
    #[cfg(test)]
    SCANNED.with(|c| c.set(c.get() + n));
    let _ = n;
}

/// The name of a config env entry (`KEY=value` or a bare `KEY`).
fn entry_name(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

impl StageState {
    fn exec_index(&mut self) -> &mut HashMap<Arc<str>, usize> {
        if self.vars.exec.len() != self.env.len() {
            scanned(self.env.len());
            self.vars.exec = self
                .env
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
        }
        &mut self.vars.exec
    }

    /// Set `k` in the exec env (replace in place or append); its index.
    pub fn set_env(&mut self, k: &str, v: &str) -> usize {
        match self.exec_index().get(k).copied() {
            Some(i) => {
                Arc::make_mut(&mut self.env)[i].1 = v.into();
                i
            }
            None => {
                let key: Arc<str> = k.into();
                Arc::make_mut(&mut self.env).push((key.clone(), v.into()));
                let i = self.env.len() - 1;
                self.vars.exec.insert(key, i);
                i
            }
        }
    }

    /// Where `k` is in the exec env.
    pub fn env_position(&self, k: &str) -> Option<usize> {
        self.vars().position(k)
    }

    /// The exec env as expansion sees it (an indexed view of `env`).
    pub fn vars(&self) -> StageVars<'_> {
        StageVars {
            env: &self.env,
            index: (self.vars.exec.len() == self.env.len()).then_some(&self.vars.exec),
        }
    }

    /// Set the config env entry of `k` to `entry` (`k=value`): replace the
    /// first entry of that name, or append.
    pub fn set_config_env(&mut self, k: &str, entry: String) {
        let env = self.image.config.env.get_or_insert_with(Vec::new);
        let vars = &mut self.vars;
        if vars.config_len != env.len() {
            scanned(env.len());
            vars.config.clear();
            for (i, e) in env.iter().enumerate() {
                vars.config.entry(entry_name(e).to_string()).or_insert(i);
            }
            vars.config_len = env.len();
        }
        // A name with `=` never matches an entry (its name ends at `=`).
        match vars.config.get(k).filter(|_| !k.contains('=')) {
            Some(&i) => env[i] = entry,
            None => {
                vars.config
                    .entry(entry_name(&entry).to_string())
                    .or_insert(env.len());
                env.push(entry);
                vars.config_len = env.len();
            }
        }
    }

    fn args_index(&mut self) -> &mut HashMap<String, usize> {
        if self.vars.args.len() != self.build_args.len() {
            scanned(self.build_args.len());
            self.vars.args = self
                .build_args
                .iter()
                .enumerate()
                .map(|(i, a)| (a.key.clone(), i))
                .collect();
        }
        &mut self.vars.args
    }

    /// Declare an ARG: replace the declaration of the same name, or append.
    pub fn declare_arg(&mut self, arg: DeclaredArg) {
        match self.args_index().get(&arg.key).copied() {
            Some(i) => self.build_args[i] = arg,
            None => {
                self.vars
                    .args
                    .insert(arg.key.clone(), self.build_args.len());
                self.build_args.push(arg);
            }
        }
    }

    /// Is `name` a declared ARG of this stage?
    pub fn is_declared_arg(&self, name: &str) -> bool {
        if self.vars.args.len() == self.build_args.len() {
            self.vars.args.contains_key(name)
        } else {
            scanned(self.build_args.len());
            self.build_args.iter().any(|a| a.key == name)
        }
    }
}

/// The exec env of a stage with its name index; looks up like the plain
/// list (the last entry of a name wins), in O(1) when the index is current.
pub(crate) struct StageVars<'a> {
    env: &'a [(Arc<str>, Arc<str>)],
    index: Option<&'a HashMap<Arc<str>, usize>>,
}

impl StageVars<'_> {
    fn position(&self, name: &str) -> Option<usize> {
        match self.index {
            Some(ix) => ix.get(name).copied(),
            None => {
                scanned(self.env.len());
                self.env.iter().rposition(|(k, _)| &**k == name)
            }
        }
    }
}

impl EnvGetter for StageVars<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| &*self.env[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> StageState {
        StageState {
            index: 0,
            label: String::new(),
            root: super::super::VertexId::UNSET,
            image: Default::default(),
            env: Default::default(),
            vars: VarIndex::default(),
            build_args: Vec::new(),
            cwd: "/".into(),
            user: String::new(),
            shell: Vec::new(),
            platform: rbuild_graph::Platform::host(),
            cmd_index: 0,
            cmd_total: 0,
            ignore_cache: false,
            layers: Vec::new(),
            base_history: 0,
            cmd_set_flag: false,
            name_prefix: String::new(),
            on_build: false,
            workdir_set: false,
            lines: (0, 0),
            last_cmd: None,
            last_entrypoint: None,
            last_healthcheck: None,
        }
    }

    #[test]
    fn exec_env_replaces_in_place_and_survives_wholesale_assignment() {
        let mut st = stage();
        assert_eq!(st.set_env("A", "1"), 0);
        assert_eq!(st.set_env("B", "2"), 1);
        assert_eq!(st.set_env("A", "3"), 0);
        assert_eq!(st.vars().lookup("A"), Some("3"));
        assert_eq!(st.vars().lookup("C"), None);
        // A stage starting from its base assigns the list wholesale.
        st.env = Arc::new(vec![("C".into(), "4".into())]);
        assert_eq!(st.vars().lookup("C"), Some("4"));
        assert_eq!(st.vars().lookup("A"), None);
        assert_eq!(st.set_env("C", "5"), 0);
        assert_eq!(st.env_position("C"), Some(0));
        assert_eq!(st.vars().lookup("C"), Some("5"));
    }

    #[test]
    fn config_env_replaces_first_entry_of_a_name() {
        let mut st = stage();
        st.image.config.env = Some(vec!["P=1".into(), "Q".into(), "P=2".into()]);
        st.set_config_env("P", "P=3".into());
        st.set_config_env("Q", "Q=4".into());
        st.set_config_env("R", "R=5".into());
        st.set_config_env("R", "R=6".into());
        st.set_config_env("a=b", "a=b=7".into());
        st.set_config_env("a", "a=8".into());
        assert_eq!(
            st.image.config.env.as_deref().unwrap(),
            ["P=3", "Q=4", "P=2", "R=6", "a=8"]
        );
    }

    /// Regression: 80,000 ENV/ARG lines took 46 s to lower, every line
    /// scanning every variable set before it. With 4,000 lines a scan per
    /// line would visit millions of entries; the indexes visit each a few
    /// times (the RUN's history lists every ARG once).
    #[test]
    fn lowering_many_env_and_arg_lines_scans_each_variable_a_bounded_number_of_times() {
        struct Fake;
        impl crate::ImageResolver for Fake {
            fn resolve(
                &self,
                r: &str,
                p: &rbuild_graph::Platform,
            ) -> Result<crate::ResolvedImage, String> {
                Ok(crate::ResolvedImage {
                    reference: r.to_string(),
                    config: rbuild_graph::ImageConfig {
                        architecture: p.architecture.clone(),
                        os: p.os.clone(),
                        ..Default::default()
                    },
                })
            }
        }
        let n = 4_000;
        let mut src = String::from("FROM base AS s0\n");
        for i in 1..n {
            src.push_str(&if i % 2 == 0 {
                format!("ARG A{i}=a${{E{}:+x}}\n", i - 1)
            } else {
                format!("ENV E{i}=\"e${{A{}:+y}} z\"\n", i - 1)
            });
        }
        src.push_str("RUN true\nFROM s0\nENV E1=again\n");
        SCANNED.with(|c| c.set(0));
        let b = crate::build(&src, &crate::BuildOptions::default(), &Fake).unwrap();
        let scanned = SCANNED.with(|c| c.get());
        assert!(scanned <= 4 * n, "{scanned} entries scanned for {n} lines");
        let env = b.config.config.env.unwrap();
        assert_eq!(env.len(), n / 2 + 1, "PATH and every ENV once");
        assert_eq!(env[1], "E1=again");
        assert_eq!(env[2], "E3=ey z");
    }

    #[test]
    fn args_are_declared_once() {
        let mut st = stage();
        let arg = |k: &str, v: &str| DeclaredArg {
            key: k.into(),
            value: Some(v.into()),
            env_index: None,
        };
        st.declare_arg(arg("X", "1"));
        st.declare_arg(arg("Y", "2"));
        st.declare_arg(arg("X", "3"));
        assert_eq!(st.build_args.len(), 2);
        assert_eq!(st.build_args[0].value.as_deref(), Some("3"));
        assert!(st.is_declared_arg("Y") && !st.is_declared_arg("Z"));
    }
}
