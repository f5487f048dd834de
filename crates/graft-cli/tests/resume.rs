//! `graft finetune --resume` (issue 17.10): a run killed with SIGKILL after its first checkpoint,
//! then resumed, ends exactly as a run never interrupted (same seed, same machine): the same
//! per-epoch losses and validation metrics, the same test metrics, the same exported weights,
//! byte for byte. A run whose experiment changed is refused; a half-exported model is named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{graft, ok, report, tmp};

/// fastai's fine_tune: a frozen phase and an unfrozen one, each with its own checkpoints.
const EXP: &str = r#"
[model]
name = "resnet18_small"
init = "random"

[data]
batch_size = 32

[data.digits]
classes = [0, 1, 2, 3, 4]

[strategy]
kind = "lpft"
freeze_epochs = 2

[train]
epochs = 2
lr = 2e-3
seed = 3
progress = false
"#;

/// The parts of a finetune report that a resumed run must reproduce (not its wall time or
/// directory).
fn outcome(r: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "phases": r["phases"],
        "frozen_stages": r["frozen_stages"],
        "history": r["history"],
        "test": r["test"],
    })
}

/// Runs `exp` whole in one directory, and in another kills it (SIGKILL) once `first` — a
/// checkpoint, relative to the run directory — exists, then resumes it; returns the two run
/// directories.
fn whole_and_resumed(tag: &str, exp: &str, first: &str) -> (PathBuf, PathBuf) {
    let a = tmp(&format!("{tag}-whole"));
    std::fs::write(a.join("exp.toml"), exp).expect("write");
    ok(&a, &["finetune", "exp.toml"]);
    let b = tmp(&format!("{tag}-killed"));
    std::fs::write(b.join("exp.toml"), exp).expect("write");
    let mut child = common::graft_cmd()
        .current_dir(&b)
        .args(["finetune", "exp.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let run = b.join("runs/exp");
    let t0 = Instant::now();
    while !run.join(first).exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before its first checkpoint was seen"
        );
        assert!(t0.elapsed() < Duration::from_secs(600), "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        !run.join("report.json").exists(),
        "killed before the end of the run"
    );
    // a half-written file of the killed process, as an atomic write leaves it
    let orphan = run.join(".checkpoint.safetensors.tmp-999999999");
    std::fs::write(&orphan, b"partial").expect("orphan");
    let out = graft(&b, &["finetune", "exp.toml", "--resume", "runs/exp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {err}");
    assert!(err.contains("removed 1 unfinished temporary file"), "{err}");
    assert!(!orphan.exists());
    assert!(
        !b.join("runs/exp-2").exists(),
        "the run continues in its directory"
    );
    (a.join("runs/exp"), run)
}

fn assert_same_outcome(whole: &Path, resumed: &Path, epochs: usize) {
    let (ra, rb) = (report(whole), report(resumed));
    assert_eq!(outcome(&ra), outcome(&rb), "the resumed run's report");
    assert_eq!(ra["history"].as_array().map(Vec::len), Some(epochs));
    let wa = std::fs::read(whole.join("model/model.safetensors")).expect("weights");
    let wb = std::fs::read(resumed.join("model/model.safetensors")).expect("weights");
    assert!(wa == wb, "the exported weights are bit-identical");
}

#[test]
fn a_killed_finetune_resumes_to_the_uninterrupted_result() {
    // fastai's fine_tune: killed in its frozen phase, resumed through both phases
    let (whole, resumed) = whole_and_resumed("lpft", EXP, "phase1-frozen/checkpoint.safetensors");
    assert_same_outcome(&whole, &resumed, 4);
    let b = resumed
        .parent()
        .and_then(Path::parent)
        .expect("dir")
        .to_path_buf();

    // a changed experiment is refused, and so is a directory that is not a run
    std::fs::write(
        b.join("changed.toml"),
        EXP.replace("lr = 2e-3", "lr = 1e-3"),
    )
    .expect("write");
    let out = graft(&b, &["finetune", "changed.toml", "--resume", "runs/exp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the experiment changed") && err.contains("lr = 0.001"),
        "{err}"
    );
    let out = graft(&b, &["finetune", "exp.toml", "--resume", "."]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a graft run directory"));
    for d in [&whole, &resumed] {
        let _ = std::fs::remove_dir_all(d.parent().and_then(Path::parent).expect("dir"));
    }
}

/// Gradual unfreezing (one phase an epoch, the optimizer carried across phases) and the
/// classic recipe (one phase), each killed after its first checkpoint.
#[test]
fn every_strategy_resumes_to_the_uninterrupted_result() {
    let gradual = EXP
        .replace("kind = \"lpft\"\nfreeze_epochs = 2", "kind = \"gradual\"")
        .replace("epochs = 2\nlr", "epochs = 3\nlr");
    let recipe = EXP
        .replace(
            "kind = \"lpft\"\nfreeze_epochs = 2",
            "kind = \"recipe\"\nfreeze = 2",
        )
        .replace("epochs = 2\nlr", "epochs = 3\nlr");
    for (tag, exp, first) in [
        ("gradual", gradual, "phase1-freeze5/checkpoint.safetensors"),
        ("recipe", recipe, "phase1-freeze2/checkpoint.safetensors"),
    ] {
        let (whole, resumed) = whole_and_resumed(tag, &exp, first);
        assert_same_outcome(&whole, &resumed, 3);
        for d in [&whole, &resumed] {
            let _ = std::fs::remove_dir_all(d.parent().and_then(Path::parent).expect("dir"));
        }
    }
}

#[test]
fn a_half_exported_model_is_named_not_skipped() {
    let d = tmp("half");
    std::fs::create_dir_all(d.join("models/half")).expect("dir");
    std::fs::write(d.join("models/half/model.safetensors"), b"x").expect("w");
    let out = graft(&d, &["--models-dir", "models", "models", "half*"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("half: model.safetensors without config.json, a half-exported model"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
