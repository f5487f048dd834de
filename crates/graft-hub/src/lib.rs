//! graft-hub: finding and fetching pretrained files.
//!
//! Owns the Hugging Face Hub's HTTP protocol (`HEAD` / `GET /{repo}/resolve/{revision}/{file}`,
//! `GET /api/models/{repo}/revision/{revision}`), its cache layout (`models--org--name/` with
//! `blobs/`, `snapshots/`, `refs/`, `.no_exist/` — the one Python's huggingface_hub, timm and
//! transformers share, so a file either side fetched serves the other), torchvision's checkpoint
//! folder (`$TORCH_HOME/hub/checkpoints`), and downloads a careful engineer can trust: the
//! bytes are checked against their digest (the Hub's sha256 / git sha1 etag, the hash prefix in
//! a torchvision file name) before they are placed, atomically; an interrupted download resumes;
//! two processes fetching one file make one download (a lock file, the same one huggingface_hub
//! takes); with `HF_HUB_OFFLINE` nothing touches the network.
//!
//! Cache first: a file already cached for the revision asked is used without a request (pass a
//! commit id as the revision to pin one). It must not know models, tensors, tags or
//! architectures: it moves files; graft-zoo decides which.

mod cache;
mod config;
mod http;
#[cfg(feature = "stand-in")]
pub mod stand_in;

use std::fs::File;
use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

pub use cache::{RepoCache, check_filename, check_repo_id, check_revision, is_commit};
pub use config::{DEFAULT_ENDPOINT, DEFAULT_TORCHVISION_URL, HubConfig};
use http::{HeadError, Http, download_error, quote};

/// A repo's state at a revision (`GET /api/models/{repo}/revision/{rev}`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RepoInfo {
    /// The commit the revision resolves to.
    pub sha: String,
    /// The files in the repo at that commit.
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of a repo.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Sibling {
    pub rfilename: String,
}

/// A client of the Hub and of torchvision's weight store, with the local caches they share with
/// Python.
#[derive(Debug, Clone)]
pub struct Hub {
    cfg: HubConfig,
    http: Http,
}

/// Why a fetch of one file did not give it.
enum FetchError {
    /// The repo has no such file at the revision.
    Missing,
    Other(Error),
}

impl Default for Hub {
    fn default() -> Self {
        Self::from_env()
    }
}

impl Hub {
    /// A client with these settings.
    pub fn new(cfg: HubConfig) -> Self {
        Self {
            http: Http::new(&cfg),
            cfg,
        }
    }
    /// A client configured from the environment ([`HubConfig::from_env`]).
    pub fn from_env() -> Self {
        Self::new(HubConfig::from_env())
    }
    /// Its settings.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }
    /// The URL of a file in a model repo at a revision.
    pub fn file_url(&self, repo: &str, revision: &str, filename: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.http.endpoint(),
            quote(revision, ""),
            quote(filename, "/")
        )
    }
    /// The repo's folder in the Hugging Face cache.
    pub fn repo_cache(&self, repo: &str) -> Result<RepoCache> {
        RepoCache::new(&self.cfg.cache_dir, repo)
    }
    /// The cached file, if there is one; never touches the network.
    pub fn cached(&self, repo: &str, revision: &str, filename: &str) -> Result<Option<PathBuf>> {
        check_revision(revision)?;
        check_filename(filename)?;
        Ok(self.repo_cache(repo)?.lookup(revision, filename))
    }

    /// A file of a model repo at a revision: the cached copy, else downloaded (verified, then
    /// placed atomically). Offline with no cached copy is [`Error::NotCached`].
    pub fn file(&self, repo: &str, revision: &str, filename: &str) -> Result<PathBuf> {
        let what = format!("{repo}@{revision}/{filename}");
        match self.fetch(repo, revision, filename) {
            Ok(p) => Ok(p),
            Err(FetchError::Missing) => Err(download_error(
                &what,
                format!("{repo} has no file {filename} at revision {revision} (HTTP 404)"),
            )),
            Err(FetchError::Other(e)) => Err(e),
        }
    }

    /// A file the repo may or may not hold (a repo's `tokenizer.json`, say): the cached copy,
    /// else downloaded; `None` when the repo has no such file at `revision` — learnt from the
    /// Hub, or offline from an earlier answer the cache recorded (huggingface_hub's
    /// `.no_exist`). Offline with neither is [`Error::NotCached`].
    pub fn file_if_present(
        &self,
        repo: &str,
        revision: &str,
        filename: &str,
    ) -> Result<Option<PathBuf>> {
        if self.repo_cache(repo)?.known_missing(revision, filename) {
            return Ok(None);
        }
        match self.fetch(repo, revision, filename) {
            Ok(p) => Ok(Some(p)),
            Err(FetchError::Missing) => Ok(None),
            Err(FetchError::Other(e)) => Err(e),
        }
    }

    /// The first of `candidates` the repo holds (timm tries `model.safetensors` before
    /// `pytorch_model.bin`): its name and local path. Cached candidates are looked at first.
    pub fn first_file(
        &self,
        repo: &str,
        revision: &str,
        candidates: &[&str],
    ) -> Result<(String, PathBuf)> {
        for c in candidates {
            if let Some(p) = self.cached(repo, revision, c)? {
                return Ok((c.to_string(), p));
            }
        }
        if self.cfg.offline {
            return Err(self.not_cached(repo, revision, &candidates.join(" or ")));
        }
        for c in candidates {
            match self.fetch(repo, revision, c) {
                Ok(p) => return Ok((c.to_string(), p)),
                Err(FetchError::Missing) => continue,
                Err(FetchError::Other(e)) => return Err(e),
            }
        }
        Err(download_error(
            &format!("{repo}@{revision}"),
            format!("the repo holds none of {}", candidates.join(", ")),
        ))
    }

    /// The repo's commit and file list at `revision` (needs the network).
    pub fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo> {
        check_repo_id(repo)?;
        check_revision(revision)?;
        let what = format!("{repo}@{revision}");
        if self.cfg.offline {
            return Err(self.not_cached(repo, revision, "the repo's file list"));
        }
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.http.endpoint(),
            quote(revision, "")
        );
        let text = self.http.get_text(&url, &what)?;
        let info: RepoInfo = serde_json::from_str(&text)
            .map_err(|e| download_error(&what, format!("the Hub's answer is not a repo: {e}")))?;
        if !is_commit(&info.sha) {
            return Err(download_error(
                &what,
                format!("sha {:?} is not a commit id", info.sha),
            ));
        }
        Ok(info)
    }

    fn not_cached(&self, repo: &str, revision: &str, file: &str) -> Error {
        Error::NotCached {
            what: format!("{repo}@{revision}: {file}"),
            cache: self.cfg.cache_dir.clone(),
            hint: "HF_HUB_OFFLINE is set: unset it to download, or fetch the file where there is network".into(),
        }
    }

    fn fetch(
        &self,
        repo: &str,
        revision: &str,
        filename: &str,
    ) -> std::result::Result<PathBuf, FetchError> {
        let rc = self.repo_cache(repo).map_err(FetchError::Other)?;
        check_revision(revision).map_err(FetchError::Other)?;
        check_filename(filename).map_err(FetchError::Other)?;
        if let Some(p) = rc.lookup(revision, filename) {
            return Ok(p);
        }
        if is_commit(revision) && rc.known_missing(revision, filename) {
            return Err(FetchError::Missing);
        }
        if self.cfg.offline {
            return Err(FetchError::Other(self.not_cached(repo, revision, filename)));
        }
        let what = format!("{repo}@{revision}/{filename}");
        let url = self.file_url(repo, revision, filename);
        let meta = match self.http.head_file(&url, &what) {
            Ok(m) => m,
            Err(HeadError::Missing { commit }) => {
                if let Some(c) = commit {
                    // as huggingface_hub does: later offline lookups know the file is absent
                    let _ = rc.mark_missing(&c, filename);
                }
                return Err(FetchError::Missing);
            }
            Err(HeadError::Other(e)) => return Err(FetchError::Other(e)),
        };
        let blob = rc.blob(&meta.etag);
        if !blob.is_file() {
            self.download_blob(&rc, &meta, filename, &what)
                .map_err(FetchError::Other)?;
        }
        rc.link(revision, &meta.commit, filename, &meta.etag)
            .map_err(FetchError::Other)
    }

    /// Downloads a blob under its lock: whoever holds the lock downloads; a process that waited
    /// finds the blob placed and returns.
    fn download_blob(
        &self,
        rc: &RepoCache,
        meta: &http::FileMeta,
        filename: &str,
        what: &str,
    ) -> Result<()> {
        let blob = rc.blob(&meta.etag);
        let blobs = blob.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(blobs).map_err(|e| Error::io(blobs, e))?;
        let _lock = lock(&rc.lock(&meta.etag))?;
        if blob.is_file() {
            return Ok(());
        }
        let part = blobs.join(format!("{}.incomplete", meta.etag));
        let bar = self.progress(meta.size, filename);
        self.http
            .download(&meta.location, &part, meta.size, what, &bar)?;
        bar.finish_and_clear();
        if let Err(e) = http::verify(&part, &meta.etag, what) {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, &blob).map_err(|e| Error::io(&blob, e))
    }

    /// A torchvision weight file (`resnet50-11ad3fa6.pth`) in `$TORCH_HOME/hub/checkpoints`:
    /// the cached copy, else downloaded from the torchvision URL and checked against the sha256
    /// prefix its name carries (torch's `check_hash`) before it is placed.
    pub fn torch_checkpoint(&self, filename: &str) -> Result<PathBuf> {
        if filename.contains('/') || filename.contains('\\') {
            return Err(Error::invalid(
                "hub",
                format!("{filename:?} is not a file name"),
            ));
        }
        check_filename(filename)?;
        let dir = self.cfg.torch_checkpoints();
        let dest = dir.join(filename);
        if dest.is_file() {
            return Ok(dest);
        }
        let what = format!("torchvision {filename}");
        if self.cfg.offline {
            return Err(Error::NotCached {
                what,
                cache: dir,
                hint: "HF_HUB_OFFLINE is set: unset it to download, or fetch the file where there is network".into(),
            });
        }
        let prefix = torch_hash_prefix(filename).ok_or_else(|| {
            download_error(
                &what,
                "the file name carries no hash prefix (`name-<sha256 prefix>.pth`) to verify it by",
            )
        })?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let _lock = lock(&dir.join(format!("{filename}.lock")))?;
        if dest.is_file() {
            return Ok(dest);
        }
        let part = dir.join(format!("{filename}.partial"));
        let url = format!("{}/{}", self.cfg.torchvision_url, quote(filename, ""));
        let bar = self.progress(None, filename);
        self.http.download(&url, &part, None, &what, &bar)?;
        bar.finish_and_clear();
        let got = http::sha256_file(&part)?;
        if !got.starts_with(&prefix) {
            let _ = std::fs::remove_file(&part);
            return Err(download_error(
                &what,
                format!(
                    "sha256 {got} does not start with the name's prefix {prefix}; nothing was placed in the cache"
                ),
            ));
        }
        std::fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
        Ok(dest)
    }

    /// The cached torchvision weight file, if there is one.
    pub fn torch_checkpoint_cached(&self, filename: &str) -> Option<PathBuf> {
        let p = self.cfg.torch_checkpoints().join(filename);
        (check_filename(filename).is_ok() && !filename.contains('/') && p.is_file()).then_some(p)
    }

    fn progress(&self, size: Option<u64>, name: &str) -> indicatif::ProgressBar {
        if !self.cfg.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(size, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(name.to_string());
        bar
    }
}

/// The sha256 prefix in a torchvision file name (`resnet50-11ad3fa6.pth` → `11ad3fa6`): torch's
/// `HASH_REGEX`, `-([a-f0-9]*)\.`, first match.
pub fn torch_hash_prefix(filename: &str) -> Option<String> {
    let b = filename.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c != b'-' {
            continue;
        }
        let rest = &filename[i + 1..];
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        if n > 0 && rest.as_bytes().get(n) == Some(&b'.') {
            return Some(rest[..n].to_string());
        }
    }
    None
}

/// An exclusive lock on `path` (created if needed), held until the file is dropped: the
/// `flock` lock huggingface_hub's `filelock` takes, so graft and Python exclude each other too.
fn lock(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.lock().map_err(|e| Error::io(path, e))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_hash_prefix() {
        assert_eq!(
            torch_hash_prefix("resnet50-11ad3fa6.pth").as_deref(),
            Some("11ad3fa6")
        );
        assert_eq!(
            torch_hash_prefix("mobilenet_v3_large-5c1a4163.pth").as_deref(),
            Some("5c1a4163")
        );
        assert_eq!(
            torch_hash_prefix("efficientnet_b0_rwightman-7f5810bc.pth").as_deref(),
            Some("7f5810bc")
        );
        assert_eq!(torch_hash_prefix("weights.pth"), None);
        assert_eq!(torch_hash_prefix("w-.pth"), None);
    }
}
