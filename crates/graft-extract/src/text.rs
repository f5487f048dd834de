//! Feature extraction on text: a text encoder from the zoo (BERT family) with its tokenizer,
//! sentence embeddings in batches (texts sorted by token count so a batch pads little, as
//! sentence-transformers sorts them; the output keeps the input order), the same feature cache
//! as images, and the two transfer routes that need no training: zero-shot classification by
//! cosine similarity to embedded class descriptions, and prototypes from k examples a class
//! ([`crate::PrototypeHead`] on the embeddings).

use std::path::Path;

use graft_backend::init::stable_hash;
use graft_backend::{Backend, Ctx, DType};
use graft_core::{Error, Result};
use graft_text::{Tokenizer, token_batch};
use graft_zoo::{InferenceOptions, LoadReport, Model, ModelOptions, Registry, TextModelFiles};

use crate::{ExtractOptions, ExtractReport, FeatureSpec, Features, try_cache, write_cache};

/// Texts per forward by default (sentence-transformers' `encode` uses 32).
pub const DEFAULT_TEXT_BATCH: usize = 64;

/// A text encoder: a zoo text model and the tokenizer it reads.
#[derive(Debug)]
pub struct TextEncoder<B: Backend> {
    model: Model<B>,
    tokenizer: Tokenizer,
    /// Texts per forward.
    pub batch_size: usize,
}

impl<B: Backend> TextEncoder<B> {
    /// Pairs `model` (a text encoder) with `tokenizer`; their padding ids must agree (a CLIP
    /// text tower, whose causal mask never reads padding, takes the tokenizer padding with its
    /// own id).
    pub fn new(model: Model<B>, tokenizer: Tokenizer) -> Result<Self> {
        let (pad, vocab, tokenizer) = match model.arch() {
            graft_zoo::Arch::Bert(a) => (a.pad_token_id, a.vocab_size, tokenizer),
            graft_zoo::Arch::ClipText(a) => {
                let id = u32::try_from(a.pad_id).map_err(|_| {
                    Error::invalid("TextEncoder", format!("padding id {}", a.pad_id))
                })?;
                if tokenizer.max_len() > a.context_length {
                    return Err(Error::invalid(
                        "TextEncoder",
                        format!(
                            "the tokenizer keeps up to {} tokens, {} has positions for {}: read the tokenizer with max_len {}",
                            tokenizer.max_len(),
                            model.name(),
                            a.context_length,
                            a.context_length
                        ),
                    ));
                }
                (a.pad_id, a.vocab_size, tokenizer.with_pad_id(id))
            }
            _ => {
                return Err(Error::invalid(
                    "TextEncoder",
                    format!("{} is not a text encoder", model.name()),
                ));
            }
        };
        if pad != tokenizer.pad_id() {
            return Err(Error::invalid(
                "TextEncoder",
                format!(
                    "{} pads with id {} but the tokenizer with {}",
                    model.name(),
                    pad,
                    tokenizer.pad_id()
                ),
            ));
        }
        if tokenizer.vocab_size() > vocab {
            return Err(Error::invalid(
                "TextEncoder",
                format!(
                    "the tokenizer has {} tokens, {} embeds {}",
                    tokenizer.vocab_size(),
                    model.name(),
                    vocab
                ),
            ));
        }
        Ok(Self {
            model,
            tokenizer,
            batch_size: DEFAULT_TEXT_BATCH,
        })
    }
    /// The registered text model `name` with its pretrained weights and tokenizer from `dir`
    /// (default: the directory its Python package ships, found in an installed environment);
    /// `opts.weights`, or a user model's own weights, replace the directory's. The load is
    /// strict; the report says what it did.
    pub fn pretrained(
        backend: &B,
        registry: &Registry,
        name: &str,
        dir: Option<&Path>,
        opts: &ModelOptions,
    ) -> Result<(Self, LoadReport)> {
        let entry = registry.get(name)?;
        let Some(tcfg) = &entry.cfg.text else {
            return Err(Error::invalid(
                "TextEncoder",
                format!("{name} is not a text model"),
            ));
        };
        let files = TextModelFiles::locate(tcfg, dir)?;
        let mut o = opts.clone();
        // A user model (a fine-tuned encoder saved by graft) carries its own weights; the
        // tokenizer still comes from the model directory.
        if o.weights.is_none() && entry.weights.is_none() {
            o.weights = Some(files.weights.clone());
        }
        let (model, report) = registry.create(backend, name, &o)?;
        let report = report.ok_or_else(|| Error::invalid("TextEncoder", "no weights loaded"))?;
        let tokenizer = Tokenizer::from_file(&files.tokenizer, tcfg.max_length)?;
        Ok((Self::new(model, tokenizer)?, report))
    }
    /// The model.
    pub fn model(&self) -> &Model<B> {
        &self.model
    }
    /// The model, mutably (heads, freezing, fine-tuning).
    pub fn model_mut(&mut self) -> &mut Model<B> {
        &mut self.model
    }
    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    /// The same tokenizer on an inference copy of the model ([`Model::for_inference`]).
    pub fn for_inference(&self, opts: &InferenceOptions) -> Result<Self> {
        Ok(Self {
            model: self.model.for_inference(opts)?,
            tokenizer: self.tokenizer.clone(),
            batch_size: self.batch_size,
        })
    }
    /// Sentence embeddings of `texts`, `[n, dim]` row-major f32 in input order (eval mode).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self.embed_counted(texts)?.0)
    }
    /// [`TextEncoder::embed`] and the forwards it ran.
    fn embed_counted(&self, texts: &[&str]) -> Result<(Vec<f32>, usize)> {
        embed_with(&self.model, &self.tokenizer, texts, self.batch_size)
    }
    fn cache_key(&self, form: &InferenceOptions, data: &TextData<'_>) -> Result<u64> {
        let mut h = Vec::new();
        h.extend(self.model.name().as_bytes());
        h.extend(crate::model_hash(&self.model)?.to_le_bytes());
        h.extend(form.label().as_bytes());
        h.extend(self.tokenizer.fingerprint()?.to_le_bytes());
        h.extend(b"text-pooled");
        for (t, l) in data.texts.iter().zip(data.labels) {
            h.extend((t.len() as u64).to_le_bytes());
            h.extend(t.as_bytes());
            h.extend((*l as u64).to_le_bytes());
        }
        for c in data.classes {
            h.extend(c.as_bytes());
            h.push(0);
        }
        Ok(stable_hash(&h))
    }
}

/// Sentence embeddings of `texts` by `model` (a text encoder) reading `tokenizer`'s ids,
/// `[n, dim]` row-major in input order, and the forwards run: texts sorted by token count and
/// batched `batch` at a time, so a batch pads little.
pub fn embed_with<B: Backend>(
    model: &Model<B>,
    tokenizer: &Tokenizer,
    texts: &[&str],
    batch: usize,
) -> Result<(Vec<f32>, usize)> {
    let b = model.backend();
    let dim = model.num_features();
    let ids = tokenizer.ids_batch(texts)?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut out = vec![0f32; texts.len() * dim];
    let ctx = Ctx::eval();
    let mut forwards = 0;
    for chunk in order.chunks(batch.max(1)) {
        let seqs: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
        let x = model.input(&token_batch(&seqs, tokenizer.pad_id())?)?;
        let y = model.forward_pooled(&x, &ctx)?;
        forwards += 1;
        let y = b.to_data(&b.cast(&y, DType::F32)?)?.to_f32();
        for (row, &i) in y.rows().into_iter().zip(chunk) {
            out[i * dim..(i + 1) * dim].copy_from_slice(
                row.as_slice()
                    .ok_or_else(|| Error::invalid("embed", "non-contiguous output"))?,
            );
        }
    }
    Ok((out, forwards))
}

/// Labelled texts to extract features of.
#[derive(Debug, Clone, Copy)]
pub struct TextData<'a> {
    pub texts: &'a [String],
    pub labels: &'a [usize],
    pub classes: &'a [String],
}

/// Sentence embeddings of labelled texts as [`Features`] (spec `Pooled`), read from `cache_dir`
/// when an identical extraction (model, weights, inference form, tokenizer, texts and labels)
/// was cached, written there otherwise — the cache images use.
pub fn extract_texts<B: Backend>(
    encoder: &TextEncoder<B>,
    data: &TextData<'_>,
    cache_dir: &Path,
    opts: &ExtractOptions,
) -> Result<(Features, ExtractReport)> {
    if data.texts.len() != data.labels.len() {
        return Err(Error::invalid(
            "extract_texts",
            format!(
                "{} texts but {} labels",
                data.texts.len(),
                data.labels.len()
            ),
        ));
    }
    if data.texts.is_empty() {
        return Err(Error::invalid("extract_texts", "no texts"));
    }
    if opts.engine != crate::Engine::Backend {
        return Err(Error::invalid(
            "extract_texts",
            "text encoders run on their backend: the ONNX Runtime engine runs image models",
        ));
    }
    if let Some(&bad) = data.labels.iter().find(|&&l| l >= data.classes.len()) {
        return Err(Error::invalid(
            "extract_texts",
            format!("label {bad} but {} classes", data.classes.len()),
        ));
    }
    let form = opts.form(&encoder.model);
    let key = encoder.cache_key(&form, data)?;
    let path = cache_dir.join(format!("features-{key:016x}.safetensors"));
    let mut recomputed = Vec::new();
    if path.exists() {
        match try_cache(&path, &FeatureSpec::Pooled) {
            Ok(f) => {
                return Ok((
                    f,
                    ExtractReport {
                        paths: vec![path],
                        cached: true,
                        forwards: 0,
                        recomputed,
                    },
                ));
            }
            Err(why) => recomputed.push(why),
        }
    }
    let copy;
    let enc = match encoder.model.inference() {
        Some(_) => encoder,
        None => {
            copy = encoder.for_inference(&form)?;
            &copy
        }
    };
    let texts: Vec<&str> = data.texts.iter().map(String::as_str).collect();
    let (emb, forwards) = enc.embed_counted(&texts)?;
    let dim = enc.model.num_features().max(1);
    if let Some(i) = emb.iter().position(|v| !v.is_finite()) {
        return Err(crate::non_finite(
            enc.model.name(),
            &FeatureSpec::Pooled,
            i / dim,
        ));
    }
    let f = Features {
        n: texts.len(),
        dim: enc.model.num_features(),
        data: emb,
        labels: data.labels.to_vec(),
        classes: data.classes.to_vec(),
        spec: FeatureSpec::Pooled,
    };
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    write_cache(&path, enc.model.name(), &f)?;
    Ok((
        f,
        ExtractReport {
            paths: vec![path],
            cached: false,
            forwards,
            recomputed,
        },
    ))
}

/// Zero-shot classification: each class is the embedding of its description(s) (when a class has
/// several, the mean of their unit embeddings, re-normalised — CLIP's prompt ensembling, Radford
/// et al. 2021); a text, or with a CLIP an image, goes to the class of highest cosine
/// similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShot {
    /// `[classes, dim]`, unit rows.
    pub class_embeddings: Vec<f32>,
    pub dim: usize,
    pub classes: Vec<String>,
}

fn unit(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if n > 0.0 {
        for x in v {
            *x = (f64::from(*x) / n) as f32;
        }
    }
}

impl ZeroShot {
    /// Embeds the descriptions of every class (`descriptions[c]`: one or more texts).
    pub fn new<B: Backend>(
        encoder: &TextEncoder<B>,
        classes: &[String],
        descriptions: &[Vec<String>],
    ) -> Result<Self> {
        Self::with_model(&encoder.model, &encoder.tokenizer, classes, descriptions)
    }
    /// [`ZeroShot::new`] with the model and its tokenizer apart.
    pub fn with_model<B: Backend>(
        model: &Model<B>,
        tokenizer: &Tokenizer,
        classes: &[String],
        descriptions: &[Vec<String>],
    ) -> Result<Self> {
        if classes.len() != descriptions.len() || classes.is_empty() {
            return Err(Error::invalid(
                "ZeroShot",
                format!(
                    "{} classes but {} description lists",
                    classes.len(),
                    descriptions.len()
                ),
            ));
        }
        if let Some(c) = descriptions.iter().position(Vec::is_empty) {
            return Err(Error::invalid(
                "ZeroShot",
                format!("class {:?} has no description", classes[c]),
            ));
        }
        let flat: Vec<&str> = descriptions.iter().flatten().map(String::as_str).collect();
        let (emb, _) = embed_with(model, tokenizer, &flat, DEFAULT_TEXT_BATCH)?;
        let dim = model.num_features();
        let mut out = vec![0f32; classes.len() * dim];
        let mut at = 0;
        for (c, d) in descriptions.iter().enumerate() {
            let row = &mut out[c * dim..(c + 1) * dim];
            for _ in d {
                // each description's embedding on the unit sphere before the mean (CLIP's
                // prompt ensembling)
                let mut e = emb[at * dim..(at + 1) * dim].to_vec();
                unit(&mut e);
                for (o, v) in row.iter_mut().zip(&e) {
                    *o += v;
                }
                at += 1;
            }
            unit(row);
        }
        Ok(Self {
            class_embeddings: out,
            dim,
            classes: classes.to_vec(),
        })
    }
    /// Cosine similarity of every row of `f` to every class, `[n, classes]`.
    pub fn scores(&self, f: &Features) -> Result<Vec<f32>> {
        if f.dim != self.dim {
            return Err(Error::shape(
                "ZeroShot",
                format!(
                    "features are {}-d, the class embeddings {}-d",
                    f.dim, self.dim
                ),
            ));
        }
        let k = self.classes.len();
        let mut s = vec![0f32; f.n * k];
        for i in 0..f.n {
            let mut row = f.row(i).to_vec();
            unit(&mut row);
            for c in 0..k {
                let e = &self.class_embeddings[c * self.dim..(c + 1) * self.dim];
                s[i * k + c] = row.iter().zip(e).map(|(a, b)| a * b).sum();
            }
        }
        Ok(s)
    }
    /// The best class of each row of `f`.
    pub fn predict(&self, f: &Features) -> Result<Vec<usize>> {
        let k = self.classes.len();
        Ok(self
            .scores(f)?
            .chunks(k)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                        if v > best.1 { (i, v) } else { best }
                    })
                    .0
            })
            .collect())
    }
}
