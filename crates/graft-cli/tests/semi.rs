//! `[train.semi]`: semi-supervised fine-tuning from the experiment file.

mod common;

use common::{fails, ok, report, run_dir, tmp, write};

#[test]
fn semi_supervised_fine_tuning_runs_from_the_file() {
    let dir = tmp("semi");
    for method in ["fixmatch", "pseudo_label"] {
        write(
            &dir,
            "semi.toml",
            &format!(
                r#"
[model]
name = "resnet18_small"
init = "random"

[data]
batch_size = 10

[data.digits]
k_shot = 5
unlabeled = true

[strategy]
kind = "recipe"
freeze = 3

[train]
epochs = 1
progress = false

[train.semi]
method = "{method}"
threshold = 0.6
mu = 3
class_balance = 0.5
"#
            ),
        );
        let run = dir.join(run_dir(&ok(&dir, &["finetune", "semi.toml"])));
        let r = report(&run);
        assert!(r["test"]["top1"].as_f64().is_some(), "{r}");
        // the loop recorded what it trained with: 30 unlabelled images a step
        let phase = std::fs::read_dir(&run)
            .expect("run")
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("phase1"))
            .expect("phase directory");
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(phase.path().join("config.json")).expect("config.json"),
        )
        .expect("json");
        let semi = &cfg["semi_supervised"];
        assert_eq!(semi["unlabeled_batch_size"], 30, "{cfg}");
        // the train split (60 % of 1797, stratified: 1078) less the 5 labelled images a class
        assert_eq!(semi["unlabeled_samples"], 1078 - 50, "{cfg}");
        assert_eq!(cfg["train_samples"], 50, "{cfg}");
    }

    let cases = [
        (
            "no_data.toml",
            "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nk_shot = 5\n[train.semi]\nmethod = \"fixmatch\"\n",
            "no_data.toml:6:1: train.semi needs unlabelled data",
        ),
        (
            "no_semi.toml",
            "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nk_shot = 5\nunlabeled = true\n",
            "no_semi.toml:4:1: unlabelled data is read by semi-supervised fine-tuning",
        ),
        (
            "no_k.toml",
            "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nunlabeled = true\n[train.semi]\nmethod = \"fixmatch\"\n",
            "no_k.toml:4:1: unlabeled = true takes the train split's images k_shot leaves out",
        ),
        (
            "bad_tau.toml",
            "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nk_shot = 5\nunlabeled = true\n[train.semi]\nmethod = \"fixmatch\"\nthreshold = 1.5\n",
            "bad_tau.toml:9:13: ",
        ),
    ];
    for (name, text, want) in cases {
        write(&dir, name, text);
        let err = fails(&dir, &["finetune", name]);
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    write(
        &dir,
        "extract.toml",
        "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nk_shot = 5\nunlabeled = true\n[train.semi]\nmethod = \"fixmatch\"\n",
    );
    let err = fails(&dir, &["extract", "extract.toml"]);
    assert!(
        err.starts_with("error: extract.toml:7:1: train.semi applies to graft finetune"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
