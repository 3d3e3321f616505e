# Shared settings for rbuild's scripts and tests (source this file).
# RBUILD_TEST_DIR holds the test registry's storage and the base-image work dir.
export RBUILD_TEST_DIR="${RBUILD_TEST_DIR:-/var/tmp/rbuild-test}"
export RBUILD_REGISTRY="${RBUILD_REGISTRY:-127.0.0.1:5000}"
