//! `graft models --pretrained`, `graft pull` against a stand-in Hub on 127.0.0.1 (two processes at
//! once, offline), and the rule that a bare architecture never silently trains from random
//! weights.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use graft_hub::stand_in::{StandIn, sha256};

fn graft_env(args: &[&str], env: &[(&str, &Path)], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.args(args);
    for k in [
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "HF_HUB_CACHE",
        "HF_HOME",
        "HF_TOKEN",
        "TORCH_HOME",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run graft")
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("graft-cli-pt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn models_pretrained_lists_every_tag_with_licence_and_cache_state() {
    let d = tmp("list");
    let cache = d.join("hf");
    let o = graft_env(
        &["models", "--pretrained"],
        &[("HF_HUB_CACHE", &cache), ("TORCH_HOME", &d)],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let table = graft_zoo::pretrained::table().expect("table");
    let n = table.timm.len() + table.torchvision.len();
    assert!(table.timm.len() >= 72);
    assert!(out.contains(&format!("{n} tags")), "{out}");
    assert!(
        out.contains("resnet50.a1_in1k *") && out.contains("apache-2.0"),
        "{out}"
    );
    assert!(out.contains("tv:resnet50.IMAGENET1K_V2 *"), "{out}");
    let o = graft_env(
        &["models", "--pretrained", "resnet18*"],
        &[("HF_HUB_CACHE", &cache)],
        &[],
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("9 tags") && out.contains("resnet18.tv_in1k") && out.contains("resnet18d."),
        "{out}"
    );
    assert!(!out.contains("resnet34"), "{out}");
    let o = graft_env(&["models", "--pretrained", "nothing*"], &[], &[]);
    assert!(!o.status.success());
}

#[test]
fn two_concurrent_pulls_download_once_and_offline_misses_are_clear() {
    let server = StandIn::start().expect("server");
    let weights: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let commit = server.publish(
        "timm/resnet18.a1_in1k",
        "main",
        &[
            ("model.safetensors", weights.clone()),
            ("config.json", b"{}".to_vec()),
        ],
    );
    server.throttle(Some(Duration::from_millis(5)));
    let d = tmp("pull");
    let cache = d.join("hf");
    let endpoint = server.endpoint();
    let env = [("HF_HUB_CACHE", cache.as_path())];
    let spawn = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
        cmd.args(["pull", "resnet18.a1_in1k"])
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_HUB_CACHE", &cache)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn graft pull")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().expect("wait");
        assert!(o.status.success());
    }
    assert_eq!(server.count("GET", "/blobs/"), 1, "{:?}", server.requests());
    let snap = cache
        .join("models--timm--resnet18.a1_in1k/snapshots")
        .join(&commit)
        .join("model.safetensors");
    assert_eq!(std::fs::read(&snap).expect("snapshot"), weights);
    assert!(
        cache
            .join("models--timm--resnet18.a1_in1k/blobs")
            .join(sha256(&weights))
            .is_file()
    );
    // offline, cached: fine; offline, missing: one error naming the tag, the cache, the command
    let o = graft_env(
        &["pull", "resnet18.a1_in1k"],
        &env,
        &[("HF_HUB_OFFLINE", "1")],
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let empty = d.join("empty");
    let o = graft_env(
        &["pull", "resnet50.a1_in1k"],
        &[("HF_HUB_CACHE", empty.as_path())],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("resnet50.a1_in1k")
            && err.contains(&empty.display().to_string())
            && err.contains("graft pull resnet50.a1_in1k"),
        "{err}"
    );
    assert!(!empty.exists(), "nothing written offline");
    // a server that is gone: a clear error, nothing half-written
    drop(server);
    let gone = d.join("gone");
    let o = graft_env(
        &["pull", "resnet34.a1_in1k"],
        &[("HF_HUB_CACHE", gone.as_path())],
        &[("HF_ENDPOINT", &endpoint)],
    );
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("resnet34.a1_in1k"),
        "{err}"
    );
    let blobs = gone.join("models--timm--resnet34.a1_in1k/blobs");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).expect("dir").next().is_none());
}

#[test]
fn a_bare_architecture_is_not_silently_random() {
    let d = tmp("norandom");
    let exp = d.join("ft.toml");
    std::fs::write(&exp, "[model]\nname = \"resnet18\"\n[data.digits]\nclasses = [0, 1]\n[train]\nepochs = 1\nprogress = false\n")
        .expect("write");
    let o = graft_env(
        &["finetune", exp.to_str().expect("utf-8")],
        &[],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("ft.toml:2:8")
            && err.contains("resnet18.a1_in1k")
            && err.contains("init = \"random\""),
        "{err}"
    );
    // contradicting keys are refused at the key
    std::fs::write(
        &exp,
        "[model]\nname = \"resnet18\"\npretrained = true\ninit = \"random\"\n[data.digits]\n",
    )
    .expect("write");
    let o = graft_env(&["finetune", exp.to_str().expect("utf-8")], &[], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("ft.toml:4:8"), "{err}");
    // infer / predict follow the same rule
    let x = d.join("x.npy");
    ndarray_npy::write_npy(&x, &ndarray::Array4::<f32>::zeros((1, 3, 32, 32))).expect("npy");
    let y = d.join("y.npy");
    let args = [
        "infer",
        "--model",
        "resnet18",
        "--input",
        x.to_str().expect("utf-8"),
        "--output",
        y.to_str().expect("utf-8"),
        "--backend",
        "ndarray",
    ];
    let o = graft_env(&args, &[], &[]);
    assert!(
        !o.status.success() && text(&o).1.contains("--init random"),
        "{}",
        text(&o).1
    );
    let mut random = args.to_vec();
    random.extend(["--init", "random"]);
    let o = graft_env(&random, &[], &[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(y.is_file());
}
