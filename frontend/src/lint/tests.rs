//! One positive and one negative case per rule, the `check` directive and
//! `error=true`, through the public `build` entry point.

use super::*;
use crate::{build, BuildOptions, ErrorKind, ImageResolver, ResolvedImage};
use rbuild_graph::{ImageConfig, Platform};

/// Resolves every image to an empty linux/amd64 image; `arm` images claim
/// linux/arm64.
struct Fake;

impl ImageResolver for Fake {
    fn resolve(&self, reference: &str, _: &Platform) -> Result<ResolvedImage, String> {
        let arch = if reference.starts_with("arm") {
            "arm64"
        } else {
            "amd64"
        };
        Ok(ResolvedImage {
            reference: format!("docker.io/library/{reference}"),
            config: ImageConfig {
                architecture: arch.into(),
                os: "linux".into(),
                ..ImageConfig::default()
            },
        })
    }
}

fn opts() -> BuildOptions {
    BuildOptions {
        target_platform: Platform::parse("linux/amd64").expect("platform"),
        build_platform: Platform::parse("linux/amd64").expect("platform"),
        ..BuildOptions::default()
    }
}

/// The warnings of `src` in BuildKit's short form.
fn checks_with(src: &str, o: &BuildOptions) -> Vec<String> {
    let b = build(src, o, &Fake).unwrap_or_else(|e| panic!("{e}"));
    b.checks.iter().map(ToString::to_string).collect()
}

fn checks(src: &str) -> Vec<String> {
    checks_with(src, &opts())
}

/// Only the warnings of one rule.
fn rule(src: &str, name: &str) -> Vec<String> {
    checks(src)
        .into_iter()
        .filter(|w| w.starts_with(&format!("{name}:")))
        .collect()
}

#[test]
fn clean_file_has_no_warnings() {
    let src = "FROM busybox AS build\nARG V=1\nENV A=$V\nWORKDIR /app\nRUN echo $UNSET\nCOPY --chown=$V a b\nCMD [\"sh\"]\n";
    assert_eq!(checks(src), Vec::<String>::new());
}

#[test]
fn stage_name_casing() {
    assert_eq!(
        rule("FROM busybox AS Build\n", "StageNameCasing"),
        ["StageNameCasing: Stage name 'Build' should be lowercase (line 1)"]
    );
    assert!(rule("FROM busybox AS build\n", "StageNameCasing").is_empty());
}

#[test]
fn from_as_casing() {
    assert_eq!(
        rule("FROM busybox as build\n", "FromAsCasing"),
        ["FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"]
    );
    assert_eq!(
        rule("from busybox AS build\n", "FromAsCasing"),
        ["FromAsCasing: 'AS' and 'from' keywords' casing do not match (line 1)"]
    );
    assert!(rule(
        "FROM busybox AS build\nfrom busybox as b2\n",
        "FromAsCasing"
    )
    .is_empty());
    // A mixed-case FROM is ConsistentInstructionCasing's business.
    assert!(rule("From busybox as build\n", "FromAsCasing").is_empty());
}

#[test]
fn no_empty_continuation() {
    assert_eq!(
        rule(
            "FROM busybox\nRUN echo a \\\n\n  b\n",
            "NoEmptyContinuation"
        ),
        ["NoEmptyContinuation: Empty continuation line (line 4)"]
    );
    assert!(rule("FROM busybox\nRUN echo a \\\n  b\n", "NoEmptyContinuation").is_empty());
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        rule("FROM busybox\nrun true\nRUN true\n", "ConsistentInstructionCasing"),
        ["ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase) (line 2)"]
    );
    assert_eq!(
        rule("from busybox\nrun true\nRun true\n", "ConsistentInstructionCasing"),
        ["ConsistentInstructionCasing: Command 'Run' should match the case of the command majority (lowercase) (line 3)"]
    );
    assert!(rule("from busybox\nrun true\n", "ConsistentInstructionCasing").is_empty());
}

#[test]
fn duplicate_stage_name_is_a_warning_and_the_last_stage_wins() {
    let src = "FROM busybox AS a\nRUN echo 1\nFROM busybox AS a\nRUN echo 2\nFROM a\n";
    assert_eq!(
        rule(src, "DuplicateStageName"),
        ["DuplicateStageName: Duplicate stage name \"a\", stage names should be unique (line 3)"]
    );
    let b = build(src, &opts(), &Fake).expect("builds");
    let runs: Vec<String> = b
        .graph
        .topo_order(&b.root)
        .iter()
        .filter_map(|d| match &b.graph.vertices[d].op {
            rbuild_graph::Op::Exec(e) => e.meta.args.last().cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(runs, ["echo 2"]);
    assert!(rule(
        "FROM busybox AS a\nFROM busybox AS b\n",
        "DuplicateStageName"
    )
    .is_empty());
}

#[test]
fn reserved_stage_name() {
    assert_eq!(
        rule("FROM busybox AS scratch\n", "ReservedStageName"),
        ["ReservedStageName: Stage name should not use the same name as reserved stage \"scratch\" (line 1)"]
    );
    assert_eq!(
        rule("FROM busybox AS context\n", "ReservedStageName").len(),
        1
    );
    assert!(rule("FROM busybox AS scratchy\n", "ReservedStageName").is_empty());
}

#[test]
fn json_args_recommended() {
    assert_eq!(
        rule("FROM busybox\nCMD echo hi\n", "JSONArgsRecommended"),
        ["JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"]
    );
    assert_eq!(
        rule("FROM busybox\nENTRYPOINT echo hi\n", "JSONArgsRecommended").len(),
        1
    );
    assert!(rule(
        "FROM busybox\nCMD [\"echo\", \"hi\"]\n",
        "JSONArgsRecommended"
    )
    .is_empty());
    // An explicit SHELL makes the shell form deliberate.
    assert!(rule(
        "FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nCMD echo hi\n",
        "JSONArgsRecommended"
    )
    .is_empty());
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(
        rule("FROM busybox\nMAINTAINER me\n", "MaintainerDeprecated"),
        ["MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)"]
    );
    assert!(rule(
        "FROM busybox\nLABEL org.opencontainers.image.authors=me\n",
        "MaintainerDeprecated"
    )
    .is_empty());
}

#[test]
fn undefined_arg_in_from() {
    assert_eq!(
        rule("ARG VERSION=1\nFROM busybox:${VERSIN}\n", "UndefinedArgInFrom"),
        ["UndefinedArgInFrom: FROM argument 'VERSIN' is not declared (did you mean VERSION?) (line 2)"]
    );
    assert!(rule(
        "ARG VERSION=1\nFROM busybox:${VERSION}\n",
        "UndefinedArgInFrom"
    )
    .is_empty());
    assert!(rule("ARG TAG\nFROM busybox:latest$TAG\n", "UndefinedArgInFrom").is_empty());
    // Predefined platform args need no declaration.
    assert!(rule(
        "FROM --platform=$BUILDPLATFORM busybox\n",
        "UndefinedArgInFrom"
    )
    .is_empty());
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        rule("FROM busybox\nWORKDIR app\n", "WorkdirRelativePath"),
        ["WorkdirRelativePath: Relative workdir \"app\" can have unexpected results if the base image changes (line 2)"]
    );
    assert!(rule(
        "FROM busybox\nWORKDIR /app\nWORKDIR sub\n",
        "WorkdirRelativePath"
    )
    .is_empty());
    // An absolute WORKDIR in the base stage counts.
    assert!(rule(
        "FROM busybox AS base\nWORKDIR /app\nFROM base\nWORKDIR sub\n",
        "WorkdirRelativePath"
    )
    .is_empty());
}

#[test]
fn undefined_var() {
    assert_eq!(
        rule("FROM busybox\nENV PATH=$PAHT:/app\n", "UndefinedVar"),
        ["UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?) (line 2)"]
    );
    assert_eq!(
        rule("FROM busybox\nCOPY $foo .\n", "UndefinedVar"),
        ["UndefinedVar: Usage of undefined variable '$foo' (line 2)"]
    );
    // Declared ARGs (even without a value), ENV, and shell-form RUN are fine.
    assert!(rule(
        "FROM busybox\nARG foo\nENV B=1\nCOPY $foo$B .\nRUN echo $nothing\n",
        "UndefinedVar"
    )
    .is_empty());
}

#[test]
fn multiple_instructions_disallowed() {
    assert_eq!(
        rule("FROM busybox\nCMD [\"a\"]\nCMD [\"b\"]\n", "MultipleInstructionsDisallowed"),
        ["MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used (line 2)"]
    );
    assert_eq!(
        rule(
            "FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK NONE\nENTRYPOINT [\"a\"]\nENTRYPOINT [\"b\"]\n",
            "MultipleInstructionsDisallowed"
        )
        .len(),
        2
    );
    assert!(rule(
        "FROM busybox AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n",
        "MultipleInstructionsDisallowed"
    )
    .is_empty());
}

#[test]
fn legacy_key_value_format() {
    assert_eq!(
        rule("FROM busybox\nENV A 1\n", "LegacyKeyValueFormat"),
        ["LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 2)"]
    );
    assert_eq!(
        rule("FROM busybox\nlabel a b\n", "LegacyKeyValueFormat"),
        ["LegacyKeyValueFormat: \"label key=value\" should be used instead of legacy \"label key value\" format (line 2)"]
    );
    assert!(rule("FROM busybox\nENV A=1\nLABEL a=b\n", "LegacyKeyValueFormat").is_empty());
}

#[test]
fn invalid_default_arg_in_from() {
    assert_eq!(
        rule("ARG TAG\nFROM busybox:${TAG}\n", "InvalidDefaultArgInFrom"),
        ["InvalidDefaultArgInFrom: Default value for ARG busybox:${TAG} results in empty or invalid base image name (line 2)"]
    );
    assert!(rule(
        "ARG TAG=latest\nFROM busybox:${TAG}\n",
        "InvalidDefaultArgInFrom"
    )
    .is_empty());
    // A build arg does not hide a bad default.
    let mut o = opts();
    o.build_args.insert("TAG".into(), "1".into());
    assert_eq!(
        checks_with("ARG TAG\nFROM busybox:${TAG}\n", &o)
            .iter()
            .filter(|w| w.starts_with("InvalidDefaultArgInFrom"))
            .count(),
        1
    );
}

#[test]
fn from_platform_flag_const_disallowed() {
    assert_eq!(
        rule("FROM --platform=linux/amd64 busybox\n", "FromPlatformFlagConstDisallowed"),
        ["FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value \"linux/amd64\" (line 1)"]
    );
    assert!(rule(
        "FROM --platform=linux/amd64 busybox AS build-amd64\n",
        "FromPlatformFlagConstDisallowed"
    )
    .is_empty());
    assert!(rule(
        "FROM --platform=$BUILDPLATFORM busybox\n",
        "FromPlatformFlagConstDisallowed"
    )
    .is_empty());
}

#[test]
fn redundant_target_platform() {
    assert_eq!(
        rule("FROM --platform=$TARGETPLATFORM busybox\n", "RedundantTargetPlatform"),
        ["RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior (line 1)"]
    );
    assert!(rule(
        "FROM --platform=$BUILDPLATFORM busybox\n",
        "RedundantTargetPlatform"
    )
    .is_empty());
}

#[test]
fn secrets_used_in_arg_or_env() {
    assert_eq!(
        rule("FROM busybox\nARG GITHUB_TOKEN\nENV db_password=x\n", "SecretsUsedInArgOrEnv"),
        [
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\") (line 2)",
            "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"db_password\") (line 3)"
        ]
    );
    assert!(rule(
        "FROM busybox\nARG PUBLIC_KEY\nENV KEYBOARD=us TOKENS_FILE=x MONKEY=1\n",
        "SecretsUsedInArgOrEnv"
    )
    .is_empty());
}

#[test]
fn expose_proto_casing() {
    assert_eq!(
        rule("FROM busybox\nEXPOSE 80/TCP 53/udp\n", "ExposeProtoCasing"),
        ["ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase (line 2)"]
    );
    assert!(rule("FROM busybox\nEXPOSE 80/tcp\n", "ExposeProtoCasing").is_empty());
    assert_eq!(
        rule("FROM busybox\nEXPOSE 80 127.0.0.1:80:80 5000:5000/udp\n", "ExposeInvalidFormat"),
        [
            "ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80' (line 2)",
            "ExposeInvalidFormat: EXPOSE instruction should not define an IP address or host-port mapping, found '5000:5000/udp' (line 2)",
        ]
    );
    assert!(rule("FROM busybox\nEXPOSE 80 53/udp\n", "ExposeInvalidFormat").is_empty());
}

#[test]
fn invalid_base_image_platform() {
    assert_eq!(
        rule("FROM armimage\n", "InvalidBaseImagePlatform"),
        ["InvalidBaseImagePlatform: Base image armimage was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build (line 1)"]
    );
    assert!(rule("FROM busybox\n", "InvalidBaseImagePlatform").is_empty());
}

#[test]
fn invalid_definition_description_is_experimental() {
    let src = "# check=experimental=InvalidDefinitionDescription\n\n# the base\nFROM busybox AS base\n# version: pinned\nARG VERSION=1\n";
    assert_eq!(
        rule(src, "InvalidDefinitionDescription"),
        [
            "InvalidDefinitionDescription: Comment for FROM should follow the format: `# base <description>` (line 4)",
            "InvalidDefinitionDescription: Comment for ARG should follow the format: `# VERSION <description>` (line 6)"
        ]
    );
    // Off by default; a matching comment passes when enabled.
    assert!(rule(
        "# the base\nFROM busybox AS base\n",
        "InvalidDefinitionDescription"
    )
    .is_empty());
    assert!(rule(
        "# check=experimental=all\n\n# base image\nFROM busybox AS base\n",
        "InvalidDefinitionDescription"
    )
    .is_empty());
}

#[test]
fn unreached_stages_are_checked_only_for_static_rules() {
    let src = "FROM busybox AS unused\nWORKDIR rel\nMAINTAINER me\nFROM busybox\n";
    let got = checks(src);
    assert_eq!(
        got,
        ["MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)"]
    );
    let mut o = opts();
    o.all_stages = true;
    assert_eq!(checks_with(src, &o).len(), 2);
}

#[test]
fn check_directive_skips_rules() {
    let src = "# check=skip=JSONArgsRecommended,FromAsCasing\nFROM busybox as b\nCMD echo hi\nMAINTAINER me\n";
    assert_eq!(
        checks(src),
        ["MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 4)"]
    );
    assert!(checks("# check=skip=all\nFROM busybox as b\nCMD echo\n").is_empty());
    // The build arg wins over the directive.
    let mut o = opts();
    o.build_args
        .insert("BUILDKIT_DOCKERFILE_CHECK".into(), "skip=all".into());
    assert!(checks_with("FROM busybox as b\n", &o).is_empty());
}

#[test]
fn check_error_true_fails_the_build_with_the_warnings() {
    let src = "# check=error=true\nFROM busybox as b\nCMD echo hi\n";
    let e = build(src, &opts(), &Fake).expect_err("lint violations fail the build");
    assert_eq!(e.kind, ErrorKind::Check);
    assert_eq!(
        e.to_string(),
        "lint violation found for rules: FromAsCasing, JSONArgsRecommended"
    );
    assert_eq!(e.checks.len(), 2);
    // No warning, no failure; skipped rules do not count.
    assert!(build("# check=error=true\nFROM busybox\n", &opts(), &Fake).is_ok());
    assert!(build(
        "# check=error=true;skip=FromAsCasing,JSONArgsRecommended\nFROM busybox as b\nCMD echo hi\n",
        &opts(),
        &Fake
    )
    .is_ok());
}

#[test]
fn bad_check_directive_is_an_error() {
    let e = build("# check=bogus\nFROM busybox\n", &opts(), &Fake).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "Dockerfile:1:1: failed to parse check options: invalid check option \"bogus\"\n 1 | # check=bogus"
    );
    let e = build("# check=error=maybe\nFROM busybox\n", &opts(), &Fake).expect_err("invalid");
    assert!(e.to_string().contains(
        "failed to parse check option \"error=maybe\": strconv.ParseBool: parsing \"maybe\": invalid syntax"
    ));
}

#[test]
fn config_parsing() {
    let c = CheckConfig::parse(" skip = A, B ; error=1 ").expect("valid");
    assert_eq!(c.skip, ["A", "B"]);
    assert!(c.error);
    assert!(
        CheckConfig::parse("experimental=all")
            .expect("valid")
            .experimental_all
    );
    assert!(CheckConfig::parse("skip").is_err());
}

#[test]
fn secret_names_and_references() {
    assert!(is_secret_key("AWS_SECRET_ACCESS_KEY"));
    assert!(is_secret_key("apikey"));
    assert!(!is_secret_key("SECRET_FILE"));
    assert!(!is_secret_key("KEYS"));
    for ok in [
        "busybox",
        "busybox:1.36",
        "a/b/c:latest",
        "localhost:5000/x",
        "r.io/x@sha256:0123456789abcdef0123456789abcdef",
    ] {
        assert!(valid_reference(ok), "{ok}");
    }
    for bad in ["", "busybox:", "Busybox", ":tag", "a//b", "-a"] {
        assert!(!valid_reference(bad), "{bad}");
    }
}

#[test]
fn copy_ignored_file_is_experimental_and_checks_main_context_sources() {
    // `.dockerignore` excludes `tmp` (and so everything below it).
    let o = BuildOptions {
        ignored: Some(crate::IgnoredPaths(std::sync::Arc::new(|p: &str| {
            p == "tmp" || p.starts_with("tmp/")
        }))),
        ..opts()
    };
    let src = "# check=experimental=CopyIgnoredFile\nFROM busybox AS a\nFROM busybox\n\
               COPY ./tmp/x.txt /x\nADD tmp /t\nCOPY keep /k\n\
               COPY --from=a tmp/y /y\n";
    let warnings: Vec<String> = checks_with(src, &o)
        .into_iter()
        .filter(|w| w.starts_with("CopyIgnoredFile:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "CopyIgnoredFile: Attempting to Copy file \"tmp/x.txt\" that is excluded by .dockerignore (line 4)",
            "CopyIgnoredFile: Attempting to Add file \"tmp\" that is excluded by .dockerignore (line 5)",
        ]
    );
    // Off unless enabled, as in BuildKit.
    let plain = src.replace("# check=experimental=CopyIgnoredFile\n", "");
    assert!(!checks_with(&plain, &o)
        .iter()
        .any(|w| w.starts_with("CopyIgnoredFile:")));
    let all = src.replace("=CopyIgnoredFile", "=all");
    assert_eq!(
        checks_with(&all, &o)
            .iter()
            .filter(|w| w.starts_with("CopyIgnoredFile:"))
            .count(),
        2
    );
}

#[test]
fn check_skip_comment_above_an_instruction_skips_it_there() {
    // testMaintainerDeprecated (inline skip): the comment is not a parser
    // directive (it follows FROM) but BuildKit honours it for CMD.
    assert!(checks("\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n").is_empty());
    // Only for the instruction right below it.
    assert_eq!(
        rule(
            "FROM scratch\n# check=skip=JSONArgsRecommended\nCMD a\nENTRYPOINT b\n",
            "JSONArgsRecommended"
        )
        .len(),
        1
    );
}

#[test]
fn warnings_before_a_parse_error_are_kept() {
    // testWarningsBeforeError.
    let e = build(
        "\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n",
        &opts(),
        &Fake,
    )
    .expect_err("BADCMD");
    assert!(
        e.to_string()
            .contains("dockerfile parse error on line 4: unknown instruction: BADCMD"),
        "{e}"
    );
    let got: Vec<String> = e.checks.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "StageNameCasing: Stage name 'BadStageName' should be lowercase (line 2)",
            "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)",
        ]
    );
}
