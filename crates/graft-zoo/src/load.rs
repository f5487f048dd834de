//! Weight loading: graft's own loader on the `safetensors` crate (files read by
//! [`WeightsFile`]), not tch's `VarStore::load` (which converts parameters to the file's dtype,
//! stops at the first missing key and reports a wrong shape as an internal torch error).
//!
//! Every load returns a [`LoadReport`]: applied, missing, unexpected, shape-mismatched, plus what
//! was adapted (reshaped by a remap, first conv adapted to `in_chans`, position embeddings
//! resampled), which head tensors were dropped, which `num_batches_tracked` counters the file
//! did not carry, and which tensors hold values that cannot be right (NaN, infinite, a negative
//! running variance). Strict by default: any missing, unexpected, mis-shaped or bad-valued tensor
//! is an error that names each one, and the model is left exactly as it was. The head is the
//! only thing a load may drop without error — whole, when the file has none or a consistent head
//! for another class count — and the report still lists it.

use std::collections::{BTreeMap, BTreeSet};

use graft_backend::{Backend, DType, TensorData};
use graft_core::{Error, Result};
use regex::Regex;

use crate::model::{Arch, Model};
pub use crate::weights_file::{FileTensor, READ_LIMIT, WeightsFile};

mod report;
pub use report::{LoadReport, ShapeMismatch};

/// A key rename from another layout of the same network.
#[derive(Debug, Clone)]
pub struct Remap {
    pattern: Regex,
    replacement: String,
    /// Reshape the file's tensor to the model's shape when the element counts agree (timm
    /// ConvNeXt's `gamma [C]` → torchvision's `layer_scale [C, 1, 1]`).
    pub reshape: bool,
}

impl Remap {
    /// Renames keys under the dotted prefix `from` to the same keys under `to`.
    pub fn prefix(from: &str, to: &str) -> Self {
        let pattern = format!("^{}(\\..*)?$", regex::escape(from));
        Self {
            pattern: Regex::new(&pattern).unwrap_or_else(|_| never()),
            replacement: format!("{to}$1"),
            reshape: false,
        }
    }
    /// A regex rename (`$1`… in `replacement`); `reshape` as the field says. An invalid pattern
    /// never matches.
    pub fn regex(pattern: &str, replacement: &str, reshape: bool) -> Self {
        Self {
            pattern: Regex::new(pattern).unwrap_or_else(|_| never()),
            replacement: replacement.into(),
            reshape,
        }
    }
    /// A user-given rename; a bad pattern is an error.
    pub fn try_regex(pattern: &str, replacement: &str, reshape: bool) -> Result<Self> {
        let re = Regex::new(pattern)
            .map_err(|e| Error::invalid("Remap", format!("{pattern:?}: {e}")))?;
        Ok(Self {
            pattern: re,
            replacement: replacement.into(),
            reshape,
        })
    }
    fn apply(&self, key: &str) -> Option<String> {
        self.pattern.is_match(key).then(|| {
            self.pattern
                .replace(key, self.replacement.as_str())
                .into_owned()
        })
    }
}

fn never() -> Regex {
    // `[^\s\S]` matches nothing; this pattern is valid, so the fallback cannot fail.
    Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!())
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Missing, unexpected or mis-shaped tensors are an error (default true).
    pub strict: bool,
    /// Prefixes stripped when every key of the file carries them (`module.` from
    /// DataParallel / DDP, `model.` from Lightning-style wrappers).
    pub strip_prefixes: Vec<String>,
    /// Extra renames, tried before the family's own.
    pub remaps: Vec<Remap>,
    /// Adapt a first conv trained for 3 channels to the model's `in_chans` (timm's rule).
    pub adapt_in_chans: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            strict: true,
            strip_prefixes: vec!["module.".into(), "model.".into()],
            remaps: Vec::new(),
            adapt_in_chans: true,
        }
    }
}

impl LoadOptions {
    /// Non-strict: apply what fits, report the rest.
    pub fn lenient() -> Self {
        Self {
            strict: false,
            ..Self::default()
        }
    }
}

/// timm's `adapt_input_conv`: a first-conv weight trained on 3 channels for `in_chans` channels
/// (1: sum over the RGB filters; more: repeat the RGB filters and scale by 3 / in_chans).
pub fn adapt_input_conv(w: &TensorData, in_chans: usize) -> Result<TensorData> {
    let s = w.shape().to_vec();
    if s.len() != 4 || in_chans == 0 {
        return Err(Error::shape(
            "adapt_input_conv",
            format!("weight {s:?}, in_chans {in_chans}"),
        ));
    }
    let (o, i, kh, kw) = (s[0], s[1], s[2], s[3]);
    let a = w.to_f32();
    let src: Vec<f32> = a.iter().copied().collect();
    let k = kh * kw;
    let mut out = vec![0f32; o * in_chans * k];
    for oc in 0..o {
        for c in 0..in_chans {
            for t in 0..k {
                out[(oc * in_chans + c) * k + t] = if in_chans == 1 {
                    (0..i).map(|ic| src[(oc * i + ic) * k + t]).sum()
                } else {
                    src[(oc * i + c % i) * k + t] * (i as f32 / in_chans as f32)
                };
            }
        }
    }
    TensorData::f32(&[o, in_chans, kh, kw], out).map(|t| t.cast(w.dtype()))
}

fn strip_common_prefix(keys: &[String], prefixes: &[String]) -> Option<String> {
    prefixes
        .iter()
        .find(|p| !keys.is_empty() && keys.iter().all(|k| k.starts_with(p.as_str())))
        .cloned()
}

/// Matches a file against a model's tensors (name, shape, dtype) without touching anything.
pub(crate) fn plan(
    arch: &Arch,
    first_conv: &str,
    entries: &[(String, Vec<usize>, DType)],
    file: &WeightsFile,
    opts: &LoadOptions,
) -> Result<Plan> {
    // a task head is a head: one in the file that the model lacks is dropped as a classifier is
    let is_classifier = |n: &str| arch.is_classifier(n) || crate::model::is_task_param(n);
    let mut report = LoadReport {
        file: file.path.clone(),
        ..LoadReport::default()
    };
    let keys: Vec<String> = file.index.keys().cloned().collect();
    report.stripped_prefix = strip_common_prefix(&keys, &opts.strip_prefixes);
    let model_names: BTreeSet<String> = entries.iter().map(|e| e.0.clone()).collect();
    let mut remaps = opts.remaps.clone();
    remaps.extend(arch.remaps());
    let ignored = arch.ignored_keys();
    // model name -> (file key, reshape allowed)
    let mut by_model: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for key in &keys {
        let stripped = match &report.stripped_prefix {
            Some(p) => key[p.len()..].to_string(),
            None => key.clone(),
        };
        let (name, reshape) = if model_names.contains(&stripped) {
            (stripped, false)
        } else if let Some((n, r)) = remaps
            .iter()
            .find_map(|r| r.apply(&stripped).map(|n| (n, r.reshape)))
        {
            report.renamed += 1;
            (n, r)
        } else {
            (stripped, false)
        };
        if model_names.contains(&name) && !by_model.contains_key(&name) {
            by_model.insert(name, (key.clone(), reshape));
        } else if is_classifier(&name) {
            report.head_dropped.push(key.clone());
        } else if ignored.contains(&name.as_str()) {
            report.ignored.push(key.clone());
        } else {
            report.unexpected.push(key.clone());
        }
    }
    let first_conv = format!("{first_conv}.weight");
    let mut plan: Vec<(String, String, Option<Adapt>)> = Vec::new();
    let mut pre_adapted: BTreeMap<String, TensorData> = BTreeMap::new();
    let mut conversions: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut head_mismatch: Vec<ShapeMismatch> = Vec::new();
    for (name, want, want_dtype) in entries {
        let (name, want, want_dtype) = (name.as_str(), want.clone(), *want_dtype);
        let Some((key, reshape)) = by_model.get(name) else {
            if name.ends_with("num_batches_tracked") {
                report.defaulted.push(name.to_string());
            } else if is_classifier(name) {
                report.head_dropped.push(name.to_string());
            } else {
                report.missing.push(name.to_string());
            }
            continue;
        };
        let info = &file.index[key];
        if info.shape != want {
            let numel = |s: &[usize]| s.iter().product::<usize>();
            let how = if *reshape && numel(&info.shape) == numel(&want) {
                Some(Adapt::Reshape)
            } else if opts.adapt_in_chans
                && name == first_conv
                && info.shape.len() == 4
                && want.len() == 4
                && info.shape[0] == want[0]
                && info.shape[2..] == want[2..]
            {
                Some(Adapt::InChans)
            } else if is_classifier(name) {
                head_mismatch.push(ShapeMismatch {
                    name: name.to_string(),
                    file: info.shape.clone(),
                    model: want,
                });
                continue;
            } else {
                // Family-specific (ViT position embeddings): decoded now, it is small.
                let data = file.read(key)?;
                match arch.adapt_tensor(name, &data, &want) {
                    Some(Ok(d)) if d.shape() == want.as_slice() => {
                        pre_adapted.insert(name.to_string(), d);
                        Some(Adapt::Family)
                    }
                    _ => None,
                }
            };
            let Some(how) = how else {
                report.mismatched.push(ShapeMismatch {
                    name: name.to_string(),
                    file: info.shape.clone(),
                    model: want,
                });
                continue;
            };
            let text = match how {
                Adapt::Reshape => format!("reshaped {:?} → {want:?}", info.shape),
                Adapt::InChans => format!(
                    "first conv adapted from {} to {} input channels",
                    info.shape[1], want[1]
                ),
                Adapt::Family => format!("resampled {:?} → {want:?}", info.shape),
            };
            report.adapted.push((name.to_string(), text));
            plan.push((name.to_string(), key.clone(), Some(how)));
        } else {
            plan.push((name.to_string(), key.clone(), None));
        }
        report.applied.push(name.to_string());
        if !dtype_matches(&info.dtype, want_dtype) {
            *conversions
                .entry((info.dtype.clone(), want_dtype.name().to_string()))
                .or_default() += 1;
        }
    }
    settle_head(
        entries
            .iter()
            .map(|e| e.0.as_str())
            .filter(|n| is_classifier(n)),
        &by_model,
        head_mismatch,
        &mut plan,
        &mut report,
    );
    report.converted = conversions
        .into_iter()
        .map(|((a, c), n)| (a, c, n))
        .collect();
    report.unexpected.sort();
    report.head_dropped.sort();
    report.head_dropped.dedup();
    Ok(Plan {
        report,
        steps: plan,
        pre_adapted,
    })
}

/// A head is taken whole or dropped whole. Dropped: the file has none, or it is a consistent
/// head for another number of classes (every mismatching tensor differs from the model's in its
/// first, class dimension only, all by the same counts) — a deliberate head replacement. Anything
/// else is not a head replacement: a mismatching head tensor is a shape mismatch (another input
/// width, an inconsistent file head), a head tensor the file lacks while it has others is
/// missing — never half a head applied and the other half listed as dropped.
fn settle_head<'a>(
    head: impl Iterator<Item = &'a str>,
    in_file: &BTreeMap<String, (String, bool)>,
    mismatch: Vec<ShapeMismatch>,
    plan: &mut Vec<(String, String, Option<Adapt>)>,
    report: &mut LoadReport,
) {
    let head: Vec<&str> = head.collect();
    let absent: Vec<&str> = head
        .iter()
        .copied()
        .filter(|n| !in_file.contains_key(*n))
        .collect();
    if absent.len() == head.len() {
        return; // no head in the file: listed as dropped already
    }
    if !absent.is_empty() {
        // part of a head: the rest is missing, not dropped
        report
            .head_dropped
            .retain(|d| !absent.contains(&d.as_str()));
        report.missing.extend(absent.iter().map(|n| n.to_string()));
        report.mismatched.extend(mismatch);
        return;
    }
    if mismatch.is_empty() {
        return;
    }
    let class_dim = |m: &ShapeMismatch| {
        m.file.len() == m.model.len() && !m.file.is_empty() && m.file[1..] == m.model[1..]
    };
    let counts: BTreeSet<(usize, usize)> = mismatch
        .iter()
        .filter_map(|m| Some((*m.file.first()?, *m.model.first()?)))
        .collect();
    // a layer of the file's head is for one count of classes: its weight and bias mismatch
    // together (a weight that fits beside a bias that does not is a broken head, not another one)
    let module = |n: &str| {
        n.rsplit_once('.')
            .map_or(String::new(), |(m, _)| m.to_string())
    };
    let off: BTreeSet<String> = mismatch.iter().map(|m| module(&m.name)).collect();
    let whole_layers = head
        .iter()
        .filter(|n| off.contains(&module(n)))
        .all(|n| mismatch.iter().any(|m| m.name == *n));
    if whole_layers && mismatch.iter().all(class_dim) && counts.len() == 1 {
        // another num_classes: the whole head goes, the tensors that happened to fit too
        plan.retain(|(n, _, _)| !head.contains(&n.as_str()));
        report.applied.retain(|n| !head.contains(&n.as_str()));
        report.adapted.retain(|(n, _)| !head.contains(&n.as_str()));
        report
            .head_dropped
            .extend(head.iter().map(|n| n.to_string()));
    } else {
        report.mismatched.extend(mismatch);
    }
}

/// What a load will do.
pub(crate) struct Plan {
    pub report: LoadReport,
    steps: Vec<(String, String, Option<Adapt>)>,
    pre_adapted: BTreeMap<String, TensorData>,
}

/// Matches the file against the model, then (unless strict and something does not fit) writes
/// the file's values into the model.
pub(crate) fn apply<B: Backend>(
    model: &mut Model<B>,
    file: &WeightsFile,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let b = model.backend().clone();
    let entries: Vec<(String, Vec<usize>, DType)> = model
        .params()
        .iter()
        .map(|(n, e)| (n.to_string(), b.shape(&e.tensor), b.dtype(&e.tensor)))
        .collect();
    let Plan {
        mut report,
        steps: plan,
        mut pre_adapted,
    } = self::plan(model.arch(), &model.cfg().first_conv, &entries, file, opts)?;
    if opts.strict && !report.is_clean() {
        return Err(Error::Weights {
            path: file.path.clone(),
            msg: report.problems(),
        });
    }
    // Decode and transform everything before touching the model, so an error leaves it intact.
    let mut updates = Vec::with_capacity(plan.len());
    for (name, key, how) in plan {
        let t = model.params().get(&name)?;
        let want = b.shape(t);
        let data = match how {
            None => file.read(&key)?,
            Some(Adapt::Reshape) => reshape_data(&file.read(&key)?, &want)?,
            Some(Adapt::InChans) => adapt_input_conv(&file.read(&key)?, want[1])?,
            Some(Adapt::Family) => pre_adapted
                .remove(&name)
                .ok_or_else(|| Error::invalid("load", format!("{name}: adapted value lost")))?,
        };
        if data.shape() != want.as_slice() {
            return Err(Error::Weights {
                path: file.path.clone(),
                msg: format!(
                    "{name}: file tensor has {:?} elements in shape {:?}, model wants {want:?}",
                    data.len(),
                    data.shape()
                ),
            });
        }
        let data = if data.dtype() == b.dtype(t) {
            data
        } else {
            data.cast(b.dtype(t))
        };
        if let Some(what) = bad_values(&name, &data) {
            report.bad_values.push((name.clone(), what));
        }
        updates.push((name, b.from_data(&data)?));
    }
    if opts.strict && !report.bad_values.is_empty() {
        return Err(Error::Weights {
            path: file.path.clone(),
            msg: report.problems(),
        });
    }
    for (name, t) in updates {
        model.params_mut().replace(&name, t)?;
    }
    Ok(report)
}

/// What cannot be right in a tensor's values (as the model will hold them): NaN / infinite
/// entries, a negative running variance.
fn bad_values(name: &str, data: &TensorData) -> Option<String> {
    let converted;
    let a = match data {
        TensorData::F32(a) => a,
        TensorData::BF16(_) => {
            converted = data.to_f32();
            &converted
        }
        TensorData::I64(_) => return None,
    };
    let (mut nan, mut inf, mut neg) = (0usize, 0usize, 0usize);
    for &v in a.iter() {
        if v.is_nan() {
            nan += 1;
        } else if v.is_infinite() {
            inf += 1;
        } else if v < 0.0 {
            neg += 1;
        }
    }
    let mut what = Vec::new();
    if nan > 0 {
        what.push(format!("{nan} NaN"));
    }
    if inf > 0 {
        what.push(format!("{inf} infinite"));
    }
    if neg > 0 && name.ends_with("running_var") {
        what.push(format!("{neg} negative variances"));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

#[derive(Debug, Clone, Copy)]
enum Adapt {
    Reshape,
    InChans,
    Family,
}

fn dtype_matches(file: &str, model: DType) -> bool {
    file == model.name()
}

fn reshape_data(d: &TensorData, shape: &[usize]) -> Result<TensorData> {
    let bad = |e: ndarray::ShapeError| Error::shape("reshape", e.to_string());
    let dim = ndarray::IxDyn(shape);
    Ok(match d {
        TensorData::F32(a) => TensorData::F32(
            ndarray::ArrayD::from_shape_vec(dim, a.iter().copied().collect()).map_err(bad)?,
        ),
        TensorData::BF16(a) => TensorData::BF16(
            ndarray::ArrayD::from_shape_vec(dim, a.iter().copied().collect()).map_err(bad)?,
        ),
        TensorData::I64(a) => TensorData::I64(
            ndarray::ArrayD::from_shape_vec(dim, a.iter().copied().collect()).map_err(bad)?,
        ),
    })
}
