//! The files on disk: walked with the `ignore` crate, as git would see them.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Scan;

/// Scans every file under `paths`. A file reached twice (overlapping paths) is read once.
pub fn scan_files(paths: &[PathBuf], scan: &mut Scan) -> anyhow::Result<()> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(());
    };
    let mut walk = ignore::WalkBuilder::new(first);
    for path in rest {
        walk.add(path);
    }
    walk.hidden(false)
        // .gitignore applies even where there is no repository (an exported tree).
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| entry.file_name() != ".git");
    let mut seen = HashSet::new();
    let overlapping = paths.len() > 1;
    let mut buffer = Vec::new();
    for entry in walk.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                scan.stats.unreadable += 1;
                scan.progress.suspend(|| eprintln!("warning: {e}"));
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        if overlapping {
            let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
            if !seen.insert(canonical) {
                continue;
            }
        }
        match read(path, scan.max_size, &mut buffer) {
            Ok(true) => scan.content(None, &display(path), &buffer),
            Ok(false) => scan.stats.too_large += 1,
            Err(e) => {
                scan.stats.unreadable += 1;
                scan.progress.suspend(|| eprintln!("warning: {e:#}"));
            }
        }
    }
    Ok(())
}

/// Reads `path` into `buffer`; `Ok(false)` when it is larger than `max_size` bytes (then
/// only that much has been read: a file that grows while it is read is still bounded).
fn read(path: &Path, max_size: u64, buffer: &mut Vec<u8>) -> anyhow::Result<bool> {
    buffer.clear();
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > max_size {
        return Ok(false);
    }
    let read = file
        .take(max_size.saturating_add(1))
        .read_to_end(buffer)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(read as u64 <= max_size)
}

/// The path as the user would type it: without a leading `./`.
fn display(path: &Path) -> String {
    let path = path.strip_prefix(".").unwrap_or(path);
    path.to_string_lossy().into_owned()
}
