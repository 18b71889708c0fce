//! kine's NATS encoding of keys and values (kine `pkg/drivers/nats/codec.go`):
//! pure functions, unit tested below. The format is described in the
//! [parent module](super).

use base64::engine::general_purpose::STANDARD as B64;
use std::io::{Read, Write};

/// A key kine's NATS encoding cannot hold exactly, or a KV value that is not
/// a kine event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// The KV key kine stores `key` under: segments base58-encoded, joined by `.`.
///
/// Refuses keys kine's encoding cannot give back exactly: not starting with
/// `/`, ending with `/`, or holding an empty segment (`//`).
pub fn encode_key(key: &[u8]) -> Result<String, CodecError> {
    let shown = || String::from_utf8_lossy(key).into_owned();
    let Some(rest) = key.strip_prefix(b"/") else {
        return Err(CodecError(format!("key {:?} does not start with /", shown())));
    };
    if rest.is_empty() || rest.ends_with(b"/") {
        return Err(CodecError(format!("key {:?} ends with /, which kine's NATS key encoding drops", shown())));
    }
    let mut out = String::with_capacity(key.len() * 2);
    for (i, seg) in rest.split(|&b| b == b'/').enumerate() {
        if seg.is_empty() {
            return Err(CodecError(format!(
                "key {:?} has an empty path segment, which kine's NATS key encoding cannot hold",
                shown()
            )));
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(&bs58::encode(seg).into_string());
    }
    Ok(out)
}

/// The key a KV key stands for: tokens base58-decoded, joined by `/`, with a
/// leading `/`. An empty token or one that is not base58 is an error.
pub fn decode_key(kv_key: &str) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(kv_key.len());
    for tok in kv_key.split('.') {
        if tok.is_empty() {
            return Err(CodecError(format!("KV key {kv_key:?} has an empty token")));
        }
        let seg = bs58::decode(tok)
            .into_vec()
            .map_err(|e| CodecError(format!("KV key {kv_key:?} is not kine's base58 encoding: {e}")))?;
        out.push(b'/');
        out.extend_from_slice(&seg);
    }
    Ok(out)
}

/// `data` in the S2 stream format, as klauspost `s2.NewWriter` writes it.
pub fn s2_compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 32);
    {
        let mut w = minlz::s2::Writer::new(&mut out);
        // Writing into a Vec cannot fail.
        w.write_all(data).expect("write to Vec");
        w.flush().expect("flush to Vec");
    }
    out
}

/// Decompress an S2 stream (or a Snappy-framed stream).
pub fn s2_decompress(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(data.len() * 2);
    minlz::s2::Reader::new(data).read_to_end(&mut out).map_err(|e| CodecError(format!("not an S2 stream: {e}")))?;
    Ok(out)
}

/// kine's `KeyValue` (Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KineKv {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "CreateRevision")]
    pub create_revision: i64,
    #[serde(rename = "ModRevision")]
    pub mod_revision: i64,
    /// Go `[]byte`: standard base64, `null` for nil.
    #[serde(rename = "Value", with = "go_bytes")]
    pub value: Option<Vec<u8>>,
    #[serde(rename = "Lease")]
    pub lease: i64,
}

/// kine's `Event`, the JSON it stores in every KV value (Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KineEvent {
    #[serde(rename = "KV")]
    pub kv: Option<KineKv>,
    #[serde(rename = "PrevRevision")]
    pub prev_revision: i64,
    #[serde(rename = "Create")]
    pub create: bool,
    #[serde(rename = "Delete")]
    pub delete: bool,
}

/// Go's JSON form of `[]byte`.
mod go_bytes {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s.as_bytes()).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The KV value kine writes for a new key `key` (absolute) holding `value`.
pub fn encode_value(key: &str, value: &[u8]) -> Vec<u8> {
    let event = KineEvent {
        kv: Some(KineKv {
            key: key.to_string(),
            create_revision: 0,
            mod_revision: 0,
            value: Some(value.to_vec()),
            lease: 0,
        }),
        prev_revision: 0,
        create: true,
        delete: false,
    };
    s2_compress(&serde_json::to_vec(&event).expect("serialize kine event"))
}

/// The event a KV value holds.
pub fn decode_value(data: &[u8]) -> Result<KineEvent, CodecError> {
    let json = s2_decompress(data)?;
    serde_json::from_slice(&json).map_err(|e| CodecError(format!("not a kine event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_segment_by_segment() {
        let k = encode_key(b"/registry/pods/ns/x").unwrap();
        let parts: Vec<String> =
            ["registry", "pods", "ns", "x"].iter().map(|s| bs58::encode(s).into_string()).collect();
        assert_eq!(k, parts.join("."));
        // A dot inside a segment stays inside its base58 token.
        let k = encode_key(b"/registry/a.b/c").unwrap();
        assert_eq!(k.split('.').count(), 3);
        assert_eq!(decode_key(&k).unwrap(), b"/registry/a.b/c");
        // Any bytes, including leading zero bytes base58 keeps as '1's.
        let odd = b"/registry/\x00\x00\xff/\xe2\x98\x83 x/-_=";
        assert_eq!(decode_key(&encode_key(odd).unwrap()).unwrap(), odd);
        for k in [&b"/registry/x"[..], b"/a", b"/registry/configmaps/kube-system/extension-apiserver-authentication"] {
            let e = encode_key(k).unwrap();
            assert!(e.bytes().all(|b| b == b'.' || b.is_ascii_alphanumeric()), "{e}");
            assert_eq!(decode_key(&e).unwrap(), k);
        }
    }

    #[test]
    fn keys_that_cannot_round_trip_are_refused() {
        for bad in [&b"registry/x"[..], b"/", b"/registry/x/", b"/registry//x", b""] {
            assert!(encode_key(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode_key("abc..def").is_err());
        assert!(decode_key("").is_err());
        assert!(decode_key("0OIl").is_err()); // not in the Bitcoin alphabet
    }

    #[test]
    fn s2_stream_round_trip() {
        for data in [
            &b"x"[..],
            b"{\"KV\":null}",
            &vec![7u8; 3 << 20],
            &(0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
        ] {
            let c = s2_compress(data);
            assert!(c.starts_with(b"\xff\x06\x00\x00S2sTwO"), "S2 stream identifier");
            assert_eq!(s2_decompress(&c).unwrap(), data);
        }
        let mut bad = s2_compress(b"hello hello hello hello");
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        assert!(s2_decompress(&bad).is_err());
        assert!(s2_decompress(b"not s2").is_err());
    }

    /// A Snappy framed stream: identifier, one uncompressed and one compressed chunk.
    #[test]
    fn snappy_framed_streams_are_read() {
        let mut s = b"\xff\x06\x00\x00sNaPpY".to_vec();
        let mut chunk = |kind: u8, crc_of: &[u8], body: &[u8]| {
            let len = body.len() + 4;
            s.push(kind);
            s.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
            s.extend_from_slice(&minlz::crc::crc(crc_of).to_le_bytes());
            s.extend_from_slice(body);
        };
        chunk(0x01, b"plain ", b"plain ");
        let text = b"snappy snappy snappy snappy snappy";
        chunk(0x00, text, &minlz::s2::encode_snappy(text));
        assert_eq!(s2_decompress(&s).unwrap(), b"plain snappy snappy snappy snappy snappy");
    }

    #[test]
    fn json_matches_kines_field_names() {
        let v = encode_value("/registry/pods/ns/x", b"\x00k8s\xff");
        let json = s2_decompress(&v).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"KV":{"Key":"/registry/pods/ns/x","CreateRevision":0,"ModRevision":0,"Value":"AGs4c/8=","Lease":0},"PrevRevision":0,"Create":true,"Delete":false}"#
        );
        let e = decode_value(&v).unwrap();
        assert_eq!(e.kv.as_ref().unwrap().value.as_deref(), Some(&b"\x00k8s\xff"[..]));
        // As Go writes a deletion: nil value is null; unknown fields are ignored.
        let go = br#"{"KV":{"Key":"/registry/a","CreateRevision":5,"ModRevision":9,"Value":null,"Lease":60},"PrevKV":null,"PrevRevision":9,"Create":false,"Delete":true}"#;
        let e = decode_value(&s2_compress(go)).unwrap();
        assert!(e.delete && !e.create);
        assert_eq!(
            e.kv,
            Some(KineKv { key: "/registry/a".into(), create_revision: 5, mod_revision: 9, value: None, lease: 60 })
        );
        assert_eq!(serde_json::from_slice::<KineEvent>(&serde_json::to_vec(&e).unwrap()).unwrap(), e);
    }
}
