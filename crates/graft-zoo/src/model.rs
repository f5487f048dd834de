//! The model: an architecture (plain data, one of the families), its parameters in a [`Params`]
//! store named as the reference's `state_dict`, and its pretrained cfg. Every family has the same
//! surface (timm's): `forward_features`, `forward_head(x, pre_logits)`, `reset_head`, `stages`,
//! `feature_info` and multi-level features.

use graft_backend::{Backend, Ctx, DType, ParamBuilder, ParamPath, Params, TensorData};
use graft_core::name::is_under;
use graft_core::selector::{Stage, StageTable};
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::cfg::PretrainedCfg;
use crate::families::{convnext, efficientnet, mobilenetv3, resnet, vit};

/// One trunk stage: its name (a [`StageTable`] entry), the parameter prefixes it owns, and what
/// its output is (timm's `feature_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageSpec {
    pub name: String,
    pub prefixes: Vec<String>,
    /// Channels of the stage's output.
    pub channels: usize,
    /// Input size / output size (the stage's cumulative stride).
    pub reduction: usize,
}

/// timm's `feature_info` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureInfo {
    pub stage: String,
    pub channels: usize,
    pub reduction: usize,
}

/// What a family implements. Methods are generic over the backend, so dispatch goes through the
/// [`Arch`] enum rather than a trait object.
pub(crate) trait Family {
    /// Creates every trunk parameter and buffer under `root` (the reference's names and init).
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()>;
    /// Creates the classifier for `num_classes` (nothing when 0) with the reference's init.
    fn init_head<B: Backend>(&self, root: &ParamPath<'_, B>, num_classes: usize) -> Result<()>;
    /// Trunk stages, bottom to top.
    fn stage_specs(&self) -> Vec<StageSpec>;
    /// Prefixes of the head stage (for freezing: the final norm of ViT / ConvNeXt sits here).
    fn head_stage_prefixes(&self) -> Vec<String>;
    /// Prefixes of the classifier that `reset_head` replaces.
    fn classifier_prefixes(&self) -> Vec<String>;
    /// Width of the pre-logits features.
    fn num_features(&self) -> usize;
    /// Runs trunk stage `i` on the previous stage's output (the image for stage 0).
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor>;
    /// Applied after the last stage inside `forward_features` (ViT's final norm).
    fn finish_features<B: Backend>(&self, _p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }
    /// A stage's output as a multi-level feature (ViT: tokens → NCHW map).
    fn stage_output<B: Backend>(&self, _b: &B, _i: usize, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }
    /// Pooling, pre-logits and classifier.
    fn forward_head<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        pre_logits: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor>;
    /// Turns a tensor from a checkpoint whose shape differs from the model's into the model's
    /// shape when the family knows how (ViT position embeddings); `None` when it does not.
    fn adapt_tensor(
        &self,
        _name: &str,
        _data: &TensorData,
        _want: &[usize],
    ) -> Option<Result<TensorData>> {
        None
    }
    /// Key remaps from other layouts of the same network (timm ConvNeXt → torchvision).
    fn remaps(&self) -> Vec<crate::load::Remap> {
        Vec::new()
    }
}

/// The architecture of a model: a family and its hyper-parameters. Plain data (serialisable), so
/// a user model's `config.json` can name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Arch {
    ResNet(resnet::ResNet),
    MobileNetV3(mobilenetv3::MobileNetV3),
    EfficientNet(efficientnet::EfficientNet),
    ConvNeXt(convnext::ConvNeXt),
    Vit(vit::Vit),
}

macro_rules! dispatch {
    ($self:expr, $f:ident ( $($arg:expr),* )) => {
        match $self {
            Arch::ResNet(a) => a.$f($($arg),*),
            Arch::MobileNetV3(a) => a.$f($($arg),*),
            Arch::EfficientNet(a) => a.$f($($arg),*),
            Arch::ConvNeXt(a) => a.$f($($arg),*),
            Arch::Vit(a) => a.$f($($arg),*),
        }
    };
}

impl Arch {
    /// The family's name (`resnet`, `mobilenetv3`, ...).
    pub fn family(&self) -> &'static str {
        match self {
            Arch::ResNet(_) => "resnet",
            Arch::MobileNetV3(_) => "mobilenetv3",
            Arch::EfficientNet(_) => "efficientnet",
            Arch::ConvNeXt(_) => "convnext",
            Arch::Vit(_) => "vit",
        }
    }
    pub(crate) fn init_trunk<B: Backend>(
        &self,
        root: &ParamPath<'_, B>,
        in_chans: usize,
    ) -> Result<()> {
        dispatch!(self, init_trunk(root, in_chans))
    }
    pub(crate) fn init_head<B: Backend>(&self, root: &ParamPath<'_, B>, n: usize) -> Result<()> {
        dispatch!(self, init_head(root, n))
    }
    /// Trunk stages, bottom to top.
    pub fn stage_specs(&self) -> Vec<StageSpec> {
        dispatch!(self, stage_specs())
    }
    pub(crate) fn head_stage_prefixes(&self) -> Vec<String> {
        dispatch!(self, head_stage_prefixes())
    }
    /// Prefixes `reset_head` replaces.
    pub fn classifier_prefixes(&self) -> Vec<String> {
        dispatch!(self, classifier_prefixes())
    }
    /// Width of the pre-logits features.
    pub fn num_features(&self) -> usize {
        dispatch!(self, num_features())
    }
    pub(crate) fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        dispatch!(self, forward_stage(p, i, x, ctx))
    }
    pub(crate) fn finish_features<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        dispatch!(self, finish_features(p, x))
    }
    pub(crate) fn stage_output<B: Backend>(
        &self,
        b: &B,
        i: usize,
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        dispatch!(self, stage_output(b, i, x))
    }
    pub(crate) fn forward_head<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        pre: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        dispatch!(self, forward_head(p, x, pre, ctx))
    }
    pub(crate) fn adapt_tensor(
        &self,
        name: &str,
        data: &TensorData,
        want: &[usize],
    ) -> Option<Result<TensorData>> {
        dispatch!(self, adapt_tensor(name, data, want))
    }
    pub(crate) fn remaps(&self) -> Vec<crate::load::Remap> {
        dispatch!(self, remaps())
    }
    /// The stage table (trunk stages, then `head`).
    pub fn stage_table(&self) -> StageTable {
        let mut stages: Vec<Stage> = self
            .stage_specs()
            .into_iter()
            .map(|s| Stage {
                name: s.name,
                prefixes: s.prefixes,
            })
            .collect();
        stages.push(Stage {
            name: "head".into(),
            prefixes: self.head_stage_prefixes(),
        });
        // Stage names come from the family code and are unique by construction.
        StageTable::new(stages).unwrap_or_default()
    }
}

/// How to build a model (timm's `create_model` keyword arguments).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Classes of the head; `None` keeps the cfg's, `Some(0)` builds no head (`forward` gives
    /// pooled pre-logits features).
    pub num_classes: Option<usize>,
    /// Input channels (the first conv is built, and on load adapted, for this many).
    pub in_chans: usize,
    /// Input size `[h, w]` for models whose parameters depend on it (ViT); `None` keeps the cfg's.
    pub img_size: Option<[usize; 2]>,
    /// Weights to load after building (safetensors; `.pth` / `.pt` only through graft-tch).
    pub weights: Option<std::path::PathBuf>,
    /// How to load them.
    pub load: crate::load::LoadOptions,
    /// Seed of the random initialisation.
    pub seed: u64,
    /// Float dtype of the parameters.
    pub dtype: DType,
    /// Stochastic-depth rate override (`None`: the reference's default for the family).
    pub drop_path_rate: Option<f64>,
    /// Classifier dropout override.
    pub drop_rate: Option<f64>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            num_classes: None,
            in_chans: 3,
            img_size: None,
            weights: None,
            load: crate::load::LoadOptions::default(),
            seed: 0,
            dtype: DType::F32,
            drop_path_rate: None,
            drop_rate: None,
        }
    }
}

impl ModelOptions {
    pub fn num_classes(mut self, n: usize) -> Self {
        self.num_classes = Some(n);
        self
    }
    pub fn in_chans(mut self, n: usize) -> Self {
        self.in_chans = n;
        self
    }
    pub fn img_size(mut self, h: usize, w: usize) -> Self {
        self.img_size = Some([h, w]);
        self
    }
    pub fn weights(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.weights = Some(path.into());
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A built model on backend `B`.
#[derive(Debug)]
pub struct Model<B: Backend> {
    name: String,
    /// The built-in architecture it is built from (its own name for built-ins).
    architecture: String,
    arch: Arch,
    cfg: PretrainedCfg,
    params: Params<B>,
    num_classes: usize,
    in_chans: usize,
    seed: u64,
    dtype: DType,
}

impl<B: Backend> Model<B> {
    /// Builds `arch` with fresh parameters (the reference's init, seeded). `cfg` is the
    /// pretrained cfg; its `num_classes` / `input_size` are updated to the built model's.
    ///
    /// Uses `opts.num_classes` (default: the cfg's), `in_chans`, `seed` and `dtype`; building
    /// loads nothing (`opts.weights` is the registry's business).
    pub fn build(
        backend: &B,
        name: &str,
        arch: Arch,
        mut cfg: PretrainedCfg,
        opts: &ModelOptions,
    ) -> Result<Self> {
        let num_classes = opts.num_classes.unwrap_or(cfg.num_classes);
        let (in_chans, seed, dtype) = (opts.in_chans, opts.seed, opts.dtype);
        if in_chans == 0 {
            return Err(Error::invalid(
                "create_model",
                format!("{name}: in_chans must be >= 1"),
            ));
        }
        let builder = ParamBuilder::new(backend.clone(), seed).with_dtype(dtype);
        arch.init_trunk(&builder.root(), in_chans)?;
        arch.init_head(&builder.root(), num_classes)?;
        cfg.input_size[0] = in_chans;
        if cfg.num_classes != num_classes {
            cfg.labels = None;
        }
        cfg.num_classes = num_classes;
        Ok(Self {
            name: name.into(),
            architecture: name.into(),
            arch,
            cfg,
            params: builder.finish(),
            num_classes,
            in_chans,
            seed,
            dtype,
        })
    }
    /// Registered name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The built-in architecture name it is built from (a user model's base).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }
    pub(crate) fn set_architecture(&mut self, name: &str) {
        self.architecture = name.into();
    }
    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }
    /// The pretrained cfg (input size, normalisation, ends, labels).
    pub fn cfg(&self) -> &PretrainedCfg {
        &self.cfg
    }
    /// Mutable cfg (set labels after training, for instance).
    pub fn cfg_mut(&mut self) -> &mut PretrainedCfg {
        &mut self.cfg
    }
    /// Parameters and buffers.
    pub fn params(&self) -> &Params<B> {
        &self.params
    }
    /// Mutable parameters and buffers.
    pub fn params_mut(&mut self) -> &mut Params<B> {
        &mut self.params
    }
    /// The backend the parameters live on.
    pub fn backend(&self) -> &B {
        self.params.backend()
    }
    /// Classes of the current head (0: no head).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// Input channels.
    pub fn in_chans(&self) -> usize {
        self.in_chans
    }
    /// Width of the pre-logits features.
    pub fn num_features(&self) -> usize {
        self.arch.num_features()
    }
    /// Float dtype of the parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Stages, bottom to top, ending with `head`: for freezing and per-group learning rates.
    pub fn stages(&self) -> StageTable {
        self.arch.stage_table()
    }
    /// Channels and reduction of each trunk stage's output.
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        self.arch
            .stage_specs()
            .into_iter()
            .map(|s| FeatureInfo {
                stage: s.name,
                channels: s.channels,
                reduction: s.reduction,
            })
            .collect()
    }
    fn check_input(&self, x: &B::Tensor) -> Result<()> {
        let s = self.backend().shape(x);
        if s.len() != 4 || s[1] != self.in_chans {
            return Err(Error::shape(
                "forward",
                format!(
                    "{}: input must be [N, {}, H, W], got {s:?}",
                    self.name, self.in_chans
                ),
            ));
        }
        Ok(())
    }
    /// The unpooled output of the trunk (timm's `forward_features`).
    pub fn forward_features(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        self.check_input(x)?;
        let mut y = x.clone();
        for i in 0..self.arch.stage_specs().len() {
            y = self.arch.forward_stage(&self.params, i, &y, ctx)?;
        }
        self.arch.finish_features(&self.params, &y)
    }
    /// Pooling and classifier on `forward_features`' output; with `pre_logits` the pooled features
    /// the classifier would see.
    pub fn forward_head(
        &self,
        features: &B::Tensor,
        pre_logits: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        self.arch.forward_head(
            &self.params,
            features,
            pre_logits || self.num_classes == 0,
            ctx,
        )
    }
    /// Logits (or pooled features when the model has no head).
    pub fn forward(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let f = self.forward_features(x, ctx)?;
        self.forward_head(&f, false, ctx)
    }
    /// Pooled pre-logits features.
    pub fn forward_pooled(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let f = self.forward_features(x, ctx)?;
        self.forward_head(&f, true, ctx)
    }
    /// Multi-level features: the outputs of the named trunk stages (NCHW maps), in stage order;
    /// runs only as far as the highest stage asked for.
    pub fn forward_stages(
        &self,
        x: &B::Tensor,
        stages: &[&str],
        ctx: &Ctx<'_>,
    ) -> Result<Vec<B::Tensor>> {
        self.check_input(x)?;
        let specs = self.arch.stage_specs();
        let mut want = Vec::with_capacity(stages.len());
        for s in stages {
            match specs.iter().position(|sp| sp.name == *s) {
                Some(i) => want.push(i),
                None => {
                    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                    return Err(Error::Selector {
                        selector: format!("stage {s:?}"),
                        msg: format!("{} has trunk stages {names:?}", self.name),
                    });
                }
            }
        }
        let last = want.iter().copied().max().unwrap_or(0);
        let mut outs: Vec<Option<B::Tensor>> = vec![None; specs.len()];
        let mut y = x.clone();
        for (i, out) in outs.iter_mut().enumerate().take(last + 1) {
            y = self.arch.forward_stage(&self.params, i, &y, ctx)?;
            if want.contains(&i) {
                *out = Some(self.arch.stage_output(self.backend(), i, &y)?);
            }
        }
        want.iter()
            .map(|&i| {
                outs[i]
                    .clone()
                    .ok_or_else(|| Error::invalid("forward_stages", "stage not computed"))
            })
            .collect()
    }
    /// Replaces the classifier with a fresh one for `num_classes` (0 removes it), initialised as
    /// the reference initialises its head. Returns the names removed.
    pub fn reset_head(&mut self, num_classes: usize, seed: u64) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for p in self.arch.classifier_prefixes() {
            removed.extend(self.params.remove_prefix(&p));
        }
        let builder = ParamBuilder::new(self.backend().clone(), seed).with_dtype(self.dtype);
        self.arch.init_head(&builder.root(), num_classes)?;
        for (name, entry) in builder.finish().iter() {
            self.params.insert(name, entry.tensor.clone(), entry.kind)?;
        }
        self.num_classes = num_classes;
        self.cfg.num_classes = num_classes;
        self.cfg.labels = None;
        self.seed = seed;
        Ok(removed)
    }
    /// True when `name` belongs to the classifier.
    pub fn is_classifier(&self, name: &str) -> bool {
        self.arch
            .classifier_prefixes()
            .iter()
            .any(|p| is_under(name, p))
    }
    /// Loads a safetensors file (see [`crate::load`]); the report lists what was applied, missing,
    /// unexpected, mis-shaped, adapted and dropped. Strict by default: any finding other than a
    /// dropped head is an error and leaves the model untouched.
    pub fn load_weights(
        &mut self,
        path: &std::path::Path,
        opts: &crate::load::LoadOptions,
    ) -> Result<crate::load::LoadReport> {
        let file = crate::load::WeightsFile::open(path)?;
        crate::load::apply(self, &file, opts)
    }
    /// Loads named host tensors already in memory (from a `.pth` read by graft-tch, say).
    pub fn load_tensors(
        &mut self,
        source: &std::path::Path,
        tensors: &std::collections::BTreeMap<String, TensorData>,
        opts: &crate::load::LoadOptions,
    ) -> Result<crate::load::LoadReport> {
        let file = crate::load::WeightsFile::from_tensors(source, tensors.clone());
        crate::load::apply(self, &file, opts)
    }
    /// Saves the model as a user model: `<dir>/model.safetensors` + `<dir>/config.json`
    /// (timm's hub layout), registered by [`crate::Registry::register_dir`].
    pub fn save_user_model(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors = self.params.to_data()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        graft_backend::safetensors_io::save(&dir.join("model.safetensors"), &tensors, Some(meta))?;
        let mut cfg = self.cfg.clone();
        cfg.source = "graft".into();
        let labels = cfg.labels.take();
        let img = self.arch.img_size();
        crate::cfg::UserModelConfig {
            architecture: self.architecture.clone(),
            num_classes: self.num_classes,
            in_chans: self.in_chans,
            img_size: img,
            pretrained_cfg: cfg,
            label_names: labels,
        }
        .write(&dir.join("config.json"))
    }
}

impl Arch {
    /// Input size the parameters were built for, when they depend on it (ViT).
    pub fn img_size(&self) -> Option<[usize; 2]> {
        match self {
            Arch::Vit(v) => Some(v.img_size),
            _ => None,
        }
    }
    /// Sets the input size (ViT rebuilds position embeddings for it); other families ignore it.
    pub fn set_img_size(&mut self, size: [usize; 2]) -> Result<()> {
        if let Arch::Vit(v) = self {
            v.set_img_size(size)?;
        }
        Ok(())
    }
    /// Overrides the stochastic-depth and classifier dropout rates.
    pub fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        match self {
            Arch::ResNet(_) => {}
            Arch::MobileNetV3(m) => {
                if let Some(d) = drop {
                    m.dropout = d;
                }
            }
            Arch::EfficientNet(m) => {
                if let Some(d) = drop {
                    m.dropout = d;
                }
                if let Some(d) = drop_path {
                    m.stochastic_depth = d;
                }
            }
            Arch::ConvNeXt(m) => {
                if let Some(d) = drop_path {
                    m.stochastic_depth = d;
                }
            }
            Arch::Vit(m) => {
                if let Some(d) = drop_path {
                    m.drop_path = d;
                }
                if let Some(d) = drop {
                    m.drop = d;
                }
            }
        }
    }
}

/// Every parameter and buffer an architecture creates (name, shape, kind), from a dry build:
/// nothing is allocated or initialised.
pub fn param_shapes<B: Backend>(
    backend: &B,
    arch: &Arch,
    num_classes: usize,
    in_chans: usize,
) -> Result<Vec<(String, Vec<usize>, graft_backend::ParamKind)>> {
    let builder = ParamBuilder::dry(backend.clone());
    arch.init_trunk(&builder.root(), in_chans)?;
    arch.init_head(&builder.root(), num_classes)?;
    Ok(builder.shapes())
}

/// Trainable parameter count (buffers excluded) of an architecture, from a dry build.
pub fn count_parameters<B: Backend>(
    backend: &B,
    arch: &Arch,
    num_classes: usize,
    in_chans: usize,
) -> Result<usize> {
    Ok(param_shapes(backend, arch, num_classes, in_chans)?
        .iter()
        .filter(|(_, _, k)| *k == graft_backend::ParamKind::Parameter)
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum())
}
