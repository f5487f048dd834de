//! Each zoo family's eval forward (batch 4 at 64x64) on both backends: the model as built and its
//! inference copy (BatchNorm folded; bf16 on tch too).

use criterion::{BenchmarkId, Criterion, criterion_group};
use graft::zoo::{InferenceOptions, ModelOptions, create_model};
use graft::{Backend, Ctx, DType, NdArray, Tch};

use super::{config, values};

const MODELS: &[&str] = &[
    "resnet18",
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_tiny_patch16_224",
];

fn forward_on<B: Backend>(c: &mut Criterion, b: &B, forms: &[(&str, Option<InferenceOptions>)]) {
    let mut g = c.benchmark_group("zoo");
    for &name in MODELS {
        let mut opts = ModelOptions::default().seed(0);
        if name.starts_with("vit") {
            opts.img_size = Some([64, 64]);
        }
        let (model, _) = create_model(b, name, &opts).expect("model");
        let x = b.from_data(&values(&[4, 3, 64, 64], 1)).expect("input");
        for (form, o) in forms {
            let m = match o {
                Some(o) => model.for_inference(o).expect("inference copy"),
                None => create_model(b, name, &opts).expect("model").0,
            };
            let id = BenchmarkId::new(format!("{name} 4x64x64 {form}"), b.name());
            g.bench_function(id, |bch| {
                bch.iter(|| {
                    let y = m.forward(&x, &Ctx::eval()).expect("forward");
                    b.to_data(&b.cast(&y, DType::F32).expect("cast"))
                        .expect("data")
                })
            });
        }
    }
    g.finish();
}

fn zoo(c: &mut Criterion) {
    forward_on(
        c,
        &Tch::cpu(),
        &[
            ("plain", None),
            ("fp32 copy", Some(InferenceOptions::default())),
            ("bf16 copy", Some(InferenceOptions::bf16())),
        ],
    );
    forward_on(
        c,
        &NdArray,
        &[
            ("plain", None),
            ("fp32 copy", Some(InferenceOptions::default())),
        ],
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = zoo
}
