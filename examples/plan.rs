//! Prints surgery plans (the dry-run table of groups, trainable / frozen, LR, weight decay,
//! BatchNorm mode, dropout) for ResNet-18 with `freeze_to(2)` and a `slice(1e-5, 1e-3)`, and for
//! ViT-Tiny with timm's layer decay. No weights needed: plans depend on names and shapes only.
//!
//! cargo run --example plan

use anyhow::Result;
use graft::NdArray;
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::zoo::{ModelOptions, create_model};

fn main() -> Result<()> {
    let (r18, _) = create_model(
        &NdArray,
        "resnet18",
        &ModelOptions::default().num_classes(10),
    )?;
    let lr = LrConfig::adamw(1e-3).slice(1e-5, 1e-3).weight_decay(0.05);
    println!("{}", Plan::new(&r18, &FreezeConfig::freeze_to(2), &lr)?);
    let (vit, _) = create_model(
        &NdArray,
        "vit_tiny_patch16_224",
        &ModelOptions::default().num_classes(10),
    )?;
    let lr = LrConfig::adamw(1e-3).layer_decay(0.75).weight_decay(0.05);
    println!("{}", Plan::new(&vit, &FreezeConfig::freeze_to(4), &lr)?);
    Ok(())
}
