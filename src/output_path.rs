//! Output files checked before any work starts, so that hours of embedding never end in a
//! missing folder, and no output ever replaces an input or a special file.

use std::path::{Path, PathBuf};

/// Why an output path is refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputPathError {
    /// The output is one of the command's inputs.
    #[error("the output {path} is an input of this command ({input}): choose another file")]
    SameAsInput {
        /// The output.
        path: PathBuf,
        /// The input it would replace.
        input: PathBuf,
    },
    /// The output's folder does not exist.
    #[error("the folder of the output {path} does not exist: create {folder} first")]
    MissingFolder {
        /// The output.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// Nothing can be written into the output's folder.
    #[error("cannot write into {folder}: {source}")]
    NotWritable {
        /// The folder.
        folder: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The output's extension does not fit its format.
    #[error("the output {path} must end in .{expected}")]
    Extension {
        /// The output.
        path: PathBuf,
        /// The extension of the format.
        expected: &'static str,
    },
    /// The output would land in an input folder whose images the command reads (a gallery):
    /// the next run over that folder would take it for one of them.
    #[error(
        "the output {path} is inside the input folder {folder}, whose images are read: a later \
         run over that folder would take it for one of them; write it outside the folder"
    )]
    InsideInputFolder {
        /// The output.
        path: PathBuf,
        /// The input folder.
        folder: PathBuf,
    },
    /// The output exists and is not a regular file (a folder, a device, a pipe): writing
    /// through a temporary file and a rename would replace it.
    #[error("the output {path} exists and is not a regular file")]
    NotARegularFile {
        /// The output.
        path: PathBuf,
    },
}

/// Writes `bytes` to `path` through `<path>.tmp` and a rename, so that nobody reads a
/// half-written file and a killed write leaves the old one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Refuses an existing path that is not a regular file: the atomic writers replace their
/// target by a rename, which would replace a device or a pipe.
pub fn refuse_special_file(path: &Path) -> Result<(), OutputPathError> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(OutputPathError::NotARegularFile {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Checks an output file before the work: its extension is `extension`, it is none of
/// `inputs` (compared as resolved paths, so `./a/../b.jpg` is `b.jpg`), it is a regular file if
/// it exists, and its folder exists and takes a new file.
pub fn check_output(
    path: &Path,
    extension: &'static str,
    inputs: &[&Path],
) -> Result<(), OutputPathError> {
    let has_extension = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(extension));
    if !has_extension {
        return Err(OutputPathError::Extension {
            path: path.to_path_buf(),
            expected: extension,
        });
    }
    refuse_special_file(path)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(OutputPathError::MissingFolder {
            path: path.to_path_buf(),
            folder,
        });
    }
    let resolved = resolve(path);
    if let Some(input) = inputs.iter().find(|i| resolve(i) == resolved) {
        return Err(OutputPathError::SameAsInput {
            path: path.to_path_buf(),
            input: input.to_path_buf(),
        });
    }
    // A file that is created and removed again proves the folder takes new files.
    let probe = folder.join(format!(".transreid-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| OutputPathError::NotWritable {
            folder: folder.clone(),
            source,
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Refuses an output inside one of the input `folders` whose images are read (directly in
/// it, or anywhere below it when the folders are searched `recursive`ly). Inputs that are
/// files are skipped.
pub fn check_outside_folders(
    path: &Path,
    folders: &[&Path],
    recursive: bool,
) -> Result<(), OutputPathError> {
    let out = resolve(path);
    for folder in folders.iter().filter(|f| f.is_dir()) {
        let Ok(full) = folder.canonicalize() else {
            continue;
        };
        let inside = if recursive {
            out.starts_with(&full)
        } else {
            out.parent() == Some(full.as_path())
        };
        if inside {
            return Err(OutputPathError::InsideInputFolder {
                path: path.to_path_buf(),
                folder: folder.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The path with its folder resolved (symbolic links, `..`), the file name kept; as given
/// when the folder cannot be resolved.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(full) = path.canonicalize() {
        return full;
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (folder.canonicalize(), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_inside_a_read_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gallery = dir.path().join("gallery");
        std::fs::create_dir_all(gallery.join("sub")).unwrap();
        let folders = [gallery.as_path()];
        let inside = gallery.join("ranked.png");
        let err = check_outside_folders(&inside, &folders, false).unwrap_err();
        assert!(
            matches!(err, OutputPathError::InsideInputFolder { .. }),
            "{err}"
        );
        // Another spelling of the same folder.
        let spelled = dir.path().join("gallery/sub/../ranked.png");
        assert!(check_outside_folders(&spelled, &folders, false).is_err());
        // A subfolder is read only with --recursive.
        let nested = gallery.join("sub/ranked.png");
        check_outside_folders(&nested, &folders, false).unwrap();
        assert!(check_outside_folders(&nested, &folders, true).is_err());
        check_outside_folders(&dir.path().join("ranked.png"), &folders, true).unwrap();
    }

    #[test]
    fn outputs_are_checked_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model.safetensors");
        std::fs::write(&input, b"weights").unwrap();
        let out = dir.path().join("features.safetensors");
        check_output(&out, "safetensors", &[&input]).unwrap();
        // The same file under another spelling is still the input.
        let other = dir.path().join("sub/../model.safetensors");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(matches!(
            check_output(&other, "safetensors", &[&input]),
            Err(OutputPathError::SameAsInput { .. })
        ));
        assert!(matches!(
            check_output(&dir.path().join("none/x.png"), "png", &[]),
            Err(OutputPathError::MissingFolder { .. })
        ));
        assert!(matches!(
            check_output(&dir.path().join("x.json"), "png", &[]),
            Err(OutputPathError::Extension {
                expected: "png",
                ..
            })
        ));
        assert!(matches!(
            check_output(&dir.path().join("sub.png"), "png", &[]),
            Ok(())
        ));
        std::fs::create_dir(dir.path().join("folder.png")).unwrap();
        assert!(matches!(
            check_output(&dir.path().join("folder.png"), "png", &[]),
            Err(OutputPathError::NotARegularFile { .. })
        ));
        // The input is untouched and no probe file is left behind.
        assert_eq!(std::fs::read(&input).unwrap(), b"weights");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
