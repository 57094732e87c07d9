//! The face pipeline: detection -> 68 landmarks -> alignment to a 150x150 chip -> 128-D
//! embedding, on candle, with the face-api.js weights converted in `models/`.

pub mod align;
pub mod detector;
pub mod eyes;
pub mod landmarks;
pub mod liveness;
pub mod quality;
pub mod recognition;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::{RgbImage, imageops};
use serde::Serialize;

pub use align::Point;
use align::Similarity;

use crate::cpu::Isa;
use crate::error::{Error, Result};
use crate::models::{
    self, CropEmbedder, CropProblem, DETECTOR_FILE, Embedded, LANDMARKS_FILE, RECOGNITION_FILE,
    embed_each,
};
use crate::types::{Modality, TemplateShape};
use detector::TinyFaceDetector;
use landmarks::Landmark68Net;
use recognition::FaceRecognitionNet;

/// face-api.js's default: below it the Tiny Face Detector mostly finds ears and fists.
pub const DEFAULT_MIN_DETECTION_SCORE: f32 = 0.5;
/// The floor for a photo's main face when nothing reaches the threshold; below it the
/// candidates are mostly not faces (the coffee cup in tests/data scores under 0.05).
pub const WEAK_FACE_SCORE: f32 = 0.25;
const NMS_IOU: f32 = 0.4;
/// Every face template: 128 finite values. The network's descriptors (the mean of a chip's
/// and its mirror's) measured norms of 1.24 to 1.63 over 319 LFW faces; the band around
/// them refuses zero, empty and runaway vectors without touching a real face.
pub const TEMPLATE_SHAPE: TemplateShape = TemplateShape {
    len: recognition::EMBEDDING_DIM,
    norm_of_first: recognition::EMBEDDING_DIM,
    norm: 0.5..=3.0,
};

/// (canvas, longest side of the photo on it): the usual full-size pass, and a zoomed-out
/// one for close-ups. On 400 LFW DevTrain pairs the first alone missed 47 of 341 faces,
/// both together 1.
const FULL_SIZE_PASS: (u32, u32) = (416, 416);
const ZOOMED_OUT_PASS: (u32, u32) = (416, 208);
/// The largest face side, in detector-canvas pixels, that the full-size pass finds
/// reliably; past it the detector starts to miss (on 800 LFW DevTrain photos, whose faces
/// lie at 160-400 px on the canvas, it missed 10-14% of faces at 160-240 px and 64-85%
/// at 280-400 px).
const DETECTOR_FIELD_PX: f32 = 150.0;
/// (canvas, longest side) for the search around a followed face: the region is twice the
/// face's side, so the face is about 112 px in the detector's input.
const TRACKING_PASS: (u32, u32) = (224, 224);
/// The margin put around a photo in which no face was found, as a fraction of its width
/// and height on each side, in the photo's mean colour. Chosen on tight grey crops of LFW
/// DevTrain (the first 500 same and 500 different pairs, `vouch dataset face-crops`):
/// photos without a face found fell from 323 of 1651 with no margin to 14 at 0.25 in the
/// mean colour; 0.15 left 42, 0.4 left 18; the photo's own edge pixels repeated left 25,
/// black 18. The margin look then takes only confident faces that fill the photo (see
/// `FaceModels::sight`): on 238 scans and photos without people it keeps the faces found
/// at today's 19, where the weak floor (0.25) would find 23, at the cost of 38 crops
/// without a face instead of 16 (23 once `stretch_contrast` was added).
const MARGIN_FRACTION: f32 = 0.25;
/// The equalised look's grid (tiles a side) and clip limit (times the mean bin count),
/// chosen on LFW DevTrain badge-style crops (grey, and side-lit) and ORL under a synthetic
/// hard shadow, among 2, 4, 8 tiles and clips 1.5, 3 (models/README.md).
const CLAHE_TILES: usize = 4;
const CLAHE_CLIP: f32 = 3.0;
/// The share of a face's box the margin look needs inside the photo itself.
const MIN_INSIDE_PHOTO: f32 = 0.6;
/// The least side of a face's box found by the margin look, as a share of the photo's
/// short side: the look is for faces that fill the frame.
const MIN_FILLING: f32 = 0.5;
/// A box holding this much of a better one is the same face seen larger, not a second face.
const MAX_CONTAINED: f32 = 0.5;
/// Faces narrower than this have too few pixels for landmarks worth aligning on.
const MIN_CROP_PX: u32 = 8;
/// The landmark network's second look: a square at this place on the aligned chip
/// (centre x, centre y, side, as fractions of the chip), where the detector's box lies
/// on average (median over 300 LFW DevTrain photos). Detector boxes wander in size and
/// place (their side's spread is a quarter of the face), and the network's 68 points
/// wander with them; a crop fixed to the face steadies the alignment.
const LANDMARK_REGION_ON_CHIP: (f64, f64, f64) = (0.4907, 0.5607, 1.032);

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BoundingBox {
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    fn intersection(&self, other: &BoundingBox) -> f32 {
        let left = self.x.max(other.x);
        let top = self.y.max(other.y);
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        (right - left).max(0.0) * (bottom - top).max(0.0)
    }

    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let intersection = self.intersection(other);
        let union = self.area() + other.area() - intersection;
        if union > 0.0 {
            intersection / union
        } else {
            0.0
        }
    }

    /// The share of the smaller box that lies inside the other.
    pub fn containment(&self, other: &BoundingBox) -> f32 {
        let smaller = self.area().min(other.area());
        if smaller > 0.0 {
            self.intersection(other) / smaller
        } else {
            0.0
        }
    }

    /// The same box in a picture whose corner lies at (`dx`, `dy`) of this one's.
    fn shifted(&self, dx: u32, dy: u32) -> BoundingBox {
        BoundingBox {
            x: self.x - dx as f32,
            y: self.y - dy as f32,
            ..*self
        }
    }

    /// Integer pixel rectangle inside a `width` x `height` image: (x, y, w, h).
    fn clipped(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let left = self.x.floor().clamp(0.0, width as f32) as u32;
        let top = self.y.floor().clamp(0.0, height as f32) as u32;
        let right = (self.x + self.width).floor().clamp(0.0, width as f32) as u32;
        let bottom = (self.y + self.height).floor().clamp(0.0, height as f32) as u32;
        (
            left,
            top,
            right.saturating_sub(left),
            bottom.saturating_sub(top),
        )
    }
}

/// Where a photo's faces were found: the photo itself, or the photo inside a margin
/// (`offset` is where the photo's corner lies in it).
struct Sighting<'a> {
    image: std::borrow::Cow<'a, RgbImage>,
    offset: (u32, u32),
    detections: Vec<Detection>,
}

impl Sighting<'_> {
    /// Landmarks, chips and embeddings, computed where the faces were found and given back
    /// in the photo's own pixels.
    fn describe(self, models: &FaceModels) -> Result<Vec<Face>> {
        let (dx, dy) = self.offset;
        let mut faces = models.describe(&self.image, self.detections)?;
        for face in &mut faces {
            face.bbox = face.bbox.shifted(dx, dy);
            for point in &mut face.landmarks {
                point.x -= dx as f32;
                point.y -= dy as f32;
            }
        }
        Ok(faces)
    }
}

/// The photo inside a margin of its mean colour, its contrast stretched, and where its
/// corner lies: the margin look of `FaceModels::sight`.
fn with_margin(image: &RgbImage) -> (RgbImage, (u32, u32)) {
    let (width, height) = image.dimensions();
    let margin_x = (width as f32 * MARGIN_FRACTION).round() as u32;
    let margin_y = (height as f32 * MARGIN_FRACTION).round() as u32;
    let mut sum = [0u64; 3];
    for pixel in image.pixels() {
        for (total, &value) in sum.iter_mut().zip(&pixel.0) {
            *total += u64::from(value);
        }
    }
    let count = (u64::from(width) * u64::from(height)).max(1);
    let mean = image::Rgb(sum.map(|total| (total / count) as u8));
    let mut padded = RgbImage::from_pixel(width + 2 * margin_x, height + 2 * margin_y, mean);
    imageops::replace(&mut padded, image, i64::from(margin_x), i64::from(margin_y));
    stretch_contrast(&mut padded, image);
    (padded, (margin_x, margin_y))
}

/// The picture's brightness equalised tile by tile, contrast-limited (CLAHE), in grey: a
/// face half in hard shadow, or dim on one side, gets the shading of both halves back for
/// the detector. The third look of `FaceModels::sight`, on the photo inside its margin.
fn equalise_locally(picture: &RgbImage) -> RgbImage {
    let grey = imageops::grayscale(picture);
    let equalised = clahe::clahe_u8_to_u8(CLAHE_TILES, CLAHE_TILES, CLAHE_CLIP, &grey);
    RgbImage::from_fn(picture.width(), picture.height(), |x, y| {
        image::Rgb([equalised.get_pixel(x, y)[0]; 3])
    })
}

/// Stretches `picture`'s levels so that `source`'s 1st and 99th percentiles become black
/// and white: a dim or one-sidedly lit face has its shading back for the detector. On
/// side-lit DevTrain crops the margin look then missed 36 faces of 1651 rather than 81.
fn stretch_contrast(picture: &mut RgbImage, source: &RgbImage) {
    // A histogram, not a sort: this runs on every kiosk frame without a face.
    let mut counts = [0usize; 256];
    for &level in source.as_raw() {
        counts[usize::from(level)] += 1;
    }
    let total = source.as_raw().len();
    // The level at `rank` in sorted order.
    let level_at = |rank: usize| {
        let mut seen = 0;
        counts
            .iter()
            .position(|&count| {
                seen += count;
                seen > rank
            })
            .unwrap_or(255) as f32
    };
    let low = level_at(total / 100);
    let high = level_at(total * 99 / 100).max(low + 1.0);
    let table: Vec<u8> = (0..=255u8)
        .map(|level| ((f32::from(level) - low) * 255.0 / (high - low)).clamp(0.0, 255.0) as u8)
        .collect();
    for channel in picture.iter_mut() {
        *channel = table[usize::from(*channel)];
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub bbox: BoundingBox,
    pub score: f32,
}

/// One face found in an image, with everything the pipeline computed for it.
#[derive(Debug, Clone, Serialize)]
pub struct Face {
    pub bbox: BoundingBox,
    pub detection_score: f32,
    pub landmarks: Vec<Point>,
    pub embedding: Vec<f32>,
}

impl Face {
    pub fn prominence(&self) -> f32 {
        self.bbox.area() * self.detection_score
    }
}

impl Detection {
    /// Box area weighted by detector confidence: the person nearest the camera, without
    /// letting a larger but doubtful box (a half-visible bystander, a false positive) win.
    pub fn prominence(&self) -> f32 {
        self.bbox.area() * self.score
    }
}

/// The three networks, loaded once on one device.
pub struct FaceModels {
    detector: TinyFaceDetector,
    landmarks: Landmark68Net,
    recognition: FaceRecognitionNet,
    device: Device,
    recognition_sha256: String,
    pub min_detection_score: f32,
    /// The instruction set the CPU kernels run on (`cpu::Isa::chosen`, unless set).
    pub isa: Isa,
}

impl FaceModels {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let open = |file: &str| -> Result<(VarBuilder<'static>, String)> {
            let path = dir.join(file);
            let weights = models::load_weights(&path, device)?;
            Ok((
                VarBuilder::from_tensors(weights.tensors, DType::F32, device),
                weights.sha256,
            ))
        };
        let wrap = |file: &str, error: candle_core::Error| Error::BadModel {
            reason: error.to_string(),
            path: dir.join(file),
        };
        let (detector_vb, _) = open(DETECTOR_FILE)?;
        let (landmarks_vb, _) = open(LANDMARKS_FILE)?;
        let (recognition_vb, recognition_sha256) = open(RECOGNITION_FILE)?;
        Ok(Self {
            detector: TinyFaceDetector::new(detector_vb).map_err(|e| wrap(DETECTOR_FILE, e))?,
            landmarks: Landmark68Net::new(landmarks_vb).map_err(|e| wrap(LANDMARKS_FILE, e))?,
            recognition: FaceRecognitionNet::new(recognition_vb)
                .map_err(|e| wrap(RECOGNITION_FILE, e))?,
            device: device.clone(),
            recognition_sha256,
            min_detection_score: DEFAULT_MIN_DETECTION_SCORE,
            isa: Isa::chosen(),
        })
    }

    /// Identifies the embedding space: embeddings from two different ids must never be compared.
    pub fn model_id(&self) -> String {
        format!(
            "faceapi-dlib-resnet+mirror@{}",
            &self.recognition_sha256[..12]
        )
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every face in the image with its embedding, most prominent first.
    pub fn analyze(&self, image: &RgbImage) -> Result<Vec<Face>> {
        let sighting = self.sight(image, self.min_detection_score)?;
        let mut faces = sighting.describe(self)?;
        faces.sort_by(|a, b| b.prominence().total_cmp(&a.prominence()));
        Ok(faces)
    }

    /// The photo's subject for 1:1 work, and how many confident faces the photo holds: the
    /// most prominent face (see `Face::prominence`) among those covering the photo's
    /// centre, or among all when none does. A photo is framed on its subject, who is not
    /// always the largest face: on LFW DevTrain, preferring the centre fixes 5 of the 2200
    /// pairs at the default threshold and breaks none. When no face reaches `min_detection_score`, the best
    /// candidate down to `WEAK_FACE_SCORE` stands in: the detector scores some plain
    /// frontal close-ups as low as 0.3.
    pub fn main_face(&self, image: &RgbImage, source: &str) -> Result<(Face, usize)> {
        let floor = WEAK_FACE_SCORE.min(self.min_detection_score);
        let sighting = self.sight(image, floor)?;
        let candidates = sighting.detections.clone();
        let confident: Vec<Detection> = candidates
            .iter()
            .copied()
            .filter(|d| d.score >= self.min_detection_score)
            .collect();
        let count = confident.len();
        let pool = if confident.is_empty() {
            candidates
        } else {
            confident
        };
        let best = subject_of(
            pool.iter().map(|d| (d.bbox, d.prominence())),
            sighting.image.dimensions(),
        )
        .map(|index| pool[index])
        .ok_or_else(|| Error::NoFace(source.to_string()))?;
        let face = Sighting {
            detections: vec![best],
            ..sighting
        }
        .describe(self)?
        .remove(0);
        Ok((face, count))
    }

    /// The faces of a photo at `min_score`: in the photo as it is, or, when it shows none,
    /// in the photo set inside a margin. A face that fills the frame (an ID or badge
    /// photo, a tight headshot) has no context around it and the detector misses it at
    /// every scale; with a plain margin around it, it is a face in a picture again. Photos with a face pay for nothing: the margin look runs only when
    /// the first found none.
    fn sight<'a>(&self, image: &'a RgbImage, min_score: f32) -> Result<Sighting<'a>> {
        let detections = self.detect_above(image, min_score)?;
        if !detections.is_empty() {
            return Ok(Sighting {
                image: std::borrow::Cow::Borrowed(image),
                offset: (0, 0),
                detections,
            });
        }
        let (padded, offset) = with_margin(image);
        let (width, height) = image.dimensions();
        let photo = BoundingBox {
            x: offset.0 as f32,
            y: offset.1 as f32,
            width: width as f32,
            height: height as f32,
        };
        // What the margin look is for: a confident face filling the photo. A weak one, a
        // small one, or a box lying mostly in the margin is the detector reading ink or
        // an edge as a face (signature scans did all three), not someone in the picture.
        let short_side = width.min(height) as f32;
        let fills_the_photo = |d: &Detection| {
            d.bbox.intersection(&photo) >= MIN_INSIDE_PHOTO * d.bbox.area()
                && d.bbox.width.max(d.bbox.height) >= MIN_FILLING * short_side
        };
        let floor = min_score.max(self.min_detection_score);
        let mut detections = self.detect_above(&padded, floor)?;
        detections.retain(fills_the_photo);
        if !detections.is_empty() {
            return Ok(Sighting {
                image: std::borrow::Cow::Owned(padded),
                offset,
                detections,
            });
        }
        let equalised = equalise_locally(&padded);
        let mut detections = self.detect_above(&equalised, floor)?;
        detections.retain(fills_the_photo);
        Ok(Sighting {
            image: std::borrow::Cow::Owned(equalised),
            offset,
            detections,
        })
    }

    /// Landmarks, chips and embeddings for the given detections, in their order.
    fn describe(&self, image: &RgbImage, detections: Vec<Detection>) -> Result<Vec<Face>> {
        let landmarks = self.landmarks(image, &detections)?;
        let chips: Vec<RgbImage> = landmarks
            .iter()
            .map(|points| align_chip(image, points))
            .collect::<Result<_>>()?;
        let embeddings = self.embed_chips(&chips)?;
        Ok(detections
            .into_iter()
            .zip(landmarks)
            .zip(embeddings)
            .map(|((detection, landmarks), embedding)| Face {
                bbox: detection.bbox,
                detection_score: detection.score,
                landmarks,
                embedding,
            })
            .collect())
    }

    /// Faces scoring at least `min_detection_score`, after non-maximum suppression, in
    /// image pixels; tiny ones are dropped. The detector finds faces best when they are
    /// 60-150 px in its input and misses close-ups (a kiosk user, an ID photo), so it looks
    /// at full size, and again with the photo shrunk onto the canvas when
    /// `needs_zoomed_out_pass` says the first look may have missed one.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let sighting = self.sight(image, self.min_detection_score)?;
        let (dx, dy) = sighting.offset;
        Ok(sighting
            .detections
            .into_iter()
            .map(|d| Detection {
                bbox: d.bbox.shifted(dx, dy),
                ..d
            })
            .collect())
    }

    /// Faces near `around` only, in frame pixels: one detector run on that part of the
    /// frame, scaled so a face filling half of it sits in the detector's best range. The
    /// kiosk follows a face this way between full detections (`kiosk::Tracker`), at a
    /// third of a full pass's cost.
    pub fn detect_near(&self, image: &RgbImage, around: &BoundingBox) -> Result<Vec<Detection>> {
        let (x, y, width, height) = around.clipped(image.width(), image.height());
        if width < MIN_CROP_PX || height < MIN_CROP_PX {
            return Ok(Vec::new());
        }
        let region = imageops::crop_imm(image, x, y, width, height).to_image();
        let (canvas, longest_side) = TRACKING_PASS;
        let found = self.detect_pass(&region, canvas, longest_side, self.min_detection_score)?;
        Ok(non_max_suppression(found)
            .into_iter()
            .map(|d| Detection {
                bbox: BoundingBox {
                    x: d.bbox.x + x as f32,
                    y: d.bbox.y + y as f32,
                    ..d.bbox
                },
                ..d
            })
            .collect())
    }

    fn detect_above(&self, image: &RgbImage, min_score: f32) -> Result<Vec<Detection>> {
        let (canvas, longest_side) = FULL_SIZE_PASS;
        let mut candidates = self.detect_pass(image, canvas, longest_side, min_score)?;
        if self.needs_zoomed_out_pass(image, &candidates) {
            let (canvas, longest_side) = ZOOMED_OUT_PASS;
            candidates.extend(self.detect_pass(image, canvas, longest_side, min_score)?);
        }
        let (width, height) = image.dimensions();
        let mut kept = non_max_suppression(candidates);
        kept.retain(|d| {
            let (_, _, w, h) = d.bbox.clipped(width, height);
            w >= MIN_CROP_PX && h >= MIN_CROP_PX
        });
        Ok(kept)
    }

    /// Whether the full-size pass may have missed a close-up: it found no confident face,
    /// or its largest one is beyond `DETECTOR_FIELD_PX`, or the photo was enlarged to fill
    /// the canvas. A photo smaller than the canvas is a crop around someone (an ID photo,
    /// LFW's 250 px portraits), where the full-size pass can find a small face in the
    /// background and miss the large one in front; a camera frame is larger than the
    /// canvas and, with its face in the detector's field, pays for one pass.
    fn needs_zoomed_out_pass(&self, image: &RgbImage, full_size: &[Detection]) -> bool {
        let (_, longest_side) = FULL_SIZE_PASS;
        let (width, height) = image.dimensions();
        let scale = longest_side as f32 / width.max(height) as f32;
        let largest_confident_side = full_size
            .iter()
            .filter(|d| d.score >= self.min_detection_score)
            .map(|d| d.bbox.width.max(d.bbox.height) * scale)
            .reduce(f32::max);
        match largest_confident_side {
            None => true,
            Some(side) => side > DETECTOR_FIELD_PX || scale > 1.0,
        }
    }

    /// One detector run with the photo resized so its longest side is `longest_side` and
    /// placed at the top left of a black `canvas` x `canvas` square, as face-api.js pads.
    fn detect_pass(
        &self,
        image: &RgbImage,
        canvas: u32,
        longest_side: u32,
        min_score: f32,
    ) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        let scale = longest_side as f32 / width.max(height) as f32;
        let resized = crate::imageio::resize_bilinear(
            image,
            ((width as f32 * scale).round() as u32).clamp(1, longest_side),
            ((height as f32 * scale).round() as u32).clamp(1, longest_side),
        );
        let mut square = RgbImage::new(canvas, canvas);
        imageops::replace(&mut square, &resized, 0, 0);
        let grid = on_the_pool(|| self.detector.grid(&square, &self.device, self.isa))?;
        let cells = grid.cells;
        // One grid cell in photo pixels.
        let cell_px = canvas as f32 / cells as f32 / scale;
        let mut candidates = Vec::new();
        for cell in 0..cells * cells {
            let (row, col) = (cell / cells, cell % cells);
            for (anchor, &(anchor_w, anchor_h)) in detector::ANCHORS.iter().enumerate() {
                let channel = |k: usize| grid.logit(row, col, anchor * 5 + k);
                let score = sigmoid(channel(4));
                if score < min_score {
                    continue;
                }
                let center_x = (col as f32 + sigmoid(channel(0))) * cell_px;
                let center_y = (row as f32 + sigmoid(channel(1))) * cell_px;
                let box_w = channel(2).exp() * anchor_w * cell_px;
                let box_h = channel(3).exp() * anchor_h * cell_px;
                candidates.push(Detection {
                    bbox: BoundingBox {
                        x: center_x - box_w / 2.0,
                        y: center_y - box_h / 2.0,
                        width: box_w,
                        height: box_h,
                    },
                    score,
                });
            }
        }
        Ok(candidates)
    }

    /// 68 landmarks per detection, in image pixels, all faces in one batch. The network
    /// looks twice: at the detector's box, then at the region `LANDMARK_REGION_ON_CHIP`
    /// of the chip that the first points align.
    pub fn landmarks(&self, image: &RgbImage, detections: &[Detection]) -> Result<Vec<Vec<Point>>> {
        let mut points = self.landmarks_in_boxes(image, detections)?;
        let chip_size = recognition::CHIP_SIZE as f64;
        let (centre_x, centre_y, side) = LANDMARK_REGION_ON_CHIP;
        // Points too degenerate to align on are left as the first look found them.
        let (faces, regions): (Vec<usize>, Vec<Similarity>) = points
            .iter()
            .enumerate()
            .filter_map(|(face, first)| {
                let chip = align::chip_transform(first, recognition::CHIP_SIZE as u32)?;
                let (x, y) = chip.apply(centre_x * chip_size, centre_y * chip_size);
                let side = side * chip_size * chip.scale();
                let region = Similarity {
                    a: side / landmarks::INPUT_SIZE as f64,
                    b: 0.0,
                    tx: x - side / 2.0,
                    ty: y - side / 2.0,
                };
                Some((face, region))
            })
            .unzip();
        let size = landmarks::INPUT_SIZE as u32;
        let crops: Vec<RgbImage> = regions
            .iter()
            .map(|region| align::extract_chip(image, region, size))
            .collect();
        for (face, second) in faces
            .into_iter()
            .zip(self.run_landmark_net(&crops, &regions)?)
        {
            points[face] = second;
        }
        Ok(points)
    }

    /// The first look: each detector box, clipped to the image and centred on a black
    /// square, as face-api.js feeds the network.
    fn landmarks_in_boxes(
        &self,
        image: &RgbImage,
        detections: &[Detection],
    ) -> Result<Vec<Vec<Point>>> {
        if detections.is_empty() {
            return Ok(Vec::new());
        }
        let size = landmarks::INPUT_SIZE as u32;
        let (crops, regions): (Vec<RgbImage>, Vec<Similarity>) = detections
            .iter()
            .map(|d| {
                let (x, y, w, h) = d.bbox.clipped(image.width(), image.height());
                let side = w.max(h);
                let (offset_x, offset_y) = ((side - w) / 2, (side - h) / 2);
                let mut square = RgbImage::new(side, side);
                imageops::replace(
                    &mut square,
                    &*imageops::crop_imm(image, x, y, w, h),
                    i64::from(offset_x),
                    i64::from(offset_y),
                );
                let crop = crate::imageio::resize_bilinear(&square, size, size);
                let region = Similarity {
                    a: f64::from(side) / f64::from(size),
                    b: 0.0,
                    tx: f64::from(x) - f64::from(offset_x),
                    ty: f64::from(y) - f64::from(offset_y),
                };
                (crop, region)
            })
            .unzip();
        self.run_landmark_net(&crops, &regions)
    }

    /// The landmark network on square crops, with the map from each crop's pixels to the
    /// image's.
    fn run_landmark_net(
        &self,
        crops: &[RgbImage],
        to_image: &[Similarity],
    ) -> Result<Vec<Vec<Point>>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let size = landmarks::INPUT_SIZE as f64;
        let output = on_the_pool(|| self.landmarks.points(crops, &self.device, self.isa))?;
        Ok(output
            .iter()
            .zip(to_image)
            .map(|(values, region)| {
                values
                    .chunks_exact(2)
                    .map(|xy| {
                        let (x, y) = region.apply(f64::from(xy[0]) * size, f64::from(xy[1]) * size);
                        Point {
                            x: x as f32,
                            y: y as f32,
                        }
                    })
                    .collect()
            })
            .collect())
    }

    /// Embeddings of aligned 150x150 chips as the store keeps them: the mean of the
    /// network's embeddings of each chip and of its mirror image. On LFW DevTrain this won
    /// by 1-2 of 2200 pairs, within noise (README), for twice the network work.
    pub fn embed_chips(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let mirrors = chips.iter().map(imageops::flip_horizontal);
        let both: Vec<RgbImage> = chips.iter().cloned().chain(mirrors).collect();
        let embeddings = self.network_embeddings(&both)?;
        let (plain, mirrored) = embeddings.split_at(chips.len());
        Ok(plain
            .iter()
            .zip(mirrored)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect())
            .collect())
    }

    /// The recognition network's embeddings of aligned 150x150 chips, one pass each, in
    /// one batch.
    pub fn network_embeddings(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(wrong) = chips.iter().find_map(|c| wrong_chip_size(c.dimensions())) {
            return Err(Error::Invalid(wrong));
        }
        if self.device.is_cpu() {
            return on_the_pool(|| self.recognition.embed_chips_cpu(chips, self.isa))
                .map_err(Error::from);
        }
        let input = to_input_tensor(chips, recognition::MEAN_RGB, &self.device)?;
        let embeddings = on_the_pool(|| self.recognition.forward(&input, self.isa))?;
        Ok(embeddings.to_vec2::<f32>()?)
    }
}

impl CropEmbedder for FaceModels {
    fn modality(&self) -> Modality {
        Modality::Face
    }

    fn model_id(&self) -> String {
        FaceModels::model_id(self)
    }

    fn template_shape(&self) -> TemplateShape {
        TEMPLATE_SHAPE
    }

    fn embed_stored(&self, stored: &[&[u8]]) -> Result<Vec<Embedded>> {
        let chips = stored
            .iter()
            .map(|bytes| {
                let chip = crate::imageio::decode(bytes, Path::new("a stored face chip"))
                    .map_err(|e| CropProblem::Unreadable(e.to_string()))?;
                match wrong_chip_size((chip.width(), chip.height())) {
                    Some(reason) => Err(CropProblem::Refused(reason)),
                    None => Ok(chip.to_rgb8()),
                }
            })
            .collect();
        embed_each(chips, |chips| self.embed_chips(chips))
    }
}

/// Why a chip of (width, height) cannot be embedded, if it cannot.
fn wrong_chip_size((width, height): (u32, u32)) -> Option<String> {
    let size = recognition::CHIP_SIZE as u32;
    ((width, height) != (size, size))
        .then(|| format!("a face chip must be {size}x{size}, not {width}x{height}"))
}

/// Runs a network's forward pass on a rayon worker, so that its layers' fork-joins stay
/// inside the pool instead of waking it from outside once per layer.
fn on_the_pool<T: Send>(forward: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| forward())
}

/// The aligned 150x150 chip for a face's 68 landmarks.
pub fn align_chip(image: &RgbImage, landmarks: &[Point]) -> Result<RgbImage> {
    let size = recognition::CHIP_SIZE as u32;
    let transform = align::chip_transform(landmarks, size)
        .ok_or_else(|| Error::Invalid("degenerate landmarks: cannot align the face".into()))?;
    Ok(align::extract_chip(image, &transform, size))
}

/// Same-sized RGB images -> [N, 3, H, W] with `(pixel - mean) / 255`, as the networks
/// were trained.
pub fn to_input_tensor(
    images: &[RgbImage],
    mean_rgb: [f32; 3],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let (width, height) = images[0].dimensions();
    let plane = (width * height) as usize;
    let mut data = vec![0f32; images.len() * 3 * plane];
    use rayon::prelude::*;
    let batch = images.par_iter().zip(data.par_chunks_exact_mut(3 * plane));
    batch.for_each(|(image, planes)| {
        for (index, pixel) in image.pixels().enumerate() {
            for channel in 0..3 {
                planes[channel * plane + index] =
                    (f32::from(pixel.0[channel]) - mean_rgb[channel]) / 255.0;
            }
        }
    });
    Tensor::from_vec(
        data,
        (images.len(), 3, height as usize, width as usize),
        device,
    )
}

/// The photo's subject among `faces` (see `FaceModels::main_face`): the kiosk and every
/// check-in use this rule, so a photo of two people punches the same one everywhere.
pub fn subject_index(faces: &[Face], dimensions: (u32, u32)) -> Option<usize> {
    subject_of(faces.iter().map(|f| (f.bbox, f.prominence())), dimensions)
}

/// `subject_index` for detections not yet described.
pub fn subject_of_detections(detections: &[Detection], dimensions: (u32, u32)) -> Option<usize> {
    subject_of(
        detections.iter().map(|d| (d.bbox, d.prominence())),
        dimensions,
    )
}

/// The index of the most prominent of (box, prominence) among those covering the centre
/// of a `width` x `height` photo, or among all when none does.
fn subject_of(
    boxes: impl Iterator<Item = (BoundingBox, f32)>,
    (width, height): (u32, u32),
) -> Option<usize> {
    let (centre_x, centre_y) = (width as f32 / 2.0, height as f32 / 2.0);
    let covers_centre = |b: &BoundingBox| {
        (b.x..=b.x + b.width).contains(&centre_x) && (b.y..=b.y + b.height).contains(&centre_y)
    };
    boxes
        .enumerate()
        .max_by(|(_, (a, a_prominence)), (_, (b, b_prominence))| {
            covers_centre(a)
                .cmp(&covers_centre(b))
                .then(a_prominence.total_cmp(b_prominence))
        })
        .map(|(index, _)| index)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Greedy by score: a box is dropped when it overlaps a kept one (IoU over `NMS_IOU`) or
/// contains or lies within one (`MAX_CONTAINED`).
fn non_max_suppression(mut candidates: Vec<Detection>) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in candidates {
        if kept.iter().all(|k| {
            k.bbox.iou(&candidate.bbox) <= NMS_IOU
                && k.bbox.containment(&candidate.bbox) <= MAX_CONTAINED
        }) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(x: f32, score: f32) -> Detection {
        Detection {
            bbox: BoundingBox {
                x,
                y: 0.0,
                width: 10.0,
                height: 10.0,
            },
            score,
        }
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let kept = non_max_suppression(vec![
            detection(1.0, 0.6),
            detection(0.0, 0.9),
            detection(50.0, 0.7),
        ]);
        let xs: Vec<f32> = kept.iter().map(|d| d.bbox.x).collect();
        assert_eq!(xs, vec![0.0, 50.0]);
    }

    #[test]
    fn suppression_drops_a_doubtful_box_around_a_face() {
        let face = detection(40.0, 0.9);
        let around = Detection {
            bbox: BoundingBox {
                x: 0.0,
                y: -20.0,
                width: 100.0,
                height: 100.0,
            },
            score: 0.6,
        };
        assert_eq!(non_max_suppression(vec![around, face]), vec![face]);
    }

    #[test]
    fn the_subject_is_the_face_at_the_centre_even_when_smaller() {
        let large_off_centre = detection(0.0, 0.9);
        let mut small_at_centre = detection(45.0, 0.8);
        small_at_centre.bbox.width = 8.0;
        small_at_centre.bbox.y = 45.0;
        let pool = [large_off_centre, small_at_centre];
        let boxes = || pool.iter().map(|d| (d.bbox, d.prominence()));
        assert_eq!(subject_of(boxes(), (100, 100)), Some(1));
        assert_eq!(subject_of(boxes(), (200, 200)), Some(0));
    }

    #[test]
    fn clipping_stays_inside_the_image() {
        let bbox = BoundingBox {
            x: -5.5,
            y: 90.0,
            width: 30.0,
            height: 30.0,
        };
        assert_eq!(bbox.clipped(100, 100), (0, 90, 24, 10));
    }
}
