//! Shared by graft-text's tests: the venv's packages and its Python as the reference.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The project's venv (`make setup` makes it).
pub fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv")
}

/// `rel` inside the venv's site-packages (a file or a directory that must exist).
pub fn site_package(rel: &str) -> PathBuf {
    std::fs::read_dir(venv().join("lib"))
        .expect("the venv (run `make setup`)")
        .flatten()
        .map(|e| e.path().join("site-packages").join(rel))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{rel} in the venv's site-packages (run `make setup`)"))
}

/// Runs the venv's Python with `args` (offline), `input` as JSON on stdin; its stdout as JSON.
pub fn python_json(args: &[&str], input: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(venv().join("bin/python"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference json")
}
