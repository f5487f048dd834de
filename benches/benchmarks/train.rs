//! One fine-tuning step on graft-tch: ResNet-18 at 64x64, batch 16, stem + layer1 frozen, a new
//! 10-class head, AdamW (forward, cross-entropy, gradients, in-place update).

use criterion::{Criterion, criterion_group};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{Targets, cross_entropy};
use graft::zoo::{ModelOptions, create_model};
use graft::{Backend, Ctx, Tch};

use super::{config, values};

fn train_step(c: &mut Criterion) {
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).seed(0);
    let (model, _) = create_model(&b, "resnet18", &opts).expect("model");
    let plan =
        Plan::new(&model, &FreezeConfig::freeze_to(2), &LrConfig::adamw(1e-3)).expect("plan");
    let mut opt = plan.apply(&model).expect("optimizer");
    let x = b.from_data(&values(&[16, 3, 64, 64], 1)).expect("input");
    let targets = Targets::Hard((0..16).map(|i| i % 10).collect());
    let mut step = 0;
    c.bench_function("train_step resnet18 16x64x64 freeze_to(2) adamw", |bch| {
        bch.iter(|| {
            step += 1;
            let ctx = Ctx::train(plan.modes(), 0, step);
            let logits = model.forward(&x, &ctx).expect("forward");
            let loss = cross_entropy(&b, &logits, &targets, 0.0).expect("loss");
            let grads = model.params().gradients(&loss).expect("backward");
            opt.step(model.params(), &grads).expect("step");
            b.to_data(&loss).expect("loss value")
        })
    });
}

criterion_group! {
    name = benches;
    config = config();
    targets = train_step
}
