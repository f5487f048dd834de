//! Feature extraction's promise, measured: 50 epochs of head training on cached features against
//! one trunk pass over the same data, side by side. Each round runs A (the trunk over every image,
//! as `extract` does on a cache miss) then B (a Linear head trained by the Trainer for 50 epochs
//! on the cached pooled features, graft-tch) then C (the logistic head, linfa's L-BFGS); best and
//! median of N rounds are reported with the ratios B/A and C/A.
//!
//! cargo bench --bench head_training -- [N] [MODEL] (default: 5 resnet18_small, on the 1797 real
//! digits at their 8x8 size; trunk batches of 64, the head's defaults: `HeadTraining::linear`)

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig};
use graft::extract::{
    FeatureSpec, HeadTraining, LogisticConfig, LogisticHead, extract, train_head,
};
use graft::zoo::{ModelOptions, create_model};
use graft::{Backend, Ctx, Tch};

fn stats(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().map_or(Ok(5), |s| s.parse()).context("N")?;
    let name = args.get(1).map_or("resnet18_small", String::as_str);
    let b = Tch::cpu();
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let loader = Loader::new(digits, LoaderConfig::eval(64))?;
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, name, &opts)?;
    let cache = std::env::temp_dir().join(format!("graft-bench-{}", std::process::id()));
    let (features, _) = extract(&model, &loader, &FeatureSpec::Pooled, &cache)?;
    let mut how = HeadTraining::linear(50);
    how.train.progress = false;
    let (mut trunk, mut head, mut logistic) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..n {
        let t = Instant::now();
        for batch in loader.epoch(0) {
            let x = b.from_data(&batch?.images)?;
            let y = model.forward_pooled(&x, &Ctx::eval())?;
            b.to_data(&y)?;
        }
        trunk.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        how.seed = round as u64;
        let h = train_head(&mut model, &features, None, &how)?;
        head.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        LogisticHead::fit(&features, 10, &LogisticConfig::default())?;
        logistic.push(t.elapsed().as_secs_f64());
        eprintln!(
            "round {round}: trunk pass {:.3} s, 50 head epochs {:.3} s ({} steps, last loss {:.4}), logistic {:.3} s",
            trunk[round],
            head[round],
            h.steps.len(),
            h.epochs.last().map_or(f64::NAN, |e| e.train_loss),
            logistic[round]
        );
    }
    let (ta, tm) = stats(&trunk);
    let (ha, hm) = stats(&head);
    let (la, lm) = stats(&logistic);
    println!(
        "{name}, {} digits 8x8, trunk batches of 64, head batches of {}, {} threads, {n} rounds (best / median):",
        features.n,
        how.batch_size,
        Tch::num_threads()
    );
    println!("| | best | median | / trunk pass (best, median) |\n|---|---|---|---|");
    println!("| one trunk pass | {ta:.3} s | {tm:.3} s | 1 |");
    println!(
        "| 50 epochs, Linear head (Trainer, tch) | {ha:.3} s | {hm:.3} s | {:.2}, {:.2} |",
        ha / ta,
        hm / tm
    );
    println!(
        "| logistic head (linfa L-BFGS) | {la:.3} s | {lm:.3} s | {:.2}, {:.2} |",
        la / ta,
        lm / tm
    );
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
