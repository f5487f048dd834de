//! The Hugging Face cache layout, as huggingface_hub writes and reads it:
//!
//! ```text
//! $HF_HUB_CACHE/models--{org}--{name}/
//!     blobs/{etag}                       the file's bytes, named by their digest
//!     snapshots/{commit}/{filename}      a relative symlink to ../../blobs/{etag}
//!     refs/{revision}                    the commit a branch or tag pointed at when fetched
//!     .no_exist/{commit}/{filename}      an empty file: the repo has no such file at that commit
//! $HF_HUB_CACHE/.locks/models--{org}--{name}/{etag}.lock
//! ```
//!
//! Every name that becomes a path is checked first (repo ids, revisions, file names, digests and
//! commits a server sends), so nothing can point outside the cache.

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

/// A 40-hex-digit commit id.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A digest a blob may be named by: a git blob sha1 (40 hex) or a sha256 (64 hex).
pub fn is_digest(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Checks a repo id as the Hub does: `name` or `org/name`, each part of letters, digits, `-`,
/// `_`, `.`, at most 96 characters, no `--` or `..`, not starting or ending with `-` or `.`.
pub fn check_repo_id(repo: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid("hub", format!("repo id {repo:?}: {why}"));
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return Err(bad("expected `name` or `org/name`"));
    }
    for p in &parts {
        if p.is_empty() || p.len() > 96 {
            return Err(bad("each part has 1 to 96 characters"));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
        if p.starts_with(['-', '.']) || p.ends_with(['-', '.']) {
            return Err(bad("a part cannot start or end with '-' or '.'"));
        }
    }
    if repo.contains("--") || repo.contains("..") {
        return Err(bad("'--' and '..' are not allowed"));
    }
    Ok(())
}

/// Checks a revision (a branch, a tag, `refs/pr/N` or a commit).
pub fn check_revision(rev: &str) -> Result<()> {
    check_relative("revision", rev)
}

/// Checks a file name inside a repo (`model.safetensors`, `sub/dir/file.bin`).
pub fn check_filename(file: &str) -> Result<()> {
    check_relative("filename", file)
}

fn check_relative(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && !s.starts_with('/')
        && !s.contains('\\')
        && !s.contains('\0')
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "hub",
            format!("{what} {s:?}: expected a relative path of named parts"),
        ))
    }
}

/// One repo's folder in the cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    /// `$HF_HUB_CACHE/models--org--name`.
    pub dir: PathBuf,
    /// `$HF_HUB_CACHE/.locks/models--org--name`.
    pub locks: PathBuf,
}

impl RepoCache {
    /// The folder of model repo `repo` (checked) under `cache`.
    pub fn new(cache: &Path, repo: &str) -> Result<Self> {
        check_repo_id(repo)?;
        let folder = format!("models--{}", repo.replace('/', "--"));
        Ok(Self {
            dir: cache.join(&folder),
            locks: cache.join(".locks").join(folder),
        })
    }
    /// The commit `revision` points at in the cache: itself when it is a commit id, else what
    /// `refs/{revision}` says (None when never fetched).
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let text = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let c = text.trim();
        is_commit(c).then(|| c.to_string())
    }
    /// The cached file for (`revision`, `filename`), if it is there (a snapshot entry whose blob
    /// exists).
    pub fn lookup(&self, revision: &str, filename: &str) -> Option<PathBuf> {
        let commit = self.commit_of(revision)?;
        let p = self.snapshot(&commit, filename);
        // a dangling symlink (its blob removed) is not a cached file
        p.is_file().then_some(p)
    }
    /// True when an earlier request learnt that the repo has no `filename` at `revision`.
    pub fn known_missing(&self, revision: &str, filename: &str) -> bool {
        self.commit_of(revision)
            .is_some_and(|c| self.dir.join(".no_exist").join(c).join(filename).is_file())
    }
    /// Notes that the repo has no `filename` at `commit`.
    pub fn mark_missing(&self, commit: &str, filename: &str) -> Result<()> {
        let p = self.dir.join(".no_exist").join(commit).join(filename);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&p, b"").map_err(|e| Error::io(&p, e))
    }
    /// `snapshots/{commit}/{filename}`.
    pub fn snapshot(&self, commit: &str, filename: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit).join(filename)
    }
    /// `blobs/{etag}`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }
    /// The lock file guarding the download of blob `etag`.
    pub fn lock(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }
    /// Points `snapshots/{commit}/{filename}` at `blobs/{etag}` (a relative symlink, replaced
    /// atomically) and records `refs/{revision}` when the revision is not the commit itself.
    pub fn link(
        &self,
        revision: &str,
        commit: &str,
        filename: &str,
        etag: &str,
    ) -> Result<PathBuf> {
        let snap = self.snapshot(commit, filename);
        let parent = snap
            .parent()
            .ok_or_else(|| Error::invalid("hub", "snapshot path has no parent"))?;
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let depth = filename.matches('/').count() + 2;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        place_link(&target, &self.blob(etag), &snap)?;
        if revision != commit {
            let r = self.dir.join("refs").join(revision);
            write_atomic(&r, commit.as_bytes())?;
        }
        Ok(snap)
    }
}

/// A relative symlink `link` → `target` (a copy of `blob` where symlinks are not available),
/// created under a temporary name and renamed over `link`.
fn place_link(target: &Path, blob: &Path, link: &Path) -> Result<()> {
    let tmp = temp_sibling(link);
    let _ = std::fs::remove_file(&tmp);
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(target, &tmp);
    #[cfg(not(unix))]
    let made = {
        let _ = target;
        std::fs::copy(blob, &tmp).map(|_| ())
    };
    #[cfg(unix)]
    let _ = blob;
    made.map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(link, e)
    })
}

/// `path` with a process-unique suffix beside it.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let name: String = name
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["timm/resnet50.a1_in1k", "gpt2", "org-1/m_2.x"] {
            check_repo_id(ok).expect(ok);
        }
        for bad in [
            "", "a/b/c", "../x", "a/..", "a--b/c", "a/b c", "-a/b", "a/b.",
        ] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        for ok in ["main", "refs/pr/1", "v1.0", "sub/model.bin"] {
            check_revision(ok).expect(ok);
        }
        for bad in ["", "/etc", "a/../b", "..", "a//b", "a\\b", "./x"] {
            assert!(check_filename(bad).is_err(), "{bad}");
        }
        assert!(is_digest(&"a".repeat(64)) && is_digest(&"0".repeat(40)));
        assert!(!is_digest(&"A".repeat(64)) && !is_digest("../../x"));
    }

    #[test]
    fn layout_matches_huggingface_hub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rc = RepoCache::new(dir.path(), "timm/resnet18.a1_in1k").expect("repo");
        assert!(rc.dir.ends_with("models--timm--resnet18.a1_in1k"));
        let etag = "e".repeat(64);
        let commit = "c".repeat(40);
        std::fs::create_dir_all(rc.blob(&etag).parent().expect("p")).expect("mkdir");
        std::fs::write(rc.blob(&etag), b"bytes").expect("write");
        assert!(rc.lookup("main", "model.safetensors").is_none());
        let snap = rc
            .link("main", &commit, "model.safetensors", &etag)
            .expect("link");
        assert_eq!(
            std::fs::read_link(&snap).expect("symlink"),
            PathBuf::from(format!("../../blobs/{etag}"))
        );
        assert_eq!(rc.lookup("main", "model.safetensors"), Some(snap.clone()));
        assert_eq!(rc.lookup(&commit, "model.safetensors"), Some(snap));
        assert!(rc.lookup("other", "model.safetensors").is_none());
        let nested = rc.link(&commit, &commit, "a/b.bin", &etag).expect("nested");
        assert_eq!(
            std::fs::read_link(&nested).expect("symlink"),
            PathBuf::from(format!("../../../blobs/{etag}"))
        );
        assert!(nested.is_file());
        rc.mark_missing(&commit, "pytorch_model.bin").expect("mark");
        assert!(rc.known_missing("main", "pytorch_model.bin"));
        assert!(!rc.known_missing("main", "model.safetensors"));
    }
}
