//! A minimal protobuf wire-format reader: varints, fixed 32/64-bit values and length-delimited
//! payloads, enough to walk any message field by field.

use super::ProtobufError;

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the `(field number, value)` pairs of one encoded message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads a base-128 varint.
    pub fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(ProtobufError::Truncated)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(ProtobufError::Malformed(
            "varint longer than 10 bytes".into(),
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or(ProtobufError::Truncated)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(ProtobufError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| {
            ProtobufError::Malformed(format!("field number {} too large", key >> 3))
        })?;
        if tag == 0 {
            return Err(ProtobufError::Malformed("field number 0".into()));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                WireValue::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Truncated)?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(a))
            }
            w => {
                return Err(ProtobufError::Malformed(format!(
                    "unsupported wire type {w} for field {tag}"
                )));
            }
        };
        Ok(Some((tag, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_every_wire_type() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed64 1.5, field 4 fixed32 7
        let mut buf = vec![0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x19];
        buf.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        buf.push(0x25);
        buf.extend_from_slice(&7u32.to_le_bytes());
        let mut r = Reader::new(&buf);
        assert_eq!(r.next_field().unwrap(), Some((1, WireValue::Varint(300))));
        assert_eq!(r.next_field().unwrap(), Some((2, WireValue::Bytes(b"hi"))));
        assert_eq!(
            r.next_field().unwrap(),
            Some((3, WireValue::Fixed64(1.5f64.to_bits())))
        );
        assert_eq!(r.next_field().unwrap(), Some((4, WireValue::Fixed32(7))));
        assert_eq!(r.next_field().unwrap(), None);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut r = Reader::new(&[0x12, 0x05, b'a']);
        assert!(matches!(r.next_field(), Err(ProtobufError::Truncated)));
        let mut r = Reader::new(&[0x08, 0x80]);
        assert!(matches!(r.next_field(), Err(ProtobufError::Truncated)));
    }
}
