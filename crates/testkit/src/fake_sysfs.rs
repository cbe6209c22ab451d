//! A fake sysfs tree holding one PCI NIC, for exercising the physical-NIC path without
//! hardware (no spare NIC on test machines). Used by the unit tests of the library's
//! `physical` module and by the integration tests; nothing in the tool itself uses it.
//!
//! `eth5` is an ixgbe NIC at [`ADDR`] in IOMMU group 17; both ixgbe and vfio-pci have `bind`
//! and `unbind` files, and `drivers_probe` exists. Writes land in plain files, so a test
//! reads back what was written and plays the kernel with [`FakeSysfs::kernel_binds`].

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sandbox_net::physical::VFIO_DRIVER;

/// The NIC's PCI address.
pub const ADDR: &str = "0000:03:00.1";
/// The NIC's device directory, relative to the tree's root.
pub const DEV: &str = "devices/pci0000:00/0000:03:00.1";

/// The tree, in a directory under the temp dir, removed on drop.
#[derive(Debug)]
pub struct FakeSysfs(PathBuf);

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl FakeSysfs {
    pub fn new() -> io::Result<FakeSysfs> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("snt-sysfs-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let f = FakeSysfs(root);
        f.file(&format!("{DEV}/vendor"), "0x8086\n")?;
        f.file(&format!("{DEV}/device"), "0x10fb\n")?;
        f.file(&format!("{DEV}/driver_override"), "(null)\n")?;
        f.link(&format!("{DEV}/driver"), "../../../bus/pci/drivers/ixgbe")?;
        f.link(
            &format!("{DEV}/iommu_group"),
            "../../../kernel/iommu_groups/17",
        )?;
        f.link(&format!("{DEV}/subsystem"), "../../../bus/pci")?;
        f.link("class/net/eth5/device", &format!("../../../{DEV}"))?;
        f.link(
            &format!("bus/pci/devices/{ADDR}"),
            &format!("../../../{DEV}"),
        )?;
        for d in ["ixgbe", VFIO_DRIVER] {
            f.file(&format!("bus/pci/drivers/{d}/bind"), "")?;
            f.file(&format!("bus/pci/drivers/{d}/unbind"), "")?;
        }
        f.file("bus/pci/drivers_probe", "")?;
        Ok(f)
    }

    /// The tree's root: what the code under test takes as its sysfs root.
    pub fn root(&self) -> &Path {
        &self.0
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Write `body` to `rel`, creating its directories.
    pub fn file(&self, rel: &str, body: &str) -> io::Result<()> {
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(p, body)
    }

    /// Make `rel` a symlink to `target` (replacing what was there), creating its directories.
    pub fn link(&self, rel: &str, target: &str) -> io::Result<()> {
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        symlink(target, p)
    }

    pub fn read(&self, rel: &str) -> io::Result<String> {
        fs::read_to_string(self.path(rel))
    }

    /// What the NIC's `driver_override` holds.
    pub fn override_value(&self) -> io::Result<String> {
        self.read(&format!("{DEV}/driver_override"))
    }

    /// Play the kernel: bind the NIC to `driver`.
    pub fn kernel_binds(&self, driver: &str) -> io::Result<()> {
        self.link(
            &format!("{DEV}/driver"),
            &format!("../../../bus/pci/drivers/{driver}"),
        )
    }
}
