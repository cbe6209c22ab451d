//! The CNI entry point: a container runtime runs the binary with `CNI_COMMAND` set, the
//! network configuration on stdin and the result expected on stdout. The plugin itself
//! (env, config, ADD/DEL/CHECK/GC/STATUS/VERSION, results and error codes) is the
//! library's `cni` module.

use sandbox_net::physical::{SYSFS_ROOT_ENV, set_sysfs_root};

/// Whether a container runtime called us as a CNI plugin.
pub fn called() -> bool {
    std::env::var_os(sandbox_net::cni::COMMAND_ENV).is_some()
}

/// Run as the plugin; the exit code is the plugin's.
pub fn run() -> u8 {
    if let Some(root) = std::env::var_os(SYSFS_ROOT_ENV) {
        set_sysfs_root(root);
    }
    sandbox_net::cni::run()
}
