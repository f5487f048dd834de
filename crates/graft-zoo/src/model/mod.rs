//! The model: an architecture (plain data, one of the families), its parameters in a [`Params`]
//! store named as the reference's `state_dict`, and its pretrained cfg. Every family has the same
//! surface (timm's): `forward_features`, `forward_head(x, pre_logits)`, `replace_head`, `stages`,
//! `feature_info` and multi-level features.

use graft_backend::{Backend, Ctx, DType, ParamBuilder, Params, TensorData};
use graft_core::selector::StageTable;
use graft_core::{Error, Result};

use crate::cfg::PretrainedCfg;

mod arch;
mod head;
mod input;
mod tasks;
pub(crate) use input::check_token_ids;

pub use arch::*;
pub(crate) use arch::{Family, Side};
pub use head::*;
pub(crate) use head::{ClassifierSpec, HeadInit, init_classifier};
pub use tasks::{TASKS_PREFIX, TaskHead, is_task_param};

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
    /// Take any input size (a multiple of the patch), the position embeddings resampled at
    /// every forward (timm's `dynamic_img_size`; ViTs only).
    pub dynamic_img_size: bool,
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
    /// The classifier; `None` keeps the registered model's (the reference's Linear for
    /// built-ins, the saved head for user models).
    pub head: Option<HeadSpec>,
    /// Load the pretrained weights the name refers to (timm's `pretrained=True`): a tag's, an
    /// `hf-hub:` repo's, torchvision's, or an architecture's default tag. Files come from the
    /// local caches or are downloaded ([`graft_hub`]). Ignored when `weights` is given.
    pub pretrained: bool,
    /// The Hub revision (branch, tag or commit) of a tag's or `hf-hub:` repo's files; default
    /// `main` (an `@revision` in the name wins).
    pub revision: Option<String>,
    /// Where pretrained files come from; `None`: [`graft_hub::HubConfig::from_env`].
    pub hub: Option<graft_hub::HubConfig>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            num_classes: None,
            in_chans: 3,
            img_size: None,
            dynamic_img_size: false,
            weights: None,
            load: crate::load::LoadOptions::default(),
            seed: 0,
            dtype: DType::F32,
            drop_path_rate: None,
            drop_rate: None,
            head: None,
            pretrained: false,
            revision: None,
            hub: None,
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
    /// Load the pretrained weights the name refers to (see [`ModelOptions::pretrained`]).
    pub fn pretrained(mut self, yes: bool) -> Self {
        self.pretrained = yes;
        self
    }
    /// The Hub revision of the pretrained files.
    pub fn revision(mut self, rev: impl Into<String>) -> Self {
        self.revision = Some(rev.into());
        self
    }
    /// Where pretrained files come from.
    pub fn hub(mut self, cfg: graft_hub::HubConfig) -> Self {
        self.hub = Some(cfg);
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
    head: HeadSpec,
    seed: u64,
    dtype: DType,
    /// Set on an inference copy ([`Model::for_inference`]).
    inference: Option<crate::inference::InferenceOptions>,
    /// The heads of a multi-task model (`tasks.<name>.*`), beside the classifier.
    tasks: Vec<TaskHead>,
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
        use graft_core::limits;
        if in_chans == 0 || in_chans > limits::MAX_IN_CHANS {
            return Err(Error::invalid(
                "create_model",
                format!(
                    "{name}: in_chans {in_chans}: must be 1 to {}",
                    limits::MAX_IN_CHANS
                ),
            ));
        }
        if num_classes > limits::MAX_CLASSES {
            return Err(Error::invalid(
                "create_model",
                format!(
                    "{name}: num_classes {num_classes}: at most {}",
                    limits::MAX_CLASSES
                ),
            ));
        }
        let head = opts.head.clone().unwrap_or_else(|| arch.default_head());
        // the sizes first, from a dry build: a model that cannot fit in memory is an error
        // naming it, not an allocation that aborts the process
        let dry = ParamBuilder::dry(backend.clone());
        arch.init_trunk(&dry.root(), in_chans)?;
        init_classifier(&dry.root(), &arch, &head, num_classes)?;
        let width: u128 = if dtype == DType::BF16 { 2 } else { 4 };
        let bytes = dry.shapes().iter().try_fold(0u128, |acc, (_, s, _)| {
            acc.checked_add(limits::numel(s)?.checked_mul(width)?)
        });
        limits::check_alloc(
            &format!("{name} ({num_classes} classes, {in_chans} input channels)"),
            bytes,
        )?;
        let builder = ParamBuilder::new(backend.clone(), seed).with_dtype(dtype);
        arch.init_trunk(&builder.root(), in_chans)?;
        init_classifier(&builder.root(), &arch, &head, num_classes)?;
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
            head,
            seed,
            dtype,
            inference: None,
            tasks: Vec::new(),
        })
    }
    /// The same model on another backend: every parameter and buffer copied through the host,
    /// the architecture, head, tasks and inference form kept (train on libtorch, run on
    /// ndarray; or trace it for ONNX export).
    pub fn to_backend<B2: Backend>(&self, backend: &B2) -> Result<Model<B2>> {
        Ok(Model {
            name: self.name.clone(),
            architecture: self.architecture.clone(),
            arch: self.arch.clone(),
            cfg: self.cfg.clone(),
            params: self.params.to_backend(backend)?,
            num_classes: self.num_classes,
            in_chans: self.in_chans,
            head: self.head.clone(),
            seed: self.seed,
            dtype: self.dtype,
            inference: self.inference,
            tasks: self.tasks.clone(),
        })
    }
    /// How this model was made an inference copy (None: a trainable model).
    pub fn inference(&self) -> Option<&crate::inference::InferenceOptions> {
        self.inference.as_ref()
    }
    pub(crate) fn inference_copy(
        &self,
        params: Params<B>,
        opts: crate::inference::InferenceOptions,
    ) -> Model<B> {
        Model {
            name: self.name.clone(),
            architecture: self.architecture.clone(),
            arch: self.arch.clone(),
            cfg: self.cfg.clone(),
            params,
            num_classes: self.num_classes,
            in_chans: self.in_chans,
            head: self.head.clone(),
            seed: self.seed,
            dtype: opts.dtype,
            inference: Some(opts),
            tasks: self.tasks.clone(),
        }
    }
    /// Refuses `op` on an inference copy (its BatchNorms are folded away, its layout and dtype
    /// changed: it computes the eval function only).
    fn trainable_form(&self, op: &'static str) -> Result<()> {
        match self.inference {
            None => Ok(()),
            Some(_) => Err(Error::invalid(
                op,
                format!(
                    "{} is an inference copy (Model::for_inference); do this on the original model",
                    self.name
                ),
            )),
        }
    }
    /// The input as the parameters want it: cast to the model's float dtype, channels-last on a
    /// channels-last inference copy.
    fn prepare_input(&self, x: &B::Tensor) -> Result<B::Tensor> {
        let b = self.backend();
        let mut x = x.clone();
        let dt = b.dtype(&x);
        if dt != self.dtype && dt != DType::I64 {
            x = b.cast(&x, self.dtype)?;
        }
        if let Some(o) = &self.inference
            && self.arch.is_convnet()
            && o.layout.channels_last(&b.shape(&x), self.dtype)
        {
            x = b.to_memory_format(&x, graft_backend::MemoryFormat::ChannelsLast)?;
        }
        Ok(x)
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
    /// Stages, bottom to top, ending with `head` (the classifier and any task heads): for
    /// freezing and per-group learning rates.
    pub fn stages(&self) -> StageTable {
        self.stages_with_tasks()
    }
    /// The trunk stages' names, bottom to top (`stem`, `layer1`, ...): what `forward_stages`
    /// and a probe take.
    pub fn stage_names(&self) -> Vec<String> {
        self.arch
            .stage_specs()
            .into_iter()
            .map(|s| s.name)
            .collect()
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
        let b = self.backend();
        self.arch
            .check_input(&b.shape(x), b.dtype(x), self.in_chans, &self.name)
    }
    /// The unpooled output of the trunk (timm's `forward_features`; a text encoder's
    /// `last_hidden_state`, `[N, T, hidden]`).
    pub fn forward_features(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        Ok(self.features_and_side(x, ctx)?.0)
    }
    fn features_and_side(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<(B::Tensor, Side<B>)> {
        self.check_input(x)?;
        let mut y = self.prepare_input(x)?;
        let side = self.arch.side(&self.params, &y, self.dtype)?;
        for i in 0..self.arch.stage_specs().len() {
            y = self.arch.forward_stage(&self.params, i, &y, &side, ctx)?;
        }
        Ok((self.arch.finish_features(&self.params, &y)?, side))
    }
    /// Pooling and classifier on `forward_features`' output; with `pre_logits` the pooled features
    /// the classifier would see. Text encoders pool with the padding mask, which the features do
    /// not carry: for them this is an error, and [`Model::forward_pooled`] / [`Model::forward`]
    /// on the ids is the way.
    pub fn forward_head(
        &self,
        features: &B::Tensor,
        pre_logits: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        self.head_with(features, &Side::default(), pre_logits, ctx)
    }
    fn head_with(
        &self,
        features: &B::Tensor,
        side: &Side<B>,
        pre_logits: bool,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        if self.head == HeadSpec::Distilled && !pre_logits && self.num_classes > 0 {
            return self.forward_distilled(features, ctx);
        }
        let y = self.arch.pool(&self.params, features, side, ctx)?;
        if pre_logits || self.num_classes == 0 {
            return Ok(y);
        }
        self.forward_classifier(&y, ctx)
    }
    /// [`HeadSpec::Distilled`]: `head` on the class token, `head_dist` on the distillation
    /// token (each after the classifier dropout), the logits averaged.
    fn forward_distilled(&self, features: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let b = self.backend();
        let c = self.arch.classifier();
        let dist = self.arch.dist_head_prefix().ok_or_else(|| {
            Error::invalid("forward", format!("{}: no distillation head", self.name))
        })?;
        let [cls, dist_token] = self.arch.distilled_tokens(b, features)?;
        let mut logits = Vec::with_capacity(2);
        for (x, prefix) in [(cls, c.prefix), (dist_token, dist)] {
            let x = graft_backend::nn::dropout(b, &x, c.dropout, ctx, c.dropout_path)?;
            logits.push(graft_backend::nn::linear(&self.params, prefix, &x)?);
        }
        b.mul_scalar(&b.add(&logits[0], &logits[1])?, 0.5)
    }
    /// The classifier alone, on pooled pre-logits features `[N, num_features]` (what
    /// `forward_pooled` returns, or a feature cache holds): dropout, then the Linear or MLP head.
    pub fn forward_classifier(&self, pooled: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let b = self.backend();
        self.check_pooled("forward_classifier", &self.name, pooled)?;
        if self.num_classes == 0 {
            return Err(Error::invalid(
                "forward_classifier",
                format!("{} has no classifier (num_classes 0)", self.name),
            ));
        }
        if self.head == HeadSpec::Distilled {
            return Err(Error::invalid(
                "forward_classifier",
                format!(
                    "{}'s distilled head reads the class and distillation tokens, not the pooled features: run the trunk (forward), or replace the head with a Linear one to train on pooled features",
                    self.name
                ),
            ));
        }
        let c = self.arch.classifier();
        let y = graft_backend::nn::dropout(b, pooled, c.dropout, ctx, c.dropout_path)?;
        head::forward_head_at(&self.params, c.prefix, &self.head, &y, ctx)
    }
    /// Checks that `x` is pooled features `[N, num_features]`, for `op`; `who` reads them (the
    /// model, or one of its task heads).
    fn check_pooled(&self, op: &'static str, who: &str, x: &B::Tensor) -> Result<()> {
        let shape = self.backend().shape(x);
        if shape.len() != 2 || shape[1] != self.arch.num_features() {
            return Err(Error::shape(
                op,
                format!(
                    "{who} expects pooled features [N, {}], got {shape:?}",
                    self.arch.num_features()
                ),
            ));
        }
        Ok(())
    }
    /// Logits (or pooled features when the model has no head).
    pub fn forward(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let (f, side) = self.features_and_side(x, ctx)?;
        self.head_with(&f, &side, false, ctx)
    }
    /// Pooled pre-logits features (a text encoder's sentence embedding: pooled, normalised when
    /// its recipe says so).
    pub fn forward_pooled(&self, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let (f, side) = self.features_and_side(x, ctx)?;
        self.head_with(&f, &side, true, ctx)
    }
    /// One trunk pass, both ends: the pooled pre-logits features and the logits (a CLIP image
    /// tower's logits are its image embedding).
    pub fn forward_pooled_and_logits(
        &self,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (f, side) = self.features_and_side(x, ctx)?;
        Ok((
            self.head_with(&f, &side, true, ctx)?,
            self.head_with(&f, &side, false, ctx)?,
        ))
    }
    /// Multi-level features: the outputs of the named trunk stages (NCHW maps), in stage order;
    /// runs only as far as the highest stage asked for. A text encoder's stage output is the
    /// mean of its real tokens' states as a `[N, hidden, 1, 1]` map.
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
        let mut y = self.prepare_input(x)?;
        let side = self.arch.side(&self.params, &y, self.dtype)?;
        for (i, out) in outs.iter_mut().enumerate().take(last + 1) {
            y = self.arch.forward_stage(&self.params, i, &y, &side, ctx)?;
            if want.contains(&i) {
                *out = Some(self.arch.stage_output(self.backend(), i, &y, &side)?);
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
    /// Replaces the classifier with a fresh `head` for `num_classes` (0 removes it; the same
    /// kind: `model.head().clone()`; an MLP head, say), initialised as the reference initialises
    /// its head / as [`HeadSpec`] says. Returns the names removed. (During training,
    /// `graft_surgery::Plan::replace_head` also moves the optimizer over.)
    pub fn replace_head(
        &mut self,
        num_classes: usize,
        head: HeadSpec,
        seed: u64,
    ) -> Result<Vec<String>> {
        self.trainable_form("replace_head")?;
        // the new head first: a head the trunk cannot take leaves the model as it was
        let builder = ParamBuilder::new(self.backend().clone(), seed).with_dtype(self.dtype);
        init_classifier(&builder.root(), &self.arch, &head, num_classes)?;
        let mut removed = Vec::new();
        for prefix in self.arch.classifier_prefixes() {
            removed.extend(self.params.remove_prefix(prefix));
        }
        self.head = head;
        for (name, entry) in builder.finish().iter() {
            self.params.insert(name, entry.tensor.clone(), entry.kind)?;
        }
        self.num_classes = num_classes;
        self.cfg.num_classes = num_classes;
        self.cfg.labels = None;
        self.seed = seed;
        Ok(removed)
    }
    /// True when `name` belongs to the classifier or to a task head.
    pub fn is_classifier(&self, name: &str) -> bool {
        self.arch.is_classifier(name) || is_task_param(name)
    }
    /// The classifier's structure.
    pub fn head(&self) -> &HeadSpec {
        &self.head
    }
    /// Prefixes of the BatchNorm layers (modules with running statistics), in order.
    pub fn batch_norm_layers(&self) -> Vec<String> {
        self.params
            .names()
            .filter_map(|n| n.strip_suffix(".running_mean"))
            .map(str::to_string)
            .collect()
    }
    /// Parameters the reference exempts from weight decay besides biases and norm weights
    /// (timm's `no_weight_decay`: ViT's `pos_embed` and `cls_token`).
    pub fn no_weight_decay(&self) -> Vec<String> {
        self.arch.no_weight_decay()
    }
    /// Adapts the first conv to `in_chans` input channels, after a load too (timm's
    /// `adapt_input_conv`, from the current weights: 1 channel sums the filters, n repeats them
    /// scaled by c/n). The weight gets a new store entry, so optimizer state does not carry over.
    pub fn adapt_input(&mut self, in_chans: usize) -> Result<()> {
        if in_chans == self.in_chans {
            return Ok(());
        }
        self.trainable_form("adapt_input")?;
        if self.arch.is_text() {
            return Err(Error::invalid(
                "adapt_input",
                format!("{} is a text encoder: it has no input channels", self.name),
            ));
        }
        let name = format!("{}.weight", self.cfg.first_conv);
        let b = self.backend().clone();
        let w = b.to_data(self.params.get(&name)?)?;
        let adapted = crate::load::adapt_input_conv(&w, in_chans)?;
        self.params.replace(&name, b.from_data(&adapted)?)?;
        self.in_chans = in_chans;
        self.cfg.input_size[0] = in_chans;
        Ok(())
    }
    /// Loads a safetensors file (see [`crate::load`]); the report lists what was applied, missing,
    /// unexpected, mis-shaped, adapted and dropped. Strict by default: any finding other than a
    /// dropped head is an error and leaves the model untouched.
    pub fn load_weights(
        &mut self,
        path: &std::path::Path,
        opts: &crate::load::LoadOptions,
    ) -> Result<crate::load::LoadReport> {
        self.trainable_form("load_weights")?;
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
        self.trainable_form("load_tensors")?;
        let file = crate::load::WeightsFile::from_tensors(source, tensors.clone());
        crate::load::apply(self, &file, opts)
    }
    /// Saves the model as a user model: `<dir>/model.safetensors` + `<dir>/config.json`
    /// (timm's hub layout), registered by [`crate::Registry::register_dir`].
    pub fn save_user_model(&self, dir: &std::path::Path) -> Result<()> {
        self.trainable_form("save_user_model")?;
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
            head: self.head.clone(),
            pretrained_cfg: cfg,
            label_names: labels,
            tasks: self.tasks.clone(),
            written_by_timm: None,
        }
        .write(&dir.join("config.json"))
    }
}
