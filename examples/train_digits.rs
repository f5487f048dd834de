//! Trains `resnet18_small` from scratch on scikit-learn's real handwritten digits (stratified
//! 80 / 20 split) on graft-tch and reports test accuracy and wall time.
//!
//! cargo run --release --example train_digits -- [EPOCHS] [RUN_DIR]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, stratified_split};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{Schedule, TrainConfig, Trainer, evaluate};
use graft::zoo::{ModelOptions, create_model};
use graft::{Ctx, Tch};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args
        .first()
        .map_or(Ok(8), |s| s.parse())
        .context("EPOCHS")?;
    let t0 = Instant::now();
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.8, 0.2], 0)?;
    let train = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone())?),
        LoaderConfig::train(32).seed(1),
    )?;
    let test = Loader::new(
        Arc::new(Subset::new(digits, parts[1].clone())?),
        LoaderConfig::eval(256),
    )?;
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts)?;
    let plan = Plan::new(
        &model,
        &FreezeConfig::none(),
        &LrConfig::adamw(3e-3).weight_decay(0.05),
    )?;
    let opt = plan.apply(&model)?;
    let mut cfg = TrainConfig::new(epochs);
    cfg.schedule = Schedule::OneCycle {
        pct_start: 0.25,
        div: 25.0,
        final_div: 1e4,
        momentum: None,
    };
    cfg.label_smoothing = 0.1;
    cfg.run_dir = args.get(1).map(Into::into);
    let mut trainer = Trainer::new(cfg, opt, plan.modes().clone());
    let history = trainer.fit(&mut model, &train, Some(&test))?;
    for e in &history.epochs {
        let v = e.val.as_ref().map_or(f64::NAN, |m| m.top1);
        println!(
            "epoch {:>2}  train loss {:.4}  test top-1 {:.2} %  ({:.0} img/s)",
            e.epoch,
            e.train_loss,
            100.0 * v,
            e.img_per_s
        );
    }
    let m = evaluate(&model, &test, &Ctx::eval())?;
    println!(
        "resnet18_small on digits, {} train / {} test images, {epochs} epochs: test top-1 {:.2} % in {:.1} s ({} threads)",
        train.dataset().len(),
        m.samples,
        100.0 * m.top1,
        t0.elapsed().as_secs_f64(),
        Tch::num_threads()
    );
    Ok(())
}
