//! Human-readable sizes for error texts ("need 8G, free 6G"), in ZStack's units (binary K/M/G/T,
//! as `kvm.reservedMemory = 1G` means 2^30 bytes).

use std::fmt;

const UNITS: [(u64, &str); 4] = [
    (1 << 40, "T"),
    (1 << 30, "G"),
    (1 << 20, "M"),
    (1 << 10, "K"),
];

/// A byte count displayed with the largest unit it reaches: `8G`, `6.5G`, `512M`, `100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(&(unit, suffix)) = UNITS.iter().find(|(unit, _)| self.0 >= *unit) else {
            return write!(f, "{}", self.0);
        };
        let whole = self.0 / unit;
        // Two decimals, truncated (never shows more free memory than there is).
        let hundredths = ((u128::from(self.0 % unit) * 100) / u128::from(unit)) as u64;
        match hundredths {
            0 => write!(f, "{whole}{suffix}"),
            h if h % 10 == 0 => write!(f, "{whole}.{}{suffix}", h / 10),
            h => write!(f, "{whole}.{h:02}{suffix}"),
        }
    }
}

/// Parse a size such as `1G`, `512M`, `2T`, `100K` or plain bytes (the global-config syntax of
/// `kvm.reservedMemory`, same as `api::settings::parse_size`).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mult) = match v.chars().last()?.to_ascii_uppercase() {
        'T' => (&v[..v.len() - 1], 1u64 << 40),
        'G' => (&v[..v.len() - 1], 1 << 30),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'K' => (&v[..v.len() - 1], 1 << 10),
        _ => (v, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_display_with_the_largest_unit() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (100, "100"),
            (1 << 10, "1K"),
            (512 << 20, "512M"),
            (8 << 30, "8G"),
            ((6 << 30) + (512 << 20), "6.5G"),
            ((1 << 30) + (1 << 30) / 4, "1.25G"),
            (3 << 40, "3T"),
        ];
        for (bytes, text) in cases {
            assert_eq!(Size(*bytes).to_string(), *text, "{bytes} bytes");
        }
    }

    #[test]
    fn sizes_parse_like_global_config() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }
}
