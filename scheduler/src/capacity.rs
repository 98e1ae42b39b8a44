//! The capacity arithmetic shared by placement and by the committed reservation (spec 03 §11.2):
//! a host's limits after over-provisioning and reserved memory, what one VM costs on it, and
//! [`fits`]. The apply step of the reservation command calls the same [`fits`] on the committed
//! counters, so a placement computed on a stale view can lose, but never overbook.

use std::fmt;

use thiserror::Error;

use crate::config::AllocatorConfig;
use crate::config::Fraction;
use crate::config::Ratio;
use crate::units::Size;

/// A validated VM size: at least one vCPU and one byte of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSpec {
    /// vCPUs (`cpuNum`).
    pub cpu_num: u64,
    /// Bytes (`memorySize`).
    pub memory_size: u64,
}

/// What a host offers before anything is placed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCapacity {
    /// CPU threads reported by the agent (`cpuNum`).
    pub cpu_threads: u64,
    /// Physical memory, bytes (`totalMemoryCapacity`).
    pub total_memory: u64,
    /// Memory kept free on this host, bytes: its `reservedMemory` tag, else `kvm.reservedMemory`.
    pub reserved_memory: u64,
}

/// What is reserved on a host: the sum of the [`Charge`]s of its reservations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocated {
    /// vCPUs.
    pub cpu: u64,
    /// Memory, bytes, deflated by the memory ratio in force when each VM was placed.
    pub memory: u64,
}

/// The most a host may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `threads × host.cpu.overProvisioning.ratio`.
    pub cpu: u64,
    /// `total memory − reserved memory`, in deflated bytes.
    pub memory: u64,
    /// The memory ratio, to show free memory in VM terms.
    pub memory_ratio: Ratio,
}

impl Limits {
    /// The limits of `host` under `config`.
    pub fn of(host: HostCapacity, config: &AllocatorConfig) -> Limits {
        Limits {
            cpu: host
                .cpu_threads
                .saturating_mul(config.cpu_over_provisioning),
            memory: host.total_memory.saturating_sub(host.reserved_memory),
            memory_ratio: config.memory_over_provisioning,
        }
    }

    /// What is left after `allocated` (zero where it is already over, e.g. after a ratio was
    /// lowered: such a host takes nothing new, its VMs keep running).
    pub fn free(&self, allocated: Allocated) -> Allocated {
        Allocated {
            cpu: self.cpu.saturating_sub(allocated.cpu),
            memory: self.memory.saturating_sub(allocated.memory),
        }
    }
}

/// What one VM takes from a host. Recorded in its [`Reservation`] so the release returns exactly
/// this, whatever the ratios are by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// vCPUs.
    pub cpu: u64,
    /// Deflated memory, bytes: `round(memorySize / memory ratio)`.
    pub memory: u64,
    /// The VM's memory as asked, bytes (for error texts).
    pub requested_memory: u64,
}

impl Charge {
    /// The cost of `spec` under `config`.
    pub fn of(spec: VmSpec, config: &AllocatorConfig) -> Charge {
        Charge {
            cpu: spec.cpu_num,
            memory: config.memory_over_provisioning.deflate(spec.memory_size),
            requested_memory: spec.memory_size,
        }
    }
}

/// Why a VM does not fit on a host, with the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Shortfall {
    /// Not enough vCPUs.
    #[error("not enough CPU: need {need} vCPUs, free {free}")]
    Cpu {
        /// vCPUs asked.
        need: u64,
        /// vCPUs left.
        free: u64,
    },
    /// Not enough memory (both in VM terms: free is the deflated free memory × the ratio).
    #[error("not enough memory: need {}, free {}", Size(*need), Size(*free))]
    Memory {
        /// Bytes asked.
        need: u64,
        /// Bytes of VM memory the host can still take.
        free: u64,
    },
}

/// Whether `charge` fits on a host with `limits` that already holds `allocated`. CPU is checked
/// first, as ZStack's `HostCapacityAllocatorFlow` does.
pub fn fits(limits: Limits, allocated: Allocated, charge: Charge) -> Result<(), Shortfall> {
    let free = limits.free(allocated);
    if charge.cpu > free.cpu {
        return Err(Shortfall::Cpu {
            need: charge.cpu,
            free: free.cpu,
        });
    }
    if charge.memory > free.memory {
        return Err(Shortfall::Memory {
            need: charge.requested_memory,
            free: limits.memory_ratio.inflate(free.memory),
        });
    }
    Ok(())
}

/// A release that does not match what the host holds: a second release of one reservation, or a
/// reservation of another host. Refused, so counters never go negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("release of {cpu} vCPUs and {} exceeds what the host holds ({held_cpu} vCPUs, {})", Size(*memory), Size(*held_memory))]
pub struct ReleaseError {
    /// vCPUs to return.
    pub cpu: u64,
    /// Deflated bytes to return.
    pub memory: u64,
    /// vCPUs held.
    pub held_cpu: u64,
    /// Deflated bytes held.
    pub held_memory: u64,
}

impl Allocated {
    /// Re-check and take: what the reservation's apply does on the committed counters.
    pub fn take(&mut self, limits: Limits, charge: Charge) -> Result<(), Shortfall> {
        fits(limits, *self, charge)?;
        // fits() proved both sums stay within limits, which are u64.
        self.cpu += charge.cpu;
        self.memory += charge.memory;
        Ok(())
    }

    /// Return exactly `charge`.
    pub fn give_back(&mut self, charge: Charge) -> Result<(), ReleaseError> {
        let err = ReleaseError {
            cpu: charge.cpu,
            memory: charge.memory,
            held_cpu: self.cpu,
            held_memory: self.memory,
        };
        let cpu = self.cpu.checked_sub(charge.cpu).ok_or(err)?;
        let memory = self.memory.checked_sub(charge.memory).ok_or(err)?;
        self.cpu = cpu;
        self.memory = memory;
        Ok(())
    }
}

/// A primary storage's (or a local-storage host ref's) capacity figures, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PsCapacity {
    /// Virtual total (`totalCapacity`).
    pub total: u64,
    /// Virtual available (`availableCapacity`), volumes counted deflated by the PS ratio.
    pub available: u64,
    /// Physical total (`totalPhysicalCapacity`).
    pub total_physical: u64,
    /// Physical available (`availablePhysicalCapacity`).
    pub available_physical: u64,
}

/// Why a new volume does not fit on a primary storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PsShortfall {
    /// Physical use at or above `mevoco.primaryStorage.threshold`: no new volumes at all.
    #[error("physical usage {} of {} reached the threshold {threshold}", Size(*used), Size(*total))]
    Threshold {
        /// Physically used bytes.
        used: u64,
        /// Physical total.
        total: u64,
        /// The threshold.
        threshold: Fraction,
    },
    /// Not enough virtual capacity.
    #[error("not enough capacity: need {}, available {}", Size(*need), Size(*available))]
    Capacity {
        /// Virtual size asked.
        need: u64,
        /// What the PS can still take, in virtual bytes (available × ratio).
        available: u64,
    },
}

/// Whether a new volume of `size` virtual bytes fits on a PS, and its deflated cost
/// (`round(size / ratio)`, what the reservation takes from `availableCapacity`). The threshold
/// check is ZStack's `checkCapacityByRatio`: allowed iff the PS is empty or physically used <
/// round(total physical × threshold).
pub fn ps_fits(cap: PsCapacity, size: u64, config: &AllocatorConfig) -> Result<u64, PsShortfall> {
    let used = cap.total_physical.saturating_sub(cap.available_physical);
    let threshold = config.primary_storage_threshold;
    if cap.available != cap.total && used >= threshold.of(cap.total_physical) {
        return Err(PsShortfall::Threshold {
            used,
            total: cap.total_physical,
            threshold,
        });
    }
    let ratio = config.primary_storage_over_provisioning;
    let cost = ratio.deflate(size);
    if cost > cap.available {
        return Err(PsShortfall::Capacity {
            need: size,
            available: ratio.inflate(cap.available),
        });
    }
    Ok(cost)
}

/// The primary-storage part of a reservation: the new root volume's deflated size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCharge {
    /// The primary storage.
    pub primary_storage_uuid: String,
    /// For LocalStorage, the host whose ref the bytes come from.
    pub local_host_uuid: Option<String>,
    /// Deflated bytes taken from `availableCapacity`.
    pub bytes: u64,
}

/// A placement's claim, as the reservation command carries it: the apply re-checks it with
/// [`fits`] against the committed counters, takes it, and keeps it with the VM so the release
/// (stop, destroy, migrate-away, failed create) returns exactly this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The VM.
    pub vm_uuid: String,
    /// The chosen host.
    pub host_uuid: String,
    /// CPU and memory taken on the host.
    pub charge: Charge,
    /// Root-volume bytes taken on a primary storage, when a new root volume is created.
    pub volume: Option<VolumeCharge>,
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vm {} on host {}: {} vCPUs, {}",
            self.vm_uuid,
            self.host_uuid,
            self.charge.cpu,
            Size(self.charge.requested_memory)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn config(mem_ratio: u32) -> AllocatorConfig {
        AllocatorConfig {
            memory_over_provisioning: Ratio::from_hundredths(mem_ratio).unwrap(),
            ..AllocatorConfig::default()
        }
    }

    fn host(threads: u64, mem: u64) -> HostCapacity {
        HostCapacity {
            cpu_threads: threads,
            total_memory: mem,
            reserved_memory: G,
        }
    }

    #[test]
    fn fits_table() {
        // (threads, host mem, mem ratio, allocated cpu, allocated mem, vm cpu, vm mem, result)
        type Row = (u64, u64, u32, u64, u64, u64, u64, Result<(), &'static str>);
        let rows: &[Row] = &[
            (4, 16 * G, 100, 0, 0, 40, 15 * G, Ok(())),
            (
                4,
                16 * G,
                100,
                0,
                0,
                41,
                G,
                Err("not enough CPU: need 41 vCPUs, free 40"),
            ),
            (
                4,
                16 * G,
                100,
                0,
                9 * G,
                2,
                8 * G,
                Err("not enough memory: need 8G, free 6G"),
            ),
            // reserved memory is subtracted un-scaled, over-provisioning applies to VM memory
            (4, 16 * G, 200, 0, 0, 2, 30 * G, Ok(())),
            (
                4,
                16 * G,
                200,
                0,
                0,
                2,
                31 * G,
                Err("not enough memory: need 31G, free 30G"),
            ),
        ];
        for (i, (threads, mem, ratio, acpu, amem, cpu, vmem, want)) in rows.iter().enumerate() {
            let c = config(*ratio);
            let limits = Limits::of(host(*threads, *mem), &c);
            let charge = Charge::of(
                VmSpec {
                    cpu_num: *cpu,
                    memory_size: *vmem,
                },
                &c,
            );
            let got = fits(
                limits,
                Allocated {
                    cpu: *acpu,
                    memory: *amem,
                },
                charge,
            )
            .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "row {i}");
        }
        // The spec's example: 512M reserved, 700M physically free, a 512M VM cannot start.
        let c = config(100);
        let limits = Limits::of(
            HostCapacity {
                cpu_threads: 1,
                total_memory: 1200 << 20,
                reserved_memory: 512 << 20,
            },
            &c,
        );
        let charge = Charge::of(
            VmSpec {
                cpu_num: 1,
                memory_size: 512 << 20,
            },
            &c,
        );
        let five_hundred_m = Allocated {
            cpu: 0,
            memory: 500 << 20,
        };
        assert_eq!(
            fits(limits, five_hundred_m, charge)
                .unwrap_err()
                .to_string(),
            "not enough memory: need 512M, free 188M"
        );
    }

    #[test]
    fn take_and_give_back_are_exact() {
        let c = config(150);
        let limits = Limits::of(host(2, 8 * G), &c);
        let charge = Charge::of(
            VmSpec {
                cpu_num: 3,
                memory_size: 3 * G,
            },
            &c,
        );
        let mut a = Allocated::default();
        a.take(limits, charge).unwrap();
        assert_eq!(
            a,
            Allocated {
                cpu: 3,
                memory: 2 * G
            }
        );
        a.give_back(charge).unwrap();
        assert_eq!(a, Allocated::default());
        let err = a.give_back(charge).unwrap_err();
        assert_eq!(
            err.to_string(),
            "release of 3 vCPUs and 2G exceeds what the host holds (0 vCPUs, 0)"
        );
    }

    #[test]
    fn ps_threshold_and_capacity() {
        let mut c = AllocatorConfig::default();
        let cap = |avail: u64, avail_phys: u64| PsCapacity {
            total: 100 * G,
            available: avail,
            total_physical: 100 * G,
            available_physical: avail_phys,
        };
        assert_eq!(ps_fits(cap(100 * G, 100 * G), 50 * G, &c), Ok(50 * G));
        // an empty PS passes the threshold even when its disk is mostly used by others
        assert_eq!(ps_fits(cap(100 * G, 5 * G), 50 * G, &c), Ok(50 * G));
        assert_eq!(
            ps_fits(cap(20 * G, 10 * G), G, &c).unwrap_err().to_string(),
            "physical usage 90G of 100G reached the threshold 0.9000"
        );
        assert_eq!(
            ps_fits(cap(20 * G, 11 * G), 21 * G, &c)
                .unwrap_err()
                .to_string(),
            "not enough capacity: need 21G, available 20G"
        );
        c.primary_storage_over_provisioning = Ratio::from_hundredths(200).unwrap();
        assert_eq!(ps_fits(cap(20 * G, 11 * G), 40 * G, &c), Ok(20 * G));
    }
}
