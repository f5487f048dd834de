//! Fine-tuning from an image folder: digits 5–9 written as PNG files (20 per class to train, the
//! held-out half to validate), a source trained on digits 0–4 adapted from one input channel to
//! RGB, and the classic recipe with the freeze depth chosen by the linear probe.
//!
//! cargo run --example finetune_imagefolder

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use graft::Tch;
use graft::data::{Dataset, ImageFolder, Loader, LoaderConfig, k_shot};
use graft::finetune::{FineTuneOptions, Recipe, Strategy, fine_tune};
use graft::train::evaluate;
use graft::zoo::{ModelOptions, Registry};

/// Writes `indices` of the digits as `root/<digit>/<index>.png` (8x8 gray, 0-16 → 0-255).
fn write_folder(digits: &dyn Dataset, indices: &[usize], root: &Path) -> Result<()> {
    for &i in indices {
        let s = digits.get(i)?.into_image("write_folder")?;
        if s.label < 5 {
            continue;
        }
        let dir = root.join(s.label.to_string());
        std::fs::create_dir_all(&dir)?;
        let px: Vec<u8> = s.data.iter().map(|v| (v * 255.0).round() as u8).collect();
        image::GrayImage::from_raw(8, 8, px)
            .context("an 8x8 image")?
            .save(dir.join(format!("{i}.png")))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let source = common::digits_source("digits04", &[0, 1, 2, 3, 4])?;
    let common::Halves {
        digits,
        first,
        second,
    } = common::digits_halves()?;
    let root = common::work_dir().join("digits59-folder");
    let _ = std::fs::remove_dir_all(&root);
    write_folder(
        digits.as_ref(),
        &k_shot(&digits.labels(), &first, 20, 0)?,
        &root.join("train"),
    )?;
    write_folder(digits.as_ref(), &second, &root.join("val"))?;

    // the route: an ImageFolder, the source adapted to RGB, the recipe with freeze = auto
    let train = Loader::new(
        Arc::new(ImageFolder::new(&root.join("train"))?),
        LoaderConfig::train(10),
    )?;
    let val = Loader::new(
        Arc::new(ImageFolder::new(&root.join("val"))?),
        LoaderConfig::eval(256),
    )?;
    let mut reg = Registry::builtin();
    let name = reg.register_dir(&source, None)?;
    let (mut model, _) = reg.create(
        &Tch::cpu(),
        &name,
        &ModelOptions::default().num_classes(5).in_chans(3),
    )?;
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.cache_dir = Some(common::work_dir().join("feature-cache"));
    let recipe = Recipe {
        epochs: 10,
        ..Recipe::default()
    };
    let report = fine_tune(
        &mut model,
        5,
        &train,
        Some(&val),
        &Strategy::Recipe(recipe),
        &opts,
    )?;

    if let Some(p) = &report.probe {
        println!("{p}\n");
    }
    for e in &report.history.epochs {
        let v = e.val.as_ref().map_or(f64::NAN, |m| m.top1);
        println!(
            "epoch {:>2}  train loss {:.4}  val top-1 {:.2} %",
            e.epoch,
            e.train_loss,
            100.0 * v
        );
    }
    let m = evaluate(&model, &val, &graft::Ctx::eval())?;
    println!(
        "{name} -> digits 5-9 from {} PNG files ({} per class): val top-1 {:.2} % on {} images",
        train.dataset().len(),
        train.dataset().len() / 5,
        100.0 * m.top1,
        m.samples
    );
    let out = common::work_dir().join("digits59-finetuned");
    model.save_user_model(&out)?;
    println!("saved: {}", out.display());
    Ok(())
}
