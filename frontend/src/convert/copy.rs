//! `COPY` / `ADD`: file-op copy actions, `--link` merges, inline documents,
//! remote (HTTP, git) sources for ADD.

use super::dispatch::{commit, expand, resolve_from, FromRef};
use super::run::display_text;
use super::{input_index, util, Ctx, InputRef, StageState};
use crate::error::FrontendError;
use crate::instructions::{CopyCmd, CopySource};
use crate::parser::{chomp_heredoc_content, Node};
use crate::shell::Lexer;
use rbuild_graph::{
    CopyAction, FileAction, FileOp, HttpSource, InputIndex, MergeOp, MkfileAction, Op, SourceOp,
    VertexMeta,
};

fn err(ctx: &Ctx<'_>, line: usize, needle: &str, m: impl Into<String>) -> FrontendError {
    FrontendError::single(ctx.diag(line, needle, m))
}

fn is_http(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

pub(crate) use crate::git_url::is_git;

/// `CopyIgnoredFile`: a main-context source that `.dockerignore` excludes
/// (BuildKit checks the cleaned source path, itself or a parent).
fn ignored_source(ctx: &Ctx<'_>, is_add: bool, src: &str, lines: (usize, usize)) {
    let Some(ignored) = &ctx.opts.ignored else {
        return;
    };
    let path = util::clean_path(src);
    if (ignored.0)(&path) {
        let cmd = if is_add { "Add" } else { "Copy" };
        ctx.check(
            crate::lint::rules::COPY_IGNORED_FILE,
            lines,
            format!(
                "Attempting to {cmd} file {} that is excluded by .dockerignore",
                crate::parser::go_quote(&path)
            ),
        );
    }
}

/// Lower a COPY or ADD.
pub(crate) fn dispatch_copy(
    ctx: &mut Ctx<'_>,
    st: &mut StageState,
    c: &CopyCmd,
    node: &Node,
) -> Result<(), FrontendError> {
    let line = node.start_line;
    let name = if c.is_add { "ADD" } else { "COPY" };
    let dest_raw = expand(ctx, st, &c.dest, line)?;
    let mut sources = Vec::new();
    for s in &c.sources {
        sources.push(match s {
            CopySource::Path(p) => CopySource::Path(expand(ctx, st, p, line)?),
            CopySource::Inline(h) => CopySource::Inline(h.clone()),
        });
    }
    let chown = match &c.chown {
        Some(v) => util::parse_chown(&expand(ctx, st, v, line)?),
        None => None,
    };
    let mode = match &c.chmod {
        Some(v) => {
            let v = expand(ctx, st, v, line)?;
            Some(util::parse_chmod(&v).map_err(|e| err(ctx, line, "--chmod", e))?)
        }
        None => None,
    };
    let excludes = c
        .excludes
        .iter()
        .map(|e| expand(ctx, st, e, line))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_unapplied(ctx, c, name, line)?;
    let checksum_text = match &c.checksum {
        Some(v) => Some(expand(ctx, st, v, line)?),
        None => None,
    };
    // A git source's checksum is a commit (checked by git_url); others' a digest.
    let git_checksum = matches!(sources.as_slice(), [CopySource::Path(p)] if is_git(p));
    let checksum = match &checksum_text {
        Some(_) if git_checksum => None,
        Some(v) => Some(v.parse::<rbuild_graph::Digest>().map_err(|e| {
            err(
                ctx,
                line,
                "--checksum",
                format!("invalid checksum digest format: {e}"),
            )
        })?),
        None => None,
    };
    // Destination relative to WORKDIR; a trailing slash or several sources
    // means a directory.
    let mut dest = util::resolve_path(&st.cwd, &dest_raw);
    let dir_dest =
        dest_raw.ends_with('/') || dest_raw == "." || dest_raw.is_empty() || sources.len() > 1;
    if dir_dest && !dest.ends_with('/') {
        dest.push('/');
    }
    // The source of context paths.
    let src_vertex = match &c.from {
        None => None,
        Some(f) => Some(match resolve_from(ctx, st.index, f, line)? {
            FromRef::Stage(j) => match &ctx.states[j] {
                Some(s) => s.root,
                None => return Err(err(ctx, line, f, "internal: stage not lowered")),
            },
            FromRef::Named(n) => {
                let p = st.platform.clone();
                match ctx.named_context(&n, &p, line)? {
                    Some((d, _)) => d,
                    None => return Err(err(ctx, line, f, format!("unknown build context {n}"))),
                }
            }
            FromRef::Image(img) => {
                let p = st.platform.clone();
                let r = ctx.resolve(&img, &p, line)?;
                let meta = VertexMeta {
                    name: format!("[internal] load metadata for {img}"),
                    ..VertexMeta::default()
                };
                ctx.image_vertex(&r, &p, meta)
            }
        }),
    };
    if c.checksum.is_some() {
        if sources.len() != 1 {
            return Err(err(
                ctx,
                line,
                "--checksum",
                "checksum can't be specified for multiple sources",
            ));
        }
        if !matches!(&sources[0], CopySource::Path(p) if is_http(p) || is_git(p)) {
            return Err(err(
                ctx,
                line,
                "--checksum",
                "checksum requires HTTP(S) or Git sources",
            ));
        }
    }
    // BuildKit only links (merge op) when no --chmod is given.
    let link = c.link && c.chmod.is_none();
    let mut inputs: Vec<InputRef> = Vec::new();
    let base = if link {
        None
    } else {
        inputs.push(InputRef::root(st.root));
        Some(InputIndex(0))
    };
    let mut actions = Vec::new();
    let mut msg = String::from(name);
    if c.parents {
        msg.push_str(" --parents");
    }
    if let Some(v) = &c.chown {
        msg.push_str(&format!(" --chown={}", expand(ctx, st, v, line)?));
    }
    if let Some(v) = &c.chmod {
        msg.push_str(&format!(" --chmod={}", expand(ctx, st, v, line)?));
    }
    let lex = {
        // BuildKit expands inline documents with a `\` lexer that leaves
        // quotes alone, whatever the file's escape character.
        let mut l = Lexer::new('\\');
        l.skip_process_quotes = true;
        l
    };
    // Paths first, then inline documents, as BuildKit orders them.
    let ordered = sources
        .iter()
        .filter(|s| matches!(s, CopySource::Path(_)))
        .chain(
            sources
                .iter()
                .filter(|s| matches!(s, CopySource::Inline(_))),
        );
    for s in ordered {
        match s {
            CopySource::Path(p) if !c.is_add && (is_http(p) || is_git(p)) => {
                let what = if is_http(p) { "a URL" } else { "a git ref" };
                return Err(err(
                    ctx,
                    line,
                    p,
                    format!("source can't be {what} for COPY"),
                ));
            }
            CopySource::Path(p) if c.is_add && c.from.is_none() && is_git(p) => {
                msg.push_str(&format!(" {p}"));
                let src = crate::git_url::git_source(p, c.keep_git_dir, checksum_text.as_deref())
                    .map_err(|e| err(ctx, line, p, e))?;
                let g = ctx.graph.add(
                    Op::Source(SourceOp::Git(src)),
                    Vec::new(),
                    VertexMeta {
                        name: format!("[internal] load git source {p}"),
                        // Errors of the fetch point at the ADD line.
                        location: ctx.location(line, node.end_line),
                        ..VertexMeta::default()
                    },
                );
                let idx = input_index(&mut inputs, g);
                actions.push(plain_copy(
                    idx,
                    "/".into(),
                    &dest,
                    &chown,
                    &mode,
                    &excludes,
                    false,
                ));
            }
            CopySource::Path(p) if c.is_add && c.from.is_none() && is_http(p) => {
                msg.push_str(&format!(" {p}"));
                let url_path = p.split(['?', '#']).next().unwrap_or(p);
                let mut filename = url_path.rsplit('/').next().unwrap_or("").to_string();
                if filename.is_empty() {
                    filename = "__unnamed__".into();
                }
                let h = ctx.graph.add(
                    Op::Source(SourceOp::Http(HttpSource {
                        url: p.clone(),
                        checksum: checksum.clone(),
                        filename: Some(filename.clone()),
                        chmod: None,
                    })),
                    Vec::new(),
                    VertexMeta {
                        name: format!("[internal] load remote file {p}"),
                        ..VertexMeta::default()
                    },
                );
                let idx = input_index(&mut inputs, h);
                let unpack = c.unpack == Some(true);
                actions.push(plain_copy(
                    idx,
                    format!("/{filename}"),
                    &dest,
                    &chown,
                    &mode,
                    &excludes,
                    unpack,
                ));
            }
            CopySource::Path(p) => {
                msg.push_str(&format!(" {p}"));
                let d = match &src_vertex {
                    Some(d) => *d,
                    None => {
                        ignored_source(ctx, c.is_add, p, (line, node.end_line));
                        ctx.context_vertex()
                    }
                };
                let idx = input_index(&mut inputs, d);
                let unpack = c.is_add && c.unpack.unwrap_or(true);
                // --parents: an optional `/./` pivot splits the source into
                // the copied root and an include pattern below it.
                let (src, include) = if c.parents {
                    let (root, pattern) = p.split_once("/./").unwrap_or(("/", p.as_str()));
                    let pat = util::resolve_path("/", pattern);
                    (
                        root.to_string(),
                        vec![pat.trim_start_matches('/').to_string()],
                    )
                } else {
                    (p.clone(), Vec::new())
                };
                let mut a = copy_action(
                    idx,
                    util::resolve_path("/", &src),
                    &dest,
                    &chown,
                    &mode,
                    true,
                    unpack,
                    &excludes,
                    c.parents,
                );
                if let FileAction::Copy(ca) = &mut a {
                    ca.include_patterns = include;
                }
                actions.push(a);
            }
            CopySource::Inline(h) => {
                msg.push_str(&format!(" <<{}", h.name));
                let mut data = if h.chomp {
                    chomp_heredoc_content(&h.content)
                } else {
                    h.content.clone()
                };
                if h.expand {
                    data = lex
                        .process_word(&data, &st.env)
                        .map_err(|e| err(ctx, line, "", e.to_string()))?;
                }
                let f = ctx.graph.add(
                    Op::File(FileOp {
                        base: None,
                        actions: vec![FileAction::Mkfile(MkfileAction {
                            path: format!("/{}", h.name),
                            mode: 0o644,
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
                let src = format!("/{}", h.name);
                actions.push(plain_copy(idx, src, &dest, &chown, &mode, &excludes, false));
            }
        }
    }
    msg.push_str(&format!(" {dest_raw}"));
    let text = display_text(ctx, st, node);
    let meta = ctx.step_meta(st, &text, (line, node.end_line));
    let file = ctx
        .graph
        .add(Op::File(FileOp { base, actions }), inputs, meta.clone());
    st.root = if link {
        ctx.graph.add(
            Op::Merge(MergeOp {}),
            vec![InputRef::root(st.root), InputRef::root(file)],
            VertexMeta {
                name: link_name(&meta.name),
                ..meta
            },
        )
    } else {
        file
    };
    commit(st, format!("{msg} # buildkit"), true);
    Ok(())
}

/// `[s 2/3] COPY a /` → `[s 2/3] LINK COPY a /` (the merge of COPY --link).
fn link_name(name: &str) -> String {
    match name.split_once("] ") {
        Some((head, rest)) => format!("{head}] LINK {rest}"),
        None => format!("LINK {name}"),
    }
}

/// `--exclude` and `--parents` are carried into the graph
/// ([`CopyAction::exclude_patterns`], [`CopyAction::parents`] and
/// [`CopyAction::include_patterns`]) but the solver's copy does not apply
/// them yet: it would ship the excluded files, or copy the whole source
/// tree. Refuse them, naming the flag, rather than build a wrong image.
fn refuse_unapplied(
    ctx: &Ctx<'_>,
    c: &CopyCmd,
    name: &str,
    line: usize,
) -> Result<(), FrontendError> {
    for (set, flag) in [
        (!c.excludes.is_empty(), "--exclude"),
        (c.parents, "--parents"),
    ] {
        if set {
            return Err(err(
                ctx,
                line,
                flag,
                format!("{name} {flag} is not supported yet by rbuild"),
            ));
        }
    }
    Ok(())
}

/// A copy of a single prepared file or tree (remote sources, inline
/// documents): BuildKit sets only the mode and `create_dest_path`.
fn plain_copy(
    source: InputIndex,
    src: String,
    dest: &str,
    owner: &Option<rbuild_graph::Chown>,
    mode: &Option<rbuild_graph::Chmod>,
    excludes: &[String],
    unpack: bool,
) -> FileAction {
    let mut a = copy_action(
        source, src, dest, owner, mode, false, unpack, excludes, false,
    );
    if let FileAction::Copy(ca) = &mut a {
        ca.follow_symlinks = false;
        ca.allow_wildcard = false;
        ca.allow_empty_wildcard = false;
    }
    a
}

#[allow(clippy::too_many_arguments)]
fn copy_action(
    source: InputIndex,
    src: String,
    dest: &str,
    owner: &Option<rbuild_graph::Chown>,
    mode: &Option<rbuild_graph::Chmod>,
    contents: bool,
    unpack: bool,
    excludes: &[String],
    parents: bool,
) -> FileAction {
    FileAction::Copy(CopyAction {
        source,
        src,
        dest: dest.to_string(),
        owner: owner.clone(),
        mode: mode.clone(),
        follow_symlinks: true,
        dir_copy_contents: contents,
        attempt_unpack: unpack,
        create_dest_path: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        parents,
        include_patterns: Vec::new(),
        exclude_patterns: excludes.to_vec(),
    })
}
