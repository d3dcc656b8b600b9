//! `GET /files/find` (lines containing a text), `GET /files/search` (file names matching a
//! glob) and `POST /files/replace` (text replacement in listed files).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use sandbar_wire::toolbox::{Match, ReplaceRequest, ReplaceResult, SearchFilesResponse};
use serde::Deserialize;

use super::{blocking, FilesError};
use crate::envelope::{DaemonError, JsonBody};
use crate::Agent;

/// Results are capped so a search over a huge tree cannot exhaust the agent's memory.
const MAX_RESULTS: usize = 10_000;
/// Lines longer than this are cut in `find` results.
const MAX_LINE: usize = 4096;

#[derive(Debug, Deserialize)]
pub struct PatternQuery {
    pub path: Option<String>,
    pub pattern: Option<String>,
}

/// Every regular file under `root` (symlinks are not followed), in name order.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path) -> bool) {
    let Ok(meta) = root.symlink_metadata() else {
        return;
    };
    if meta.is_file() {
        visit(root);
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, visit);
        } else if meta.is_file() && !visit(&path) {
            return;
        }
    }
}

/// `GET /files/find?path=&pattern=` → `[{file,line,content}]` (substring match, text files).
pub async fn find(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PatternQuery>,
) -> Result<Json<Vec<Match>>, DaemonError> {
    let root = agent.file_path(query.path.as_deref())?;
    let pattern = query.pattern.unwrap_or_default();
    if pattern.is_empty() {
        return Err(DaemonError::bad_request("pattern must not be empty"));
    }
    let matches = blocking(move || {
        root.symlink_metadata()
            .map_err(|err| FilesError::io("search", &root, err))?;
        let mut matches = Vec::new();
        walk(&root, &mut |path| {
            grep_file(path, &pattern, &mut matches);
            matches.len() < MAX_RESULTS
        });
        Ok(matches)
    })
    .await?;
    Ok(Json(matches))
}

fn grep_file(path: &Path, pattern: &str, matches: &mut Vec<Match>) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    // Binary files (a NUL byte in the first block) are skipped, as grep does.
    let mut head = [0u8; 1024];
    let Ok(n) = file.read(&mut head) else { return };
    if head[..n].contains(&0) {
        return;
    }
    let reader = BufReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(file));
    for (index, line) in reader.split(b'\n').enumerate() {
        let Ok(line) = line else { return };
        let text = String::from_utf8_lossy(&line);
        if text.contains(pattern) {
            let mut content = text.trim_end_matches('\r').to_owned();
            if content.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !content.is_char_boundary(cut) {
                    cut -= 1;
                }
                content.truncate(cut);
            }
            matches.push(Match {
                file: path.to_string_lossy().into_owned(),
                line: index as u64 + 1,
                content,
            });
            if matches.len() >= MAX_RESULTS {
                return;
            }
        }
    }
}

/// `GET /files/search?path=&pattern=` → `{"files":[…]}`: files whose name matches the glob.
pub async fn search(
    State(agent): State<Arc<Agent>>,
    Query(query): Query<PatternQuery>,
) -> Result<Json<SearchFilesResponse>, DaemonError> {
    let root = agent.file_path(query.path.as_deref())?;
    let pattern = query.pattern.unwrap_or_default();
    if pattern.is_empty() {
        return Err(DaemonError::bad_request("pattern must not be empty"));
    }
    let files = blocking(move || {
        root.symlink_metadata()
            .map_err(|err| FilesError::io("search", &root, err))?;
        let mut files = Vec::new();
        walk(&root, &mut |path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if glob_match(pattern.as_bytes(), name.as_bytes()) {
                files.push(path.to_string_lossy().into_owned());
            }
            files.len() < MAX_RESULTS
        });
        Ok(files)
    })
    .await?;
    Ok(Json(SearchFilesResponse { files }))
}

/// Shell-style glob over one name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`, `\` escapes.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index it absorbs to).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == name[n] {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((after, absorbed)) => {
                p = after;
                n = absorbed + 1;
                star = Some((after, absorbed + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`. Returns whether it
/// matched and the index after the class, or None for an unterminated class.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
}

/// `POST /files/replace` → `[{file,success,error?}]` (literal replacement, every occurrence).
pub async fn replace(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<ReplaceRequest>,
) -> Result<Json<Vec<ReplaceResult>>, DaemonError> {
    if request.pattern.is_empty() {
        return Err(DaemonError::bad_request("pattern must not be empty"));
    }
    let results = blocking(move || {
        Ok(request
            .files
            .iter()
            .map(|raw| {
                let outcome = agent
                    .file_path(Some(raw))
                    .and_then(|path| replace_in_file(&path, &request.pattern, &request.new_value));
                ReplaceResult {
                    file: raw.clone(),
                    success: outcome.is_ok(),
                    error: outcome.err().map(|err| err.message()),
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(results))
}

fn replace_in_file(path: &Path, pattern: &str, new_value: &str) -> Result<(), FilesError> {
    let bytes = std::fs::read(path).map_err(|err| FilesError::read(path, err))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains(pattern) {
        return Ok(());
    }
    std::fs::write(path, text.replace(pattern, new_value))
        .map_err(|err| FilesError::io("write", path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]*", "banana", true),
            ("[!ab]*", "banana", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxc", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[", "[", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), name.as_bytes()),
                *expected,
                "{pattern} vs {name}"
            );
        }
    }
}
