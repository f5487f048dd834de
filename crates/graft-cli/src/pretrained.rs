//! Pretrained models from the command line: `graft models --pretrained`, `graft pull`, and the
//! one rule every command builds a model by — explicit weights, the name's pretrained weights,
//! or a random initialisation only when asked for (`--init random`, `[model] init = "random"`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use graft_hub::Hub;
use graft_zoo::pretrained::{self as pt, ModelRef};
use graft_zoo::{ModelOptions, Registry};

/// What a model starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A weights file the user named.
    Weights(PathBuf),
    /// The pretrained weights the name refers to (a tag, `hf-hub:`, `tv:`, an architecture's
    /// default tag, or a user model's own file).
    Pretrained,
    /// A random initialisation, asked for.
    Random,
}

/// `--init` / `[model] init`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The name's pretrained weights (an architecture's default tag).
    Pretrained,
    /// A scratch model: random weights, as the reference initialises them.
    Random,
}

/// Decides what `name` starts from; a bare architecture with no weights and no `init` is an
/// error that says what to add.
pub fn start(
    reg: &Registry,
    name: &str,
    weights: Option<PathBuf>,
    init: Option<Init>,
) -> Result<Start> {
    match (weights, init) {
        (Some(_), Some(Init::Random)) => {
            bail!("{name}: weights and init = random contradict each other; give one")
        }
        (Some(w), _) => Ok(Start::Weights(w)),
        (None, Some(Init::Random)) => Ok(Start::Random),
        (None, Some(Init::Pretrained)) => Ok(Start::Pretrained),
        (None, None) if reg.has_weights(name)? => Ok(Start::Pretrained),
        (None, None) => {
            let suggestion = match pt::default_name(name)? {
                Some(d) => format!(
                    "name pretrained weights (`{d}`, or `graft models --pretrained '{name}*'` for all), "
                ),
                None => String::new(),
            };
            bail!(
                "{name} has no weights: {suggestion}give weights, or set init = \"random\" (--init random) for a model trained from scratch"
            )
        }
    }
}

/// True when `name` is an `hf-hub:` repo (described by the repo's config.json, not the registry).
pub fn is_hub(reg: &Registry, name: &str) -> bool {
    matches!(reg.parse_name(name), Ok(ModelRef::HfHub { .. }))
}

/// Model options for a start.
pub fn options(start: &Start, revision: Option<&str>) -> ModelOptions {
    let mut o = ModelOptions::default();
    match start {
        Start::Weights(w) => o.weights = Some(w.clone()),
        Start::Pretrained => o.pretrained = true,
        Start::Random => {}
    }
    if let Some(r) = revision {
        o.revision = Some(r.to_string());
    }
    o
}

/// A timm tag's weights are in the Hugging Face cache (any of its files, at `main`).
fn timm_cached(hub: &Hub, r: &pt::TimmTag) -> bool {
    r.files
        .iter()
        .any(|f| hub.cached(&r.hf_hub_id, "main", f).ok().flatten().is_some())
}

/// A torchvision tag's checkpoint is in torch.hub's cache.
fn tv_cached(hub: &Hub, r: &pt::TvWeights) -> bool {
    hub.torch_checkpoint_cached(&r.file).is_some()
}

/// `graft models --pretrained [PATTERN]`: every tag matching, with its architecture, size,
/// input, classes, licence and whether it is in the local cache.
pub fn list(reg: &Registry, pattern: Option<&str>) -> Result<()> {
    let hub = Hub::from_env();
    let t = pt::table()?;
    let m = |n: &str| pattern.is_none_or(|p| p.is_empty() || graft_zoo::wildcard_match(p, n));
    let mut rows = Vec::new();
    for r in t.timm.iter().filter(|r| m(&r.tag)) {
        let params =
            reg.param_count_with(&graft_ndarray::NdArray, &r.architecture, r.num_classes)?;
        let cached = timm_cached(&hub, r);
        let size = |s: [usize; 3]| format!("{}x{}", s[1], s[2]);
        rows.push(vec![
            format!("{}{}", r.tag, if r.default { " *" } else { "" }),
            r.architecture.clone(),
            crate::millions(params),
            match r.test_input_size {
                Some(ts) => format!("{} (test {})", size(r.input_size), size(ts)),
                None => size(r.input_size),
            },
            format!("{} {}", r.num_classes, r.label_set),
            r.license.clone().unwrap_or_else(|| "unstated".into()),
            if cached { "yes" } else { "-" }.into(),
        ]);
    }
    for r in t.torchvision.iter().filter(|r| m(&r.tag)) {
        rows.push(vec![
            format!("{}{}", r.tag, if r.default { " *" } else { "" }),
            r.architecture.clone(),
            crate::millions(r.num_params),
            format!("{}x{}", r.input_size[1], r.input_size[2]),
            format!("{} {}", r.num_classes, r.label_set),
            r.license.clone(),
            if tv_cached(&hub, r) { "yes" } else { "-" }.into(),
        ]);
    }
    if rows.is_empty() {
        bail!("no pretrained tag matches {:?}", pattern.unwrap_or("*"));
    }
    out!(
        "{}",
        crate::table(
            &[
                "tag (* default)",
                "architecture",
                "params",
                "input",
                "classes",
                "licence",
                "cached"
            ],
            &rows
        )
    );
    outln!(
        "{} tags; cache {} (torchvision: {})",
        rows.len(),
        hub.config().cache_dir.display(),
        hub.config().torch_checkpoints().display()
    );
    Ok(())
}

/// What a wildcard in `[rank] candidates` names: the pretrained tags (timm's and torchvision's)
/// and user models with weights that match, split into those in the local caches (and the user
/// models) and the tags that would need a download.
pub fn matches(reg: &Registry, pattern: &str) -> Result<(Vec<String>, Vec<String>)> {
    let hub = Hub::from_env();
    let t = pt::table()?;
    let m = |n: &str| graft_zoo::wildcard_match(pattern, n);
    let (mut cached, mut uncached) = (Vec::new(), Vec::new());
    for e in reg.list(Some(pattern)) {
        if e.weights.is_some() {
            cached.push(e.name.clone());
        }
    }
    for r in t.timm.iter().filter(|r| m(&r.tag)) {
        if timm_cached(&hub, r) {
            &mut cached
        } else {
            &mut uncached
        }
        .push(r.tag.clone());
    }
    for r in t.torchvision.iter().filter(|r| m(&r.tag)) {
        if tv_cached(&hub, r) {
            &mut cached
        } else {
            &mut uncached
        }
        .push(r.tag.clone());
    }
    Ok((cached, uncached))
}

/// `graft pull NAME...`: fetches each name's files into the caches ahead of time.
pub fn pull(reg: &Registry, names: &[String], revision: Option<&str>) -> Result<()> {
    let hub = Hub::from_env();
    for name in names {
        for p in reg.pull(&hub, name, revision)? {
            outln!("{name}: {}", p.display());
        }
    }
    Ok(())
}
