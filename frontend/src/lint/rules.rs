//! BuildKit's build-check rules: names, descriptions and documentation URLs,
//! exactly as BuildKit's `linter` package defines them.

/// One build-check rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Rule name (`FromAsCasing`), as used by `# check=skip=…`.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Documentation page ("" when BuildKit has none).
    pub url: &'static str,
    /// Experimental rules run only when enabled with `experimental=`.
    pub experimental: bool,
}

const fn rule(name: &'static str, description: &'static str, url: &'static str) -> Rule {
    Rule {
        name,
        description,
        url,
        experimental: false,
    }
}

/// Stage names should be lowercase.
pub const STAGE_NAME_CASING: Rule = rule(
    "StageNameCasing",
    "Stage names should be lowercase",
    "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/",
);
/// `AS` cased like `FROM`.
pub const FROM_AS_CASING: Rule = rule(
    "FromAsCasing",
    "The 'as' keyword should match the case of the 'from' keyword",
    "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
);
/// Empty lines inside a continued instruction.
pub const NO_EMPTY_CONTINUATION: Rule = rule(
    "NoEmptyContinuation",
    "Empty continuation lines will become errors in a future release",
    "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
);
/// Instruction words cased like the majority.
pub const CONSISTENT_INSTRUCTION_CASING: Rule = rule(
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
    "https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/",
);
/// Two stages with one name.
pub const DUPLICATE_STAGE_NAME: Rule = rule(
    "DuplicateStageName",
    "Stage names should be unique",
    "https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/",
);
/// A stage named `context` or `scratch`.
pub const RESERVED_STAGE_NAME: Rule = rule(
    "ReservedStageName",
    "Reserved words should not be used as stage names",
    "https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/",
);
/// Shell-form CMD/ENTRYPOINT.
pub const JSON_ARGS_RECOMMENDED: Rule = rule(
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
);
/// MAINTAINER.
pub const MAINTAINER_DEPRECATED: Rule = rule(
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/",
);
/// FROM uses an ARG nobody declared.
pub const UNDEFINED_ARG_IN_FROM: Rule = rule(
    "UndefinedArgInFrom",
    "FROM command must use declared ARGs",
    "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/",
);
/// First WORKDIR of a stage is relative.
pub const WORKDIR_RELATIVE_PATH: Rule = rule(
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    "https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/",
);
/// A variable used before it is defined.
pub const UNDEFINED_VAR: Rule = rule(
    "UndefinedVar",
    "Variables should be defined before their use",
    "https://docs.docker.com/go/dockerfile/rule/undefined-var/",
);
/// CMD, ENTRYPOINT or HEALTHCHECK twice in a stage.
pub const MULTIPLE_INSTRUCTIONS_DISALLOWED: Rule = rule(
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
    "https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/",
);
/// `ENV key value`.
pub const LEGACY_KEY_VALUE_FORMAT: Rule = rule(
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
    "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/",
);
/// The resolved base image is for another platform.
pub const INVALID_BASE_IMAGE_PLATFORM: Rule = rule(
    "InvalidBaseImagePlatform",
    "Base image platform does not match expected target platform",
    "",
);
/// `FROM --platform=$TARGETPLATFORM`.
pub const REDUNDANT_TARGET_PLATFORM: Rule = rule(
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    "https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/",
);
/// ARG/ENV names that look like secrets.
pub const SECRETS_USED_IN_ARG_OR_ENV: Rule = rule(
    "SecretsUsedInArgOrEnv",
    "Sensitive data should not be used in the ARG or ENV commands",
    "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/",
);
/// Global ARG defaults make an invalid base name.
pub const INVALID_DEFAULT_ARG_IN_FROM: Rule = rule(
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
    "https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/",
);
/// `FROM --platform=linux/amd64`.
pub const FROM_PLATFORM_FLAG_CONST_DISALLOWED: Rule = rule(
    "FromPlatformFlagConstDisallowed",
    "FROM --platform flag should not use a constant value",
    "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/",
);
/// Upper-case protocol in EXPOSE.
pub const EXPOSE_PROTO_CASING: Rule = rule(
    "ExposeProtoCasing",
    "Protocol in EXPOSE instruction should be lowercase",
    "https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/",
);
/// An IP address or host port in EXPOSE (`EXPOSE 127.0.0.1:80:80`).
pub const EXPOSE_INVALID_FORMAT: Rule = rule(
    "ExposeInvalidFormat",
    "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    "https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/",
);
/// A comment above FROM/ARG that is not `# <name> <description>`
/// (experimental, off by default).
pub const INVALID_DEFINITION_DESCRIPTION: Rule = Rule {
    name: "InvalidDefinitionDescription",
    description: "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    url: "https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/",
    experimental: true,
};
/// A COPY/ADD source from the main context that `.dockerignore` excludes
/// (experimental, off by default).
pub const COPY_IGNORED_FILE: Rule = Rule {
    name: "CopyIgnoredFile",
    description: "Attempting to Copy file that is excluded by .dockerignore",
    url: "https://docs.docker.com/go/dockerfile/rule/copy-ignored-file/",
    experimental: true,
};

/// Every rule rbuild implements.
pub const ALL: &[Rule] = &[
    STAGE_NAME_CASING,
    FROM_AS_CASING,
    NO_EMPTY_CONTINUATION,
    CONSISTENT_INSTRUCTION_CASING,
    DUPLICATE_STAGE_NAME,
    RESERVED_STAGE_NAME,
    JSON_ARGS_RECOMMENDED,
    MAINTAINER_DEPRECATED,
    UNDEFINED_ARG_IN_FROM,
    WORKDIR_RELATIVE_PATH,
    UNDEFINED_VAR,
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    LEGACY_KEY_VALUE_FORMAT,
    INVALID_BASE_IMAGE_PLATFORM,
    REDUNDANT_TARGET_PLATFORM,
    SECRETS_USED_IN_ARG_OR_ENV,
    INVALID_DEFAULT_ARG_IN_FROM,
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    EXPOSE_PROTO_CASING,
    EXPOSE_INVALID_FORMAT,
    INVALID_DEFINITION_DESCRIPTION,
    COPY_IGNORED_FILE,
];
