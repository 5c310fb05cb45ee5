//! Writes a contact sheet of the demo model's synthetic training images with their captions.
//!
//! ```text
//! cargo run --example shapes_preview -- --out shapes.png
//! # Or write images start..start+count as an imagefolder (PNGs + metadata.jsonl), the input of
//! # `finetune prepare`:
//! cargo run --example shapes_preview -- --seed 1 --imagefolder images --start 160000 --count 9600
//! ```

use anyhow::Result;
use clap::Parser;
use sjd2::models::vq::{Rgb8, save_png, tile};
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
    /// Write an imagefolder here instead of a contact sheet.
    #[arg(long)]
    imagefolder: Option<std::path::PathBuf>,
    /// First sample of the imagefolder.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Samples in the imagefolder.
    #[arg(long, default_value_t = 1000)]
    count: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.imagefolder {
        sjd2_train::shapes::write_imagefolder(dir, args.seed, args.start, args.count, args.size)?;
        println!(
            "wrote {} images and metadata.jsonl to {}",
            args.count,
            dir.display()
        );
        return Ok(());
    }
    let (g, s) = (args.grid, args.size);
    let mut rows: Vec<Vec<Rgb8>> = vec![Vec::new(); g];
    for i in 0..g * g {
        let sample = Sample::generate(args.seed, i as u64, s);
        println!("{i:>2}: {}", sample.caption);
        rows[i / g].push(Rgb8 {
            width: s,
            height: s,
            pixels: sample.pixels,
        });
    }
    save_png(&args.out, &tile(&rows, 2, 0))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
