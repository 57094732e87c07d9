//! Converts the face-api.js networks (`*-weights_manifest.json` + `.bin`, from the MIT npm
//! package `@vladmandic/face-api`, folder `model/`) to safetensors in candle's layout.
//!
//! The conversion is faithful: every tensor is dequantised (`q * scale + min`) and
//! transposed, nothing is folded or renamed beyond the layout, so that an independent
//! reference can be run on the same numbers. Folding happens when a network is loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use super::{DETECTOR_FILE, LANDMARKS_FILE, RECOGNITION_FILE};
use crate::error::{Error, Result};

/// The face-api.js network names and the file each becomes.
pub const NETWORKS: [(&str, &str); 3] = [
    ("tiny_face_detector_model", DETECTOR_FILE),
    ("face_landmark_68_model", LANDMARKS_FILE),
    ("face_recognition_model", RECOGNITION_FILE),
];

#[derive(Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

#[derive(Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    scale: f32,
    min: f32,
}

/// Imports all three networks from `source` (the package's `model/` folder) into `out`,
/// returning the files written.
pub fn import_dir(source: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(e, out))?;
    let mut written = Vec::new();
    for (network, file) in NETWORKS {
        let tensors = read_network(source, network)?;
        let target = out.join(file);
        // Write beside the target and rename, so a crash never leaves half a model.
        let partial = out.join(format!("{file}.partial"));
        candle_core::safetensors::save(&tensors, &partial)?;
        std::fs::rename(&partial, &target).map_err(|e| Error::io(e, &target))?;
        tracing::info!(network, path = %target.display(), tensors = tensors.len(), "imported");
        written.push(target);
    }
    Ok(written)
}

/// Reads one network's manifest and weight files into candle-layout tensors.
pub fn read_network(source: &Path, network: &str) -> Result<HashMap<String, Tensor>> {
    let manifest_path = source.join(format!("{network}-weights_manifest.json"));
    let manifest_text =
        std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(e, &manifest_path))?;
    let bad = |reason: String| Error::BadModel {
        reason,
        path: manifest_path.clone(),
    };
    let groups: Vec<ManifestGroup> =
        serde_json::from_str(&manifest_text).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for group in groups {
        let mut data = Vec::new();
        for part in &group.paths {
            let path = source.join(part);
            data.extend(std::fs::read(&path).map_err(|e| Error::io(e, &path))?);
        }
        let mut offset = 0;
        for spec in &group.weights {
            if spec.dtype != "float32" {
                return Err(bad(format!(
                    "{}: unsupported dtype {}",
                    spec.name, spec.dtype
                )));
            }
            let count: usize = spec.shape.iter().product();
            let (values, used) = dequantize(&data[offset.min(data.len())..], count, spec)
                .ok_or_else(|| bad(format!("{}: weight file too short", spec.name)))?;
            offset += used;
            let tensor = Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu)?;
            let (name, tensor) = to_candle_layout(&spec.name, tensor)?;
            tensors.insert(name, tensor);
        }
        if offset != data.len() {
            return Err(bad(format!(
                "{} bytes left over after the last weight",
                data.len() - offset
            )));
        }
    }
    Ok(tensors)
}

/// Returns the values and the number of bytes they took.
fn dequantize(bytes: &[u8], count: usize, spec: &WeightSpec) -> Option<(Vec<f32>, usize)> {
    match &spec.quantization {
        None => {
            let used = count * 4;
            let values = bytes
                .get(..used)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Some((values, used))
        }
        Some(q) if q.dtype == "uint8" => {
            let values = bytes
                .get(..count)?
                .iter()
                .map(|&v| v as f32 * q.scale + q.min)
                .collect();
            Some((values, count))
        }
        Some(q) if q.dtype == "uint16" => {
            let used = count * 2;
            let values = bytes
                .get(..used)?
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as f32 * q.scale + q.min)
                .collect();
            Some((values, used))
        }
        Some(_) => None,
    }
}

/// TensorFlow.js stores convolutions as HWIO, depthwise filters as HWC1 and dense layers as
/// [in, out]; candle wants OIHW, C1HW and [out, in]. Names become dotted, `filters` and
/// `weights` of dense layers become `weight`.
fn to_candle_layout(tfjs_name: &str, tensor: Tensor) -> Result<(String, Tensor)> {
    let (prefix, leaf) = match tfjs_name.rsplit_once('/') {
        Some((prefix, leaf)) => (format!("{}.", prefix.replace('/', ".")), leaf),
        None => (String::new(), tfjs_name),
    };
    let converted = match (leaf, tensor.rank()) {
        ("filters", 4) => (
            format!("{prefix}weight"),
            tensor.permute((3, 2, 0, 1))?.contiguous()?,
        ),
        ("depthwise_filter", 4) => (
            format!("{prefix}depthwise.weight"),
            tensor.permute((2, 3, 0, 1))?.contiguous()?,
        ),
        ("pointwise_filter", 4) => (
            format!("{prefix}pointwise.weight"),
            tensor.permute((3, 2, 0, 1))?.contiguous()?,
        ),
        ("weights", 2) => (format!("{prefix}weight"), tensor.t()?.contiguous()?),
        ("fc", 2) => ("fc.weight".to_string(), tensor.t()?.contiguous()?),
        ("weights", 1) => (format!("{prefix}weight"), tensor),
        ("biases" | "bias", 1) => (format!("{prefix}bias"), tensor),
        _ => {
            return Err(Error::Invalid(format!(
                "unexpected tensor {tfjs_name} of rank {}",
                tensor.rank()
            )));
        }
    };
    Ok(converted)
}
