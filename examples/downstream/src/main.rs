//! Fine-tune a pretrained model on a folder of images with the classic recipe.
//!
//! usage: graft-downstream MODEL DATA_DIR
//!   MODEL     a pretrained tag (`resnet50.a1_in1k`: fetched once into the Hub cache) or a
//!             model directory (`model.safetensors` + `config.json`)
//!   DATA_DIR  `train/<class>/*.jpg` and `val/<class>/*.jpg`
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use graft::Tch;
use graft::data::transform::{eval_transform, train_transform};
use graft::data::{Dataset, ImageFolder, Loader, LoaderConfig};
use graft::finetune::{FineTuneOptions, Recipe, Strategy, fine_tune};
use graft::train::data_config;
use graft::zoo::{ModelOptions, Registry};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data] = &args[..] else {
        anyhow::bail!("usage: graft-downstream MODEL DATA_DIR");
    };
    let data = PathBuf::from(data);
    let mut reg = Registry::builtin();
    let name = match Path::new(model).is_dir() {
        true => reg.register_dir(Path::new(model), None)?,
        false => model.clone(),
    };
    let train = ImageFolder::new(&data.join("train"))?;
    let classes = train.classes().to_vec();
    let opts = ModelOptions::default()
        .pretrained(true)
        .num_classes(classes.len());
    let (mut net, _) = reg.create(&Tch::cpu(), &name, &opts)?;
    let tf = data_config(net.cfg());
    let train = Loader::new(Arc::new(train), LoaderConfig::train(32))?
        .with_transform(Arc::new(train_transform(&tf)));
    let val = Loader::new(
        Arc::new(ImageFolder::new(&data.join("val"))?),
        LoaderConfig::eval(64),
    )?
    .with_transform(Arc::new(eval_transform(&tf, true)));
    let recipe = Strategy::Recipe(Recipe::default());
    let report = fine_tune(
        &mut net,
        classes.len(),
        &train,
        Some(&val),
        &recipe,
        &FineTuneOptions::default(),
    )?;
    let last = report.history.epochs.last().context("no epoch ran")?;
    let top1 = last.val.as_ref().context("no validation")?.top1;
    println!("{name}: val top-1 {:.2} % on {classes:?}", 100.0 * top1);
    net.save_user_model(&data.join("finetuned"))?;
    Ok(())
}
