//! The checksum both engines' rows are compared by: each value encoded with its type,
//! rows hashed in key order (or summed, without a key).

use sha2::{Digest as _, Sha256};

use super::value::{Kind, Value};

/// A table's checksum: its rows in key order hashed as one stream, or, for a table
/// without a primary key, the sum of each row's hash (any order gives the same sum).
pub struct Digest {
    rows: u64,
    ordered: Option<Sha256>,
    sum: [u64; 4],
    row: Vec<u8>,
}

impl Digest {
    /// A checksum over rows read in key order (`ordered`) or in any order.
    pub fn new(ordered: bool) -> Self {
        Self {
            rows: 0,
            ordered: ordered.then(Sha256::new),
            sum: [0; 4],
            row: Vec::with_capacity(256),
        }
    }

    /// Adds one row: each value with its column's kind.
    pub fn add(&mut self, kinds: &[Kind], row: &[Value]) {
        self.row.clear();
        for (kind, value) in kinds.iter().zip(row) {
            encode(kind, value, &mut self.row);
        }
        self.rows += 1;
        match &mut self.ordered {
            Some(hasher) => {
                hasher.update((self.row.len() as u64).to_be_bytes());
                hasher.update(&self.row);
            }
            None => {
                let hash = Sha256::digest(&self.row);
                let mut carry = false;
                for (i, part) in self.sum.iter_mut().enumerate() {
                    let word =
                        u64::from_be_bytes(hash[i * 8..i * 8 + 8].try_into().unwrap_or_default());
                    let (s1, c1) = part.overflowing_add(word);
                    let (s2, c2) = s1.overflowing_add(u64::from(carry));
                    *part = s2;
                    carry = c1 || c2;
                }
            }
        }
    }

    /// Rows added and the checksum in hex (16 bytes are plenty to tell tables apart).
    pub fn finish(self) -> (u64, String) {
        let bytes: Vec<u8> = match self.ordered {
            Some(hasher) => hasher.finalize().to_vec(),
            None => self.sum.iter().flat_map(|w| w.to_be_bytes()).collect(),
        };
        let hex = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
        (self.rows, hex)
    }
}

/// The engine-neutral encoding: a tag, then the value (lengths before variable data).
fn encode(kind: &Kind, value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'N'),
        Value::Int(i) => {
            out.push(b'I');
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(f) => {
            // -0.0 and 0.0 are one value (SQLite keeps no negative zero).
            let f = if *f == 0.0 { 0.0f64 } else { *f };
            out.push(b'R');
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[b'b', u8::from(*b)]),
        Value::Text(s) if *kind == Kind::Json => {
            let canonical = serde_json::from_str::<serde_json::Value>(s)
                .map(|v| canonical_json(&v))
                .unwrap_or_else(|_| s.clone());
            encode_bytes(b'T', canonical.as_bytes(), out);
        }
        // `char(n)` pads with spaces that do not count, and PostgreSQL drops them on output.
        Value::Text(s) if matches!(kind, Kind::Char(_)) => {
            encode_bytes(b'T', s.trim_end_matches(' ').as_bytes(), out)
        }
        Value::Text(s) => encode_bytes(b'T', s.as_bytes(), out),
        Value::Blob(b) | Value::InvalidText(b) => encode_bytes(b'B', b, out),
    }
}

fn encode_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// JSON with object keys sorted and no spaces, as `jsonb` would compare it.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::Value::from(k.as_str()),
                        canonical_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", inner.join(","))
        }
        // `jsonb` keeps numbers as exact decimals (`1e2` becomes `100`): compare values.
        serde_json::Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            Some(f) => format!("{f}"),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_compares_parsed() {
        let mut a = Digest::new(true);
        let mut b = Digest::new(true);
        a.add(
            &[Kind::Json],
            &[Value::Text(r#"{"b": 1, "a": [1, 2]}"#.into())],
        );
        b.add(&[Kind::Json], &[Value::Text(r#"{"a":[1,2],"b":1}"#.into())]);
        assert_eq!(a.finish(), b.finish());
        let mut a = Digest::new(true);
        let mut b = Digest::new(true);
        a.add(
            &[Kind::Json],
            &[Value::Text(r#"{"n": 1e2, "m": 1.50}"#.into())],
        );
        b.add(
            &[Kind::Json],
            &[Value::Text(r#"{"m": 1.5, "n": 100}"#.into())],
        );
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn unordered_sum_ignores_order() {
        let kinds = [Kind::Integer(64)];
        let mut a = Digest::new(false);
        let mut b = Digest::new(false);
        for i in 0..100 {
            a.add(&kinds, &[Value::Int(i)]);
            b.add(&kinds, &[Value::Int(99 - i)]);
        }
        assert_eq!(a.finish(), b.finish());
    }
}
