//! Instruction flags (`--name=value`) with BuildKit's validation messages.

use crate::parser::Node;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    String,
    Strings,
}

struct Def {
    name: &'static str,
    kind: Kind,
    used: bool,
    value: Option<String>,
    values: Vec<String>,
}

/// Declared flags of one instruction and their parsed values.
pub(super) struct Flags<'a> {
    node: &'a Node,
    defs: Vec<Def>,
}

/// Handle of a declared flag.
#[derive(Clone, Copy)]
pub(super) struct Id(usize);

impl<'a> Flags<'a> {
    pub fn new(node: &'a Node) -> Self {
        Flags {
            node,
            defs: Vec::new(),
        }
    }

    fn add(&mut self, name: &'static str, kind: Kind) -> Id {
        self.defs.push(Def {
            name,
            kind,
            used: false,
            value: None,
            values: Vec::new(),
        });
        Id(self.defs.len() - 1)
    }

    pub fn bool(&mut self, name: &'static str) -> Id {
        self.add(name, Kind::Bool)
    }
    pub fn string(&mut self, name: &'static str) -> Id {
        self.add(name, Kind::String)
    }
    pub fn strings(&mut self, name: &'static str) -> Id {
        self.add(name, Kind::Strings)
    }

    /// Value of a string flag, if given.
    pub fn value(&self, id: Id) -> Option<String> {
        self.defs.get(id.0).and_then(|d| d.value.clone())
    }
    /// Values of a repeatable flag.
    pub fn values(&self, id: Id) -> Vec<String> {
        self.defs
            .get(id.0)
            .map(|d| d.values.clone())
            .unwrap_or_default()
    }
    /// A bool flag was given and is true.
    pub fn is_true(&self, id: Id) -> bool {
        self.bool_value(id) == Some(true)
    }
    /// A bool flag's value if given.
    pub fn bool_value(&self, id: Id) -> Option<bool> {
        let d = self.defs.get(id.0)?;
        d.used.then(|| d.value.as_deref() == Some("true"))
    }

    /// Parse the node's flags. Errors are `(text to point at, message)`.
    pub fn parse(&mut self) -> Result<(), (String, String)> {
        for raw in &self.node.flags {
            let Some(arg) = raw.strip_prefix("--") else {
                return Err((raw.clone(), format!("arg should start with -- : {raw}")));
            };
            if arg.is_empty() {
                return Ok(());
            }
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let needle = format!("--{name}");
            let Some(def) = self.defs.iter_mut().find(|d| d.name == name) else {
                let names: Vec<&str> = self.defs.iter().map(|d| d.name).collect();
                let msg = crate::error::with_suggestion(
                    format!("unknown flag: --{name}"),
                    name,
                    names,
                    true,
                );
                return Err((needle, msg));
            };
            if def.used && def.kind != Kind::Strings {
                return Err((needle, format!("duplicate flag specified: --{name}")));
            }
            def.used = true;
            match def.kind {
                Kind::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                    Some("") => return Err((needle, format!("missing a value on flag: --{name}"))),
                    None | Some("true") => def.value = Some("true".into()),
                    Some("false") => def.value = Some("false".into()),
                    Some(_) => {
                        return Err((
                            needle,
                            format!(
                                "expecting boolean value for flag --{name}, not: {}",
                                value.unwrap_or_default()
                            ),
                        ))
                    }
                },
                Kind::String | Kind::Strings => {
                    let Some(v) = value else {
                        return Err((needle, format!("missing a value on flag: --{name}")));
                    };
                    if def.kind == Kind::String {
                        def.value = Some(v.to_string());
                    } else {
                        def.values.push(v.to_string());
                    }
                }
            }
        }
        Ok(())
    }
}
