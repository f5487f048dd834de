//! Models from pretrained names: a timm tag, torchvision's weights or an `hf-hub:` repo built
//! on its registered architecture with the weights' cfg, the file found in the local caches or
//! pulled through graft-hub. An offline miss says which name it was and how to fetch it.

use std::path::PathBuf;

use graft_backend::Backend;
use graft_core::{Error, Result};

use crate::cfg::UserModelConfig;
use crate::load::LoadReport;
use crate::model::{Model, ModelOptions};
use crate::registry::Registry;

impl Registry {
    pub(crate) fn hub(opts: &ModelOptions) -> graft_hub::Hub {
        graft_hub::Hub::new(
            opts.hub
                .clone()
                .unwrap_or_else(graft_hub::HubConfig::from_env),
        )
    }

    /// The pretrained name an architecture's `pretrained` means
    /// ([`crate::pretrained::default_name`]); none is an error naming the architecture.
    pub(crate) fn default_name(&self, arch: &str) -> Result<String> {
        crate::pretrained::default_name(arch)?.ok_or_else(|| Error::UnknownModel {
            name: arch.to_string(),
            hint: "graft knows no pretrained weights for it: give weights, or build it from scratch without `pretrained`".into(),
        })
    }

    /// Fetches the files a pretrained name (or an architecture's default) loads into the local
    /// caches, without building anything (`graft pull`). Returns their paths.
    pub fn pull(
        &self,
        hub: &graft_hub::Hub,
        name: &str,
        revision: Option<&str>,
    ) -> Result<Vec<PathBuf>> {
        use crate::pretrained::{self as pt, ModelRef};
        Ok(match self.parse_name(name)? {
            ModelRef::Tag(t) => vec![pull_tag(hub, pt::timm_tag(&t)?, revision)?],
            ModelRef::Torchvision { arch, weights } => {
                vec![pull_tv(hub, pt::tv_weights(&arch, &weights)?)?]
            }
            ModelRef::HfHub { repo, revision: r } => {
                let rev = r
                    .or_else(|| revision.map(str::to_string))
                    .unwrap_or_else(|| "main".into());
                let config = hub
                    .file(&repo, &rev, "config.json")
                    .map_err(|e| name_pull_error(e, name))?;
                vec![config, pull_hub_weights(hub, &repo, &rev, name)?]
            }
            ModelRef::Name(n) => return self.pull(hub, &self.default_name(&n)?, revision),
        })
    }

    pub(crate) fn create_tag<B: Backend>(
        &self,
        backend: &B,
        tag: &crate::pretrained::TimmTag,
        opts: &ModelOptions,
    ) -> Result<(Model<B>, Option<LoadReport>)> {
        let e = self.get(&tag.architecture)?;
        let cfg = tag.apply(&e.cfg);
        let weights = weights_for(opts, || {
            pull_tag(&Self::hub(opts), tag, opts.revision.as_deref())
        })?;
        self.build(backend, &tag.tag, e, cfg, weights, opts)
    }

    pub(crate) fn create_tv<B: Backend>(
        &self,
        backend: &B,
        w: &crate::pretrained::TvWeights,
        opts: &ModelOptions,
    ) -> Result<(Model<B>, Option<LoadReport>)> {
        let e = self.get(&w.architecture)?;
        let cfg = w.apply(&e.cfg);
        let weights = weights_for(opts, || pull_tv(&Self::hub(opts), w))?;
        self.build(backend, &w.tag, e, cfg, weights, opts)
    }

    pub(crate) fn create_hf_hub<B: Backend>(
        &self,
        backend: &B,
        name: &str,
        repo: &str,
        revision: Option<String>,
        opts: &ModelOptions,
    ) -> Result<(Model<B>, Option<LoadReport>)> {
        let hub = Self::hub(opts);
        let rev = revision
            .or_else(|| opts.revision.clone())
            .unwrap_or_else(|| "main".into());
        let config = hub
            .file(repo, &rev, "config.json")
            .map_err(|e| name_pull_error(e, name))?;
        let user = UserModelConfig::read(&config)?;
        let (e, head) = self.user_base(&user, &config)?;
        let mut cfg = user.pretrained_cfg.clone();
        cfg.first_conv = e.cfg.first_conv.clone();
        cfg.classifier = e.cfg.classifier.clone();
        cfg.num_classes = user.num_classes;
        if user.label_names.is_some() {
            cfg.labels = user.label_names.clone();
        }
        cfg.tag = Some(format!("hf-hub:{repo}@{rev}"));
        let weights = weights_for(opts, || pull_hub_weights(&hub, repo, &rev, name))?;
        let mut o = opts.clone();
        if o.num_classes.is_none() {
            o.num_classes = Some(user.num_classes);
        }
        if o.head.is_none() {
            o.head = Some(head);
        }
        o.in_chans = user.in_chans;
        if let Some(s) = user.img_size {
            o.img_size = Some(s);
        }
        // a multi-task model's heads are part of what its weights hold
        let mut e = e.clone();
        e.tasks = user.tasks.clone();
        self.build(backend, name, &e, cfg, weights, &o)
    }
}

/// The weights a pretrained name builds with: the caller's file, else (with `pretrained`) the
/// name's own, fetched by `pull`; none for a random init.
fn weights_for(
    opts: &ModelOptions,
    pull: impl FnOnce() -> Result<PathBuf>,
) -> Result<Option<PathBuf>> {
    match (&opts.weights, opts.pretrained) {
        (Some(w), _) => Ok(Some(w.clone())),
        (None, true) => pull().map(Some),
        (None, false) => Ok(None),
    }
}

/// The weights of a timm-style Hub repo ([`crate::pretrained::HUB_WEIGHT_FILES`], in order).
fn pull_hub_weights(hub: &graft_hub::Hub, repo: &str, rev: &str, name: &str) -> Result<PathBuf> {
    hub.first_file(repo, rev, &crate::pretrained::HUB_WEIGHT_FILES)
        .map(|(_, p)| p)
        .map_err(|e| name_pull_error(e, name))
}

/// The local path of a tag's weights: cached, else downloaded. An offline miss names the tag,
/// the cache searched and the command that fetches it.
pub fn pull_tag(
    hub: &graft_hub::Hub,
    tag: &crate::pretrained::TimmTag,
    revision: Option<&str>,
) -> Result<PathBuf> {
    let files: Vec<&str> = tag.files.iter().map(String::as_str).collect();
    hub.first_file(&tag.hf_hub_id, revision.unwrap_or("main"), &files)
        .map(|(_, p)| p)
        .map_err(|e| name_pull_error(e, &tag.tag))
}

/// The local path of torchvision's weights: cached in `$TORCH_HOME/hub/checkpoints`, else
/// downloaded and checked against the hash prefix of its name.
pub fn pull_tv(hub: &graft_hub::Hub, w: &crate::pretrained::TvWeights) -> Result<PathBuf> {
    hub.torch_checkpoint(&w.file)
        .map_err(|e| name_pull_error(e, &w.tag))
}

/// Says which name an offline miss was for and how to fetch it.
fn name_pull_error(e: Error, name: &str) -> Error {
    match e {
        Error::NotCached { what, cache, .. } => Error::NotCached {
            what: format!("{name} ({what})"),
            cache,
            hint: format!(
                "fetch it where there is network with `graft pull {name}` (with HF_HUB_CACHE / TORCH_HOME pointing at this cache), or unset HF_HUB_OFFLINE"
            ),
        },
        Error::Download { what, msg } => Error::Download {
            what: format!("{name} ({what})"),
            msg,
        },
        other => other,
    }
}
