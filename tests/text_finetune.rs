//! Fine-tuning a text encoder's top layers (graft-tch): MiniLM from its package, a fresh
//! classifier on the mean-pooled embedding, the embeddings and layer.0–3 frozen at LR 0
//! (surgery's stages for BERT: embeddings, layer.0 … layer.5, head), layer.4–5 and the head
//! trained on VADER words through the one Trainer (int64 token batches). Frozen stages stay
//! bit-identical, trained ones move, and the held-out accuracy beats the frozen-feature logistic
//! head fitted on the same words.

use std::sync::Arc;

use graft::Tch;
use graft::data::{Loader, LoaderConfig};
use graft::extract::{
    ExtractOptions, LogisticConfig, LogisticHead, TextData, TextEncoder, accuracy, extract_texts,
};
use graft::finetune::{FineTuneOptions, FreezeDepth, Recipe, Strategy, fine_tune};
use graft::text::{TextDataset, TokenDataset};
use graft::train::{evaluate, snapshot};
use graft::zoo::{ModelOptions, Registry};

mod common;

fn vader() -> TextDataset {
    let path = graft::zoo::text::find_installed(std::path::Path::new(
        graft::text::VaderLexicon::PACKAGE_PATH,
    ))
    .expect("vadersentiment in the venv (run `make setup`)");
    TextDataset::vader(&path, 0.0).expect("lexicon")
}

#[test]
fn fine_tuning_minilm_top_layers_on_vader_words() {
    let all = vader();
    let parts = all.split(&[0.2, 0.1, 0.7], 0).expect("split");
    let (train, test) = (&parts[0], &parts[1]);
    let reg = Registry::builtin();
    let (mut enc, _) = TextEncoder::pretrained(
        &Tch::cpu(),
        &reg,
        "minilm_l6",
        None,
        &ModelOptions::default(),
    )
    .expect("minilm");

    // The frozen-feature baseline on the same words.
    let cache = common::temp_dir("text-ft-cache");
    let feats = |ds: &TextDataset, enc: &TextEncoder<Tch>| {
        let d = TextData {
            texts: &ds.texts,
            labels: &ds.labels,
            classes: &ds.classes,
        };
        extract_texts(enc, &d, &cache, &ExtractOptions::default())
            .expect("features")
            .0
    };
    let (f_train, f_test) = (feats(train, &enc), feats(test, &enc));
    let head = LogisticHead::fit(&f_train, 2, &LogisticConfig::default()).expect("logistic");
    let frozen_acc = accuracy(&head.predict(&f_test).expect("predict"), &f_test);

    let tok = enc.tokenizer().clone();
    let tr = TokenDataset::new(train, &tok).expect("tokens");
    let train_l = Loader::new(Arc::new(tr), LoaderConfig::train(32).seed(1)).expect("loader");
    let test_l = Loader::new(
        Arc::new(TokenDataset::new(test, &tok).expect("tokens")),
        LoaderConfig::eval(128),
    )
    .expect("loader");
    let model = enc.model_mut();
    let names: Vec<String> = model
        .stages()
        .stages()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "embeddings",
            "layer.0",
            "layer.1",
            "layer.2",
            "layer.3",
            "layer.4",
            "layer.5",
            "head"
        ]
    );
    let before = snapshot(model).expect("snapshot");
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    let recipe = Recipe {
        freeze: FreezeDepth::Stages(5),
        lr: 2e-3,
        lr_mult: 10.0,
        epochs: 3,
        patience: None,
        ..Recipe::default()
    };
    let report =
        fine_tune(model, 2, &train_l, None, &Strategy::Recipe(recipe), &opts).expect("fine-tune");
    assert_eq!(report.frozen_stages, 5);
    let after = snapshot(model).expect("snapshot");
    for (name, t) in &before {
        let moved = after.get(name).is_some_and(|a| a != t);
        let frozen = [
            "embeddings.",
            "encoder.layer.0.",
            "encoder.layer.1.",
            "encoder.layer.2.",
            "encoder.layer.3.",
        ]
        .iter()
        .any(|p| name.starts_with(p));
        if frozen {
            assert!(!moved, "{name} is frozen but changed");
        } else if name.starts_with("encoder.layer.4.") || name.starts_with("encoder.layer.5.") {
            assert!(moved, "{name} should have trained");
        }
    }
    let m = evaluate(model, &test_l, &graft::Ctx::eval()).expect("evaluate");
    let losses: Vec<f64> = report.history.epochs.iter().map(|e| e.train_loss).collect();
    eprintln!(
        "frozen MiniLM + logistic {frozen_acc:.4}, fine-tuned top 2 layers {:.4}, train losses {losses:?}",
        m.top1
    );
    assert!(
        losses.last() < losses.first(),
        "train loss went down: {losses:?}"
    );
    assert!(
        m.top1 > frozen_acc,
        "fine-tuned {} vs frozen {frozen_acc}",
        m.top1
    );
}

#[test]
fn mixup_on_token_batches_is_refused() {
    let all = vader();
    let few = all.k_shot(4, 0).expect("k-shot");
    let reg = Registry::builtin();
    let cfg = reg
        .get("minilm_l6")
        .expect("entry")
        .cfg
        .text
        .clone()
        .expect("text cfg");
    let files = graft::zoo::TextModelFiles::locate(&cfg, None).expect("package");
    let tok = graft::text::Tokenizer::from_file(&files.tokenizer, cfg.max_length).expect("tok");
    let tr = TokenDataset::new(&few, &tok).expect("tokens");
    let loader = Loader::new(Arc::new(tr), LoaderConfig::train(4)).expect("loader");
    let opts = ModelOptions::default().num_classes(2);
    let (mut model, _) = reg.create(&Tch::cpu(), "minilm_l6", &opts).expect("model");
    let plan = graft::surgery::Plan::new(
        &model,
        &graft::surgery::FreezeConfig::none(),
        &graft::surgery::LrConfig::adamw(1e-4),
    )
    .expect("plan");
    let mut cfg = graft::train::TrainConfig::new(1);
    cfg.mixup = Some(graft::data::Mixup::default());
    cfg.progress = false;
    let err =
        graft::train::Trainer::new(cfg, plan.apply(&model).expect("opt"), plan.modes().clone())
            .fit(&mut model, &loader, None)
            .expect_err("mixup on ids");
    assert!(err.to_string().contains("mixup"), "{err}");
}
