//! Every `unsafe` block of the library: the system calls std and nix do not wrap, each
//! behind a safe function. Nothing above this module calls `libc` with a pointer.

pub mod random;
