//! Writes a contact sheet of the demo model's synthetic training images with their captions.
//!
//! ```text
//! cargo run --example shapes_preview -- --out shapes.png
//! ```

use anyhow::Result;
use clap::Parser;
use sjd2::models::vq::{Rgb8, save_png};
use sjd2_train::shapes::Sample;

#[derive(Parser, Debug)]
#[command(about = "Contact sheet of synthetic captioned images")]
struct Args {
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per side of the sheet.
    #[arg(long, default_value_t = 4)]
    grid: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Output PNG.
    #[arg(long, default_value = "shapes.png")]
    out: std::path::PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (g, s) = (args.grid, args.size);
    let side = g * (s + 2);
    let mut sheet = vec![0u8; side * side * 3];
    for i in 0..g * g {
        let sample = Sample::generate(args.seed, i as u64, s);
        println!("{i:>2}: {}", sample.caption);
        let (ox, oy) = ((i % g) * (s + 2) + 1, (i / g) * (s + 2) + 1);
        for y in 0..s {
            let src = &sample.pixels[y * s * 3..(y + 1) * s * 3];
            let at = ((oy + y) * side + ox) * 3;
            sheet[at..at + s * 3].copy_from_slice(src);
        }
    }
    save_png(
        &args.out,
        &Rgb8 {
            width: side,
            height: side,
            pixels: sheet,
        },
    )?;
    println!("wrote {}", args.out.display());
    Ok(())
}
