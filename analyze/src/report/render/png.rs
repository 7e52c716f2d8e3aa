//! PNG copies of the report's SVG figures, rasterised with resvg: one drawing, two
//! formats. Text uses the system's fonts (`cargo xtask setup` installs DejaVu); on a
//! machine with none the shapes are drawn without their labels.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("figure is not valid SVG: {0}")]
    Svg(String),
    #[error("a figure of {0}x{1} px cannot be drawn")]
    Size(u32, u32),
    #[error("encoding PNG: {0}")]
    Encode(String),
}

/// The system's fonts, scanned once per process (a few ms).
fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        // The figures ask for sans-serif; DejaVu Sans where fontconfig names none.
        if db
            .faces()
            .any(|f| f.families.iter().any(|(n, _)| n == "DejaVu Sans"))
        {
            db.set_sans_serif_family("DejaVu Sans");
        }
        Arc::new(db)
    })
    .clone()
}

/// The SVG drawn at `scale` times its size on white, as PNG bytes.
pub fn from_svg(svg: &str, scale: f32) -> Result<Vec<u8>, PngError> {
    let opts = usvg::Options {
        fontdb: fonts(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &opts).map_err(|e| PngError::Svg(e.to_string()))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or(PngError::Size(w, h))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| PngError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_drawing_becomes_a_png_of_its_size_times_the_scale() {
        let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect x="0" y="0" width="20" height="20" fill="#d62728"/></svg>"##;
        let png = super::from_svg(svg, 2.0).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // IHDR: width and height, big-endian, at bytes 16..24.
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (80, 40));
    }

    #[test]
    fn bad_svg_is_an_error() {
        assert!(super::from_svg("<svg", 1.0).is_err());
    }
}
