//! Checkpoints: one safetensors file (model tensors, optimizer tensors, EMA tensors; everything
//! else as string metadata), written atomically, so a kill at any moment leaves the previous
//! checkpoint or the new one, never half of either.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use graft_backend::TensorData;
use graft_backend::safetensors_io::{load, save};
use graft_core::{Error, Result};
use graft_optim::OptimizerState;

/// Everything a run needs to continue exactly where it stopped.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Optimizer steps done.
    pub step: usize,
    /// The epoch and batch to run next.
    pub epoch: usize,
    pub batch: usize,
    pub seed: u64,
    pub threads: usize,
    /// Lines of `metrics.jsonl` written up to this point.
    pub metrics_lines: usize,
    pub model: BTreeMap<String, TensorData>,
    pub optimizer: OptimizerState,
    pub ema: Option<BTreeMap<String, TensorData>>,
    /// Loop state (early stopping, accumulated epoch loss), as strings.
    pub extra: BTreeMap<String, String>,
}

const MODEL: &str = "model.";
const OPTIM: &str = "optim.";
const EMA: &str = "ema.";

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = BTreeMap::new();
        for (k, v) in &self.model {
            tensors.insert(format!("{MODEL}{k}"), v.clone());
        }
        for (k, v) in &self.optimizer.tensors {
            tensors.insert(format!("{OPTIM}{k}"), v.clone());
        }
        for (k, v) in self.ema.iter().flatten() {
            tensors.insert(format!("{EMA}{k}"), v.clone());
        }
        let mut meta: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("step", self.step.to_string()),
            ("epoch", self.epoch.to_string()),
            ("batch", self.batch.to_string()),
            ("seed", self.seed.to_string()),
            ("threads", self.threads.to_string()),
            ("metrics_lines", self.metrics_lines.to_string()),
            ("ema", self.ema.is_some().to_string()),
        ] {
            meta.insert(format!("graft.{k}"), v);
        }
        for (k, v) in &self.optimizer.metadata {
            meta.insert(format!("{OPTIM}{k}"), v.clone());
        }
        for (k, v) in &self.extra {
            meta.insert(format!("extra.{k}"), v.clone());
        }
        meta.insert("format".into(), "graft-checkpoint-1".into());
        save(path, &tensors, Some(meta))
    }

    /// Reads a checkpoint; a file that is not one is an error naming it and the missing field.
    pub fn load(path: &Path) -> Result<Self> {
        let (tensors, meta) = load(path)?;
        let meta = meta.unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some("graft-checkpoint-1") {
            return Err(Error::format(
                path,
                "not a graft checkpoint (no format = graft-checkpoint-1 metadata)",
            ));
        }
        let num = |k: &str| -> Result<u64> {
            meta.get(&format!("graft.{k}"))
                .ok_or_else(|| Error::format(path, format!("checkpoint metadata lacks graft.{k}")))?
                .parse::<u64>()
                .map_err(|e| Error::format(path, format!("graft.{k}: {e}")))
        };
        let mut model = BTreeMap::new();
        let mut otensors = BTreeMap::new();
        let mut ema = BTreeMap::new();
        for (k, v) in tensors {
            if let Some(n) = k.strip_prefix(MODEL) {
                model.insert(n.to_string(), v);
            } else if let Some(n) = k.strip_prefix(OPTIM) {
                otensors.insert(n.to_string(), v);
            } else if let Some(n) = k.strip_prefix(EMA) {
                ema.insert(n.to_string(), v);
            } else {
                return Err(Error::format(
                    path,
                    format!("unexpected tensor {k:?} in a checkpoint"),
                ));
            }
        }
        let ometa = meta
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(OPTIM).map(|n| (n.to_string(), v.clone())))
            .collect();
        let extra = meta
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("extra.").map(|n| (n.to_string(), v.clone())))
            .collect();
        let has_ema = meta.get("graft.ema").map(String::as_str) == Some("true");
        Ok(Self {
            step: num("step")? as usize,
            epoch: num("epoch")? as usize,
            batch: num("batch")? as usize,
            seed: num("seed")?,
            threads: num("threads")? as usize,
            metrics_lines: num("metrics_lines")? as usize,
            model,
            optimizer: OptimizerState {
                tensors: otensors,
                metadata: ometa,
            },
            ema: has_ema.then_some(ema),
            extra,
        })
    }
}
