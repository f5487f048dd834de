//! Training-mode forwards through the zoo on graft-tch: BatchNorm in train mode matches PyTorch's
//! `model.train()` (batch statistics, running statistics and `num_batches_tracked` updated), the
//! forward context's per-path rules keep a part in eval, and stochastic depth / dropout are live
//! only in train mode and follow the seed.

mod common;

use std::path::PathBuf;

use graft::backend::safetensors_io;
use graft::backend::{ModeRule, NormMode};
use graft::zoo::{ModelOptions, create_model};
use graft::{Backend, Ctx, ModeTable, Tch, TensorData};

fn fixture(id: &str) -> PathBuf {
    common::zoo_fixture(id)
}

fn rel(got: &TensorData, want: &TensorData) -> f64 {
    let m = want.to_f64().iter().fold(0f64, |a, v| a.max(v.abs()));
    got.max_abs_diff(want).expect("diff") / m.max(1e-12)
}

fn train_parity(id: &str, model: &str, num_classes: Option<usize>, buffers: &[&str]) {
    let dir = fixture(id);
    let b = Tch::cpu();
    let mut opts = ModelOptions::default().weights(dir.join("weights.safetensors"));
    opts.num_classes = num_classes;
    let (m, _) = create_model(&b, model, &opts).expect("load");
    let (io, _) = safetensors_io::load(&dir.join("io.safetensors")).expect("io");
    let x = b.from_data(&io["input"]).expect("x");
    let mut modes = ModeTable::new();
    modes.set(
        "",
        ModeRule {
            norm: None,
            dropout_off: true,
        },
    );
    let y = m
        .forward(&x, &Ctx::train(&modes, 0, 0))
        .expect("train forward");
    let d = rel(&b.to_data(&y).expect("y"), &io["train.logits"]);
    assert!(d <= 1e-4, "{id}: train-mode logits differ by {d:e}");
    for name in buffers {
        let got = b
            .to_data(m.params().get(name).expect("buffer"))
            .expect("data");
        let want = &io[&format!("train.{name}")];
        let d = if got.dtype() == graft::DType::I64 {
            f64::from(u8::from(got != *want))
        } else {
            rel(&got, want)
        };
        assert!(
            d <= 1e-5,
            "{id}: {name} after a train forward differs by {d:e}"
        );
    }
}

#[test]
fn resnet_batch_norm_train_mode_matches_pytorch() {
    train_parity(
        "resnet18_small",
        "resnet18_small",
        Some(10),
        &[
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "layer4.1.bn2.running_var",
        ],
    );
}

#[test]
fn efficientnet_train_mode_matches_pytorch() {
    train_parity(
        "efficientnet_b0",
        "efficientnet_b0",
        None,
        &[
            "features.0.1.running_mean",
            "features.8.1.running_var",
            "features.8.1.num_batches_tracked",
        ],
    );
}

#[test]
fn timm_efficientnet_builder_train_mode_matches_pytorch() {
    // cn, er and ir blocks with TF "same" padding and BatchNorm eps 1e-3
    train_parity(
        "tf_efficientnetv2_b0",
        "tf_efficientnetv2_b0",
        None,
        &[
            "bn1.running_mean",
            "blocks.0.0.bn1.running_var",
            "blocks.1.0.bn2.running_mean",
            "blocks.5.7.bn3.running_var",
            "bn2.num_batches_tracked",
        ],
    );
}

#[test]
fn mode_rules_freeze_batch_norm_and_stochastic_depth_follows_the_seed() {
    let b = Tch::cpu();
    let opts = ModelOptions::default().seed(3);
    let (m, _) = create_model(&b, "efficientnet_b0", &opts).expect("build");
    let x = b
        .from_data(
            &TensorData::f32(
                &[4, 3, 32, 32],
                (0..12288).map(|i| (i as f32 * 0.013).sin()).collect(),
            )
            .expect("x"),
        )
        .expect("x");
    let eval = b
        .to_data(&m.forward(&x, &Ctx::eval()).expect("eval"))
        .expect("d");
    // all BN in eval and dropout off: a train-mode forward is the eval forward
    let mut frozen = ModeTable::new();
    frozen.set(
        "",
        ModeRule {
            norm: Some(NormMode::Eval),
            dropout_off: true,
        },
    );
    let stats_before = b
        .to_data(
            m.params()
                .get("features.3.0.block.0.1.running_mean")
                .expect("rm"),
        )
        .expect("d");
    let y = b
        .to_data(&m.forward(&x, &Ctx::train(&frozen, 1, 0)).expect("fwd"))
        .expect("d");
    assert_eq!(y, eval);
    assert_eq!(
        b.to_data(
            m.params()
                .get("features.3.0.block.0.1.running_mean")
                .expect("rm")
        )
        .expect("d"),
        stats_before
    );
    // BN frozen but stochastic depth and dropout live: seeds give different, repeatable outputs
    let mut bn_only = ModeTable::new();
    bn_only.set(
        "",
        ModeRule {
            norm: Some(NormMode::Eval),
            dropout_off: false,
        },
    );
    let run = |seed| {
        b.to_data(&m.forward(&x, &Ctx::train(&bn_only, seed, 0)).expect("fwd"))
            .expect("d")
    };
    let (a, a2, c) = (run(1), run(1), run(2));
    assert_eq!(a, a2, "same seed, same masks");
    assert_ne!(a, c, "another seed draws other masks");
    assert_ne!(a, eval);
    // one stage in eval while the rest trains: only the rest's statistics move
    let mut part = ModeTable::new();
    part.set(
        "features.1",
        ModeRule {
            norm: Some(NormMode::Eval),
            dropout_off: true,
        },
    );
    let kept = b
        .to_data(
            m.params()
                .get("features.1.0.block.0.1.running_var")
                .expect("rv"),
        )
        .expect("d");
    let moved = b
        .to_data(
            m.params()
                .get("features.2.0.block.0.1.running_var")
                .expect("rv"),
        )
        .expect("d");
    m.forward(&x, &Ctx::train(&part, 1, 0)).expect("fwd");
    assert_eq!(
        b.to_data(
            m.params()
                .get("features.1.0.block.0.1.running_var")
                .expect("rv")
        )
        .expect("d"),
        kept
    );
    assert_ne!(
        b.to_data(
            m.params()
                .get("features.2.0.block.0.1.running_var")
                .expect("rv")
        )
        .expect("d"),
        moved
    );
}

/// A training forward whose BatchNorm sees one value per channel (batch of one at 1x1 spatial)
/// fails naming the layer, as PyTorch does, instead of writing an infinite running variance.
#[test]
fn batch_norm_with_one_value_per_channel_is_an_error_in_training() {
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(5).in_chans(1).seed(0);
    let (model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let x = b
        .from_data(&TensorData::f32(&[1, 1, 8, 8], vec![0.5; 64]).expect("data"))
        .expect("x");
    let modes = ModeTable::new();
    let err = model
        .forward(&x, &Ctx::train(&modes, 0, 0))
        .expect_err("layer4 sees 1x1 maps of one image");
    let msg = err.to_string();
    assert!(
        msg.contains("layer4") && msg.contains("more than 1 value per channel"),
        "{msg}"
    );
    let before = graft::reuse::batch_norm_stats(&model).expect("stats");
    assert!(model.forward(&x, &Ctx::eval()).is_ok(), "eval mode is fine");
    let two = b
        .from_data(&TensorData::f32(&[2, 1, 8, 8], vec![0.5; 128]).expect("data"))
        .expect("x");
    assert!(model.forward(&two, &Ctx::train(&modes, 0, 0)).is_ok());
    assert_ne!(
        graft::reuse::batch_norm_stats(&model).expect("stats"),
        before
    );
}
