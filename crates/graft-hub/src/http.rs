//! The HTTP side: the Hub's metadata request (`HEAD .../resolve/...`), resumable verified body
//! downloads, and what the Hub's error headers mean.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use graft_core::{Error, Result};
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::config::HubConfig;

/// What a `HEAD` on a file's resolve URL says (huggingface_hub's `HfFileMetadata`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileMeta {
    /// `X-Repo-Commit`.
    pub commit: String,
    /// `X-Linked-Etag` (an LFS file's sha256) or `ETag` (a git blob sha1), unquoted.
    pub etag: String,
    /// `X-Linked-Size` or `Content-Length`.
    pub size: Option<u64>,
    /// Where the bytes are: the redirect's `Location` (a CDN) or the resolve URL itself.
    pub location: String,
}

/// Why a metadata request did not give a file.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The repo exists at the revision but has no such file (`X-Error-Code: EntryNotFound`);
    /// the commit when the server named it.
    Missing {
        commit: Option<String>,
    },
    Other(Error),
}

impl From<Error> for HeadError {
    fn from(e: Error) -> Self {
        HeadError::Other(e)
    }
}

/// The two agents: one that reports redirects (the Hub's metadata request reads the headers of
/// the redirect itself), one that follows them (bodies; `Authorization` is never forwarded to a
/// redirect).
#[derive(Debug, Clone)]
pub(crate) struct Http {
    manual: Agent,
    follow: Agent,
    token: Option<String>,
    endpoint: String,
    retries: u32,
}

fn agent(cfg: &HubConfig, redirects: u32) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(redirects)
        .max_redirects_will_error(true)
        .timeout_connect(Some(cfg.timeout))
        .timeout_recv_response(Some(cfg.timeout))
        .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// `scheme://host:port` of a URL.
pub(crate) fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find('/') {
        Some(i) => &url[..start + i],
        None => url,
    }
}

fn header(r: &Response<Body>, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// An ETag without quotes or the weak marker (huggingface_hub's `_normalize_etag`).
fn normalize_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// Percent-encodes a path part (`safe` characters kept), as huggingface_hub's URL quoting.
pub(crate) fn quote(s: &str, safe: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || safe.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Http {
    pub(crate) fn new(cfg: &HubConfig) -> Self {
        Self {
            manual: agent(cfg, 0),
            follow: agent(cfg, 10),
            token: cfg.token.clone(),
            endpoint: cfg.endpoint.clone(),
            retries: cfg.retries,
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        range: Option<u64>,
        follow: bool,
    ) -> std::result::Result<Response<Body>, ureq::Error> {
        let agent = if follow { &self.follow } else { &self.manual };
        let auth = self
            .token
            .as_ref()
            .filter(|_| origin(url) == origin(&self.endpoint))
            .map(|t| format!("Bearer {t}"));
        macro_rules! go {
            ($req:expr) => {{
                let mut r = $req.header("Accept-Encoding", "identity");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a.as_str());
                }
                if let Some(from) = range {
                    r = r.header("Range", format!("bytes={from}-").as_str());
                }
                r.call()
            }};
        }
        match method {
            "HEAD" => go!(agent.head(url)),
            _ => go!(agent.get(url)),
        }
    }

    /// The Hub's metadata request for one file: relative redirects (a renamed repo) are
    /// followed, an absolute one (the CDN) is where the bytes are.
    pub(crate) fn head_file(
        &self,
        url: &str,
        what: &str,
    ) -> std::result::Result<FileMeta, HeadError> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let resp = self.with_retries(what, || self.send("HEAD", &url, None, false))?;
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let loc = header(&resp, "location").ok_or_else(|| {
                    download_error(what, format!("HTTP {status} without a Location"))
                })?;
                if loc.starts_with('/') {
                    url = format!("{}{}", origin(&url), loc);
                    continue;
                }
                return meta(&resp, &loc, what).map_err(HeadError::Other);
            }
            if (200..300).contains(&status) {
                return meta(&resp, &url, what).map_err(HeadError::Other);
            }
            return Err(status_error(&resp, what));
        }
        Err(download_error(what, "more than 10 redirects").into())
    }

    /// `GET` that returns the body as text (the Hub's JSON API).
    pub(crate) fn get_text(&self, url: &str, what: &str) -> Result<String> {
        let mut resp = self.with_retries(what, || self.send("GET", url, None, true))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(match status_error(&resp, what) {
                HeadError::Missing { .. } => download_error(what, "not found (HTTP 404)"),
                HeadError::Other(e) => e,
            });
        }
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| download_error(what, e.to_string()))
    }

    /// Sends a request, retrying transport errors and 5xx / 429 answers with a short backoff.
    fn with_retries(
        &self,
        what: &str,
        mut f: impl FnMut() -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                backoff(attempt);
            }
            match f() {
                Ok(r) if retriable(r.status().as_u16()) => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => return Ok(r),
                Err(e) => last = e.to_string(),
            }
        }
        Err(download_error(
            what,
            format!("gave up after {} attempts: {last}", self.retries + 1),
        ))
    }

    /// Downloads `url` into `part`, resuming from the bytes already there (`Range`), retrying a
    /// body cut short, until it holds `size` bytes (or the whole body when the size is unknown).
    /// The caller verifies the digest.
    pub(crate) fn download(
        &self,
        url: &str,
        part: &Path,
        size: Option<u64>,
        what: &str,
        progress: &indicatif::ProgressBar,
    ) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)
            .map_err(|e| Error::io(part, e))?;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                backoff(attempt);
            }
            let have = file.metadata().map_err(|e| Error::io(part, e))?.len();
            if let Some(s) = size {
                if have == s {
                    return Ok(());
                }
                if have > s {
                    truncate(&mut file, part)?;
                    continue;
                }
            }
            let resp = match self.send("GET", url, (have > 0).then_some(have), true) {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let start = match status {
                206 => {
                    let cr = header(&resp, "content-range").unwrap_or_default();
                    if !cr.starts_with(&format!("bytes {have}-")) {
                        last = format!("a resumed request answered {cr:?}");
                        truncate(&mut file, part)?;
                        continue;
                    }
                    have
                }
                200 => 0,
                416 => {
                    last = "HTTP 416 (the partial file is longer than the file)".into();
                    truncate(&mut file, part)?;
                    continue;
                }
                s if retriable(s) => {
                    last = format!("HTTP {s}");
                    continue;
                }
                _ => {
                    return Err(match status_error(&resp, what) {
                        HeadError::Missing { .. } => download_error(what, "not found (HTTP 404)"),
                        HeadError::Other(e) => e,
                    });
                }
            };
            file.set_len(start).map_err(|e| Error::io(part, e))?;
            file.seek(SeekFrom::Start(start))
                .map_err(|e| Error::io(part, e))?;
            progress.set_position(start);
            match copy_body(resp.into_body(), &mut file, progress) {
                Ok(()) => {}
                Err(e) => {
                    last = format!("connection lost mid-body: {e}");
                    file.flush().map_err(|e| Error::io(part, e))?;
                    continue;
                }
            }
            file.flush().map_err(|e| Error::io(part, e))?;
            let got = file.metadata().map_err(|e| Error::io(part, e))?.len();
            match size {
                Some(s) if got != s => {
                    last = format!("body ended at {got} of {s} bytes");
                    continue;
                }
                _ => {
                    file.sync_all().map_err(|e| Error::io(part, e))?;
                    return Ok(());
                }
            }
        }
        Err(download_error(
            what,
            format!(
                "gave up after {} attempts: {last} (the partial file {} is kept; the next pull resumes it)",
                self.retries + 1,
                part.display()
            ),
        ))
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn copy_body(
    body: Body,
    file: &mut File,
    progress: &indicatif::ProgressBar,
) -> std::io::Result<()> {
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        file.write_all(&buf[..n])?;
        progress.inc(n as u64);
    }
}

fn truncate(file: &mut File, part: &Path) -> Result<()> {
    file.set_len(0).map_err(|e| Error::io(part, e))
}

fn retriable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(100 * (1 << attempt.min(5))));
}

pub(crate) fn download_error(what: &str, msg: impl Into<String>) -> Error {
    Error::Download {
        what: what.into(),
        msg: msg.into(),
    }
}

fn meta(resp: &Response<Body>, location: &str, what: &str) -> Result<FileMeta> {
    let commit = header(resp, "x-repo-commit").ok_or_else(|| {
        download_error(
            what,
            "the server sent no X-Repo-Commit header (is the endpoint a Hugging Face Hub?)",
        )
    })?;
    if !crate::cache::is_commit(&commit) {
        return Err(download_error(
            what,
            format!("X-Repo-Commit {commit:?} is not a commit id"),
        ));
    }
    let etag = header(resp, "x-linked-etag")
        .or_else(|| header(resp, "etag"))
        .map(|e| normalize_etag(&e))
        .ok_or_else(|| {
            download_error(what, "the server sent no ETag: the file cannot be verified")
        })?;
    if !crate::cache::is_digest(&etag) {
        return Err(download_error(
            what,
            format!(
                "ETag {etag:?} is neither a sha256 nor a git sha1: the file cannot be verified"
            ),
        ));
    }
    let redirect = (300..400).contains(&resp.status().as_u16());
    let size = header(resp, "x-linked-size")
        .or_else(|| {
            if redirect {
                None
            } else {
                header(resp, "content-length")
            }
        })
        .and_then(|s| s.parse().ok());
    Ok(FileMeta {
        commit,
        etag,
        size,
        location: location.to_string(),
    })
}

/// What an error answer means, from the Hub's `X-Error-Code` / `X-Error-Message` headers.
fn status_error(resp: &Response<Body>, what: &str) -> HeadError {
    let status = resp.status().as_u16();
    let code = header(resp, "x-error-code").unwrap_or_default();
    let server = header(resp, "x-error-message")
        .map(|m| format!(" (the server said: {m})"))
        .unwrap_or_default();
    let msg = match code.as_str() {
        "EntryNotFound" => {
            return HeadError::Missing {
                commit: header(resp, "x-repo-commit").filter(|c| crate::cache::is_commit(c)),
            };
        }
        "RepoNotFound" => format!(
            "repository not found (HTTP {status}): check the name; a private or gated repo needs HF_TOKEN{server}"
        ),
        "RevisionNotFound" => format!("revision not found (HTTP {status}){server}"),
        "GatedRepo" => format!(
            "the repo is gated (HTTP {status}): accept its terms on the Hub and set HF_TOKEN{server}"
        ),
        _ if status == 401 || status == 403 => {
            format!("access denied (HTTP {status}): a private or gated repo needs HF_TOKEN{server}")
        }
        _ if status == 404 => format!("not found (HTTP 404){server}"),
        _ => format!("HTTP {status}{server}"),
    };
    HeadError::Other(download_error(what, msg))
}

/// Checks `path` against its digest: a 64-hex etag is the content's sha256 (a Git LFS file), a
/// 40-hex one the git blob sha1 (`sha1("blob {len}\0" + content)`, a regular file).
pub(crate) fn verify(path: &Path, etag: &str, what: &str) -> Result<()> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let got = if etag.len() == 64 {
        hex(&hash_reader::<sha2::Sha256>(&mut f, path, None)?)
    } else {
        let mut prefix = format!("blob {len}").into_bytes();
        prefix.push(0);
        hex(&hash_reader::<sha1::Sha1>(&mut f, path, Some(&prefix))?)
    };
    if got == etag {
        Ok(())
    } else {
        Err(download_error(
            what,
            format!(
                "the downloaded bytes do not match their digest (expected {etag}, got {got}); nothing was placed in the cache"
            ),
        ))
    }
}

/// The sha256 of a file, lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hash_reader::<sha2::Sha256>(&mut f, path, None)?))
}

fn hash_reader<D: sha2::Digest>(
    f: &mut File,
    path: &Path,
    prefix: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut h = D::new();
    if let Some(p) = prefix {
        h.update(p);
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_vec())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert_eq!(quote("refs/pr/1", ""), "refs%2Fpr%2F1");
        assert_eq!(quote("sub dir/f.bin", "/"), "sub%20dir/f.bin");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
    }

    #[test]
    fn digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").expect("write");
        // `git hash-object` of "hello\n"
        verify(&p, "ce013625030ba8dba906f756967f9e9ca394464a", "f").expect("git sha1");
        verify(
            &p,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "f",
        )
        .expect("sha256");
        let e = verify(&p, &"0".repeat(64), "f").expect_err("mismatch");
        assert!(e.to_string().contains("do not match"), "{e}");
    }
}
