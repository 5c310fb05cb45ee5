//! Captioned synthetic images: 1–3 objects (five shapes, eight colours, two sizes) in distinct
//! cells of a 3×3 grid, on a gradient or textured background, with captions from varied
//! templates ("a small red circle in the top left corner and a blue square below it").
//!
//! Everything is a pure function of `(seed, index)`, so a dataset needs no files.
//!
//! # Example
//! ```
//! use sjd2_train::shapes::Sample;
//! let s = Sample::generate(7, 0, 64);
//! assert_eq!(s.pixels.len(), 64 * 64 * 3);
//! assert_eq!(Sample::generate(7, 0, 64), s); // deterministic
//! assert!(!s.caption.is_empty());
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A filled disc.
    Circle,
    /// A filled axis-aligned square.
    Square,
    /// A filled upward triangle.
    Triangle,
    /// A filled five-pointed star.
    Star,
    /// An annulus.
    Ring,
}

impl Shape {
    /// All shapes.
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Ring,
    ];

    /// The word used in captions.
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Ring => "ring",
        }
    }

    /// Whether the point `(dx, dy)` (relative to the centre, y down) lies inside a shape of
    /// radius `r`.
    pub fn contains(self, dx: f32, dy: f32, r: f32) -> bool {
        let d = (dx * dx + dy * dy).sqrt();
        match self {
            Shape::Circle => d <= r,
            Shape::Ring => d <= r && d >= 0.55 * r,
            Shape::Square => dx.abs() <= 0.8 * r && dy.abs() <= 0.8 * r,
            Shape::Triangle => {
                // Apex at (0, -r), base at y = 0.8 r.
                let t = (dy + r) / (1.8 * r);
                (0.0..=1.0).contains(&t) && dx.abs() <= t * 0.95 * r
            }
            Shape::Star => {
                let theta = dy.atan2(dx) + std::f32::consts::FRAC_PI_2;
                let k = (2.5 * theta).cos().abs();
                d <= r * (0.45 + 0.55 * k.powf(3.0))
            }
        }
    }
}

/// A colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
    /// Orange.
    Orange,
    /// White.
    White,
    /// Cyan.
    Cyan,
}

impl Colour {
    /// All colours.
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::White,
        Colour::Cyan,
    ];

    /// The word used in captions.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
            Colour::White => "white",
            Colour::Cyan => "cyan",
        }
    }

    /// sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 180, 50],
            Colour::Blue => [40, 70, 230],
            Colour::Yellow => [240, 220, 30],
            Colour::Purple => [150, 40, 190],
            Colour::Orange => [250, 140, 20],
            Colour::White => [245, 245, 245],
            Colour::Cyan => [30, 220, 220],
        }
    }
}

/// Object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// Radius 0.22 of a cell side.
    Small,
    /// Radius 0.42 of a cell side.
    Large,
}

impl Size {
    /// Radius as a fraction of a cell side.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 0.22,
            Size::Large => 0.42,
        }
    }
}

/// One object in a cell of the 3×3 grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Object {
    /// Shape.
    pub shape: Shape,
    /// Colour.
    pub colour: Colour,
    /// Size.
    pub size: Size,
    /// `(row, col)` in `0..3`.
    pub cell: (usize, usize),
}

/// The background.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Background {
    /// A linear gradient between two dark colours.
    Gradient {
        /// Start colour.
        from: [u8; 3],
        /// End colour.
        to: [u8; 3],
        /// Top-to-bottom if true, left-to-right otherwise.
        vertical: bool,
    },
    /// A dark colour with blocky value noise.
    Texture {
        /// Mean colour.
        base: [u8; 3],
        /// Noise seed.
        seed: u64,
    },
}

/// A generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The objects (1 to 3, distinct cells).
    pub objects: Vec<Object>,
    /// The background.
    pub background: Background,
    /// Row-major RGB bytes of a `size × size` image.
    pub pixels: Vec<u8>,
    /// Image side.
    pub size: usize,
    /// The caption.
    pub caption: String,
}

fn cell_phrase(cell: (usize, usize)) -> &'static str {
    match cell {
        (0, 0) => "in the top left corner",
        (0, 1) => "at the top",
        (0, 2) => "in the top right corner",
        (1, 0) => "on the left",
        (1, 1) => "in the center",
        (1, 2) => "on the right",
        (2, 0) => "in the bottom left corner",
        (2, 1) => "at the bottom",
        _ => "in the bottom right corner",
    }
}

/// "below it", "to its right", ... when `b` is a grid neighbour of `a` in a straight line.
fn relation(a: (usize, usize), b: (usize, usize)) -> Option<&'static str> {
    match (b.0 as i32 - a.0 as i32, b.1 as i32 - a.1 as i32) {
        (0, c) if c > 0 => Some("to its right"),
        (0, c) if c < 0 => Some("to its left"),
        (r, 0) if r > 0 => Some("below it"),
        (r, 0) if r < 0 => Some("above it"),
        _ => None,
    }
}

fn noun(o: &Object, rng: &mut ChaCha8Rng) -> String {
    let size = match o.size {
        Size::Small => ["small ", "little ", "tiny "][rng.random_range(0..3)],
        Size::Large => ["large ", "big ", "large "][rng.random_range(0..3)],
    };
    format!("{size}{} {}", o.colour.word(), o.shape.word())
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl Sample {
    /// Sample `index` of the dataset with seed `seed`, rendered at `size × size` pixels.
    pub fn generate(seed: u64, index: u64, size: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let n = rng.random_range(1..=3);
        let mut cells: Vec<(usize, usize)> = (0..9).map(|i| (i / 3, i % 3)).collect();
        let mut objects = Vec::with_capacity(n);
        for _ in 0..n {
            let cell = cells.swap_remove(rng.random_range(0..cells.len()));
            objects.push(Object {
                shape: Shape::ALL[rng.random_range(0..Shape::ALL.len())],
                colour: Colour::ALL[rng.random_range(0..Colour::ALL.len())],
                size: if rng.random_bool(0.5) {
                    Size::Small
                } else {
                    Size::Large
                },
                cell,
            });
        }
        let dark = |rng: &mut ChaCha8Rng| {
            [
                rng.random_range(10..90u8),
                rng.random_range(10..90u8),
                rng.random_range(10..90u8),
            ]
        };
        let background = if rng.random_bool(0.5) {
            Background::Gradient {
                from: dark(&mut rng),
                to: dark(&mut rng),
                vertical: rng.random_bool(0.5),
            }
        } else {
            Background::Texture {
                base: dark(&mut rng),
                seed: rng.random(),
            }
        };
        let caption = Self::caption(&objects, &mut rng);
        let pixels = render(&objects, &background, size);
        Self {
            objects,
            background,
            pixels,
            size,
            caption,
        }
    }

    fn caption(objects: &[Object], rng: &mut ChaCha8Rng) -> String {
        let mut parts = Vec::with_capacity(objects.len());
        for (i, o) in objects.iter().enumerate() {
            let n = noun(o, rng);
            let a = article(&n);
            let place = match i.checked_sub(1).map(|p| relation(objects[p].cell, o.cell)) {
                Some(Some(rel)) if rng.random_bool(0.7) => rel.to_string(),
                _ => cell_phrase(o.cell).to_string(),
            };
            parts.push(format!("{a} {n} {place}"));
        }
        let body = match parts.len() {
            1 => parts.remove(0),
            2 => format!("{} and {}", parts[0], parts[1]),
            _ => format!("{}, {} and {}", parts[0], parts[1], parts[2]),
        };
        match rng.random_range(0..4) {
            0 => body,
            1 => format!("a picture of {body}"),
            2 => format!("an image showing {body}"),
            _ => format!("there is {body}"),
        }
    }
}

fn hash(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn background_at(bg: &Background, x: usize, y: usize, size: usize) -> [u8; 3] {
    match *bg {
        Background::Gradient { from, to, vertical } => {
            let t = if vertical { y } else { x } as f32 / (size.max(2) - 1) as f32;
            std::array::from_fn(|c| {
                (f32::from(from[c]) * (1.0 - t) + f32::from(to[c]) * t).round() as u8
            })
        }
        Background::Texture { base, seed } => {
            let block = (size / 16).max(1);
            let h = hash(seed ^ ((x / block) as u64) << 20 ^ (y / block) as u64);
            let n = (h % 41) as i16 - 20;
            std::array::from_fn(|c| (i16::from(base[c]) + n).clamp(0, 255) as u8)
        }
    }
}

/// Renders objects over a background into row-major RGB bytes.
pub fn render(objects: &[Object], background: &Background, size: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(size * size * 3);
    let cell = size as f32 / 3.0;
    for y in 0..size {
        for x in 0..size {
            let mut c = background_at(background, x, y, size);
            for o in objects {
                let cx = (o.cell.1 as f32 + 0.5) * cell;
                let cy = (o.cell.0 as f32 + 0.5) * cell;
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                if o.shape.contains(dx, dy, o.size.radius() * cell) {
                    c = o.colour.rgb();
                }
            }
            px.extend_from_slice(&c);
        }
    }
    px
}

/// Writes samples `start..start + count` of the dataset with `seed` at `size × size` pixels as a
/// Hugging Face `imagefolder` in `dir`: `NNNNNNN.png` files and a `metadata.jsonl` whose lines
/// hold `file_name` and `text` (appending to an existing one). The input `finetune prepare` reads.
///
/// # Errors
/// I/O and PNG encoding errors.
pub fn write_imagefolder(
    dir: &std::path::Path,
    seed: u64,
    start: u64,
    count: u64,
    size: usize,
) -> crate::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
    let meta = dir.join("metadata.jsonl");
    let mut lines = String::new();
    for i in start..start + count {
        let s = Sample::generate(seed, i, size);
        let name = format!("{i:07}.png");
        let path = dir.join(&name);
        image::save_buffer(
            &path,
            &s.pixels,
            size as u32,
            size as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| crate::TrainError::Data {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        lines.push_str(&serde_json::json!({"file_name": name, "text": s.caption}).to_string());
        lines.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&meta)
        .map_err(crate::error::io(&meta))?;
    f.write_all(lines.as_bytes())
        .map_err(crate::error::io(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(s: &Sample, x: usize, y: usize) -> [u8; 3] {
        let i = (y * s.size + x) * 3;
        [s.pixels[i], s.pixels[i + 1], s.pixels[i + 2]]
    }

    #[test]
    fn samples_are_deterministic_and_varied() {
        let a = Sample::generate(1, 5, 48);
        assert_eq!(a, Sample::generate(1, 5, 48));
        assert_ne!(a, Sample::generate(1, 6, 48));
        assert_ne!(a, Sample::generate(2, 5, 48));
        let captions: std::collections::HashSet<String> = (0..200)
            .map(|i| Sample::generate(3, i, 24).caption)
            .collect();
        assert!(
            captions.len() > 190,
            "captions repeat too often: {}",
            captions.len()
        );
    }

    #[test]
    fn captions_name_every_object() {
        for i in 0..300 {
            let s = Sample::generate(11, i, 24);
            assert!((1..=3).contains(&s.objects.len()));
            for o in &s.objects {
                assert!(
                    s.caption.contains(o.colour.word()) && s.caption.contains(o.shape.word()),
                    "{}",
                    s.caption
                );
            }
            let cells: std::collections::HashSet<_> = s.objects.iter().map(|o| o.cell).collect();
            assert_eq!(cells.len(), s.objects.len(), "objects share a cell");
        }
    }

    #[test]
    fn objects_are_drawn_in_their_cells() {
        let size = 96;
        let cell = size / 3;
        for i in 0..100 {
            let s = Sample::generate(5, i, size);
            for o in &s.objects {
                let (cx, cy) = (o.cell.1 * cell + cell / 2, o.cell.0 * cell + cell / 2);
                // A point inside every shape: the centre, or for a ring a point on its band.
                let (x, y) = match o.shape {
                    Shape::Ring => (cx + (0.8 * o.size.radius() * cell as f32) as usize, cy),
                    Shape::Triangle => (cx, cy + 2),
                    _ => (cx, cy),
                };
                assert_eq!(pixel(&s, x, y), o.colour.rgb(), "{:?} in sample {i}", o);
            }
        }
    }

    #[test]
    fn relations_and_places_are_consistent() {
        assert_eq!(relation((0, 0), (0, 2)), Some("to its right"));
        assert_eq!(relation((2, 1), (0, 1)), Some("above it"));
        assert_eq!(relation((0, 0), (1, 1)), None);
        assert_eq!(cell_phrase((1, 1)), "in the center");
        assert_eq!(article("orange ring"), "an");
    }
}
