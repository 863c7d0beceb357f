//! Reading an image file into 8-bit RGB (the reference's `Image.open(path).convert('RGB')`).

use std::path::Path;

use image::RgbImage;

use crate::error::{DataError, Result};

/// Reads and decodes the image at `path` into RGB.
///
/// JPEG files must hold an end-of-image marker after their last scan: the JPEG decoder used here
/// fills a truncated scan with grey instead of failing, while PIL (and so the reference) raises
/// `image file is truncated`.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be read, [`DataError::EmptyFile`] for a 0-byte file,
/// [`DataError::Truncated`] for a cut JPEG,
/// [`DataError::Decode`] for any other undecodable content and [`DataError::EmptyImage`] for a
/// zero-sized image; each names `path`.
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb_bytes(&bytes, path)
}

/// Decodes in-memory file content; `path` only names the source in errors.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    if is_jpeg(bytes) && !jpeg_is_complete(bytes) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
        });
    }
    let image = image::load_from_memory(bytes).map_err(|source| match source {
        image::ImageError::Limits(_) => too_large(bytes, path),
        source => DataError::Decode {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let rgb = image.into_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(DataError::EmptyImage {
            path: path.to_path_buf(),
            width: rgb.width(),
            height: rgb.height(),
        });
    }
    Ok(rgb)
}

/// The decoder's default allocation limit, named with the image's dimensions.
fn too_large(bytes: &[u8], path: &Path) -> DataError {
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .unwrap_or((0, 0));
    DataError::ImageTooLarge {
        path: path.to_path_buf(),
        width,
        height,
        limit_mib: image::Limits::default().max_alloc.unwrap_or(0) >> 20,
    }
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Entropy-coded data escapes every FF byte (FF 00 or a restart marker), so neither marker can
/// appear inside a scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(sos) => bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::jpeg_bytes;

    #[test]
    fn an_empty_file_is_named_as_such() {
        let err = decode_rgb_bytes(&[], Path::new("empty.jpg")).unwrap_err();
        assert!(matches!(err, DataError::EmptyFile { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "image empty.jpg is an empty file (0 bytes)"
        );
    }

    #[test]
    fn decodes_a_jpeg_to_rgb_of_its_size() {
        let bytes = jpeg_bytes(12, 6, [200, 30, 40]);
        let img = decode_rgb_bytes(&bytes, Path::new("a.jpg")).unwrap();
        assert_eq!(img.dimensions(), (12, 6));
        let p = img.get_pixel(5, 3).0;
        assert!(
            (p[0] as i32 - 200).abs() <= 3 && (p[1] as i32 - 30).abs() <= 3,
            "{p:?}"
        );
    }

    #[test]
    fn truncated_jpeg_is_an_error_naming_the_path() {
        let bytes = jpeg_bytes(32, 16, [10, 120, 250]);
        let cut = &bytes[..bytes.len() - 20];
        match decode_rgb_bytes(cut, Path::new("cut.jpg")) {
            Err(DataError::Truncated { path }) => assert_eq!(path, Path::new("cut.jpg")),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn an_image_too_large_to_decode_names_its_size() {
        // A BMP header announcing 60000x50000 pixels (9 GB as RGB), without the pixels.
        let mut bmp = b"BM".to_vec();
        for v in [54u32 + 16, 0, 54, 40, 60_000, 50_000] {
            bmp.extend(v.to_le_bytes());
        }
        bmp.extend(1u16.to_le_bytes());
        bmp.extend(24u16.to_le_bytes());
        bmp.extend([0u8; 24]);
        bmp.extend([0u8; 16]);
        match decode_rgb_bytes(&bmp, Path::new("huge.bmp")) {
            Err(e @ DataError::ImageTooLarge { .. }) => {
                let text = e.to_string();
                assert!(text.contains("huge.bmp is 60000x50000 pixels"), "{text}");
            }
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        match decode_rgb_bytes(b"not an image at all", Path::new("bad.jpg")) {
            Err(DataError::Decode { path, .. }) => assert_eq!(path, Path::new("bad.jpg")),
            other => panic!("expected Decode, got {other:?}"),
        }
        // a JPEG header followed by nothing usable
        match decode_rgb_bytes(
            &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0xFF, 0xD9],
            Path::new("h.jpg"),
        ) {
            Err(DataError::Decode { .. }) => {}
            other => panic!("expected Decode, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        match decode_rgb(Path::new("/nonexistent/x.jpg")) {
            Err(DataError::Io { path, .. }) => assert_eq!(path, Path::new("/nonexistent/x.jpg")),
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
