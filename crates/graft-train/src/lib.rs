//! graft-train: one training loop for every route, generic over `AutodiffBackend`.
//!
//! Owns: learning-rate / momentum schedules ([`Schedule`]), the classification loss (cross-entropy
//! with label smoothing and soft targets) and metrics (loss, top-1, top-5, per-class accuracy,
//! confusion matrix), the loop ([`Trainer::fit`]: epochs, evaluation, early stopping, gradient
//! accumulation, gradient clipping, weight EMA, callbacks), `metrics.jsonl`, atomic checkpoints
//! and exact resume, the non-finite-loss guard, fastai's LR finder (a callback on the same loop),
//! PNG learning curves; semi-supervised training ([`Unlabeled`]) and multi-task training
//! ([`Trainer::fit_tasks`] over a [`TaskSet`]: per-task loaders, losses — cross-entropy, MSE,
//! smooth-L1 —, weights, metrics and a sampling policy) in the same loop. Every batch reaches
//! the model through `Model::forward_batch` — a multi-task batch through `forward_pooled_batch`
//! and its task's head —, whatever it holds (images, token ids, cached features).
//!
//! Must not know: concrete backends, which parameters are frozen (a surgery plan's optimizer and
//! mode table come in), datasets beyond the loader's batches, TOML, the CLI.
//!
//! Determinism: every stochastic op is seeded from (seed, step) through the forward context and
//! the loader draws from (seed, epoch, index), so a run resumed from a checkpoint replays the
//! same steps; the backend's thread count is recorded and a resume under another count is refused
//! (results differ between 1 and 2 threads). On libtorch's CPU (MKL BLAS), bit-exact resume across
//! processes also needs `MKL_CBWR=COMPATIBLE`, or MKL may pick alignment-dependent kernels.

mod checkpoint;
mod loss;
mod lr_find;
mod metrics;
pub mod multitask;
mod plot;
mod schedule;
mod semi;
mod trainer;

pub use checkpoint::Checkpoint;
pub use loss::{Targets, cross_entropy};
pub use lr_find::{LrFinder, LrFinderResult, lr_find};
pub use metrics::{ClassMetrics, RegressionMetrics, TaskMetrics, evaluate};
pub use multitask::{Sampling, Task, TaskLoss, TaskMetric, TaskRecord, TaskSet, regression_loss};
pub use plot::{Series, plot_bars, plot_history, plot_lr_find, plot_series};
pub use schedule::Schedule;
pub use semi::{SemiConfig, SemiMethod, Unlabeled};
pub use trainer::{
    Callback, Control, EarlyStopping, EpochRecord, History, Monitor, StepRecord, TrainConfig,
    Trainer, snapshot,
};

/// timm's `resolve_data_config`: the transform settings a model's pretrained cfg implies
/// (input size, crop_pct, crop mode, interpolation, mean / std) for `graft_data::transform`.
/// Train-time size, as timm's default (`use_test_size=False`); [`data_config_test`] takes the
/// tag's `test_input_size` / `test_crop_pct`.
pub fn data_config(cfg: &graft_zoo::PretrainedCfg) -> graft_data::transform::TransformCfg {
    data_config_with(cfg, false)
}

/// [`data_config`] at the size the weights are evaluated at (timm's `use_test_size=True`, what
/// its `validate.py` uses): `test_input_size` and `test_crop_pct` when the cfg has them.
pub fn data_config_test(cfg: &graft_zoo::PretrainedCfg) -> graft_data::transform::TransformCfg {
    data_config_with(cfg, true)
}

fn data_config_with(
    cfg: &graft_zoo::PretrainedCfg,
    test: bool,
) -> graft_data::transform::TransformCfg {
    use graft_data::transform::{CropMode, Interp};
    let (input_size, crop_pct) = match (test, cfg.test_input_size) {
        (true, Some(t)) => (
            [cfg.input_size[0], t[1], t[2]],
            cfg.test_crop_pct.unwrap_or(cfg.crop_pct),
        ),
        _ => (cfg.input_size, cfg.crop_pct),
    };
    graft_data::transform::TransformCfg {
        crop_mode: match cfg.crop_mode {
            graft_zoo::CropMode::Center => CropMode::Center,
            graft_zoo::CropMode::Squash => CropMode::Squash,
            graft_zoo::CropMode::Border => CropMode::Border,
        },
        input_size,
        crop_pct,
        interp: match cfg.interpolation {
            graft_zoo::Interpolation::Bicubic => Interp::Bicubic,
            // graft resamples bilinear or bicubic; nearest cfgs get bilinear
            graft_zoo::Interpolation::Bilinear | graft_zoo::Interpolation::Nearest => {
                Interp::Bilinear
            }
        },
        mean: per_channel(&cfg.mean, cfg.input_size[0]),
        std: per_channel(&cfg.std, cfg.input_size[0]),
    }
}

/// An RGB mean / std for `c` input channels: one channel gets the average (a gray image is the
/// mean of R, G, B), other counts repeat the RGB values cyclically.
fn per_channel(rgb: &[f64; 3], c: usize) -> Vec<f64> {
    if c == 1 {
        vec![rgb.iter().sum::<f64>() / 3.0]
    } else {
        (0..c.max(1)).map(|i| rgb[i % 3]).collect()
    }
}
