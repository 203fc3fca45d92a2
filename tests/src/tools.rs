//! Outside tools (promtool, Python packages from PyPI) that some tests
//! point at the running system. `.ci/run` installs them; in CI (`CI=true`)
//! a missing one fails the test loudly, elsewhere the test says what to
//! install and passes without running.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

pub use common::testing::in_ci;

fn missing(what: &str, install: &str) {
    assert!(
        !in_ci(),
        "{what} is missing and CI=true: install it ({install}); .ci/run does"
    );
    eprintln!("note: {what} is missing ({install}); this test did not run");
}

/// `program` found on `PATH`, or `None` (outside CI) after a note.
pub fn program(program: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        missing(program, install);
    }
    found
}

/// Whether `python3` imports every module in `modules`; `false` (outside
/// CI) after a note.
pub fn python_modules(modules: &[&str], install: &str) -> bool {
    let imports = modules.join(", ");
    let ok = Command::new("python3")
        .args(["-c", &format!("import {imports}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        missing(&format!("python3 with {imports}"), install);
    }
    ok
}

/// Runs `program` with `args` in `dir`, fails the test with its output
/// unless it exits 0, and returns the output.
pub fn run_ok(program: &Path, args: &[&str], dir: &Path) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
