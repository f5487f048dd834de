//! Pretrained models by name, from a stand-in Hub on 127.0.0.1 serving repos that the venv's
//! timm wrote itself (`save_for_hf`, every parameter and buffer re-randomised): graft pulls a tag
//! into the Hugging Face cache layout and its logits equal timm's; Python's huggingface_hub and
//! timm, offline, find graft's files; graft, with the server gone, uses a file Python pulled;
//! `hf-hub:` names with a revision; an offline miss is one clear error that writes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use graft::backend::safetensors_io;
use graft::hub::HubConfig;
use graft::hub::stand_in::StandIn;
use graft::zoo::{HeadSpec, ModelOptions, Registry, create_model};
use graft::{Backend, Ctx, Error, NdArray, Tch, TensorData};

/// One per family graft has: every timm-named layout the remap tables cover.
const TAGS: &[&str] = &[
    "resnet18.a1_in1k",
    "mobilenetv3_large_100.ra_in1k",
    "mobilenetv3_small_100.lamb_in1k",
    "efficientnet_b0.ra_in1k",
    "convnext_tiny.fb_in1k",
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
];

/// timm's repo for `tag` (config.json, model.safetensors, io.safetensors), written once (by
/// whichever test process gets there first).
fn timm_repo(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("hub-repos")
        .join(tag);
    common::build_once(&dir, "io.safetensors", |tmp| {
        common::run_python(
            "hub_reference.py",
            &["repo", tag, tmp.to_str().expect("utf-8")],
        );
    });
    dir
}

fn publish(server: &StandIn, repo: &str, dir: &Path) -> String {
    let read = |f: &str| std::fs::read(dir.join(f)).expect(f);
    server.publish(
        repo,
        "main",
        &[
            ("config.json", read("config.json")),
            ("model.safetensors", read("model.safetensors")),
        ],
    )
}

fn hub_cfg(server_endpoint: &str, cache: &Path) -> HubConfig {
    let mut c = HubConfig::from_vars(|_| None);
    c.endpoint = server_endpoint.to_string();
    c.cache_dir = cache.to_path_buf();
    c.torch_home = cache.join("torch");
    c.progress = false;
    c.retries = 1;
    c
}

fn io(dir: &Path) -> (TensorData, TensorData) {
    let (mut t, _) = safetensors_io::load(&dir.join("io.safetensors")).expect("io");
    (
        t.remove("x").expect("x"),
        t.remove("logits").expect("logits"),
    )
}

fn rel_diff(got: &TensorData, want: &TensorData) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let max_ref = want.to_f64().iter().fold(0f64, |m, v| m.max(v.abs()));
    got.max_abs_diff(want).expect("diff") / max_ref.max(1e-12)
}

fn logits<B: Backend>(b: &B, tag: &str, cfg: &HubConfig, x: &TensorData) -> TensorData {
    let opts = ModelOptions::default().pretrained(true).hub(cfg.clone());
    let (model, report) = create_model(b, tag, &opts).unwrap_or_else(|e| panic!("{tag}: {e}"));
    let report = report.expect("weights were loaded");
    assert!(
        report.is_clean() && report.head_dropped.is_empty(),
        "{tag}: {report}"
    );
    assert_eq!(model.cfg().tag.as_deref(), Some(tag));
    let y = model
        .forward(&b.from_data(x).expect("upload"), &Ctx::eval())
        .expect("forward");
    b.to_data(&y).expect("download")
}

fn python_with(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/hub_reference.py");
    let mut cmd = Command::new(common::python());
    cmd.arg(script).args(args);
    for k in [
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "HF_HUB_CACHE",
        "HF_HOME",
        "HF_TOKEN",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HF_HUB_DISABLE_TELEMETRY", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn python");
    assert!(
        out.status.success(),
        "hub_reference.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn tags_pulled_from_the_hub_match_timm_and_python_reads_graft_s_cache() {
    let server = StandIn::start().expect("server");
    let cache = common::temp_dir("pretrained-tags");
    let cfg = hub_cfg(&server.endpoint(), &cache);
    for tag in TAGS {
        let dir = timm_repo(tag);
        publish(&server, &format!("timm/{tag}"), &dir);
        let (x, want) = io(&dir);
        let tch = logits(&Tch::cpu(), tag, &cfg, &x);
        let d = rel_diff(&tch, &want);
        assert!(d <= 1e-4, "{tag} tch: {d:e}");
        let nd = logits(&NdArray, tag, &cfg, &x);
        let d = rel_diff(&nd, &want);
        assert!(d <= 1e-3, "{tag} ndarray: {d:e}");
        // Python, offline, on graft's cache: huggingface_hub finds the file, timm loads it
        let out = cache.join(format!("{tag}-timm.safetensors"));
        python_with(
            &[
                ("HF_HUB_OFFLINE", "1"),
                ("HF_HUB_CACHE", cache.to_str().expect("utf-8")),
            ],
            &[
                "offline",
                tag,
                dir.join("io.safetensors").to_str().expect("utf-8"),
                out.to_str().expect("utf-8"),
            ],
        );
        let (timm, _) = safetensors_io::load(&out).expect("timm logits");
        assert_eq!(
            timm["logits"].max_abs_diff(&want).expect("diff"),
            0.0,
            "{tag}: timm on graft's file"
        );
    }
    // one download per file: the second backend used the cache
    assert_eq!(server.count("GET", "/blobs/"), TAGS.len());
}

#[test]
fn graft_uses_what_python_pulled_with_the_server_stopped() {
    let tag = "resnet18.a1_in1k";
    let dir = timm_repo(tag);
    let cache = common::temp_dir("pretrained-python-pull");
    let endpoint = {
        let server = StandIn::start().expect("server");
        publish(&server, &format!("timm/{tag}"), &dir);
        let env = [
            ("HF_ENDPOINT", server.endpoint()),
            ("HF_HUB_CACHE", cache.to_string_lossy().into_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for f in ["model.safetensors", "config.json"] {
            python_with(&env, &["pull", &format!("timm/{tag}"), f]);
        }
        server.endpoint()
    }; // the server stops here
    let (x, want) = io(&dir);
    let cfg = hub_cfg(&endpoint, &cache);
    let got = logits(&Tch::cpu(), tag, &cfg, &x);
    assert!(rel_diff(&got, &want) <= 1e-4);
    // and offline too
    let mut off = cfg.clone();
    off.offline = true;
    let got = logits(&NdArray, tag, &off, &x);
    assert!(rel_diff(&got, &want) <= 1e-3);
}

#[test]
fn hf_hub_names_take_a_revision() {
    let tag = "resnet18.a1_in1k";
    let dir = timm_repo(tag);
    let server = StandIn::start().expect("server");
    let v1 = publish(&server, "someone/my-resnet", &dir);
    server.set_ref("someone/my-resnet", "v1", &v1);
    // main moves on to a commit without weights: only @v1 has them
    server.publish(
        "someone/my-resnet",
        "main",
        &[(
            "config.json",
            std::fs::read(dir.join("config.json")).expect("config"),
        )],
    );
    let cache = common::temp_dir("pretrained-hf-hub");
    let cfg = hub_cfg(&server.endpoint(), &cache);
    let (x, want) = io(&dir);
    let name = "hf-hub:someone/my-resnet@v1";
    let opts = ModelOptions::default().pretrained(true).hub(cfg.clone());
    let (model, report) = create_model(&Tch::cpu(), name, &opts).expect("hf-hub@v1");
    assert!(report.expect("loaded").is_clean());
    assert_eq!(model.cfg().test_input_size, Some([3, 288, 288]));
    let b = Tch::cpu();
    let y = model
        .forward(&b.from_data(&x).expect("x"), &Ctx::eval())
        .expect("forward");
    assert!(rel_diff(&b.to_data(&y).expect("y"), &want) <= 1e-4);
    let e = create_model(&Tch::cpu(), "hf-hub:someone/my-resnet", &opts)
        .expect_err("main has no weights");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

/// A DeiT distilled model as timm publishes it (`config.json` with `global_pool: "token"`, a file
/// with `head` and `head_dist`): graft builds the distilled head from timm's config and matches
/// timm's logits on both backends; a config stating another pooling than the architecture's is
/// refused, naming the key.
#[test]
fn a_distilled_deit_from_the_hub_keeps_both_heads() {
    let tag = "deit_tiny_distilled_patch16_224.fb_in1k";
    let dir = timm_repo(tag);
    let server = StandIn::start().expect("server");
    publish(&server, "someone/my-deit", &dir);
    let cache = common::temp_dir("pretrained-deit");
    let opts = ModelOptions::default()
        .pretrained(true)
        .hub(hub_cfg(&server.endpoint(), &cache));
    let (x, want) = io(&dir);
    let d = distilled_logits(&Tch::cpu(), &opts, &x, &want);
    assert!(d <= 1e-4, "tch {d:e}");
    let d = distilled_logits(&NdArray, &opts, &x, &want);
    assert!(d <= 1e-3, "ndarray {d:e}");
    let text = std::fs::read_to_string(dir.join("config.json")).expect("config");
    assert!(text.contains(r#""global_pool": "token""#), "{text}");
    let bad = common::temp_dir("pretrained-deit-avg");
    std::fs::write(
        bad.join("config.json"),
        text.replace(r#""global_pool": "token""#, r#""global_pool": "avg""#),
    )
    .expect("write");
    let e = Registry::builtin()
        .register_files(
            "my-deit",
            &dir.join("model.safetensors"),
            &bad.join("config.json"),
        )
        .expect_err("avg pooling on a token-pooled ViT");
    let e = e.to_string();
    assert!(
        e.contains("global_pool") && e.contains("config.json"),
        "{e}"
    );
    // the same config on the Hub
    std::fs::copy(dir.join("model.safetensors"), bad.join("model.safetensors")).expect("copy");
    publish(&server, "someone/my-deit-avg", &bad);
    let e = create_model(&NdArray, "hf-hub:someone/my-deit-avg", &opts)
        .expect_err("avg pooling on a token-pooled ViT")
        .to_string();
    assert!(
        e.contains("global_pool") && e.contains("config.json"),
        "{e}"
    );
}

/// The hub DeiT's logits on `b`, as relative difference to timm's; on the way, what its pair of
/// heads does with pooled features and with a replacement.
fn distilled_logits<B: Backend>(
    b: &B,
    opts: &ModelOptions,
    x: &TensorData,
    want: &TensorData,
) -> f64 {
    let (mut model, report) = create_model(b, "hf-hub:someone/my-deit", opts).expect("deit");
    let report = report.expect("loaded");
    assert!(
        report.is_clean() && report.head_dropped.is_empty(),
        "{report}"
    );
    assert_eq!(model.head(), &HeadSpec::Distilled);
    let ctx = Ctx::eval();
    let xt = b.from_data(x).expect("x");
    let y = b
        .to_data(&model.forward(&xt, &ctx).expect("forward"))
        .expect("y");
    // the pair reads the two tokens: their mean (the pooled features) is refused, not misread
    let pooled = model.forward_pooled(&xt, &ctx).expect("pooled");
    let e = model
        .forward_classifier(&pooled, &ctx)
        .expect_err("pooled features into the pair");
    assert!(e.to_string().contains("distilled head"), "{e}");
    // a Linear head replaces both and reads the pooled features
    let removed = model.replace_head(5, HeadSpec::Linear, 3).expect("replace");
    assert!(
        removed.iter().any(|n| n == "head_dist.weight"),
        "{removed:?}"
    );
    let z = b
        .to_data(&model.forward_classifier(&pooled, &ctx).expect("linear"))
        .expect("z");
    let whole = b
        .to_data(&model.forward(&xt, &ctx).expect("forward"))
        .expect("whole");
    assert_eq!(z.shape(), [2, 5]);
    assert!(z.max_abs_diff(&whole).expect("diff") <= 1e-5);
    // and back: a fresh pair for 5 classes (timm's reset_classifier), which reads the tokens
    model
        .replace_head(5, HeadSpec::Distilled, 4)
        .expect("a fresh pair");
    assert!(model.params().get("head_dist.weight").is_ok());
    let pair = model.forward(&xt, &ctx).expect("forward");
    assert_eq!(b.shape(&pair), [2, 5]);
    assert!(model.forward_classifier(&pooled, &ctx).is_err());
    // a trunk without a distillation token has no such head
    let (mut resnet, _) = create_model(b, "resnet10t", &ModelOptions::default()).expect("resnet");
    let e = resnet
        .replace_head(5, HeadSpec::Distilled, 0)
        .expect_err("no distillation token");
    assert!(e.to_string().contains("distillation token"), "{e}");
    assert!(
        resnet.params().get("fc.weight").is_ok(),
        "the old head stays"
    );
    rel_diff(&y, want)
}

/// A model graft saved (an MLP head) and put on a Hub: `hf-hub:` builds it with its own head.
#[test]
fn a_graft_model_on_the_hub_keeps_its_head() {
    let b = NdArray;
    let mlp = HeadSpec::mlp(&[16], 0.0);
    let opts = ModelOptions {
        head: Some(mlp.clone()),
        ..ModelOptions::default().num_classes(3).seed(4)
    };
    let (model, _) = create_model(&b, "resnet10t", &opts).expect("model");
    let dir = common::temp_dir("pretrained-graft-mlp");
    model.save_user_model(&dir).expect("save");
    let server = StandIn::start().expect("server");
    publish(&server, "someone/graft-mlp", &dir);
    let cache = common::temp_dir("pretrained-graft-mlp-cache");
    let hub = ModelOptions::default()
        .pretrained(true)
        .hub(hub_cfg(&server.endpoint(), &cache));
    let (got, report) = create_model(&b, "hf-hub:someone/graft-mlp", &hub).expect("hf-hub");
    assert!(report.expect("loaded").is_clean());
    assert_eq!(got.head(), &mlp);
    let x = b
        .from_data(
            &TensorData::f32(
                &[2, 3, 32, 32],
                (0..6144).map(|i| (i % 17) as f32 / 17.0).collect(),
            )
            .expect("x"),
        )
        .expect("x");
    let ctx = Ctx::eval();
    let want = b
        .to_data(&model.forward(&x, &ctx).expect("saved"))
        .expect("want");
    let y = b
        .to_data(&got.forward(&x, &ctx).expect("pulled"))
        .expect("y");
    assert_eq!(y.max_abs_diff(&want).expect("diff"), 0.0);
}

/// torchvision's cache both ways: weights torchvision keeps in `$TORCH_HOME` serve `tv:` names
/// offline (logits equal torchvision's); a file graft pulled there is what torch.hub finds.
#[test]
fn torchvision_weights_share_torch_s_cache() {
    let home = common::temp_dir("pretrained-torch-home");
    let io_dir = home.join("io");
    python_with(
        &[("TORCH_HOME", home.to_str().expect("utf-8"))],
        &[
            "tv",
            "resnet18",
            "IMAGENET1K_V1",
            io_dir.to_str().expect("utf-8"),
        ],
    );
    let mut cfg = hub_cfg("http://127.0.0.1:9", &home.join("hf"));
    cfg.torch_home = home.clone();
    cfg.offline = true;
    let (x, want) = io(&io_dir);
    let opts = ModelOptions::default().pretrained(true).hub(cfg.clone());
    let b = Tch::cpu();
    let (model, report) = create_model(&b, "tv:resnet18.IMAGENET1K_V1", &opts).expect("tv:");
    assert!(report.expect("loaded").is_clean());
    assert_eq!(model.cfg().crop_pct, 224.0 / 256.0);
    let y = model
        .forward(&b.from_data(&x).expect("x"), &Ctx::eval())
        .expect("forward");
    assert!(rel_diff(&b.to_data(&y).expect("y"), &want) <= 1e-4);
    // the pure-Rust backend reads the same pickle (no libtorch, no pickle code run)
    let (model, _) = create_model(&NdArray, "tv:resnet18.IMAGENET1K_V1", &opts).expect("ndarray");
    let y = model
        .forward(&NdArray.from_data(&x).expect("x"), &Ctx::eval())
        .expect("forward");
    assert!(rel_diff(&NdArray.to_data(&y).expect("y"), &want) <= 1e-3);

    // graft pulls a torchvision-named file; torch.hub finds it with no request
    let server = StandIn::start().expect("server");
    let bytes = std::fs::read(home.join("hub/checkpoints/resnet18-f37072fd.pth")).expect("pth");
    let name = format!(
        "resnet18-{}.pth",
        &graft::hub::stand_in::sha256(&bytes)[..8]
    );
    server.serve_plain(&format!("models/{name}"), bytes);
    let other = common::temp_dir("pretrained-torch-home-2");
    let mut online = hub_cfg(&server.endpoint(), &other.join("hf"));
    online.torch_home = other.clone();
    online.torchvision_url = format!("{}/models", server.cdn_url());
    graft::hub::Hub::new(online)
        .torch_checkpoint(&name)
        .expect("pull");
    let url = format!("http://127.0.0.1:9/models/{name}");
    let out = python_with(
        &[("TORCH_HOME", other.to_str().expect("utf-8"))],
        &["tv_cached", &url],
    );
    let ours = graft::zoo::torch_file::read(&home.join("hub/checkpoints/resnet18-f37072fd.pth"))
        .expect("graft reads torchvision's file");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ours.len().to_string()
    );
}

#[test]
fn offline_with_nothing_cached_is_one_clear_error_and_writes_nothing() {
    let cache = common::temp_dir("pretrained-offline");
    let mut cfg = hub_cfg("http://127.0.0.1:9", &cache.join("hub"));
    cfg.offline = true;
    for name in ["resnet50.a1_in1k", "resnet50", "tv:resnet50.IMAGENET1K_V2"] {
        let opts = ModelOptions::default().pretrained(true).hub(cfg.clone());
        let e = create_model(&NdArray, name, &opts).expect_err(name);
        match &e {
            Error::NotCached { hint, .. } => assert!(hint.contains("graft pull"), "{e}"),
            other => panic!("{name}: expected NotCached, got {other}"),
        }
        assert!(e.to_string().contains("resnet50"), "{e}");
    }
    assert!(!cache.join("hub").exists(), "nothing is written offline");
}
