//! A repository's history: every blob of every commit reachable from any ref.
//!
//! Commits are collected first (they are small), then visited oldest first, so a key is
//! reported at the commit that introduced it. Each tree and each blob is read once, by
//! object id: 500 commits of a 20,000-file tree cost what their distinct objects cost,
//! not 10 million file reads. The price is that a blob (or a whole subtree) that also
//! sits at a second path is reported only at the first one met.

use std::path::PathBuf;

use anyhow::Context as _;
use gix::ObjectId;
use gix::hashtable::HashSet;
use gix::objs::{CommitRef, Find as _, Kind, TreeRefIter};
use gix::prelude::Header as _;

use super::Scan;

/// A commit to visit: its committer time, its discovery order (for ties), id and tree.
struct Commit {
    time: i64,
    order: usize,
    id: ObjectId,
    tree: ObjectId,
}

/// Scans the history of the repository at each of `paths` (or containing it).
pub fn scan_history(paths: &[PathBuf], scan: &mut Scan) -> anyhow::Result<()> {
    let mut seen_repositories = std::collections::HashSet::new();
    for path in paths {
        let repo = gix::discover(path).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a git repository (--git needs one): {e}",
                path.display()
            )
        })?;
        let git_dir = repo
            .git_dir()
            .canonicalize()
            .unwrap_or_else(|_| repo.git_dir().to_owned());
        if seen_repositories.insert(git_dir) {
            History::new(&repo)
                .scan(scan)
                .with_context(|| format!("reading the history of {}", repo.git_dir().display()))?;
        }
    }
    Ok(())
}

struct History<'r> {
    repo: &'r gix::Repository,
    seen_trees: HashSet<ObjectId>,
    seen_blobs: HashSet<ObjectId>,
    tree_buffer: Vec<u8>,
    blob_buffer: Vec<u8>,
}

impl<'r> History<'r> {
    fn new(repo: &'r gix::Repository) -> Self {
        Self {
            repo,
            seen_trees: HashSet::default(),
            seen_blobs: HashSet::default(),
            tree_buffer: Vec::new(),
            blob_buffer: Vec::new(),
        }
    }

    fn scan(mut self, scan: &mut Scan) -> anyhow::Result<()> {
        let commits = self.commits()?;
        for commit in &commits {
            scan.stats.commits += 1;
            self.tree(scan, &commit.id.to_string(), commit.tree)?;
        }
        Ok(())
    }

    /// The tips every ref points to (tags peeled), HEAD included when detached.
    fn tips(&self) -> anyhow::Result<Vec<ObjectId>> {
        let mut tips = Vec::new();
        let references = self.repo.references().context("listing refs")?;
        for reference in references.all().context("listing refs")? {
            // A broken ref names nothing that can be read; the others still count.
            let Ok(mut reference) = reference else {
                continue;
            };
            if let Ok(id) = reference.peel_to_id() {
                tips.push(id.detach());
            }
        }
        if let Ok(id) = self.repo.head_id() {
            tips.push(id.detach());
        }
        Ok(tips)
    }

    /// Every commit reachable from a tip, oldest first. A missing commit (a shallow
    /// clone's boundary) ends its line of history.
    fn commits(&mut self) -> anyhow::Result<Vec<Commit>> {
        let hash = self.repo.object_hash();
        let mut stack = self.tips()?;
        stack.reverse();
        let mut seen = HashSet::default();
        let mut commits = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let found = self
                .repo
                .objects
                .try_find(&id, &mut self.tree_buffer)
                .with_context(|| format!("reading commit {id}"))?;
            let Some(data) = found else { continue };
            // A ref may name a tree or a blob directly; only commits have history.
            if data.kind != Kind::Commit {
                continue;
            }
            let commit = CommitRef::from_bytes(data.data, hash)
                .with_context(|| format!("decoding commit {id}"))?;
            let time = commit.time().map(|t| t.seconds).unwrap_or(0);
            stack.extend(commit.parents());
            commits.push(Commit {
                time,
                order: commits.len(),
                id,
                tree: commit.tree(),
            });
        }
        // Oldest first; among equal times, parents (found after their children) first.
        commits.sort_by(|a, b| a.time.cmp(&b.time).then(b.order.cmp(&a.order)));
        Ok(commits)
    }

    /// Scans the trees and blobs under `root` not seen before, depth first.
    fn tree(&mut self, scan: &mut Scan, commit: &str, root: ObjectId) -> anyhow::Result<()> {
        let hash = self.repo.object_hash();
        let mut stack = vec![(root, Vec::new())];
        while let Some((id, dir)) = stack.pop() {
            if !self.seen_trees.insert(id) {
                continue;
            }
            scan.stats.trees += 1;
            let found = self
                .repo
                .objects
                .try_find(&id, &mut self.tree_buffer)
                .with_context(|| format!("reading tree {id}"))?;
            let Some(data) = found else { continue };
            for entry in TreeRefIter::from_bytes(data.data, hash) {
                let entry = entry.with_context(|| format!("decoding tree {id}"))?;
                let mut path = dir.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(entry.filename);
                let oid = entry.oid.to_owned();
                if entry.mode.is_tree() {
                    stack.push((oid, path));
                } else if entry.mode.is_blob() && self.seen_blobs.insert(oid) {
                    // Submodule commits and symbolic links hold no file content.
                    blob(self.repo, &mut self.blob_buffer, scan, commit, &path, oid)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads one blob (unless it is too large) and scans it.
fn blob(
    repo: &gix::Repository,
    buffer: &mut Vec<u8>,
    scan: &mut Scan,
    commit: &str,
    path: &[u8],
    id: ObjectId,
) -> anyhow::Result<()> {
    let header = repo
        .objects
        .try_header(&id)
        .with_context(|| format!("reading blob {id}"))?;
    let Some(header) = header else {
        return Ok(());
    };
    if header.size() > scan.max_size {
        scan.stats.too_large += 1;
        return Ok(());
    }
    let found = repo
        .objects
        .try_find(&id, buffer)
        .with_context(|| format!("reading blob {id}"))?;
    if let Some(data) = found {
        scan.content(Some(commit), &String::from_utf8_lossy(path), data.data);
    }
    Ok(())
}
