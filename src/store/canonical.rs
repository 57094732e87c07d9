//! One unambiguous byte form for lists of values, shared by every hash and seal the store
//! computes: each part is preceded by its length, so no two different lists read the same.

/// Feeds `parts`, each prefixed with its length, to `update`.
pub fn feed(update: &mut impl FnMut(&[u8]), parts: &[&[u8]]) {
    for part in parts {
        update(&(part.len() as u64).to_le_bytes());
        update(part);
    }
}

/// A stored value as bytes that say its type: NULL, an integer, a real (its exact bits),
/// text, or a blob never read the same.
pub fn encode_value(value: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    let (tag, bytes): (u8, &[u8]) = match value {
        ValueRef::Null => (b'N', &[]),
        ValueRef::Integer(i) => return [b"I".as_slice(), i.to_string().as_bytes()].concat(),
        ValueRef::Real(f) => return [b"R".as_slice(), &f.to_bits().to_le_bytes()].concat(),
        ValueRef::Text(t) => (b'T', t),
        ValueRef::Blob(b) => (b'B', b),
    };
    [&[tag], bytes].concat()
}

/// The first `count` columns of `row`, encoded.
pub fn encode_columns(row: &rusqlite::Row<'_>, count: usize) -> rusqlite::Result<Vec<Vec<u8>>> {
    (0..count)
        .map(|i| Ok(encode_value(row.get_ref(i)?)))
        .collect()
}
