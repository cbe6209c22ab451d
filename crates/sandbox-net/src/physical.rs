//! Physical NICs (and SR-IOV VFs) handed to the VM by PCI passthrough, as Kata does: the
//! device is unbound from its kernel driver and bound to vfio-pci, and the VMM opens
//! `/dev/vfio/<iommu group>`. Detach rebinds it to its original driver.
//!
//! Everything goes through sysfs under a root given by the caller, so the logic can be
//! tested against a fake tree. The operations take it from [`sysfs_root`], a setting of
//! the process ("/sys" unless [`set_sysfs_root`] changed it), never from a state file.
//! `/sys/class/net` lists the interfaces of the netns that mounted sysfs: detect from a
//! sysfs mounted inside the container's netns.
//! The caller journals the device's current driver before [`bind_vfio`] changes anything,
//! and undoes with [`restore_driver`], which may run any number of times.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The driver a passed-through device is bound to.
pub const VFIO_DRIVER: &str = "vfio-pci";
/// Where the VMM finds a device's VFIO group (not under the sysfs root).
pub const VFIO_DEV_DIR: &str = "/dev/vfio";

/// The sysfs root of a process that nothing changed.
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";

static SYSFS_ROOT: RwLock<Option<PathBuf>> = RwLock::new(None);

/// The sysfs root this process finds and binds PCI devices under: "/sys", or what
/// [`set_sysfs_root`] set. Every write to sysfs goes under it; the root recorded in a
/// journal entry only has to match it (see `journal`).
pub fn sysfs_root() -> PathBuf {
    let root = SYSFS_ROOT.read().unwrap_or_else(|e| e.into_inner());
    root.clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSFS_ROOT))
}

/// The environment variable that sets the sysfs root of the CLI and of the CNI plugin (the
/// operator's choice, like a flag; never a state file's).
pub const SYSFS_ROOT_ENV: &str = "SANDBOX_NET_SYSFS_ROOT";

/// Set the sysfs root for the whole process (the CLI's `--sysfs-root`; a fake tree in
/// tests). Set it before any operation: an attachment made under one root is undone only
/// by a process with the same root.
pub fn set_sysfs_root(root: impl Into<PathBuf>) {
    let mut slot = SYSFS_ROOT.write().unwrap_or_else(|e| e.into_inner());
    *slot = Some(root.into());
}

/// What can go wrong handling a physical NIC.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// A value about to go into a sysfs path is malformed. Nothing was changed.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A sysfs read or write failed.
    #[error("{object}: {step} {path}: {source}")]
    Sysfs {
        object: String,
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The interface's device is not on the PCI bus (virtio, USB, ...).
    #[error("interface {iface}: device {path} is not a PCI device (subsystem {subsystem})")]
    NotPci {
        iface: String,
        path: PathBuf,
        subsystem: String,
    },
    /// The device has no IOMMU group, so VFIO can't take it. Nothing was changed.
    #[error("PCI device {address}: no IOMMU group (is the IOMMU enabled?)")]
    NoIommuGroup { address: String },
    /// After binding, the device is not bound to the expected driver.
    #[error("PCI device {address}: expected driver {expected}, found {}", .actual.as_deref().unwrap_or("none"))]
    NotBound {
        address: String,
        expected: String,
        actual: Option<String>,
    },
}

fn sysfs_err(object: &str, step: &'static str, path: &Path, source: io::Error) -> PhysicalError {
    PhysicalError::Sysfs {
        object: object.to_string(),
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// What sysfs says about a network interface's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciNic {
    pub iface: String,
    /// "0000:03:00.1"
    pub pci_address: String,
    pub driver: Option<String>,
    /// "17"
    pub iommu_group: Option<String>,
    pub vendor: Option<String>,
    pub device: Option<String>,
}

/// A device bound to vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub pci_address: String,
    /// The driver before binding; `Some("vfio-pci")` if it already was bound to it.
    pub original_driver: Option<String>,
    /// `/dev/vfio/<group>`.
    pub vfio_group_path: PathBuf,
}

/// One write to a sysfs attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsWrite {
    pub path: PathBuf,
    pub value: String,
}

impl SysfsWrite {
    pub fn new(path: PathBuf, value: &str) -> SysfsWrite {
        let value = value.to_string();
        SysfsWrite { path, value }
    }
}

/// Check a PCI address is `dddd:bb:dd.f` in lowercase hex, as sysfs spells it.
pub fn validate_pci_address(address: &str) -> Result<(), PhysicalError> {
    let bad = |reason| PhysicalError::Invalid {
        what: "PCI address",
        value: address.to_string(),
        reason,
    };
    let b = address.as_bytes();
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() != 12 || b[4] != b':' || b[7] != b':' || b[10] != b'.' {
        return Err(bad(
            "expected domain:bus:device.function, like 0000:03:00.1",
        ));
    }
    if !(hex(0..4) && hex(5..7) && hex(8..10) && hex(11..12)) {
        return Err(bad("expected lowercase hexadecimal digits"));
    }
    if &address[8..10] > "1f" || b[11] > b'7' {
        return Err(bad("device must be at most 1f and function at most 7"));
    }
    Ok(())
}

/// Check a name (interface, driver, IOMMU group) is a single path component.
fn validate_name(what: &'static str, name: &str) -> Result<(), PhysicalError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '\n']) {
        return Err(PhysicalError::Invalid {
            what,
            value: name.to_string(),
            reason: "must be a single non-empty path component",
        });
    }
    Ok(())
}

/// The device directory of a PCI address: `<root>/bus/pci/devices/<address>`.
pub fn device_dir(sysfs_root: &Path, pci_address: &str) -> PathBuf {
    sysfs_root.join("bus/pci/devices").join(pci_address)
}

/// The result of a sysfs lookup, with "not found" as None.
fn optional<T>(
    object: &str,
    step: &'static str,
    path: &Path,
    result: io::Result<T>,
) -> Result<Option<T>, PhysicalError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sysfs_err(object, step, path, e)),
    }
}

/// The file name of a symlink's target, or None when there is no such link.
fn link_name(object: &str, link: &Path) -> Result<Option<String>, PhysicalError> {
    let target = optional(object, "reading link", link, fs::read_link(link))?;
    Ok(target.and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned())))
}

/// A trimmed attribute file, or None when it does not exist.
fn read_attr(object: &str, path: &Path) -> Result<Option<String>, PhysicalError> {
    let body = optional(object, "reading", path, fs::read_to_string(path))?;
    Ok(body.map(|b| b.trim().to_string()))
}

/// Find the PCI device behind `iface`. Ok(None) for a virtual interface (no `device` link).
pub fn detect(sysfs_root: &Path, iface: &str) -> Result<Option<PciNic>, PhysicalError> {
    detect_in(sysfs_root, sysfs_root, iface)
}

/// Like [`detect`], but reads `class/net/<iface>` under `net_root` (a sysfs instance that
/// shows the interface's own netns) and the PCI device under `sysfs_root`.
pub fn detect_in(
    net_root: &Path,
    sysfs_root: &Path,
    iface: &str,
) -> Result<Option<PciNic>, PhysicalError> {
    validate_name("interface name", iface)?;
    let object = format!("interface {iface}");
    let iface_dir = net_root.join("class/net").join(iface);
    fs::symlink_metadata(&iface_dir)
        .map_err(|e| sysfs_err(&object, "looking up", &iface_dir, e))?;
    let link = iface_dir.join("device");
    if optional(&object, "looking up", &link, fs::symlink_metadata(&link))?.is_none() {
        return Ok(None);
    }
    let target = fs::read_link(&link).map_err(|e| sysfs_err(&object, "reading", &link, e))?;
    let pci_address = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A PCI device is found again under `sysfs_root` by its address (the link's target is
    // relative to `net_root`, which may be a detached sysfs); anything else through the link.
    let dev = if validate_pci_address(&pci_address).is_ok() {
        fs::canonicalize(device_dir(sysfs_root, &pci_address)).or_else(|_| fs::canonicalize(&link))
    } else {
        fs::canonicalize(&link)
    }
    .map_err(|e| sysfs_err(&object, "resolving", &link, e))?;
    let subsystem = link_name(&object, &dev.join("subsystem"))?;
    if subsystem.as_deref() != Some("pci") {
        return Err(PhysicalError::NotPci {
            iface: iface.to_string(),
            path: dev,
            subsystem: subsystem.unwrap_or_else(|| "unknown".into()),
        });
    }
    validate_pci_address(&pci_address)?;
    Ok(Some(PciNic {
        iface: iface.to_string(),
        driver: link_name(&object, &dev.join("driver"))?,
        iommu_group: link_name(&object, &dev.join("iommu_group"))?,
        vendor: read_attr(&object, &dev.join("vendor"))?,
        device: read_attr(&object, &dev.join("device"))?,
        pci_address,
    }))
}

/// The driver the device is bound to now, or None when unbound.
pub fn current_driver(
    sysfs_root: &Path,
    pci_address: &str,
) -> Result<Option<String>, PhysicalError> {
    validate_pci_address(pci_address)?;
    let object = format!("PCI device {pci_address}");
    link_name(&object, &device_dir(sysfs_root, pci_address).join("driver"))
}

/// The writes that bind the device to vfio-pci, in order; empty if it already is.
pub fn plan_bind(sysfs_root: &Path, pci_address: &str) -> Result<Vec<SysfsWrite>, PhysicalError> {
    let current = current_driver(sysfs_root, pci_address)?;
    if current.as_deref() == Some(VFIO_DRIVER) {
        return Ok(Vec::new());
    }
    let dev = device_dir(sysfs_root, pci_address);
    let mut plan = vec![SysfsWrite::new(dev.join("driver_override"), VFIO_DRIVER)];
    if current.is_some() {
        plan.push(SysfsWrite::new(dev.join("driver/unbind"), pci_address));
    }
    let probe = sysfs_root.join("bus/pci/drivers_probe");
    plan.push(SysfsWrite::new(probe, pci_address));
    Ok(plan)
}

/// The writes that return the device to `original_driver`, in order. A device already bound
/// to it only has its driver_override cleared, so undoing twice does not disturb it.
pub fn plan_restore(
    sysfs_root: &Path,
    pci_address: &str,
    original_driver: Option<&str>,
) -> Result<Vec<SysfsWrite>, PhysicalError> {
    validate_pci_address(pci_address)?;
    if let Some(d) = original_driver {
        validate_name("driver name", d)?;
    }
    let dev = device_dir(sysfs_root, pci_address);
    let current = current_driver(sysfs_root, pci_address)?;
    let clear = SysfsWrite::new(dev.join("driver_override"), "\n");
    if original_driver.is_some() && current.as_deref() == original_driver {
        return Ok(vec![clear]);
    }
    let mut plan = Vec::new();
    if current.is_some() {
        plan.push(SysfsWrite::new(dev.join("driver/unbind"), pci_address));
    }
    plan.push(clear);
    if let Some(d) = original_driver {
        let bind = sysfs_root.join("bus/pci/drivers").join(d).join("bind");
        plan.push(SysfsWrite::new(bind, pci_address));
    }
    Ok(plan)
}

/// Perform the writes in order, each as one write(2) to an existing attribute (never
/// through a symlink: sysfs attributes are plain files).
pub fn apply(object: &str, writes: &[SysfsWrite]) -> Result<(), PhysicalError> {
    for w in writes {
        tracing::debug!(object, path = %w.path.display(), value = %w.value.trim(), "sysfs write");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&w.path)
            .map_err(|e| sysfs_err(object, "opening", &w.path, e))?;
        let n = file
            .write(w.value.as_bytes())
            .map_err(|e| sysfs_err(object, "writing", &w.path, e))?;
        if n != w.value.len() {
            let e = io::Error::other(format!("short write: {n} of {} bytes", w.value.len()));
            return Err(sysfs_err(object, "writing", &w.path, e));
        }
    }
    Ok(())
}

/// Check the device is bound to `expected`.
pub fn verify_bound(
    sysfs_root: &Path,
    pci_address: &str,
    expected: &str,
) -> Result<(), PhysicalError> {
    let actual = current_driver(sysfs_root, pci_address)?;
    if actual.as_deref() == Some(expected) {
        return Ok(());
    }
    Err(PhysicalError::NotBound {
        address: pci_address.to_string(),
        expected: expected.to_string(),
        actual,
    })
}

/// Bind the NIC's device to vfio-pci and check the kernel did. Refuses a device without an
/// IOMMU group before changing anything. On error the device may be half-way: undo with
/// [`restore_driver`] and the driver journalled beforehand.
pub fn bind_vfio(sysfs_root: &Path, nic: &PciNic) -> Result<Binding, PhysicalError> {
    let address = nic.pci_address.as_str();
    validate_pci_address(address)?;
    let group = nic
        .iommu_group
        .as_deref()
        .ok_or_else(|| PhysicalError::NoIommuGroup {
            address: address.to_string(),
        })?;
    validate_name("IOMMU group", group)?;
    let original_driver = current_driver(sysfs_root, address)?;
    let plan = plan_bind(sysfs_root, address)?;
    tracing::info!(iface = %nic.iface, address, from = ?original_driver, "binding to {VFIO_DRIVER}");
    apply(&format!("PCI device {address}"), &plan)?;
    verify_bound(sysfs_root, address, VFIO_DRIVER)?;
    Ok(Binding {
        pci_address: address.to_string(),
        original_driver,
        vfio_group_path: Path::new(VFIO_DEV_DIR).join(group),
    })
}

/// Unbind the device, clear its driver_override and bind it to `original_driver` if any.
/// A device that no longer exists is treated as undone.
pub fn restore_driver(
    sysfs_root: &Path,
    pci_address: &str,
    original_driver: Option<&str>,
) -> Result<(), PhysicalError> {
    validate_pci_address(pci_address)?;
    let object = format!("PCI device {pci_address}");
    let dev = device_dir(sysfs_root, pci_address);
    if optional(&object, "looking up", &dev, fs::metadata(&dev))?.is_none() {
        tracing::debug!(address = pci_address, "device is gone; nothing to restore");
        return Ok(());
    }
    let plan = plan_restore(sysfs_root, pci_address, original_driver)?;
    tracing::info!(address = pci_address, to = ?original_driver, "restoring driver");
    apply(&object, &plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    use sandbox_net_testkit::fake_sysfs::{ADDR, DEV, FakeSysfs as Fake};

    #[test]
    fn detect_reads_the_device() {
        let fake = Fake::new().unwrap();
        let nic = detect(fake.root(), "eth5").unwrap().unwrap();
        let expected = PciNic {
            iface: "eth5".into(),
            pci_address: ADDR.into(),
            driver: Some("ixgbe".into()),
            iommu_group: Some("17".into()),
            vendor: Some("0x8086".into()),
            device: Some("0x10fb".into()),
        };
        assert_eq!(nic, expected);
    }

    #[test]
    fn detect_virtual_missing_and_non_pci() {
        let fake = Fake::new().unwrap();
        fs::create_dir_all(fake.path("class/net/veth0")).unwrap();
        assert_eq!(detect(fake.root(), "veth0").unwrap(), None);

        let err = detect(fake.root(), "nosuch0").unwrap_err().to_string();
        assert!(err.contains("interface nosuch0"), "{err}");
        assert!(err.contains("class/net/nosuch0"), "{err}");

        fake.link("devices/virtio0/subsystem", "../../bus/virtio")
            .unwrap();
        fake.link("class/net/eth0/device", "../../../devices/virtio0")
            .unwrap();
        let err = detect(fake.root(), "eth0").unwrap_err().to_string();
        assert!(err.contains("not a PCI device (subsystem virtio)"), "{err}");
    }

    #[test]
    fn bind_writes_in_order_then_verifies() {
        let fake = Fake::new().unwrap();
        let dev = device_dir(fake.root(), ADDR);
        let plan = plan_bind(fake.root(), ADDR).unwrap();
        let expected = [
            SysfsWrite::new(dev.join("driver_override"), VFIO_DRIVER),
            SysfsWrite::new(dev.join("driver/unbind"), ADDR),
            SysfsWrite::new(fake.path("bus/pci/drivers_probe"), ADDR),
        ];
        assert_eq!(plan, expected);

        apply("test", &plan).unwrap();
        assert_eq!(fake.override_value().unwrap(), VFIO_DRIVER);
        assert_eq!(fake.read("bus/pci/drivers/ixgbe/unbind").unwrap(), ADDR);
        assert_eq!(fake.read("bus/pci/drivers_probe").unwrap(), ADDR);

        // The fake kernel did not rebind: verification must say so.
        let err = verify_bound(fake.root(), ADDR, VFIO_DRIVER).unwrap_err();
        let msg = format!("PCI device {ADDR}: expected driver vfio-pci, found ixgbe");
        assert_eq!(err.to_string(), msg);
        fake.kernel_binds(VFIO_DRIVER).unwrap();
        verify_bound(fake.root(), ADDR, VFIO_DRIVER).unwrap();
    }

    #[test]
    fn bind_vfio_verifies_is_idempotent_and_needs_iommu_group() {
        let fake = Fake::new().unwrap();
        let nic = detect(fake.root(), "eth5").unwrap().unwrap();
        let err = bind_vfio(fake.root(), &nic).unwrap_err();
        assert!(matches!(err, PhysicalError::NotBound { .. }), "{err}");

        let fake = Fake::new().unwrap();
        fake.kernel_binds(VFIO_DRIVER).unwrap();
        let binding = bind_vfio(fake.root(), &nic).unwrap();
        assert_eq!(binding.original_driver.as_deref(), Some(VFIO_DRIVER));
        assert_eq!(binding.vfio_group_path, PathBuf::from("/dev/vfio/17"));
        assert_eq!(fake.read("bus/pci/drivers_probe").unwrap(), "");
        assert_eq!(fake.read("bus/pci/drivers/ixgbe/unbind").unwrap(), "");

        let fake = Fake::new().unwrap();
        let mut nic = nic.clone();
        nic.iommu_group = None;
        let err = bind_vfio(fake.root(), &nic).unwrap_err();
        assert!(matches!(err, PhysicalError::NoIommuGroup { .. }), "{err}");
        assert_eq!(fake.override_value().unwrap(), "(null)\n");
    }

    #[test]
    fn restore_rebinds_original_and_is_idempotent() {
        let fake = Fake::new().unwrap();
        fake.kernel_binds(VFIO_DRIVER).unwrap();
        fake.file(&format!("{DEV}/driver_override"), VFIO_DRIVER)
            .unwrap();
        let dev = device_dir(fake.root(), ADDR);
        let plan = plan_restore(fake.root(), ADDR, Some("ixgbe")).unwrap();
        let expected = [
            SysfsWrite::new(dev.join("driver/unbind"), ADDR),
            SysfsWrite::new(dev.join("driver_override"), "\n"),
            SysfsWrite::new(fake.path("bus/pci/drivers/ixgbe/bind"), ADDR),
        ];
        assert_eq!(plan, expected);

        restore_driver(fake.root(), ADDR, Some("ixgbe")).unwrap();
        assert_eq!(fake.read("bus/pci/drivers/vfio-pci/unbind").unwrap(), ADDR);
        assert_eq!(fake.override_value().unwrap(), "\n");
        assert_eq!(fake.read("bus/pci/drivers/ixgbe/bind").unwrap(), ADDR);

        // Undoing again once the kernel has rebound only clears driver_override.
        fake.kernel_binds("ixgbe").unwrap();
        let plan = plan_restore(fake.root(), ADDR, Some("ixgbe")).unwrap();
        assert_eq!(plan, [SysfsWrite::new(dev.join("driver_override"), "\n")]);

        // A device that is gone is undone.
        let fake = Fake::new().unwrap();
        restore_driver(fake.root(), "0000:04:00.0", Some("ixgbe")).unwrap();
        assert_eq!(fake.read("bus/pci/drivers/ixgbe/bind").unwrap(), "");
    }

    #[test]
    fn bad_addresses_and_names_are_refused() {
        validate_pci_address(ADDR).unwrap();
        validate_pci_address("ffff:ff:1f.7").unwrap();
        let bad = "03:00.1 0000:03:00.8 0000:03:20.0 0000:03:0G.1 0000:03:00:1 0000:0A:00.1 \
                   ../../../x.1 0000/03:00.1 00000:03:00.1";
        for bad in bad.split(' ').chain(["", "0000:03:00.1\n"]) {
            let err = validate_pci_address(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid PCI address"), "{bad:?}: {err}");
        }
        let fake = Fake::new().unwrap();
        assert!(restore_driver(fake.root(), "../x", None).is_err());
        assert!(restore_driver(fake.root(), ADDR, Some("../ixgbe")).is_err());
        assert!(detect(fake.root(), "../eth5").is_err());
        let mut nic = detect(fake.root(), "eth5").unwrap().unwrap();
        nic.pci_address = "0000:03:00.1/../x".into();
        let err = bind_vfio(fake.root(), &nic).unwrap_err();
        assert!(matches!(err, PhysicalError::Invalid { .. }), "{err}");
        assert_eq!(fake.read("bus/pci/drivers_probe").unwrap(), "");
    }
}
