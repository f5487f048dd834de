//! What a backend can do beyond inference: the training steps of the routes ([`Routes`]),
//! on libtorch; the pure-Rust backend refuses them with a message saying so.

use super::*;

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
    /// Multi-task training under a freeze and LR plan over the shared trunk.
    fn fit_tasks(
        _model: &mut Model<Self>,
        _tasks: &graft_train::TaskSet,
        _freeze: &graft_surgery::FreezeConfig,
        _lr: &LrConfig,
        _cfg: TrainConfig,
    ) -> Result<History> {
        bail!("multi-task training needs libtorch (backend = \"tch\")")
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
    fn fit_tasks(
        model: &mut Model<Self>,
        tasks: &graft_train::TaskSet,
        freeze: &graft_surgery::FreezeConfig,
        lr: &LrConfig,
        cfg: TrainConfig,
    ) -> Result<History> {
        let plan = graft_surgery::Plan::new(model, freeze, lr)?;
        let opt = plan.apply(model)?;
        let mut t = graft_train::Trainer::new(cfg, opt, plan.modes().clone());
        Ok(t.fit_tasks(model, tasks)?)
    }
}
