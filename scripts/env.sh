# Shared by setup.sh and test.sh: build once, in one profile, into one target directory.
# In CI (CI=true) the target directory lives outside the fresh clone so later runs on the same
# machine reuse the compiled dependencies; a developer's clone keeps ./target.
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ "${CI:-}" = "true" ]; then
    export CARGO_TARGET_DIR=/var/cache/caxton-ci/target
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
