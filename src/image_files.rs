//! The image files a command reads: files as given, folders as the images they hold.

use std::path::{Path, PathBuf};

use transreid_data::IMAGE_EXTENSIONS;

/// Why the inputs yield no list of images.
#[derive(Debug, thiserror::Error)]
pub enum ImageFilesError {
    /// An input does not exist.
    #[error("{path} does not exist")]
    Missing {
        /// The input.
        path: PathBuf,
    },
    /// A folder could not be read.
    #[error("cannot read the folder {path}: {source}")]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No image in any input.
    #[error(
        "no images in {inputs} (looked for {extensions}{recursion})",
        extensions = IMAGE_EXTENSIONS.join(", "),
        recursion = if *recursive { ", in subfolders too" } else { "; subfolders are searched with --recursive" }
    )]
    Empty {
        /// The inputs, as given.
        inputs: String,
        /// Whether subfolders were searched.
        recursive: bool,
    },
}

/// The images of some inputs, and what the listing left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// Files given as such, then each folder's images sorted by path.
    pub paths: Vec<PathBuf>,
    /// Subfolders that were not searched (without `recursive`).
    pub skipped_folders: Vec<PathBuf>,
}

/// Lists the images of `inputs`: a file is taken as given (its content decides whether it is an
/// image); a folder gives its files with an image extension ([`IMAGE_EXTENSIONS`], any case),
/// sorted, hidden files (`.x.jpg`, macOS's `._x.jpg`) and hidden folders excluded, and its
/// subfolders' images too when `recursive`.
pub fn list_image_files(
    inputs: &[PathBuf],
    recursive: bool,
) -> Result<ImageFiles, ImageFilesError> {
    let mut files = ImageFiles {
        paths: Vec::new(),
        skipped_folders: Vec::new(),
    };
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            collect(input, recursive, &mut found, &mut files.skipped_folders)?;
            found.sort();
            files.paths.extend(found);
        } else if input.exists() {
            files.paths.push(input.clone());
        } else {
            return Err(ImageFilesError::Missing {
                path: input.clone(),
            });
        }
    }
    if files.paths.is_empty() {
        let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(ImageFilesError::Empty {
            inputs: inputs.join(", "),
            recursive,
        });
    }
    Ok(files)
}

fn collect(
    dir: &Path,
    recursive: bool,
    found: &mut Vec<PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), ImageFilesError> {
    let read_error = |source| ImageFilesError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if recursive {
                collect(&path, true, found, skipped)?;
            } else {
                skipped.push(path);
            }
        } else if is_image_name(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_visible_images_and_subfolders_only_when_recursive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "b.JPG",
            "a.png",
            "c.webp",
            "d.bmp",
            "notes.txt",
            "._a.jpg",
            ".hidden.jpg",
            "sub/e.jpeg",
            ".cache/f.jpg",
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let names = |files: &ImageFiles| -> Vec<String> {
            let strip = |p: &PathBuf| p.strip_prefix(root).unwrap().display().to_string();
            files.paths.iter().map(strip).collect()
        };
        let flat = list_image_files(&[root.to_path_buf()], false).unwrap();
        assert_eq!(names(&flat), ["a.png", "b.JPG", "c.webp", "d.bmp"]);
        assert_eq!(flat.skipped_folders, [root.join("sub")]);
        let deep = list_image_files(&[root.to_path_buf()], true).unwrap();
        assert_eq!(
            names(&deep),
            ["a.png", "b.JPG", "c.webp", "d.bmp", "sub/e.jpeg"]
        );
        assert!(deep.skipped_folders.is_empty());
        // A file given by name is kept whatever its name.
        let given = list_image_files(&[root.join("notes.txt")], false).unwrap();
        assert_eq!(names(&given), ["notes.txt"]);
    }

    #[test]
    fn missing_inputs_and_empty_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = list_image_files(&[dir.path().join("nope")], false).unwrap_err();
        assert!(matches!(err, ImageFilesError::Missing { .. }), "{err}");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.jpg"), b"x").unwrap();
        let err = list_image_files(&[dir.path().to_path_buf()], false).unwrap_err();
        assert!(err.to_string().contains("--recursive"), "{err}");
    }
}
