//! `graft multitask`: `[[task]]` tables — one trunk, a head a task, each task with its own data,
//! loss, weight and metric — on images (two digit tasks) and on text (VADER's polarity and mean
//! valence on MiniLM); the file's errors located.

mod common;

use common::{fails, ok, report, run_dir, tmp, write};

#[test]
fn two_digit_tasks_share_a_trunk_and_export_with_both_heads() {
    let dir = tmp("multitask-digits");
    write(
        &dir,
        "mt.toml",
        r#"
[model]
name = "resnet18_small"
init = "random"

[strategy]
sampling = "temperature"
temperature = 2.0
freeze = 1

[train]
epochs = 1
progress = false
lr = 0.002

[[task]]
name = "low"
[task.data]
batch_size = 10
[task.data.digits]
classes = [0, 1, 2, 3, 4]
k_shot = 10

[[task]]
name = "high"
weight = 0.5
head = "mlp"
hidden = [16]
[task.data]
batch_size = 10
[task.data.digits]
classes = [5, 6, 7, 8, 9]
k_shot = 10
"#,
    );
    let run = dir.join(run_dir(&ok(&dir, &["multitask", "mt.toml"])));
    let r = report(&run);
    let tasks = r["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2, "{r}");
    for (t, name) in tasks.iter().zip(["low", "high"]) {
        assert_eq!(t["name"], name, "{r}");
        assert!(t["val"]["top1"].as_f64().is_some(), "{r}");
        assert!(t["test"]["top1"].as_f64().is_some(), "{r}");
    }
    assert_eq!(tasks[1]["weight"], 0.5, "{r}");
    for f in [
        "curves.png",
        "task_losses.png",
        "task_metrics.png",
        "metrics.jsonl",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // the exported model carries both heads, with their class names
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("model/config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(cfg["num_classes"], 0, "{cfg}");
    assert_eq!(cfg["tasks"][0]["name"], "low", "{cfg}");
    assert_eq!(cfg["tasks"][0]["labels"][4], "4", "{cfg}");
    assert_eq!(cfg["tasks"][1]["labels"][0], "5", "{cfg}");
    assert_eq!(cfg["tasks"][1]["head"]["kind"], "mlp", "{cfg}");
    // the frozen stem kept its weights: the plan froze the bottom stage only
    let plan = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(plan.contains("[[resolved.task]]"), "{plan}");
}

#[test]
fn vader_polarity_and_valence_on_minilm() {
    let dir = tmp("multitask-vader");
    write(
        &dir,
        "vader.toml",
        r#"
[model]
name = "minilm_l6"

[strategy]
freeze = 6

[train]
epochs = 2
progress = false
lr = 0.003

[[task]]
name = "polarity"
[task.data]
batch_size = 64
[task.data.vader]
split = [0.1, 0.05, 0.1]
threshold = 0.5

[[task]]
name = "valence"
kind = "regression"
loss = "smooth_l1"
beta = 0.5
metric = "r2"
[task.data]
batch_size = 64
[task.data.vader]
split = [0.1, 0.05, 0.1]
threshold = 0.5
seed = 1
"#,
    );
    let run = dir.join(run_dir(&ok(&dir, &["multitask", "vader.toml"])));
    let r = report(&run);
    let tasks = r["tasks"].as_array().expect("tasks");
    let pol = tasks[0]["test"]["top1"].as_f64().expect("polarity top-1");
    let r2 = tasks[1]["test"]["r2"].as_f64().expect("valence R²");
    // MiniLM's frozen layers, two heads: the polarity of a word is far above chance (0.5), and
    // the valence regressor explains some of the variance
    assert!(pol > 0.7, "polarity top-1 {pol}: {r}");
    assert!(r2 > 0.2, "valence R² {r2}: {r}");
    assert_eq!(tasks[1]["loss"]["kind"], "smooth_l1", "{r}");
}

#[test]
fn multitask_files_are_checked_where_they_stand() {
    let dir = tmp("multitask-errors");
    let head = "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n";
    let digits = "[task.data.digits]\nk_shot = 2\n";
    let cases = [
        (
            "in_finetune.toml",
            format!("{head}[data.digits]\nk_shot = 2\n[[task]]\nname = \"a\"\n{digits}"),
            "finetune",
            "in_finetune.toml:6:1: [[task]] tables are read by graft multitask",
        ),
        (
            "no_tasks.toml",
            head.to_string(),
            "multitask",
            "no_tasks.toml:1:1: graft multitask needs [[task]] tables",
        ),
        (
            "data_too.toml",
            format!("{head}[data.digits]\nk_shot = 2\n[[task]]\nname = \"a\"\n{digits}"),
            "multitask",
            "data_too.toml:4:1: graft multitask reads each task's data from its [task.data]",
        ),
        (
            "twice.toml",
            format!("{head}[[task]]\nname = \"a\"\n{digits}[[task]]\nname = \"a\"\n{digits}"),
            "multitask",
            "twice.toml:9:8: a second task named \"a\"",
        ),
        (
            "no_values.toml",
            format!("{head}[[task]]\nname = \"ink\"\nkind = \"regression\"\n{digits}"),
            "multitask",
            "no_values.toml:4:1: task \"ink\" is a regression task, and its data carries no values",
        ),
        (
            "loss.toml",
            format!("{head}[[task]]\nname = \"a\"\nloss = \"mse\"\n{digits}"),
            "multitask",
            "loss.toml:6:8: loss Mse does not fit a classification task",
        ),
        (
            "beta.toml",
            format!("{head}[[task]]\nname = \"a\"\nbeta = 0.5\n{digits}"),
            "multitask",
            "beta.toml:6:8: beta applies to loss = \"smooth_l1\"",
        ),
        (
            "metric.toml",
            format!("{head}[[task]]\nname = \"a\"\nmetric = \"rmse\"\n{digits}"),
            "multitask",
            "metric.toml:6:10: metric Rmse does not measure a classification task",
        ),
        (
            "temp.toml",
            format!(
                "{head}[strategy]\nsampling = \"temperature\"\n[[task]]\nname = \"a\"\n{digits}"
            ),
            "multitask",
            "temp.toml:4:1: sampling = \"temperature\" needs temperature = T",
        ),
        (
            "name.toml",
            format!("{head}[[task]]\nname = \"a.b\"\n{digits}"),
            "multitask",
            "name.toml:5:8: task name \"a.b\": letters, digits, '_' and '-'",
        ),
        (
            "freeze.toml",
            format!("{head}[strategy]\nfreeze = 9\n[[task]]\nname = \"a\"\n{digits}"),
            "multitask",
            "freeze.toml:4:1: freeze = 9 leaves nothing to train",
        ),
    ];
    for (name, text, cmd, want) in cases {
        write(&dir, name, &text);
        let err = fails(&dir, &[cmd, name]);
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    assert!(!dir.join("runs").exists(), "nothing ran, no run directory");
}
