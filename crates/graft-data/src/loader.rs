//! The loader: seeded order, batching, parallel per-sample work with bounded prefetch.
//!
//! Order: epoch `e` visits the indices in a permutation drawn from `(seed, e)` (or in order when
//! not shuffling). Randomness: each sample's transform gets an RNG seeded from
//! `(seed, epoch, dataset index)`, so augmentation does not depend on batch order, thread count
//! or scheduling. Work: a producer thread builds batches ahead of the consumer (at most
//! `prefetch` waiting), loading and transforming the samples of a batch in parallel on rayon.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use graft_backend::init::mix_seed;
use graft_backend::{InputBatch, TensorData};
use graft_core::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::dataset::{Dataset, Image, RawImage, Sample};

/// A per-image transform (augmentation, resizing, normalisation). `rng` is seeded from
/// (seed, epoch, index).
pub trait Transform: Send + Sync + std::fmt::Debug {
    fn apply(&self, img: Image, rng: &mut ChaCha8Rng) -> Result<Image>;
    /// The transform of a decoded 8-bit image (the same result as `apply` on its float
    /// image). Transforms that resize or crop first read the pixels directly, so a large image
    /// never exists as a full-size float copy; the default converts it, then applies.
    fn apply_raw(&self, img: RawImage, rng: &mut ChaCha8Rng) -> Result<Image> {
        self.apply(img.to_image(), rng)
    }
}

/// What to do with a sample that fails to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadSample {
    /// Stop with the error (naming the file).
    #[default]
    Error,
    /// Leave it out of its batch and count it ([`Loader::skipped`]).
    Skip,
}

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Drop a partial last batch (when it is not the only one).
    pub drop_last: bool,
    pub seed: u64,
    /// Batches built ahead of the consumer.
    pub prefetch: usize,
    pub bad_samples: BadSample,
}

impl LoaderConfig {
    /// Shuffled batches of `batch_size`, the last partial batch dropped (fastai's and timm's
    /// training loaders do the same: a tiny last batch gives noisy BatchNorm statistics, and a
    /// batch of one none at all), seed 0, two batches of prefetch.
    pub fn train(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            drop_last: true,
            seed: 0,
            prefetch: 2,
            bad_samples: BadSample::Error,
        }
    }
    /// In-order batches, every sample kept.
    pub fn eval(batch_size: usize) -> Self {
        Self {
            shuffle: false,
            drop_last: false,
            ..Self::train(batch_size)
        }
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// One batch: the stacked samples, typed (images `[N, C, H, W]`, token ids `[N, T]` padded to
/// the batch's longest text, or pooled features `[N, D]`), labels and the dataset indices they
/// came from.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: InputBatch,
    pub labels: Vec<usize>,
    pub indices: Vec<usize>,
}

/// Batches of a dataset.
#[derive(Debug, Clone)]
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    transform: Option<Arc<dyn Transform>>,
    skipped: Arc<AtomicUsize>,
}

impl Loader {
    /// A loader; an empty dataset or a zero batch size is an error.
    pub fn new(dataset: Arc<dyn Dataset>, cfg: LoaderConfig) -> Result<Self> {
        if dataset.is_empty() {
            return Err(Error::invalid(
                "Loader",
                format!("empty dataset {dataset:?}"),
            ));
        }
        if cfg.batch_size == 0 {
            return Err(Error::invalid("Loader", "batch_size must be >= 1"));
        }
        Ok(Self {
            dataset,
            cfg,
            transform: None,
            skipped: Arc::new(AtomicUsize::new(0)),
        })
    }
    /// Adds a per-sample transform.
    pub fn with_transform(mut self, t: Arc<dyn Transform>) -> Self {
        self.transform = Some(t);
        self
    }
    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }
    /// The per-sample transform, if any.
    pub fn transform(&self) -> Option<&Arc<dyn Transform>> {
        self.transform.as_ref()
    }
    /// Settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }
    /// Batches per epoch (`drop_last` drops a partial last batch only when a full one exists,
    /// so a dataset smaller than one batch still trains).
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.cfg.drop_last && n >= self.cfg.batch_size {
            n / self.cfg.batch_size
        } else {
            n.div_ceil(self.cfg.batch_size)
        }
    }
    /// Samples skipped so far under [`BadSample::Skip`].
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
    /// The dataset order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.dataset.len()).collect();
        if self.cfg.shuffle {
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[
                self.cfg.seed,
                epoch,
            ])));
        }
        idx
    }
    /// Loads and stacks the samples `indices` of `epoch` (in parallel, unless they are plain
    /// copies from memory).
    pub fn batch(&self, epoch: u64, indices: &[usize]) -> Result<Batch> {
        if self.transform.is_none() && self.dataset.in_memory() {
            let samples = indices
                .iter()
                .map(|&i| self.dataset.get(i))
                .collect::<Result<Vec<_>>>()?;
            return stack(samples, indices.to_vec());
        }
        let results: Vec<Result<Sample>> = indices
            .par_iter()
            .map(|&i| {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(mix_seed(&[self.cfg.seed, epoch, i as u64]));
                // image files: the transform reads the decoded 8-bit pixels
                match (&self.transform, self.dataset.get_raw(i)?) {
                    (Some(t), Some(raw)) => t.apply_raw(raw, &mut rng).map(Sample::Image),
                    (None, Some(raw)) => Ok(Sample::Image(raw.to_image())),
                    (Some(t), None) => {
                        let img = self.dataset.get(i)?.into_image("a transform")?;
                        t.apply(img, &mut rng).map(Sample::Image)
                    }
                    (None, None) => self.dataset.get(i),
                }
            })
            .collect();
        let mut samples = Vec::with_capacity(results.len());
        let mut kept = Vec::with_capacity(results.len());
        for (r, &i) in results.into_iter().zip(indices) {
            match r {
                Ok(s) => {
                    samples.push(s);
                    kept.push(i);
                }
                Err(e) if self.cfg.bad_samples == BadSample::Skip => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        stack(samples, kept)
    }
    /// The batches of `epoch`, starting at batch `start` (resuming mid-epoch), built ahead on a
    /// producer thread.
    pub fn epoch_from(&self, epoch: u64, start: usize) -> EpochIter {
        let order = self.order(epoch);
        let bs = self.cfg.batch_size;
        let mut chunks: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        if self.cfg.drop_last && chunks.len() > 1 && chunks.last().is_some_and(|c| c.len() < bs) {
            chunks.pop();
        }
        let chunks: Vec<Vec<usize>> = chunks.into_iter().skip(start).collect();
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let me = self.clone();
        let remaining = chunks.len();
        std::thread::spawn(move || {
            for c in chunks {
                let b = me.batch(epoch, &c);
                let stop = b.is_err();
                if tx.send(b).is_err() || stop {
                    return;
                }
            }
        });
        EpochIter { rx, remaining }
    }
    /// The batches of `epoch`.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }
}

fn stack(samples: Vec<Sample>, indices: Vec<usize>) -> Result<Batch> {
    let Some(first) = samples.first() else {
        return Err(Error::invalid(
            "Loader",
            "every sample of a batch failed to load",
        ));
    };
    let n = samples.len();
    let labels = samples.iter().map(Sample::label).collect();
    let mismatch = |i: usize, what: String| Error::shape("Loader", format!("sample {i} {what}"));
    let inputs = match first {
        Sample::Image(img) => {
            let shape = img.shape;
            let mut data = Vec::with_capacity(shape.iter().product::<usize>() * n);
            for (s, i) in samples.iter().zip(&indices) {
                match s {
                    Sample::Image(img) if img.shape == shape => data.extend_from_slice(&img.data),
                    Sample::Image(img) => {
                        return Err(mismatch(
                            *i,
                            format!(
                                "has shape {:?}, the batch {shape:?} (add a resize transform)",
                                img.shape
                            ),
                        ));
                    }
                    other => return Err(mismatch(*i, format!("holds {}", other.kind_name()))),
                }
            }
            InputBatch::images(TensorData::f32(&[n, shape[0], shape[1], shape[2]], data)?)?
        }
        Sample::TokenIds { pad_id, .. } => {
            let pad = *pad_id;
            let mut rows = Vec::with_capacity(n);
            for (s, i) in samples.iter().zip(&indices) {
                match s {
                    Sample::TokenIds { ids, pad_id, .. } if *pad_id == pad => rows.push(ids),
                    Sample::TokenIds { pad_id, .. } => {
                        return Err(mismatch(
                            *i,
                            format!("is padded with {pad_id}, the batch with {pad}"),
                        ));
                    }
                    other => return Err(mismatch(*i, format!("holds {}", other.kind_name()))),
                }
            }
            InputBatch::pad_token_ids(&rows, pad)?
        }
        Sample::Features { values, .. } => {
            let d = values.len();
            let mut data = Vec::with_capacity(d * n);
            for (s, i) in samples.iter().zip(&indices) {
                match s {
                    Sample::Features { values, .. } if values.len() == d => {
                        data.extend_from_slice(values)
                    }
                    other => {
                        return Err(mismatch(
                            *i,
                            format!("holds {}, the batch {d} features", other.kind_name()),
                        ));
                    }
                }
            }
            InputBatch::features(TensorData::f32(&[n, d], data)?)?
        }
    };
    Ok(Batch {
        inputs,
        labels,
        indices,
    })
}

/// An epoch's batches, in order.
#[derive(Debug)]
pub struct EpochIter {
    rx: Receiver<Result<Batch>>,
    remaining: usize,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match self.rx.recv() {
            Ok(b) => {
                if b.is_err() {
                    self.remaining = 0;
                }
                Some(b)
            }
            Err(_) => {
                self.remaining = 0;
                Some(Err(Error::invalid(
                    "Loader",
                    "the loading thread stopped early",
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{ArrayDataset, Subset};

    #[derive(Debug)]
    struct Jitter;
    impl Transform for Jitter {
        fn apply(&self, mut s: Image, rng: &mut ChaCha8Rng) -> Result<Image> {
            use rand::RngExt;
            let d: f32 = rng.random();
            s.data.iter_mut().for_each(|v| *v += d);
            Ok(s)
        }
    }

    #[test]
    fn order_batches_and_per_sample_randomness_are_seeded() {
        let ds: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
        // the training default drops the partial last batch (97 of 1797), unless it is the only
        // one
        let dropping = Loader::new(ds.clone(), LoaderConfig::train(100).seed(3)).expect("loader");
        assert_eq!(dropping.num_batches(), 17);
        assert_eq!(dropping.epoch(0).count(), 17);
        let tiny = Subset::new(ds.clone(), (0..7).collect()).expect("subset");
        let few = Loader::new(Arc::new(tiny), LoaderConfig::train(100)).expect("loader");
        assert_eq!(few.num_batches(), 1);
        assert_eq!(
            few.epoch(0)
                .next()
                .expect("one batch")
                .expect("b")
                .labels
                .len(),
            7
        );
        let keep_all = LoaderConfig {
            drop_last: false,
            ..LoaderConfig::train(100).seed(3)
        };
        let l = Loader::new(ds.clone(), keep_all)
            .expect("loader")
            .with_transform(Arc::new(Jitter));
        assert_eq!(l.num_batches(), 18);
        let e0: Vec<Batch> = l.epoch(0).collect::<Result<_>>().expect("epoch");
        assert_eq!(e0.len(), 18);
        assert_eq!(e0.last().map(|b| b.labels.len()), Some(97));
        let mut seen: Vec<usize> = e0.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1797).collect::<Vec<_>>());
        // same seed and epoch: same batches; resuming at batch 5 gives batches 5..
        let again: Vec<Batch> = l.epoch_from(0, 5).collect::<Result<_>>().expect("epoch");
        assert_eq!(again.len(), 13);
        assert_eq!(again[0].indices, e0[5].indices);
        assert_eq!(again[0].inputs, e0[5].inputs);
        // another epoch: another order; a sample's augmentation depends on (seed, epoch, index)
        let e1: Vec<Batch> = l.epoch(1).collect::<Result<_>>().expect("epoch");
        assert_ne!(e1[0].indices, e0[0].indices);
        let small = Loader::new(
            ds,
            LoaderConfig {
                batch_size: 7,
                ..LoaderConfig::train(7).seed(3)
            },
        )
        .expect("l")
        .with_transform(Arc::new(Jitter));
        let one = small.batch(0, &[42]).expect("b");
        let pos = e0
            .iter()
            .find_map(|b| b.indices.iter().position(|&i| i == 42).map(|p| (b, p)))
            .expect("42");
        let per = 64;
        assert_eq!(
            one.inputs.data().to_f32().as_slice().expect("contiguous"),
            &pos.0.inputs.data().to_f32().as_slice().expect("c")[pos.1 * per..(pos.1 + 1) * per]
        );
    }

    /// Token ids (a tiny in-memory text set) and features stack in their own dtype and rank.
    #[derive(Debug)]
    struct Texts(Vec<Sample>);
    impl Dataset for Texts {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn label(&self, i: usize) -> usize {
            self.0[i].label()
        }
        fn get(&self, i: usize) -> Result<Sample> {
            Ok(self.0[i].clone())
        }
        fn classes(&self) -> &[String] {
            const C: &[String] = &[];
            C
        }
        fn in_memory(&self) -> bool {
            true
        }
    }

    #[test]
    fn token_ids_and_features_keep_their_type() {
        let ids = |v: &[i64], pad_id| Sample::TokenIds {
            ids: v.to_vec(),
            pad_id,
            label: 0,
        };
        let texts = Texts(vec![ids(&[7, 8, 9], 0), ids(&[5], 0), ids(&[4, 3], 1)]);
        let l = Loader::new(Arc::new(texts), LoaderConfig::eval(3)).expect("loader");
        // a batch pads to its own longest text, as int64
        let b = l.batch(0, &[0, 1]).expect("batch");
        assert_eq!(
            b.inputs,
            InputBatch::TokenIds {
                ids: TensorData::i64(&[2, 3], vec![7, 8, 9, 5, 0, 0]).expect("ids"),
                pad_id: 0
            }
        );
        let short = l.batch(0, &[1]).expect("batch");
        assert_eq!(short.inputs.data().shape(), [1, 1]);
        // samples padded differently cannot share a batch; a transform is for images only
        let e = l.batch(0, &[0, 2]).expect_err("two pads");
        assert!(e.to_string().contains("padded with 1"), "{e}");
        let with_t = l.clone().with_transform(Arc::new(Jitter));
        let e = with_t.batch(0, &[0]).expect_err("transform on ids");
        assert!(e.to_string().contains("token ids"), "{e}");
        let f = crate::FeatureDataset::new(
            2,
            vec![1.0, 2.0, 3.0, 4.0],
            vec![0, 1],
            vec!["a".into(), "b".into()],
        )
        .expect("features");
        let l = Loader::new(Arc::new(f), LoaderConfig::eval(2)).expect("loader");
        let b = l.batch(0, &[1, 0]).expect("batch");
        assert_eq!(
            b.inputs,
            InputBatch::Features(TensorData::f32(&[2, 2], vec![3.0, 4.0, 1.0, 2.0]).expect("f"))
        );
        assert_eq!(b.labels, [1, 0]);
    }
}
