use super::*;

fn small_graph() -> (BuildGraph, Digest) {
    let mut g = BuildGraph::new();
    let base = g.add(
        Op::Source(SourceOp::Image(ImageSource {
            reference: "127.0.0.1:5000/library/busybox:latest".into(),
            platform: Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            },
        })),
        vec![],
        VertexMeta {
            name: "[1/2] FROM busybox".into(),
            ..Default::default()
        },
    );
    let run = g.add(
        Op::Exec(ExecOp {
            meta: ExecMeta {
                args: vec!["/bin/sh".into(), "-c".into(), "echo hi > /hi".into()],
                env: vec![("PATH".into(), "/bin".into())].into(),
                cwd: "/".into(),
                user: String::new(),
                extra_hosts: vec![],
                proxy_env: vec![],
            },
            mounts: vec![Mount {
                input: Some(InputIndex(0)),
                selector: "/".into(),
                target: "/".into(),
                kind: MountKind::Bind { readonly: false },
            }],
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
        }),
        vec![Input {
            vertex: base,
            output: 0,
        }],
        VertexMeta {
            name: "[2/2] RUN echo hi > /hi".into(),
            ..Default::default()
        },
    );
    (g, run)
}

/// Changing the canonical encoding must be deliberate: update this digest
/// only together with a note in ARCHITECTURE.md (it invalidates caches).
#[test]
fn golden_digest_of_small_graph() {
    let (g, run) = small_graph();
    assert_eq!(
        run.to_string(),
        "sha256:0fe63b10f023e40193d86af8177f3a60657981c65b9edd82f8a43bcb74d50936",
        "canonical encoding: {}",
        String::from_utf8_lossy(&g.vertices[&run].canonical_bytes())
    );
}

#[test]
fn metadata_and_proxy_env_do_not_change_digest() {
    let (g, run) = small_graph();
    let mut v = g.vertices[&run].clone();
    if let Op::Exec(e) = &mut v.op {
        e.meta.proxy_env = vec![("HTTP_PROXY".into(), "http://proxy:3128".into())];
    }
    assert_eq!(v.digest(), run);
    let mut g2 = BuildGraph::new();
    let d = g2.add(v.op.clone(), v.inputs.clone(), VertexMeta::default());
    assert_eq!(d, run);
}

#[test]
fn canonical_bytes_have_sorted_keys() {
    let (g, run) = small_graph();
    let s = String::from_utf8(g.vertices[&run].canonical_bytes()).expect("utf8");
    assert!(
        s.starts_with(r#"{"inputs":[{"output":0,"vertex":"sha256:"#),
        "{s}"
    );
    assert!(!s.contains("proxy_env"));
}

#[test]
fn topo_order_puts_inputs_first() {
    let (g, run) = small_graph();
    let order = g.topo_order(&run);
    assert_eq!(order.len(), 2);
    assert_eq!(order[1], run);
    g.validate().expect("valid");
}

#[test]
fn digest_parse_round_trip_and_errors() {
    let d = Digest::sha256_of(b"");
    assert_eq!(
        d.to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(d.to_string().parse::<Digest>().expect("parse"), d);
    assert!("sha256:abc".parse::<Digest>().is_err());
    assert!(
        "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse::<Digest>()
            .is_err()
    );
    assert!(
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
            .parse::<Digest>()
            .is_err()
    );
    // Not hex, though 64 characters long.
    assert!(format!("sha256:{}", "g".repeat(64))
        .parse::<Digest>()
        .is_err());
    assert_eq!(
        d.hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(d.short(), "e3b0c44298fc");
    assert_eq!(serde_json::to_string(&d).expect("json"), format!("\"{d}\""));
    assert_eq!(
        std::path::Path::new("/b").join(d.hex()),
        std::path::Path::new("/b").join(&*d.hex())
    );
}

proptest::proptest! {
    /// Digests order as their hex strings do (the graph's BTreeMaps and
    /// every sorted listing rely on it), and print and parse back.
    #[test]
    fn digest_order_is_hex_order(a in proptest::array::uniform32(0u8..), b in proptest::array::uniform32(0u8..)) {
        let (da, db) = (Digest::from_sha256(a), Digest::from_sha256(b));
        proptest::prop_assert_eq!(da.cmp(&db), da.hex().cmp(&db.hex()));
        proptest::prop_assert_eq!(da.to_string().parse::<Digest>().ok(), Some(da));
    }
}

#[test]
fn platform_parse_normalizes_as_containerd() {
    let p = |s: &str| Platform::parse(s).map(|p| p.to_string());
    let host = Platform::host().architecture;
    for (given, want) in [
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("arm64", "linux/arm64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("riscv64", "linux/riscv64"),
    ] {
        assert_eq!(p(given).as_deref(), Some(want), "{given}");
    }
    assert_eq!(p("linux"), Some(format!("linux/{host}")));
    for bad in [
        "a/b/c/d",
        "",
        "linux/",
        "/amd64",
        "frobnicate",
        "linux/amd64,linux/arm64",
    ] {
        assert_eq!(p(bad), None, "{bad}");
    }
}

proptest::proptest! {
    /// The graph (and every digest) does not depend on insertion order.
    #[test]
    fn digest_independent_of_insertion_order(names in proptest::collection::vec("[a-z]{1,8}", 1..8)) {
        let ops: Vec<Op> = names.iter().map(|n| Op::Source(SourceOp::Local(LocalSource {
            name: n.clone(), include_patterns: vec![], exclude_patterns: vec![],
        }))).collect();
        let mut a = BuildGraph::new();
        for op in &ops { a.add(op.clone(), vec![], VertexMeta::default()); }
        let mut b = BuildGraph::new();
        for op in ops.iter().rev() { b.add(op.clone(), vec![], VertexMeta::default()); }
        proptest::prop_assert_eq!(a.vertices, b.vertices);
    }
}

/// The direct encoding must equal sorted-key JSON for every op variant:
/// IR structs declare their fields alphabetically.
#[test]
fn canonical_encoding_is_sorted_json() {
    let chown = Some(Chown {
        user: UserRef::Name("app".into()),
        group: Some(UserRef::Id(50)),
    });
    let ops = vec![
        Op::Source(SourceOp::Scratch),
        Op::Source(SourceOp::Local(LocalSource {
            name: "context".into(),
            include_patterns: vec!["a".into()],
            exclude_patterns: vec!["b".into()],
        })),
        Op::Source(SourceOp::Git(GitSource {
            remote: "https://example.invalid/r.git".into(),
            reference: Some("main".into()),
            subdir: None,
            keep_git_dir: true,
            ..GitSource::default()
        })),
        Op::Source(SourceOp::Http(HttpSource {
            url: "https://example.invalid/f".into(),
            checksum: Some(Digest::sha256_of(b"x")),
            filename: Some("f".into()),
            chmod: Some(0o644),
        })),
        Op::Exec(ExecOp {
            meta: ExecMeta {
                args: vec!["sh".into()],
                env: vec![("A".into(), "1".into())].into(),
                cwd: "/".into(),
                user: "app".into(),
                extra_hosts: vec![("h".into(), "1.2.3.4".into())],
                proxy_env: vec![("HTTP_PROXY".into(), "p".into())],
            },
            mounts: vec![
                Mount {
                    input: Some(InputIndex(0)),
                    selector: "/".into(),
                    target: "/".into(),
                    kind: MountKind::Bind { readonly: true },
                },
                Mount {
                    input: None,
                    selector: "/".into(),
                    target: "/c".into(),
                    kind: MountKind::Cache {
                        id: "c".into(),
                        sharing: CacheSharing::Locked,
                        mode: 0o755,
                        uid: 1,
                        gid: 2,
                        readonly: false,
                    },
                },
                Mount {
                    input: None,
                    selector: "/".into(),
                    target: "/t".into(),
                    kind: MountKind::Tmpfs { size: Some(1) },
                },
                Mount {
                    input: None,
                    selector: "/".into(),
                    target: "/s".into(),
                    kind: MountKind::Secret {
                        id: "s".into(),
                        env: Some("S".into()),
                        required: true,
                        mode: 0o400,
                        uid: 0,
                        gid: 0,
                    },
                },
                Mount {
                    input: None,
                    selector: "/".into(),
                    target: "/x".into(),
                    kind: MountKind::Ssh {
                        id: "default".into(),
                        required: false,
                        mode: 0o600,
                        uid: 0,
                        gid: 0,
                    },
                },
            ],
            network: NetworkMode::None,
            security: SecurityMode::Insecure,
        }),
        Op::File(FileOp {
            base: Some(InputIndex(0)),
            actions: vec![
                FileAction::Copy(CopyAction {
                    source: InputIndex(1),
                    src: "/a".into(),
                    dest: "/b/".into(),
                    owner: chown.clone(),
                    mode: Some(Chmod::Symbolic("u+x".into())),
                    follow_symlinks: true,
                    dir_copy_contents: true,
                    attempt_unpack: false,
                    create_dest_path: true,
                    allow_wildcard: true,
                    allow_empty_wildcard: false,
                    parents: false,
                    include_patterns: vec!["i".into()],
                    exclude_patterns: vec!["e".into()],
                }),
                FileAction::Mkdir(MkdirAction {
                    path: "/d".into(),
                    mode: 0o755,
                    make_parents: true,
                    owner: chown.clone(),
                }),
                FileAction::Mkfile(MkfileAction {
                    path: "/f".into(),
                    mode: 0o644,
                    data: "x".into(),
                    owner: chown,
                }),
                FileAction::Rm(RmAction {
                    path: "/r".into(),
                    allow_not_found: true,
                    allow_wildcard: false,
                }),
            ],
        }),
        Op::Merge(MergeOp {}),
        Op::Source(SourceOp::Image(ImageSource {
            reference: "r".into(),
            platform: Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into()),
            },
        })),
    ];
    for op in ops {
        let v = Vertex {
            op,
            inputs: vec![Input {
                vertex: Digest::sha256_of(b"i"),
                output: 0,
            }],
        };
        let sorted = serde_json::to_vec(&serde_json::to_value(&v).expect("value")).expect("bytes");
        assert_eq!(
            String::from_utf8_lossy(&v.canonical_bytes()),
            String::from_utf8_lossy(&sorted),
            "declare the fields of this op alphabetically"
        );
    }
}
