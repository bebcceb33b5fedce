//! The Python package's tests (`python/tests`, pytest), run from `cargo test` so that one
//! command tests both halves: builds the package with maturin into a virtualenv of its
//! own (`target/python-venv`, made on first use; maturin and pytest from PyPI) and runs
//! pytest against it.
//!
//! Its builds use their own target directory (`target/python-build`), so that they never
//! wait for the lock of the one this test binary was built in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

#[test]
fn python_package() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = repo.join("target");
    let venv = target.join("python-venv");
    let python: PathBuf = venv.join("bin").join("python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            // A Python without the venv module (Debian's without python3-venv).
            run(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--user",
                "virtualenv",
            ]));
            run(Command::new("python3")
                .args(["-m", "virtualenv", "--quiet"])
                .arg(&venv));
        }
    }
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "maturin>=1.16,<2",
        "pytest",
        // The tests send and receive NumPy arrays (buffers of any item size, out-of-band
        // pickling).
        "numpy",
    ]));
    let build_dir = target.join("python-build");
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(repo.join("python"))
        // maturin builds it optimised (its tests move 300 MiB).
        .env("CARGO_TARGET_DIR", &build_dir));
    // `cargo test` built the examples the Python tests run (`echo_child`, `python_child`)
    // beside this test binary: `target/<profile>/examples`.
    let examples = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples")))
        .expect("test binary in target/<profile>/deps");
    run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .env("SHMPIPE_EXAMPLES_DIR", examples)
        .arg(repo.join("python").join("tests"))
        .current_dir(repo.join("python"))
        .env("CARGO_TARGET_DIR", &build_dir));
}
