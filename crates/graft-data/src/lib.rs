//! graft-data: datasets, splits and the loader.
//!
//! Owns: the [`Dataset`] trait (indexable samples with a class label), in-memory array datasets
//! (scikit-learn's real handwritten digits and 10,000 real MNIST digits ship inside the crate,
//! MNIST also in the digits' 8×8 form;
//! `.npy` pairs, their headers checked against the file before anything is allocated), ImageFolder (jpg / png / webp / bmp;
//! each real directory once; images bounded by pixels and handed to the first transform as
//! 8-bit [`RawImage`]s), transforms (PIL-style resizing, crops, flips, normalisation, timm's
//! eval transform, TrivialAugment, Mixup / CutMix, documented domain shifts), subsets with
//! relabelling, seeded stratified splits, class subsets and k-shot sampling, and the [`Loader`]:
//! seeded shuffling, batching, per-sample transforms run in parallel on rayon with bounded
//! prefetch, each sample's randomness keyed on (seed, epoch, index) so neither order nor thread
//! count changes it, and a bad-sample policy.
//!
//! Must not know: models, backends' tensors (batches leave as a host `InputBatch`: images,
//! token ids or features, each in its own dtype and rank), training,
//! optimizers, TOML.

pub mod augment;
mod dataset;
mod features;
mod image_folder;
mod loader;
mod mixup;
pub mod npy;
mod shift;
mod split;
pub mod transform;

pub use dataset::{ArrayDataset, Dataset, HiddenLabels, Image, RawImage, Sample, Subset};
pub use features::FeatureDataset;
pub use image_folder::{ImageFolder, decode_raw, decode_rgb, decode_rgb_bounded, is_image_file};
pub use loader::{BadSample, Batch, EpochIter, Loader, LoaderConfig, Transform};
pub use mixup::Mixup;
pub use shift::Shift;
pub use split::{class_subset, k_shot, stratified_split};
