//! The training loop on graft-tch: a run (with mixup / cutmix, accumulation, clipping, EMA)
//! killed with SIGKILL mid-epoch and resumed ends
//! bit-identical to an uninterrupted one (weights and every metrics line but wall-clock fields);
//! a diverging run stops on the first non-finite loss with a usable last checkpoint.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Mixup, Subset, stratified_split};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{Callback, Checkpoint, Control, Schedule, StepRecord, TrainConfig, Trainer};
use graft::zoo::{ModelOptions, create_model};
use graft::{Error, Tch};

const CHILD: &str = "GRAFT_TRAIN_CHILD";

fn loaders() -> (Loader, Loader) {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.2, 0.05, 0.75], 0).expect("split");
    let train = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone()).expect("s")),
        LoaderConfig::train(32).seed(4),
    )
    .expect("l");
    let val = Loader::new(
        Arc::new(Subset::new(digits, parts[1].clone()).expect("s")),
        LoaderConfig::eval(128),
    )
    .expect("l");
    (train, val)
}

struct KillAt(usize);
impl Callback for KillAt {
    fn on_step(&mut self, r: &StepRecord) -> Control {
        if r.step == self.0 {
            let pid = std::process::id().to_string();
            let _ = Command::new("kill").args(["-9", &pid]).status();
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        Control::Continue
    }
}

/// One training run in this process: 2 epochs of resnet18_small on 359 digits, checkpoints
/// every 4 steps, optionally killing itself after step `kill_at`.
fn run(dir: &Path, kill_at: Option<usize>) {
    let (train, val) = loaders();
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(
        &model,
        &FreezeConfig::freeze_to(1),
        &LrConfig::adamw(2e-3).slice(2e-4, 2e-3),
    )
    .expect("plan");
    let opt = plan.apply(&model).expect("apply");
    let mut cfg = TrainConfig::new(2);
    cfg.seed = 11;
    cfg.accumulate = 2;
    cfg.clip_grad_norm = Some(5.0);
    cfg.ema_decay = Some(0.9);
    cfg.label_smoothing = 0.1;
    cfg.mixup = Some(Mixup::default());
    cfg.schedule = Schedule::Cosine {
        warmup: 2,
        min_factor: 0.01,
    };
    cfg.checkpoint_every = Some(2);
    cfg.run_dir = Some(dir.to_path_buf());
    cfg.resume = true;
    let mut t = Trainer::new(cfg, opt, plan.modes().clone());
    if let Some(k) = kill_at {
        t = t.with_callback(Box::new(KillAt(k)));
    }
    t.fit(&mut model, &train, Some(&val)).expect("fit");
}

fn child(dir: &Path, kill_at: Option<usize>) -> std::process::ExitStatus {
    let exe = std::env::current_exe().expect("test binary");
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        "resume_after_sigkill_is_bit_identical",
        "--nocapture",
    ])
    .env(CHILD, dir)
    .env(
        "GRAFT_KILL_AT",
        kill_at.map_or(String::new(), |k| k.to_string()),
    )
    // MKL's documented run-to-run variation off (alignment-dependent kernels, a dynamic thread
    // count): every run here is a child with the same settings, so they compare bit for bit
    .env("MKL_DYNAMIC", "FALSE")
    .env("MKL_CBWR", "COMPATIBLE");
    c.status().expect("spawn child")
}

fn metrics_without_clock(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
            if let serde_json::Value::Object(m) = &mut v {
                m.remove("time_s");
                m.remove("img_per_s");
            }
            v
        })
        .collect()
}

#[test]
fn resume_after_sigkill_is_bit_identical() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let kill = std::env::var("GRAFT_KILL_AT")
            .ok()
            .and_then(|s| s.parse().ok());
        run(Path::new(&dir), kill);
        return;
    }
    let root = std::env::temp_dir().join(format!("graft-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (full, cut) = (root.join("full"), root.join("cut"));
    assert!(child(&full, None).success(), "uninterrupted run");
    // 359 images / 32 = 12 batches per epoch, 2 per step: 6 steps an epoch. Kill after step 9
    // (epoch 1, mid-epoch; last checkpoint at step 8).
    let status = child(&cut, Some(9));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the run should die by SIGKILL, got {status:?}"
        );
    }
    let ck =
        Checkpoint::load(&cut.join("checkpoint.safetensors")).expect("checkpoint after the kill");
    assert_eq!((ck.step, ck.epoch), (8, 1));
    assert!(ck.batch > 0, "mid-epoch");
    assert!(child(&cut, None).success(), "resumed run");
    let a = Checkpoint::load(&full.join("checkpoint.safetensors")).expect("full");
    let b = Checkpoint::load(&cut.join("checkpoint.safetensors")).expect("resumed");
    assert_eq!(a.step, 12);
    assert_eq!(b.step, a.step);
    assert_eq!(a.model.len(), b.model.len());
    for (name, t) in &a.model {
        assert_eq!(Some(t), b.model.get(name), "{name} differs after resume");
    }
    assert_eq!(a.ema, b.ema, "EMA weights differ");
    assert_eq!(a.optimizer, b.optimizer, "optimizer state differs");
    let resolved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(full.join("config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(resolved["train"]["epochs"], 2);
    assert_eq!(resolved["train"]["accumulate"], 2);
    assert_eq!(resolved["architecture"], "resnet18_small");
    for d in [&full, &cut] {
        let png = std::fs::read(d.join("curves.png")).expect("curves.png");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "a real PNG"
        );
    }
    let h = graft::train::History::from_metrics(&cut.join("metrics.jsonl")).expect("history");
    assert_eq!((h.steps.len(), h.epochs.len()), (12, 2));
    let (ma, mb) = (metrics_without_clock(&full), metrics_without_clock(&cut));
    assert_eq!(ma.len(), 12 + 2);
    assert_eq!(ma, mb);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn non_finite_loss_stops_with_a_usable_last_checkpoint() {
    let dir = std::env::temp_dir().join(format!("graft-train-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (train, _) = loaders();
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::sgd(1e6)).expect("plan");
    let opt = plan.apply(&model).expect("apply");
    let mut cfg = TrainConfig::new(3);
    cfg.checkpoint_every = Some(1);
    cfg.run_dir = Some(dir.clone());
    let mut t = Trainer::new(cfg, opt, plan.modes().clone());
    let err = t
        .fit(&mut model, &train, None)
        .expect_err("an absurd LR must diverge");
    let msg = err.to_string();
    assert!(matches!(err, Error::Training(_)), "{msg}");
    assert!(
        msg.contains("non-finite") || msg.contains("loss is"),
        "{msg}"
    );
    assert!(
        msg.contains("checkpoint.safetensors") && msg.contains("kept untouched"),
        "{msg}"
    );
    let ck =
        Checkpoint::load(&dir.join("checkpoint.safetensors")).expect("last good checkpoint loads");
    assert!(ck.step >= 1, "{msg}");
    for (name, t) in &ck.model {
        assert!(
            t.to_f64().iter().all(|v| v.is_finite()),
            "{name} is not finite in the last good checkpoint"
        );
    }
    // the last good checkpoint loads back into a model, every tensor applied
    let (mut fresh, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let r = fresh
        .load_tensors(
            &dir.join("checkpoint.safetensors"),
            &ck.model,
            &Default::default(),
        )
        .expect("load the checkpoint's weights");
    assert!(
        r.is_clean() && r.applied.len() == fresh.params().len(),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lr_finder_sweeps_stops_on_divergence_and_restores_the_model() {
    let (train, _) = loaders();
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(
        &model,
        &FreezeConfig::none(),
        &LrConfig::sgd(1.0).slice(0.1, 1.0),
    )
    .expect("plan");
    let opt = plan.apply(&model).expect("apply");
    let before = model.params().to_data().expect("snapshot");
    let cfg = graft::train::LrFinder {
        start_lr: 1e-5,
        end_lr: 1e4,
        steps: 40,
        ..Default::default()
    };
    let r = graft::train::lr_find(&mut model, &opt, plan.modes(), &train, &cfg).expect("lr_find");
    assert!(r.diverged, "an LR of 1e4 must diverge: {r:?}");
    assert!(
        r.lrs.len() >= 5 && r.lrs.len() < 40,
        "{} steps",
        r.lrs.len()
    );
    for w in r.lrs.windows(2) {
        let ratio = w[1] / w[0];
        assert!(
            (ratio - (1e9f64).powf(1.0 / 39.0)).abs() < 1e-9,
            "geometric sweep"
        );
    }
    let s = r.steepest.expect("a suggestion");
    assert!(s >= 1e-5 && s < r.lrs[r.lrs.len() - 1], "{s}");
    assert!(r.min_div_10.is_some());
    assert_eq!(
        model.params().to_data().expect("after"),
        before,
        "the model is restored"
    );
    assert_eq!(
        opt.param_step("conv1.weight"),
        0,
        "the caller's optimizer is untouched"
    );
}

#[test]
fn early_stopping_stops_after_patience_and_data_config_follows_the_cfg() {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.05, 0.05, 0.9], 1).expect("split");
    let train = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone()).expect("s")),
        LoaderConfig::train(32),
    )
    .expect("l");
    let val = Loader::new(
        Arc::new(Subset::new(digits, parts[1].clone()).expect("s")),
        LoaderConfig::eval(128),
    )
    .expect("l");
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(1e-3)).expect("plan");
    let mut cfg = TrainConfig::new(6);
    // an improvement of 10 in validation loss never happens: stop after epoch 1 + patience 2
    cfg.early_stopping = Some(graft::train::EarlyStopping {
        monitor: graft::train::Monitor::ValLoss,
        patience: 2,
        min_delta: 10.0,
    });
    let dir = std::env::temp_dir().join(format!("graft-train-stopped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cfg.run_dir = Some(dir.clone());
    cfg.resume = true;
    cfg.progress = false;
    let mut t = Trainer::new(
        cfg.clone(),
        plan.apply(&model).expect("apply"),
        plan.modes().clone(),
    );
    let h = t.fit(&mut model, &train, Some(&val)).expect("fit");
    assert!(h.stopped_early);
    assert_eq!(h.epochs.len(), 3);
    // resuming a run that stopped early trains nothing more and reports the whole run (issue 17)
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    let mut again = Trainer::new(
        cfg,
        plan.apply(&model).expect("apply"),
        plan.modes().clone(),
    );
    let h2 = again.fit(&mut model, &train, Some(&val)).expect("resume");
    assert!(h2.stopped_early);
    assert_eq!(h2.epochs, h.epochs, "the whole run, from metrics.jsonl");
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        lines,
        "no epoch ran"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (vit, _) = create_model(&b, "vit_tiny_patch16_224", &ModelOptions::default()).expect("vit");
    let dc = graft::train::data_config(vit.cfg());
    assert_eq!(
        (dc.crop_pct, dc.mean.clone(), dc.input_size),
        (0.9, vec![0.5; 3], [3, 224, 224])
    );
}
