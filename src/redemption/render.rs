//! Drawing a QR token for clients that cannot: SVG and PNG.

use qrcode::{Color, EcLevel, QrCode};

const QUIET: usize = 4;
const SCALE: usize = 8;

fn code(text: &str) -> anyhow::Result<QrCode> {
    Ok(QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?)
}

pub fn svg(text: &str) -> anyhow::Result<String> {
    Ok(code(text)?.render::<qrcode::render::svg::Color>().min_dimensions(256, 256).quiet_zone(true).build())
}

/// An 8-bit greyscale PNG, 8 pixels per module with a 4-module quiet zone.
pub fn png(text: &str) -> anyhow::Result<Vec<u8>> {
    let code = code(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side)?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(out)
}

/// The QR version a token needs (1–40), for checking the size promise.
pub fn version(text: &str) -> anyhow::Result<i16> {
    match code(text)?.version() {
        qrcode::Version::Normal(v) | qrcode::Version::Micro(v) => Ok(v),
    }
}
