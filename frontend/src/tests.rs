//! End-to-end lowering tests with a fake resolver.

use super::*;
use rbuild_graph::{
    ContainerConfig, FileAction, ImageConfig, InputIndex, MountKind, Op, Platform, SourceOp,
};
use std::cell::RefCell;

struct Fake {
    calls: RefCell<Vec<String>>,
}

impl ImageResolver for Fake {
    fn resolve(&self, reference: &str, p: &Platform) -> Result<ResolvedImage, String> {
        self.calls.borrow_mut().push(format!("{reference}@{p}"));
        if reference == "missing" {
            return Err("not found".into());
        }
        let mut config = ImageConfig {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            config: ContainerConfig {
                env: Some(vec!["PATH=/bin".into(), "BASE=1".into()]),
                cmd: Some(vec!["sh".into()]),
                ..ContainerConfig::default()
            },
            ..ImageConfig::default()
        };
        if reference == "onbuild" {
            config.config.on_build = Some(vec!["RUN echo trig".into()]);
        }
        config.history.push(rbuild_graph::HistoryEntry {
            created_by: Some("base".into()),
            ..Default::default()
        });
        Ok(ResolvedImage {
            reference: format!(
                "docker.io/library/{reference}:latest@sha256:{}",
                "0".repeat(64)
            ),
            config,
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        target_platform: Platform::parse("linux/amd64").expect("p"),
        build_platform: Platform::parse("linux/amd64").expect("p"),
        ..BuildOptions::default()
    }
}

fn lower_with(src: &str, o: &BuildOptions) -> (LoweredBuild, Vec<String>) {
    let f = Fake {
        calls: RefCell::new(Vec::new()),
    };
    let b = build(src, o, &f).unwrap_or_else(|e| panic!("{e}"));
    b.graph.validate().expect("valid graph");
    let reachable = b.graph.topo_order(&b.root);
    for d in b.graph.vertices.keys() {
        assert!(
            reachable.contains(d),
            "unreachable vertex {:?}",
            b.graph.meta[d].name
        );
    }
    let calls = f.calls.into_inner();
    (b, calls)
}

fn lower(src: &str) -> LoweredBuild {
    lower_with(src, &opts()).0
}

fn history(b: &LoweredBuild) -> Vec<(String, bool)> {
    b.config
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect()
}

fn err(src: &str) -> String {
    let f = Fake {
        calls: RefCell::new(Vec::new()),
    };
    build(src, &opts(), &f).expect_err(src).to_string()
}

fn exec_of(b: &LoweredBuild) -> rbuild_graph::ExecOp {
    match &b.graph.get(&b.root).expect("root").op {
        Op::Exec(e) => e.clone(),
        o => panic!("not exec: {o:?}"),
    }
}

#[test]
fn history_strings() {
    let b = lower(
        "FROM busybox\nARG V=1\nENV A=b C=\"d e\"\nWORKDIR app\nRUN echo hi\nCOPY a b /dst/\nEXPOSE 80 53/udp\nUSER me\nLABEL x=y\nCMD [\"x\"]\nENTRYPOINT run\nVOLUME /v\nSHELL [\"/bin/bash\", \"-c\"]\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s --retries=3 CMD curl x\n",
    );
    let h = history(&b);
    let want: Vec<(&str, bool)> = vec![
        ("base", false),
        ("ARG V=1", true),
        ("ENV A=b C=d e", true),
        ("WORKDIR /app", false),
        ("RUN |1 V=1 /bin/sh -c echo hi # buildkit", false),
        ("COPY a b /dst/ # buildkit", false),
        ("EXPOSE [53/udp 80/tcp]", true),
        ("USER me", true),
        ("LABEL x=y", true),
        ("CMD [\"x\"]", true),
        ("ENTRYPOINT [\"/bin/sh\" \"-c\" \"run\"]", true),
        ("VOLUME [/v]", true),
        ("SHELL [/bin/bash -c]", true),
        ("STOPSIGNAL SIGTERM", true),
        (
            "HEALTHCHECK &{[\"CMD-SHELL\" \"curl x\"] \"5s\" \"0s\" \"0s\" \"0s\" '\\x03'}",
            true,
        ),
    ];
    let got: Vec<(&str, bool)> = h.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    assert_eq!(got, want);
    let c = &b.config.config;
    assert_eq!(c.cmd.as_deref(), Some(&["x".to_string()][..]));
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.user.as_deref(), Some("me"));
    assert_eq!(
        c.env.clone().unwrap_or_default(),
        vec!["PATH=/bin", "BASE=1", "A=b", "C=d e"]
    );
    assert_eq!(b.layer_vertices.len(), b.config.history.len());
    assert!(b.layer_vertices[0].is_none() && b.layer_vertices[3].is_some());
}

#[test]
fn run_exec_and_names() {
    let mut o = opts();
    o.build_args.insert("HTTP_PROXY".into(), "http://p".into());
    o.build_args.insert("A".into(), "fromcli".into());
    let (b, calls) = lower_with(
        "FROM busybox AS base\nARG A=def\nWORKDIR /w\nUSER u\nRUN echo $A\n",
        &o,
    );
    assert_eq!(calls, vec!["busybox@linux/amd64"]);
    let e = exec_of(&b);
    assert_eq!(e.meta.args, vec!["/bin/sh", "-c", "echo $A"]);
    assert_eq!(e.meta.cwd, "/w");
    assert_eq!(e.meta.user, "u");
    assert!(e.meta.env.contains(&("A".into(), "fromcli".into())));
    assert!(!e.meta.env.iter().any(|(k, _)| &**k == "HTTP_PROXY"));
    // testBuiltinArgs: either spelling sets both.
    assert_eq!(
        e.meta.proxy_env,
        vec![
            ("HTTP_PROXY".to_string(), "http://p".to_string()),
            ("http_proxy".to_string(), "http://p".to_string())
        ]
    );
    assert!(matches!(
        e.mounts[0].kind,
        MountKind::Bind { readonly: false }
    ));
    let meta = &b.graph.meta[&b.root];
    assert_eq!(meta.name, "[3/3] RUN echo fromcli");
    assert_eq!(meta.location.as_ref().map(|l| l.line), Some(5));
    assert!(!history(&b).iter().any(|(h, _)| h.contains("PROXY")));
}

#[test]
fn scratch_copy_and_stages() {
    let (b, calls) = lower_with(
        "FROM busybox AS unused\nRUN x\nFROM scratch AS a\nCOPY --chown=1:2 --chmod=644 f /x\nFROM a\nCOPY --from=a /x /y\n",
        &opts(),
    );
    assert!(calls.is_empty(), "resolver called: {calls:?}");
    let h = history(&b);
    let want = vec![
        (
            "COPY --chown=1:2 --chmod=644 f /x # buildkit".to_string(),
            false,
        ),
        ("COPY /x /y # buildkit".to_string(), false),
    ];
    assert_eq!(h, want);
    let Op::File(f) = &b.graph.get(&b.root).expect("root").op else {
        panic!()
    };
    let FileAction::Copy(c) = &f.actions[0] else {
        panic!()
    };
    assert_eq!((c.src.as_str(), c.dest.as_str()), ("/x", "/y"));
    assert!(c.dir_copy_contents && c.allow_wildcard && c.follow_symlinks && c.create_dest_path);
    assert!(!b
        .graph
        .vertices
        .values()
        .any(|v| matches!(&v.op, Op::Exec(_))));
    assert!(b
        .graph
        .vertices
        .values()
        .any(|v| matches!(&v.op, Op::Source(SourceOp::Scratch))));
    assert_eq!(b.config.config.working_dir.as_deref(), Some("/"));
}

#[test]
fn global_args_and_target() {
    let mut o = opts();
    o.target = Some("B".into());
    let (b, calls) = lower_with(
        "ARG IMG=busybox\nARG TAG\nFROM ${IMG}${TAG:+:$TAG} AS b\nARG IMG\nARG TARGETARCH\nRUN echo\nFROM missing\n",
        &o,
    );
    assert_eq!(calls, vec!["busybox@linux/amd64"]);
    let e = exec_of(&b);
    assert!(e.meta.env.contains(&("IMG".into(), "busybox".into())));
    assert!(e.meta.env.contains(&("TARGETARCH".into(), "amd64".into())));
}

#[test]
fn multi_stage_names_and_inheritance() {
    let b = lower("FROM busybox AS a\nARG X=1\nWORKDIR /w\nFROM a\nRUN echo \"$X\"\nFROM onbuild\nCOPY --from=1 / /\n");
    let names: Vec<&str> = b.graph.meta.values().map(|m| m.name.as_str()).collect();
    for want in [
        "[a 1/2] FROM docker.io/library/busybox:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "[a 2/2] WORKDIR /w",
        "[stage-1 1/1] RUN echo \"1\"",
        "[stage-2 2/3] ONBUILD RUN echo trig",
        "[stage-2 3/3] COPY --from=1 / /",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let e = err("FROM busybox AS a\nFROM a\nCOPY --from=1 / /\n");
    assert!(
        e.contains("circular dependency detected on stage: stage-1"),
        "{e}"
    );
    let e = err("FROM scratch AS missinh\nFROM missing\n");
    assert!(
        e.starts_with("Dockerfile:2:6: missing: not found (did you mean missinh?)"),
        "{e}"
    );
}

#[test]
fn onbuild_entrypoint_resets_cmd() {
    let b = lower("FROM onbuild\nENTRYPOINT [\"e\"]\n");
    assert_eq!(b.config.config.cmd, None);
    assert_eq!(b.config.config.on_build, None);
    assert!(history(&b)
        .iter()
        .any(|(h, _)| h == "RUN /bin/sh -c echo trig # buildkit"));
    let b = lower("FROM busybox\nCMD [\"c\"]\nENTRYPOINT [\"e\"]\n");
    assert_eq!(b.config.config.cmd, Some(vec!["c".to_string()]));
}

#[test]
fn run_mounts() {
    let b = lower(
        "FROM busybox AS s\nFROM busybox\nRUN --mount=type=cache,target=/c,sharing=locked --mount=from=s,source=/x,target=t --mount=type=secret,id=tok --mount=type=tmpfs,target=/tmp,size=1k --mount=type=ssh x\n",
    );
    let e = exec_of(&b);
    let kinds: Vec<String> = e
        .mounts
        .iter()
        .map(|m| format!("{} {:?}", m.target, m.kind))
        .collect();
    assert_eq!(e.mounts.len(), 6, "{kinds:?}");
    assert_eq!(e.mounts[2].target, "/t");
    assert_eq!(e.mounts[2].selector, "/x");
    assert!(matches!(&e.mounts[3].kind, MountKind::Secret { id, mode: 0o400, .. } if id == "tok"));
    assert_eq!(e.mounts[3].target, "/run/secrets/tok");
    assert!(matches!(
        e.mounts[4].kind,
        MountKind::Tmpfs { size: Some(1024) }
    ));
}

#[test]
fn copy_link_and_heredoc() {
    let b = lower("FROM busybox\nCOPY --link a /a\n");
    assert!(matches!(
        b.graph.get(&b.root).expect("root").op,
        Op::Merge(_)
    ));
    let b = lower("FROM busybox\nENV N=v\nCOPY <<EOF /f\nhi $N\nEOF\n");
    assert!(b.graph.vertices.values().any(|v| matches!(&v.op,
        Op::File(f) if matches!(&f.actions[0], FileAction::Mkfile(m) if m.data == "hi v\n"))));
    assert_eq!(
        history(&b).last().map(|h| h.0.clone()),
        Some("COPY <<EOF /f # buildkit".into())
    );
    let b = lower("FROM busybox\nRUN <<EOF\necho a\nEOF\n");
    assert_eq!(exec_of(&b).meta.args, vec!["/bin/sh", "-c", "echo a\n"]);
}

#[test]
fn errors_with_positions() {
    assert_eq!(
        err("FROM busybox\nRUNN echo hi\nCOPY --chwon=1 a b\n"),
        "Dockerfile:2:1: dockerfile parse error on line 2: unknown instruction: RUNN (did you mean RUN?)\n 2 | RUNN echo hi\nDockerfile:3:6: dockerfile parse error on line 3: unknown flag: --chwon (did you mean chown?)\n 3 | COPY --chwon=1 a b"
    );
    assert!(err("FROM busybox\nRUN --mount=type=bogus x\n")
        .contains("unsupported mount type \"bogus\""));
    assert!(err("FROM busybox\nRUN --mount=foo=bar,target=/x x\n")
        .contains("unexpected key 'foo' in 'foo=bar'"));
    assert!(
        err("FROM busybox\nCOPY --from=3 a b\n").contains("Dockerfile:2:13: invalid stage index 3")
    );
    // testDockerfileCopyFromArgs / testMountFromError.
    assert!(
        err("ARG V=a\nFROM busybox AS a\nFROM busybox\nCOPY --from=$V a b\n").contains(
            "Dockerfile:4:13: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
        )
    );
    assert!(
        err("FROM busybox AS test\nFROM busybox\nENV ttt=test\nRUN --mount=from=$ttt,type=cache,target=/tmp ls\n")
            .contains("Dockerfile:4:18: 'from' doesn't support variable expansion, define alias stage instead")
    );
    // testOutOfOrderStage: a stage may only read stages defined before it.
    assert!(
        err("FROM busybox AS target\nCOPY --from=build / /out\nFROM busybox AS build\nFROM target\n")
            .contains("Dockerfile:2:13: cannot copy from stage \"build\", it needs to be defined before current stage \"target\"")
    );
    assert!(
        err("FROM busybox AS a\nRUN --mount=from=b,target=/m x\nFROM busybox AS b\nFROM a\n")
            .contains("cannot mount from stage \"b\" to \"/m\", stage needs to be defined before current command")
    );
    assert!(err("FROM missing\n").contains("Dockerfile:1:6: missing: not found"));
    let f = Fake {
        calls: RefCell::new(Vec::new()),
    };
    let mut o = opts();
    o.target = Some("bulid".into());
    let e = build("FROM scratch AS build\n", &o, &f)
        .expect_err("target")
        .to_string();
    assert_eq!(
        e,
        "Dockerfile: target stage \"bulid\" could not be found (did you mean build?)"
    );
    assert!(err("").contains("file with no instructions"));
    assert!(err("RUN x\n").contains("no build stage in current context"));
    assert_eq!(
        err("ARG A=1\n"),
        "Dockerfile: dockerfile contains no stages to build"
    );
    // Every syntax error of the file is reported, in order.
    let e = err("FROM a\nRUNN x\nCOPY a\nEXPOSE\n");
    assert_eq!(e.matches("Dockerfile:").count(), 3, "{e}");
}

#[test]
fn labels_and_debug_outputs() {
    let mut o = opts();
    o.labels.insert("l".into(), "v".into());
    o.no_cache_filter = vec!["*".into()];
    let (b, _) = lower_with("FROM scratch\nCOPY a /\n", &o);
    assert_eq!(
        b.config
            .config
            .labels
            .as_ref()
            .and_then(|l| l.get("l"))
            .map(String::as_str),
        Some("v")
    );
    assert!(b.graph.meta[&b.root].ignore_cache);
    let j = graph_to_json(&b);
    assert_eq!(j["vertices"].as_array().map(Vec::len), Some(3));
    assert!(graph_to_dot(&b).starts_with("digraph build {"));
    assert_eq!(dump_ast("FROM a\n").expect("dump"), "(from \"a\")");
}

#[test]
fn named_contexts() {
    let mut o = opts();
    o.named_contexts.insert("src".into(), "/opaque".into());
    o.named_contexts
        .insert("alpine".into(), "docker-image://busybox".into());
    o.named_contexts.insert("base".into(), "/other".into());
    let (b, calls) = lower_with(
        "FROM missing AS base\nRUN no\nFROM docker.io/library/alpine:latest\nCOPY --from=src a /\nCOPY --from=base b /\n",
        &o,
    );
    assert_eq!(calls, vec!["busybox@linux/amd64"]);
    let locals: Vec<String> = b
        .graph
        .vertices
        .values()
        .filter_map(|v| match &v.op {
            Op::Source(SourceOp::Local(l)) => Some(l.name.clone()),
            _ => None,
        })
        .collect();
    let mut locals = locals;
    locals.sort();
    assert_eq!(locals, vec!["context:base", "context:src"]);
    assert!(!b
        .graph
        .vertices
        .values()
        .any(|v| matches!(&v.op, Op::Exec(_))));
}

#[test]
fn git_named_contexts_and_add_sources_become_git_vertices() {
    let mut o = opts();
    o.named_contexts
        .insert("src".into(), "git://127.0.0.1/r.git#v1:sub/dir".into());
    o.named_contexts
        .insert("ssh".into(), "git@example.com:x/y.git".into());
    let (b, _) = lower_with(
        "FROM ssh\nCOPY --from=src a /\nADD --keep-git-dir=true https://example.com/z.git#main /z\n",
        &o,
    );
    let mut gits: Vec<(String, rbuild_graph::GitSource)> = b
        .graph
        .vertices
        .iter()
        .filter_map(|(d, v)| match &v.op {
            Op::Source(SourceOp::Git(g)) => Some((b.graph.meta[d].name.clone(), g.clone())),
            _ => None,
        })
        .collect();
    gits.sort_by(|a, b| a.0.cmp(&b.0));
    let git = |remote: &str, r: Option<&str>, sub: Option<&str>, keep| rbuild_graph::GitSource {
        remote: remote.into(),
        reference: r.map(Into::into),
        subdir: sub.map(Into::into),
        keep_git_dir: keep,
        ..rbuild_graph::GitSource::default()
    };
    assert_eq!(
        gits,
        vec![
            (
                "[internal] load git source git://127.0.0.1/r.git#v1:sub/dir".into(),
                git("git://127.0.0.1/r.git", Some("v1"), Some("sub/dir"), false)
            ),
            (
                "[internal] load git source git@example.com:x/y.git".into(),
                git("git@example.com:x/y.git", None, None, false)
            ),
            (
                "[internal] load git source https://example.com/z.git#main".into(),
                git("https://example.com/z.git", Some("main"), None, true)
            ),
        ]
    );
}

#[test]
fn images_used_twice_are_one_vertex_named_by_their_from() {
    // The image is first read by `COPY --from`, then used as a base: one
    // source vertex, labelled by the FROM line, read once by the RUN that
    // mounts both stages.
    let src = "FROM busybox AS a\n\
               COPY --from=alpine /etc/os-release /a\n\
               FROM alpine AS b\n\
               FROM alpine AS c\n\
               FROM a\n\
               RUN --mount=from=b,target=/b --mount=from=c,target=/c true\n";
    let b = lower(src);
    let images: Vec<_> = b
        .graph
        .vertices
        .iter()
        .filter(|(_, v)| {
            matches!(&v.op, Op::Source(SourceOp::Image(i)) if i.reference.contains("alpine"))
        })
        .collect();
    assert_eq!(images.len(), 1);
    let (alpine, _) = images[0];
    let meta = &b.graph.meta[alpine];
    assert_eq!(meta.name, "[b 1/1] FROM docker.io/library/alpine:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(meta.location.as_ref().map(|l| l.line), Some(3));
    let Op::Exec(e) = &b.graph.get(&b.root).expect("root").op else {
        panic!("root is not the RUN");
    };
    let run_inputs = &b.graph.get(&b.root).expect("root").inputs;
    assert_eq!(run_inputs.len(), 2, "{run_inputs:?}");
    assert_eq!(run_inputs[1].vertex, *alpine);
    let mounted: Vec<_> = e.mounts.iter().filter_map(|m| m.input).collect();
    assert_eq!(mounted, vec![InputIndex(0), InputIndex(1), InputIndex(1)]);
}

#[test]
fn lowering_twice_gives_the_same_graph() {
    let src = "FROM busybox AS a\nRUN echo a\nFROM a AS b\nCOPY --from=a / /x\nRUN echo b\n\
               FROM scratch\nCOPY --from=b /x /y\nCOPY <<EOF /z\nhi\nEOF\n";
    let first = lower(src);
    for _ in 0..5 {
        let again = lower(src);
        assert_eq!(again.graph, first.graph);
        assert_eq!(again.root, first.root);
        assert_eq!(again.layer_vertices, first.layer_vertices);
    }
}

#[test]
fn onbuild_trigger_lowers_the_stage_it_reads() {
    // testOnBuildInheritedStageWithFrom: nothing but the trigger needs `src`.
    let b = lower(
        "FROM busybox AS src\nRUN echo -n 12 > /f\nFROM busybox AS base\n\
         ONBUILD COPY --from=src /f /out/foo\nFROM base AS mid\nRUN cp /out/foo /out/bar\n\
         FROM scratch\nCOPY --from=mid /out/bar /\n",
    );
    let names: Vec<&str> = b.graph.meta.values().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"[src 2/2] RUN echo -n 12 > /f"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("[mid") && n.contains("ONBUILD COPY --from=src")),
        "{names:?}"
    );
}

#[test]
fn shebang_heredoc_runs_its_interpreter_after_tab_stripping() {
    // testRunShebangHeredoc, the `<<-` half.
    let b = lower("FROM busybox\nRUN <<-EOF\n\t#!/bin/awk -f\n\tBEGIN { print 1 }\nEOF\n");
    let e = exec_of(&b);
    assert_eq!(e.meta.args, vec!["/bin/sh", "-c", "/dev/pipes/EOF"]);
}

#[test]
fn unnamed_target_stage_is_default() {
    // testTargetStageNameArg: TARGETSTAGE is "default" for an unnamed last stage.
    let b = lower("FROM busybox\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\n");
    assert!(exec_of(&b)
        .meta
        .env
        .contains(&("TARGETSTAGE".into(), "default".into())));
}

#[test]
fn secret_env_is_masked_in_the_step_name() {
    // testSecretAsEnviron: the ENV value never shows, the secret is `****`.
    let b = lower(
        "FROM busybox\nENV SECRET_ENV=foo\nRUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ]\n",
    );
    let name = &b.graph.meta[&b.root].name;
    assert!(name.ends_with("[ \"****\" == \"pw\" ]"), "{name}");
}
