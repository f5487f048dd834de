//! `graft finetune EXP --resume RUN_DIR`: reopening a run directory. The run's resolved
//! `config.toml` must be the one this experiment resolves to now (any change — a key, the data's
//! classes or sizes, the backend, graft's version — is refused, listing what differs); files a
//! killed process left half-written (`.NAME.tmp-PID`, from atomic writes) are removed. The
//! training itself resumes in graft-train from each phase's checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The lines that make a resolved config: everything but comments and blank lines (the comment
/// names the experiment file's path as typed, which may differ between two invocations).
fn significant(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// Checks that `run` is a run directory whose resolved config is `resolved`, and removes the
/// temporary files of writes that never finished.
pub fn reopen(run: &Path, resolved: &str) -> Result<()> {
    let cfg = run.join("config.toml");
    let Ok(was) = std::fs::read_to_string(&cfg) else {
        bail!(
            "--resume {}: not a graft run directory (no config.toml)",
            run.display()
        );
    };
    let (old, new) = (significant(&was), significant(resolved));
    if old != new {
        let removed: Vec<&str> = old.iter().filter(|l| !new.contains(l)).copied().collect();
        let added: Vec<&str> = new.iter().filter(|l| !old.contains(l)).copied().collect();
        let mut diff = Vec::new();
        for l in removed.iter().take(6) {
            diff.push(format!("run:  {l}"));
        }
        for l in added.iter().take(6) {
            diff.push(format!("now:  {l}"));
        }
        bail!(
            "--resume {}: the experiment changed since the run started, so its checkpoints do not continue it (start a new run, or restore the file):\n  {}",
            run.display(),
            diff.join("\n  ")
        );
    }
    let removed = remove_orphans(run)?;
    if !removed.is_empty() {
        eprintln!(
            "note: removed {} unfinished temporary file(s) of the interrupted run: {}",
            removed.len(),
            removed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The process id in a temporary file's name (`.checkpoint.safetensors.tmp-4242`).
fn tmp_pid(name: &str) -> Option<u32> {
    let (head, pid) = name.rsplit_once(".tmp-")?;
    (name.starts_with('.') && !head.is_empty()).then_some(())?;
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes, under `dir`, temporary files whose writer is gone.
fn remove_orphans(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            out.extend(remove_orphans(&p)?);
        } else if let Some(pid) = tmp_pid(&e.file_name().to_string_lossy())
            && !alive(pid)
        {
            std::fs::remove_file(&p)?;
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_and_config_lines() {
        assert_eq!(tmp_pid(".checkpoint.safetensors.tmp-4242"), Some(4242));
        assert_eq!(tmp_pid("checkpoint.safetensors"), None);
        assert_eq!(tmp_pid("notes.tmp-12"), None, "not a hidden temporary");
        assert_eq!(
            significant("# x\n[a]\nb = 1\n\n# y\n"),
            vec!["[a]", "b = 1"]
        );
    }
}
