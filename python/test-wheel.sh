#!/usr/bin/env bash
# The Python package's tests, as a user gets the package: builds the two abi3 wheels
# (cp311-abi3, and cp39-abi3 for 3.9 and 3.10), installs each into a fresh virtualenv,
# and runs python/tests against that install with a PATH that has no cargo or rustc on
# it (the Rust examples the tests start are built first, by cargo, beside the wheels).
#
#   bash python/test-wheel.sh        (from anywhere; a few minutes, more on a cold build)
#
# Then mypy --strict checks the README's Python examples and a typed program against the
# installed package's stub.
#
# Needs python3 (3.11 or newer) with venv or virtualenv, and the Rust toolchain for the
# build; maturin, pytest, NumPy, mypy and uvloop come from PyPI (the tests send NumPy
# arrays, and run the asyncio tests on uvloop too). Everything goes under
# $CARGO_TARGET_DIR (default: target/).
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

say "building the abi3 wheels into $target/wheels: cp311-abi3 (3.11 and later) and cp39-abi3 (3.9, 3.10)"
rm -rf "$target/wheels"
"$target/wheel-build-venv/bin/maturin" build --quiet --release --features abi3 \
  --manifest-path python/Cargo.toml --out "$target/wheels"
"$target/wheel-build-venv/bin/maturin" build --quiet --release --features abi3-py39 \
  --manifest-path python/Cargo.toml --out "$target/wheels"
wheel=$(ls "$target"/wheels/shmpipe-*-cp311-abi3-*.whl)
wheel39=$(ls "$target"/wheels/shmpipe-*-cp39-abi3-*.whl)
say "built $(basename "$wheel") and $(basename "$wheel39")"

say "building the Rust examples the tests start (echo_child, python_child, cancelling_writer, listener_client)"
cargo build --quiet --example echo_child --example python_child --example cancelling_writer \
  --example listener_client
examples=$(cd "$target/debug/examples" && pwd)

# test WHEEL PYTHON VENV: installs WHEEL into a fresh virtualenv of PYTHON and runs the
# pytest suite against it with a PATH that has no cargo or rustc.
test_wheel() {
  local wheel=$1 python=$2 venv_dir=$3
  say "a fresh virtualenv of $($python --version) with $(basename "$wheel"), pytest, NumPy, mypy and uvloop (from PyPI) in $venv_dir"
  rm -rf "$venv_dir"
  "$python" -m venv "$venv_dir" 2>/dev/null || {
    "$python" -m pip install --quiet --user virtualenv && "$python" -m virtualenv --quiet "$venv_dir"
  }
  "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest numpy mypy uvloop
  bin=$(cd "$venv_dir/bin" && pwd)
  if PATH="$bin" command -v cargo >/dev/null || PATH="$bin" command -v rustc >/dev/null; then
    say "cargo or rustc is on the test PATH" >&2
    exit 1
  fi
  say "pytest against the installed wheel, with PATH=$bin (no cargo, no rustc)"
  (cd python && env PATH="$bin" SHMPIPE_EXAMPLES_DIR="$examples" "$bin/python" -m pytest -q -p no:cacheprovider tests)
}

test_wheel "$wheel" python3 "$target/wheel-test-venv"
# The 3.9 wheel on a 3.9 interpreter where the machine has one, else on this one (an abi3
# wheel for 3.9 installs on every later version): the copying paths are tested either way.
python39=python3
command -v python3.9 >/dev/null && python3.9 -c "" 2>/dev/null && python39=python3.9
test_wheel "$wheel39" "$python39" "$target/wheel39-test-venv"

# mypy with the 3.11 wheel's environment.
bin=$(cd "$target/wheel-test-venv/bin" && pwd)
cd python

say "mypy --strict on the README's Python examples and a typed program, against the installed stub"
examples_py="$target/readme_examples.py"
case "$examples_py" in /*) ;; *) examples_py="../$examples_py" ;; esac
awk '/^```python$/{p=1; next} /^```$/{p=0} p' ../README.md > "$examples_py"
env PATH="$bin" "$bin/python" -m mypy --strict --no-incremental tests/test_typed_usage.py "$examples_py"
