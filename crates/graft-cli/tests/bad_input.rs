//! Correctness under bad input, end to end through the `graft` binary: each test is named after
//! the defect it pins (a careless user, a corrupted disk or a hostile file), and each failed on
//! the main branch before its fix. docs/robustness.md lists the bad inputs and what each gets.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, graft, ok, run_dir, tmp, write};

use graft_ndarray::NdArray;
use graft_zoo::{ModelOptions, create_model};

/// Command-line words (`"infer --model x"` → `["infer", "--model", "x"]`).
fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

fn report(stdout: &str, dir: &Path) -> serde_json::Value {
    common::report(&dir.join(run_dir(stdout)))
}

/// A small digits model (1 channel) saved as a user model with label names.
fn digits_model(models: &Path, name: &str, labels: &[&str]) {
    let (mut m, _) = create_model(
        &NdArray,
        "resnet18_small",
        &ModelOptions::default()
            .num_classes(labels.len())
            .in_chans(1)
            .seed(5),
    )
    .expect("build");
    m.cfg_mut().labels = Some(labels.iter().map(|s| s.to_string()).collect());
    m.save_user_model(&models.join(name)).expect("save");
}

/// Issue 17.1: a model for digits [0, 1, 2] was scored by index, so `[2, 1, 0]` gave another
/// accuracy on the same images and `[3, 4, 5]` was scored at all.
#[test]
fn eval_scores_by_label_name_not_index() {
    let dir = tmp("eval-names");
    digits_model(&dir.join("models"), "net", &["0", "1", "2"]);
    let exp = |classes: &str| {
        format!(
            "[model]\nname = \"net\"\nmodels_dir = [\"models\"]\nbackend = \"ndarray\"\n[data.digits]\nclasses = {classes}\n"
        )
    };
    write(&dir, "a.toml", &exp("[0, 1, 2]"));
    write(&dir, "b.toml", &exp("[2, 1, 0]"));
    let a = report(&ok(&dir, &["eval", "a.toml"]), &dir);
    let b = report(&ok(&dir, &["eval", "b.toml"]), &dir);
    assert_eq!(a["scored_by"], "name");
    assert_eq!(
        a["test"]["top1"], b["test"]["top1"],
        "same images, same score"
    );
    assert_eq!(a["test"]["per_class"], b["test"]["per_class"]);
    assert_eq!(a["test"]["confusion"], b["test"]["confusion"]);
    assert_eq!(b["classes"], serde_json::json!(["0", "1", "2"]));

    write(&dir, "c.toml", &exp("[3, 4, 5]"));
    let err = fails(&dir, &["eval", "c.toml"]);
    assert!(
        err.contains("c.toml:") && err.contains("3, 4, 5 is not a class of net (0, 1, 2)"),
        "{err}"
    );
    write(&dir, "d.toml", &exp("[0, 1, 5]"));
    let err = fails(&dir, &["eval", "d.toml"]);
    assert!(err.contains("5 is not a class of net"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn npy_f32(path: &Path, shape: &[usize], fill: f32) {
    let n: usize = shape.iter().product();
    let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), vec![fill; n]).expect("array");
    ndarray_npy::write_npy(path, &a).expect("npy");
}

/// Issue 17.6: `graft infer --weights W --output W` replaced the weights with the logits; an
/// output equal to the input likewise. Refused before any work, the file untouched.
#[test]
fn an_output_never_replaces_an_input() {
    let dir = tmp("out-over-in");
    digits_model(&dir.join("models"), "net", &["a", "b", "c"]);
    let weights = dir.join("models/net/model.safetensors");
    let before = std::fs::read(&weights).expect("weights");
    let input = dir.join("x.npy");
    npy_f32(&input, &[2, 1, 8, 8], 0.5);
    let base = ["infer", "--model", "net", "--models-dir", "models"];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--input", "x.npy", "--output", "x.npy"],
            "read as --input",
        ),
        (
            &words(
                "--weights models/net/model.safetensors --input x.npy --output models/net/model.safetensors",
            )[..],
            "read as --weights",
        ),
        // the user model's own files, even unnamed on the command line, by another path
        (
            &words("--input x.npy --output models/../models/net/config.json")[..],
            "net's files",
        ),
        (
            &["--input", "x.npy", "--output", "models"],
            "is a directory",
        ),
    ];
    for (args, want) in cases {
        let mut all: Vec<&str> = base.to_vec();
        all.splice(1..1, ["--backend", "ndarray"]);
        all.extend_from_slice(args);
        let err = fails(&dir, &all);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&weights).expect("weights"), before);
    assert!(std::fs::read(&input).expect("x").len() > 8 * 8 * 8);
    // a separate output works
    let mut all: Vec<&str> = base.to_vec();
    all.extend_from_slice(&words("--backend ndarray --input x.npy --output y.npy")[..]);
    ok(&dir, &all);
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("y.npy")).expect("y");
    assert_eq!(y.shape(), &[2, 3]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17.9: `graft models | head` panicked on the closed pipe. It ends quietly.
#[test]
fn a_closed_stdout_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["models", "--pretrained"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader goes away before graft writes
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

/// Issue 17.11 (the CLI's part): `--batch-size 0` and `--top 0` are refused, not read as 1.
#[test]
fn zero_counts_on_the_command_line_are_refused() {
    let dir = tmp("zero-counts");
    for args in [
        &words("embed --model minilm_l6 --input t.txt --output e.npy --batch-size 0")[..],
        &words("infer --model resnet18 --input x.npy --output y.npy --batch-size 0")[..],
        &["predict", "--model", "resnet18", "--top", "0", "a.png"],
    ] {
        let out = graft(&dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("0 is not in 1.."), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17.11: values out of range were caught late, unlocated, or not at all (`epochs = 0`
/// exported an untrained head, `batch_size = 0` ran with 1, `output.name = "../../x"` wrote
/// outside `output.dir`). Each is one `FILE:LINE:COL` error, exit 2, before any work.
#[test]
fn out_of_range_values_are_located_errors_before_any_work() {
    let dir = tmp("ranges");
    let head = "[model]\nname = \"resnet18_small\"\ninit = \"random\"\n";
    let digits = "[data.digits]\nclasses = [0, 1, 2]\n";
    // (file text, the key = value at fault, the message)
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{head}{digits}[train]\nepochs = 0\n"),
            "epochs = 0",
            "0: must be at least 1",
        ),
        (
            format!("{head}[data]\nbatch_size = 0\n{digits}"),
            "batch_size = 0",
            "0: must be at least 1",
        ),
        (
            format!("{head}[data.digits]\nclasses = [1, 1, 2]\n"),
            "classes = [1, 1, 2]",
            "digit class 1 is listed twice",
        ),
        (
            format!("{head}[data.digits]\nk_shot = 0\n"),
            "k_shot = 0",
            "0: must be at least 1",
        ),
        (
            format!("{head}{digits}[train]\nlr = 0.0\n"),
            "lr = 0.0",
            "0: must be finite and > 0",
        ),
        (
            format!("{head}{digits}[train]\nlr = -1e-3\n"),
            "lr = -1e-3",
            "-0.001: must be finite and > 0",
        ),
        (
            format!("{head}{digits}[train]\nlr = nan\n"),
            "lr = nan",
            "NaN: must be finite and > 0",
        ),
        (
            format!("{head}{digits}[train]\nweight_decay = -0.1\n"),
            "weight_decay = -0.1",
            "-0.1: must be finite and >= 0",
        ),
        (
            format!("{head}{digits}[train]\nlabel_smoothing = 1.0\n"),
            "label_smoothing = 1.0",
            "1: must be in [0, 1)",
        ),
        (
            format!("{head}{digits}[strategy]\nfreeze = 9\n"),
            "freeze = 9",
            "freeze = 9 leaves nothing to train: resnet18_small has 6 stages",
        ),
        (
            format!("{head}in_chans = 0\n{digits}"),
            "in_chans = 0",
            "0: must be 1 to 4096",
        ),
        (
            format!("{head}num_classes = 100000000000\n{digits}"),
            "num_classes = 100000000000",
            "100000000000: must be 1 to 1048576",
        ),
        (
            format!("{head}[data]\nimg_size = 60000\n{digits}"),
            "img_size = 60000",
            "60000: must be 1 to 16384",
        ),
        (
            format!("{head}{digits}[output]\nname = \"../../x\"\n"),
            "name = \"../../x\"",
            "\"../../x\": a run name is one directory name",
        ),
        (
            format!("{head}{digits}[strategy]\nkind = \"lpft\"\npct_start = 1.5\n"),
            "pct_start = 1.5",
            "pct_start 1.5: must be in (0, 1)",
        ),
        (
            format!("{head}{digits}[train]\naccumulate = 0\n"),
            "accumulate = 0",
            "0: must be at least 1",
        ),
        (
            format!("{head}{digits}[strategy]\npatience = 0\n"),
            "patience = 0",
            "patience 0: must be at least 1 epoch",
        ),
        (
            format!("{head}{digits}[strategy]\nhead = \"mlp\"\ndropout = 1.0\n"),
            "dropout = 1.0",
            "1: must be in [0, 1)",
        ),
    ];
    for (i, (text, at, want)) in cases.iter().enumerate() {
        let name = format!("case{i}.toml");
        write(&dir, &name, text);
        let line = text.lines().position(|l| l == *at).expect("the key's line") + 1;
        let col = at.find(" = ").expect("key = value") + 4;
        let out = graft(&dir, &["finetune", &name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}\n{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let want = format!("error: {name}:{line}:{col}: {want}");
        assert!(err.starts_with(&want), "{text}\nwant {want}\ngot  {err}");
    }
    assert!(!dir.join("runs").exists(), "nothing ran, no run directory");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17.2: sizes read from files were trusted and the process aborted ("memory allocation
/// of N bytes failed", exit 134, no file named). Each is now an error naming the file and key.
#[test]
fn sizes_from_files_are_checked_before_allocating() {
    let dir = tmp("sizes");
    npy_f32(&dir.join("x.npy"), &[1, 3, 8, 8], 0.5);
    // a 96-byte safetensors whose head claims 2^40 classes (zero elements: the offsets hold)
    let header = r#"{"fc.weight":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    std::fs::write(dir.join("bomb.safetensors"), &st).expect("write");
    let args = words(
        "infer --backend ndarray --model resnet18 --input x.npy --output y.npy --lenient --weights bomb.safetensors",
    );
    let err = fails(&dir, &args);
    assert!(
        err.contains("bomb.safetensors") && err.contains("fc.weight [1099511627776, 0]"),
        "{err}"
    );
    // a 200-byte .npy declaring a huge shape
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 3, 3), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let text = format!("{dict}{}\n", " ".repeat(pad));
    npy.extend_from_slice(&(text.len() as u16).to_le_bytes());
    npy.extend_from_slice(text.as_bytes());
    npy.extend_from_slice(&[0u8; 64]);
    std::fs::write(dir.join("huge.npy"), &npy).expect("write");
    let err = fails(
        &dir,
        &words(
            "infer --backend ndarray --model resnet18 --init random --input huge.npy --output y.npy",
        )[..],
    );
    assert!(
        err.contains("huge.npy")
            && err.contains("[100000, 100000, 3, 3]")
            && err.contains("64 bytes"),
        "{err}"
    );
    // a user model's config.json with absurd sizes
    digits_model(&dir.join("models"), "net", &["a", "b"]);
    let cfg_path = dir.join("models/net/config.json");
    let good = std::fs::read_to_string(&cfg_path).expect("config");
    let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
    let edits: [(&str, serde_json::Value, &str); 4] = [
        (
            "in_chans",
            serde_json::json!(1_000_000_000u64),
            "in_chans: 1000000000: 1 to 4096",
        ),
        (
            "input_size",
            serde_json::json!([1, 100000, 100000]),
            "pretrained_cfg.input_size: [1, 100000, 100000]",
        ),
        (
            "crop_pct",
            serde_json::json!(0.0),
            "pretrained_cfg.crop_pct: 0: a fraction in (0, 4]",
        ),
        (
            "std",
            serde_json::json!([0.0, 0.0, 0.0]),
            "pretrained_cfg.std: [0.0, 0.0, 0.0]: every value finite and > 0",
        ),
    ];
    for (key, value, want) in edits {
        let mut bad = v.clone();
        if key == "in_chans" {
            bad[key] = value;
        } else {
            bad["pretrained_cfg"][key] = value;
        }
        std::fs::write(&cfg_path, serde_json::to_string(&bad).expect("json")).expect("write");
        let err = fails(
            &dir,
            &words(
                "infer --backend ndarray --models-dir models --model net --input x.npy --output y.npy",
            )[..],
        );
        assert!(
            err.contains("config.json") && err.contains(want),
            "{key}: {err}"
        );
    }
    v["num_classes"] = serde_json::json!(2);
    std::fs::write(&cfg_path, serde_json::to_string(&v).expect("json")).expect("write");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fuzzing the experiment file through the binary (`graft plan`: parse, validate, build the
/// model and the data, plan — no training): mutated copies of the seeds in `tests/fuzz/` for a
/// bounded time (`GRAFT_FUZZ_SECS`, default 6). Every run ends with exit 0, 1 or 2 — never a
/// panic or a signal.
#[test]
fn fuzz_experiment_files() {
    use rand::{RngExt, SeedableRng};
    let seeds_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut seeds: Vec<String> = std::fs::read_dir(&seeds_dir)
        .expect("seeds")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("seed"))
        .collect();
    seeds.sort();
    const VALUES: [&str; 14] = [
        "0",
        "-1",
        "1e308",
        "nan",
        "-inf",
        "18446744073709551616",
        "99999999999",
        "\"\"",
        "\"../x\"",
        "[]",
        "[1, 1]",
        "{}",
        "true",
        "\"auto\"",
    ];
    let secs: f64 = std::env::var("GRAFT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0);
    let dir = tmp("fuzz-toml");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let t0 = std::time::Instant::now();
    let mut runs = 0;
    let mut by_code = std::collections::BTreeMap::new();
    while t0.elapsed().as_secs_f64() < secs {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
        for _ in 0..rng.random_range(1..=3) {
            let i = rng.random_range(0..lines.len());
            match rng.random_range(0..5) {
                0 => {
                    // a value replaced by an extreme or ill-typed one
                    if let Some((k, _)) = lines[i].split_once(" = ") {
                        lines[i] = format!("{k} = {}", VALUES[rng.random_range(0..VALUES.len())]);
                    }
                }
                1 => {
                    lines.remove(i);
                    if lines.is_empty() {
                        lines.push(String::new());
                    }
                }
                2 => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                3 => {
                    let l = &mut lines[i];
                    if !l.is_empty() {
                        let at = rng.random_range(0..l.len());
                        if l.is_char_boundary(at) {
                            l.insert(
                                at,
                                ['[', ']', '"', '=', '.', '#', '\\', 'x'][rng.random_range(0..8)],
                            );
                        }
                    }
                }
                _ => {
                    let other = &seeds[rng.random_range(0..seeds.len())];
                    let ol: Vec<&str> = other.lines().collect();
                    lines.insert(i, ol[rng.random_range(0..ol.len())].to_string());
                }
            }
        }
        let text = lines.join("\n") + "\n";
        write(&dir, "exp.toml", &text);
        let out = graft(&dir, &["plan", "exp.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0..=2)) && !err.contains("panicked"),
            "graft plan on\n{text}\nended with {:?}:\n{err}",
            out.status
        );
        *by_code.entry(out.status.code()).or_insert(0) += 1;
        runs += 1;
    }
    eprintln!("{runs} mutated experiment files, exit codes {by_code:?}");
    assert!(runs > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
