//! `graft extract | probe | reuse | finetune | plan | eval EXP.toml`: each resolves the file
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
use graft_surgery::{BnPolicy, LrConfig, Plan};
use graft_train::{ClassMetrics, History, Inputs, TrainConfig};
use graft_zoo::{HeadSpec, Model, Registry};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use toml::Spanned;

use crate::exp::{
    BackendName, BnName, ClassRef, ConfigError, Experiment, ExtractHead, ExtractStrategy,
    FinetuneKind, FinetuneStrategy, FreezeValue, HeadName, NoStrategy, ProbeStrategy,
    ReuseStrategy, Source,
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
}

/// What a text experiment reads with.
struct TextInputs {
    tokenizer: graft_text::Tokenizer,
    files: graft_zoo::TextModelFiles,
}

impl TextInputs {
    fn pad_id(&self) -> i64 {
        self.tokenizer.pad_id()
    }
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

fn registry(
    src: &Source,
    cli_dirs: &[PathBuf],
    toml_dirs: &[Spanned<PathBuf>],
) -> Result<Registry> {
    let mut dirs: Vec<PathBuf> = cli_dirs.to_vec();
    for d in toml_dirs {
        dirs.push(src.existing("model.models_dir", d)?);
    }
    crate::registry(&dirs)
}

fn digits_data(src: &Source, d: &crate::exp::DigitsSection) -> Result<Data> {
    let base: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let classes: Vec<usize> = match &d.classes {
        Some(c) => {
            if let Some(bad) = c.get_ref().iter().find(|&&v| v > 9) {
                return Err(src
                    .error(c.span(), format!("digit class {bad}: the digits are 0-9"))
                    .into());
            }
            if c.get_ref().is_empty() {
                return Err(src.error(c.span(), "no digit class kept").into());
            }
            if let Some(d) = c
                .get_ref()
                .iter()
                .enumerate()
                .find_map(|(i, v)| c.get_ref()[..i].contains(v).then_some(v))
            {
                return Err(src
                    .error(c.span(), format!("digit class {d} is listed twice"))
                    .into());
            }
            c.get_ref().clone()
        }
        None => (0..10).collect(),
    };
    let split = fractions(src, d.split.as_ref(), [0.6, 0.2, 0.2])?;
    let parts = stratified_split(&base.labels(), &split, d.seed)?;
    let labels = base.labels();
    let pick = |idx: &[usize]| -> Vec<usize> {
        idx.iter()
            .copied()
            .filter(|&i| classes.contains(&labels[i]))
            .collect()
    };
    let mut train_idx = pick(&parts[0]);
    if let Some(k) = d.k_shot {
        train_idx = k_shot(&labels, &train_idx, k, d.seed)?;
    }
    let make = |idx: Vec<usize>| -> Result<Option<Arc<dyn Dataset>>> {
        if idx.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Subset::with_classes(
            base.clone(),
            idx,
            &classes,
        )?)))
    };
    Ok(Data {
        train: make(train_idx)?,
        val: make(pick(&parts[1]))?,
        test: make(pick(&parts[2]))?,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        channels: 1,
        digits: true,
        shift: None,
        text: None,
    })
}

fn folder_data(src: &Source, d: &crate::exp::DataSection) -> Result<Data> {
    let mut out = Data {
        train: None,
        val: None,
        test: None,
        classes: Vec::new(),
        channels: 3,
        digits: false,
        shift: None,
        text: None,
    };
    for (key, p) in [("train", &d.train), ("val", &d.val), ("test", &d.test)] {
        let Some(p) = p else { continue };
        let root = src.existing(&format!("data.{key}"), p)?;
        let mut f = ImageFolder::new(&root).map_err(|e| src.error(p.span(), e.to_string()))?;
        if let Some(m) = d.max_image_pixels {
            f = f.with_max_pixels((m > 0).then_some(m));
        }
        if out.classes.is_empty() {
            out.classes = f.classes().to_vec();
        } else if f.classes() != out.classes.as_slice() {
            return Err(src
                .error(
                    p.span(),
                    format!(
                        "data.{key} has classes {:?}, the other splits {:?}",
                        f.classes(),
                        out.classes
                    ),
                )
                .into());
        }
        let ds: Arc<dyn Dataset> = Arc::new(f);
        match key {
            "train" => out.train = Some(ds),
            "val" => out.val = Some(ds),
            _ => out.test = Some(ds),
        }
    }
    Ok(out)
}

/// `[train, val, test]` fractions, checked; when they sum to less than 1 the rest is a fourth
/// part nobody uses (`[0.1, 0.1, 0.2]` leaves 60 % of the data out).
fn fractions(src: &Source, s: Option<&Spanned<Vec<f64>>>, default: [f64; 3]) -> Result<Vec<f64>> {
    let Some(s) = s else {
        return Ok(default.to_vec());
    };
    let v = s.get_ref();
    if v.len() != 3
        || v.iter().any(|f| f.is_nan() || *f < 0.0)
        || v.iter().sum::<f64>() > 1.0 + 1e-9
    {
        return Err(src
            .error(
                s.span(),
                "split is [train, val, test] fractions, each >= 0, summing to at most 1",
            )
            .into());
    }
    let mut v = v.clone();
    let rest = 1.0 - v.iter().sum::<f64>();
    if rest > 1e-9 {
        v.push(rest);
    }
    Ok(v)
}

/// Text data for a text model: `[data.text]` files or `[data.vader]`, tokenised with the model's
/// tokenizer into `TokenDataset`s.
fn text_data(
    src: &Source,
    exp_model: &crate::exp::ModelSection,
    reg: &Registry,
    d: &crate::exp::DataSection,
) -> Result<Data> {
    use graft_text::{TextColumns, TextDataset, TokenDataset};
    let entry = reg.get(exp_model.name.get_ref())?;
    let Some(tcfg) = &entry.cfg.text else {
        return Err(src
            .error(
                exp_model.name.span(),
                format!(
                    "{} is an image model: text data needs a text model (minilm_l6)",
                    exp_model.name.get_ref()
                ),
            )
            .into());
    };
    let dir = match &exp_model.dir {
        Some(p) => Some(src.existing("model.dir", p)?),
        None => None,
    };
    let files = graft_zoo::TextModelFiles::locate(tcfg, dir.as_deref())
        .map_err(|e| src.table_error("model", e.to_string()))?;
    let tokenizer = graft_text::Tokenizer::from_file(&files.tokenizer, tcfg.max_length)?;
    let split3 = |all: &TextDataset, f: Vec<f64>, seed: u64| -> Result<[Option<TextDataset>; 3]> {
        let mut parts = all.split(&f, seed)?.into_iter();
        let mut next = || parts.next().filter(|p| !p.is_empty());
        Ok([next(), next(), next()])
    };
    let (mut parts, k, seed) = match (&d.text, &d.vader) {
        (Some(_), Some(_)) => {
            return Err(src
                .table_error("data", "give [data.text] or [data.vader], not both")
                .into());
        }
        (Some(t), None) => {
            let cols = TextColumns {
                text: t.text_column.clone().unwrap_or_else(|| "text".into()),
                label: t.label_column.clone().unwrap_or_else(|| "label".into()),
            };
            let format = match &t.format {
                Some(f) => Some(
                    f.get_ref()
                        .parse::<graft_text::TextFormat>()
                        .map_err(|e| src.error(f.span(), e.to_string()))?,
                ),
                None => None,
            };
            let files_given = t.train.is_some() || t.val.is_some() || t.test.is_some();
            let parts = match (&t.file, files_given) {
                (Some(f), false) => {
                    let path = src.existing("data.text.file", f)?;
                    let all = TextDataset::read(&path, format, &cols, None)?;
                    split3(
                        &all,
                        fractions(src, t.split.as_ref(), [0.7, 0.1, 0.2])?,
                        t.seed,
                    )?
                }
                (None, true) => {
                    if let Some(s) = &t.split {
                        return Err(src
                            .error(s.span(), "split divides data.text.file; the train / val / test files are the splits")
                            .into());
                    }
                    let mut out: [Option<TextDataset>; 3] = [None, None, None];
                    let mut classes: Option<Vec<String>> = None;
                    for (i, (key, p)) in [("train", &t.train), ("val", &t.val), ("test", &t.test)]
                        .into_iter()
                        .enumerate()
                    {
                        let Some(p) = p else { continue };
                        let path = src.existing(&format!("data.text.{key}"), p)?;
                        let ds = TextDataset::read(&path, format, &cols, classes.as_deref())?;
                        classes.get_or_insert_with(|| ds.classes.clone());
                        out[i] = Some(ds);
                    }
                    out
                }
                (Some(f), true) => {
                    return Err(src
                        .error(
                            f.span(),
                            "give data.text.file or train / val / test files, not both",
                        )
                        .into());
                }
                (None, false) => {
                    return Err(src
                        .table_error(
                            "data",
                            "[data.text] needs file = ... or train / val / test files",
                        )
                        .into());
                }
            };
            (parts, t.k_shot, t.seed)
        }
        (None, Some(v)) => {
            let path = match &v.path {
                Some(p) => src.existing("data.vader.path", p)?,
                None => graft_zoo::text::find_installed(Path::new(
                    graft_text::VaderLexicon::PACKAGE_PATH,
                ))
                .map_err(|e| src.table_error("data", format!("{e}; or give data.vader.path")))?,
            };
            let all = TextDataset::vader(&path, v.threshold)?;
            (
                split3(
                    &all,
                    fractions(src, v.split.as_ref(), [0.7, 0.1, 0.2])?,
                    v.seed,
                )?,
                v.k_shot,
                v.seed,
            )
        }
        (None, None) => unreachable!("called for text data only"),
    };
    if let (Some(k), Some(train)) = (k, parts[0].as_ref()) {
        parts[0] = Some(train.k_shot(k, seed)?);
    }
    let classes = parts
        .iter()
        .flatten()
        .next()
        .map(|p| p.classes.clone())
        .unwrap_or_default();
    let mut sets: Vec<Option<Arc<dyn Dataset>>> = Vec::new();
    for p in &parts {
        sets.push(match p {
            Some(ds) => Some(Arc::new(TokenDataset::new(ds, &tokenizer)?)),
            None => None,
        });
    }
    let mut it = sets.into_iter();
    Ok(Data {
        train: it.next().flatten(),
        val: it.next().flatten(),
        test: it.next().flatten(),
        classes,
        channels: 1,
        digits: false,
        shift: None,
        text: Some(TextInputs { tokenizer, files }),
    })
}

impl<S: DeserializeOwned + Serialize + Default> Job<S> {
    fn new(route: Route, src: Source, cli_dirs: &[PathBuf]) -> Result<Self> {
        let exp: Experiment<S> = src.parse()?;
        let reg = registry(&src, cli_dirs, &exp.model.models_dir)?;
        let name = &exp.model.name;
        let is_hub = crate::pretrained::is_hub(&reg, name.get_ref());
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
        let (mut model, report) = self.reg.create(b, name, &opts)?;
        match &report {
            Some(r) => eprint!("{r}"),
            None => eprintln!("note: {name} starts from random weights (init = \"random\")"),
        }
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
        Ok(model)
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
        let bs = self.exp.data.batch_size.max(1);
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
        c.inputs = self.inputs();
        c
    }

    /// What the loaders' batches hold.
    fn inputs(&self) -> Inputs {
        match &self.data.text {
            Some(t) => Inputs::Tokens { pad_id: t.pad_id() },
            None => Inputs::Images,
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

    fn num_classes(&self) -> usize {
        self.exp
            .model
            .num_classes
            .unwrap_or(self.data.classes.len())
    }
}

fn planned_epochs(s: &Strategy) -> usize {
    match s {
        Strategy::Recipe(r) => r.epochs,
        Strategy::LpFt(l) => l.freeze_epochs + l.epochs,
        Strategy::Gradual(g) => g.epochs,
    }
}

/// A run directory that never overwrites an earlier run.
struct RunDir {
    path: PathBuf,
    cache: PathBuf,
}

impl RunDir {
    fn create(parent: &Path, name: &str, cache: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        let mut i = 1;
        loop {
            let n = if i == 1 {
                name.to_string()
            } else {
                format!("{name}-{i}")
            };
            let p = parent.join(n);
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Self { path: p, cache }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => i += 1,
                Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
            }
        }
    }
    fn write(&self, name: &str, text: &str) -> Result<()> {
        graft_backend::safetensors_io::write_atomic(&self.path.join(name), text.as_bytes())?;
        Ok(())
    }
}

/// Markdown + JSON report.
struct Report {
    md: String,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    fn new(title: &str) -> Self {
        Self {
            md: format!("# {title}\n\n"),
            json: serde_json::Map::new(),
        }
    }
    fn para(&mut self, s: &str) {
        self.md.push_str(s);
        self.md.push_str("\n\n");
    }
    fn set(&mut self, k: &str, v: serde_json::Value) {
        self.json.insert(k.into(), v);
    }
    fn finish(self, run: &RunDir) -> Result<()> {
        run.write("report.md", &self.md)?;
        run.write(
            "report.json",
            &serde_json::to_string_pretty(&serde_json::Value::Object(self.json))?,
        )?;
        out!("{}", self.md);
        outln!("run directory: {}", run.path.display());
        Ok(())
    }
}

/// Accuracy, per-class accuracy and the confusion matrix as markdown.
fn metrics_md(
    title: &str,
    classes: &[String],
    acc: f64,
    per_class: &[f64],
    conf: &[Vec<usize>],
) -> String {
    let mut s = format!(
        "## {title}\n\naccuracy **{:.2} %** on {} samples\n\n",
        100.0 * acc,
        conf.iter().flatten().sum::<usize>()
    );
    s.push_str("| true \\ predicted | ");
    s.push_str(&classes.join(" | "));
    s.push_str(" | accuracy |\n|---|");
    s.push_str(&"---|".repeat(classes.len() + 1));
    s.push('\n');
    for (i, row) in conf.iter().enumerate() {
        let name = classes.get(i).cloned().unwrap_or_else(|| i.to_string());
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        let a = per_class.get(i).copied().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {name} | {} | {:.1} % |\n",
            cells.join(" | "),
            100.0 * a
        ));
    }
    s
}

fn host_metrics(pred: &[usize], labels: &[usize], n: usize) -> (f64, Vec<f64>, Vec<Vec<usize>>) {
    let mut conf = vec![vec![0usize; n]; n];
    for (&p, &y) in pred.iter().zip(labels) {
        if y < n && p < n {
            conf[y][p] += 1;
        }
    }
    (
        graft_core::confusion::accuracy(&conf),
        graft_core::confusion::per_class_accuracy(&conf),
        conf,
    )
}

fn class_metrics_json(m: &ClassMetrics) -> serde_json::Value {
    json!({"samples": m.samples, "loss": m.loss, "top1": m.top1, "top5": m.top5,
           "per_class": m.per_class, "confusion": m.confusion})
}

fn write_history(run: &RunDir, h: &History) -> Result<()> {
    h.write_metrics(&run.path.join("metrics.jsonl"))?;
    if !h.epochs.is_empty() {
        graft_train::plot_history(h, &run.path.join("curves.png"))?;
    }
    Ok(())
}

/// What a backend can do beyond inference: the training routes exist on libtorch only.
pub trait Routes: Backend + Sized {
    fn train_head(
        _model: &mut Model<Self>,
        _train: &Features,
        _val: Option<&Features>,
        _how: &HeadTraining,
    ) -> Result<History> {
        bail!("training a head needs libtorch (backend = \"tch\")")
    }
    fn reestimate(_model: &Model<Self>, _loader: &Loader, _max: Option<usize>) -> Result<usize> {
        bail!("BatchNorm re-estimation needs libtorch (backend = \"tch\")")
    }
    fn fine_tune(
        _model: &mut Model<Self>,
        _n: usize,
        _train: &Loader,
        _val: Option<&Loader>,
        _s: &Strategy,
        _o: &FineTuneOptions,
    ) -> Result<graft_finetune::FineTuneReport> {
        bail!("fine-tuning needs libtorch (backend = \"tch\")")
    }
    fn evaluate(model: &Model<Self>, loader: &Loader, inputs: Inputs) -> Result<ClassMetrics> {
        Ok(graft_train::evaluate_with(
            model,
            loader,
            &graft_backend::Ctx::eval(),
            inputs,
        )?)
    }
}

impl Routes for graft_ndarray::NdArray {}

#[cfg(feature = "tch")]
impl Routes for graft_tch::Tch {
    fn train_head(
        model: &mut Model<Self>,
        train: &Features,
        val: Option<&Features>,
        how: &HeadTraining,
    ) -> Result<History> {
        Ok(graft_extract::train_head(model, train, val, how)?)
    }
    fn reestimate(model: &Model<Self>, loader: &Loader, max: Option<usize>) -> Result<usize> {
        Ok(graft_reuse::reestimate_batch_norm(model, loader, max)?)
    }
    fn fine_tune(
        model: &mut Model<Self>,
        n: usize,
        train: &Loader,
        val: Option<&Loader>,
        s: &Strategy,
        o: &FineTuneOptions,
    ) -> Result<graft_finetune::FineTuneReport> {
        Ok(graft_finetune::fine_tune(model, n, train, val, s, o)?)
    }
}

/// A fitted head's predictions on features.
type Predictor<'a> = Box<dyn Fn(&Features) -> Result<Vec<usize>> + 'a>;

/// Runs `f` on the job's backend.
macro_rules! on_backend {
    ($job:expr, $f:ident) => {
        match $job.backend {
            BackendName::Ndarray => $job.$f(&graft_ndarray::NdArray),
            BackendName::Tch => {
                #[cfg(feature = "tch")]
                {
                    $job.$f(&graft_tch::Tch::cpu())
                }
                #[cfg(not(feature = "tch"))]
                {
                    bail!("this graft was built without libtorch")
                }
            }
        }
    };
}

trait Dispatch {
    fn dispatch(self) -> Result<()>;
}

impl Dispatch for Job<ExtractStrategy> {
    fn dispatch(self) -> Result<()> {
        if matches!(
            self.exp.strategy.head,
            ExtractHead::Linear | ExtractHead::Mlp
        ) && self.backend != BackendName::Tch
        {
            return Err(self.needs_tch("head = \"linear\" / \"mlp\"").into());
        }
        if self.exp.strategy.head == ExtractHead::ZeroShot {
            self.zero_shot_descriptions()?;
        }
        on_backend!(self, extract_on)
    }
}

impl Job<ExtractStrategy> {
    fn extract_on<B: Routes>(&self, b: &B) -> Result<()> {
        let st = &self.exp.strategy;
        let mut model = self.model(b, false)?;
        let spec = match st.features.get_ref().as_str() {
            "pooled" => FeatureSpec::Pooled,
            s => {
                let names: Vec<String> = model
                    .arch()
                    .stage_specs()
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                if !names.iter().any(|n| n == s) {
                    return Err(self
                        .src
                        .error(
                            st.features.span(),
                            format!(
                                "{} has no stage {s:?}: pooled or one of {names:?}",
                                model.name()
                            ),
                        )
                        .into());
                }
                FeatureSpec::Stage(s.to_string())
            }
        };
        if st.head != ExtractHead::ZeroShot {
            self.need("train", "graft extract")?;
        }
        let noun = if self.data.text.is_some() {
            "texts"
        } else {
            "images"
        };
        let run = self.start()?;
        let mut rep = Report::new(&format!(
            "graft extract: {} features of {}",
            spec,
            model.name()
        ));
        let mut feats: Vec<(&str, Features)> = Vec::new();
        let mut forwards = serde_json::Map::new();
        for which in ["train", "val", "test"] {
            let Some(l) = self.loader(&model, which, false)? else {
                continue;
            };
            let opts = graft_extract::ExtractOptions {
                inputs: self.inputs(),
                ..Default::default()
            };
            let (mut fs, r) =
                extract_many_with(&model, &l, std::slice::from_ref(&spec), &run.cache, &opts)?;
            let f = fs.pop().context("features")?;
            for why in &r.recomputed {
                eprintln!("warning: feature cache not used, computed again: {why}");
                rep.para(&format!(
                    "warning: feature cache not used, computed again: {why}"
                ));
            }
            rep.para(&format!(
                "{which}: {} {noun} → {}-d features, {} ({} trunk forwards)",
                f.n,
                f.dim,
                if r.cached {
                    "from the cache"
                } else {
                    "extracted and cached"
                },
                r.forwards
            ));
            forwards.insert(which.into(), json!({(noun): f.n, "dim": f.dim, "cached": r.cached, "trunk_forwards": r.forwards, "cache_file": r.paths, "recomputed": r.recomputed}));
            feats.push((which, f));
        }
        let total: usize = forwards
            .values()
            .filter_map(|v| v["trunk_forwards"].as_u64())
            .sum::<u64>() as usize;
        rep.set("extraction", serde_json::Value::Object(forwards));
        rep.set("trunk_forwards", json!(total));
        let n = self.num_classes();
        let train = &feats[0].1;
        let lcfg = LogisticConfig {
            alpha: st.alpha,
            max_iterations: st.max_iterations,
            standardize: st.standardize,
        };
        let t0 = std::time::Instant::now();
        let mut exported = false;
        let predict: Predictor<'_> = match st.head {
            ExtractHead::Logistic => {
                let h = LogisticHead::fit(train, n, &lcfg)?;
                if self.exp.output.export && spec == FeatureSpec::Pooled {
                    h.install(&mut model, &self.data.classes)?;
                    exported = true;
                }
                Box::new(move |f| Ok(h.predict(f)?))
            }
            ExtractHead::Prototype => {
                let h = PrototypeHead::fit(train, n)?;
                Box::new(move |f| Ok(h.predict(f)))
            }
            ExtractHead::Knn => {
                let h = KnnHead::fit(train, n, st.k)?;
                Box::new(move |f| Ok(h.predict(f)))
            }
            ExtractHead::ZeroShot => {
                let z = self.zero_shot(&model)?;
                Box::new(move |f| Ok(z.predict(f)?))
            }
            ExtractHead::Linear | ExtractHead::Mlp => {
                if spec != FeatureSpec::Pooled {
                    return Err(self
                        .src
                        .error(
                            st.features.span(),
                            "a linear / MLP head trains on the pooled features",
                        )
                        .into());
                }
                let head = if st.head == ExtractHead::Mlp {
                    HeadSpec::mlp(&st.hidden, st.dropout)
                } else {
                    HeadSpec::Linear
                };
                let val = feats.iter().find(|(w, _)| *w == "val").map(|(_, f)| f);
                let d = HeadTraining::linear(self.exp.train.epochs.unwrap_or(50));
                let mut cfg = self.train_cfg(Some(&run.path));
                cfg.epochs = d.train.epochs;
                cfg.schedule = d.train.schedule.clone();
                let how = HeadTraining {
                    head,
                    lr: LrConfig::adamw(self.exp.train.lr.unwrap_or(d.lr.base.lr)).weight_decay(
                        self.exp
                            .train
                            .weight_decay
                            .unwrap_or(d.lr.base.weight_decay),
                    ),
                    train: cfg,
                    ..d
                };
                let h = B::train_head(&mut model, train, val, &how)?;
                write_history(&run, &h)?;
                exported = self.exp.output.export;
                let m = &model;
                let b = b.clone();
                Box::new(move |f: &Features| {
                    let x = b.from_data(&graft_backend::TensorData::f32(
                        &[f.n, f.dim],
                        f.data.clone(),
                    )?)?;
                    let y = m.forward_classifier(&x, &graft_backend::Ctx::eval())?;
                    let y = b.to_data(&y)?.to_f32();
                    let c = y.shape()[1];
                    Ok((0..f.n)
                        .map(|i| {
                            (0..c)
                                .max_by(|&p, &q| y[[i, p]].total_cmp(&y[[i, q]]))
                                .unwrap_or(0)
                        })
                        .collect())
                })
            }
        };
        let fit_s = t0.elapsed().as_secs_f64();
        rep.para(&format!("head: {:?}, fitted in {fit_s:.2} s", st.head));
        let mut accs = serde_json::Map::new();
        for (which, f) in &feats {
            let pred = predict(f)?;
            let (acc, per, conf) = host_metrics(&pred, &f.labels, n);
            rep.md
                .push_str(&metrics_md(which, &self.data.classes, acc, &per, &conf));
            rep.md.push('\n');
            accs.insert(
                (*which).into(),
                json!({"accuracy": acc, "per_class": per, "confusion": conf}),
            );
        }
        drop(predict);
        rep.set("head", json!(format!("{:?}", st.head).to_lowercase()));
        rep.set("head_fit_seconds", json!(fit_s));
        rep.set("metrics", serde_json::Value::Object(accs));
        if exported {
            let dir = run.path.join("model");
            model.save_user_model(&dir)?;
            rep.para(&format!("exported trunk + head as a user model: {} (`graft --models-dir {} infer --model model ...`)", dir.display(), run.path.display()));
            rep.set("exported", json!(dir));
        } else if self.exp.output.export {
            rep.para("no model exported: prototype / kNN / zero-shot heads and stage features do not make a classifier on the trunk");
        }
        rep.finish(&run)
    }
}

impl Job<ExtractStrategy> {
    /// The descriptions of `[strategy.zero_shot]`, one list per class in the data's order
    /// (checked before anything runs).
    fn zero_shot_descriptions(&self) -> Result<Vec<Vec<String>>> {
        let st = &self.exp.strategy;
        if self.data.text.is_none() {
            return Err(self
                .src
                .table_error(
                    "strategy",
                    "head = \"zero_shot\" needs a text model and text data",
                )
                .into());
        }
        let Some(z) = &st.zero_shot else {
            return Err(self
                .src
                .table_error(
                    "strategy",
                    "head = \"zero_shot\" needs [strategy.zero_shot]: class = [\"a description\", ...]",
                )
                .into());
        };
        let map = z.get_ref();
        if let Some(extra) = map.keys().find(|k| !self.data.classes.contains(k)) {
            return Err(self
                .src
                .error(
                    z.span(),
                    format!(
                        "zero_shot: {extra:?} is not a class of the data ({})",
                        self.data.classes.join(", ")
                    ),
                )
                .into());
        }
        let mut desc = Vec::new();
        for c in &self.data.classes {
            match map.get(c) {
                Some(d) if !d.is_empty() => desc.push(d.clone()),
                _ => {
                    return Err(self
                        .src
                        .error(
                            z.span(),
                            format!("zero_shot: class {c:?} has no description"),
                        )
                        .into());
                }
            }
        }
        Ok(desc)
    }

    /// The zero-shot classifier of `[strategy.zero_shot]` on `model`.
    fn zero_shot<B: Backend>(&self, model: &Model<B>) -> Result<graft_extract::ZeroShot> {
        let desc = self.zero_shot_descriptions()?;
        let t = self.data.text.as_ref().context("text data")?;
        Ok(graft_extract::ZeroShot::with_model(
            model,
            &t.tokenizer,
            &self.data.classes,
            &desc,
        )?)
    }
}

impl Dispatch for Job<ProbeStrategy> {
    fn dispatch(self) -> Result<()> {
        on_backend!(self, probe_on)
    }
}

impl Job<ProbeStrategy> {
    fn probe_on<B: Routes>(&self, b: &B) -> Result<()> {
        let st = &self.exp.strategy;
        let model = self.model(b, false)?;
        self.need("train", "graft probe")?;
        let val_name = if self.data.val.is_some() {
            "val"
        } else {
            "test"
        };
        self.need(val_name, "graft probe (a val or test split)")?;
        if let Some(s) = &st.stages {
            let names: Vec<String> = model
                .arch()
                .stage_specs()
                .into_iter()
                .map(|s| s.name)
                .collect();
            if let Some(bad) = s.get_ref().iter().find(|x| !names.contains(x)) {
                return Err(self
                    .src
                    .error(
                        s.span(),
                        format!("{} has no stage {bad:?} (stages: {names:?})", model.name()),
                    )
                    .into());
            }
        }
        let run = self.start()?;
        let train = self
            .loader(&model, "train", false)?
            .context("train split")?;
        let val = self.loader(&model, val_name, false)?.context("val split")?;
        let cfg = ProbeConfig {
            logistic: LogisticConfig {
                alpha: st.alpha,
                max_iterations: st.max_iterations,
                standardize: false,
            },
            tolerance: st.tolerance,
            stages: st.stages.as_ref().map(|s| s.get_ref().clone()),
        };
        let p = graft_extract::probe(&model, &train, &val, &run.cache, &cfg)?;
        let mut rep = Report::new(&format!("graft probe: {}", model.name()));
        rep.md
            .push_str("| stage | dim | train accuracy | val accuracy |\n|---|---|---|---|\n");
        for (i, r) in p.rows.iter().enumerate() {
            let mark = if i == p.chosen {
                " (chosen)"
            } else if i == p.best {
                " (best)"
            } else {
                ""
            };
            rep.md.push_str(&format!(
                "| {}{mark} | {} | {:.2} % | {:.2} % |\n",
                r.stage,
                r.dim,
                100.0 * r.train_accuracy,
                100.0 * r.val_accuracy
            ));
        }
        rep.md.push('\n');
        let rec = p.to_string();
        rep.para(rec.lines().last().unwrap_or_default());
        rep.para(&format!("rule: the deepest stage within {:.1} points of the best validation accuracy is chosen; the stages up to it stay frozen (`freeze = {}` in a finetune file).", 100.0 * st.tolerance, p.freeze_stages));
        rep.set("rows", json!(p.rows.iter().map(|r| json!({"stage": r.stage, "dim": r.dim, "train_accuracy": r.train_accuracy, "val_accuracy": r.val_accuracy})).collect::<Vec<_>>()));
        rep.set("best", json!(p.rows[p.best].stage));
        rep.set("chosen", json!(p.rows[p.chosen].stage));
        rep.set("freeze_stages", json!(p.freeze_stages));
        rep.set("trunk_forwards", json!(p.forwards));
        rep.finish(&run)
    }
}

impl Dispatch for Job<ReuseStrategy> {
    fn dispatch(self) -> Result<()> {
        self.images_only("graft reuse")?;
        if self.exp.strategy.reestimate_bn && self.backend != BackendName::Tch {
            return Err(self.needs_tch("reestimate_bn = true").into());
        }
        on_backend!(self, reuse_on)
    }
}

impl Job<ReuseStrategy> {
    fn label_map<B: Backend>(&self, model: &Model<B>) -> Result<graft_reuse::LabelMap> {
        let source: Vec<String> = model
            .cfg()
            .labels
            .clone()
            .unwrap_or_else(|| (0..model.num_classes()).map(|i| i.to_string()).collect());
        let targets = &self.data.classes;
        let Some(m) = &self.exp.strategy.label_map else {
            return graft_reuse::LabelMap::by_names(targets, &source).map_err(|e| {
                self.src
                    .table_error("strategy", format!("{e}; give strategy.label_map"))
                    .into()
            });
        };
        let span = m.span();
        let map = m.get_ref();
        if let Some(extra) = map.keys().find(|k| !targets.contains(k)) {
            return Err(self
                .src
                .error(
                    span,
                    format!(
                        "label_map: {extra:?} is not a target class ({})",
                        targets.join(", ")
                    ),
                )
                .into());
        }
        let mut sources = Vec::new();
        for t in targets {
            let refs = map.get(t).ok_or_else(|| {
                self.src.error(
                    span.clone(),
                    format!("label_map: target class {t:?} is not mapped"),
                )
            })?;
            let mut v = Vec::new();
            for r in refs {
                v.push(match r {
                    ClassRef::Index(i) => *i,
                    ClassRef::Name(n) => source.iter().position(|s| s == n).ok_or_else(|| {
                        self.src.error(
                            span.clone(),
                            format!("label_map: {n:?} is not a class of {}", model.name()),
                        )
                    })?,
                });
            }
            sources.push(v);
        }
        graft_reuse::LabelMap::new(targets.clone(), sources, model.num_classes())
            .map_err(|e| self.src.error(span, e.to_string()).into())
    }

    fn reuse_on<B: Routes>(&self, b: &B) -> Result<()> {
        let model = self.model(b, true)?;
        let which = if self.data.test.is_some() {
            "test"
        } else if self.data.val.is_some() {
            "val"
        } else {
            "train"
        };
        let map = self.label_map(&model)?;
        let run = self.start()?;
        let target = self.loader(&model, which, false)?.context("target split")?;
        let none = graft_backend::ModeTable::new();
        let before = graft_reuse::evaluate_reuse(&model, &target, &map, &none)?;
        let shift = self
            .data
            .shift
            .map_or("none".to_string(), |s| s.to_string());
        let mut rep = Report::new(&format!(
            "graft reuse: {} on {which} (shift: {shift})",
            model.name()
        ));
        rep.md.push_str(&metrics_md(
            "as it is",
            &self.data.classes,
            before.accuracy,
            &before.per_class,
            &before.confusion,
        ));
        rep.md.push('\n');
        rep.set("shift", json!(shift));
        rep.set("before", json!({"accuracy": before.accuracy, "per_class": before.per_class, "confusion": before.confusion}));
        if self.exp.strategy.reestimate_bn {
            let used = B::reestimate(&model, &target, self.exp.strategy.bn_batches)?;
            let after = graft_reuse::evaluate_reuse(&model, &target, &map, &none)?;
            rep.md.push_str(&metrics_md(
                &format!("after BatchNorm re-estimation on {used} unlabelled {which} batches"),
                &self.data.classes,
                after.accuracy,
                &after.per_class,
                &after.confusion,
            ));
            rep.md.push('\n');
            rep.para(&format!("accuracy {:.2} % → {:.2} % with re-estimated BatchNorm statistics (no parameter changed)", 100.0 * before.accuracy, 100.0 * after.accuracy));
            rep.set("after", json!({"accuracy": after.accuracy, "per_class": after.per_class, "confusion": after.confusion, "bn_batches": used}));
            if self.exp.output.export {
                let dir = run.path.join("model");
                model.save_user_model(&dir)?;
                rep.para(&format!(
                    "exported the re-estimated model: {}",
                    dir.display()
                ));
            }
        }
        rep.finish(&run)
    }
}

impl Job<FinetuneStrategy> {
    fn strategy(&self) -> Result<Strategy> {
        let s = &self.exp.strategy;
        if let Some((key, span, kind)) = s.misplaced().into_iter().next() {
            return Err(self
                .src
                .error(
                    span,
                    format!(
                        "{key} applies to kind = \"{kind}\", not {:?}",
                        format!("{:?}", s.kind).to_lowercase()
                    ),
                )
                .into());
        }
        self.check_strategy_values()?;
        let head = match s.head {
            HeadName::Linear => HeadSpec::Linear,
            HeadName::Mlp => HeadSpec::mlp(&s.hidden, s.dropout),
        };
        let t = &self.exp.train;
        Ok(match s.kind {
            FinetuneKind::Recipe => {
                let d = Recipe::default();
                let freeze = match s.freeze.as_ref().map(Spanned::get_ref) {
                    None => d.freeze.clone(),
                    Some(FreezeValue::Stages(k)) => FreezeDepth::Stages(*k),
                    Some(FreezeValue::Word(w)) if w == "auto" => FreezeDepth::Auto(ProbeConfig {
                        tolerance: s.tolerance.as_ref().map_or(0.01, |t| *t.get_ref()),
                        ..ProbeConfig::default()
                    }),
                    Some(FreezeValue::Word(w)) => {
                        let span = s.freeze.as_ref().map_or(0..0, Spanned::span);
                        return Err(self
                            .src
                            .error(
                                span,
                                format!("freeze = {w:?}: a number of stages or \"auto\""),
                            )
                            .into());
                    }
                };
                Strategy::Recipe(Recipe {
                    freeze,
                    head,
                    lr: t.lr.unwrap_or(d.lr),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    epochs: t.epochs.unwrap_or(d.epochs),
                    patience: s
                        .patience
                        .as_ref()
                        .map_or(d.patience, |p| Some(*p.get_ref())),
                    bn: match s.bn.as_ref().map(|b| *b.get_ref()) {
                        None | Some(BnName::Frozen) => BnPolicy::Frozen,
                        Some(BnName::TrainAffineOnly) => BnPolicy::TrainAffineOnly,
                        Some(BnName::Train) => BnPolicy::Train,
                    },
                })
            }
            FinetuneKind::Lpft => {
                let d = LpFt::default();
                Strategy::LpFt(LpFt {
                    epochs: t.epochs.unwrap_or(d.epochs),
                    base_lr: t.lr.unwrap_or(d.base_lr),
                    freeze_epochs: s
                        .freeze_epochs
                        .as_ref()
                        .map_or(d.freeze_epochs, |v| *v.get_ref()),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    pct_start: s.pct_start.as_ref().map_or(d.pct_start, |v| *v.get_ref()),
                    div: s.div.as_ref().map_or(d.div, |v| *v.get_ref()),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    head,
                })
            }
            FinetuneKind::Gradual => {
                let d = Gradual::default();
                Strategy::Gradual(Gradual {
                    epochs: t.epochs.unwrap_or(d.epochs),
                    lr: t.lr.unwrap_or(d.lr),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    min_frozen: s.min_frozen.as_ref().map_or(d.min_frozen, |v| *v.get_ref()),
                    head,
                })
            }
        })
    }

    /// The strategy's located values in range, and `freeze` within the model's stages.
    fn check_strategy_values(&self) -> Result<()> {
        let s = &self.exp.strategy;
        let err = |span: std::ops::Range<usize>, msg: String| -> Result<()> {
            Err(self.src.error(span, msg).into())
        };
        if let Some(t) = &s.tolerance
            && !(t.get_ref().is_finite() && *t.get_ref() >= 0.0)
        {
            return err(
                t.span(),
                format!("tolerance {}: must be finite and >= 0", t.get_ref()),
            );
        }
        if let Some(p) = &s.pct_start
            && !(*p.get_ref() > 0.0 && *p.get_ref() < 1.0)
        {
            return err(
                p.span(),
                format!("pct_start {}: must be in (0, 1)", p.get_ref()),
            );
        }
        if let Some(d) = &s.div
            && !(d.get_ref().is_finite() && *d.get_ref() > 0.0)
        {
            return err(
                d.span(),
                format!("div {}: must be finite and > 0", d.get_ref()),
            );
        }
        if let Some(p) = &s.patience
            && *p.get_ref() == 0
        {
            return err(p.span(), "patience 0: must be at least 1 epoch".into());
        }
        if let Some(f) = &s.freeze
            && let FreezeValue::Stages(k) = f.get_ref()
            && let Ok((e, _)) = self.reg.entry_of(self.exp.model.name.get_ref())
        {
            let stages = e.arch.stage_table();
            let names: Vec<&str> = stages.stages().iter().map(|s| s.name.as_str()).collect();
            if *k >= names.len() {
                return err(
                    f.span(),
                    format!(
                        "freeze = {k} leaves nothing to train: {} has {} stages ({}), the head included",
                        self.exp.model.name.get_ref(),
                        names.len(),
                        names.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    fn finetune_on<B: Routes>(&self, b: &B) -> Result<()> {
        let strategy = self.strategy()?;
        let mut model = self.model(b, false)?;
        self.need("train", "graft finetune")?;
        let run = self.start()?;
        let train = self.loader(&model, "train", true)?.context("train split")?;
        let val = self.loader(&model, "val", false)?;
        let test = self.loader(&model, "test", false)?;
        let opts = FineTuneOptions {
            base: self.train_cfg(Some(&run.path)),
            cache_dir: Some(run.cache.clone()),
            seed: self.exp.train.seed,
        };
        let n = self.num_classes();
        let t0 = std::time::Instant::now();
        let r = B::fine_tune(&mut model, n, &train, val.as_ref(), &strategy, &opts)?;
        let secs = t0.elapsed().as_secs_f64();
        run.write("plan.txt", &r.to_string())?;
        write_history(&run, &r.history)?;
        let mut rep = Report::new(&format!(
            "graft finetune: {} ({:?})",
            model.name(),
            self.exp.strategy.kind
        ));
        if let Some(p) = &r.probe {
            rep.md.push_str(&format!("```\n{p}\n```\n\n"));
        }
        rep.para(&format!(
            "{} phase(s), {} epochs{} in {secs:.1} s; bottom {} stages frozen in the first phase; plans in plan.txt, curves in curves.png",
            r.phases.len(),
            r.history.epochs.len(),
            if r.history.stopped_early && r.history.epochs.len() < planned_epochs(&strategy) { " (stopped early)" } else { "" },
            r.frozen_stages
        ));
        rep.md.push_str(
            "| epoch | phase | train loss | val loss | val top-1 |\n|---|---|---|---|---|\n",
        );
        let mut e = 0;
        for p in &r.phases {
            for ep in &p.history.epochs {
                let (vl, va) = ep
                    .val
                    .as_ref()
                    .map_or((f64::NAN, f64::NAN), |m| (m.loss, m.top1));
                rep.md.push_str(&format!(
                    "| {e} | {} | {:.4} | {vl:.4} | {:.2} % |\n",
                    p.name,
                    ep.train_loss,
                    100.0 * va
                ));
                e += 1;
            }
        }
        rep.md.push('\n');
        rep.set(
            "phases",
            json!(
                r.phases
                    .iter()
                    .map(|p| json!({"name": p.name, "epochs": p.history.epochs.len()}))
                    .collect::<Vec<_>>()
            ),
        );
        rep.set("frozen_stages", json!(r.frozen_stages));
        rep.set("seconds", json!(secs));
        rep.set("history", json!(r.history.epochs.iter().map(|e| json!({"epoch": e.epoch, "train_loss": e.train_loss, "val": e.val.as_ref().map(class_metrics_json)})).collect::<Vec<_>>()));
        if let Some(t) = &test {
            let m = B::evaluate(&model, t, self.inputs())?;
            rep.md.push_str(&metrics_md(
                "test",
                &self.data.classes,
                m.top1,
                &m.per_class,
                &m.confusion,
            ));
            rep.md.push('\n');
            rep.set("test", class_metrics_json(&m));
        }
        if self.exp.output.export {
            let dir = run.path.join("model");
            model.save_user_model(&dir)?;
            rep.para(&format!("exported the fine-tuned model: {}", dir.display()));
            rep.set("exported", json!(dir));
        }
        rep.finish(&run)
    }

    fn plan_on<B: Routes>(&self, b: &B) -> Result<()> {
        let strategy = self.strategy()?;
        let mut model = self.model(b, false)?;
        let mut probed = None;
        let run = self.start()?;
        if let Strategy::Recipe(Recipe {
            freeze: FreezeDepth::Auto(pc),
            ..
        }) = &strategy
        {
            let train = self
                .loader(&model, "train", false)?
                .context("freeze = \"auto\" probes on the train split")?;
            let val = self
                .loader(&model, "val", false)?
                .context("freeze = \"auto\" probes on the val split")?;
            let p = graft_extract::probe(&model, &train, &val, &run.cache, pc)?;
            outln!("{p}\n");
            probed = Some(p.freeze_stages);
        }
        model.replace_head(self.num_classes(), HeadSpec::Linear, 0)?;
        let n_stages = model.stages().stages().len();
        let specs = graft_finetune::phases(&strategy, n_stages, probed, self.data.val.is_some())?;
        let mut text = String::new();
        for s in &specs {
            let plan = Plan::new(&model, &s.freeze, &s.lr)?;
            text.push_str(&format!(
                "phase {} ({} epochs, {:?}):\n{plan}\n",
                s.name, s.epochs, s.schedule
            ));
        }
        run.write("plan.txt", &text)?;
        out!("{text}");
        outln!("run directory: {}", run.path.display());
        Ok(())
    }
}

impl Dispatch for Job<FinetuneStrategy> {
    fn dispatch(self) -> Result<()> {
        if self.route == Route::Finetune && self.backend != BackendName::Tch {
            return Err(self.needs_tch("graft finetune").into());
        }
        // the strategy's errors are the file's: report them before anything runs
        self.strategy()?;
        if self.route == Route::Plan {
            on_backend!(self, plan_on)
        } else {
            on_backend!(self, finetune_on)
        }
    }
}

impl Dispatch for Job<NoStrategy> {
    fn dispatch(self) -> Result<()> {
        on_backend!(self, eval_on)
    }
}

impl Job<NoStrategy> {
    fn eval_on<B: Routes>(&self, b: &B) -> Result<()> {
        let model = self.model(b, true)?;
        let which = if self.data.test.is_some() {
            "test"
        } else if self.data.val.is_some() {
            "val"
        } else {
            "train"
        };
        let data = self.need(which, "graft eval")?;
        // score by class name: the model's label names, in its order, are the data's classes
        // (a model without names is scored by index, and the report says so)
        let (ds, classes, by_index): (Arc<dyn Dataset>, Vec<String>, bool) = match &model
            .cfg()
            .labels
        {
            Some(names) if names.len() == model.num_classes() => {
                let unknown: Vec<&str> = self
                    .data
                    .classes
                    .iter()
                    .filter(|c| !names.contains(c))
                    .map(String::as_str)
                    .collect();
                if !unknown.is_empty() {
                    return Err(self
                            .src
                            .table_error(
                                "data",
                                format!(
                                    "{} is not a class of {} ({}): graft eval scores a model on its own classes; graft reuse maps others",
                                    unknown.join(", "),
                                    model.name(),
                                    names.join(", ")
                                ),
                            )
                            .into());
                }
                if names.len() != self.data.classes.len() {
                    return Err(self.eval_count_error(&model).into());
                }
                let ds = graft_data::Subset::in_class_order(data, names)?;
                (Arc::new(ds), names.clone(), false)
            }
            _ => {
                if model.num_classes() != self.data.classes.len() {
                    return Err(self.eval_count_error(&model).into());
                }
                (data, self.data.classes.clone(), true)
            }
        };
        let run = self.start()?;
        let l = self.loader_over(&model, ds, which, false)?;
        let m = B::evaluate(&model, &l, self.inputs())?;
        let mut rep = Report::new(&format!("graft eval: {} on {which}", model.name()));
        if by_index {
            rep.para(&format!(
                "{} carries no class names: class i of the data is scored as its output i.\n",
                model.name()
            ));
        }
        rep.md.push_str(&metrics_md(
            which,
            &classes,
            m.top1,
            &m.per_class,
            &m.confusion,
        ));
        rep.para(&format!(
            "\ntop-5 {:.2} %, loss {:.4}",
            100.0 * m.top5,
            m.loss
        ));
        rep.set(which, class_metrics_json(&m));
        rep.set("classes", json!(classes));
        rep.set("scored_by", json!(if by_index { "index" } else { "name" }));
        rep.finish(&run)
    }

    fn eval_count_error(&self, model: &Model<impl Backend>) -> ConfigError {
        self.src.table_error(
            "model",
            format!(
                "{} has {} classes, the data {} ({}): use graft reuse with a label map",
                model.name(),
                model.num_classes(),
                self.data.classes.len(),
                self.data.classes.join(", ")
            ),
        )
    }
}
