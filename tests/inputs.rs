//! One way in: every batch reaches a model as a typed `InputBatch` through
//! `Model::forward_batch`, which gives what the tensor-level forwards give, and refuses a batch
//! the model does not take with an error saying what it takes and what it got (random weights;
//! graft-ndarray, and graft-tch where gradients are checked).

use graft::data::{Loader, LoaderConfig};
use graft::zoo::{ModelOptions, Registry};
use graft::{AutodiffBackend, Backend, Ctx, InputBatch, InputKind, NdArray, Tch, TensorData};

fn close(a: &TensorData, b: &TensorData) -> bool {
    a.shape() == b.shape() && a.max_abs_diff(b).expect("same dtype") < 1e-5
}

#[test]
fn images_and_cached_features_take_the_same_call() {
    let reg = Registry::builtin();
    let (model, _) = reg
        .create(
            &NdArray,
            "resnet18_small",
            &ModelOptions::default().num_classes(4).in_chans(1),
        )
        .expect("model");
    assert_eq!(model.input_kind(), InputKind::Images);
    let b = model.backend();
    let ctx = Ctx::eval();
    let digits = graft::data::ArrayDataset::digits();
    let loader = Loader::new(std::sync::Arc::new(digits), LoaderConfig::eval(6)).expect("loader");
    let batch = loader.batch(0, &[0, 1, 2, 3, 4, 5]).expect("batch");
    assert_eq!(batch.inputs.kind(), InputKind::Images);
    let logits = b
        .to_data(&model.forward_batch(&batch.inputs, &ctx).expect("images"))
        .expect("host");
    let x = b.from_data(batch.inputs.data()).expect("upload");
    let want = b
        .to_data(&model.forward(&x, &ctx).expect("forward"))
        .expect("host");
    assert!(close(&logits, &want));
    // the same samples' pooled features as a feature batch: the classifier alone, same logits
    let pooled = b
        .to_data(&model.forward_pooled(&x, &ctx).expect("pooled"))
        .expect("host");
    assert_eq!(pooled.shape(), [6, model.num_features()]);
    let feats = InputBatch::features(pooled).expect("features");
    let from_feats = b
        .to_data(&model.forward_batch(&feats, &ctx).expect("features"))
        .expect("host");
    assert!(close(&from_feats, &want));
    // token ids are not what a ResNet takes, and features are not a trunk input
    let ids = InputBatch::pad_token_ids(&[vec![101, 7, 102]], 0).expect("ids");
    let e = model
        .forward_batch(&ids, &ctx)
        .expect_err("ids into a resnet");
    assert!(
        e.to_string().contains("the trunk takes images") && e.to_string().contains("token ids"),
        "{e}"
    );
    let e = model.input(&feats).expect_err("features into the trunk");
    assert!(e.to_string().contains("pooled features"), "{e}");
}

#[test]
fn token_ids_stay_int64_and_their_padding_must_be_the_models() {
    let reg = Registry::builtin();
    let (model, _) = reg
        .create(
            &NdArray,
            "minilm_l6",
            &ModelOptions::default().num_classes(3),
        )
        .expect("model");
    assert_eq!(model.input_kind(), InputKind::TokenIds);
    let pad = model.pad_token_id().expect("a text encoder pads");
    let b = model.backend();
    let ctx = Ctx::eval();
    let rows = [vec![101, 2023, 2003, 102], vec![101, 102]];
    let batch = InputBatch::pad_token_ids(&rows, pad).expect("ids");
    assert_eq!(batch.data().dtype(), graft::DType::I64);
    let got = b
        .to_data(&model.forward_batch(&batch, &ctx).expect("ids"))
        .expect("host");
    // each text alone (no padding at all) gives its own row: the mask comes from the pad id
    for (i, r) in rows.iter().enumerate() {
        let one = InputBatch::pad_token_ids(std::slice::from_ref(r), pad).expect("one");
        let alone = b
            .to_data(&model.forward_batch(&one, &ctx).expect("alone"))
            .expect("host")
            .to_f32();
        let row = got.to_f32();
        for c in 0..3 {
            assert!(
                (row[[i, c]] - alone[[0, c]]).abs() < 1e-4,
                "text {i} class {c}"
            );
        }
    }
    // a batch padded with another id would be masked wrongly: refused, both ids named
    let other = InputBatch::pad_token_ids(&rows, pad + 1).expect("ids");
    let e = model.forward_batch(&other, &ctx).expect_err("wrong pad");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("padded with {}", pad + 1))
            && msg.contains(&format!("padding id is {pad}")),
        "{msg}"
    );
    let img = InputBatch::images(TensorData::f32(&[1, 3, 8, 8], vec![0.0; 192]).expect("img"))
        .expect("images");
    let e = model
        .forward_batch(&img, &ctx)
        .expect_err("images into a text encoder");
    assert!(e.to_string().contains("the trunk takes token ids"), "{e}");
}

/// `dynamic_img_size` (timm's): a ViT built for 224² takes other multiples of its patch, its
/// position embeddings resampled at every forward, and gradients reach them; without it, another
/// size is an error naming the built one; a family without position embeddings refuses it.
#[test]
fn a_dynamic_vit_takes_any_multiple_of_its_patch() {
    let reg = Registry::builtin();
    let opts = ModelOptions {
        dynamic_img_size: true,
        ..ModelOptions::default().num_classes(3)
    };
    let (model, _) = reg
        .create(&Tch::cpu(), "vit_tiny_patch16_224", &opts)
        .expect("dynamic vit");
    let b = model.backend();
    let ctx = Ctx::eval();
    for side in [96, 160, 240] {
        let x = b
            .from_data(
                &TensorData::f32(&[1, 3, side, side], vec![0.1; 3 * side * side]).expect("x"),
            )
            .expect("x");
        let maps = model
            .forward_stages(&x, &["blocks.11"], &Ctx::eval())
            .expect("stages");
        assert_eq!(b.shape(&maps[0]), [1, 192, side / 16, side / 16]);
        let pos = model.params().get("pos_embed").expect("pos_embed");
        b.set_requires_grad(pos, true).expect("grad");
        let logits = model.forward(&x, &ctx).expect("forward");
        let loss = b.sum(&logits, &[0, 1], false).expect("loss");
        let grads = b.backward(&loss, &[pos]).expect("backward");
        let g = grads[0].as_ref().expect("pos_embed gets a gradient");
        let g = b.to_data(g).expect("g");
        assert!(
            g.to_f64().iter().any(|v| *v != 0.0),
            "{side}: zero gradient"
        );
    }
    let x = b
        .from_data(&TensorData::f32(&[1, 3, 100, 100], vec![0.1; 30000]).expect("x"))
        .expect("x");
    let e = model
        .forward(&x, &Ctx::eval())
        .expect_err("100 is not a multiple of 16");
    assert!(
        e.to_string().contains("multiples of the patch size 16"),
        "{e}"
    );
    let (fixed, _) = reg
        .create(&NdArray, "vit_tiny_patch16_224", &ModelOptions::default())
        .expect("vit");
    let x = NdArray
        .from_data(&TensorData::f32(&[1, 3, 96, 96], vec![0.1; 3 * 96 * 96]).expect("x"))
        .expect("x");
    let e = fixed.forward(&x, &Ctx::eval()).expect_err("built for 224");
    assert!(e.to_string().contains("built for 224x224"), "{e}");
    let e = reg
        .create(&NdArray, "resnet18", &opts)
        .expect_err("no position embeddings");
    assert!(e.to_string().contains("dynamic_img_size"), "{e}");
}
