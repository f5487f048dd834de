//! A stand-in Hugging Face Hub on 127.0.0.1, for tests (feature `stand-in`): it speaks the part of
//! the Hub's protocol that clients use to fetch files, so graft's client and Python's
//! huggingface_hub (given `HF_ENDPOINT`) both download from it.
//!
//! - `HEAD` / `GET /{repo}/resolve/{revision}/{file}`: a regular file answers 200 with its git
//!   blob sha1 as `ETag`; a Git LFS file (weights: `.safetensors`, `.bin`, `.pth`, ...) answers
//!   302 to the "CDN" — a second listener, so a second origin — with `X-Linked-Etag` (its
//!   sha256) and `X-Linked-Size`. Every answer carries `X-Repo-Commit`; errors carry the Hub's
//!   `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).
//! - `GET /api/models/{repo}/revision/{revision}`: `{id, sha, siblings: [{rfilename}]}`.
//! - Bodies honour `Range: bytes=N-` (206 + `Content-Range`).
//! - A renamed repo answers with a relative 307; a private one wants `Authorization: Bearer`.
//! - Faults on demand: a connection dropped mid-body, a body whose bytes differ from its digest,
//!   a slow body (to make downloads overlap).
//!
//! Every request is logged for the tests to count.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::Digest as _;

/// A request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `hub` or `cdn`.
    pub server: &'static str,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// A fault injected into the next bodies whose path contains `path_contains`.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send the headers (full length), `after` bytes of the body, then close the connection;
    /// `times` bodies in a row.
    DropAfter {
        path_contains: String,
        after: usize,
        times: usize,
    },
    /// Send a body of the right length whose middle byte is flipped; `times` bodies.
    Corrupt { path_contains: String, times: usize },
}

#[derive(Debug, Default)]
struct Repo {
    /// commit → files
    commits: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// branch or tag → commit
    refs: BTreeMap<String, String>,
    token: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    renamed: BTreeMap<String, String>,
    /// sha256 → bytes (what the CDN serves)
    blobs: BTreeMap<String, Vec<u8>>,
    /// plain files on the CDN: path → bytes
    plain: BTreeMap<String, Vec<u8>>,
    faults: Vec<Fault>,
    log: Vec<Request>,
    throttle: Option<Duration>,
    commits_made: u64,
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub struct StandIn {
    hub: SocketAddr,
    cdn: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The file kinds the Hub stores in Git LFS (by extension), as its default `.gitattributes`.
pub fn is_lfs(file: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pth",
        ".pt",
        ".ckpt",
        ".h5",
        ".onnx",
        ".npz",
        ".msgpack",
    ]
    .iter()
    .any(|e| file.ends_with(e))
}

/// The git blob id of `bytes` (what the Hub sends as a regular file's `ETag`).
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    crate::http::hex(&h.finalize())
}

/// The sha256 of `bytes` (an LFS file's `X-Linked-Etag`).
pub fn sha256(bytes: &[u8]) -> String {
    crate::http::hex(&sha2::Sha256::digest(bytes))
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl StandIn {
    /// Starts the hub and CDN listeners on 127.0.0.1 (ports chosen by the system).
    pub fn start() -> std::io::Result<Self> {
        let hub_l = TcpListener::bind("127.0.0.1:0")?;
        let cdn_l = TcpListener::bind("127.0.0.1:0")?;
        let (hub, cdn) = (hub_l.local_addr()?, cdn_l.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (listener, server) in [(hub_l, "hub"), (cdn_l, "cdn")] {
            let (state, stop) = (state.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = handle(conn, server, cdn, &state);
                    });
                }
            }));
        }
        Ok(Self {
            hub,
            cdn,
            state,
            stop,
            threads,
        })
    }
    /// The Hub's base URL (`HF_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }
    /// The CDN's base URL (plain files are under it: a torchvision-style mirror is
    /// `{cdn_url}/models`).
    pub fn cdn_url(&self) -> String {
        format!("http://{}", self.cdn)
    }
    /// Publishes a new commit of `repo` holding exactly `files` and points `branch` at it.
    /// Returns the commit id.
    pub fn publish(&self, repo: &str, branch: &str, files: &[(&str, Vec<u8>)]) -> String {
        let mut st = lock(&self.state);
        st.commits_made += 1;
        let mut h = sha1::Sha1::new();
        h.update(format!("{repo}\0{branch}\0{}", st.commits_made).as_bytes());
        let map: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(n, b)| (n.to_string(), b.clone()))
            .collect();
        for (n, b) in &map {
            h.update(n.as_bytes());
            h.update(b);
            if is_lfs(n) {
                st.blobs.insert(sha256(b), b.clone());
            }
        }
        let commit = crate::http::hex(&h.finalize());
        let r = st.repos.entry(repo.to_string()).or_default();
        r.commits.insert(commit.clone(), map);
        r.refs.insert(branch.to_string(), commit.clone());
        commit
    }
    /// Points tag or branch `name` of `repo` at `commit`.
    pub fn set_ref(&self, repo: &str, name: &str, commit: &str) {
        let mut st = lock(&self.state);
        if let Some(r) = st.repos.get_mut(repo) {
            r.refs.insert(name.into(), commit.into());
        }
    }
    /// Serves `bytes` at `{cdn_url}/{path}` (a plain file, no Hub headers).
    pub fn serve_plain(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.state)
            .plain
            .insert(format!("/{}", path.trim_start_matches('/')), bytes);
    }
    /// Makes `repo` private: its files need `Authorization: Bearer {token}`.
    pub fn require_token(&self, repo: &str, token: &str) {
        if let Some(r) = lock(&self.state).repos.get_mut(repo) {
            r.token = Some(token.into());
        }
    }
    /// `old` answers with a relative redirect to `new` (a renamed repo).
    pub fn rename(&self, old: &str, new: &str) {
        lock(&self.state).renamed.insert(old.into(), new.into());
    }
    /// Injects a fault.
    pub fn fault(&self, f: Fault) {
        lock(&self.state).faults.push(f);
    }
    /// Sleeps this long after each 64 KiB of a body (downloads overlap in concurrency tests).
    pub fn throttle(&self, d: Option<Duration>) {
        lock(&self.state).throttle = d;
    }
    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).log.clone()
    }
    /// Requests with this method whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        lock(&self.state)
            .log
            .iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .count()
    }
    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loops
        let _ = TcpStream::connect(self.hub);
        let _ = TcpStream::connect(self.cdn);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Answer {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }
    fn h(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn error(status: u16, code: &str, msg: &str) -> Self {
        Self::new(status)
            .h("X-Error-Code", code)
            .h("X-Error-Message", msg)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..(i + 3).min(s.len())], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    conn: TcpStream,
    server: &'static str,
    cdn: SocketAddr,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let raw_path = parts.next().unwrap_or("/").to_string();
    let mut range = None;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let path = raw_path.split('?').next().unwrap_or("/").to_string();
    let (throttle, answer) = {
        let mut st = lock(state);
        st.log.push(Request {
            server,
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            authorization: authorization.clone(),
        });
        let a = if server == "hub" {
            hub_answer(&st, &path, authorization.as_deref(), cdn)
        } else {
            cdn_answer(&st, &path)
        };
        (st.throttle, a)
    };
    send(
        conn,
        state,
        &method,
        &path,
        range.as_deref(),
        answer,
        throttle,
    )
}

fn hub_answer(st: &State, path: &str, auth: Option<&str>, cdn: SocketAddr) -> Answer {
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, rev)) = rest.split_once("/revision/") else {
            return Answer::error(404, "RepoNotFound", "no such route");
        };
        let rev = percent_decode(rev);
        let Some(r) = st.repos.get(repo) else {
            return Answer::error(404, "RepoNotFound", "Repository not found");
        };
        if r.token.is_some() && auth != r.token.as_ref().map(|t| format!("Bearer {t}")).as_deref() {
            return Answer::error(401, "RepoNotFound", "Repository not found");
        }
        let Some(commit) = resolve_rev(r, &rev) else {
            return Answer::error(404, "RevisionNotFound", "Invalid rev id");
        };
        let siblings: Vec<String> = r.commits[&commit]
            .keys()
            .map(|f| format!("{{\"rfilename\":{}}}", json_str(f)))
            .collect();
        let body = format!(
            "{{\"id\":{},\"sha\":\"{commit}\",\"siblings\":[{}]}}",
            json_str(repo),
            siblings.join(",")
        );
        let mut a = Answer::new(200).h("Content-Type", "application/json");
        a.body = Some(body.into_bytes());
        return a;
    }
    let Some((repo, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return Answer::error(404, "RepoNotFound", "no such route");
    };
    let repo = percent_decode(repo);
    if let Some(new) = st.renamed.get(&repo) {
        return Answer::new(307).h("Location", format!("/{new}/resolve/{rest}"));
    }
    let Some((rev, file)) = rest.split_once('/') else {
        return Answer::error(404, "EntryNotFound", "no file");
    };
    let (rev, file) = (percent_decode(rev), percent_decode(file));
    let Some(r) = st.repos.get(&repo) else {
        return Answer::error(404, "RepoNotFound", "Repository not found");
    };
    if r.token.is_some() && auth != r.token.as_ref().map(|t| format!("Bearer {t}")).as_deref() {
        return Answer::error(401, "RepoNotFound", "Repository not found");
    }
    let Some(commit) = resolve_rev(r, &rev) else {
        return Answer::error(404, "RevisionNotFound", "Invalid rev id");
    };
    let Some(bytes) = r.commits[&commit].get(&file) else {
        return Answer::error(404, "EntryNotFound", "Entry not found").h("X-Repo-Commit", commit);
    };
    if is_lfs(&file) {
        let sha = sha256(bytes);
        Answer::new(302)
            .h("Location", format!("http://{cdn}/blobs/{sha}"))
            .h("X-Repo-Commit", commit)
            .h("X-Linked-Etag", format!("\"{sha}\""))
            .h("X-Linked-Size", bytes.len().to_string())
            // the pointer file's id, as the Hub sends
            .h("ETag", format!("\"{}\"", git_blob_sha1(sha.as_bytes())))
    } else {
        let mut a = Answer::new(200)
            .h("X-Repo-Commit", commit)
            .h("ETag", format!("\"{}\"", git_blob_sha1(bytes)));
        a.body = Some(bytes.clone());
        a
    }
}

fn cdn_answer(st: &State, path: &str) -> Answer {
    let bytes = match path.strip_prefix("/blobs/") {
        Some(sha) => st.blobs.get(sha),
        None => st.plain.get(path),
    };
    match bytes {
        Some(b) => {
            let mut a = Answer::new(200);
            a.body = Some(b.clone());
            a
        }
        None => Answer::new(404),
    }
}

fn resolve_rev(r: &Repo, rev: &str) -> Option<String> {
    if r.commits.contains_key(rev) {
        return Some(rev.to_string());
    }
    r.refs.get(rev).cloned()
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Takes the fault that applies to a body at `path`, if any.
fn take_fault(state: &Mutex<State>, path: &str) -> Option<Fault> {
    let mut st = lock(state);
    let i = st.faults.iter().position(|f| match f {
        Fault::DropAfter {
            path_contains,
            times,
            ..
        }
        | Fault::Corrupt {
            path_contains,
            times,
        } => *times > 0 && path.contains(path_contains.as_str()),
    })?;
    let f = st.faults[i].clone();
    match &mut st.faults[i] {
        Fault::DropAfter { times, .. } | Fault::Corrupt { times, .. } => *times -= 1,
    }
    Some(f)
}

fn send(
    mut conn: TcpStream,
    state: &Mutex<State>,
    method: &str,
    path: &str,
    range: Option<&str>,
    mut a: Answer,
    throttle: Option<Duration>,
) -> std::io::Result<()> {
    let mut body = a.body.take().unwrap_or_default();
    let total = body.len();
    let mut start = 0usize;
    if a.status == 200
        && let Some(r) = range.and_then(|r| r.strip_prefix("bytes="))
        && let Some((from, _)) = r.split_once('-')
        && let Ok(from) = from.trim().parse::<usize>()
    {
        if from >= total && total > 0 {
            a = Answer::new(416).h("Content-Range", format!("bytes */{total}"));
            body.clear();
        } else {
            a.status = 206;
            a.headers.push((
                "Content-Range".into(),
                format!("bytes {from}-{}/{total}", total.saturating_sub(1)),
            ));
            start = from;
        }
    }
    let slice = &body[start.min(body.len())..];
    let reason = match a.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", a.status);
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        slice.len()
    ));
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" || slice.is_empty() {
        return conn.flush();
    }
    let fault = take_fault(state, path);
    let mut out = slice.to_vec();
    let mut cut = out.len();
    match fault {
        Some(Fault::DropAfter { after, .. }) => cut = after.min(out.len()),
        Some(Fault::Corrupt { .. }) => {
            let mid = out.len() / 2;
            out[mid] ^= 0xff;
        }
        None => {}
    }
    for chunk in out[..cut].chunks(1 << 16) {
        conn.write_all(chunk)?;
        if let Some(d) = throttle {
            conn.flush()?;
            std::thread::sleep(d);
        }
    }
    conn.flush()?;
    if cut < out.len() {
        let _ = conn.shutdown(Shutdown::Both);
    }
    // drain whatever the client still sends so the close is clean
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 256];
    let _ = conn.read(&mut sink);
    Ok(())
}
