//! One unambiguous byte form for lists of values, shared by every hash and seal the store
//! computes: each part is preceded by its length, so no two different lists read the same.

use super::sql::{Row, Value};

/// Feeds `parts`, each prefixed with its length, to `update`.
pub fn feed(update: &mut impl FnMut(&[u8]), parts: &[&[u8]]) {
    for part in parts {
        update(&(part.len() as u64).to_le_bytes());
        update(part);
    }
}

/// A stored value as bytes that say its type: NULL, an integer, a real (its exact bits),
/// text, or a blob never read the same.
pub fn encode_value(value: &Value) -> Vec<u8> {
    let (tag, bytes): (u8, &[u8]) = match value {
        Value::Null => (b'N', &[]),
        Value::Integer(i) => return [b"I".as_slice(), i.to_string().as_bytes()].concat(),
        Value::Real(f) => return [b"R".as_slice(), &f.to_bits().to_le_bytes()].concat(),
        Value::Text(t) => (b'T', t.as_bytes()),
        Value::Blob(b) => (b'B', b),
    };
    [&[tag], bytes].concat()
}

/// The first `count` columns of `row`, encoded.
pub fn encode_columns(row: &Row, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| encode_value(row.value(i))).collect()
}
