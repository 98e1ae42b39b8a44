//! The libvirt domain XML of a VM, built from the leader's `VmSpec`, and what the agent reads
//! back out of a live domain's XML (its VNC port, its disk files).
//!
//! Pure: no libvirt, no file system. Every field of the spec is checked before any XML is
//! written, so a bad spec is refused with the reason and libvirt never sees it. Every value
//! that reaches the XML is escaped, because names and console passwords are typed by users.

use std::fmt::Write as _;
use std::path::Path;

use proto::agent::v1 as pb;

/// The smallest memory a VM may have: below this no guest OS boots, and a typo in the unit
/// (MiB given as bytes) is caught instead of starting a VM that hangs in the firmware.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

/// Virtio disks are vda..vdz.
const MAX_DISKS: u32 = 26;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_BRIDGE_NAME: usize = 15;

/// The libvirt domain type a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    /// QEMU with hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU emulating the CPU (TCG): a qemu host without usable /dev/kvm.
    Qemu,
    /// libvirt's test driver (`test:///…`): nothing runs, every call is answered in memory.
    Test,
}

impl DomainType {
    /// The `<domain type=…>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
            DomainType::Test => "test",
        }
    }
}

/// Why a spec is refused, in words the operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VM {vm}: {reason}")]
pub struct SpecError {
    /// The VM uuid as given.
    pub vm: String,
    /// What is wrong.
    pub reason: String,
}

/// A cluster VM uuid: 32 lowercase hex digits (ZStack's form). The domain is named by it and
/// its libvirt uuid is derived from it, so nothing else is accepted.
pub fn check_vm_uuid(uuid: &str) -> Result<(), String> {
    if uuid.len() == 32
        && uuid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!("VM uuid {uuid:?} is not 32 lowercase hex digits"))
    }
}

/// The libvirt form (8-4-4-4-12) of a VM uuid that passed [`check_vm_uuid`] (anything else
/// is returned unchanged, and libvirt will not find it).
pub fn libvirt_uuid(vm_uuid: &str) -> String {
    if vm_uuid.len() != 32 || !vm_uuid.is_ascii() {
        return vm_uuid.to_string();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &vm_uuid[0..8],
        &vm_uuid[8..12],
        &vm_uuid[12..16],
        &vm_uuid[16..20],
        &vm_uuid[20..32]
    )
}

/// Paths go into attributes and onto QEMU's command line: absolute, no `..`, and no quote or
/// control character (escaping would keep the XML whole, but such a name is never one the
/// agent made, so it is refused rather than passed on).
fn check_path(what: &str, p: &str) -> Result<(), String> {
    if !Path::new(p).is_absolute() {
        return Err(format!("{what} {p:?} is not an absolute path"));
    }
    if Path::new(p).components().any(|c| c.as_os_str() == "..") {
        return Err(format!("{what} {p:?} contains \"..\""));
    }
    if p.chars().any(|c| c == '\'' || c == '"' || c.is_control()) {
        return Err(format!(
            "{what} {p:?} contains a quote or a control character"
        ));
    }
    Ok(())
}

/// `52:54:00:12:34:56`: six hex pairs, and unicast (libvirt refuses a multicast address; an
/// address with the low bit of its first octet set would never receive its traffic).
fn check_mac(mac: &str) -> Result<(), String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let well_formed = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(format!(
            "MAC address {mac:?} is not six hex pairs separated by ':'"
        ));
    }
    let first = u8::from_str_radix(parts[0], 16).map_err(|e| format!("MAC {mac:?}: {e}"))?;
    if first & 1 == 1 {
        return Err(format!("MAC address {mac:?} is a multicast address"));
    }
    Ok(())
}

fn check_bridge(bridge: &str) -> Result<(), String> {
    if bridge.len() > MAX_BRIDGE_NAME
        || !bridge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!(
            "bridge {bridge:?} is not a Linux interface name (at most {MAX_BRIDGE_NAME} letters, digits, '_', '-', '.')"
        ));
    }
    Ok(())
}

/// The disk driver format: what the volume file is.
fn disk_format(f: &str) -> Result<&'static str, String> {
    match f {
        "" | "qcow2" => Ok("qcow2"),
        "raw" => Ok("raw"),
        other => Err(format!(
            "disk format {other:?} is not one the agent attaches (qcow2, raw)"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootDev {
    Hd,
    Cdrom,
}

fn boot_order(spec: &pb::VmSpec) -> Result<Vec<BootDev>, String> {
    if spec.boot_order.is_empty() {
        return Ok(vec![BootDev::Hd]);
    }
    let mut out = Vec::new();
    for b in &spec.boot_order {
        let dev = match b.as_str() {
            "HardDisk" => BootDev::Hd,
            "CdRom" => BootDev::Cdrom,
            other => return Err(format!("boot device {other:?} is not HardDisk or CdRom")),
        };
        if out.contains(&dev) {
            return Err(format!("boot device {b} is listed twice"));
        }
        if dev == BootDev::Cdrom && spec.iso_path.is_empty() {
            return Err("boots from CdRom but has no ISO attached".into());
        }
        out.push(dev);
    }
    Ok(out)
}

/// Every rule a spec must meet before libvirt sees it.
pub fn validate(spec: &pb::VmSpec) -> Result<(), SpecError> {
    let fail = |reason: String| SpecError {
        vm: spec.vm_uuid.clone(),
        reason,
    };
    check_vm_uuid(&spec.vm_uuid).map_err(fail)?;
    if spec.cpu_num < 1 {
        return Err(fail("needs at least 1 vCPU".into()));
    }
    if spec.memory_bytes < MIN_MEMORY_BYTES {
        return Err(fail(format!(
            "memory {} bytes is below the minimum of {} MiB",
            spec.memory_bytes,
            MIN_MEMORY_BYTES >> 20
        )));
    }
    if spec.disks.is_empty() {
        return Err(fail("has no disk: a VM needs its root volume".into()));
    }
    let mut ids = Vec::new();
    for d in &spec.disks {
        check_path(&format!("disk {}", d.volume_uuid), &d.path).map_err(fail)?;
        disk_format(&d.format).map_err(fail)?;
        if d.device_id >= MAX_DISKS {
            return Err(fail(format!(
                "disk {} has device id {}; at most {MAX_DISKS} disks (vda..vdz) are attached",
                d.volume_uuid, d.device_id
            )));
        }
        if ids.contains(&d.device_id) {
            return Err(fail(format!("two disks have device id {}", d.device_id)));
        }
        ids.push(d.device_id);
    }
    if !ids.contains(&0) {
        return Err(fail("no disk has device id 0 (the root disk)".into()));
    }
    let mut nic_ids = Vec::new();
    for n in &spec.nics {
        check_mac(&n.mac).map_err(fail)?;
        if !n.bridge.is_empty() {
            check_bridge(&n.bridge).map_err(fail)?;
        }
        if nic_ids.contains(&n.device_id) {
            return Err(fail(format!("two NICs have device id {}", n.device_id)));
        }
        nic_ids.push(n.device_id);
    }
    if !spec.iso_path.is_empty() {
        check_path("ISO", &spec.iso_path).map_err(fail)?;
    }
    if spec.console_password.chars().any(char::is_control) {
        return Err(fail(
            "the console password contains a control character".into(),
        ));
    }
    boot_order(spec).map_err(fail)?;
    Ok(())
}

/// `s` safe inside an XML attribute (quoted with `'`) or text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The domain XML of a valid spec.
pub fn build(spec: &pb::VmSpec, ty: DomainType) -> Result<String, SpecError> {
    validate(spec)?;
    let fail = |reason: String| SpecError {
        vm: spec.vm_uuid.clone(),
        reason,
    };
    let boot = boot_order(spec).map_err(fail)?;
    // Ceiling: a spec a few bytes over a KiB boundary must not lose them to rounding.
    let kib = spec.memory_bytes.div_ceil(1024);
    // libvirt refuses a title with a newline; the title is only the operator's label, so
    // control characters become spaces rather than refusing a VM over its name.
    let title: String = spec
        .name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut x = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(x, "<domain type='{}'>", ty.as_str());
    let _ = writeln!(x, "  <name>{}</name>", spec.vm_uuid);
    let _ = writeln!(x, "  <uuid>{}</uuid>", libvirt_uuid(&spec.vm_uuid));
    let _ = writeln!(x, "  <title>{}</title>", escape(&title));
    let _ = writeln!(x, "  <memory unit='KiB'>{kib}</memory>");
    let _ = writeln!(x, "  <currentMemory unit='KiB'>{kib}</currentMemory>");
    let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", spec.cpu_num);
    x.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    for b in &boot {
        let dev = match b {
            BootDev::Hd => "hd",
            BootDev::Cdrom => "cdrom",
        };
        let _ = writeln!(x, "    <boot dev='{dev}'/>");
    }
    x.push_str("  </os>\n");
    // ACPI always: without it a guest never sees the power button and a grace stop can only
    // end in a destroy. No <cpu> element: libvirt's default CPU model keeps the VM
    // migratable between hosts of different CPU generations (host-passthrough and
    // host-model tie it to this host's CPU).
    x.push_str("  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
    x.push_str("  <clock offset='utc'/>\n");
    x.push_str("  <on_poweroff>destroy</on_poweroff>\n");
    x.push_str("  <on_reboot>restart</on_reboot>\n");
    x.push_str("  <on_crash>restart</on_crash>\n");
    x.push_str("  <devices>\n");
    let mut disks: Vec<&pb::DiskSpec> = spec.disks.iter().collect();
    disks.sort_by_key(|d| d.device_id);
    for d in disks {
        x.push_str(&disk_xml(d).map_err(fail)?);
    }
    if !spec.iso_path.is_empty() {
        // IDE: the i440fx ('pc') machine has an IDE controller built in, so the CD-ROM needs
        // no extra controller, and every guest OS has a driver for it.
        let _ = write!(
            x,
            "    <disk type='file' device='cdrom'>\n      \
             <driver name='qemu' type='raw'/>\n      \
             <source file='{}'/>\n      \
             <target dev='hdc' bus='ide'/>\n      \
             <readonly/>\n    \
             </disk>\n",
            escape(&spec.iso_path)
        );
    }
    let mut nics: Vec<&pb::NicSpec> = spec.nics.iter().collect();
    nics.sort_by_key(|n| n.device_id);
    for n in nics {
        x.push_str(&nic_xml(n).map_err(fail)?);
    }
    let passwd = if spec.console_password.is_empty() {
        String::new()
    } else {
        format!(" passwd='{}'", escape(&spec.console_password))
    };
    let _ = writeln!(
        x,
        "    <graphics type='vnc' autoport='yes' listen='0.0.0.0'{passwd}/>"
    );
    x.push_str("    <serial type='pty'/>\n    <console type='pty'/>\n");
    x.push_str("  </devices>\n</domain>\n");
    Ok(x)
}

/// The VNC port of a live domain's XML: 0 when it has no VNC console or the port is not
/// assigned yet (`port='-1'` with autoport until QEMU starts; the test driver never
/// assigns one).
pub fn vnc_port(xml: &str) -> u32 {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return 0;
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("graphics") && n.attribute("type") == Some("vnc"))
        .filter_map(|n| n.attribute("port")?.parse::<i64>().ok())
        .find(|p| *p > 0)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0)
}

/// One volume's `<disk>` element: virtio, `vd` + the device id's letter. What a start
/// builds into the domain and a live attach plugs in, so both give the same device.
pub fn disk_xml(d: &pb::DiskSpec) -> Result<String, String> {
    check_path(&format!("disk {}", d.volume_uuid), &d.path)?;
    let format = disk_format(&d.format)?;
    if d.device_id >= MAX_DISKS {
        return Err(format!(
            "disk {} has device id {}; at most {MAX_DISKS} disks (vda..vdz) are attached",
            d.volume_uuid, d.device_id
        ));
    }
    let dev = char::from(b'a' + u8::try_from(d.device_id).unwrap_or(0));
    Ok(format!(
        "    <disk type='file' device='disk'>\n      \
         <driver name='qemu' type='{format}' cache='none'/>\n      \
         <source file='{}'/>\n      \
         <target dev='vd{dev}' bus='virtio'/>\n    \
         </disk>\n",
        escape(&d.path),
    ))
}

/// The target device (`vdb`) of the disk whose source is `path`, if the domain has one.
pub fn disk_target(xml: &str, path: &str) -> Result<Option<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .find(|d| {
            d.children()
                .any(|c| c.has_tag_name("source") && c.attribute("file") == Some(path))
        })
        .and_then(|d| d.children().find(|c| c.has_tag_name("target")))
        .and_then(|t| t.attribute("dev"))
        .map(str::to_string))
}

/// The domain XML with `disk` (a [`disk_xml`] element) added to its devices.
pub fn with_disk(xml: &str, disk: &str) -> Result<String, String> {
    let at = xml
        .rfind("</devices>")
        .ok_or("domain XML has no <devices> element")?;
    Ok(format!("{}{disk}{}", &xml[..at], &xml[at..]))
}

/// The domain XML without the disk whose source is `path` (unchanged when it has none).
pub fn without_disk(xml: &str, path: &str) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let range = doc
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .find(|d| {
            d.children()
                .any(|c| c.has_tag_name("source") && c.attribute("file") == Some(path))
        })
        .map(|d| d.range());
    Ok(match range {
        Some(r) => format!("{}{}", &xml[..r.start], &xml[r.end..]),
        None => xml.to_string(),
    })
}

/// One NIC's `<interface>` element: virtio on the L2's bridge. What a start builds into the
/// domain and a live attach plugs in, so both give the same device.
pub fn nic_xml(n: &pb::NicSpec) -> Result<String, String> {
    check_mac(&n.mac)?;
    let mac = n.mac.to_ascii_lowercase();
    if n.bridge.is_empty() {
        // No L2 bridge named (a test-driver host, or a flat test setup): libvirt's
        // 'default' network. The test driver accepts it even when it has no such network.
        return Ok(format!(
            "    <interface type='network'>\n      <mac address='{mac}'/>\n      \
             <source network='default'/>\n      <model type='virtio'/>\n    </interface>\n"
        ));
    }
    check_bridge(&n.bridge)?;
    Ok(format!(
        "    <interface type='bridge'>\n      <mac address='{mac}'/>\n      \
         <source bridge='{}'/>\n      <model type='virtio'/>\n    </interface>\n",
        escape(&n.bridge)
    ))
}

fn interface_of<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    mac: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    let mac = mac.to_ascii_lowercase();
    doc.descendants()
        .filter(|n| n.has_tag_name("interface"))
        .find(|i| {
            i.children().any(|c| {
                c.has_tag_name("mac")
                    && c.attribute("address").map(str::to_ascii_lowercase) == Some(mac.clone())
            })
        })
}

/// The MACs of a domain's interfaces, lowercase, in the domain's order.
pub fn nic_macs(xml: &str) -> Result<Vec<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("interface"))
        .filter_map(|i| i.children().find(|c| c.has_tag_name("mac")))
        .filter_map(|m| m.attribute("address").map(str::to_ascii_lowercase))
        .collect())
}

/// The `<interface>` element of `mac` exactly as the domain has it (what libvirt's detach
/// matches against), if it has one.
pub fn interface_xml(xml: &str, mac: &str) -> Result<Option<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(interface_of(&doc, mac).map(|i| xml[i.range()].to_string()))
}

/// The domain XML without the interface of `mac` (unchanged when it has none).
pub fn without_nic(xml: &str, mac: &str) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(match interface_of(&doc, mac).map(|i| i.range()) {
        Some(r) => format!("{}{}", &xml[..r.start], &xml[r.end..]),
        None => xml.to_string(),
    })
}

/// The files a domain's disks use (`<disk><source file=…>`), CD-ROMs included.
pub fn disk_files(xml: &str) -> Result<Vec<String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("disk"))
        .filter_map(|d| d.children().find(|c| c.has_tag_name("source")))
        .filter_map(|s| s.attribute("file").map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "0123456789abcdef0123456789abcdef";

    fn spec() -> pb::VmSpec {
        pb::VmSpec {
            vm_uuid: VM.into(),
            name: "web-1".into(),
            cpu_num: 2,
            memory_bytes: 2 << 30,
            disks: vec![
                pb::DiskSpec {
                    volume_uuid: "data0000000000000000000000000001".into(),
                    path: "/ps/volumes/data0000000000000000000000000001.qcow2".into(),
                    format: "qcow2".into(),
                    device_id: 1,
                },
                pb::DiskSpec {
                    volume_uuid: "root0000000000000000000000000000".into(),
                    path: "/ps/volumes/root0000000000000000000000000000.qcow2".into(),
                    format: "qcow2".into(),
                    device_id: 0,
                },
            ],
            nics: vec![pb::NicSpec {
                mac: "52:54:00:AB:cd:01".into(),
                ip: "10.0.0.5".into(),
                l3_network_uuid: "l3".into(),
                bridge: "br_eth0_100".into(),
                device_id: 0,
            }],
            console_password: String::new(),
            boot_order: vec![],
            iso_path: String::new(),
        }
    }

    fn parse(xml: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"))
    }

    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> roxmltree::Node<'a, 'i> {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .unwrap_or_else(|| panic!("no <{tag}> under <{}>", n.tag_name().name()))
    }

    fn children<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        n.children().filter(|c| c.has_tag_name(tag)).collect()
    }

    fn text<'a>(n: roxmltree::Node<'a, '_>, tag: &str) -> &'a str {
        child(n, tag).text().unwrap_or_default()
    }

    #[test]
    fn the_domain_is_named_by_the_vm_and_sized_by_the_spec() {
        for (ty, want) in [
            (DomainType::Kvm, "kvm"),
            (DomainType::Qemu, "qemu"),
            (DomainType::Test, "test"),
        ] {
            let xml = build(&spec(), ty).unwrap();
            let doc = parse(&xml);
            let d = doc.root_element();
            assert_eq!(d.tag_name().name(), "domain");
            assert_eq!(d.attribute("type"), Some(want));
            assert_eq!(text(d, "name"), VM);
            assert_eq!(text(d, "uuid"), "01234567-89ab-cdef-0123-456789abcdef");
            assert_eq!(text(d, "title"), "web-1");
            assert_eq!(text(d, "vcpu"), "2");
            assert_eq!(child(d, "memory").attribute("unit"), Some("KiB"));
            assert_eq!(text(d, "memory"), (2u64 << 20).to_string());
            assert_eq!(text(d, "currentMemory"), (2u64 << 20).to_string());
            assert_eq!(text(d, "on_poweroff"), "destroy");
            assert_eq!(text(d, "on_reboot"), "restart");
            assert_eq!(text(d, "on_crash"), "restart");
        }
    }

    #[test]
    fn memory_is_rounded_up_to_whole_kib() {
        let mut s = spec();
        s.memory_bytes = (64 << 20) + 1;
        let xml = build(&s, DomainType::Kvm).unwrap();
        assert_eq!(text(parse(&xml).root_element(), "memory"), "65537");
    }

    #[test]
    fn acpi_is_always_on_and_the_cpu_is_never_passed_through() {
        let xml = build(&spec(), DomainType::Kvm).unwrap();
        let doc = parse(&xml);
        let d = doc.root_element();
        let f = child(d, "features");
        assert_eq!(children(f, "acpi").len(), 1);
        assert_eq!(children(f, "apic").len(), 1);
        assert!(children(d, "cpu").is_empty(), "{xml}");
        assert!(!xml.contains("host-passthrough") && !xml.contains("host-model"));
        let os = child(d, "os");
        let ty = child(os, "type");
        assert_eq!(ty.text(), Some("hvm"));
        assert_eq!(ty.attribute("arch"), Some("x86_64"));
        assert_eq!(ty.attribute("machine"), Some("pc"));
    }

    #[test]
    fn boot_devices_follow_the_boot_order() {
        let boots = |s: &pb::VmSpec| {
            let xml = build(s, DomainType::Kvm).unwrap();
            let doc = parse(&xml);
            children(child(doc.root_element(), "os"), "boot")
                .iter()
                .map(|b| b.attribute("dev").unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(boots(&spec()), ["hd"]);
        let mut s = spec();
        s.iso_path = "/ps/imagecache/images/iso1.iso".into();
        s.boot_order = vec!["CdRom".into(), "HardDisk".into()];
        assert_eq!(boots(&s), ["cdrom", "hd"]);
        s.boot_order = vec!["HardDisk".into(), "CdRom".into()];
        assert_eq!(boots(&s), ["hd", "cdrom"]);
    }

    #[test]
    fn disks_are_virtio_qcow2_in_device_order_and_the_iso_a_readonly_cdrom() {
        let mut s = spec();
        s.iso_path = "/ps/imagecache/images/iso1.iso".into();
        let xml = build(&s, DomainType::Kvm).unwrap();
        let doc = parse(&xml);
        let devices = child(doc.root_element(), "devices");
        let disks = children(devices, "disk");
        assert_eq!(disks.len(), 3);
        let want = [
            ("vda", "/ps/volumes/root0000000000000000000000000000.qcow2"),
            ("vdb", "/ps/volumes/data0000000000000000000000000001.qcow2"),
        ];
        for (d, (dev, file)) in disks.iter().zip(want) {
            assert_eq!(d.attribute("type"), Some("file"));
            assert_eq!(d.attribute("device"), Some("disk"));
            let drv = child(*d, "driver");
            assert_eq!(drv.attribute("name"), Some("qemu"));
            assert_eq!(drv.attribute("type"), Some("qcow2"));
            assert_eq!(drv.attribute("cache"), Some("none"));
            assert_eq!(child(*d, "source").attribute("file"), Some(file));
            let t = child(*d, "target");
            assert_eq!(t.attribute("dev"), Some(dev));
            assert_eq!(t.attribute("bus"), Some("virtio"));
        }
        let cd = disks[2];
        assert_eq!(cd.attribute("device"), Some("cdrom"));
        assert_eq!(
            child(cd, "source").attribute("file"),
            Some("/ps/imagecache/images/iso1.iso")
        );
        assert_eq!(child(cd, "target").attribute("bus"), Some("ide"));
        assert_eq!(children(cd, "readonly").len(), 1);
        assert_eq!(
            disk_files(&xml).unwrap(),
            [want[0].1, want[1].1, "/ps/imagecache/images/iso1.iso"]
        );
    }

    #[test]
    fn a_disk_added_and_removed_leaves_the_other_disks_as_they_were() {
        let xml = build(&spec(), DomainType::Test).unwrap();
        let disk = pb::DiskSpec {
            volume_uuid: "data0000000000000000000000000002".into(),
            path: "/ps/volumes/data0000000000000000000000000002.qcow2".into(),
            format: "qcow2".into(),
            device_id: 2,
        };
        let added = with_disk(&xml, &disk_xml(&disk).unwrap()).unwrap();
        assert_eq!(
            disk_target(&added, &disk.path).unwrap().as_deref(),
            Some("vdc")
        );
        assert!(disk_files(&added).unwrap().contains(&disk.path));
        let removed = without_disk(&added, &disk.path).unwrap();
        assert_eq!(disk_files(&removed).unwrap(), disk_files(&xml).unwrap());
        assert_eq!(disk_target(&removed, &disk.path).unwrap(), None);
        assert_eq!(without_disk(&removed, &disk.path).unwrap(), removed);
    }

    #[test]
    fn nics_use_their_bridge_or_the_default_network() {
        let mut s = spec();
        s.nics.push(pb::NicSpec {
            mac: "52:54:00:00:00:02".into(),
            bridge: String::new(),
            device_id: 1,
            ..Default::default()
        });
        s.nics.reverse();
        let xml = build(&s, DomainType::Test).unwrap();
        let doc = parse(&xml);
        let nics = children(child(doc.root_element(), "devices"), "interface");
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0].attribute("type"), Some("bridge"));
        assert_eq!(
            child(nics[0], "mac").attribute("address"),
            Some("52:54:00:ab:cd:01")
        );
        assert_eq!(
            child(nics[0], "source").attribute("bridge"),
            Some("br_eth0_100")
        );
        assert_eq!(child(nics[0], "model").attribute("type"), Some("virtio"));
        assert_eq!(nics[1].attribute("type"), Some("network"));
        assert_eq!(
            child(nics[1], "source").attribute("network"),
            Some("default")
        );
    }

    #[test]
    fn a_nic_added_and_removed_leaves_the_other_devices_as_they_were() {
        let xml = build(&spec(), DomainType::Test).unwrap();
        assert_eq!(
            nic_macs(&xml).unwrap(),
            vec!["52:54:00:ab:cd:01".to_string()]
        );
        let nic = pb::NicSpec {
            mac: "FA:01:02:03:04:05".into(),
            bridge: "br_eth1".into(),
            device_id: 1,
            ..Default::default()
        };
        let added = with_disk(&xml, &nic_xml(&nic).unwrap()).unwrap();
        assert_eq!(
            nic_macs(&added).unwrap(),
            vec![
                "52:54:00:ab:cd:01".to_string(),
                "fa:01:02:03:04:05".to_string()
            ]
        );
        let doc = parse(&added);
        let nics = children(child(doc.root_element(), "devices"), "interface");
        assert_eq!(
            child(nics[1], "source").attribute("bridge"),
            Some("br_eth1")
        );
        let element = interface_xml(&added, "fa:01:02:03:04:05").unwrap().unwrap();
        assert!(
            element.starts_with("<interface type='bridge'>"),
            "{element}"
        );
        assert!(element.ends_with("</interface>"), "{element}");
        let removed = without_nic(&added, "fa:01:02:03:04:05").unwrap();
        assert_eq!(nic_macs(&removed).unwrap(), nic_macs(&xml).unwrap());
        assert_eq!(disk_files(&removed).unwrap(), disk_files(&xml).unwrap());
        assert_eq!(interface_xml(&removed, "fa:01:02:03:04:05").unwrap(), None);
        assert_eq!(without_nic(&removed, "fa:01:02:03:04:05").unwrap(), removed);
        let mut bad = nic.clone();
        bad.mac = "01:00:00:00:00:01".into();
        assert!(nic_xml(&bad).unwrap_err().contains("multicast"));
        bad.mac = nic.mac.clone();
        bad.bridge = "br'0".into();
        assert!(nic_xml(&bad).unwrap_err().contains("interface name"));
    }

    #[test]
    fn the_console_is_vnc_on_every_address_with_serial_and_console_ptys() {
        let xml = build(&spec(), DomainType::Kvm).unwrap();
        let doc = parse(&xml);
        let devices = child(doc.root_element(), "devices");
        let g = child(devices, "graphics");
        assert_eq!(g.attribute("type"), Some("vnc"));
        assert_eq!(g.attribute("autoport"), Some("yes"));
        assert_eq!(g.attribute("listen"), Some("0.0.0.0"));
        assert_eq!(g.attribute("passwd"), None, "no password when none is set");
        assert_eq!(child(devices, "serial").attribute("type"), Some("pty"));
        assert_eq!(child(devices, "console").attribute("type"), Some("pty"));
    }

    #[test]
    fn a_hostile_name_and_password_stay_inside_their_element_and_attribute() {
        let mut s = spec();
        s.name = "x</title><devices><hostdev/></devices><title>&'\"\nend".into();
        s.console_password = "p' onload='1\"<&>".into();
        let xml = build(&s, DomainType::Kvm).unwrap();
        let doc = parse(&xml);
        let d = doc.root_element();
        assert_eq!(children(d, "title").len(), 1);
        assert_eq!(
            text(d, "title"),
            "x</title><devices><hostdev/></devices><title>&'\" end"
        );
        assert_eq!(children(d, "devices").len(), 1);
        assert!(d.descendants().all(|n| !n.has_tag_name("hostdev")));
        let g = child(child(d, "devices"), "graphics");
        assert_eq!(g.attribute("passwd"), Some("p' onload='1\"<&>"));
        assert_eq!(g.attribute("onload"), None);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let refused = |f: &dyn Fn(&mut pb::VmSpec), want: &str| {
            let mut s = spec();
            f(&mut s);
            let e = build(&s, DomainType::Kvm).unwrap_err();
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        };
        refused(&|s| s.vm_uuid = "../../etc".into(), "32 lowercase hex");
        refused(
            &|s| s.vm_uuid = "0123456789ABCDEF0123456789ABCDEF".into(),
            "32 lowercase hex",
        );
        refused(&|s| s.cpu_num = 0, "at least 1 vCPU");
        refused(&|s| s.memory_bytes = 15 << 20, "minimum of 16 MiB");
        refused(&|s| s.disks.clear(), "has no disk");
        refused(&|s| s.disks[0].path = "volumes/x.qcow2".into(), "absolute");
        refused(&|s| s.disks[0].path = "/ps/../etc/shadow".into(), "\"..\"");
        refused(&|s| s.disks[0].path = "/ps/x'.qcow2".into(), "quote");
        refused(&|s| s.disks[0].path = "/ps/x\n.qcow2".into(), "control");
        refused(&|s| s.disks[0].format = "vmdk".into(), "qcow2, raw");
        refused(&|s| s.disks[0].device_id = 0, "two disks have device id 0");
        refused(&|s| s.disks[1].device_id = 5, "no disk has device id 0");
        refused(&|s| s.disks[0].device_id = 26, "vda..vdz");
        refused(
            &|s| s.nics[0].mac = "52:54:00:ab:cd".into(),
            "six hex pairs",
        );
        refused(
            &|s| s.nics[0].mac = "52:54:00:ab:cd:zz".into(),
            "six hex pairs",
        );
        refused(&|s| s.nics[0].mac = "01:00:5e:00:00:01".into(), "multicast");
        refused(&|s| s.nics[0].bridge = "br'0".into(), "interface name");
        refused(&|s| s.iso_path = "cd.iso".into(), "ISO");
        refused(
            &|s| s.boot_order = vec!["Network".into()],
            "HardDisk or CdRom",
        );
        refused(&|s| s.boot_order = vec!["CdRom".into()], "no ISO");
        refused(&|s| s.console_password = "a\nb".into(), "control character");
    }

    #[test]
    fn the_vnc_port_of_a_live_domain() {
        let live = "<domain><devices><graphics type='spice' port='5930'/>\
                    <graphics type='vnc' port='5901' autoport='yes'/></devices></domain>";
        assert_eq!(vnc_port(live), 5901);
        let unassigned = "<domain><devices><graphics type='vnc' port='-1' autoport='yes'/>\
                          </devices></domain>";
        assert_eq!(vnc_port(unassigned), 0);
        assert_eq!(vnc_port("<domain><devices/></domain>"), 0);
        assert_eq!(vnc_port("not xml"), 0);
    }
}
