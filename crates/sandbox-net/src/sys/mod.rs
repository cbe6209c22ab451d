//! Every `unsafe` block of the library, each behind a safe function: the system calls
//! neither std nor nix wraps (or wraps in a way that does not fit), one file per kind. What
//! is above this module passes no pointer to the kernel and owns every fd it holds.
//!
//! | module | what |
//! |---|---|
//! | `random` | `getrandom` |
//! | `ns` | a socket's netns cookie (`SO_NETNS_COOKIE`), a namespace file's type (`NS_GET_NSTYPE`) |
//! | `tun` | the tun/tap ioctls on a `struct ifreq`, and `SIOCGIFINDEX` |
//! | `mount` | detached mounts (`fsopen`, `fsconfig`, `fsmount`) |
//! | `fd` | an fd duplicated above a number, fds placed at fixed numbers before an exec, `flock` |

pub mod fd;
pub mod mount;
pub mod ns;
pub mod random;
pub mod tun;
