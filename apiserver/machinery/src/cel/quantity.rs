//! Kubernetes `resource.Quantity` for the CEL quantity library: exact decimal arithmetic on
//! `mantissa × 10^scale`, parsed from `1.5Gi`, `100m`, `2e3` and so on.

use std::cmp::Ordering;

/// A parsed quantity (exact: mantissa × 10^scale).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    scale: i32,
    text: String,
}

const MAX_SCALE: i32 = 36;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    /// Parses a quantity as `resource.ParseQuantity` does (`None` when invalid).
    pub fn parse(s: &str) -> Option<Quantity> {
        if s.is_empty() || s.len() > 100 {
            return None;
        }
        let b = s.as_bytes();
        let mut i = 0;
        let neg = match b[0] {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        let num_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[num_start..i];
        let mut frac_part = "";
        if i < b.len() && b[i] == b'.' {
            let fs = i + 1;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[fs..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let suffix = &s[i..];
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut scale = -(frac_part.len() as i32);
        let (mul, exp10): (i128, i32) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            e if e.starts_with(['e', 'E']) => {
                let n: i32 = e[1..].parse().ok()?;
                if n.abs() > MAX_SCALE {
                    return None;
                }
                (1, n)
            }
            _ => return None,
        };
        mantissa = mantissa.checked_mul(mul)?;
        scale += exp10;
        if scale.abs() > MAX_SCALE * 2 {
            return None;
        }
        if neg {
            mantissa = -mantissa;
        }
        Some(Quantity {
            mantissa,
            scale,
            text: s.to_string(),
        })
    }

    /// The text it was parsed from (or built as).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn aligned(&self, other: &Quantity) -> Option<(i128, i128, i32)> {
        let s = self.scale.min(other.scale);
        let a = self.mantissa.checked_mul(pow10((self.scale - s) as u32)?)?;
        let b = other
            .mantissa
            .checked_mul(pow10((other.scale - s) as u32)?)?;
        Some((a, b, s))
    }

    /// Compares two quantities by value.
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        match self.aligned(other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self
                .as_f64()
                .partial_cmp(&other.as_f64())
                .unwrap_or(Ordering::Equal),
        }
    }

    /// `add` (`None` on overflow).
    pub fn add(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b, s) = self.aligned(other)?;
        Some(Quantity::from_parts(a.checked_add(b)?, s))
    }

    /// `sub` (`None` on overflow).
    pub fn sub(&self, other: &Quantity) -> Option<Quantity> {
        let (a, b, s) = self.aligned(other)?;
        Some(Quantity::from_parts(a.checked_sub(b)?, s))
    }

    /// A quantity from an integer.
    pub fn from_int(i: i64) -> Quantity {
        Quantity::from_parts(i as i128, 0)
    }

    fn from_parts(mut mantissa: i128, mut scale: i32) -> Quantity {
        while scale < 0 && mantissa % 10 == 0 && mantissa != 0 {
            mantissa /= 10;
            scale += 1;
        }
        if mantissa == 0 {
            scale = 0;
        }
        let text = if scale >= 0 {
            match pow10(scale as u32).and_then(|p| mantissa.checked_mul(p)) {
                Some(v) => v.to_string(),
                None => format!("{mantissa}e{scale}"),
            }
        } else {
            format!("{mantissa}e{scale}")
        };
        Quantity {
            mantissa,
            scale,
            text,
        }
    }

    /// Whether the value is a whole number that fits an int64.
    pub fn as_integer(&self) -> Option<i64> {
        if self.scale >= 0 {
            let v = self.mantissa.checked_mul(pow10(self.scale as u32)?)?;
            i64::try_from(v).ok()
        } else {
            let d = pow10((-self.scale) as u32)?;
            if self.mantissa % d != 0 {
                return None;
            }
            i64::try_from(self.mantissa / d).ok()
        }
    }

    /// The value as a float (approximate).
    pub fn as_f64(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.scale)
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i64 {
        self.mantissa.signum() as i64
    }
}
