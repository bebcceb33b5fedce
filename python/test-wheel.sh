#!/usr/bin/env bash
# The Python package's tests, as a user gets the package: builds the abi3 wheel once,
# installs it into a fresh virtualenv, and runs python/tests against that install with
# a PATH that has no cargo or rustc on it (the Rust examples the tests start are built
# first, by cargo, beside the wheel).
#
#   bash python/test-wheel.sh        (from anywhere; about a minute, more on a cold build)
#
# Then mypy --strict checks the README's Python examples and a typed program against the
# installed package's stub.
#
# Needs python3 (3.11 or newer for the abi3 wheel) with venv or virtualenv, and the Rust
# toolchain for the build; maturin, pytest, NumPy and mypy come from PyPI (the tests send
# NumPy arrays). Everything goes under $CARGO_TARGET_DIR (default: target/).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
say() { echo "test-wheel: $*"; }

venv() {
  rm -rf "$1"
  python3 -m venv "$1" 2>/dev/null || {
    python3 -m pip install --quiet --user virtualenv && python3 -m virtualenv --quiet "$1"
  }
}

say "a build environment with maturin (from PyPI) in $target/wheel-build-venv"
[ -x "$target/wheel-build-venv/bin/maturin" ] || {
  venv "$target/wheel-build-venv"
  "$target/wheel-build-venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.16,<2"
}

say "building the abi3 wheel into $target/wheels"
rm -rf "$target/wheels"
"$target/wheel-build-venv/bin/maturin" build --quiet --release --features abi3 \
  --manifest-path python/Cargo.toml --out "$target/wheels"
wheel=$(ls "$target"/wheels/shmpipe-*-cp311-abi3-*.whl)
say "built $(basename "$wheel")"

say "building the Rust examples the tests start (echo_child, python_child, cancelling_writer, listener_client)"
cargo build --quiet --example echo_child --example python_child --example cancelling_writer \
  --example listener_client
examples=$(cd "$target/debug/examples" && pwd)

say "a fresh virtualenv with the wheel, pytest, NumPy and mypy (from PyPI) in $target/wheel-test-venv"
venv "$target/wheel-test-venv"
"$target/wheel-test-venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest numpy mypy

bin=$(cd "$target/wheel-test-venv/bin" && pwd)
if PATH="$bin" command -v cargo >/dev/null || PATH="$bin" command -v rustc >/dev/null; then
  say "cargo or rustc is on the test PATH" >&2
  exit 1
fi
say "pytest against the installed wheel, with PATH=$bin (no cargo, no rustc)"
cd python
env PATH="$bin" SHMPIPE_EXAMPLES_DIR="$examples" "$bin/python" -m pytest -q -p no:cacheprovider tests

say "mypy --strict on the README's Python examples and a typed program, against the installed stub"
examples_py="$target/readme_examples.py"
case "$examples_py" in /*) ;; *) examples_py="../$examples_py" ;; esac
awk '/^```python$/{p=1; next} /^```$/{p=0} p' ../README.md > "$examples_py"
env PATH="$bin" "$bin/python" -m mypy --strict --no-incremental tests/test_typed_usage.py "$examples_py"
