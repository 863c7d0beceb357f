//! Shared layout checks: locating the dataset folder, required folders and files, listings.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The dataset folder: `root` itself when it holds `marker`, else the first `root/<name>` (for
/// `name` in `folder_names`) that holds it, else `root` (whose missing `marker` is then reported).
pub(crate) fn resolve_dataset_dir(root: &Path, folder_names: &[&str], marker: &str) -> PathBuf {
    if root.join(marker).exists() {
        return root.to_path_buf();
    }
    folder_names
        .iter()
        .map(|name| root.join(name))
        .find(|dir| dir.join(marker).exists())
        .unwrap_or_else(|| root.to_path_buf())
}

/// Fails with [`DataError::MissingDir`] unless `path` is a directory.
pub(crate) fn require_dir(path: &Path, layout: &'static str) -> Result<()> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(DataError::MissingDir {
            path: path.to_path_buf(),
            layout,
        })
    }
}

/// Fails with [`DataError::MissingFile`] unless `path` is a file.
pub(crate) fn require_file(path: &Path, layout: &'static str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(DataError::MissingFile {
            path: path.to_path_buf(),
            layout,
        })
    }
}

/// The files directly in `dir` whose extension is one of `extensions` (compared
/// case-insensitively), sorted by path so that every run sees the same order. Hidden files
/// (`.x.jpg`, macOS's `._x.jpg`) are skipped.
pub(crate) fn list_images(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        let hidden = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.'));
        let matches = !hidden
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if matches && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// The non-blank lines of a text file, trimmed, each with its 1-based line number.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{write_jpeg, write_text};

    #[test]
    fn resolves_root_or_a_known_child_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let names = ["market1501", "Market-1501-v15.09.15"];
        std::fs::create_dir_all(tmp.path().join("Market-1501-v15.09.15/query")).unwrap();
        assert_eq!(
            resolve_dataset_dir(tmp.path(), &names, "query"),
            tmp.path().join("Market-1501-v15.09.15")
        );
        assert_eq!(
            resolve_dataset_dir(&tmp.path().join("Market-1501-v15.09.15"), &names, "query"),
            tmp.path().join("Market-1501-v15.09.15")
        );
        assert_eq!(
            resolve_dataset_dir(tmp.path(), &names, "bounding_box_train"),
            tmp.path()
        );
    }

    #[test]
    fn lists_matching_extensions_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["b.jpg", "a.JPG", "c.png", "Thumbs.db"] {
            write_jpeg(&tmp.path().join(name));
        }
        std::fs::create_dir(tmp.path().join("d.jpg")).unwrap();
        let listed = list_images(tmp.path(), &["jpg"]).unwrap();
        assert_eq!(
            listed,
            vec![tmp.path().join("a.JPG"), tmp.path().join("b.jpg")]
        );
    }

    #[test]
    fn reads_numbered_non_blank_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l.txt");
        write_text(&path, "a 1\n\n  b 2  \r\n");
        assert_eq!(
            read_lines(&path).unwrap(),
            vec![(1, "a 1".into()), (3, "b 2".into())]
        );
    }
}
