//! Helpers shared by the facade's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The venv's Python (GRAFT_PYTHON overrides). Missing is a test failure that says what to run:
/// parity tests never pass silently.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRAFT_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `make setup` (scripts/setup.sh) first",
        p.display()
    );
    p
}

/// Runs a script from tests/python with the venv's Python; panics with its stderr on failure.
pub fn run_python(script: &str, args: &[&str]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "graft-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
