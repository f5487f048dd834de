//! Shared by the examples: a source model to transfer from, trained here on real digits.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use graft::Tch;
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, stratified_split};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{History, Schedule, TrainConfig, Trainer};
use graft::zoo::{Model, ModelOptions, create_model};

/// Runs this example again as a child with `MKL_CBWR=COMPATIBLE` and exits with its status,
/// unless that is already set: MKL's conditional numerical reproducibility must be on before
/// libtorch loads, or MKL picks alignment-dependent kernels and a second run differs.
pub fn rerun_with_reproducible_mkl() -> Result<()> {
    if std::env::var_os("MKL_CBWR").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("MKL_CBWR", "COMPATIBLE")
        .status()
        .map_err(|e| anyhow::anyhow!("re-run with MKL_CBWR=COMPATIBLE: {e}"))?;
    std::process::exit(status.code().unwrap_or(1));
}

/// Trains every parameter of `m` from its current weights with the studies' from-scratch recipe:
/// AdamW 3e-3, weight decay 0.05, label smoothing 0.1, one-cycle; `curve` is evaluated after
/// each epoch.
pub fn train_from_scratch(
    m: &mut Model<Tch>,
    train: &Loader,
    epochs: usize,
    seed: u64,
    curve: Option<&Loader>,
) -> Result<History> {
    let plan = Plan::new(
        m,
        &FreezeConfig::none(),
        &LrConfig::adamw(3e-3).weight_decay(0.05),
    )?;
    let mut cfg = TrainConfig::new(epochs);
    cfg.schedule = Schedule::one_cycle();
    cfg.label_smoothing = 0.1;
    cfg.seed = seed;
    cfg.progress = false;
    Ok(Trainer::new(cfg, plan.apply(m)?, plan.modes().clone()).fit(m, train, curve)?)
}

/// Writes `body` as the section `name` of the Markdown file `path` (between
/// `<!-- begin name -->` and `<!-- end name -->`): replaces that section when the file has it,
/// appends it otherwise, and leaves every other section as it was (two studies share
/// docs/results.md).
pub fn write_section(path: &std::path::Path, name: &str, body: &str) -> Result<()> {
    let (begin, end) = (
        format!("<!-- begin {name} -->"),
        format!("<!-- end {name} -->"),
    );
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(anyhow::anyhow!("read {}: {e}", path.display())),
    };
    let block = format!("{begin}\n{}\n{end}\n", body.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            let tail = old[b + end.len()..].trim_start_matches('\n');
            format!("{}{block}{tail}", &old[..a])
        }
        _ if old.trim().is_empty() => block,
        _ => format!("{}\n\n{block}", old.trim_end()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new).map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))
}

/// Mean and sample standard deviation (n − 1; 0 for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Where the examples keep what they make (under the target dir).
pub fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/graft-examples")
}

/// The real digits, split in two stratified halves: sources train on the first.
pub struct Halves {
    pub digits: Arc<dyn Dataset>,
    pub first: Vec<usize>,
    pub second: Vec<usize>,
}

pub fn digits_halves() -> Result<Halves> {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let mut parts = stratified_split(&digits.labels(), &[0.5, 0.5], 0)?;
    let second = parts.pop().unwrap_or_default();
    let first = parts.pop().unwrap_or_default();
    Ok(Halves {
        digits,
        first,
        second,
    })
}

/// `resnet18_small` trained from scratch on the first half of the digits of `classes`, saved as
/// the user model `work_dir()/name` (reused when it is already there).
pub fn digits_source(name: &str, classes: &[usize]) -> Result<PathBuf> {
    let dir = work_dir().join(name);
    if dir.join("model.safetensors").exists() && dir.join("config.json").exists() {
        return Ok(dir);
    }
    let Halves { digits, first, .. } = digits_halves()?;
    let train = Loader::new(
        Arc::new(Subset::with_classes(digits.clone(), first, classes)?),
        LoaderConfig::train(32).seed(1),
    )?;
    let opts = ModelOptions::default()
        .num_classes(classes.len())
        .in_chans(1);
    let (mut model, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(3e-3))?;
    let mut cfg = TrainConfig::new(4);
    cfg.schedule = Schedule::one_cycle();
    cfg.progress = false;
    Trainer::new(cfg, plan.apply(&model)?, plan.modes().clone()).fit(&mut model, &train, None)?;
    // what the model sees: 8x8 one-channel values in [0, 1], no normalisation
    let c = model.cfg_mut();
    c.input_size = [1, 8, 8];
    c.mean = [0.0; 3];
    c.std = [1.0; 3];
    c.crop_pct = 1.0;
    c.labels = Some(classes.iter().map(|d| d.to_string()).collect());
    model.save_user_model(&dir)?;
    eprintln!(
        "trained the source {name} on digits {classes:?}: {}",
        dir.display()
    );
    Ok(dir)
}
