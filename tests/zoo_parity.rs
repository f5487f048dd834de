//! Zoo parity: every registered model on graft-tch and graft-ndarray against the torchvision / timm
//! reference in the project's venv, with every parameter and buffer re-randomised (see
//! tests/python/zoo_fixtures.py). Logits, pooled pre-logits features and every stage output must
//! agree: max abs diff ≤ 1e-4 × max|ref| on tch, ≤ 1e-3 × max|ref| on ndarray, eval mode. Each
//! load must apply 100 % of the file's keys.

mod common;

use std::path::{Path, PathBuf};

use graft::backend::safetensors_io;
use graft::zoo::{ModelOptions, count_parameters, create_model};
use graft::{Backend, Ctx, NdArray, Tch, TensorData};

fn fixture(id: &str) -> PathBuf {
    common::zoo_fixture(id)
}

struct Meta {
    model: String,
    num_params: usize,
    num_classes: Option<usize>,
    img_size: Option<[usize; 2]>,
    /// The weights were saved for another input size (graft resamples them on load).
    resampled: bool,
    /// Tensors the load reshapes (timm ConvNeXt's `gamma`, conv-MLP weights).
    reshaped: usize,
    /// Every key renamed (a timm layout loaded through the remap table).
    renamed_all: bool,
    /// A configuration no registered architecture has: graft's `Arch`, as the fixture read it
    /// off the reference model (scripts/gen_archs.py).
    arch: Option<graft::zoo::Arch>,
}

fn meta(dir: &Path) -> Meta {
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("meta json");
    let o = &v["options"];
    Meta {
        model: v["model"].as_str().expect("model").to_string(),
        num_params: v["num_params"].as_u64().expect("num_params") as usize,
        num_classes: o["num_classes"].as_u64().map(|n| n as usize),
        img_size: o["img_size"].as_array().map(|a| {
            [
                a[0].as_u64().expect("h") as usize,
                a[1].as_u64().expect("w") as usize,
            ]
        }),
        resampled: o["resampled"].as_bool().unwrap_or(false),
        reshaped: o["reshaped"].as_u64().unwrap_or(0) as usize,
        renamed_all: o["renamed_all"].as_bool().unwrap_or(false),
        arch: o
            .get("arch")
            .map(|a| serde_json::from_value(a.clone()).expect("arch config")),
    }
}

/// The fixture's model with its weights: a registered architecture by name, or the fixture's own
/// configuration built and loaded strictly.
fn fixture_model<B: Backend>(
    b: &B,
    dir: &Path,
    m: &Meta,
) -> (graft::zoo::Model<B>, graft::zoo::load::LoadReport) {
    let weights = dir.join("weights.safetensors");
    let mut opts = ModelOptions::default().weights(&weights);
    opts.num_classes = m.num_classes;
    opts.img_size = m.img_size;
    match &m.arch {
        None => {
            let (model, report) = create_model(b, &m.model, &opts).expect("create + load");
            (model, report.expect("a load report"))
        }
        Some(arch) => {
            let cfg = graft::zoo::PretrainedCfg::imagenet(
                m.img_size.expect("img_size")[0],
                0.9,
                graft::zoo::Interpolation::Bicubic,
                "patch_embed.proj",
                "head",
                "timm",
            );
            let mut model =
                graft::zoo::Model::build(b, &m.model, arch.clone(), cfg, &opts).expect("build");
            let report = model
                .load_weights(&weights, &graft::zoo::load::LoadOptions::default())
                .expect("load");
            (model, report)
        }
    }
}

fn rel_diff(got: &TensorData, want: &TensorData) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let max_ref = want.to_f64().iter().fold(0f64, |m, v| m.max(v.abs()));
    got.max_abs_diff(want).expect("diff") / max_ref.max(1e-12)
}

/// Runs one fixture on one backend; returns (output, relative diff) rows.
fn check<B: Backend>(b: &B, id: &str, tol: f64) -> Vec<(String, f64)> {
    let dir = fixture(id);
    let m = meta(&dir);
    let (model, report) = fixture_model(b, &dir, &m);
    assert!(report.is_clean(), "{id}: {report}");
    assert!(report.head_dropped.is_empty(), "{id}: {report}");
    assert_eq!(
        report.applied.len(),
        model.params().len(),
        "{id}: every tensor applied\n{report}"
    );
    assert!(report.defaulted.is_empty(), "{id}: {report}");
    // Adaptations: timm ConvNeXt's `gamma [C]` reshaped to `layer_scale [C, 1, 1]` through the
    // remap table; ViT's position embeddings resampled when built for another size.
    let resampled = report
        .adapted
        .iter()
        .filter(|(_, how)| how.starts_with("resampled"))
        .count();
    let reshaped = report
        .adapted
        .iter()
        .filter(|(_, how)| how.starts_with("reshaped"))
        .count();
    assert_eq!(resampled, usize::from(m.resampled), "{id}: {report}");
    assert_eq!(reshaped, m.reshaped, "{id}: reshaped tensors\n{report}");
    if m.renamed_all {
        assert!(
            report.renamed > 0 && report.renamed == report.applied.len(),
            "{id}: {report}"
        );
    }

    let counted = count_parameters(
        b,
        model.arch(),
        model.head(),
        model.num_classes(),
        model.in_chans(),
    )
    .expect("count");
    assert_eq!(
        counted, m.num_params,
        "{id}: parameter count vs the reference"
    );
    let every_param_staged = model
        .params()
        .names()
        .all(|n| model.stages().stage_of(n).is_some());
    assert!(every_param_staged, "{id}: a parameter outside every stage");

    let (io, _) = safetensors_io::load(&dir.join("io.safetensors")).expect("io");
    let x = b.from_data(&io["input"]).expect("input");
    let ctx = Ctx::eval();
    let mut rows = Vec::new();
    let feats = model.forward_features(&x, &ctx).expect("forward_features");
    let logits = model.forward_head(&feats, false, &ctx).expect("head");
    let pooled = model.forward_head(&feats, true, &ctx).expect("pre-logits");
    rows.push((
        "logits".to_string(),
        rel_diff(&b.to_data(&logits).expect("data"), &io["logits"]),
    ));
    rows.push((
        "features".to_string(),
        rel_diff(&b.to_data(&pooled).expect("data"), &io["features"]),
    ));
    let info = model.feature_info();
    let names: Vec<&str> = info.iter().map(|f| f.stage.as_str()).collect();
    let stages = model.forward_stages(&x, &names, &ctx).expect("stages");
    assert_eq!(stages.len(), info.len());
    for (i, (s, f)) in stages.iter().zip(&info).enumerate() {
        let got = b.to_data(s).expect("data");
        let want = &io[&format!("stage.{i}")];
        assert_eq!(
            want.shape()[1],
            f.channels,
            "{id} {}: feature_info channels",
            f.stage
        );
        let h_in = io["input"].shape()[2];
        assert_eq!(
            h_in.div_ceil(f.reduction),
            want.shape()[2],
            "{id} {}: feature_info reduction",
            f.stage
        );
        rows.push((format!("stage {}", f.stage), rel_diff(&got, want)));
    }
    let worst = rows.iter().fold(0f64, |m, (_, d)| m.max(*d));
    let line = format!("{id}\t{}\t{worst:.3e}\n", b.name());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zoo-parity");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join(format!("{id}-{}.tsv", b.name())), line);
    let bad: Vec<String> = rows
        .iter()
        .filter(|(_, d)| d.is_nan() || *d > tol)
        .map(|(w, d)| format!("{w}: {d:.3e}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{id} on {}: relative diff above {tol:e}: {bad:?}",
        b.name()
    );
    rows
}

macro_rules! parity {
    ($($test:ident => $id:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let t = check(&Tch::cpu(), $id, 1e-4);
            let n = check(&NdArray, $id, 1e-3);
            eprintln!("{}: tch worst {:.2e}, ndarray worst {:.2e}", $id,
                t.iter().fold(0f64, |m, r| m.max(r.1)), n.iter().fold(0f64, |m, r| m.max(r.1)));
        }
    )*};
}

parity! {
    resnet18 => "resnet18",
    resnet34 => "resnet34",
    resnet50 => "resnet50",
    resnet101 => "resnet101",
    resnet50_torchvision => "resnet50_tv",
    resnet50d => "resnet50d",
    resnet18d => "resnet18d",
    resnext50_32x4d => "resnext50_32x4d",
    seresnext26d_32x4d => "seresnext26d_32x4d",
    ecaresnet26t_tiered_eca => "ecaresnet26t",
    resnetaa50_anti_aliased => "resnetaa50",
    resnetrs50_conv_stem_pool_se4 => "resnetrs50",
    resnet10t_basic_tiered => "resnet10t",
    resnet18_small => "resnet18_small",
    mobilenet_v3_large => "mobilenet_v3_large",
    mobilenet_v3_small => "mobilenet_v3_small",
    efficientnet_b0 => "efficientnet_b0",
    convnext_tiny_torchvision => "convnext_tiny",
    convnext_tiny_timm_remapped => "convnext_tiny_timm",
    convnext_atto_conv_mlp => "convnext_atto_timm",
    convnextv2_atto_grn_conv_mlp => "convnextv2_atto_timm",
    convnextv2_tiny_grn => "convnextv2_tiny_timm",
    convnext_atto_ols_overlapping_stem => "convnext_atto_ols_timm",
    convnext_large_mlp_head => "convnext_large_mlp_timm",
    regnetx_002 => "regnetx_002",
    regnety_002 => "regnety_002",
    tf_efficientnet_b0_same_padding => "tf_efficientnet_b0",
    tf_efficientnetv2_b0_edge_residual => "tf_efficientnetv2_b0",
    efficientnet_lite0_relu6_no_se => "efficientnet_lite0",
    tf_mobilenetv3_small_075_pool_conv_head => "tf_mobilenetv3_small_075",
    mobilenetv1_100_no_head_conv => "mobilenetv1_100",
    efficientnet_b1_torchvision_into_timm_names => "efficientnet_b1_tv",
    mobilenetv4_conv_small_uir => "mobilenetv4_conv_small",
    mobilenetv4_conv_medium_uir_edge_residual => "mobilenetv4_conv_medium",
    vit_siglip_map_attention_pool => "vit_siglip_map",
    vit_tiny => "vit_tiny_patch16_224",
    vit_small => "vit_small_patch16_224",
    vit_base => "vit_base_patch16_224",
    vit_tiny_resampled_to_96 => "vit_tiny_patch16_224_at96",
    vit_tiny_resampled_to_320 => "vit_tiny_patch16_224_at320",
    vit_clip_quickgelu => "vit_clip_quickgelu",
    vit_dinov2_registers => "vit_dinov2_reg4",
    vit_registers_avg_pool_fc_norm => "vit_reg1_gap",
    vit_siglip_avg_pool => "vit_siglip_gap",
    deit3_small => "deit3_small",
    deit_distillation_token_two_heads => "deit_distilled",
    beit3_scale_norms => "beit3_base",
    flexivit_bilinear_resampled_pos_embed => "flexivit_small_at96",
    radio_bilinear_aligned_corners_resampled => "radio_base_at64",
    vit_dynamic_img_size_upsampled => "vit_custom_dynamic_up",
    vit_dynamic_img_size_downsampled => "vit_custom_dynamic_down",
    vit_no_qkv_bias_avg_pool => "vit_medium_gap",
    eva02_tiny_index_rope_qv_bias => "eva02_tiny",
    eva02_base_clip_split_qkv_norms => "eva02_base_clip",
    vit_rope_xy_with_abs_pos_embed => "vit_rope_ape",
    dinov3_small_centred_rope_registers => "dinov3_small",
    pe_spatial_tiny_pre_norm_offset_rope => "pe_spatial_tiny",
    pe_core_tiny_attention_pool_own_heads => "pe_core_tiny",
    swin_tiny_shifted_padded_windows => "swin_tiny",
    swin_s3_tiny_stage_windows => "swin_s3_tiny",
    swinv2_tiny_cosine_attention_cpb => "swinv2_tiny",
    swinv2_base_pretrained_window => "swinv2_base_12to16",
    vit_packed_swiglu_qk_norm => "vit_custom_glu_qknorm",
    vit_swiglu => "vit_custom_swiglu",
}

/// Every built-in architecture that timm or torchvision also builds has exactly its parameter
/// count (a dry build: nothing allocated), head included.
#[test]
fn every_builtin_counts_the_references_parameters() {
    let reg = graft::zoo::Registry::builtin();
    let names: Vec<String> = reg.list(None).into_iter().map(|e| e.name.clone()).collect();
    let out = common::temp_dir("param-counts").join("counts.json");
    let mut args = vec![out.to_str().expect("utf-8 path")];
    args.extend(names.iter().map(String::as_str));
    common::run_python("param_counts.py", &args);
    let text = std::fs::read_to_string(&out).expect("counts.json");
    let want: std::collections::BTreeMap<String, usize> =
        serde_json::from_str(&text).expect("counts json");
    let mut wrong = Vec::new();
    for (name, n) in &want {
        let got = reg.param_count(&NdArray, name).expect("dry count");
        if got != *n {
            wrong.push(format!("{name}: graft {got}, reference {n}"));
        }
    }
    let left_out: Vec<&String> = names.iter().filter(|n| !want.contains_key(*n)).collect();
    eprintln!(
        "{} built-ins counted against their reference; not in timm / torchvision: {left_out:?}",
        want.len()
    );
    assert!(
        wrong.is_empty(),
        "parameter counts differ:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        left_out.len(),
        2,
        "only resnet18_small and minilm_l6 lack a reference"
    );
}

/// `.pth` (torch.save) through libtorch's unpickler loads the same values, with the same report,
/// as the safetensors file; graft's own reader (no pickle code run) reads exactly what libtorch
/// does, and `load_weights` takes the `.pth` directly.
#[test]
fn pth_through_libtorch_matches_safetensors() {
    let dir = fixture("resnet18_small");
    let tmp = common::temp_dir("pth");
    let pth = tmp.join("weights.pth");
    let st = dir.join("weights.safetensors");
    common::run_python(
        "to_pth.py",
        &[st.to_str().expect("utf-8"), pth.to_str().expect("utf-8")],
    );
    let tensors = graft::tch::read_pth(&pth).expect("read .pth");
    let (want, _) = safetensors_io::load(&st).expect("safetensors");
    assert_eq!(tensors, want);
    assert_eq!(
        graft::zoo::torch_file::read(&pth).expect("graft's reader"),
        tensors
    );
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10);
    let (mut m, _) = create_model(&b, "resnet18_small", &opts).expect("build");
    let r = m
        .load_tensors(&pth, &tensors, &Default::default())
        .expect("load");
    assert!(r.is_clean() && r.applied.len() == m.params().len(), "{r}");
    let r = m
        .load_weights(&pth, &Default::default())
        .expect("load .pth");
    assert!(r.is_clean() && r.applied.len() == m.params().len(), "{r}");
    let err = graft::tch::read_pth(&st).expect_err("a safetensors file is not a pickle");
    assert!(err.to_string().contains("weights.safetensors"), "{err}");
}

/// An inference copy (`Model::for_inference`: BatchNorm folded into the convs, channels-last
/// activations, optionally bf16) against the same reference outputs: fp32 within the parity
/// tolerance of its backend, bf16 within `tol_bf16`. Returns the worst relative diff per form.
fn check_inference(id: &str, tol_bf16: f64) -> Vec<(String, f64)> {
    use graft::zoo::{InferenceOptions, Layout};
    let dir = fixture(id);
    let m = meta(&dir);
    let (io, _) = safetensors_io::load(&dir.join("io.safetensors")).expect("io");
    let ctx = Ctx::eval();
    let mut out = Vec::new();
    let mut run = |b: &dyn Fn() -> Vec<(String, TensorData)>, form: &str, tol: f64| {
        let rows = b();
        let mut worst = 0f64;
        for (what, got) in rows {
            let want = &io[what.as_str()];
            let d = rel_diff(&got.cast(graft::DType::F32), want);
            assert!(
                d <= tol,
                "{id} {form} {what}: relative diff {d:.3e} > {tol:e}"
            );
            worst = worst.max(d);
        }
        out.push((form.to_string(), worst));
    };
    fn forms<B: Backend>(
        b: &B,
        dir: &Path,
        m: &Meta,
        io: &std::collections::BTreeMap<String, TensorData>,
        o: &InferenceOptions,
        ctx: &Ctx<'_>,
    ) -> Vec<(String, TensorData)> {
        let (model, _) = fixture_model(b, dir, m);
        let fast = model.for_inference(o).expect("inference copy");
        let bns = model.batch_norm_layers().len();
        if o.fold_batch_norm {
            assert_eq!(
                fast.params().folded().count(),
                bns,
                "every BatchNorm folded"
            );
            assert!(fast.batch_norm_layers().is_empty());
        }
        let x = b.from_data(&io["input"]).expect("input");
        let logits = fast.forward(&x, ctx).expect("forward");
        let pooled = fast.forward_pooled(&x, ctx).expect("pooled");
        let info = fast.feature_info();
        let names: Vec<&str> = info.iter().map(|f| f.stage.as_str()).collect();
        let stages = fast.forward_stages(&x, &names, ctx).expect("stages");
        let mut rows = vec![
            ("logits".to_string(), b.to_data(&logits).expect("data")),
            ("features".to_string(), b.to_data(&pooled).expect("data")),
        ];
        for (i, s) in stages.iter().enumerate() {
            rows.push((format!("stage.{i}"), b.to_data(s).expect("data")));
        }
        // the copy computes the eval function only
        if bns > 0 && o.fold_batch_norm {
            let modes = graft::ModeTable::new();
            let err = fast
                .forward(&x, &Ctx::train(&modes, 0, 0))
                .expect_err("training a folded copy");
            assert!(err.to_string().contains("folded"), "{err}");
        }
        rows
    }
    let t = Tch::cpu();
    let fp32 = InferenceOptions::default();
    let cl = InferenceOptions {
        layout: Layout::ChannelsLast,
        ..fp32
    };
    run(
        &|| forms(&t, &dir, &m, &io, &fp32, &ctx),
        "tch fp32 auto",
        1e-4,
    );
    run(
        &|| forms(&t, &dir, &m, &io, &cl, &ctx),
        "tch fp32 channels-last",
        1e-4,
    );
    run(
        &|| forms(&NdArray, &dir, &m, &io, &fp32, &ctx),
        "ndarray fp32",
        1e-3,
    );
    run(
        &|| forms(&t, &dir, &m, &io, &InferenceOptions::bf16(), &ctx),
        "tch bf16",
        tol_bf16,
    );
    let line: String = out
        .iter()
        .map(|(f, d)| format!("{id}\t{f}\t{d:.3e}\n"))
        .collect();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zoo-parity");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{id}-inference.tsv")), line);
    out
}

macro_rules! inference_parity {
    ($($test:ident => $id:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let rows = check_inference($id, 3e-2);
            eprintln!("{}: {rows:?}", $id);
        }
    )*};
}

inference_parity! {
    inference_copy_resnet18 => "resnet18",
    inference_copy_resnet50_torchvision => "resnet50_tv",
    inference_copy_mobilenet_v3_large => "mobilenet_v3_large",
    inference_copy_efficientnet_b0 => "efficientnet_b0",
    inference_copy_convnext_tiny => "convnext_tiny",
    inference_copy_regnety_002 => "regnety_002",
    inference_copy_tf_efficientnetv2_b0 => "tf_efficientnetv2_b0",
    inference_copy_tf_mobilenetv3_small_075 => "tf_mobilenetv3_small_075",
    inference_copy_mobilenetv4_conv_medium => "mobilenetv4_conv_medium",
    inference_copy_resnet50d => "resnet50d",
    inference_copy_vit_tiny => "vit_tiny_patch16_224",
    inference_copy_eva02_tiny => "eva02_tiny",
    inference_copy_deit_distilled => "deit_distilled",
    inference_copy_swin_tiny => "swin_tiny",
}
