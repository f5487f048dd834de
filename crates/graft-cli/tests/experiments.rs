//! The experiment file end to end on real digits: `graft finetune` trains a source model on
//! digits 0–4; `graft extract` reuses its trunk for 5–9 (a second identical run does zero trunk
//! forwards) and exports trunk + head, which `graft eval` and `graft predict` then use;
//! `graft probe`, `graft reuse` (contrast shift, BatchNorm re-estimation) and `graft plan` run
//! from one file each. Bad files fail with one `FILE:LINE:COL` line and exit status 2.

mod common;

use common::{graft, ok, report, run_dir, tmp, write};

const SOURCE: &str = r#"
[model]
name = "resnet18_small"
init = "random"

[data]
batch_size = 32

[data.digits]
classes = [0, 1, 2, 3, 4]

[strategy]
freeze = 0

[train]
epochs = 6
lr = 2e-3
progress = false
"#;

#[test]
fn routes_from_experiment_files() {
    let dir = tmp("routes");
    write(&dir, "source.toml", SOURCE);
    let out = ok(&dir, &["finetune", "source.toml"]);
    let src_run = dir.join(run_dir(&out));
    for f in [
        "config.toml",
        "plan.txt",
        "metrics.jsonl",
        "curves.png",
        "report.md",
        "report.json",
        "model/model.safetensors",
        "model/config.json",
        "phase1-freeze0/checkpoint.safetensors",
    ] {
        assert!(src_run.join(f).exists(), "the run directory has {f}");
    }
    let r = report(&src_run);
    let src_acc = r["test"]["top1"].as_f64().expect("test top-1");
    assert!(src_acc > 0.9, "the source learns digits 0-4: {src_acc}");
    let resolved = std::fs::read_to_string(src_run.join("config.toml")).expect("config");
    assert!(resolved.contains("[resolved]") && resolved.contains("batch_size = 32"));

    // feature extraction for 5-9 on the source's trunk: the second run does no trunk forward
    let extract = r#"
[model]
name = "model"
models_dir = ["runs/source"]

[data.digits]
classes = [5, 6, 7, 8, 9]
"#;
    write(&dir, "extract.toml", extract);
    let first = report(&dir.join(run_dir(&ok(&dir, &["extract", "extract.toml"]))));
    assert!(first["trunk_forwards"].as_u64().expect("n") > 0);
    let second_run = dir.join(run_dir(&ok(&dir, &["extract", "extract.toml"])));
    assert!(
        second_run.ends_with("extract-2"),
        "an earlier run is never overwritten"
    );
    let second = report(&second_run);
    assert_eq!(
        second["trunk_forwards"], 0,
        "an identical run reads the cache"
    );
    let test_acc = second["metrics"]["test"]["accuracy"].as_f64().expect("acc");
    assert_eq!(
        first["metrics"]["test"]["accuracy"],
        second["metrics"]["test"]["accuracy"]
    );
    assert!(
        test_acc > 0.85,
        "logistic head on the transferred trunk: {test_acc}"
    );

    // the same extraction on ONNX Runtime (the venv's wheel, found through VIRTUAL_ENV): its own
    // cache entry, the same features within float rounding, so the same head
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    let on_ort = |name: &str, strategy: &str| {
        write(&dir, name, &format!("{extract}\n[strategy]\n{strategy}"));
        let out = common::graft_cmd()
            .current_dir(&dir)
            .env("VIRTUAL_ENV", &venv)
            .env_remove("ORT_DYLIB_PATH")
            .args(["extract", name])
            .output()
            .expect("run graft");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = report(&dir.join(run_dir(&String::from_utf8_lossy(&out.stdout))));
        assert!(
            r["trunk_forwards"].as_u64().expect("n") > 0,
            "{name}: not another engine's cache"
        );
        let acc = r["metrics"]["test"]["accuracy"].as_f64().expect("acc");
        (r, acc)
    };
    let (_, ort_acc) = on_ort("extract_ort.toml", "engine = \"onnxruntime\"\n");
    assert!(
        (ort_acc - test_acc).abs() <= 0.01,
        "ONNX Runtime's features give the backend's head: {ort_acc} vs {test_acc}"
    );
    // int8: calibrated once on the first train images, every split quantised alike
    let (int8, int8_acc) = on_ort(
        "extract_int8.toml",
        "engine = \"onnxruntime_int8\"\ncalibration_images = 100\n",
    );
    assert_eq!(int8["int8_calibration_images"], 100);
    assert!(
        (int8_acc - test_acc).abs() <= 0.02,
        "int8 features keep the head: {int8_acc} vs fp32 {test_acc}"
    );

    // the exported model: listed, evaluated, and used on image files
    let exported = second_run.join("model");
    let models = ok(
        &dir,
        &[
            "--models-dir",
            second_run.to_str().expect("utf-8"),
            "models",
            "model",
        ],
    );
    assert!(models.contains("model"), "{models}");
    write(
        &dir,
        "eval.toml",
        &format!(
            "[model]\nname = \"model\"\nmodels_dir = [{:?}]\n[data.digits]\nclasses = [5, 6, 7, 8, 9]\n",
            second_run.to_str().expect("utf-8")
        ),
    );
    let ev = report(&dir.join(run_dir(&ok(&dir, &["eval", "eval.toml"]))));
    let ev_acc = ev["test"]["top1"].as_f64().expect("eval top-1");
    assert!(
        (ev_acc - test_acc).abs() < 1e-9,
        "the exported model classifies the images as the head classified their features: {ev_acc} vs {test_acc}"
    );
    // two digit images (scaled 0-16 -> 0-255 PNG) through graft predict
    let digits = graft_data::ArrayDataset::digits();
    let mut pngs = Vec::new();
    for want in [5usize, 8] {
        let i = (0..1797)
            .rev()
            .find(|&i| graft_data::Dataset::label(&digits, i) == want)
            .expect("a digit");
        let s = graft_data::Dataset::get(&digits, i)
            .expect("sample")
            .into_image("test")
            .expect("image");
        let px: Vec<u8> = s.data.iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::GrayImage::from_raw(8, 8, px).expect("8x8");
        let p = dir.join(format!("digit{want}.png"));
        img.save(&p).expect("png");
        pngs.push(p);
    }
    let pred = ok(
        &dir,
        &[
            "--models-dir",
            second_run.to_str().expect("utf-8"),
            "predict",
            "--model",
            "model",
            "--top",
            "2",
            pngs[0].to_str().expect("utf-8"),
            pngs[1].to_str().expect("utf-8"),
        ],
    );
    let lines: Vec<&str> = pred.lines().collect();
    assert_eq!(lines.len(), 2, "{pred}");
    assert!(lines[0].contains("digit5.png: 5 ("), "{pred}");
    assert!(lines[1].contains("digit8.png: 8 ("), "{pred}");
    assert!(exported.join("config.json").exists());

    // the probe, direct reuse under a contrast shift, the plan of fastai's fine_tune
    write(
        &dir,
        "probe.toml",
        "[model]\nname = \"model\"\nmodels_dir = [\"runs/source\"]\n[data.digits]\nclasses = [5, 6, 7, 8, 9]\nk_shot = 20\n",
    );
    let p = report(&dir.join(run_dir(&ok(&dir, &["probe", "probe.toml"]))));
    assert_eq!(p["rows"].as_array().expect("rows").len(), 5);
    assert!(p["freeze_stages"].as_u64().expect("k") >= 1);
    write(
        &dir,
        "reuse.toml",
        "[model]\nname = \"model\"\nmodels_dir = [\"runs/source\"]\n[data]\nshift = \"contrast:0.25\"\n[data.digits]\nclasses = [0, 1, 2, 3, 4]\n",
    );
    let r = report(&dir.join(run_dir(&ok(&dir, &["reuse", "reuse.toml"]))));
    let (before, after) = (
        r["before"]["accuracy"].as_f64().expect("before"),
        r["after"]["accuracy"].as_f64().expect("after"),
    );
    assert!(
        after > before + 0.1,
        "BatchNorm re-estimation under contrast x0.25: {before} -> {after}"
    );
    write(
        &dir,
        "plan.toml",
        "[model]\nname = \"model\"\nmodels_dir = [\"runs/source\"]\n[data.digits]\nclasses = [5, 6, 7, 8, 9]\n[strategy]\nkind = \"lpft\"\n",
    );
    let plan = ok(&dir, &["plan", "plan.toml"]);
    assert!(
        plan.contains("phase frozen") && plan.contains("phase unfrozen"),
        "{plan}"
    );
    assert!(plan.contains("layer4.frozen"), "{plan}");

    // ranking candidates for digits 5-9 before training: the digits 0-4 source (with its own
    // head: LEEP, NCE), a random trunk (no trained head) and a tag that is not in the (empty,
    // offline) cache — reported, the others scored
    write(
        &dir,
        "rank.toml",
        "[rank]\ncandidates = [\n  \"model\",\n  { name = \"resnet18_small\", init = \"random\", label = \"random trunk\" },\n  \"resnet18.a1_in1k\",\n]\nmodels_dir = [\"runs/source\"]\nknn_k = 5\n[data.digits]\nclasses = [5, 6, 7, 8, 9]\n",
    );
    let offline = |args: &[&str]| {
        let out = common::graft_cmd()
            .current_dir(&dir)
            .args(args)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", dir.join("hf"))
            .env("TORCH_HOME", dir.join("torch"))
            .output()
            .expect("run graft");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join(run_dir(&String::from_utf8_lossy(&out.stdout)))
    };
    let run = offline(&["rank", "rank.toml"]);
    let r = report(&run);
    let rows = r["candidates"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{r}");
    let row = |n: &str| rows.iter().find(|x| x["name"] == n).expect("candidate");
    let (src, rnd) = (row("model"), row("random trunk"));
    assert!(src["leep"].as_f64().expect("leep") < 0.0 && src["nce"].is_number());
    assert!(
        rnd["leep"].is_null() && rnd["nce"].is_null(),
        "no trained head: {rnd}"
    );
    assert!(
        rows[0]["logme"].as_f64() >= rows[1]["logme"].as_f64(),
        "sorted by LogME"
    );
    for x in rows {
        assert_eq!(x["dim"], 512);
        assert!(
            x["linear_val_accuracy"].as_f64().expect("probe") > 0.5,
            "{x}"
        );
        assert!(x["knn_val_accuracy"].as_f64().expect("knn") > 0.5, "{x}");
    }
    let failed = r["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(failed[0]["name"], "resnet18.a1_in1k");
    assert!(
        failed[0]["error"]
            .as_str()
            .expect("why")
            .contains("not in the cache")
    );
    assert!(run.join("rank.png").exists() && run.join("config.toml").exists());
    // the second run reads every feature from the cache and scores the same
    let again = report(&offline(&["rank", "rank.toml"]));
    for (a, b) in rows
        .iter()
        .zip(again["candidates"].as_array().expect("rows"))
    {
        assert_eq!(b["cached"], true, "{b}");
        assert_eq!(a["logme"], b["logme"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_experiment_files_name_file_line_and_column() {
    let dir = tmp("bad");
    std::fs::create_dir_all(dir.join("imgs")).expect("dir");
    let cases = [
        (
            "unknown_key.toml",
            "[model]\nname = \"resnet18\"\n[data.digits]\n[train]\nepoch = 3\n",
            "unknown_key.toml:5:1: unknown field `epoch`",
        ),
        (
            "wrong_type.toml",
            "[model]\nname = \"resnet18\"\n[data.digits]\n[train]\nepochs = \"three\"\n",
            "wrong_type.toml:5:10: invalid type: string \"three\", expected usize",
        ),
        (
            "missing_file.toml",
            "[model]\nname = \"resnet18\"\n[data]\ntrain = \"imgs/nope\"\n",
            "missing_file.toml:4:9: data.train:",
        ),
        (
            "unknown_model.toml",
            "[model]\nname = \"resnet81\"\n[data.digits]\n",
            "unknown_model.toml:2:8: unknown model \"resnet81\"",
        ),
        (
            "misplaced.toml",
            "[model]\nname = \"resnet18\"\n[data.digits]\n[strategy]\nkind = \"gradual\"\nfreeze = 2\n",
            "misplaced.toml:6:10: freeze applies to kind = \"recipe\"",
        ),
        (
            "bad_shift.toml",
            "[model]\nname = \"resnet18\"\n[data]\nshift = \"warp:2\"\n[data.digits]\n",
            "bad_shift.toml:4:9: Shift: unknown shift \"warp\"",
        ),
    ];
    for (name, text, want) in cases {
        write(&dir, name, text);
        let out = graft(&dir, &["finetune", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    // the ONNX Runtime engine runs pooled features only: located at the engine key
    write(
        &dir,
        "stage_engine.toml",
        "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\n[strategy]\nfeatures = \"layer3\"\nengine = \"onnxruntime\"\n",
    );
    let out = graft(&dir, &["extract", "stage_engine.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: stage_engine.toml:7:10: stage features run on the backend engine"),
        "{err}"
    );
    // calibration_images belongs to the int8 engine
    write(
        &dir,
        "calibration.toml",
        "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\n[strategy]\nengine = \"onnxruntime\"\ncalibration_images = 64\n",
    );
    let out = graft(&dir, &["extract", "calibration.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: calibration.toml:7:22: calibration_images sets the int8 engine"),
        "{err}"
    );
    write(
        &dir,
        "calibration0.toml",
        "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\n[strategy]\nengine = \"onnxruntime_int8\"\ncalibration_images = 0\n",
    );
    let out = graft(&dir, &["extract", "calibration0.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: calibration0.toml:7:22: calibration_images must be at least 1"),
        "{err}"
    );
    // graft rank's file: candidates are checked, each one located, before anything runs
    let rank_cases = [
        (
            "rank_unknown.toml",
            "[rank]\ncandidates = [\"resnet81\"]\n[data.digits]\n",
            "rank_unknown.toml:2:15: unknown model \"resnet81\"",
        ),
        (
            "rank_wildcard.toml",
            "[rank]\ncandidates = [\"zzz*\"]\n[data.digits]\n",
            "rank_wildcard.toml:2:15: \"zzz*\" matches no pretrained tag and no user model",
        ),
        (
            "rank_twice.toml",
            "[rank]\ncandidates = [\"resnet18.a1_in1k\", \"resnet18.a1_in1k\"]\n[data.digits]\n",
            "rank_twice.toml:2:35: two candidates are called \"resnet18.a1_in1k\"",
        ),
        (
            "rank_stage.toml",
            "[rank]\ncandidates = [\n  { name = \"resnet18_small\", init = \"random\", features = \"layer9\" },\n]\n[data.digits]\n",
            "rank_stage.toml:3:3: resnet18_small has no stage \"layer9\"",
        ),
        (
            "rank_key.toml",
            "[rank]\ncandidates = [{ nam = \"resnet18\" }]\n[data.digits]\n",
            "rank_key.toml:2:17: unknown field `nam`",
        ),
        (
            "rank_model.toml",
            "[model]\nname = \"resnet18\"\n[rank]\ncandidates = [\"resnet18\"]\n",
            "rank_model.toml:1:2: unknown field `model`",
        ),
        (
            "rank_empty.toml",
            "[rank]\ncandidates = []\n[data.digits]\n",
            "rank_empty.toml:2:14: no candidate to rank",
        ),
    ];
    for (name, text, want) in rank_cases {
        write(&dir, name, text);
        let out = graft(&dir, &["rank", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    assert!(!dir.join("runs").exists(), "nothing ran, no run directory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text experiments: MiniLM from its installed package on the VADER lexicon (`[data.vader]`) and
/// on labelled CSV files (`[data.text]`): a logistic head on frozen embeddings (a second run reads
/// the cache), the zero-shot head from `[strategy.zero_shot]`, fine-tuning the top layers, and
/// the file's errors located.
#[test]
fn text_experiments() {
    let dir = tmp("text");
    write(
        &dir,
        "vader.toml",
        r#"
[model]
name = "minilm_l6"

[data]
batch_size = 128

[data.vader]
split = [0.2, 0.1, 0.7]
k_shot = 100

[strategy]
head = "logistic"
"#,
    );
    let out = ok(&dir, &["extract", "vader.toml"]);
    let r = report(&dir.join(run_dir(&out)));
    let acc = r["metrics"]["test"]["accuracy"].as_f64().expect("acc");
    assert!(
        acc > 0.7,
        "frozen MiniLM + logistic from 100 words a class: {acc}"
    );
    assert_eq!(r["extraction"]["train"]["texts"], 200);
    let again = report(&dir.join(run_dir(&ok(&dir, &["extract", "vader.toml"]))));
    assert_eq!(again["trunk_forwards"], 0, "the second run reads the cache");
    assert_eq!(
        again["metrics"]["test"]["accuracy"],
        r["metrics"]["test"]["accuracy"]
    );

    write(
        &dir,
        "zero.toml",
        r#"
[model]
name = "minilm_l6"

[data.vader]
split = [0.0, 0.0, 0.3]

[strategy]
head = "zero_shot"

[strategy.zero_shot]
negative = ["a negative word", "something bad"]
positive = ["a positive word", "something good"]
"#,
    );
    let z = report(&dir.join(run_dir(&ok(&dir, &["extract", "zero.toml"]))));
    let zacc = z["metrics"]["test"]["accuracy"].as_f64().expect("acc");
    assert!(zacc > 0.65, "zero-shot: {zacc}");

    // The per-layer probe: each stage's masked mean token state, a logistic head on each.
    write(
        &dir,
        "probe.toml",
        r#"
[model]
name = "minilm_l6"

[data]
batch_size = 128

[data.vader]
split = [0.2, 0.1, 0.0]
k_shot = 100
"#,
    );
    let p = report(&dir.join(run_dir(&ok(&dir, &["probe", "probe.toml"]))));
    let rows = p["rows"].as_array().expect("rows");
    let stages: Vec<&str> = rows
        .iter()
        .map(|r| r["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(
        stages,
        [
            "embeddings",
            "layer.0",
            "layer.1",
            "layer.2",
            "layer.3",
            "layer.4",
            "layer.5"
        ]
    );
    let top = rows[6]["val_accuracy"].as_f64().expect("acc");
    assert!(top > 0.7, "layer.5 probe: {top}");
    assert!(rows.iter().all(|r| r["dim"] == 384));

    let rows = |pos: &[&str], neg: &[&str]| {
        let mut s = String::from("text,label\n");
        for w in pos {
            s.push_str(&format!("\"{w}\",pos\n"));
        }
        for w in neg {
            s.push_str(&format!("\"{w}\",neg\n"));
        }
        s
    };
    let pos = [
        "wonderful",
        "great day",
        "I love it",
        "superb, truly",
        "delightful",
        "happy",
        "excellent work",
        "brilliant",
    ];
    let neg = [
        "awful",
        "terrible day",
        "I hate it",
        "dreadful, truly",
        "disgusting",
        "sad",
        "horrible work",
        "miserable",
    ];
    write(&dir, "train.csv", &rows(&pos, &neg));
    write(
        &dir,
        "test.csv",
        &rows(&["fantastic", "joyful"], &["horrid", "gloomy"]),
    );
    write(
        &dir,
        "ft.toml",
        r#"
[model]
name = "minilm_l6"

[data]
batch_size = 4

[data.text]
train = "train.csv"
test = "test.csv"

[strategy]
freeze = 5

[train]
epochs = 2
lr = 1e-3
progress = false

[output]
export = true
"#,
    );
    let ft_run = dir.join(run_dir(&ok(&dir, &["finetune", "ft.toml"])));
    let f = report(&ft_run);
    assert_eq!(f["frozen_stages"], 5);
    assert_eq!(f["test"]["samples"], 4);
    assert_eq!(f["history"].as_array().expect("history").len(), 2);
    // The exported encoder is a user model: `graft embed` runs its own (fine-tuned) weights,
    // not the package's, with the package's tokenizer.
    write(&dir, "words.txt", "wonderful\nhorrid\n");
    let embed = |models_dir: Option<&str>, model: &str, out: &str| {
        let mut args: Vec<&str> = Vec::new();
        if let Some(d) = models_dir {
            args.extend(["--models-dir", d]);
        }
        args.extend([
            "embed",
            "--model",
            model,
            "--input",
            "words.txt",
            "--output",
            out,
        ]);
        ok(&dir, &args);
        let a: ndarray::Array2<f32> = ndarray_npy::read_npy(dir.join(out)).expect("npy");
        a
    };
    let base = embed(None, "minilm_l6", "base.npy");
    let tuned = embed(Some(ft_run.to_str().expect("utf-8")), "model", "tuned.npy");
    for i in 0..2 {
        let cos: f32 = base.row(i).dot(&tuned.row(i));
        assert!(
            cos < 0.9999,
            "row {i}: the fine-tuned encoder embeds differently ({cos})"
        );
    }

    let bad = [
        (
            "no_desc.toml",
            "[model]\nname = \"minilm_l6\"\n[data.vader]\n[strategy]\nhead = \"zero_shot\"\n[strategy.zero_shot]\npositive = [\"good\"]\n",
            "no_desc.toml:6:1: zero_shot: class \"negative\" has no description",
        ),
        (
            "image_model.toml",
            "[model]\nname = \"resnet18\"\n[data.vader]\n",
            "image_model.toml:2:8: resnet18 is an image model",
        ),
        (
            "text_model.toml",
            "[model]\nname = \"minilm_l6\"\n[data.digits]\n",
            "text_model.toml:2:8: minilm_l6 is a text model",
        ),
        (
            "reuse.toml",
            "[model]\nname = \"minilm_l6\"\n[data.vader]\n",
            "reuse.toml:3:1: graft reuse works on images",
        ),
    ];
    for (name, text, want) in bad {
        write(&dir, name, text);
        let cmd = if name == "reuse.toml" {
            "reuse"
        } else {
            "extract"
        };
        let out = graft(&dir, &[cmd, name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 18: `graft plan` had drifted from `graft finetune` (with `head = "mlp"` it planned a
/// Linear head that fine-tuning did not train). Both now come from `graft_finetune::prepare`:
/// for each strategy with an MLP head, the plan.txt of `plan` is the plan.txt of `finetune`.
#[test]
fn plan_prints_what_finetune_runs() {
    let dir = tmp("plan-run");
    for kind in ["recipe", "lpft", "gradual"] {
        let extra = if kind == "lpft" {
            "freeze_epochs = 1\n"
        } else {
            ""
        };
        let text = format!(
            "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n[data.digits]\nclasses = [0, 1, 2]\n[strategy]\nkind = \"{kind}\"\nhead = \"mlp\"\nhidden = [16]\n{extra}[train]\nepochs = 1\nprogress = false\n[output]\nname = \"{kind}\"\nexport = false\n"
        );
        write(&dir, &format!("{kind}.toml"), &text);
        let planned = dir.join(run_dir(&ok(&dir, &["plan", &format!("{kind}.toml")])));
        let ran = dir.join(run_dir(&ok(&dir, &["finetune", &format!("{kind}.toml")])));
        let p = std::fs::read_to_string(planned.join("plan.txt")).expect("plan.txt");
        let r = std::fs::read_to_string(ran.join("plan.txt")).expect("plan.txt");
        // the MLP head's two weight tensors are in the plan's head group (a Linear head has one)
        assert!(
            p.lines()
                .any(|l| l.starts_with("head ") && l.split_whitespace().nth(1) == Some("2")),
            "{p}"
        );
        assert_eq!(p, r, "{kind}: graft plan and graft finetune disagree");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
