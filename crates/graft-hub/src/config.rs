//! Where files come from and where they go, read from the environment variables that Python's
//! huggingface_hub and torch read, so both sides see one cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Hub's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Where torchvision's weight files are published.
pub const DEFAULT_TORCHVISION_URL: &str = "https://download.pytorch.org/models";

/// Settings of a [`crate::Hub`]. [`HubConfig::from_env`] reads them as huggingface_hub and torch do:
///
/// | setting | variables, first set wins | default |
/// |---|---|---|
/// | `endpoint` | `HF_ENDPOINT` | `https://huggingface.co` |
/// | `cache_dir` | `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub` | `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub` |
/// | `token` | `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, the file `HF_TOKEN_PATH` or `$HF_HOME/token` | none |
/// | `offline` | `HF_HUB_OFFLINE` (`1`, `true`, `yes`, `on`) | off |
/// | `progress` | not `HF_HUB_DISABLE_PROGRESS_BARS` | on (drawn only on a terminal) |
/// | `torch_home` | `TORCH_HOME` | `$XDG_CACHE_HOME/torch`, `~/.cache/torch` |
/// | `torchvision_url` | `GRAFT_TORCHVISION_URL` (a mirror) | `https://download.pytorch.org/models` |
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// The Hub's base URL, without a trailing `/`.
    pub endpoint: String,
    /// The Hugging Face cache (`models--org--name/...` folders live here).
    pub cache_dir: PathBuf,
    /// A bearer token sent to the endpoint's host only (never to a redirect elsewhere).
    pub token: Option<String>,
    /// No network at all: only files already in the caches are used.
    pub offline: bool,
    /// A progress bar on stderr for downloads (shown only when stderr is a terminal).
    pub progress: bool,
    /// torch's home (`hub/checkpoints/` holds torchvision's weight files).
    pub torch_home: PathBuf,
    /// Base URL of torchvision's weight files.
    pub torchvision_url: String,
    /// Attempts at one download after the first (transport errors, 5xx, a body cut short); each
    /// resumes where the last stopped.
    pub retries: u32,
    /// Time allowed to connect and to receive a response's headers.
    pub timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self::from_env()
    }
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl HubConfig {
    /// The settings the process environment gives (see the table above).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// The settings a set of variables gives (`var(name)` is `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home = var("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
        let xdg = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"));
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| xdg.join("huggingface"));
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let file = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                read_token(&file)
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            cache_dir,
            token,
            offline: truthy(var("HF_HUB_OFFLINE")),
            progress: !truthy(var("HF_HUB_DISABLE_PROGRESS_BARS")),
            torch_home: var("TORCH_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| xdg.join("torch")),
            torchvision_url: var("GRAFT_TORCHVISION_URL")
                .unwrap_or_else(|| DEFAULT_TORCHVISION_URL.into())
                .trim_end_matches('/')
                .to_string(),
            retries: 5,
            timeout: Duration::from_secs(30),
        }
    }

    /// torchvision's checkpoint folder: `$TORCH_HOME/hub/checkpoints`.
    pub fn torch_checkpoints(&self) -> PathBuf {
        self.torch_home.join("hub").join("checkpoints")
    }
}

fn read_token(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> HubConfig {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let c = cfg(&[("HOME", "/h")]);
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(c.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(
            c.torch_checkpoints(),
            PathBuf::from("/h/.cache/torch/hub/checkpoints")
        );
        assert!(!c.offline && c.progress && c.token.is_none());
        let c = cfg(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")]);
        assert_eq!(c.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(c.torch_home, PathBuf::from("/x/torch"));
        let c = cfg(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/cache"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "True"),
            ("HF_TOKEN", " tok \n"),
            ("TORCH_HOME", "/t"),
        ]);
        assert_eq!(c.cache_dir, PathBuf::from("/cache"));
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert!(c.offline);
        assert_eq!(c.token.as_deref(), Some("tok"));
        assert_eq!(c.torch_home, PathBuf::from("/t"));
        assert!(!cfg(&[("HF_HUB_OFFLINE", "0")]).offline);
    }

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "hf_abc\n").expect("write");
        let home = dir.path().to_string_lossy().into_owned();
        assert_eq!(cfg(&[("HF_HOME", &home)]).token.as_deref(), Some("hf_abc"));
        let other = dir.path().join("other");
        std::fs::write(&other, "hf_other").expect("write");
        let c = cfg(&[
            ("HF_HOME", &home),
            ("HF_TOKEN_PATH", &other.to_string_lossy()),
        ]);
        assert_eq!(c.token.as_deref(), Some("hf_other"));
    }
}
