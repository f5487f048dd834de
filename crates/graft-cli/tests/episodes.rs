//! `[strategy.episodes]`: few-shot episodes on an extraction's features, in the report.

mod common;

use common::{fails, ok, report, run_dir, tmp, write};

#[test]
fn an_extraction_reports_few_shot_episodes() {
    let dir = tmp("episodes");
    write(
        &dir,
        "fs.toml",
        r#"
[model]
name = "resnet18_small"
init = "random"

[data.digits]

[strategy]
head = "prototype"

[strategy.episodes]
ways = 5
shots = [1, 5]
episodes = 60
"#,
    );
    let run = dir.join(run_dir(&ok(&dir, &["extract", "fs.toml"])));
    let r = report(&run);
    let eps = r["episodes"].as_array().expect("episodes");
    assert_eq!(eps.len(), 4, "two shot counts × two heads: {eps:?}");
    for e in eps {
        let (mean, ci) = (
            e["mean"].as_f64().expect("mean"),
            e["ci95"].as_f64().expect("ci"),
        );
        assert!(mean > 0.2 && mean <= 1.0 && ci > 0.0 && ci < 0.1, "{e}");
        assert_eq!(e["episodes"], 60);
    }
    let md = std::fs::read_to_string(
        dir.join(run_dir(&ok(&dir, &["extract", "fs.toml"])))
            .join("report.md"),
    )
    .expect("report.md");
    assert!(md.contains("5-way 5-shot (logistic, 60 episodes"), "{md}");

    write(
        &dir,
        "bad.toml",
        "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\n[strategy]\nhead = \"prototype\"\n[strategy.episodes]\nways = 11\n",
    );
    let err = fails(&dir, &["extract", "bad.toml"]);
    // refused before anything runs
    assert!(
        err.starts_with("error: bad.toml:7:1: ways = 11: 2 to the data's 10 classes"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
