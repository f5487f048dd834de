//! The VADER target: MiniLM (all-MiniLM-L6-v2's real pretrained weights) cut after each of its
//! six layers, and a randomly initialised one as a control, each scored on a few-shot draw of the
//! lexicon's polarity task and then fine-tuned on it.

use super::*;

use std::collections::BTreeMap;

use graft::data::{Loader, LoaderConfig};
use graft::extract::TextEncoder;
use graft::finetune::{FineTuneOptions, FreezeDepth, Recipe, Strategy, fine_tune};
use graft::text::{TextDataset, TokenDataset, Tokenizer, VaderLexicon};
use graft::train::evaluate;
use graft::zoo::{Arch, Bert, LoadOptions, Model, ModelOptions, Registry};
use graft::{Ctx, Tch, TensorData};

/// MiniLM's weights and tokenizer, and the lexicon split in three.
pub(crate) struct TextSetup {
    weights: BTreeMap<String, TensorData>,
    tokenizer: Tokenizer,
    pub(crate) train: TextDataset,
    val: TextDataset,
    test: TextDataset,
}

pub(crate) fn setup() -> Result<TextSetup> {
    let reg = Registry::builtin();
    let (enc, _) = TextEncoder::pretrained(
        &Tch::cpu(),
        &reg,
        "minilm_l6",
        None,
        &ModelOptions::default(),
    )?;
    let weights = enc.model().params().to_data()?;
    let tokenizer = enc.tokenizer().clone();
    let path = graft::zoo::text::find_installed(Path::new(VaderLexicon::PACKAGE_PATH))?;
    let all = TextDataset::vader(&path, 0.0)?;
    let mut parts = all.split(&[0.7, 0.1, 0.2], 0)?.into_iter();
    Ok(TextSetup {
        weights,
        tokenizer,
        train: parts.next().context("train")?,
        val: parts.next().context("val")?,
        test: parts.next().context("test")?,
    })
}

impl TextSetup {
    pub(crate) fn test_len(&self) -> usize {
        self.test.len()
    }
}

/// A candidate: MiniLM's first `layers` layers (`None`: six random layers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layers {
    pub(crate) layers: usize,
    pub(crate) pretrained: bool,
}

impl Layers {
    pub(crate) fn all() -> Vec<Layers> {
        let mut v: Vec<Layers> = (1..=6)
            .map(|layers| Layers {
                layers,
                pretrained: true,
            })
            .collect();
        v.push(Layers {
            layers: 6,
            pretrained: false,
        });
        v
    }
    pub(crate) fn label(self) -> String {
        if self.pretrained {
            format!(
                "MiniLM, first {} layer{}",
                self.layers,
                if self.layers == 1 { "" } else { "s" }
            )
        } else {
            "MiniLM architecture, random weights".into()
        }
    }
    /// The model: MiniLM's architecture with `layers` encoder layers; its embeddings and those
    /// layers loaded from the pretrained weights (the layers above dropped).
    fn model(self, s: &TextSetup, seed: u64) -> Result<Model<Tch>> {
        let reg = Registry::builtin();
        let cfg = reg.get("minilm_l6")?.cfg.clone();
        let arch = Arch::Bert(Bert {
            layers: self.layers,
            ..Bert::minilm_l6()
        });
        let mut m = Model::build(
            &Tch::cpu(),
            &format!("minilm_l6_first{}", self.layers),
            arch,
            cfg,
            &ModelOptions::default().seed(seed),
        )?;
        if self.pretrained {
            let keep: BTreeMap<String, TensorData> = s
                .weights
                .iter()
                .filter(|(k, _)| {
                    let upper =
                        (self.layers..6).any(|i| k.starts_with(&format!("encoder.layer.{i}.")));
                    !upper
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            m.load_tensors(Path::new("minilm_l6"), &keep, &LoadOptions::default())?;
        }
        Ok(m)
    }
}

fn loader(s: &TextSetup, ds: &TextDataset, shuffle_seed: Option<u64>) -> Result<Loader> {
    let cfg = match shuffle_seed {
        Some(seed) => LoaderConfig::train(32).seed(seed),
        None => LoaderConfig::eval(256),
    };
    Ok(Loader::new(
        Arc::new(TokenDataset::new(ds, &s.tokenizer)?),
        cfg,
    )?)
}

/// Scores every candidate on `train` (a few-shot draw), probes on the val split.
pub(crate) fn score(s: &TextSetup, train: &TextDataset, cache: &Path) -> Result<RankReport> {
    rank_each(
        &Layers::all(),
        |c| c.label(),
        cache,
        |c| {
            Ok(Candidate {
                model: c.model(s, 0)?,
                train: loader(s, train, None)?,
                val: Some(loader(s, &s.val, None)?),
                // sentence-transformers' MiniLM has no classifier
                source_head: false,
                features: FeatureSpec::Pooled,
            })
        },
    )
}

/// Fine-tunes the candidate on `train`: a new classifier on the pooled embedding, every encoder
/// layer and the head trained, the embeddings frozen (the classic recipe: AdamW `lr` sliced to a
/// tenth for the lowest layer, one-cycle, `epochs`, batch 32); test top-1.
pub(crate) fn fine_tune_on(
    s: &TextSetup,
    c: Layers,
    train: &TextDataset,
    lr: f64,
    epochs: usize,
    seed: u64,
) -> Result<f64> {
    let mut m = c.model(s, seed)?;
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.seed = seed;
    let recipe = Recipe {
        freeze: FreezeDepth::Stages(1),
        lr,
        lr_mult: 10.0,
        epochs,
        patience: None,
        ..Recipe::default()
    };
    fine_tune(
        &mut m,
        2,
        &loader(s, train, Some(seed))?,
        None,
        &Strategy::Recipe(recipe),
        &opts,
    )?;
    Ok(evaluate(&m, &loader(s, &s.test, None)?, &Ctx::eval())?.top1)
}
