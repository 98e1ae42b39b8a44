//! The global settings placement reads (spec 03 §11, spec 05 settings table), by their exact
//! `category/name`, with their defaults. Ratios are kept as integers (hundredths, ten-thousandths)
//! so the committed re-check computes bit-for-bit the same on every replica.

use std::fmt;

use thiserror::Error;

use crate::units::parse_size;

/// `host/cpu.overProvisioning.ratio`: vCPUs per host thread.
pub const CPU_OVER_PROVISIONING: (&str, &str) = ("host", "cpu.overProvisioning.ratio");
/// `mevoco/overProvisioning.memory`: VM memory per byte of host memory.
pub const MEMORY_OVER_PROVISIONING: (&str, &str) = ("mevoco", "overProvisioning.memory");
/// `kvm/reservedMemory`: memory kept free on every KVM host.
pub const KVM_RESERVED_MEMORY: (&str, &str) = ("kvm", "reservedMemory");
/// `mevoco/overProvisioning.primaryStorage`: virtual volume bytes per byte of primary storage.
pub const PS_OVER_PROVISIONING: (&str, &str) = ("mevoco", "overProvisioning.primaryStorage");
/// `mevoco/threshold.primaryStorage.physicalCapacity`: the physical usage at which a primary
/// storage refuses new volumes (the spec's "mevoco.primaryStorage.threshold").
pub const PS_THRESHOLD: (&str, &str) = ("mevoco", "threshold.primaryStorage.physicalCapacity");

/// An over-provisioning ratio in hundredths (`1.0` = 100; range [1.00, 1000.00], 2 decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio(u32);

impl Ratio {
    /// No over-provisioning.
    pub const ONE: Ratio = Ratio(100);

    /// A ratio from hundredths; `None` below 1.00 (a ratio under one would under-provision,
    /// which the setting's validator refuses).
    pub fn from_hundredths(h: u32) -> Option<Ratio> {
        (h >= 100).then_some(Ratio(h))
    }

    /// The ratio in hundredths.
    pub fn hundredths(self) -> u32 {
        self.0
    }

    /// `round(bytes / ratio)`: what a VM's memory or a volume's virtual size costs on the host
    /// or storage (ZStack stores capacity deflated by the ratio, spec 03 §11.2).
    pub fn deflate(self, bytes: u64) -> u64 {
        let h = u128::from(self.0);
        // Round half up, as Java's Math.round on a positive double.
        ((u128::from(bytes) * 100 + h / 2) / h) as u64
    }

    /// `bytes × ratio`, truncated: how much VM memory (or volume size) `bytes` of deflated free
    /// capacity can still take, for error texts.
    pub fn inflate(self, bytes: u64) -> u64 {
        let v = u128::from(bytes) * u128::from(self.0) / 100;
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    fn parse(v: &str) -> Option<Ratio> {
        let (whole, frac) = parse_decimal(v, 2)?;
        Ratio::from_hundredths(u32::try_from(whole.checked_mul(100)?.checked_add(frac)?).ok()?)
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A fraction in ten-thousandths (`0.9` = 9000; range (0, 1], 4 decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fraction(u32);

impl Fraction {
    /// A fraction from ten-thousandths; `None` outside (0, 10000].
    pub fn from_ten_thousandths(t: u32) -> Option<Fraction> {
        (1..=10_000).contains(&t).then_some(Fraction(t))
    }

    /// `round(bytes × fraction)`.
    pub fn of(self, bytes: u64) -> u64 {
        ((u128::from(bytes) * u128::from(self.0) + 5_000) / 10_000) as u64
    }

    fn parse(v: &str) -> Option<Fraction> {
        let (whole, frac) = parse_decimal(v, 4)?;
        Fraction::from_ten_thousandths(
            u32::try_from(whole.checked_mul(10_000)?.checked_add(frac)?).ok()?,
        )
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

/// `"2.55"` → `(2, 55)` with `decimals` fractional digits (padded); `None` if it has more.
fn parse_decimal(v: &str, decimals: u32) -> Option<(u64, u64)> {
    let v = v.trim();
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty()
        || frac.len() > decimals as usize
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let padded = format!("{frac:0<width$}", width = decimals as usize);
    Some((whole, padded.parse().ok()?))
}

/// The values placement reads, resolved from the global config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// `host/cpu.overProvisioning.ratio` (default 10).
    pub cpu_over_provisioning: u64,
    /// `mevoco/overProvisioning.memory` (default 1.0).
    pub memory_over_provisioning: Ratio,
    /// `kvm/reservedMemory` in bytes (default 1G); a host's own reserved-memory tag overrides it.
    pub kvm_reserved_memory: u64,
    /// `mevoco/overProvisioning.primaryStorage` (default 1.0).
    pub primary_storage_over_provisioning: Ratio,
    /// `mevoco/threshold.primaryStorage.physicalCapacity` (default 0.9).
    pub primary_storage_threshold: Fraction,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            cpu_over_provisioning: 10,
            memory_over_provisioning: Ratio::ONE,
            kvm_reserved_memory: 1 << 30,
            primary_storage_over_provisioning: Ratio::ONE,
            primary_storage_threshold: Fraction(9_000),
        }
    }
}

/// A global-config value placement cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("global config {category}/{name} = {value:?}: {why}")]
pub struct ConfigError {
    /// Setting category.
    pub category: &'static str,
    /// Setting name.
    pub name: &'static str,
    /// The value found.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl AllocatorConfig {
    /// Resolve from a lookup of `(category, name)` → current value; a missing setting takes its
    /// default (a fresh cluster stores only changed values).
    pub fn from_settings(
        lookup: impl Fn(&str, &str) -> Option<String>,
    ) -> Result<AllocatorConfig, ConfigError> {
        let d = AllocatorConfig::default();
        let get = |(category, name): (&'static str, &'static str),
                   why: &'static str,
                   parse: &dyn Fn(&str) -> bool| {
            match lookup(category, name) {
                Some(value) if !parse(&value) => Err(ConfigError {
                    category,
                    name,
                    value,
                    why,
                }),
                other => Ok(other),
            }
        };
        let cpu = get(CPU_OVER_PROVISIONING, "not an integer ≥ 1", &|v| {
            v.trim().parse::<u64>().is_ok_and(|n| n >= 1)
        })?;
        let mem = get(
            MEMORY_OVER_PROVISIONING,
            "not a ratio ≥ 1.00 with 2 decimals",
            &|v| Ratio::parse(v).is_some(),
        )?;
        let reserved = get(KVM_RESERVED_MEMORY, "not a size (T/G/M/K)", &|v| {
            parse_size(v).is_some()
        })?;
        let ps = get(
            PS_OVER_PROVISIONING,
            "not a ratio ≥ 1.00 with 2 decimals",
            &|v| Ratio::parse(v).is_some(),
        )?;
        let threshold = get(
            PS_THRESHOLD,
            "not a fraction in (0, 1] with 4 decimals",
            &|v| Fraction::parse(v).is_some(),
        )?;
        // Each value was checked by its closure above, so the second parse cannot fail; the
        // defaults stand in only to avoid an unwrap.
        Ok(AllocatorConfig {
            cpu_over_provisioning: cpu
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(d.cpu_over_provisioning),
            memory_over_provisioning: mem
                .and_then(|v| Ratio::parse(&v))
                .unwrap_or(d.memory_over_provisioning),
            kvm_reserved_memory: reserved
                .and_then(|v| parse_size(&v))
                .unwrap_or(d.kvm_reserved_memory),
            primary_storage_over_provisioning: ps
                .and_then(|v| Ratio::parse(&v))
                .unwrap_or(d.primary_storage_over_provisioning),
            primary_storage_threshold: threshold
                .and_then(|v| Fraction::parse(&v))
                .unwrap_or(d.primary_storage_threshold),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = AllocatorConfig::from_settings(|_, _| None).unwrap();
        assert_eq!(c, AllocatorConfig::default());
        assert_eq!(c.cpu_over_provisioning, 10);
        assert_eq!(c.memory_over_provisioning.to_string(), "1.00");
        assert_eq!(c.kvm_reserved_memory, 1 << 30);
        assert_eq!(c.primary_storage_threshold.to_string(), "0.9000");
    }

    #[test]
    fn values_parse_by_category_and_name() {
        let c = AllocatorConfig::from_settings(|cat, name| match (cat, name) {
            ("host", "cpu.overProvisioning.ratio") => Some("4".into()),
            ("mevoco", "overProvisioning.memory") => Some("2.55".into()),
            ("kvm", "reservedMemory") => Some("512M".into()),
            ("mevoco", "overProvisioning.primaryStorage") => Some("2".into()),
            ("mevoco", "threshold.primaryStorage.physicalCapacity") => Some("0.6".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.cpu_over_provisioning, 4);
        assert_eq!(c.memory_over_provisioning.hundredths(), 255);
        assert_eq!(c.kvm_reserved_memory, 512 << 20);
        assert_eq!(c.primary_storage_over_provisioning.hundredths(), 200);
        assert_eq!(c.primary_storage_threshold, Fraction(6_000));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: &[(&str, &str, &str)] = &[
            ("mevoco", "overProvisioning.memory", "0.5"),
            ("mevoco", "overProvisioning.memory", "1.234"),
            ("mevoco", "threshold.primaryStorage.physicalCapacity", "0"),
            ("mevoco", "threshold.primaryStorage.physicalCapacity", "1.5"),
            ("kvm", "reservedMemory", "lots"),
            ("host", "cpu.overProvisioning.ratio", "0"),
        ];
        for (cat, name, value) in cases {
            let err = AllocatorConfig::from_settings(|c, n| {
                (c == *cat && n == *name).then(|| value.to_string())
            })
            .unwrap_err();
            assert_eq!((err.category, err.name), (*cat, *name));
            assert!(err
                .to_string()
                .starts_with(&format!("global config {cat}/{name} = ")));
        }
    }

    #[test]
    fn deflate_rounds_like_zstack() {
        let two = Ratio::from_hundredths(200).unwrap();
        assert_eq!(two.deflate(4 << 30), 2 << 30);
        assert_eq!(Ratio::from_hundredths(300).unwrap().deflate(10), 3);
        assert_eq!(Ratio::from_hundredths(300).unwrap().deflate(11), 4);
        assert_eq!(two.inflate(3 << 30), 6 << 30);
        assert_eq!(Fraction(9_000).of(1000), 900);
    }
}
