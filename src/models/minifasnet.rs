//! Converts the Silent-Face-Anti-Spoofing MiniFASNet weights (PyTorch state dicts in the
//! legacy, pre-1.6 serialisation: a run of pickles followed by the raw storages) to
//! safetensors. candle reads the zip format only, so the legacy layout is read here (with
//! candle's unpickler after the magic number): the magic number, the protocol, the system
//! info, the state dict
//! (each tensor a `_rebuild_tensor_v2` of a persistent storage id), the storage keys, then
//! each storage as its element count and little-endian values.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The two networks upstream runs together: (its file, ours, the crop's scale).
pub const NETWORKS: [(&str, &str, f32); 2] = [
    (
        "2.7_80x80_MiniFASNetV2.pth",
        "liveness_minifasnet_v2.safetensors",
        2.7,
    ),
    (
        "4_0_0_80x80_MiniFASNetV1SE.pth",
        "liveness_minifasnet_v1se.safetensors",
        4.0,
    ),
];

/// A legacy file's first pickle: protocol 2, the 10-byte integer 0x1950a86a20f9469cfc6c
/// (little-endian), stop.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
/// The protocol version PyTorch writes after its magic number in a legacy file.
const LEGACY_PROTOCOL: i32 = 1001;

/// Converts both networks found in `source` into `out`; returns the files written.
pub fn import_dir(source: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    NETWORKS
        .iter()
        .map(|(file, converted, scale)| {
            let from = source.join(file);
            let bytes = std::fs::read(&from).map_err(|e| Error::io(e, &from))?;
            let tensors = read_legacy_state_dict(&bytes, &from)?;
            let target = out.join(converted);
            let metadata = HashMap::from([
                ("source".to_string(), (*file).to_string()),
                (
                    "source_sha256".to_string(),
                    hex::encode(Sha256::digest(&bytes)),
                ),
                ("crop_scale".to_string(), scale.to_string()),
            ]);
            super::save_weights(&target, &tensors, metadata)?;
            Ok(target)
        })
        .collect()
}

/// Where one tensor's values lie: its storage, the offset into it, its shape.
struct TensorRef {
    storage: String,
    offset: usize,
    shape: Vec<usize>,
}

/// The float tensors of a legacy state dict, named without DataParallel's `module.`
/// prefix; integer buffers (batch norm's step counters) are left out.
pub fn read_legacy_state_dict(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bad = |reason: String| Error::BadModel {
        reason,
        path: path.to_path_buf(),
    };
    // The magic number is read here, not by candle's unpickler: its 10-byte integer
    // overflows candle's (debug builds panic on it).
    let rest = bytes
        .strip_prefix(LEGACY_MAGIC.as_slice())
        .ok_or_else(|| bad("not a legacy PyTorch file (no magic number)".into()))?;
    let mut reader = std::io::BufReader::new(rest);
    let mut next = |what: &str| -> Result<Object> {
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut reader)
            .and_then(|()| stack.finalize())
            .map_err(|e| bad(format!("reading the {what}: {e}")))
    };
    match next("protocol version")? {
        Object::Int(LEGACY_PROTOCOL) => {}
        other => {
            return Err(bad(format!(
                "not a legacy PyTorch file (protocol {other:?})"
            )));
        }
    }
    next("system information")?;
    let Object::Dict(entries) = next("state dict")? else {
        return Err(bad("the state dict is not a dictionary".into()));
    };
    let Object::List(keys) = next("storage keys")? else {
        return Err(bad("the storage keys are not a list".into()));
    };
    let mut float_tensors = Vec::new();
    let mut storage_kinds: HashMap<String, (String, usize)> = HashMap::new();
    for (name, value) in entries {
        let name = name
            .unicode()
            .map_err(|o| bad(format!("a key is not a name: {}", brief(&o))))?;
        // The OrderedDict's attribute with each module's version comes along as a key.
        if name == "_metadata" {
            continue;
        }
        let (storage, kind, numel, tensor) =
            tensor_ref(value).map_err(|o| bad(format!("{name}: not a tensor: {}", brief(&o))))?;
        storage_kinds.insert(storage.clone(), (kind.clone(), numel));
        if kind == "FloatStorage" {
            let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
            float_tensors.push((name, tensor));
        }
    }
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    for key in keys {
        let key = key
            .unicode()
            .map_err(|o| bad(format!("a storage key is not a name: {}", brief(&o))))?;
        let (kind, _) = storage_kinds
            .get(&key)
            .ok_or_else(|| bad(format!("storage {key} belongs to no tensor")))?;
        let mut count = [0u8; 8];
        reader
            .read_exact(&mut count)
            .map_err(|e| bad(format!("storage {key}: {e}")))?;
        let count = usize::try_from(u64::from_le_bytes(count))
            .map_err(|e| bad(format!("storage {key}: {e}")))?;
        let element = match kind.as_str() {
            "FloatStorage" => 4,
            "LongStorage" | "DoubleStorage" => 8,
            other => return Err(bad(format!("storage {key}: unsupported {other}"))),
        };
        let mut raw = vec![
            0u8;
            count
                .checked_mul(element)
                .ok_or_else(|| bad("size".into()))?
        ];
        reader
            .read_exact(&mut raw)
            .map_err(|e| bad(format!("storage {key}: {e}")))?;
        if element == 4 {
            let values = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            storages.insert(key, values);
        }
    }
    if !reader
        .fill_buf()
        .map_err(|e| Error::io(e, path))?
        .is_empty()
    {
        return Err(bad("bytes left after the last storage".into()));
    }
    float_tensors
        .into_iter()
        .map(|(name, tensor)| {
            let values = storages
                .get(&tensor.storage)
                .ok_or_else(|| bad(format!("{name}: its storage is missing")))?;
            let len: usize = tensor.shape.iter().product();
            let slice = values
                .get(tensor.offset..tensor.offset + len)
                .ok_or_else(|| bad(format!("{name}: outside its storage")))?;
            let tensor = Tensor::from_slice(slice, tensor.shape.as_slice(), &Device::Cpu)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            Ok((name, tensor))
        })
        .collect()
}

/// An unpickled object for an error message, cut short.
fn brief(object: &Object) -> String {
    let text = format!("{object:?}");
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: the storage's key, class
/// and element count, and where the tensor lies in it (row-major only).
fn tensor_ref(value: Object) -> std::result::Result<(String, String, usize, TensorRef), Object> {
    let (_, args) = value.reduce()?;
    let mut args = args.tuple()?.into_iter();
    let storage = args.next().ok_or(Object::None)?.persistent_load()?;
    let mut storage = storage.tuple()?.into_iter().skip(1);
    let (_, kind) = storage.next().ok_or(Object::None)?.class()?;
    let key = storage.next().ok_or(Object::None)?.unicode()?;
    let _location = storage.next();
    let numel = storage.next().ok_or(Object::None)?.int_or_long()?;
    let offset = args.next().ok_or(Object::None)?.int_or_long()?;
    let dims = |object: Object| -> std::result::Result<Vec<usize>, Object> {
        object
            .tuple()?
            .into_iter()
            .map(|d| d.int_or_long().map(|d| d as usize))
            .collect()
    };
    let shape = dims(args.next().ok_or(Object::None)?)?;
    let stride = dims(args.next().ok_or(Object::None)?)?;
    let mut expected = 1;
    for (size, step) in shape.iter().zip(&stride).rev() {
        if *size > 1 && *step != expected {
            return Err(Object::Tuple(vec![]));
        }
        expected *= size;
    }
    Ok((
        key.clone(),
        kind,
        numel as usize,
        TensorRef {
            storage: key,
            offset: offset as usize,
            shape,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_legacy_state_dicts_are_errors() {
        let path = Path::new("weights.pth");
        let mut truncated = LEGACY_MAGIC.to_vec();
        truncated.extend([0x80, 0x02, 0x4d]);
        let mut wrong_protocol = LEGACY_MAGIC.to_vec();
        wrong_protocol.extend([0x80, 0x02, 0x4b, 0x07, 0x2e]);
        for bytes in [
            Vec::new(),
            b"PK\x03\x04 a zip, not a legacy file".to_vec(),
            LEGACY_MAGIC.to_vec(),
            truncated,
            wrong_protocol,
        ] {
            assert!(matches!(
                read_legacy_state_dict(&bytes, path),
                Err(Error::BadModel { .. })
            ));
        }
    }
}
