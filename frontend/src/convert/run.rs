//! `RUN`: exec vertices, `--mount` lowering, heredoc commands.

use super::dispatch::{commit, proxy_env, resolve_from, FromRef};
use super::{input_index, util, Ctx, InputRef, StageState};
use crate::error::FrontendError;
use crate::instructions::RunCmd;
use crate::parser::{chomp_heredoc_content, parse_heredoc, Node};
use rbuild_graph::{
    CacheSharing, ExecMeta, ExecOp, FileAction, FileOp, InputIndex, MkfileAction, Mount, MountKind,
    NetworkMode, Op, SecurityMode, VertexMeta,
};

/// The `from=` value of a raw `--mount` string, if any.
pub(crate) fn mount_from(raw: &str) -> Option<String> {
    split_fields(raw)
        .into_iter()
        .find_map(|f| f.strip_prefix("from=").map(str::to_string))
}

/// CSV-ish field split: commas outside double quotes; quotes removed.
fn split_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(crate::parser::take_reusing(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|f| !f.trim().is_empty()).collect()
}

/// A parsed `--mount` before inputs are attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MountSpec {
    pub typ: String,
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readonly: Option<bool>,
    pub id: Option<String>,
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: Option<bool>,
    pub size: Option<u64>,
    pub env: Option<String>,
}

fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {k}: {v}")),
    }
}

/// docker's `units.RAMInBytes`: binary suffixes b, k, m, g, t, p.
fn parse_size(v: &str) -> Option<u64> {
    let lower = v.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('p') => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

const MOUNT_TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];
const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "ro",
    "rw",
    "readwrite",
    "size",
    "env",
];

/// Parse one `--mount` value; every value is passed through `expand` (the
/// stage env), except `from`, which may not use variables (as in BuildKit).
pub(crate) fn parse_mount(
    raw: &str,
    cwd: &str,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        typ: "bind".into(),
        ..MountSpec::default()
    };
    for field in split_fields(raw) {
        let Some((k, v)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => m.readonly = Some(true),
                "readwrite" | "rw" => m.readonly = Some(false),
                "required" if matches!(m.typ.as_str(), "secret" | "ssh") => m.required = Some(true),
                "required" => {
                    return Err(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.typ
                    ))
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let k = k.to_ascii_lowercase();
        if k == "from" {
            if v.find('$').is_some_and(|i| i + 1 < v.len()) {
                return Err(
                    "'from' doesn't support variable expansion, define alias stage instead".into(),
                );
            }
            m.from = Some(v.to_string());
            continue;
        }
        let v = expand(v)?;
        let num = |base: u32, what: &str| {
            u32::from_str_radix(&v, base).map_err(|_| format!("invalid value {v} for {what}"))
        };
        match k.as_str() {
            "type" => {
                let t = v.to_ascii_lowercase();
                if !MOUNT_TYPES.contains(&t.as_str()) {
                    return Err(crate::error::with_suggestion(
                        format!("unsupported mount type {v:?}"),
                        &v,
                        MOUNT_TYPES.iter().copied(),
                        true,
                    ));
                }
                m.typ = t;
            }
            "source" | "src" => m.source = Some(v),
            "target" | "dst" | "destination" => m.target = v,
            "readonly" | "ro" => m.readonly = Some(parse_bool(&k, &v)?),
            "readwrite" | "rw" => m.readonly = Some(!parse_bool(&k, &v)?),
            "required" if matches!(m.typ.as_str(), "secret" | "ssh") => {
                m.required = Some(parse_bool(&k, &v)?)
            }
            "size" if m.typ == "tmpfs" => {
                m.size = Some(parse_size(&v).ok_or_else(|| format!("invalid value for size: {v}"))?)
            }
            "required" | "size" => {
                return Err(format!("unexpected key '{k}' for mount type '{}'", m.typ))
            }
            "id" => m.id = Some(v),
            "sharing" => {
                let s = v.to_ascii_lowercase();
                if !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err(crate::error::with_suggestion(
                        format!("unsupported sharing value {v:?}"),
                        &v,
                        ["shared", "private", "locked"],
                        true,
                    ));
                }
                m.sharing = Some(s);
            }
            "mode" => m.mode = Some(num(8, "mode")?),
            "uid" => m.uid = Some(num(10, "uid")?),
            "gid" => m.gid = Some(num(10, "gid")?),
            "env" if m.typ == "secret" => m.env = Some(v),
            _ => {
                return Err(crate::error::with_suggestion(
                    format!("unexpected key '{k}' in '{field}'"),
                    &k,
                    MOUNT_KEYS.iter().copied(),
                    true,
                ))
            }
        }
    }
    validate_mount(&mut m)?;
    if !m.target.is_empty() {
        m.target = util::resolve_path(cwd, &m.target);
    }
    Ok(m)
}

fn validate_mount(m: &mut MountSpec) -> Result<(), String> {
    let typ = m.typ.clone();
    if !matches!(typ.as_str(), "secret" | "ssh" | "cache") {
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set {
                return Err(format!("{what} not allowed for {typ:?} type mounts"));
            }
        }
    }
    if m.sharing.is_some() && typ != "cache" {
        return Err(format!("invalid cache sharing set for {typ} mount"));
    }
    match typ.as_str() {
        "secret" => {
            if m.from.is_some() {
                return Err("secret mount should not have a from".into());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".into());
            }
            if m.id.is_none() {
                m.id = m.source.take();
            }
            if m.id.is_none() && m.target.is_empty() && m.env.is_none() {
                return Err("invalid secret mount. one of source, target required".into());
            }
            if m.id.is_none() {
                m.id = m.target.rsplit('/').next().map(str::to_string);
            }
            if m.target.is_empty() && m.env.is_none() {
                m.target = format!("/run/secrets/{}", m.id.clone().unwrap_or_default());
            }
        }
        "ssh" if m.target.is_empty() => m.target = "/run/buildkit/ssh_agent.0".into(),
        "ssh" => {}
        _ if m.target.is_empty() => return Err("mount target must be specified".into()),
        _ => {}
    }
    Ok(())
}

/// `RUN |N k=v … args # buildkit` as BuildKit writes RUN history: each
/// declared ARG once (its current env value, else its declared value), then
/// the command.
fn run_history(args: &[String], st: &StageState) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("RUN ");
    let mut first = true;
    if !st.build_args.is_empty() {
        out.push('|');
        out.push_str(&st.build_args.len().to_string());
        for a in &st.build_args {
            out.push(' ');
            out.push_str(&a.key);
            out.push('=');
            out.push_str(st.arg_value(a));
        }
        first = false;
    }
    for a in args {
        if !first {
            out.push(' ');
        }
        out.push_str(a);
        first = false;
    }
    out.push_str(" # buildkit");
    out
}

/// Lower a `RUN`.
pub(crate) fn dispatch_run(
    ctx: &mut Ctx<'_>,
    st: &mut StageState,
    r: &RunCmd,
    node: &Node,
) -> Result<(), FrontendError> {
    let line = node.start_line;
    let mut args = r.cmd.args.clone();
    let mut inputs = vec![InputRef::root(st.root)];
    let mut mounts = vec![Mount {
        input: Some(InputIndex(0)),
        selector: "/".into(),
        target: "/".into(),
        kind: MountKind::Bind { readonly: false },
    }];
    if !r.heredocs.is_empty() && r.cmd.shell_form {
        let first = &r.heredocs[0];
        let simple = args.len() == 1 && parse_heredoc(&args[0]).ok().flatten().is_some();
        if simple {
            let data = if first.chomp {
                chomp_heredoc_content(&first.content)
            } else {
                first.content.clone()
            };
            // BuildKit tests the body after `<<-` tab stripping.
            if data.starts_with("#!") {
                let f = ctx.graph.add(
                    Op::File(FileOp {
                        base: None,
                        actions: vec![FileAction::Mkfile(MkfileAction {
                            path: format!("/{}", first.name),
                            mode: 0o755,
                            data,
                            owner: None,
                        })],
                    }),
                    Vec::new(),
                    VertexMeta {
                        name: "[internal] preparing inline document".into(),
                        ..VertexMeta::default()
                    },
                );
                let idx = input_index(&mut inputs, f);
                mounts.push(Mount {
                    input: Some(idx),
                    selector: "/".into(),
                    target: "/dev/pipes/".into(),
                    kind: MountKind::Bind { readonly: true },
                });
                args = vec![format!("/dev/pipes/{}", first.name)];
            } else {
                args = vec![data];
            }
        } else {
            let mut full = args.first().cloned().unwrap_or_default();
            for h in &r.heredocs {
                full.push('\n');
                full.push_str(&h.content);
                full.push_str(&h.name);
            }
            args = vec![full];
        }
    }
    if r.cmd.shell_form {
        args = st.shell.iter().cloned().chain(args).collect();
    }
    for raw in &r.mounts {
        let lex = crate::shell::Lexer::new(ctx.escape);
        let env = &st.env;
        let exp = |w: &str| lex.process_word(w, env).map_err(|e| e.to_string());
        let m = parse_mount(raw, &st.cwd, &exp)
            .map_err(|e| FrontendError::single(ctx.diag(line, "--mount", e)))?;
        let (input, selector) = match m.typ.as_str() {
            // A bind mount, or a cache mount seeded `from` a stage/image.
            t if t == "bind" || (t == "cache" && m.from.is_some()) => {
                let src = util::resolve_path("/", m.source.as_deref().unwrap_or("/"));
                let d = match &m.from {
                    None => ctx.context_vertex(),
                    Some(f) => match resolve_from(ctx, st.index, f, line)? {
                        FromRef::Stage(j) => match &ctx.states[j] {
                            Some(s) => s.root,
                            None => {
                                return Err(FrontendError::single(ctx.diag(
                                    line,
                                    f,
                                    "internal: stage not lowered",
                                )))
                            }
                        },
                        FromRef::Named(n) => {
                            match ctx.named_context(&n, &st.platform.clone(), line)? {
                                Some((d, _)) => d,
                                None => ctx.context_vertex(),
                            }
                        }
                        FromRef::Image(img) => {
                            let p = st.platform.clone();
                            let res = ctx.resolve(&img, &p, line)?;
                            let meta = VertexMeta {
                                name: format!("[internal] load metadata for {img}"),
                                ..VertexMeta::default()
                            };
                            ctx.image_vertex(&res, &p, meta)
                        }
                    },
                };
                (Some(input_index(&mut inputs, d)), src)
            }
            _ => (None, String::new()),
        };
        let kind = match m.typ.as_str() {
            "bind" => MountKind::Bind {
                readonly: m.readonly.unwrap_or(true),
            },
            "cache" => MountKind::Cache {
                id: m.id.clone().unwrap_or_else(|| m.target.clone()),
                sharing: match m.sharing.as_deref() {
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                },
                mode: m.mode.unwrap_or(0o755),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                readonly: m.readonly.unwrap_or(false),
            },
            "tmpfs" => MountKind::Tmpfs { size: m.size },
            "secret" => MountKind::Secret {
                id: m.id.clone().unwrap_or_default(),
                env: m.env.clone(),
                required: m.required.unwrap_or(false),
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            },
            _ => MountKind::Ssh {
                id: m.id.clone().unwrap_or_else(|| "default".into()),
                required: m.required.unwrap_or(false),
                mode: m.mode.unwrap_or(0o600),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            },
        };
        mounts.push(Mount {
            input,
            selector,
            target: m.target,
            kind,
        });
    }
    let network = match r.network.as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(o) => {
            return Err(FrontendError::single(ctx.diag(
                line,
                "--network",
                format!("unsupported network mode {o:?}"),
            )))
        }
    };
    let security = match r.security.as_deref() {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(o) => {
            return Err(FrontendError::single(ctx.diag(
                line,
                "--security",
                format!("unsupported security mode {o:?}"),
            )))
        }
    };
    let history = run_history(&args, st);
    let text = masked_display_text(ctx, st, node, &mounts);
    let meta = ctx.step_meta(st, &text, (line, node.end_line));
    let exec = ExecOp {
        meta: ExecMeta {
            args,
            env: st.env.clone(),
            cwd: st.cwd.clone(),
            user: st.user.clone(),
            extra_hosts: ctx.opts.extra_hosts.clone(),
            proxy_env: proxy_env(ctx),
        },
        mounts,
        network,
        security,
    };
    st.root = ctx.graph.add(Op::Exec(exec), inputs, meta);
    commit(st, history, true);
    Ok(())
}

/// `RUN echo hi` style label: the instruction word upper-cased, rest as written.
///
/// Like BuildKit, the line is expanded with the stage env for display (kept
/// as written if expansion fails) and its first word upper-cased.
pub(crate) fn display_text(ctx: &Ctx<'_>, st: &StageState, node: &Node) -> String {
    shown_text(node.original.trim(), node.is("run"), ctx.escape, &st.env)
}

/// [`display_text`] of a RUN whose secret mounts set env variables: as in
/// BuildKit, those variables show as `****`, never as their ENV value.
fn masked_display_text(ctx: &Ctx<'_>, st: &StageState, node: &Node, mounts: &[Mount]) -> String {
    let secret_envs = mounts.iter().filter_map(|m| match &m.kind {
        MountKind::Secret { env: Some(e), .. } => Some(e.as_str()),
        _ => None,
    });
    let mut env: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)> = Vec::new();
    for name in secret_envs {
        if env.is_empty() {
            env = st.env.as_ref().clone();
        }
        env.push((name.into(), "****".into()));
    }
    if env.is_empty() {
        return display_text(ctx, st, node);
    }
    shown_text(
        node.original.trim(),
        true,
        ctx.escape,
        &std::sync::Arc::new(env),
    )
}

/// `orig` as the step label shows it: expanded with `env` (RUN keeps quotes
/// and unset variables as written), the instruction keyword in capitals.
fn shown_text(orig: &str, run: bool, escape: char, env: &rbuild_graph::Env) -> String {
    // Without `$`, escapes or (outside RUN) quotes, expansion changes
    // nothing: skip the lexer, which would copy the line char by char.
    let plain = !orig.contains(['$', escape]) && (run || !orig.contains(['\'', '"']));
    let mut shown = if plain {
        orig.to_string()
    } else {
        let mut lex = crate::shell::Lexer::new(escape);
        if run {
            // RUN labels keep quotes and unset variables as written.
            lex.raw_quotes = true;
            lex.skip_unset_env = true;
        }
        lex.process_word(orig, env)
            .unwrap_or_else(|_| orig.to_string())
    };
    // The instruction keyword in capitals, the rest as it is.
    let end = shown.find(' ').unwrap_or(shown.len());
    if shown[..end].is_ascii() {
        shown[..end].make_ascii_uppercase();
    } else {
        let upper = shown[..end].to_uppercase();
        shown.replace_range(..end, &upper);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, &str>) {
        let exp = |w: &str| Ok(w.replace("$T", "/t"));
        let got = parse_mount(raw, "/w", &exp).map(|m| {
            format!(
                "{} {} {:?} {:?} {:?} {:?}",
                m.typ, m.target, m.source, m.id, m.readonly, m.required
            )
        });
        assert_eq!(got.as_deref().map_err(String::as_str), expected, "{raw}");
    }

    #[test]
    fn plain_labels_skip_the_lexer_with_the_same_result() {
        let env: rbuild_graph::Env = std::sync::Arc::new(vec![("A".into(), "1".into())]);
        for (line, run) in [
            ("run echo hi  there", true),
            ("RUN make -j4 'all' \"x\"", true),
            ("copy --chown=1:1 src/ /app/", false),
            ("copy a b", false),
            ("workdir /w/é", false),
        ] {
            for escape in ['\\', '`'] {
                let mut lex = crate::shell::Lexer::new(escape);
                lex.raw_quotes = run;
                lex.skip_unset_env = run;
                let slow = lex.process_word(line, &env).expect("lexes");
                let fast = shown_text(line, run, escape, &env);
                let (kw, rest) = slow.split_once(' ').expect("two words");
                assert_eq!(fast, format!("{} {rest}", kw.to_uppercase()), "{line}");
            }
        }
        // Lines the lexer changes still go through it.
        assert_eq!(
            shown_text("copy $A 'b c' d", false, '\\', &env),
            "COPY 1 b c d"
        );
        assert_eq!(
            shown_text("run echo $A 'x'", true, '\\', &env),
            "RUN echo 1 'x'"
        );
    }

    #[test]
    fn mounts() {
        check("target=$T", Ok("bind /t None None None None"));
        check(
            "type=cache,target=c,ro",
            Ok("cache /w/c None None Some(true) None"),
        );
        check(
            "type=secret,src=tok",
            Ok("secret /run/secrets/tok None Some(\"tok\") None None"),
        );
        check(
            "type=ssh,required",
            Ok("ssh /run/buildkit/ssh_agent.0 None None None Some(true)"),
        );
        check("type=bogus", Err("unsupported mount type \"bogus\""));
        check(
            "type=cahce,target=/c",
            Err("unsupported mount type \"cahce\" (did you mean cache?)"),
        );
        check(
            "targt=/x",
            Err("unexpected key 'targt' in 'targt=/x' (did you mean target?)"),
        );
        check(
            "target=/x,foo",
            Err("invalid field 'foo' must be a key=value pair"),
        );
        check(
            "target=/x,required",
            Err("unexpected key 'required' for mount type 'bind'"),
        );
        check(
            "target=/x,mode=0644",
            Err("mode not allowed for \"bind\" type mounts"),
        );
        check(
            "target=/x,sharing=locked",
            Err("invalid cache sharing set for bind mount"),
        );
        check(
            "type=cache,target=/x,sharing=nope",
            Err("unsupported sharing value \"nope\""),
        );
        check(
            "type=secret",
            Err("invalid secret mount. one of source, target required"),
        );
        check(
            "from=$X,target=/x",
            Err("'from' doesn't support variable expansion, define alias stage instead"),
        );
        check("type=tmpfs", Err("mount target must be specified"));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
    }
}
