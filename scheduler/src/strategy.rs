//! The host allocator strategies by their ZStack names (spec 02 §2.6, §5.1; the catalogue's
//! `GetHostAllocatorStrategies`), and the ranking each one imposes on the surviving hosts.
//! Ties break on a per-host rotation key offset by the request's seed: random across requests,
//! repeatable for a given seed, and the same in the indexed and the full-scan pipeline.

use crate::error::BadRequest;

/// Every strategy name `GetHostAllocatorStrategies` returns.
pub const STRATEGY_NAMES: [&str; 6] = [
    "DefaultHostAllocatorStrategy",
    "LastHostPreferredAllocatorStrategy",
    "LeastVmPreferredHostAllocatorStrategy",
    "MinimumCPUUsageHostAllocatorStrategy",
    "MinimumMemoryUsageHostAllocatorStrategy",
    "MaxInstancePerHostHostAllocatorStrategy",
];

/// What the usage strategies do with a host that has no samples in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyMode {
    /// Ranked after the hosts with data; with no data anywhere, a random fitting host.
    Soft,
    /// Excluded; placement fails when no host has data.
    Hard,
}

/// A host allocator strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AllocatorStrategy {
    /// `DefaultHostAllocatorStrategy`: fewest VMs, as the offering default (spec 02 §2.6).
    Default,
    /// `LeastVmPreferredHostAllocatorStrategy`: fewest VMs holding resources on the host.
    #[default]
    LeastVmPreferred,
    /// `LastHostPreferredAllocatorStrategy`: the VM's last host if it fits, else fewest VMs.
    LastHostPreferred,
    /// `MinimumCPUUsageHostAllocatorStrategy`: lowest average CPU use over the window.
    MinimumCpuUsage(StrategyMode),
    /// `MinimumMemoryUsageHostAllocatorStrategy`: lowest average memory use over the window.
    MinimumMemoryUsage(StrategyMode),
    /// `MaxInstancePerHostHostAllocatorStrategy`: only hosts with fewer VMs than the limit,
    /// then fewest VMs.
    MaxInstancePerHost(u32),
}

impl AllocatorStrategy {
    /// The ZStack name.
    pub fn name(self) -> &'static str {
        match self {
            AllocatorStrategy::Default => STRATEGY_NAMES[0],
            AllocatorStrategy::LastHostPreferred => STRATEGY_NAMES[1],
            AllocatorStrategy::LeastVmPreferred => STRATEGY_NAMES[2],
            AllocatorStrategy::MinimumCpuUsage(_) => STRATEGY_NAMES[3],
            AllocatorStrategy::MinimumMemoryUsage(_) => STRATEGY_NAMES[4],
            AllocatorStrategy::MaxInstancePerHost(_) => STRATEGY_NAMES[5],
        }
    }

    /// From the offering's `allocatorStrategy`, its strategy-mode tag (`soft`/`hard`, soft when
    /// unset as upstream) and its `maxInstancePerHost` tag.
    pub fn parse(
        name: &str,
        mode: Option<&str>,
        max_instance_per_host: Option<i64>,
    ) -> Result<AllocatorStrategy, BadRequest> {
        let mode_of = |strategy: &'static str| match mode {
            None | Some("soft") => Ok(StrategyMode::Soft),
            Some("hard") => Ok(StrategyMode::Hard),
            Some(other) => Err(BadRequest::UnknownStrategyMode {
                strategy,
                mode: other.to_string(),
            }),
        };
        match name {
            "DefaultHostAllocatorStrategy" => Ok(AllocatorStrategy::Default),
            "LastHostPreferredAllocatorStrategy" => Ok(AllocatorStrategy::LastHostPreferred),
            "LeastVmPreferredHostAllocatorStrategy" => Ok(AllocatorStrategy::LeastVmPreferred),
            "MinimumCPUUsageHostAllocatorStrategy" => Ok(AllocatorStrategy::MinimumCpuUsage(
                mode_of(STRATEGY_NAMES[3])?,
            )),
            "MinimumMemoryUsageHostAllocatorStrategy" => Ok(AllocatorStrategy::MinimumMemoryUsage(
                mode_of(STRATEGY_NAMES[4])?,
            )),
            "MaxInstancePerHostHostAllocatorStrategy" => match max_instance_per_host {
                Some(n) if n >= 1 => Ok(AllocatorStrategy::MaxInstancePerHost(
                    u32::try_from(n).unwrap_or(u32::MAX),
                )),
                value => Err(BadRequest::BadMaxInstancePerHost { value }),
            },
            other => Err(BadRequest::UnknownStrategy {
                name: other.to_string(),
            }),
        }
    }

    /// The hard-mode usage strategy's metric, if this is one.
    pub fn hard_usage(self) -> Option<Metric> {
        match self {
            AllocatorStrategy::MinimumCpuUsage(StrategyMode::Hard) => Some(Metric::Cpu),
            AllocatorStrategy::MinimumMemoryUsage(StrategyMode::Hard) => Some(Metric::Memory),
            _ => None,
        }
    }

    /// The usage metric this strategy ranks by, if any.
    pub fn usage_metric(self) -> Option<Metric> {
        match self {
            AllocatorStrategy::MinimumCpuUsage(_) => Some(Metric::Cpu),
            AllocatorStrategy::MinimumMemoryUsage(_) => Some(Metric::Memory),
            _ => None,
        }
    }
}

/// A reported usage metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// CPU utilisation.
    Cpu,
    /// Memory utilisation.
    Memory,
}

/// SplitMix64's finaliser: spreads a seed or a hash over all 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A host's fixed rotation key (FNV-1a of its uuid, mixed).
pub fn rotation(uuid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uuid.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// A host's rank under a strategy: lower is better. `tier` folds the soft preferences
/// (antiSoft members last, the last host first), `class` is the strategy's measure (VM count,
/// usage ‰), `spin` is the seeded tie-break, the uuid makes the order total.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// Soft-preference tier.
    pub tier: u8,
    /// The strategy's measure.
    pub class: u64,
    /// `rotation(uuid) − mix(seed)`, wrapping.
    pub spin: u64,
    /// The host.
    pub uuid: String,
}

/// Class of hosts without usage data under a soft usage strategy: after every measured host.
pub const NO_DATA_CLASS: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for name in STRATEGY_NAMES {
            let s = AllocatorStrategy::parse(name, Some("hard"), Some(3)).unwrap();
            assert_eq!(s.name(), name);
        }
        assert_eq!(
            AllocatorStrategy::default().name(),
            "LeastVmPreferredHostAllocatorStrategy"
        );
    }

    #[test]
    fn bad_strategies_are_refused() {
        let cases: &[(&str, Option<&str>, Option<i64>, &str)] = &[
            ("FastestHost", None, None, "unknown host allocator strategy \"FastestHost\""),
            (
                "MinimumCPUUsageHostAllocatorStrategy",
                Some("medium"),
                None,
                "MinimumCPUUsageHostAllocatorStrategy: unknown strategy mode \"medium\" (soft or hard)",
            ),
            (
                "MaxInstancePerHostHostAllocatorStrategy",
                None,
                None,
                "MaxInstancePerHostHostAllocatorStrategy needs maxInstancePerHost ≥ 1, got None",
            ),
            (
                "MaxInstancePerHostHostAllocatorStrategy",
                None,
                Some(0),
                "MaxInstancePerHostHostAllocatorStrategy needs maxInstancePerHost ≥ 1, got Some(0)",
            ),
        ];
        for (name, mode, max, text) in cases {
            let err = AllocatorStrategy::parse(name, *mode, *max).unwrap_err();
            assert_eq!(err.to_string(), *text);
        }
        assert_eq!(
            AllocatorStrategy::parse("MinimumMemoryUsageHostAllocatorStrategy", None, None),
            Ok(AllocatorStrategy::MinimumMemoryUsage(StrategyMode::Soft))
        );
    }
}
