//! Typed instructions: parser [`Node`]s → [`Stage`]s of [`Command`]s.
//!
//! Validates instruction names, flags and argument counts with BuildKit's
//! messages. Values stay unexpanded: variables are expanded at lowering time
//! with the environment of the moment (see [`crate::convert`]).

mod duration;
mod flags;

pub use duration::{format_go_duration, parse_go_duration};

use crate::parser::{Heredoc, Node};
use flags::Flags;

/// All instruction names, upper-case.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A command line in JSON (exec) or shell form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdLine {
    /// The argv (JSON form) or the single command string (shell form).
    pub args: Vec<String>,
    /// Shell form: run through the stage's SHELL.
    pub shell_form: bool,
}

/// `RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCmd {
    /// The command.
    pub cmd: CmdLine,
    /// Raw `--mount` values.
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--security`.
    pub security: Option<String>,
    /// `--device` (accepted, not lowered).
    pub devices: Vec<String>,
    /// Heredocs of the line.
    pub heredocs: Vec<Heredoc>,
}

/// A COPY/ADD source: a path or an inline heredoc document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// A path, URL or git reference (unexpanded).
    Path(String),
    /// `<<NAME` with its body.
    Inline(Heredoc),
}

/// `COPY` / `ADD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyCmd {
    /// `ADD` rather than `COPY`.
    pub is_add: bool,
    /// Sources.
    pub sources: Vec<CopySource>,
    /// Destination (unexpanded).
    pub dest: String,
    /// `--from`.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` (repeatable).
    pub excludes: Vec<String>,
    /// `--checksum` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: Option<bool>,
    /// `--unpack` (ADD).
    pub unpack: Option<bool>,
}

/// `HEALTHCHECK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCmd {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    /// Durations in ns (0 = inherit default) and retries.
    pub interval: i64,
    /// `--timeout`.
    pub timeout: i64,
    /// `--start-period`.
    pub start_period: i64,
    /// `--start-interval`.
    pub start_interval: i64,
    /// `--retries`.
    pub retries: i64,
}

/// One `ARG` declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDecl {
    /// Name.
    pub key: String,
    /// Default value (unexpanded), if any.
    pub value: Option<String>,
}

/// A key/value pair of ENV or LABEL (both unexpanded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Written in the legacy `KEY value` form (no `=`).
    pub no_delim: bool,
}

/// A typed instruction (not FROM, which starts a [`Stage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN`.
    Run(RunCmd),
    /// `CMD`.
    Cmd(CmdLine),
    /// `ENTRYPOINT`.
    Entrypoint(CmdLine),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `ENV`.
    Env(Vec<KeyValue>),
    /// `LABEL`.
    Label(Vec<KeyValue>),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `EXPOSE`.
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `ONBUILD` with the trigger expression.
    Onbuild(String),
    /// `HEALTHCHECK`.
    Healthcheck(HealthCmd),
    /// `COPY` or `ADD`.
    Copy(CopyCmd),
}

/// An instruction with its source node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The typed instruction.
    pub inst: Instruction,
    /// The parse node (original text, lines).
    pub node: Node,
}

/// A build stage: `FROM` and its commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// Base (unexpanded).
    pub base: String,
    /// `--platform` (unexpanded).
    pub platform: Option<String>,
    /// The FROM node.
    pub node: Node,
    /// The commands.
    pub commands: Vec<Command>,
}

/// A parse problem with a line and a text to point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrError {
    /// 1-based line.
    pub line: usize,
    /// Text in the line to place the column at ("" = line start).
    pub needle: String,
    /// Message.
    pub message: String,
}

/// Stages plus the ARGs declared before the first FROM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stages {
    /// Global ARG commands.
    pub meta_args: Vec<Command>,
    /// Stages in order.
    pub stages: Vec<Stage>,
}

fn err(node: &Node, needle: &str, message: impl Into<String>) -> InstrError {
    InstrError {
        line: node.start_line,
        needle: needle.to_string(),
        message: message.into(),
    }
}

/// Turn parse nodes into stages; every error is reported.
pub fn parse_stages(nodes: Vec<Node>) -> Result<Stages, Vec<InstrError>> {
    let mut out = Stages::default();
    let mut errors = Vec::new();
    for n in nodes {
        if n.value.eq_ignore_ascii_case("from") {
            match parse_from(n) {
                Ok(s) => out.stages.push(s),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let inst = match parse_instruction(&n) {
            Ok(i) => i,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match out.stages.last_mut() {
            Some(s) => s.commands.push(Command { inst, node: n }),
            None if matches!(inst, Instruction::Arg(_)) => {
                out.meta_args.push(Command { inst, node: n })
            }
            None => errors.push(err(&n, "", "no build stage in current context")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn parse_from(n: Node) -> Result<Stage, InstrError> {
    let mut f = Flags::new(&n);
    let platform = f.string("platform");
    f.parse().map_err(|(needle, m)| err(&n, &needle, m))?;
    let name = match n.args.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(err(
                    &n,
                    name,
                    format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ),
                ));
            }
            Some(lower)
        }
        _ => return Err(err(&n, "", "FROM requires either one or three arguments")),
    };
    let platform = f.value(platform);
    Ok(Stage {
        name,
        base: n.args[0].clone(),
        platform,
        node: n,
        commands: Vec::new(),
    })
}

fn cmd_line(n: &Node) -> CmdLine {
    if n.json {
        CmdLine {
            args: n.args.clone(),
            shell_form: false,
        }
    } else {
        CmdLine {
            args: if n.args.is_empty() {
                Vec::new()
            } else {
                vec![n.args.join(" ")]
            },
            shell_form: true,
        }
    }
}

fn no_flags(n: &Node) -> Result<(), InstrError> {
    Flags::new(n)
        .parse()
        .map_err(|(needle, m)| err(n, &needle, m))
}

fn exactly_one(n: &Node, name: &str) -> Result<String, InstrError> {
    no_flags(n)?;
    match n.args.as_slice() {
        [a] => Ok(a.clone()),
        _ => Err(err(n, "", format!("{name} requires exactly one argument"))),
    }
}

fn at_least_one(n: &Node, name: &str) -> Result<(), InstrError> {
    if n.args.is_empty() {
        return Err(err(n, "", format!("{name} requires at least one argument")));
    }
    Ok(())
}

fn key_values(n: &Node, name: &str) -> Result<Vec<KeyValue>, InstrError> {
    no_flags(n)?;
    at_least_one(n, name)?;
    let mut out = Vec::new();
    for c in n.args.chunks(3) {
        if let [k, v, sep] = c {
            if k.is_empty() {
                return Err(err(n, "", format!("{name} names can not be blank")));
            }
            out.push(KeyValue {
                key: k.clone(),
                value: v.clone(),
                no_delim: sep.is_empty(),
            });
        }
    }
    Ok(out)
}

/// Parse one non-FROM instruction node.
pub fn parse_instruction(n: &Node) -> Result<Instruction, InstrError> {
    let kw = n.keyword();
    Ok(match kw.as_str() {
        "run" => {
            let mut f = Flags::new(n);
            let (m, net, sec, dev) = (
                f.strings("mount"),
                f.string("network"),
                f.string("security"),
                f.strings("device"),
            );
            f.parse().map_err(|(needle, m)| err(n, &needle, m))?;
            at_least_one(n, "RUN")?;
            Instruction::Run(RunCmd {
                cmd: cmd_line(n),
                mounts: f.values(m),
                network: f.value(net),
                security: f.value(sec),
                devices: f.values(dev),
                heredocs: n.heredocs.clone(),
            })
        }
        "cmd" => {
            no_flags(n)?;
            Instruction::Cmd(cmd_line(n))
        }
        "entrypoint" => {
            no_flags(n)?;
            Instruction::Entrypoint(cmd_line(n))
        }
        "shell" => {
            no_flags(n)?;
            at_least_one(n, "SHELL")?;
            if !n.json {
                return Err(err(
                    n,
                    "",
                    "SHELL requires the arguments to be in JSON form",
                ));
            }
            Instruction::Shell(n.args.clone())
        }
        "env" => Instruction::Env(key_values(n, "ENV")?),
        "label" => Instruction::Label(key_values(n, "LABEL")?),
        "arg" => {
            no_flags(n)?;
            at_least_one(n, "ARG")?;
            let mut out = Vec::new();
            for a in &n.args {
                let d = match a.split_once('=') {
                    Some((k, v)) => ArgDecl {
                        key: k.to_string(),
                        value: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        key: a.clone(),
                        value: None,
                    },
                };
                if d.key.is_empty() {
                    return Err(err(n, "", "ARG names can not be blank"));
                }
                out.push(d);
            }
            Instruction::Arg(out)
        }
        "expose" => {
            no_flags(n)?;
            at_least_one(n, "EXPOSE")?;
            Instruction::Expose(n.args.clone())
        }
        "volume" => {
            no_flags(n)?;
            at_least_one(n, "VOLUME")?;
            if n.args.iter().any(|v| v.trim().is_empty()) {
                return Err(err(n, "", "VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(n.args.clone())
        }
        "user" => Instruction::User(exactly_one(n, "USER")?),
        "workdir" => Instruction::Workdir(exactly_one(n, "WORKDIR")?),
        "stopsignal" => Instruction::StopSignal(exactly_one(n, "STOPSIGNAL")?),
        "maintainer" => Instruction::Maintainer(exactly_one(n, "MAINTAINER")?),
        "onbuild" => {
            no_flags(n)?;
            let Some(sub) = &n.sub else {
                return Err(err(n, "", "ONBUILD requires at least one argument"));
            };
            match sub.keyword().as_str() {
                "onbuild" => {
                    return Err(err(
                        n,
                        "",
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "maintainer" | "from" => {
                    return Err(err(
                        n,
                        "",
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            sub.value.to_uppercase()
                        ),
                    ))
                }
                _ => {}
            }
            let orig = n.original.trim_start();
            let expr = orig
                .get(n.value.len()..)
                .unwrap_or("")
                .trim_start_matches(crate::shell::is_space);
            // As in BuildKit, the trigger keeps its heredoc bodies (each
            // body, then its terminator, on the lines after the command).
            let mut expr = expr.to_string();
            for h in &sub.heredocs {
                expr.push('\n');
                expr.push_str(&h.content);
                expr.push_str(&h.name);
            }
            Instruction::Onbuild(expr)
        }
        "healthcheck" => parse_health(n)?,
        "copy" | "add" => parse_copy(n, kw == "add")?,
        _ => {
            let msg = crate::error::with_suggestion(
                format!("unknown instruction: {}", n.value),
                &n.value,
                INSTRUCTIONS.iter().copied(),
                false,
            );
            return Err(err(n, &n.value, msg));
        }
    })
}

fn parse_health(n: &Node) -> Result<Instruction, InstrError> {
    let mut f = Flags::new(n);
    let fl = [
        f.string("interval"),
        f.string("timeout"),
        f.string("start-period"),
        f.string("start-interval"),
        f.string("retries"),
    ];
    f.parse().map_err(|(needle, m)| err(n, &needle, m))?;
    let Some(typ) = n.args.first() else {
        return Err(err(n, "", "HEALTHCHECK requires at least one argument"));
    };
    let typ = typ.to_uppercase();
    let rest = &n.args[1..];
    let mut h = HealthCmd {
        test: Vec::new(),
        interval: 0,
        timeout: 0,
        start_period: 0,
        start_interval: 0,
        retries: 0,
    };
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(err(n, "", "HEALTHCHECK NONE takes no arguments"));
        }
        h.test = vec![typ];
        return Ok(Instruction::Healthcheck(h));
    }
    if typ != "CMD" {
        return Err(err(
            n,
            "",
            format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"),
        ));
    }
    if rest.is_empty() {
        return Err(err(n, "", "Missing command after HEALTHCHECK CMD"));
    }
    h.test = if n.json {
        std::iter::once("CMD".to_string())
            .chain(rest.iter().cloned())
            .collect()
    } else {
        vec!["CMD-SHELL".to_string(), rest.join(" ")]
    };
    let names = ["interval", "timeout", "start-period", "start-interval"];
    let mut durs = [0i64; 4];
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = f.value(fl[i]).filter(|v| !v.is_empty()) {
            let d = parse_go_duration(&v)
                .ok_or_else(|| err(n, &v, format!("time: invalid duration {v:?}")))?;
            if d != 0 && d < 1_000_000 {
                return Err(err(
                    n,
                    &v,
                    format!("Interval {name:?} cannot be less than 1ms"),
                ));
            }
            if d < 0 {
                return Err(err(n, &v, format!("Interval {name:?} cannot be negative")));
            }
            durs[i] = d;
        }
    }
    [h.interval, h.timeout, h.start_period, h.start_interval] = durs;
    if let Some(v) = f.value(fl[4]).filter(|v| !v.is_empty()) {
        let r: i64 = v.parse().map_err(|_| {
            err(
                n,
                &v,
                format!("strconv.ParseInt: parsing {v:?}: invalid syntax"),
            )
        })?;
        if r < 0 {
            return Err(err(n, &v, format!("--retries cannot be negative ({r})")));
        }
        h.retries = r;
    }
    Ok(Instruction::Healthcheck(h))
}

fn parse_copy(n: &Node, is_add: bool) -> Result<Instruction, InstrError> {
    let name = if is_add { "ADD" } else { "COPY" };
    let mut f = Flags::new(n);
    let chown = f.string("chown");
    let chmod = f.string("chmod");
    let link = f.bool("link");
    let exclude = f.strings("exclude");
    let (from, parents, checksum, keep_git, unpack) = if is_add {
        (
            None,
            None,
            Some(f.string("checksum")),
            Some(f.bool("keep-git-dir")),
            Some(f.bool("unpack")),
        )
    } else {
        (
            Some(f.string("from")),
            Some(f.bool("parents")),
            None,
            None,
            None,
        )
    };
    f.parse().map_err(|(needle, m)| err(n, &needle, m))?;
    if n.args.len() < 2 {
        return Err(err(
            n,
            "",
            format!(
                "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
        ));
    }
    let (srcs, dest) = n.args.split_at(n.args.len() - 1);
    let mut sources = Vec::new();
    for s in srcs {
        let doc = if n.json {
            None
        } else {
            crate::parser::parse_heredoc(s)
                .ok()
                .flatten()
                .and_then(|h| n.heredocs.iter().find(|d| d.name == h.name).cloned())
        };
        sources.push(match doc {
            Some(d) => CopySource::Inline(d),
            None => CopySource::Path(s.clone()),
        });
    }
    Ok(Instruction::Copy(CopyCmd {
        is_add,
        sources,
        dest: dest[0].clone(),
        from: from.and_then(|i| f.value(i)),
        chown: f.value(chown),
        chmod: f.value(chmod),
        link: f.is_true(link),
        parents: parents.is_some_and(|i| f.is_true(i)),
        excludes: f.values(exclude),
        checksum: checksum.and_then(|i| f.value(i)),
        keep_git_dir: keep_git.and_then(|i| f.bool_value(i)),
        unpack: unpack.and_then(|i| f.bool_value(i)),
    }))
}

#[cfg(test)]
mod tests;
