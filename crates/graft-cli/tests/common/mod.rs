//! Running the `graft` binary from the CLI's integration tests.
#![allow(dead_code)] // each test file uses some of these

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `graft` binary as a command, with MKL's two documented sources of run-to-run variation
/// turned off: `MKL_CBWR=COMPATIBLE` (kernels that do not depend on the alignment of the arrays,
/// which differs between processes) and `MKL_DYNAMIC=FALSE` (MKL may otherwise run fewer threads
/// than set, splitting its sums differently). Two processes then compute the same floats — what
/// the resume tests compare bit for bit; a CI run beside other work once saw two processes
/// differ at the 8th digit of the first epoch's loss without them.
pub fn graft_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_graft"));
    c.env("MKL_DYNAMIC", "FALSE").env("MKL_CBWR", "COMPATIBLE");
    c
}

/// `graft ARGS` in `dir`.
pub fn graft(dir: &Path, args: &[&str]) -> Output {
    graft_cmd()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run graft")
}

/// The stdout of a run that must succeed.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = graft(dir, args);
    assert!(
        out.status.success(),
        "graft {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error text of a run that must fail with an error (exit 1 or 2) — not by a signal: a
/// crash is not an error message.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = graft(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "graft {args:?} should fail with an error, got {:?}:\n{err}",
        out.status
    );
    err
}

/// A fresh scratch directory for `tag`.
pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("graft-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// A run directory's `report.json`.
pub fn report(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("json")
}

/// The run directory a route printed.
pub fn run_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .expect("the run directory is printed");
    PathBuf::from(line)
}
