//! The registry: built-in architectures with their pretrained cfgs, timm-style wildcard listing,
//! `create_model`, and user models (a `model.safetensors` + `config.json` directory, timm's hub
//! layout) that list, build and load exactly like built-ins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graft_backend::Backend;
use graft_core::{Error, Result};

use crate::cfg::{PretrainedCfg, UserModelConfig};
use crate::load::LoadReport;
use crate::model::{Arch, Model, ModelOptions};

/// The environment variable listing directories of user models (`dir1:dir2`).
pub const MODELS_DIR_ENV: &str = "GRAFT_MODELS_DIR";

/// One registered model.
#[derive(Debug, Clone)]
pub struct RegistryEntry {
    pub name: String,
    pub arch: Arch,
    pub cfg: PretrainedCfg,
    /// The reference implementation the names and numbers follow.
    pub reference: String,
    /// Default weights (user models).
    pub weights: Option<PathBuf>,
    /// Built-in architecture a user model is built from.
    pub base: Option<String>,
    /// The classifier a user model was saved with (Linear for built-ins).
    pub head: crate::model::HeadSpec,
    /// The task heads a multi-task user model was saved with (rebuilt before its weights load).
    pub tasks: Vec<crate::model::TaskHead>,
}

/// Built-in and user-registered models.
#[derive(Debug, Clone)]
pub struct Registry {
    entries: BTreeMap<String, RegistryEntry>,
}

/// A built-in architecture as its family lists it (`families::*::builtins`).
#[derive(Debug, Clone)]
pub(crate) struct Builtin {
    pub name: String,
    pub arch: Arch,
    pub cfg: PretrainedCfg,
    /// The reference implementation the names and numbers follow.
    pub reference: String,
}

impl Builtin {
    pub(crate) fn new(name: &str, arch: Arch, cfg: PretrainedCfg, reference: &str) -> Self {
        Self {
            name: name.into(),
            arch,
            cfg,
            reference: reference.into(),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in architectures: every family's list.
    pub fn builtin() -> Self {
        let mut r = Self {
            entries: BTreeMap::new(),
        };
        for b in crate::families::builtins() {
            r.add(&b.name, b.arch, b.cfg, &b.reference);
        }
        r
    }
    fn add(&mut self, name: &str, arch: Arch, cfg: PretrainedCfg, reference: &str) {
        let head = arch.default_head();
        self.entries.insert(
            name.into(),
            RegistryEntry {
                name: name.into(),
                arch,
                cfg,
                reference: reference.into(),
                weights: None,
                base: None,
                head,
                tasks: Vec::new(),
            },
        );
    }
    /// Names matching a wildcard pattern (`*`, `?`; `None` or `""` lists all), sorted.
    pub fn list(&self, pattern: Option<&str>) -> Vec<&RegistryEntry> {
        self.entries
            .values()
            .filter(|e| pattern.is_none_or(|p| p.is_empty() || wildcard_match(p, &e.name)))
            .collect()
    }
    /// The entry for `name`; an unknown name is an error suggesting close names.
    pub fn get(&self, name: &str) -> Result<&RegistryEntry> {
        self.entries.get(name).ok_or_else(|| {
            let mut close: Vec<(usize, &str)> = self
                .entries
                .keys()
                .map(|k| (edit_distance(k, name), k.as_str()))
                .collect();
            close.sort();
            let near: Vec<&str> = close.iter().take(3).map(|(_, k)| *k).collect();
            Error::UnknownModel {
                name: name.into(),
                hint: format!("did you mean {}? `graft models` lists all", near.join(", ")),
            }
        })
    }
    /// Registers a user model directory (`model.safetensors` + `config.json`) under `name`
    /// (default: the directory's name). Returns the name.
    pub fn register_dir(&mut self, dir: &Path, name: Option<&str>) -> Result<String> {
        let name = match name {
            Some(n) => n.to_string(),
            None => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    Error::invalid(
                        "register_dir",
                        format!("{} has no directory name", dir.display()),
                    )
                })?,
        };
        self.register_files(
            &name,
            &dir.join("model.safetensors"),
            &dir.join("config.json"),
        )?;
        Ok(name)
    }
    /// The built-in models plus the user models under each of `dirs` and of the directories in
    /// `GRAFT_MODELS_DIR` (a path list, as `PATH`): what the `graft` command sees, for library
    /// users too. Returns the registry and what was skipped (half-exported models), a line each.
    pub fn with_user_models(dirs: &[PathBuf]) -> Result<(Self, Vec<String>)> {
        let mut reg = Self::builtin();
        let mut all: Vec<PathBuf> = dirs.to_vec();
        if let Some(env) = std::env::var_os(MODELS_DIR_ENV) {
            all.extend(std::env::split_paths(&env));
        }
        let mut skipped = Vec::new();
        for d in all {
            skipped.extend(reg.register_models_dir(&d)?);
        }
        Ok((reg, skipped))
    }
    /// Registers every user model directory directly under `dir` (each with `model.safetensors`
    /// and `config.json`), in name order. Returns what it skipped, one line each: a directory
    /// with weights but no `config.json` (or the reverse) is a half-exported model — an export
    /// that was interrupted — and is named, not ignored in silence.
    pub fn register_models_dir(&mut self, dir: &Path) -> Result<Vec<String>> {
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        let mut skipped = Vec::new();
        for s in subdirs {
            let (w, c) = (
                s.join("model.safetensors").is_file(),
                s.join("config.json").is_file(),
            );
            match (w, c) {
                (true, true) => {
                    self.register_dir(&s, None)?;
                }
                (true, false) => skipped.push(format!(
                    "{}: model.safetensors without config.json, a half-exported model (not registered; export it again)",
                    s.display()
                )),
                (false, true) => skipped.push(format!(
                    "{}: config.json without model.safetensors, a half-exported model (not registered; export it again)",
                    s.display()
                )),
                (false, false) => {}
            }
        }
        Ok(skipped)
    }
    /// The built-in a user model's `config.json` (at `path`) builds on, and its head: the saved
    /// one for graft's configs; for timm's, the architecture's reference head, once the pooling
    /// timm states is the architecture's.
    pub(crate) fn user_base(
        &self,
        cfg: &UserModelConfig,
        path: &Path,
    ) -> Result<(&RegistryEntry, crate::model::HeadSpec)> {
        let base = self
            .get(&cfg.architecture)
            .map_err(|e| Error::format(path, format!("architecture: {e}")))?;
        let Some(timm) = &cfg.written_by_timm else {
            return Ok((base, cfg.head.clone()));
        };
        let want = base.arch.global_pool_name();
        if let Some(p) = timm.global_pool.as_deref()
            && p != want
        {
            return Err(Error::format(
                path,
                format!(
                    "global_pool: {p:?}: graft builds {} with {want:?} pooling",
                    cfg.architecture
                ),
            ));
        }
        Ok((base, base.arch.default_head()))
    }
    /// Registers a user model from a weights file and its `config.json`.
    pub fn register_files(&mut self, name: &str, weights: &Path, config: &Path) -> Result<()> {
        graft_core::name::validate_name(name).map_err(|_| {
            Error::invalid("register", format!("{name:?} is not a valid model name"))
        })?;
        if self.entries.contains_key(name) {
            return Err(Error::NameCollision(name.into()));
        }
        let cfg = UserModelConfig::read(config)?;
        let (base, head) = self.user_base(&cfg, config)?;
        let mut arch = base.arch.clone();
        if let Some(s) = cfg.img_size {
            arch.set_img_size(s)
                .map_err(|e| Error::format(config, e.to_string()))?;
        }
        if !weights.is_file() {
            return Err(Error::io(
                weights,
                std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
            ));
        }
        let mut pcfg = cfg.pretrained_cfg.clone();
        // timm's config.json names timm's layers: graft's names come from the architecture
        if pcfg.first_conv.is_empty() {
            pcfg.first_conv = base.cfg.first_conv.clone();
        }
        if pcfg.classifier.is_empty() {
            pcfg.classifier = base.cfg.classifier.clone();
        }
        pcfg.num_classes = cfg.num_classes;
        pcfg.input_size[0] = cfg.in_chans;
        if cfg.label_names.is_some() {
            pcfg.labels = cfg.label_names.clone();
        }
        let base_name = cfg.architecture.clone();
        self.entries.insert(
            name.into(),
            RegistryEntry {
                name: name.into(),
                arch,
                cfg: pcfg,
                reference: format!("user model on {base_name}"),
                weights: Some(weights.to_path_buf()),
                base: Some(base_name),
                head,
                tasks: cfg.tasks.clone(),
            },
        );
        Ok(())
    }
    /// Builds a model (timm's `create_model`). `name` is a registered name, a timm tag
    /// (`resnet50.a1_in1k`), `hf-hub:org/name[@revision]` or `tv:arch.WEIGHTS`
    /// ([`crate::pretrained`]); the cfg follows the name. Weights: `opts.weights` when given,
    /// else a user model's own, else — with `opts.pretrained` — the pretrained file the name
    /// refers to (cached or downloaded). Returns the load report when weights were loaded.
    pub fn create<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        opts: &ModelOptions,
    ) -> Result<(Model<B>, Option<LoadReport>)> {
        use crate::pretrained::{self as pt, ModelRef};
        let want = opts.pretrained && opts.weights.is_none();
        match self.parse_name(name)? {
            ModelRef::Name(n) => {
                let e = self.get(&n)?;
                if want && e.weights.is_none() {
                    let default = self.default_name(&n)?;
                    return self.create(backend, &default, opts);
                }
                let weights = opts.weights.clone().or_else(|| e.weights.clone());
                self.build(backend, &n, e, e.cfg.clone(), weights, opts)
            }
            ModelRef::Tag(t) => self.create_tag(backend, pt::timm_tag(&t)?, opts),
            ModelRef::Torchvision { arch, weights } => {
                self.create_tv(backend, pt::tv_weights(&arch, &weights)?, opts)
            }
            ModelRef::HfHub { repo, revision } => {
                self.create_hf_hub(backend, name, &repo, revision, opts)
            }
        }
    }

    /// What `name` refers to: a registered name as it is (a user model's name may hold a `.`),
    /// else a pretrained name ([`crate::pretrained::ModelRef::parse`]).
    pub fn parse_name(&self, name: &str) -> Result<crate::pretrained::ModelRef> {
        if self.entries.contains_key(name) {
            return Ok(crate::pretrained::ModelRef::Name(name.to_string()));
        }
        crate::pretrained::ModelRef::parse(name)
    }
    /// The registered entry a name builds and the cfg the model gets: a registered name's own,
    /// a tag's or torchvision weights' on their architecture. `hf-hub:` names need their repo's
    /// `config.json`: [`Registry::create`] reads it.
    pub fn entry_of(&self, name: &str) -> Result<(&RegistryEntry, PretrainedCfg)> {
        use crate::pretrained::{self as pt, ModelRef};
        match self.parse_name(name)? {
            ModelRef::Name(n) => {
                let e = self.get(&n)?;
                Ok((e, e.cfg.clone()))
            }
            ModelRef::Tag(t) => {
                let t = pt::timm_tag(&t)?;
                let e = self.get(&t.architecture)?;
                Ok((e, t.apply(&e.cfg)))
            }
            ModelRef::Torchvision { arch, weights } => {
                let w = pt::tv_weights(&arch, &weights)?;
                let e = self.get(&w.architecture)?;
                Ok((e, w.apply(&e.cfg)))
            }
            ModelRef::HfHub { repo, .. } => Err(Error::invalid(
                "entry_of",
                format!(
                    "hf-hub:{repo} is described by its repo's config.json, read when the model is created"
                ),
            )),
        }
    }
    /// True when a name loads pretrained weights by itself (a tag, `hf-hub:`, `tv:`) or is a
    /// user model carrying its own; false for a bare architecture.
    pub fn has_weights(&self, name: &str) -> Result<bool> {
        use crate::pretrained::ModelRef;
        Ok(match self.parse_name(name)? {
            ModelRef::Name(n) => self.get(&n)?.weights.is_some(),
            _ => true,
        })
    }

    /// Builds entry `e` under `name` with `cfg`, then loads `weights` (safetensors, or a
    /// `torch.save` file read without running it).
    pub(crate) fn build<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        e: &RegistryEntry,
        cfg: PretrainedCfg,
        weights: Option<PathBuf>,
        opts: &ModelOptions,
    ) -> Result<(Model<B>, Option<LoadReport>)> {
        let mut arch = e.arch.clone();
        let in_chans = opts.in_chans;
        if let Some(s) = opts.img_size {
            let max = graft_core::limits::MAX_INPUT_SIDE;
            if s.iter().any(|&v| v == 0 || v > max) {
                return Err(graft_core::Error::invalid(
                    "create_model",
                    format!("{name}: img_size {s:?}: sides 1 to {max}"),
                ));
            }
            arch.set_img_size(s)?;
        }
        if opts.dynamic_img_size {
            arch.set_dynamic_img_size()
                .map_err(|e| graft_core::Error::invalid("create_model", format!("{name}: {e}")))?;
        }
        arch.set_drop_rates(opts.drop_path_rate, opts.drop_rate);
        let mut cfg = cfg;
        if let Some(s) = arch.img_size() {
            cfg.input_size = [in_chans, s[0], s[1]];
        }
        let mut build = opts.clone();
        if build.head.is_none() {
            build.head = Some(e.head.clone());
        }
        let labels = cfg.labels.clone();
        let pretrained_classes = cfg.num_classes;
        let mut model = Model::build(backend, name, arch, cfg, &build)?;
        model.set_architecture(e.base.as_deref().unwrap_or(&e.name));
        for t in &e.tasks {
            model.add_task_head(t.clone(), opts.seed)?;
        }
        let report = match weights {
            Some(w) => Some(model.load_weights(&w, &opts.load)?),
            None => None,
        };
        if model.num_classes() == pretrained_classes {
            model.cfg_mut().labels = labels;
        } else {
            model.cfg_mut().labels = None;
        }
        Ok((model, report))
    }
    /// How well a weights file fits a registered model (a dry match: nothing is allocated or
    /// loaded). A clean report with full coverage means the file loads into the model as is; a
    /// clean one with `head_dropped` fits with another `num_classes`.
    pub fn fit<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        file: &crate::load::WeightsFile,
    ) -> Result<LoadReport> {
        let e = self.get(name)?;
        self.fit_with(backend, name, e.cfg.num_classes, file)
    }
    /// [`Registry::fit`] for a head of `num_classes` (a pretrained tag's).
    pub fn fit_with<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        num_classes: usize,
        file: &crate::load::WeightsFile,
    ) -> Result<LoadReport> {
        let e = self.get(name)?;
        let entries: Vec<(String, Vec<usize>, graft_backend::DType)> =
            crate::model::param_shapes_with_head(
                backend,
                &e.arch,
                &e.head,
                num_classes,
                e.cfg.input_size[0],
            )?
            .into_iter()
            .map(|(n, s, k)| {
                let dt = if n.ends_with("num_batches_tracked")
                    && k == graft_backend::ParamKind::Buffer
                {
                    graft_backend::DType::I64
                } else {
                    graft_backend::DType::F32
                };
                (n, s, dt)
            })
            .collect();
        Ok(crate::load::plan(
            &e.arch,
            &e.cfg.first_conv,
            &entries,
            file,
            &crate::load::LoadOptions::lenient(),
        )?
        .report)
    }
    /// Trainable parameter count of a registered model, without allocating its weights.
    pub fn param_count<B: Backend>(&self, backend: &B, name: &str) -> Result<usize> {
        let e = self.get(name)?;
        self.param_count_with(backend, name, e.cfg.num_classes)
    }
    /// [`Registry::param_count`] with a head of `num_classes` (0: none).
    pub fn param_count_with<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        num_classes: usize,
    ) -> Result<usize> {
        let e = self.get(name)?;
        crate::model::count_parameters(backend, &e.arch, &e.head, num_classes, e.cfg.input_size[0])
    }
}

/// Built-in names matching `pattern` (timm's `list_models`).
pub fn list_models(pattern: &str) -> Vec<String> {
    Registry::builtin()
        .list(Some(pattern))
        .into_iter()
        .map(|e| e.name.clone())
        .collect()
}

/// Builds a built-in model or a pretrained one by name (timm's `create_model`; see
/// [`Registry::create`]):
///
/// ```no_run
/// # use graft_zoo::{create_model, ModelOptions};
/// # fn f<B: graft_backend::Backend>(b: &B) -> graft_core::Result<()> {
/// let (model, report) = create_model(b, "resnet50.a1_in1k", &ModelOptions::default().pretrained(true))?;
/// # Ok(()) }
/// ```
pub fn create_model<B: Backend>(
    backend: &B,
    name: &str,
    opts: &ModelOptions,
) -> Result<(Model<B>, Option<LoadReport>)> {
    Registry::builtin().create(backend, name, opts)
}

/// Shell-style wildcard match (`*` any run, `?` one character), over the whole name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("resnet*", "resnet18_small"));
        assert!(wildcard_match("*vit*224", "vit_tiny_patch16_224"));
        assert!(wildcard_match("resnet?8", "resnet18"));
        assert!(!wildcard_match("resnet?", "resnet18"));
        assert!(!wildcard_match("vit*", "resnet18"));
        assert_eq!(
            list_models("resnet18*"),
            vec!["resnet18", "resnet18_small", "resnet18d"]
        );
        // `*` spans any run of characters: the same names as a plain prefix-and-suffix filter
        // (the table of timm ResNets grows, so the list is not written out), sorted
        let all = Registry::builtin();
        let mut want: Vec<String> = all
            .list(None)
            .iter()
            .map(|e| e.name.clone())
            .filter(|n| n.starts_with("resnet") && n.ends_with('d'))
            .collect();
        want.sort();
        let got = list_models("resnet*d");
        assert_eq!(got, want);
        for name in ["resnet18d", "resnet50d", "resnet101d", "resnetaa50d"] {
            assert!(got.iter().any(|g| g == name), "{name} in {got:?}");
        }
        assert_eq!(list_models("*").len(), Registry::builtin().list(None).len());
    }

    #[test]
    fn unknown_name_suggests() {
        let err = Registry::builtin().get("resnet19").expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("resnet19") && msg.contains("resnet18"),
            "{msg}"
        );
    }
}
