//! graft-hub against the stand-in Hub on 127.0.0.1: the cache layout, resume, verification,
//! concurrency, errors and offline use. (Sharing the cache with Python's huggingface_hub, timm and
//! torchvision is checked in the facade's `tests/pretrained.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use graft_core::Error;
use graft_hub::stand_in::{Fault, StandIn, git_blob_sha1, sha256};
use graft_hub::{Hub, HubConfig};

fn hub(server: &StandIn, dir: &Path) -> Hub {
    let mut cfg = HubConfig::from_vars(|_| None);
    cfg.endpoint = server.endpoint();
    cfg.cache_dir = dir.join("hf");
    cfg.torch_home = dir.join("torch");
    cfg.torchvision_url = format!("{}/models", server.cdn_url());
    cfg.progress = false;
    cfg.retries = 3;
    Hub::new(cfg)
}

fn offline(h: &Hub) -> Hub {
    let mut cfg = h.config().clone();
    cfg.offline = true;
    Hub::new(cfg)
}

fn weights(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every file under `dir`, relative, sorted (symlinks listed as such).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).expect("link").display()
                ));
            } else {
                out.push(rel);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
fn pull_builds_the_huggingface_cache_layout() {
    let server = StandIn::start().expect("server");
    let w = weights(300_000, 1);
    let config = br#"{"architecture": "resnet18", "num_classes": 1000}"#.to_vec();
    let commit = server.publish(
        "timm/resnet18.a1_in1k",
        "main",
        &[
            ("model.safetensors", w.clone()),
            ("config.json", config.clone()),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    let p = h
        .file("timm/resnet18.a1_in1k", "main", "model.safetensors")
        .expect("pull");
    assert_eq!(std::fs::read(&p).expect("read"), w);
    let c = h
        .file("timm/resnet18.a1_in1k", "main", "config.json")
        .expect("pull config");
    assert_eq!(std::fs::read(&c).expect("read"), config);
    let (sha, oid) = (sha256(&w), git_blob_sha1(&config));
    let lock_dir = ".locks/models--timm--resnet18.a1_in1k";
    let repo = "models--timm--resnet18.a1_in1k";
    assert_eq!(tree(&dir.path().join("hf")), {
        let mut v = vec![
            format!("{lock_dir}/{sha}.lock"),
            format!("{lock_dir}/{oid}.lock"),
            format!("{repo}/blobs/{sha}"),
            format!("{repo}/blobs/{oid}"),
            format!("{repo}/refs/main"),
            format!("{repo}/snapshots/{commit}/config.json -> ../../blobs/{oid}"),
            format!("{repo}/snapshots/{commit}/model.safetensors -> ../../blobs/{sha}"),
        ];
        v.sort();
        v
    });
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hf").join(repo).join("refs/main")).expect("ref"),
        commit
    );
    // the LFS body came from the CDN, without the token's header; the metadata from the hub
    assert_eq!(server.count("GET", &format!("/blobs/{sha}")), 1);
    assert_eq!(server.count("HEAD", "/resolve/main/model.safetensors"), 1);
    // cached: a second call makes no request
    server.clear_log();
    h.file("timm/resnet18.a1_in1k", "main", "model.safetensors")
        .expect("cached");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // and offline finds it
    offline(&h)
        .file("timm/resnet18.a1_in1k", "main", "model.safetensors")
        .expect("offline");
}

#[test]
fn a_body_that_differs_from_its_digest_is_refused_and_nothing_is_placed() {
    let server = StandIn::start().expect("server");
    let w = weights(200_000, 2);
    server.publish("org/m", "main", &[("model.safetensors", w.clone())]);
    server.fault(Fault::Corrupt {
        path_contains: "/blobs/".into(),
        times: 1,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    let e = h
        .file("org/m", "main", "model.safetensors")
        .expect_err("corrupt body");
    assert!(matches!(e, Error::Download { .. }), "{e}");
    assert!(e.to_string().contains(&sha256(&w)), "{e}");
    let files = tree(&dir.path().join("hf"));
    assert!(
        files
            .iter()
            .all(|f| !f.contains("/blobs/") && !f.contains("snapshots")),
        "{files:?}"
    );
    // the next pull (a good body) succeeds
    let p = h.file("org/m", "main", "model.safetensors").expect("retry");
    assert_eq!(std::fs::read(p).expect("read"), w);
}

#[test]
fn a_dropped_connection_resumes_with_range_and_verifies() {
    let server = StandIn::start().expect("server");
    let w = weights(500_000, 3);
    server.publish("org/m", "main", &[("model.safetensors", w.clone())]);
    server.fault(Fault::DropAfter {
        path_contains: "/blobs/".into(),
        after: 131_072,
        times: 2,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    let p = h
        .file("org/m", "main", "model.safetensors")
        .expect("resumed pull");
    assert_eq!(std::fs::read(p).expect("read"), w);
    let gets: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .map(|r| r.range)
        .collect();
    assert_eq!(
        gets,
        vec![
            None,
            Some("bytes=131072-".to_string()),
            Some("bytes=262144-".to_string())
        ]
    );
}

#[test]
fn an_interrupted_download_resumes_in_the_next_process() {
    let server = StandIn::start().expect("server");
    let w = weights(400_000, 4);
    server.publish("org/m", "main", &[("model.safetensors", w.clone())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = hub(&server, dir.path()).config().clone();
    cfg.retries = 0;
    server.fault(Fault::DropAfter {
        path_contains: "/blobs/".into(),
        after: 100_000,
        times: 1,
    });
    let e = Hub::new(cfg.clone())
        .file("org/m", "main", "model.safetensors")
        .expect_err("no retries left");
    assert!(e.to_string().contains("resumes"), "{e}");
    let part = dir
        .path()
        .join("hf/models--org--m/blobs")
        .join(format!("{}.incomplete", sha256(&w)));
    assert_eq!(
        std::fs::metadata(&part).expect("partial kept").len(),
        100_000
    );
    let p = Hub::new(cfg)
        .file("org/m", "main", "model.safetensors")
        .expect("resume");
    assert_eq!(std::fs::read(p).expect("read"), w);
    assert!(!part.exists());
    let last = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "GET")
        .expect("get");
    assert_eq!(last.range.as_deref(), Some("bytes=100000-"));
}

#[test]
fn two_concurrent_pulls_make_one_download_and_both_succeed() {
    let server = Arc::new(StandIn::start().expect("server"));
    let w = weights(1_000_000, 5);
    server.publish("org/m", "main", &[("model.safetensors", w.clone())]);
    server.throttle(Some(Duration::from_millis(10)));
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || h.file("org/m", "main", "model.safetensors"))
        })
        .collect();
    for t in threads {
        let p = t.join().expect("thread").expect("pull");
        assert_eq!(std::fs::read(p).expect("read"), w);
    }
    assert_eq!(server.count("GET", "/blobs/"), 1);
}

#[test]
fn revisions_errors_and_offline() {
    let server = StandIn::start().expect("server");
    let old = server.publish("org/m", "main", &[("model.safetensors", weights(1000, 6))]);
    server.set_ref("org/m", "v1", &old);
    let new = server.publish(
        "org/m",
        "main",
        &[
            ("model.safetensors", weights(1000, 7)),
            ("pytorch_model.bin", weights(10, 8)),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    // a tag and a commit id give the old file; main the new one
    let v1 = h.file("org/m", "v1", "model.safetensors").expect("v1");
    assert_eq!(std::fs::read(&v1).expect("read"), weights(1000, 6));
    assert!(v1.to_string_lossy().contains(&old));
    let by_commit = h.file("org/m", &old, "model.safetensors").expect("commit");
    assert_eq!(by_commit, v1);
    let main = h.file("org/m", "main", "model.safetensors").expect("main");
    assert!(main.to_string_lossy().contains(&new));
    assert_eq!(std::fs::read(&main).expect("read"), weights(1000, 7));
    assert_eq!(h.repo_info("org/m", "v1").expect("info").sha, old);
    let info = h.repo_info("org/m", "main").expect("info");
    assert_eq!(info.sha, new);
    assert_eq!(info.siblings.len(), 2);

    // 404s, each named
    let e = h
        .file("org/nope", "main", "model.safetensors")
        .expect_err("repo");
    assert!(e.to_string().contains("repository not found"), "{e}");
    let e = h.file("org/m", "v9", "model.safetensors").expect_err("rev");
    assert!(e.to_string().contains("revision not found"), "{e}");
    let e = h.file("org/m", "main", "missing.bin").expect_err("file");
    assert!(e.to_string().contains("has no file missing.bin"), "{e}");
    assert!(
        h.repo_cache("org/m")
            .expect("rc")
            .known_missing("main", "missing.bin")
    );
    // safetensors before the pickle; a missing candidate is skipped
    let (name, _) = h
        .first_file("org/m", &old, &["model.safetensors", "pytorch_model.bin"])
        .expect("first");
    assert_eq!(name, "model.safetensors");
    let (name, _) = h
        .first_file(
            "org/m",
            "main",
            &["nothing.safetensors", "pytorch_model.bin"],
        )
        .expect("fallback");
    assert_eq!(name, "pytorch_model.bin");

    // offline: cached files serve, a missing one is one error naming the cache, nothing written
    let off = offline(&h);
    off.file("org/m", "v1", "model.safetensors")
        .expect("cached offline");
    server.clear_log();
    let before = tree(&dir.path().join("hf"));
    let e = off
        .file("org/other", "main", "model.safetensors")
        .expect_err("offline");
    match &e {
        Error::NotCached { cache, .. } => assert_eq!(cache, &dir.path().join("hf")),
        other => panic!("expected NotCached, got {other}"),
    }
    assert!(e.to_string().contains("org/other"), "{e}");
    assert!(server.requests().is_empty());
    assert_eq!(tree(&dir.path().join("hf")), before);
    // bad names are refused before anything is touched
    assert!(h.file("../evil", "main", "x").is_err());
    assert!(h.file("org/m", "main", "../../x").is_err());
}

#[test]
fn private_repos_get_the_token_and_the_cdn_never_sees_it() {
    let server = StandIn::start().expect("server");
    let w = weights(5000, 9);
    server.publish("org/private", "main", &[("model.safetensors", w.clone())]);
    server.require_token("org/private", "hf_secret");
    let dir = tempfile::tempdir().expect("tempdir");
    let e = hub(&server, dir.path())
        .file("org/private", "main", "model.safetensors")
        .expect_err("no token");
    assert!(e.to_string().contains("HF_TOKEN"), "{e}");
    let mut cfg = hub(&server, dir.path()).config().clone();
    cfg.token = Some("hf_secret".into());
    let p = Hub::new(cfg)
        .file("org/private", "main", "model.safetensors")
        .expect("with token");
    assert_eq!(std::fs::read(p).expect("read"), w);
    for r in server.requests() {
        if r.server == "cdn" {
            assert_eq!(r.authorization, None, "{r:?}");
        }
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.server == "hub" && r.authorization.as_deref() == Some("Bearer hf_secret"))
    );
}

#[test]
fn a_renamed_repo_is_followed() {
    let server = StandIn::start().expect("server");
    server.publish("org/new", "main", &[("config.json", b"{}".to_vec())]);
    server.rename("org/old", "org/new");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = hub(&server, dir.path())
        .file("org/old", "main", "config.json")
        .expect("renamed");
    assert_eq!(std::fs::read(p).expect("read"), b"{}");
}

#[test]
fn torchvision_checkpoints_are_checked_against_their_name() {
    let server = StandIn::start().expect("server");
    let w = weights(70_000, 10);
    let prefix = &sha256(&w)[..8];
    let name = format!("resnet18-{prefix}.pth");
    server.serve_plain(&format!("models/{name}"), w.clone());
    server.serve_plain("models/resnet34-deadbeef.pth", w.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hub(&server, dir.path());
    let p = h.torch_checkpoint(&name).expect("pull");
    assert_eq!(p, dir.path().join("torch/hub/checkpoints").join(&name));
    assert_eq!(std::fs::read(&p).expect("read"), w);
    let e = h
        .torch_checkpoint("resnet34-deadbeef.pth")
        .expect_err("bad hash");
    assert!(e.to_string().contains("does not start with"), "{e}");
    assert!(
        !dir.path()
            .join("torch/hub/checkpoints/resnet34-deadbeef.pth")
            .exists()
    );
    let e = offline(&h)
        .torch_checkpoint("resnet50-11ad3fa6.pth")
        .expect_err("offline");
    assert!(matches!(e, Error::NotCached { .. }), "{e}");
    offline(&h).torch_checkpoint(&name).expect("cached offline");
}
