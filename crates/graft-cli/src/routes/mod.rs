//! `graft extract | probe | reuse | finetune | plan | eval | multitask | rank EXP.toml`: each resolves the file
//! (errors located in it), builds the model and the data, runs the route through the library
//! crates and writes a run directory: `config.toml` (resolved), `plan.txt`, `metrics.jsonl`,
//! checkpoints, `curves.png`, `report.md` + `report.json`, and the exported `model/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use graft_backend::Backend;
use graft_data::transform::{Compose, Normalize, TransformCfg, eval_transform, train_transform};
use graft_data::{
    ArrayDataset, Dataset, ImageFolder, Loader, LoaderConfig, Shift, Subset, Transform, k_shot,
    stratified_split,
};
use graft_extract::{
    FeatureSpec, Features, HeadTraining, KnnHead, LogisticConfig, LogisticHead, ProbeConfig,
    PrototypeHead, extract_many_with,
};
use graft_finetune::{FineTuneOptions, FreezeDepth, Gradual, LpFt, Recipe, Strategy};
use graft_surgery::{BnPolicy, LrConfig};
use graft_train::{ClassMetrics, History, TrainConfig};
use graft_zoo::{HeadSpec, Model, Registry};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use toml::Spanned;

use crate::exp::{
    BackendName, BnName, ClassRef, ConfigError, Experiment, ExtractEngine, ExtractHead,
    ExtractStrategy, FinetuneKind, FinetuneStrategy, FreezeValue, HeadName, NoStrategy,
    ProbeStrategy, ReuseStrategy, Source,
};

/// The experiment commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Extract,
    Probe,
    Reuse,
    Finetune,
    Plan,
    Eval,
    Multitask,
    Rank,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Extract => "extract",
            Route::Probe => "probe",
            Route::Reuse => "reuse",
            Route::Finetune => "finetune",
            Route::Plan => "plan",
            Route::Eval => "eval",
            Route::Multitask => "multitask",
            Route::Rank => "rank",
        }
    }
}

/// Runs `route` on the experiment file `path`; `models_dirs` come from the command line;
/// `resume` (finetune only) continues an interrupted run in that directory.
pub fn run(
    route: Route,
    path: &Path,
    models_dirs: &[PathBuf],
    resume: Option<&Path>,
) -> Result<()> {
    let src = Source::read(path)?;
    match route {
        Route::Extract => Job::<ExtractStrategy>::new(route, src, models_dirs)?.dispatch(),
        Route::Probe => Job::<ProbeStrategy>::new(route, src, models_dirs)?.dispatch(),
        Route::Reuse => Job::<ReuseStrategy>::new(route, src, models_dirs)?.dispatch(),
        Route::Finetune | Route::Plan => {
            let mut job = Job::<FinetuneStrategy>::new(route, src, models_dirs)?;
            job.resume = resume.map(Path::to_path_buf);
            job.dispatch()
        }
        Route::Eval => Job::<NoStrategy>::new(route, src, models_dirs)?.dispatch(),
        Route::Multitask => multitask::run(src, models_dirs),
        Route::Rank => rank::run(src, models_dirs),
    }
}

/// The resolved data: datasets per split, the transforms, what the model should expect.
struct Data {
    train: Option<Arc<dyn Dataset>>,
    val: Option<Arc<dyn Dataset>>,
    test: Option<Arc<dyn Dataset>>,
    classes: Vec<String>,
    channels: usize,
    digits: bool,
    shift: Option<Shift>,
    /// Text data: the model's tokenizer and files (the datasets are `TokenDataset`s).
    text: Option<TextInputs>,
    /// Unlabelled images for `[train.semi]` (their labels are never read).
    unlabeled: Option<Arc<dyn Dataset>>,
    /// Regression values of train / val / test, one a sample in the dataset's order, where the
    /// data carries them (VADER's mean valence).
    values: [Option<Vec<f32>>; 3],
}

/// What a text experiment reads with.
struct TextInputs {
    tokenizer: graft_text::Tokenizer,
    files: graft_zoo::TextModelFiles,
}

struct Job<S> {
    route: Route,
    src: Source,
    exp: Experiment<S>,
    reg: Registry,
    data: Data,
    backend: BackendName,
    /// The run directory to continue (`graft finetune --resume`).
    resume: Option<PathBuf>,
}
impl<S: DeserializeOwned + Serialize + Default> Job<S> {
    fn new(route: Route, src: Source, cli_dirs: &[PathBuf]) -> Result<Self> {
        let exp: Experiment<S> = src.parse()?;
        if let (Some(t), false) = (exp.tasks.first(), route == Route::Multitask) {
            return Err(src
                .error(t.span(), "[[task]] tables are read by graft multitask")
                .into());
        }
        Self::with_exp(route, src, exp, cli_dirs)
    }

    /// A job on an experiment already parsed from `src` (a multi-task run's task, say, whose
    /// `[data]` is its `[task.data]`).
    fn with_exp(
        route: Route,
        src: Source,
        exp: Experiment<S>,
        cli_dirs: &[PathBuf],
    ) -> Result<Self> {
        let reg = registry(&src, cli_dirs, &exp.model.models_dir)?;
        Self::with_registry(route, src, exp, reg)
    }

    /// [`Self::with_exp`] with the registry already built (one for all of `graft rank`'s
    /// candidates).
    fn with_registry(route: Route, src: Source, exp: Experiment<S>, reg: Registry) -> Result<Self> {
        let name = &exp.model.name;
        let clip = exp.model.clip.as_ref().is_some_and(|c| *c.get_ref());
        if clip {
            let m = &exp.model;
            let spans = [
                ("weights", m.weights.as_ref().map(|w| w.span())),
                ("init", m.init.as_ref().map(|i| i.span())),
                ("pretrained", m.pretrained.as_ref().map(|p| p.span())),
                ("dir", m.dir.as_ref().map(|d| d.span())),
            ];
            if let Some((key, Some(span))) = spans.into_iter().find(|(_, s)| s.is_some()) {
                return Err(src
                    .error(
                        span,
                        format!("model.{key} does not apply to a CLIP (clip = true): its open_clip files are what `name` names"),
                    )
                    .into());
            }
            if m.revision.is_some() {
                return Err(src
                    .table_error(
                        "model",
                        "model.revision does not apply to a CLIP: name it hf-hub:org/name@revision",
                    )
                    .into());
            }
        }
        let is_hub = clip || crate::pretrained::is_hub(&reg, name.get_ref());
        if !is_hub && let Err(e) = reg.entry_of(name.get_ref()) {
            return Err(src.error(name.span(), e.to_string()).into());
        }
        let m = &exp.model;
        if let (Some(p), Some(i)) = (&m.pretrained, &m.init) {
            let agree = *p.get_ref() == (*i.get_ref() == crate::pretrained::Init::Pretrained);
            if !agree {
                return Err(src
                    .error(i.span(), "init contradicts pretrained: give one of them")
                    .into());
            }
        }
        if let Some(w) = &exp.model.weights {
            src.existing("model.weights", w)?;
        }
        let d = &exp.data;
        let has_folders = d.train.is_some() || d.val.is_some() || d.test.is_some();
        let has_text = d.text.is_some() || d.vader.is_some();
        if has_text && (has_folders || d.digits.is_some()) {
            return Err(src
                .table_error(
                    "data",
                    "text data ([data.text] / [data.vader]) goes alone: no digits or image folders beside it",
                )
                .into());
        }
        let text_model = !is_hub && reg.entry_of(name.get_ref())?.1.text.is_some();
        if text_model && !has_text {
            return Err(src
                .error(
                    name.span(),
                    format!(
                        "{} is a text model: give [data.text] or [data.vader]",
                        name.get_ref()
                    ),
                )
                .into());
        }
        let mut data = match (&d.digits, has_folders) {
            _ if has_text => text_data(&src, &exp.model, &reg, d)?,
            (Some(_), true) => {
                return Err(src
                    .table_error(
                        "data",
                        "give [data.digits] or train / val / test folders, not both",
                    )
                    .into());
            }
            (Some(dg), false) => digits_data(&src, dg)?,
            (None, true) => folder_data(&src, d)?,
            (None, false) => {
                return Err(src
                    .table_error(
                        "data",
                        "no data: add [data.digits] or data.train / data.val / data.test folders",
                    )
                    .into());
            }
        };
        let semi_route = matches!(route, Route::Finetune | Route::Plan);
        if let (Some(semi), false) = (&exp.train.semi, semi_route) {
            return Err(src
                .error(semi.span(), "train.semi applies to graft finetune")
                .into());
        }
        if data.unlabeled.is_some() && exp.train.semi.is_none() {
            return Err(src
                .table_error(
                    "data",
                    "unlabelled data is read by semi-supervised fine-tuning: add [train.semi] (method = \"fixmatch\" or \"pseudo_label\")",
                )
                .into());
        }
        if let Some(s) = &d.shift {
            data.shift =
                Some(Shift::parse(s.get_ref()).map_err(|e| src.error(s.span(), e.to_string()))?);
        }
        let backend = match &exp.model.backend {
            Some(b) => {
                let v = *b.get_ref();
                if v == BackendName::Tch && !cfg!(feature = "tch") {
                    return Err(src
                        .error(
                            b.span(),
                            "this graft was built without libtorch: backend = \"ndarray\"",
                        )
                        .into());
                }
                v
            }
            None if cfg!(feature = "tch") => BackendName::Tch,
            None => BackendName::Ndarray,
        };
        Ok(Self {
            route,
            src,
            exp,
            reg,
            data,
            backend,
            resume: None,
        })
    }

    /// An error at `[model] backend` (or the model table) for a route that trains.
    fn needs_tch(&self, what: &str) -> ConfigError {
        let msg = format!("{what} trains on libtorch: set backend = \"tch\"");
        match &self.exp.model.backend {
            Some(b) => self.src.error(b.span(), msg),
            None => self.src.table_error("model", msg),
        }
    }

    fn split(&self, which: &str) -> Option<Arc<dyn Dataset>> {
        match which {
            "train" => self.data.train.clone(),
            "val" => self.data.val.clone(),
            _ => self.data.test.clone(),
        }
    }

    /// A split that must be there.
    fn need(&self, which: &str, why: &str) -> Result<Arc<dyn Dataset>> {
        self.split(which).ok_or_else(|| {
            self.src
                .table_error("data", format!("{why} needs a {which} split"))
                .into()
        })
    }

    /// The model, its weights loaded. `own_head`: keep the weights' head (reuse, eval);
    /// otherwise the trunk is what matters and a mismatching head is dropped.
    fn model<B: Backend>(&self, b: &B, own_head: bool) -> Result<Model<B>> {
        let mut model = if self.is_clip() {
            let mut visual = self.clip_encoder(b)?.into_visual();
            if let (true, Some(n)) = (own_head, self.exp.model.num_classes) {
                visual.replace_head(n, graft_zoo::HeadSpec::Linear, self.exp.train.seed)?;
            }
            visual
        } else {
            self.registry_model(b, own_head)?
        };
        self.input_cfg(&mut model);
        Ok(model)
    }

    /// What the data says of the model's input: the digits' 8×8 [0, 1] values, or
    /// `[data] img_size`.
    fn input_cfg<B: Backend>(&self, model: &mut Model<B>) {
        if self.data.digits {
            // the digits are 8x8 values in [0, 1], not normalised: say so in the cfg the model
            // carries (and exports), so `graft predict` prepares images the same way
            let in_chans = model.in_chans();
            let c = model.cfg_mut();
            c.input_size = [in_chans, 8, 8];
            c.mean = [0.0; 3];
            c.std = [1.0; 3];
            c.crop_pct = 1.0;
        } else if let Some(s) = self.exp.data.img_size {
            let c = model.cfg_mut();
            c.input_size = [c.input_size[0], s, s];
        }
    }

    /// `[model] clip = true`.
    fn is_clip(&self) -> bool {
        self.exp.model.clip.as_ref().is_some_and(|c| *c.get_ref())
    }

    /// The CLIP `[model] name` names (`clip = true`): both towers, the tokenizer.
    fn clip_encoder<B: Backend>(&self, b: &B) -> Result<graft_extract::ClipEncoder<B>> {
        let m = &self.exp.model;
        let name = m.name.get_ref();
        let local = self.src.resolve(Path::new(name));
        let reference = if local.is_dir() {
            local.to_string_lossy().into_owned()
        } else {
            name.clone()
        };
        let (enc, report) =
            graft_extract::ClipEncoder::pretrained(b, &reference, &graft_zoo::Hub::from_env())
                .map_err(|e| self.src.error(m.name.span(), e.to_string()))?;
        eprint!("{}{}", report.visual, report.text);
        Ok(enc)
    }

    /// A model from the registry: a name, tag, `hf-hub:` repo or user model, with the weights
    /// `[model]` says.
    fn registry_model<B: Backend>(&self, b: &B, own_head: bool) -> Result<Model<B>> {
        Ok(self.registry_model_loaded(b, own_head)?.0)
    }

    /// [`Self::registry_model`] with its load report (none for a random initialisation).
    fn registry_model_loaded<B: Backend>(
        &self,
        b: &B,
        own_head: bool,
    ) -> Result<(Model<B>, Option<graft_zoo::LoadReport>)> {
        let m = &self.exp.model;
        let name = m.name.get_ref();
        let is_hub = crate::pretrained::is_hub(&self.reg, name);
        let weights = m
            .weights
            .as_ref()
            .map(|w| self.src.resolve(w.get_ref()))
            .or_else(|| {
                // a text model's pretrained weights, unless it is a user model with its own
                let own = !is_hub && self.reg.get(name).is_ok_and(|e| e.weights.is_some());
                match &self.data.text {
                    Some(t) if !own => Some(t.files.weights.clone()),
                    _ => None,
                }
            });
        let init = match (&m.init, &m.pretrained) {
            (Some(i), _) => Some(*i.get_ref()),
            (None, Some(p)) if *p.get_ref() => Some(crate::pretrained::Init::Pretrained),
            (None, Some(_)) => Some(crate::pretrained::Init::Random),
            (None, None) => None,
        };
        let start =
            crate::pretrained::start(&self.reg, name, weights.clone(), init).map_err(|e| {
                let at = m.init.as_ref().map(|i| i.span()).unwrap_or(m.name.span());
                self.src.error(at, e.to_string())
            })?;
        let mut opts = crate::pretrained::options(&start, m.revision.as_deref())
            .in_chans(m.in_chans.unwrap_or(self.data.channels));
        if m.lenient {
            opts.load = graft_zoo::LoadOptions::lenient();
        }
        let (entry_weights, classifier) = if is_hub {
            (None, String::new())
        } else {
            let (e, cfg) = self.reg.entry_of(name)?;
            (e.weights.clone(), cfg.classifier)
        };
        let file_classes = match weights.as_ref().or(entry_weights.as_ref()) {
            Some(w) => crate::weights_num_classes(w, &classifier)?,
            None => None,
        };
        opts.num_classes = if own_head {
            m.num_classes.or(file_classes)
        } else {
            file_classes
        };
        let (model, report) = self.reg.create(b, name, &opts)?;
        match &report {
            Some(r) => eprint!("{r}"),
            None => eprintln!("note: {name} starts from random weights (init = \"random\")"),
        }
        Ok((model, report))
    }

    fn tcfg<B: Backend>(&self, model: &Model<B>) -> TransformCfg {
        graft_train::data_config(model.cfg())
    }

    /// A loader over `which` with the eval transform (and the shift, on val / test or when
    /// `shift_train`); `train_mode` shuffles and augments (when `augment`).
    fn loader<B: Backend>(
        &self,
        model: &Model<B>,
        which: &str,
        train_mode: bool,
    ) -> Result<Option<Loader>> {
        let Some(ds) = self.split(which) else {
            return Ok(None);
        };
        self.loader_over(model, ds, which, train_mode).map(Some)
    }

    /// [`Self::loader`] over a dataset made from split `which` (relabelled, for instance).
    fn loader_over<B: Backend>(
        &self,
        model: &Model<B>,
        ds: Arc<dyn Dataset>,
        which: &str,
        train_mode: bool,
    ) -> Result<Loader> {
        self.loader_with(
            model,
            ds,
            which,
            train_mode,
            false,
            self.exp.data.batch_size,
        )
    }

    /// [`Self::loader_over`] with its batch size, and with `strong`: TrivialAugment after the
    /// other augmentations, before the normalisation (FixMatch's strongly augmented view).
    fn loader_with<B: Backend>(
        &self,
        model: &Model<B>,
        ds: Arc<dyn Dataset>,
        which: &str,
        train_mode: bool,
        strong: bool,
        batch_size: usize,
    ) -> Result<Loader> {
        let bs = batch_size.max(1);
        let cfg = if train_mode {
            LoaderConfig::train(bs).seed(self.exp.train.seed)
        } else {
            LoaderConfig::eval(bs)
        };
        let shifted = self
            .data
            .shift
            .filter(|_| which != "train" || self.exp.data.shift_train);
        let mut steps: Vec<Box<dyn Transform>> = Vec::new();
        if self.data.text.is_some() {
            // token ids: no image transform
        } else if !self.data.digits {
            let tc = self.tcfg(model);
            if train_mode && self.exp.data.augment {
                let Compose(v) = train_transform(&tc);
                // the normalisation is last: the shift goes before it
                let n = v.len();
                for (i, t) in v.into_iter().enumerate() {
                    if i + 1 == n
                        && let Some(s) = shifted
                    {
                        steps.push(Box::new(s));
                    }
                    steps.push(t);
                }
            } else {
                let Compose(v) = eval_transform(&tc, false);
                steps.extend(v);
                if let Some(s) = shifted {
                    steps.push(Box::new(s));
                }
                steps.push(Box::new(Normalize {
                    mean: tc.mean.clone(),
                    std: tc.std.clone(),
                }));
            }
        } else if let Some(s) = shifted {
            steps.push(Box::new(s));
        }
        if strong {
            // images: the normalisation is last; the digits and text have none
            let at = if self.data.text.is_none() && !self.data.digits {
                steps.len().saturating_sub(1)
            } else {
                steps.len()
            };
            steps.insert(at, Box::new(graft_data::augment::TrivialAugment));
        }
        let mut l = Loader::new(ds, cfg)?;
        if !steps.is_empty() {
            l = l.with_transform(Arc::new(Compose(steps)));
        }
        Ok(l)
    }

    fn run_dir(&self) -> Result<RunDir> {
        let out = &self.exp.output;
        let parent = self.src.resolve(&out.dir);
        let name = out.name.clone().unwrap_or_else(|| {
            self.src
                .path
                .file_stem()
                .map_or("run".into(), |s| s.to_string_lossy().into_owned())
        });
        RunDir::create(&parent, &name, self.run_dir_cache())
    }

    /// The feature cache: `output.cache`, else `<output.dir>/feature-cache`.
    fn run_dir_cache(&self) -> PathBuf {
        let out = &self.exp.output;
        out.cache.as_ref().map_or_else(
            || self.src.resolve(&out.dir).join("feature-cache"),
            |c| self.src.resolve(c),
        )
    }

    fn start(&self) -> Result<RunDir> {
        let mut text = toml::to_string_pretty(&self.exp).context("resolve the config")?;
        text.push_str(&format!(
            "\n# resolved by graft {}: {} on {}\n[resolved]\ncommand = {:?}\nbackend = {:?}\nclasses = {:?}\ntrain = {}\nval = {}\ntest = {}\n",
            env!("CARGO_PKG_VERSION"),
            self.route.name(),
            self.src.path.display(),
            self.route.name(),
            format!("{:?}", self.backend).to_lowercase(),
            self.data.classes,
            self.data.train.as_ref().map_or(0, |d| d.len()),
            self.data.val.as_ref().map_or(0, |d| d.len()),
            self.data.test.as_ref().map_or(0, |d| d.len()),
        ));
        if let Some(dir) = &self.resume {
            crate::resume::reopen(dir, &text)?;
            let cache = self.run_dir_cache();
            return Ok(RunDir {
                path: dir.clone(),
                cache,
            });
        }
        let run = self.run_dir()?;
        graft_backend::safetensors_io::write_atomic(
            &run.path.join("config.toml"),
            text.as_bytes(),
        )?;
        Ok(run)
    }

    fn train_cfg(&self, run: Option<&Path>) -> TrainConfig {
        let t = &self.exp.train;
        let mut c = TrainConfig::new(t.epochs.unwrap_or(5));
        c.seed = t.seed;
        c.label_smoothing = t.label_smoothing;
        c.clip_grad_norm = t.clip_grad_norm;
        c.accumulate = t.accumulate.max(1);
        c.ema_decay = t.ema_decay;
        c.progress = t.progress;
        c.run_dir = run.map(Path::to_path_buf);
        c.resume = self.resume.is_some();
        c
    }

    /// `features` — `pooled` or one of the trunk `stages` of the model `name` — as a spec;
    /// anything else is an error located at the value, listing the stages.
    fn feature_spec(
        &self,
        features: &Spanned<String>,
        name: &str,
        stages: &[String],
    ) -> std::result::Result<FeatureSpec, ConfigError> {
        match features.get_ref().as_str() {
            "pooled" => Ok(FeatureSpec::Pooled),
            s if stages.iter().any(|n| n == s) => Ok(FeatureSpec::Stage(s.to_string())),
            s => Err(self.src.error(
                features.span(),
                format!("{name} has no stage {s:?}: pooled or one of {stages:?}"),
            )),
        }
    }

    /// Routes that do not take text data say so.
    fn images_only(&self, route: &str) -> Result<()> {
        if self.data.text.is_some() {
            return Err(self
                .src
                .table_error(
                    "data",
                    format!("{route} works on images; text data runs with graft extract, probe, finetune, plan and eval"),
                )
                .into());
        }
        Ok(())
    }

    /// The split a route scores on: test, else val, else train.
    fn held_out(&self) -> &'static str {
        if self.data.test.is_some() {
            "test"
        } else if self.data.val.is_some() {
            "val"
        } else {
            "train"
        }
    }

    fn num_classes(&self) -> usize {
        self.exp
            .model
            .num_classes
            .unwrap_or(self.data.classes.len())
    }
}

/// A fitted head's predictions on features.
type Predictor<'a> = Box<dyn Fn(&Features) -> Result<Vec<usize>> + 'a>;

trait Dispatch {
    fn dispatch(self) -> Result<()>;
}

mod data;
mod eval;
mod extract;
mod finetune;
mod multitask;
mod probe;
mod rank;
mod report;
mod reuse;
mod training;

use data::{digits_data, folder_data, registry, text_data};
use report::{Report, RunDir, class_metrics_json, host_metrics, metrics_md, write_history};
pub use training::Routes;
