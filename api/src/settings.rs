//! The global settings every family reads (spec 05 §7, spec 06 §8): each has a default and a
//! kind its values are checked against, values are strings, and only values that differ from
//! the default are stored (table [`TABLE`], keyed `category/name`). A change is a replicated
//! command of the `global_config` family (`families::global_config`, which owns the calls and
//! every write), so every node reads it at the same log index and nothing needs a restart.
//!
//! Families read settings here ([`value`], [`int_value`]) rather than through the
//! `global_config` family, which they may not name (`api/tests/family_isolation.rs`).

use crate::ApiError;
use crate::StateTxn;

/// Table of overridden values, keyed `category/name`.
pub const TABLE: &str = "global_config";

/// How a setting's value is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer in `[min, max]`.
    Int {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A decimal in `[min, max]` with at most `decimals` digits after the point.
    Float {
        /// Smallest allowed.
        min: f64,
        /// Largest allowed.
        max: f64,
        /// Digits allowed after the point.
        decimals: usize,
        /// Whether `min` itself is excluded.
        min_exclusive: bool,
    },
    /// One of a fixed set.
    Enum(&'static [&'static str]),
    /// A size such as `1G`, `512M`, `2T` (or plain bytes).
    Size,
    /// Virtual-router password: starts with a letter or digit; letters, digits, `-_#` only.
    RouterPassword,
    /// Free text.
    Text,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Category, e.g. `host`.
    pub category: &'static str,
    /// Name within the category, e.g. `ping.interval`.
    pub name: &'static str,
    /// Default value.
    pub default: &'static str,
    /// Validation.
    pub kind: Kind,
    /// What it does.
    pub description: &'static str,
}

const fn d(
    category: &'static str,
    name: &'static str,
    default: &'static str,
    kind: Kind,
    description: &'static str,
) -> Def {
    Def {
        category,
        name,
        default,
        kind,
        description,
    }
}

const B: Kind = Kind::Bool;
const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}
const POS: Kind = int(1, i64::MAX);
const NONNEG: Kind = int(0, i64::MAX);
const RATIO: Kind = Kind::Float {
    min: 1.0,
    max: 1000.0,
    decimals: 2,
    min_exclusive: false,
};
const DELETION: Kind = Kind::Enum(&["Direct", "Delay", "Never"]);

/// Every setting this build knows, in a stable order (the inventory `id` is the position + 1).
pub const DEFS: &[Def] = &[
    // The 17 basic settings of the 2.5 manual (spec 05 §7.1).
    d("ha", "enable", "true", B, "VM HA global switch"),
    d(
        "host",
        "cpu.overProvisioning.ratio",
        "10",
        int(2, 999),
        "virtual CPUs per host thread",
    ),
    d(
        "identity",
        "session.timeout",
        "7200",
        int(1, 31_535_999),
        "session lifetime in seconds",
    ),
    d(
        "kvm",
        "reservedMemory",
        "1G",
        Kind::Size,
        "memory reserved on every KVM host",
    ),
    d(
        "kvm",
        "vm.cacheMode",
        "none",
        Kind::Enum(&["writethrough", "none", "writeback"]),
        "VM disk cache mode",
    ),
    d(
        "kvm",
        "vm.cpuMode",
        "none",
        Kind::Enum(&["host-model", "none", "host-passthrough"]),
        "VM CPU mode",
    ),
    d(
        "localStoragePrimaryStorage",
        "liveMigrationWithStorage.allow",
        "false",
        B,
        "allow live migration of VMs on local storage",
    ),
    d(
        "mevoco",
        "overProvisioning.memory",
        "1.0",
        RATIO,
        "memory over-provisioning ratio",
    ),
    d(
        "mevoco",
        "overProvisioning.primaryStorage",
        "1.0",
        RATIO,
        "primary storage over-provisioning ratio",
    ),
    d(
        "mevoco",
        "threshold.primaryStorage.physicalCapacity",
        "0.9",
        Kind::Float {
            min: 0.0,
            max: 1.0,
            decimals: 4,
            min_exclusive: true,
        },
        "primary storage usage threshold above which new VMs and volumes are refused",
    ),
    d(
        "mevoco",
        "vm.consoleMode",
        "vnc",
        Kind::Enum(&["vnc", "spice"]),
        "default VM console protocol",
    ),
    d(
        "virtualRouter",
        "vrouter.password",
        "vrouter12#",
        Kind::RouterPassword,
        "virtual router admin password",
    ),
    d("vm", "cleanTraffic", "false", B, "IP/MAC/ARP anti-spoofing"),
    d(
        "vm",
        "deletionPolicy",
        "Delay",
        DELETION,
        "VM deletion policy",
    ),
    d(
        "vm",
        "expungePeriod",
        "86400",
        POS,
        "seconds before a deleted VM is expunged (Delay policy)",
    ),
    d("vm", "numa", "false", B, "online CPU and memory change"),
    d(
        "vm",
        "videoType",
        "cirrus",
        Kind::Enum(&["cirrus", "vga", "qxl"]),
        "default VM video device",
    ),
    // Compute and hosts.
    d("host", "ping.interval", "60", POS, "host ping period (s)"),
    d(
        "host",
        "ping.maxFailure",
        "3",
        POS,
        "ping failures before a host is reconnected",
    ),
    d("host", "ping.timeout", "10", POS, "host ping timeout (s)"),
    d(
        "host",
        "ping.sleepPeriodAfterFailure",
        "1",
        NONNEG,
        "pause after a failed ping (s)",
    ),
    d(
        "host",
        "ping.parallelismDegree",
        "100",
        POS,
        "hosts pinged in parallel",
    ),
    d(
        "host",
        "connection.autoReconnectOnError",
        "true",
        B,
        "reconnect hosts after errors",
    ),
    d(
        "host",
        "connection.autoReconnectOnError.maxAttemptsNum",
        "0",
        NONNEG,
        "reconnect attempts (0 = never stop)",
    ),
    d("host", "load.all", "true", B, "connect all hosts at start"),
    d(
        "host",
        "load.parallelismDegree",
        "100",
        POS,
        "hosts connected in parallel at start",
    ),
    d(
        "host",
        "reconnectAllOnBoot",
        "true",
        B,
        "reconnect all hosts on boot",
    ),
    d(
        "host",
        "maintenanceMode.ignoreError",
        "false",
        B,
        "enter maintenance despite errors",
    ),
    d(
        "host",
        "host.maintenance.policy",
        "StopVmOnMigrationFailure",
        Kind::Enum(&["JustMigrate", "StopVmOnMigrationFailure"]),
        "maintenance policy",
    ),
    d(
        "hostAllocator",
        "reservedCapacity.zoneLevel",
        "true",
        B,
        "honour zone-level reserved capacity",
    ),
    d(
        "hostAllocator",
        "reservedCapacity.clusterLevel",
        "true",
        B,
        "honour cluster-level reserved capacity",
    ),
    d(
        "hostAllocator",
        "reservedCapacity.hostLevel",
        "true",
        B,
        "honour host-level reserved capacity",
    ),
    d(
        "hostAllocator",
        "usePagination",
        "true",
        B,
        "paginate host allocation",
    ),
    d(
        "hostAllocator",
        "paginationLimit",
        "500",
        POS,
        "hosts per allocation page",
    ),
    d(
        "kvm",
        "reservedCpu",
        "512",
        NONNEG,
        "CPU reserved for the agent",
    ),
    d(
        "kvm",
        "vm.migrationQuantity",
        "2",
        POS,
        "parallel migrations when a host enters maintenance",
    ),
    d(
        "kvm",
        "dataVolume.maxNum",
        "24",
        int(0, 1024),
        "max data volumes per VM",
    ),
    d(
        "kvm",
        "host.syncLevel",
        "10",
        int(3, i64::MAX),
        "parallel commands per host",
    ),
    d(
        "kvm",
        "vmSyncOnHostPing",
        "true",
        B,
        "sync VM states on each host ping",
    ),
    d(
        "kvm",
        "checkHostCpuModelName",
        "false",
        B,
        "enforce a cluster CPU model",
    ),
    d("kvm", "ignoreMsrs", "false", B, "ignore unknown MSRs"),
    // Not in ZStack: hosts whose libvirt is the test driver (or simulated hosts) have no real
    // hypervisor; only tests, the demo and scale runs turn this on.
    d(
        "kvm",
        "allowTestDriver",
        "false",
        B,
        "accept hosts on libvirt's test driver or simulated hosts",
    ),
    d(
        "vm",
        "expungeInterval",
        "3600",
        POS,
        "expunge sweeper period (s)",
    ),
    d(
        "vm",
        "reconcileInterval",
        "60",
        POS,
        "seconds between two comparisons of the hosts' domains with the VM records",
    ),
    d(
        "vm",
        "dataVolume.deleteOnVmDestroy",
        "false",
        B,
        "delete data volumes with their VM",
    ),
    d(
        "vm",
        "instanceOffering.setNullWhenDeleting",
        "true",
        B,
        "clear a deleted offering from VMs",
    ),
    d(
        "vm",
        "spiceStreamingMode",
        "off",
        Kind::Enum(&["off", "all", "filter"]),
        "SPICE streaming mode",
    ),
    d("vm", "bootMenu", "true", B, "show the boot menu"),
    d("vm", "kvmHiddenState", "false", B, "hide the KVM signature"),
    d(
        "vm",
        "emulateHyperV",
        "false",
        B,
        "emulate Hyper-V enlightenments",
    ),
    d(
        "vm",
        "vmPortOff",
        "false",
        B,
        "disable VMware IO-port emulation",
    ),
    d(
        "vm",
        "vm.ha.across.clusters",
        "true",
        B,
        "restart HA VMs in other clusters",
    ),
    // HA (spec decision 6).
    d(
        "ha",
        "host.fenceTimeout",
        "20",
        POS,
        "agent self-fencing lease (s); the leader waits lease + 10 s",
    ),
    d(
        "ha",
        "host.check.interval",
        "5",
        POS,
        "host liveness check period (s)",
    ),
    d(
        "ha",
        "host.check.maxAttempts",
        "6",
        POS,
        "failed checks before a host is suspected",
    ),
    d(
        "ha",
        "neverStopVm.retry.delay",
        "60",
        POS,
        "delay between NeverStop restart attempts (s)",
    ),
    d(
        "ha",
        "neverStopVm.scan.interval",
        "60",
        POS,
        "NeverStop scan period (s)",
    ),
    // Storage.
    d(
        "primaryStorage",
        "reservedCapacity",
        "1G",
        Kind::Size,
        "capacity reserved on every primary storage",
    ),
    d(
        "primaryStorage",
        "ping.interval",
        "60",
        POS,
        "primary storage ping period (s)",
    ),
    d(
        "primaryStorage",
        "imageCache.garbageCollector.interval",
        "86400",
        POS,
        "image cache GC period (s)",
    ),
    d(
        "backupStorage",
        "reservedCapacity",
        "1G",
        Kind::Size,
        "capacity reserved on every backup storage",
    ),
    d(
        "backupStorage",
        "ping.interval",
        "60",
        POS,
        "backup storage ping period (s)",
    ),
    d(
        "nfsPrimaryStorage",
        "mount.base",
        "/opt/zstack/nfsprimarystorage",
        Kind::Text,
        "NFS mount base directory",
    ),
    d(
        "nfsPrimaryStorage",
        "deletion.gcInterval",
        "3600",
        POS,
        "NFS deletion GC period (s)",
    ),
    d(
        "sharedMountPointPrimaryStorage",
        "deletion.gcInterval",
        "3600",
        POS,
        "SMP deletion GC period (s)",
    ),
    d(
        "volume",
        "deletionPolicy",
        "Delay",
        DELETION,
        "volume deletion policy",
    ),
    d(
        "volume",
        "expungePeriod",
        "86400",
        POS,
        "seconds before a deleted volume is expunged",
    ),
    d(
        "volume",
        "expungeInterval",
        "3600",
        POS,
        "volume expunge sweeper period (s)",
    ),
    d(
        "volume",
        "diskOffering.setNullWhenDeleting",
        "true",
        B,
        "clear a deleted disk offering from volumes",
    ),
    d(
        "image",
        "deletionPolicy",
        "Delay",
        DELETION,
        "image deletion policy",
    ),
    d(
        "image",
        "expungePeriod",
        "86400",
        POS,
        "seconds before a deleted image is expunged",
    ),
    d(
        "image",
        "expungeInterval",
        "3600",
        POS,
        "image expunge sweeper period (s)",
    ),
    d(
        "image",
        "enableResetPassword",
        "true",
        B,
        "allow resetting guest passwords",
    ),
    d(
        "volumeSnapshot",
        "incrementalSnapshot.maxNum",
        "128",
        POS,
        "incremental chain length before a full snapshot",
    ),
    // Network.
    d(
        "virtualRouter",
        "ping.interval",
        "60",
        POS,
        "virtual router ping period (s)",
    ),
    d(
        "virtualRouter",
        "ssh.username",
        "vyos",
        Kind::Text,
        "virtual router SSH user",
    ),
    d(
        "virtualRouter",
        "ssh.port",
        "22",
        int(1, 65535),
        "virtual router SSH port",
    ),
    d(
        "vyos",
        "private.l3.firewall.default.action",
        "reject",
        Kind::Enum(&["reject", "accept"]),
        "default action of the private L3 firewall",
    ),
    d(
        "securityGroup",
        "ingress.defaultPolicy",
        "drop",
        Kind::Enum(&["drop", "accept"]),
        "ingress policy of an empty security group",
    ),
    d(
        "securityGroup",
        "egress.defaultPolicy",
        "accept",
        Kind::Enum(&["drop", "accept"]),
        "egress policy of an empty security group",
    ),
    d(
        "eip",
        "snatInboundTraffic",
        "false",
        B,
        "SNAT inbound EIP traffic",
    ),
    d(
        "portForwarding",
        "snatInboundTraffic",
        "false",
        B,
        "SNAT inbound port-forwarding traffic",
    ),
    d(
        "networkService",
        "defaultDhcpMtu.l2NoVlanNetwork",
        "1500",
        int(68, 9216),
        "DHCP MTU on no-VLAN L2",
    ),
    d(
        "networkService",
        "defaultDhcpMtu.l2VlanNetwork",
        "1500",
        int(68, 9216),
        "DHCP MTU on VLAN L2",
    ),
    d(
        "networkService",
        "defaultDhcpMtu.l2VxlanNetwork",
        "1500",
        int(68, 9216),
        "DHCP MTU on VXLAN L2",
    ),
    d(
        "loadBalancer",
        "connectionIdleTimeout",
        "60",
        POS,
        "LB idle connection timeout (s)",
    ),
    d(
        "loadBalancer",
        "healthyThreshold",
        "2",
        POS,
        "LB healthy threshold",
    ),
    d(
        "loadBalancer",
        "unhealthyThreshold",
        "2",
        POS,
        "LB unhealthy threshold",
    ),
    d(
        "loadBalancer",
        "healthCheckInterval",
        "5",
        POS,
        "LB health check period (s)",
    ),
    d(
        "loadBalancer",
        "maxConnection",
        "5000",
        POS,
        "LB max connections",
    ),
    d(
        "loadBalancer",
        "balancerAlgorithm",
        "roundrobin",
        Kind::Enum(&["roundrobin", "leastconn", "source"]),
        "LB algorithm",
    ),
    // Management plane, identity, API.
    d(
        "identity",
        "session.maxConcurrent",
        "500",
        POS,
        "concurrent sessions per user",
    ),
    d(
        "identity",
        "session.cleanup.interval",
        "3600",
        POS,
        "expired-session sweeper period (s)",
    ),
    d(
        "identity",
        "enable.unique.session",
        "false",
        B,
        "log out a user's other sessions at login",
    ),
    d(
        "identity",
        "admin.showAllResource",
        "true",
        B,
        "admin sees every account's resources",
    ),
    d(
        "api",
        "result.retention",
        "864000",
        POS,
        "seconds an async API result stays queryable (10 days)",
    ),
    d(
        "console",
        "proxy.idleTimeout",
        "60",
        POS,
        "console proxy idle timeout (s)",
    ),
    d(
        "console",
        "vnc.token.timeout",
        "1800",
        POS,
        "console token lifetime (s)",
    ),
    d(
        "managementServer",
        "node.heartbeatInterval",
        "5",
        POS,
        "management node heartbeat (s)",
    ),
    // Appended, not grouped: an inventory `id` is the position, so new settings go last.
    d(
        "audit",
        "retention",
        "2592000",
        int(60, 315_360_000),
        "seconds an API audit record is kept (30 days; 1 minute to 10 years)",
    ),
    // Failed-login back-off (`families::identity::backoff`); counted per management node.
    d(
        "identity",
        "login.maxFailures",
        "5",
        int(1, 1_000),
        "wrong passwords for one account or user before its logins are backed off",
    ),
    d(
        "identity",
        "login.ip.maxFailures",
        "20",
        int(1, 1_000_000),
        "wrong passwords from one client IP before its logins are backed off",
    ),
    d(
        "identity",
        "login.backoff",
        "1000",
        int(1, 3_600_000),
        "first back-off in ms; every further failure doubles it",
    ),
    d(
        "identity",
        "login.backoff.max",
        "60000",
        int(1, 86_400_000),
        "longest back-off in ms",
    ),
    d(
        "identity",
        "login.failureWindow",
        "900",
        int(1, 86_400),
        "seconds without a failure after which a failure count is forgotten",
    ),
];

/// The definition of `category/name`.
pub fn def(category: &str, name: &str) -> Option<(usize, &'static Def)> {
    DEFS.iter()
        .enumerate()
        .find(|(_, d)| d.category == category && d.name == name)
}

/// Parse a size such as `1G`, `512M`, `2T`, `100K` or plain bytes.
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

/// Check `value` against the setting's kind.
pub fn check(def: &Def, value: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        crate::validate::invalid_arg(format!(
            "invalid value[{value}] for GlobalConfig[category: {}, name: {}]: {why}",
            def.category, def.name
        ))
    };
    match def.kind {
        Kind::Bool if value == "true" || value == "false" => Ok(()),
        Kind::Bool => Err(bad("must be true or false".into())),
        Kind::Int { min, max } => match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            Ok(_) => Err(bad(format!("must be in [{min}, {max}]"))),
            Err(_) => Err(bad("must be an integer".into())),
        },
        Kind::Float {
            min,
            max,
            decimals,
            min_exclusive,
        } => {
            let f: f64 = value.parse().map_err(|_| bad("must be a number".into()))?;
            let frac = value.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            let low_ok = if min_exclusive { f > min } else { f >= min };
            if !f.is_finite() || !low_ok || f > max {
                return Err(bad(format!(
                    "must be in {}{min}, {max}]",
                    if min_exclusive { "(" } else { "[" }
                )));
            }
            if frac > decimals {
                return Err(bad(format!(
                    "at most {decimals} digits after the decimal point"
                )));
            }
            Ok(())
        }
        Kind::Enum(allowed) if allowed.contains(&value) => Ok(()),
        Kind::Enum(allowed) => Err(bad(format!("must be one of {allowed:?}"))),
        Kind::Size if parse_size(value).is_some() => Ok(()),
        Kind::Size => Err(bad("must be a size like 1G, 512M or 2T".into())),
        Kind::RouterPassword => {
            let first_ok = value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if first_ok
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_#".contains(c))
            {
                Ok(())
            } else {
                Err(bad("must start with a letter or digit and contain only letters, digits, '-', '_' and '#'".into()))
            }
        }
        Kind::Text => Ok(()),
    }
}

/// The stored key of `category/name` in [`TABLE`].
pub fn key(category: &str, name: &str) -> Vec<u8> {
    format!("{category}/{name}").into_bytes()
}

/// The current value of `category/name` (the default unless changed).
pub fn value(txn: &dyn StateTxn, category: &str, name: &str) -> Result<String, ApiError> {
    let (_, def) = def(category, name).ok_or_else(|| unknown(category, name))?;
    Ok(match txn.get(TABLE, &key(category, name))? {
        Some(v) => String::from_utf8_lossy(&v).into_owned(),
        None => def.default.to_string(),
    })
}

/// The current value as an integer (for settings of integer kind).
pub fn int_value(txn: &dyn StateTxn, category: &str, name: &str) -> Result<i64, ApiError> {
    let v = value(txn, category, name)?;
    v.parse().map_err(|_| ApiError::Corrupt {
        what: format!("global config {category}/{name}"),
        detail: format!("{v:?} is not an integer"),
    })
}

/// ZStack's refusal of a setting this build does not know.
pub fn unknown(category: &str, name: &str) -> ApiError {
    crate::validate::invalid_arg(format!(
        "Unable to find GlobalConfig[category: {category}, name: {name}]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemTxn;

    #[test]
    fn defaults_are_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in DEFS {
            assert!(
                seen.insert((d.category, d.name)),
                "duplicate {}/{}",
                d.category,
                d.name
            );
            check(d, d.default)
                .unwrap_or_else(|e| panic!("default of {}/{} invalid: {e}", d.category, d.name));
        }
        assert_eq!(
            value(&MemTxn::default(), "vm", "expungePeriod").unwrap(),
            "86400"
        );
        assert_eq!(
            value(&MemTxn::default(), "api", "result.retention").unwrap(),
            "864000"
        );
    }
}
